/* SPDX-License-Identifier: MIT */
/* Traceback hygiene for the main task: a TLA program's report must start at
 * the user's code, never in asyncio's runner or loop machinery (DESIGN 2).
 * Only leading frames are dropped: asyncio frames the user's code called
 * into stay, as python shows them. */
#include <Python.h>
#include <frameobject.h>

#include "apyrun/tla.h"

/* Chains longer than this are not walked: a cycle guard, not a limit any
 * real program reaches. */
#define MAX_CHAIN 64

/* Returns a new reference to the directory prefix of the asyncio package
 * ("/usr/lib/python3.11/asyncio/"), or NULL with an exception set. */
static PyObject *
asyncio_prefix(void)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return NULL;
    }
    PyObject *file = PyObject_GetAttrString(asyncio, "__file__");
    Py_DECREF(asyncio);
    if (file == NULL) {
        return NULL;
    }
    /* ".../asyncio/__init__.py" -> ".../asyncio/" */
    Py_ssize_t slash = PyUnicode_FindChar(file, '/', 0,
                                          PyUnicode_GET_LENGTH(file), -1);
    PyObject *prefix = slash < 0
                           ? PyUnicode_FromString("")
                           : PyUnicode_Substring(file, 0, slash + 1);
    Py_DECREF(file);
    return prefix;
}

/* Returns 1 if tb's frame runs code from a file under prefix, else 0. */
static int
is_internal(PyTracebackObject *tb, PyObject *prefix)
{
    PyCodeObject *code = PyFrame_GetCode(tb->tb_frame);
    int internal = 0;
    if (PyUnicode_GET_LENGTH(prefix) > 0
        && PyUnicode_Tailmatch(code->co_filename, prefix, 0, PY_SSIZE_T_MAX,
                               -1) == 1) {
        internal = 1;
    }
    Py_DECREF(code);
    return internal;
}

/* Drops exc's leading internal frames. Returns 0, or -1 with an error. */
static int
strip_one(PyObject *exc, PyObject *prefix)
{
    PyObject *tb = PyException_GetTraceback(exc);
    if (tb == NULL) {
        return 0;
    }
    PyObject *start = tb; /* borrowed from here on: tb keeps it alive */
    while (start != Py_None && PyTraceBack_Check(start)
           && is_internal((PyTracebackObject *)start, prefix)) {
        PyObject *next = (PyObject *)((PyTracebackObject *)start)->tb_next;
        start = next != NULL ? next : Py_None;
    }
    int rc = 0;
    if (start != tb) {
        rc = PyException_SetTraceback(exc, start);
    }
    Py_DECREF(tb);
    return rc;
}

/* Drops the leading asyncio/apyrun frames of the current exception's
 * traceback; the exception stays set. Never fails. */
void
apy_tla_strip_internal_frames(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value == NULL) {
        PyErr_Restore(type, value, tb);
        return;
    }
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    PyObject *prefix = asyncio_prefix();
    if (prefix == NULL) {
        /* No asyncio: nothing of it can be in the traceback either. */
        PyErr_Clear();
    } else {
        PyObject *exc = value; /* borrowed: the chain is owned by value */
        for (int i = 0; exc != NULL && i < MAX_CHAIN; i++) {
            if (strip_one(exc, prefix) < 0) {
                PyErr_Clear();
                break;
            }
            PyObject *next = PyException_GetContext(exc);
            Py_XDECREF(next); /* value's chain keeps it alive */
            exc = next;
        }
        Py_DECREF(prefix);
    }
    Py_XDECREF(tb);
    tb = PyException_GetTraceback(value);
    PyErr_Restore(type, value, tb);
}
