/* SPDX-License-Identifier: MIT */
/* Temporary minimal launcher: replaced by the full embedding layer. */
#include <Python.h>
#include "apyrun/embed.h"
#include "apyrun/module.h"

int
apyrun_main(int argc, char **argv)
{
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    PyStatus status = PyConfig_SetBytesArgv(&config, argc, argv);
    if (PyStatus_Exception(status)) {
        goto fail;
    }
    PyImport_AppendInittab("apyrun", apy_module_init);
    status = Py_InitializeFromConfig(&config);
    if (PyStatus_Exception(status)) {
        goto fail;
    }
    PyConfig_Clear(&config);
    return Py_RunMain();
fail:
    PyConfig_Clear(&config);
    Py_ExitStatusException(status);
}
