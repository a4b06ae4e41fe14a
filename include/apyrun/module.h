/* SPDX-License-Identifier: MIT */
/* The built-in `apyrun` module (src/module/): registered in the inittab
 * before the interpreter starts, imported lazily like any module. */
#ifndef APYRUN_MODULE_H
#define APYRUN_MODULE_H

#include <Python.h>

/* PyInit function of the built-in `apyrun` module: returns a new module
 * definition (multi-phase init), or NULL with an exception set. */
PyMODINIT_FUNC apy_module_init(void);

#endif
