/* SPDX-License-Identifier: MIT */
/* Placeholder `apyrun` module: replaced by the loop work. */
#include <Python.h>
#include "apyrun/module.h"

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "apyrun", NULL, 0, NULL,
};

PyMODINIT_FUNC
apy_module_init(void)
{
    return PyModuleDef_Init(&module_def);
}
