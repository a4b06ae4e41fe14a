/* SPDX-License-Identifier: MIT */
/* The slow path of the loop's argument parser (args.h): keyword names
 * compared by value (a name built at run time is not the interned one),
 * and the TypeErrors CPython's own parser gives. Level 1: plain Python C
 * API, nothing of the loop. */
#include <Python.h>

#include "args.h"

/* Same contract as apy__args_parse(): 0, or -1 with TypeError. */
int
apy__args_parse_slow(const char *fname, PyObject *const *args,
                     Py_ssize_t nargs, PyObject *kwnames, PyObject *params,
                     Py_ssize_t npos, Py_ssize_t nrequired, PyObject **out)
{
    Py_ssize_t nparams = PyTuple_GET_SIZE(params);
    for (Py_ssize_t i = 0; i < nparams; i++) {
        out[i] = NULL;
    }
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd positional "
                     "arguments (%zd given)", fname, npos, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, k); /* borrowed */
        Py_ssize_t i = 0;
        while (i < nparams) {
            PyObject *name = PyTuple_GET_ITEM(params, i); /* borrowed */
            if (name == kw || PyUnicode_Compare(name, kw) == 0) {
                break;
            }
            i++;
        }
        if (i == nparams) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument '%U'",
                         fname, kw);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got multiple values for argument '%U'", fname,
                         kw);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < nrequired; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing required argument '%U'", fname,
                         PyTuple_GET_ITEM(params, i));
            return -1;
        }
    }
    return 0;
}
