/* SPDX-License-Identifier: MIT */
/* The import rewrite of TLA module code (src/tla/import_rewrite.c): at the
 * module level of top-level-await code, an import statement awaits the
 * module it imports, so that a TLA module imported there runs on the loop
 * that runs the importer, in statement order (DESIGN 4). */
#ifndef APYRUN_TLA_REWRITE_H
#define APYRUN_TLA_REWRITE_H

#include <Python.h>

/* The module the rewritten code calls into, and its function:
 * `await __import__(APY_TLA_IMPORT_MODULE).APY_TLA_IMPORT_FUNC(name,
 * fromlist, level)` precedes each module-level import statement.
 * src/importer provides both (apy_importer_module_init). */
#define APY_TLA_IMPORT_MODULE "_apyrun_importer"
#define APY_TLA_IMPORT_FUNC "_await_import"

/* Compiles `source` (NUL-terminated bytes) as a module named by `filename`
 * with compiler flags `flags`, as apy_tla_compile() does (plain compile
 * first; TLA only when that fails and the PyCF_ALLOW_TOP_LEVEL_AWAIT
 * compile yields CO_COROUTINE). When the code is TLA, every import
 * statement that runs in the module's own frame (not inside a def, class
 * or lambda; `from __future__` excepted) is preceded by an awaited call
 * that imports the same names first, so a TLA module imported there is
 * awaited; the statement itself then binds names exactly as python does.
 * Returns a new code object and sets *is_tla, or NULL with the plain
 * compile's exception set when the code is neither plain nor TLA. */
PyObject *apy_tla_compile_module(const char *source, PyObject *filename,
                                 int flags, int *is_tla);

/* The rewrite alone, for code compiled from an AST (a notebook cell):
 * inserts the awaited imports into `tree` (an ast.Module, changed in
 * place). Call it only for code that is TLA without it, then compile the
 * tree with PyCF_ALLOW_TOP_LEVEL_AWAIT. Returns the number of awaits
 * inserted (0: the tree is unchanged), or -1 with an exception set. */
Py_ssize_t apy_tla_rewrite_imports(PyObject *tree);

#endif
