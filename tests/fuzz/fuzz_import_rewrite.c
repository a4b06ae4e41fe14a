/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the import rewrite of TLA code
 * (src/tla/import_rewrite.c). Every input is module source; one that
 * parses with top-level await allowed is rewritten by
 * apy_tla_rewrite_imports, and apy_tla_compile compiles it. The
 * properties (checks.rewrite_after), else abort():
 *   - the rewrite never fails on a parsed tree;
 *   - an awaited import precedes exactly the module-frame import
 *     statements (one per name of `import a, b`, none for __future__),
 *     with the statement's names and location, and nothing else changes;
 *   - a tree that compiled compiles after the rewrite (a coroutine when
 *     anything was inserted);
 *   - apy_tla_compile gives python's code when plain compile
 *     works, TLA code exactly when the TLA compile gives a coroutine. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "apyrun/tla_rewrite.h"
#include "fuzz.h"

static PyObject *filename; /* "<fuzz>", for the whole run */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_python_init();
    filename = PyUnicode_FromString("<fuzz>");
    REQUIRE(filename != NULL);
    return 0;
}

/* 1 if the exception set says the input is too deep or too big for the
 * compiler (then nothing can be checked), else 0. */
static int
too_big(void)
{
    return PyErr_ExceptionMatches(PyExc_RecursionError)
           || PyErr_ExceptionMatches(PyExc_MemoryError);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    PyObject *src = fuzz_bytes(data, size);
    const char *text = PyBytes_AS_STRING(src);
    int is_tla = -1;
    PyObject *code = apy_tla_compile(text, filename, 0, &is_tla);
    REQUIRE(code != NULL || PyErr_Occurred());
    REQUIRE(is_tla == 0 || (is_tla == 1 && code != NULL));
    int code_too_big = code == NULL && too_big();
    PyErr_Clear();

    PyCompilerFlags cf = _PyCompilerFlags_INIT;
    cf.cf_flags = PyCF_ONLY_AST | PyCF_ALLOW_TOP_LEVEL_AWAIT;
    PyObject *tree = Py_CompileStringObject(text, filename, Py_file_input,
                                            &cf, -1);
    if (tree == NULL) {
        /* Not even TLA syntax: nothing compiles it. */
        REQUIRE(code == NULL || too_big());
        PyErr_Clear();
        goto done;
    }
    PyObject *before = fuzz_check("rewrite_before", PyTuple_Pack(1, tree));
    Py_ssize_t n = apy_tla_rewrite_imports(tree);
    REQUIRE(n >= 0 || too_big());
    PyErr_Clear();
    if (before != NULL && n >= 0 && !code_too_big) {
        PyObject *r = fuzz_check(
            "rewrite_after",
            Py_BuildValue("(OOOnOO)", before, src, tree, n,
                          code ? code : Py_None, is_tla ? Py_True : Py_False));
        Py_XDECREF(r);
    }
    Py_XDECREF(before);
    Py_DECREF(tree);
done:
    Py_XDECREF(code);
    Py_DECREF(src);
    return 0;
}
