/* SPDX-License-Identifier: MIT */
/* The one argument parser of the loop's vectorcall methods (level 1):
 * positional arguments, then keywords matched against a tuple of
 * interned parameter names kept in the loop state. The common case (no
 * error, keywords interned as the compiler interns them or equal to the
 * names) is inline, so call_soon(cb, context=ctx) from _asyncio's Task
 * pays no call for it; anything else goes to args.c, which parses again
 * and raises. Private to src/loop. */
#ifndef APY_LOOP_ARGS_H
#define APY_LOOP_ARGS_H

#include <Python.h>

/* The careful path of apy__args_parse(): the same contract, comparing
 * names by value and raising asyncio's TypeErrors. */
int apy__args_parse_slow(const char *fname, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames,
                         PyObject *params, Py_ssize_t npos,
                         Py_ssize_t nrequired, PyObject **out);

/* Matches a vectorcall's arguments (args[:nargs] positional, then one
 * value per name of kwnames) to params, a tuple of interned names: the
 * first npos may come positionally, any by keyword, the first nrequired
 * must come. Fills out[i] for each parameter with a borrowed reference,
 * NULL where absent. Returns 0, or -1 with TypeError naming fname. A
 * method taking *args passes them to nobody: args + nargs, 0. */
static inline int
apy__args_parse(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames, PyObject *params, Py_ssize_t npos,
                Py_ssize_t nrequired, PyObject **out)
{
    Py_ssize_t nparams = PyTuple_GET_SIZE(params);
    if (nargs > npos) {
        goto slow;
    }
    for (Py_ssize_t i = 0; i < nparams; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    if (kwnames != NULL) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); k++) {
            PyObject *kw = PyTuple_GET_ITEM(kwnames, k); /* borrowed */
            Py_ssize_t i = 0;
            while (i < nparams && PyTuple_GET_ITEM(params, i) != kw) {
                i++;
            }
            if (i == nparams) {
                /* Not the interned name: _asyncio's C Task passes
                 * context= from its own ("context",) tuple, not interned,
                 * on every step. Names are exact str in a vectorcall. */
                i = 0;
                while (i < nparams
                       && !_PyUnicode_EQ(PyTuple_GET_ITEM(params, i), kw)) {
                    i++;
                }
            }
            if (i == nparams || out[i] != NULL) {
                goto slow;
            }
            out[i] = args[nargs + k];
        }
    }
    for (Py_ssize_t i = 0; i < nrequired; i++) {
        if (out[i] == NULL) {
            goto slow;
        }
    }
    return 0;

slow:
    return apy__args_parse_slow(fname, args, nargs, kwnames, params, npos,
                                nrequired, out);
}

#endif
