/* SPDX-License-Identifier: MIT */
/* The import layer (src/importer/): meta-path finders and loaders. */
#ifndef APYRUN_IMPORTER_H
#define APYRUN_IMPORTER_H

#include <Python.h>

/* Puts a one-shot finder at the front of sys.meta_path that, once the
 * `asyncio` package has been executed, calls apyrun.install() so that
 * apyrun's loop is asyncio's default, without importing asyncio (or
 * apyrun) for programs that never use it. Returns 0, or -1 with an
 * exception set. */
int apy_importer_install_loop_hook(void);

/* The name of the importer's built-in module. The TLA compile's awaited
 * imports call into it (apyrun/tla_rewrite.h names it too). */
#define APY_IMPORTER_MODULE_NAME "_apyrun_importer"

/* PyInit function of the built-in `_apyrun_importer` module: register it
 * with PyImport_AppendInittab(APY_IMPORTER_MODULE_NAME, ...) before the
 * interpreter starts. Returns a module definition (multi-phase init). */
PyMODINIT_FUNC apy_importer_module_init(void);

/* Installs the importer in the running interpreter: .py modules with
 * top-level await become importable through the path finder's
 * FileFinders (apyrun's SourceFileLoader subclass), and .ipynb notebooks,
 * importnb-style names included, through a finder at the end of
 * sys.meta_path (a notebook never shadows a module python finds).
 * Imports nothing (asyncio is imported only once a TLA module is) and
 * lists no directory; costs a few type creations. Returns 0, or -1 with
 * an exception set. */
int apy_importer_install(void);

/* Adds the importer's public names to `module` (the `apyrun` module's
 * exec calls it): import_module, the coroutine function for
 * `await apyrun.import_module(name, package=None)`, and
 * AsyncImportError, the ImportError subclass raised when a module with
 * top-level await is imported synchronously while a loop runs. Returns
 * 0, or -1 with an exception set. */
int apy_importer_add_to_module(PyObject *module);

#endif
