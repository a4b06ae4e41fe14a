/* SPDX-License-Identifier: MIT */
/* The loop's primitives (level 1), called by every file above: the
 * clock, the ready queue's push, the cross-thread wake, the closed and
 * thread checks, origin tracking, and finding the loop state of a type.
 * Only queues.c and wakeup.c below; no method tables, no libuv handles. */
#include <Python.h>
#include <pythread.h>
#include <time.h>

#include "internal.h"

/* Seconds on CLOCK_MONOTONIC; never fails. */
double
apy__loop_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* time.monotonic() turns the same nanosecond count into seconds the
     * same way, so loop.time() and time.monotonic() agree exactly. */
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    return (double)ns / 1e9;
}

/* 0, or -1 with MemoryError; takes a new reference. */
int
apy__loop_push_ready(ApyLoopObject *self, PyObject *handle)
{
    if (apy__ring_push(&self->ready, handle) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    Py_INCREF(handle);
    return 0;
}

/* Sends the uv_async only if the loop may be blocked; never fails. */
void
apy__loop_wake(ApyLoopObject *self)
{
    /* Only a loop blocked in uv_run needs the syscall; while it runs
     * callbacks it holds the GIL, and so sees the ready queue itself. */
    if (self->sleeping && self->uv != NULL) {
        apy__wakeup_send(&self->uv->wakeup);
    }
}

/* 0, or -1 with RuntimeError once closed. */
int
apy__loop_check_closed(ApyLoopObject *self)
{
    if (self->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    return 0;
}

/* 0, or -1 with RuntimeError from a foreign thread while running. */
int
apy__loop_check_thread(ApyLoopObject *self)
{
    if (!self->running) {
        return 0;
    }
    if (PyThread_get_thread_ident() != self->thread_id) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Non-thread-safe operation invoked on an event loop "
                        "other than the current one");
        return -1;
    }
    return 0;
}

/* 1 if obj is a _LoopCore instance (of any module instance), else 0;
 * never fails. */
int
apy__loop_is_core(apy_loop_state_t *st, PyObject *obj)
{
    /* _LoopCore has its own layout, so it is on the tp_base chain of
     * every subclass: usually one step up from apyrun.Loop. */
    for (PyTypeObject *tp = Py_TYPE(obj); tp != NULL; tp = tp->tp_base) {
        if (tp->tp_dealloc == st->core_dealloc) {
            return 1;
        }
    }
    return 0;
}

/* sys.set_coroutine_origin_tracking_depth() dance of BaseEventLoop's
 * _set_coroutine_origin_tracking(): 0, or -1 if sys.* failed. */
int
apy__loop_track_origins(ApyLoopObject *self, int enabled)
{
    apy_loop_state_t *st = self->st;
    PyObject *res;
    if (!enabled == !self->origin_tracking) {
        return 0;
    }
    if (enabled) {
        res = PyObject_CallNoArgs(st->get_origin_depth);
        if (res == NULL) {
            return -1;
        }
        self->saved_origin_depth = _PyLong_AsInt(res);
        Py_DECREF(res);
        if (self->saved_origin_depth == -1 && PyErr_Occurred()) {
            return -1;
        }
        /* asyncio.constants.DEBUG_STACK_DEPTH */
        res = PyObject_CallFunction(st->set_origin_depth, "i", 10);
    }
    else {
        res = PyObject_CallFunction(st->set_origin_depth, "i",
                                    self->saved_origin_depth);
    }
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    self->origin_tracking = (char)(enabled != 0);
    return 0;
}

/* Borrowed state, or NULL (no exception) for foreign types. */
apy_loop_state_t *
apy__loop_state_of(PyTypeObject *tp, destructor marker)
{
    /* Our types have their own layouts, so they sit on the tp_base chain
     * of any subclass, Python-level ones included. */
    for (; tp != NULL; tp = tp->tp_base) {
        if (tp->tp_dealloc == marker) {
            return apy__loop_state_at(PyType_GetModuleState(tp));
        }
    }
    return NULL;
}
