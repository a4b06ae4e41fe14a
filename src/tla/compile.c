/* SPDX-License-Identifier: MIT */
/* Deciding whether module code is top-level-await code, and compiling it.
 * The rule (DESIGN 2): TLA only if the plain compile fails and the
 * PyCF_ALLOW_TOP_LEVEL_AWAIT compile yields CO_COROUTINE; anything else
 * keeps python's exact behaviour, including its SyntaxError text. */
#include <Python.h>

#include "apyrun/tla.h"
#include "apyrun/tla_rewrite.h"

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
    /* The same rule, plus awaited module-level imports for TLA code
     * (src/tla/import_rewrite.c). */
    return apy_tla_compile_module(source, filename, flags, is_tla);
}
