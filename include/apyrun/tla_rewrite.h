/* SPDX-License-Identifier: MIT */
/* The import rewrite of TLA module code (src/tla/import_rewrite.c): at the
 * module level of top-level-await code, an import statement awaits the
 * module it imports, so that a TLA module imported there runs on the loop
 * that runs the importer, in statement order (DESIGN 4). apy_tla_compile
 * (apyrun/tla.h) applies it to module source; code compiled from an AST
 * applies it itself. */
#ifndef APYRUN_TLA_REWRITE_H
#define APYRUN_TLA_REWRITE_H

#include <Python.h>

#include "apyrun/tla.h"

/* The module the rewritten code calls into, and its function:
 * `await __import__(APY_TLA_IMPORT_MODULE).APY_TLA_IMPORT_FUNC(name,
 * fromlist, level)` precedes each module-level import statement.
 * src/importer provides both (apy_importer_module_init). */
#define APY_TLA_IMPORT_MODULE "_apyrun_importer"
#define APY_TLA_IMPORT_FUNC "_await_import"

/* The rewrite, for code compiled from an AST (a notebook cell):
 * inserts the awaited imports into `tree` (an ast.Module, changed in
 * place). Call it only for code that is TLA without it, then compile the
 * tree with PyCF_ALLOW_TOP_LEVEL_AWAIT. Returns the number of awaits
 * inserted (0: the tree is unchanged), or -1 with an exception set. */
Py_ssize_t apy_tla_rewrite_imports(PyObject *tree);

#endif
