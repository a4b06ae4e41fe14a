/* SPDX-License-Identifier: MIT */
/* libuv errors as Python exceptions, in one place (uvloop's errors.pyx):
 * UV_E* -> OSError, and the exception a libuv callback must not return
 * to libuv with, stashed in the loop until run_once() raises it. Level 1:
 * nothing here calls into the loop's other files. */
#include <Python.h>
#include <errno.h>

#include "internal.h"

/* OSError from a UV_E* code; always returns -1 (contract: internal.h). */
int
apy__loop_set_uv_error(int err)
{
    /* On Unix, libuv's error codes are negated errno values: OSError picks
     * the matching subclass (ConnectionResetError, ...) from errno. */
    errno = -err;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

/* New reference to the pending exception, normalised, traceback attached;
 * NULL if none. Clears it. */
PyObject *
apy__loop_take_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* Keeps the exception for run_once() and stops uv_run; never fails. */
void
apy__loop_stash_error(ApyLoopObject *self)
{
    PyObject *value = apy__loop_take_exception();
    if (value == NULL) {
        return;
    }
    if (self->uv_error != NULL) {
        /* The loop stops with the first; the second must not vanish. */
        PyErr_SetObject((PyObject *)Py_TYPE(value), value);
        PyErr_WriteUnraisable((PyObject *)self);
        Py_DECREF(value);
    }
    else {
        self->uv_error = value;
    }
    if (self->uv != NULL) {
        uv_stop(&self->uv->loop);
    }
}

/* -1 with the stashed exception raised, or 0. */
int
apy__loop_raise_stashed(ApyLoopObject *self)
{
    PyObject *value = self->uv_error;
    if (value == NULL) {
        return 0;
    }
    self->uv_error = NULL;
    PyObject *tb = PyException_GetTraceback(value);
    PyErr_Restore(Py_NewRef(Py_TYPE(value)), value, tb);
    return -1;
}
