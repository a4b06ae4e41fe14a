/* SPDX-License-Identifier: MIT */
/* Who waits for whom among running TLA bodies: whether an exec_module
 * was reached by an awaiter's own import (frames), the current task, and
 * the cycle check behind "a wait that would close a cycle gets the
 * partial module, as python's circular imports do". Only reads the
 * state: it creates no awaiter (lock_unlock.c does, above it). */
#include <Python.h>
#include <frameobject.h>

#include <string.h>

#include "importer.h"

/* Returns 1 if frame runs importlib's own code. */
static int
is_importlib_frame(PyFrameObject *frame)
{
    PyCodeObject *code = PyFrame_GetCode(frame);
    const char *fn = PyUnicode_AsUTF8(code->co_filename);
    int yes = fn != NULL
              && strncmp(fn, "<frozen importlib._bootstrap", 28) == 0;
    Py_DECREF(code);
    PyErr_Clear();
    return yes;
}

/* 1 when this exec_module was reached by an awaiter's own import
 * through importlib alone, else 0; never fails. */
int
apy__importer_is_awaited_import(apy_importer_state_t *st)
{
    if (st->armed_tstate == NULL || st->armed_tstate != PyThreadState_Get()) {
        return 0;
    }
    /* Between exec_module and the awaiting frame there must be importlib
     * and nothing else: a module body in between is synchronous code
     * that imports, and cannot await. */
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    Py_XINCREF(frame);
    while (frame != NULL && frame != st->armed_frame) {
        if (!is_importlib_frame(frame)) {
            Py_DECREF(frame);
            return 0;
        }
        PyFrameObject *back = PyFrame_GetBack(frame);
        Py_DECREF(frame);
        frame = back;
    }
    if (frame == NULL) {
        return st->armed_frame == NULL;
    }
    Py_DECREF(frame);
    return 1;
}

/* The task being stepped: new reference, Py_None outside a task, NULL
 * with an exception set. */
PyObject *
apy__importer_current_task(apy_importer_state_t *st)
{
    /* asyncio.current_task(), without its Python frame: the task the
     * running loop is stepping. */
    PyObject *loop = apy__importer_running_loop();
    if (loop == NULL || loop == Py_None) {
        return loop;
    }
    PyObject *task = PyDict_GetItemWithError(st->current_task, loop);
    Py_DECREF(loop);
    if (task == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    return Py_NewRef(task);
}

/* 1 if waiting for rec's body from here would never end, 0 if not, -1
 * with an exception set. */
int
apy__importer_would_cycle(apy_importer_state_t *st, ApyExecObject *rec)
{
    PyObject *me = apy__importer_current_task(st);
    if (me == NULL) {
        return -1;
    }
    int cycle = me == Py_None;
    PyObject *t = rec->task; /* borrowed: kept alive by its record */
    for (Py_ssize_t hops = 0; !cycle && t != NULL; hops++) {
        if (t == me || hops > PyDict_GET_SIZE(st->waits)) {
            cycle = 1;
            break;
        }
        ApyExecObject *next = (ApyExecObject *)PyDict_GetItemWithError(
            st->waits, t); /* borrowed */
        if (next == NULL) {
            break;
        }
        t = next->task;
    }
    Py_DECREF(me);
    return PyErr_Occurred() ? -1 : cycle;
}
