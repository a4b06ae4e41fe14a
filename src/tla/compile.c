/* SPDX-License-Identifier: MIT */
/* Deciding whether module code is top-level-await code, and compiling it.
 * The rule (DESIGN 2): TLA only if the plain compile fails and the
 * PyCF_ALLOW_TOP_LEVEL_AWAIT compile yields CO_COROUTINE; anything else
 * keeps python's exact behaviour, including its SyntaxError text. */
#include <Python.h>

#include "apyrun/tla.h"

int
apy_tla_is_coroutine_code(PyObject *code)
{
    return PyCode_Check(code)
           && (((PyCodeObject *)code)->co_flags & CO_COROUTINE) != 0;
}

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

    /* Keep the plain compile's error: it is the one to report whenever
     * the flagged compile does not turn this into TLA code. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);

    PyCompilerFlags tla_cf = _PyCompilerFlags_INIT;
    tla_cf.cf_flags = flags | PyCF_ALLOW_TOP_LEVEL_AWAIT;
    code = Py_CompileStringObject(source, filename, Py_file_input, &tla_cf,
                                  -1);
    if (code != NULL && apy_tla_is_coroutine_code(code)) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        *is_tla = 1;
        return code;
    }
    Py_XDECREF(code);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    return NULL;
}
