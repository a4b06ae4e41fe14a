/* SPDX-License-Identifier: MIT */
/* THE compile of module code that may await at module level (DESIGN 2):
 * the plain compile, then the TLA compile (kept only if CO_COROUTINE),
 * then the awaited-imports rewrite (import_rewrite.c). Anything else
 * keeps python's exact behaviour, SyntaxError text included. Running the
 * code belongs elsewhere. */
#include <Python.h>

#include "apyrun/tla.h"
#include "apyrun/tla_rewrite.h"

/* 1 if code is a CO_COROUTINE code object, else 0; never fails. */
int
apy_tla_is_coroutine_code(PyObject *code)
{
    return PyCode_Check(code)
           && (((PyCodeObject *)code)->co_flags & CO_COROUTINE) != 0;
}

/* compile(tree, filename, 'exec', flags, dont_inherit=True): a new code
 * object or NULL with an exception set. */
static PyObject *
compile_tree(PyObject *tree, PyObject *filename, int flags)
{
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    PyObject *compile = PyDict_GetItemString(builtins, "compile");
    if (compile == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "builtins.compile is missing");
        return NULL;
    }
    return PyObject_CallFunction(compile, "OOsii", tree, filename, "exec",
                                 flags, 1);
}

/* The TLA compile of `source`, whose plain compile failed: parsed with
 * top-level await allowed and compiled; when that is a coroutine, the
 * module-level imports are rewritten to await (and the tree compiled
 * again if any was). Returns a new code object; Py_None when the code is
 * not TLA (whatever failed is cleared: the plain compile's error is the
 * one to report); NULL with an exception set when the rewrite or its
 * compile fails, which is not a syntax problem of the user's. */
static PyObject *
compile_tla(const char *source, PyObject *filename, int flags)
{
    PyObject *tree = NULL, *code = NULL;
    /* compile() accepts only future and compile-mode flags; the cookie
     * and encoding flags matter to the parse alone. */
    int tree_flags = (flags & PyCF_MASK) | PyCF_ALLOW_TOP_LEVEL_AWAIT;
    PyCompilerFlags ast_cf = _PyCompilerFlags_INIT;
    ast_cf.cf_flags = flags | PyCF_ALLOW_TOP_LEVEL_AWAIT | PyCF_ONLY_AST;

    tree = Py_CompileStringObject(source, filename, Py_file_input, &ast_cf,
                                  -1);
    if (tree == NULL) {
        goto not_tla;
    }
    code = compile_tree(tree, filename, tree_flags);
    if (code == NULL || !apy_tla_is_coroutine_code(code)) {
        goto not_tla;
    }
    Py_ssize_t n = apy_tla_rewrite_imports(tree);
    if (n < 0) {
        Py_CLEAR(code);
    } else if (n > 0) {
        Py_SETREF(code, compile_tree(tree, filename, tree_flags));
    }
    Py_DECREF(tree);
    return code;

not_tla:
    PyErr_Clear();
    Py_XDECREF(code);
    Py_XDECREF(tree);
    Py_RETURN_NONE;
}

/* Plain compile, then TLA, then the import rewrite (apyrun/tla.h): a new
 * code object and *is_tla, or NULL with an exception set. */
PyObject *
apy_tla_compile(const char *source, PyObject *filename, int flags,
                int *is_tla)
{
    PyCompilerFlags cf = _PyCompilerFlags_INIT;
    cf.cf_flags = flags;
    *is_tla = 0;

    PyObject *code = Py_CompileStringObject(source, filename, Py_file_input,
                                            &cf, -1);
    if (code != NULL || !PyErr_ExceptionMatches(PyExc_SyntaxError)) {
        return code;
    }
    /* The plain compile's error is the one to report whenever this does
     * not turn out to be TLA code. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    code = compile_tla(source, filename, flags);
    if (code == Py_None) {
        Py_DECREF(code);
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    *is_tla = code != NULL;
    return code;
}
