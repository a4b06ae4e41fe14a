/* SPDX-License-Identifier: MIT */
/* The libuv side of a loop's life: opening the uv loop with its internal
 * wakeups, close() with asyncio's semantics, and the C teardown that
 * closes every handle and waits for libuv's close callbacks before the
 * memory is freed. Must not run while the loop is running. */
#include <Python.h>
#include <errno.h>

#include "internal.h"

#define LOOP(o) ((ApyLoopObject *)(o))

/* Teardown passes before giving up on a loop libuv will not close. */
#define TEARDOWN_MAX_PASSES 1000

static void
close_any(uv_handle_t *handle, void *arg)
{
    /* Last resort for handles no closer knew about; their memory is not
     * ours to free, so no callback. */
    if (!uv_is_closing(handle)) {
        uv_close(handle, NULL);
    }
}

/* Closes everything and frees uv once libuv is done with it. */
static void
uv_state_destroy(apy_uv_t *uv)
{
    apy__stream_close_all(uv);
    apy__poll_close_all(uv);
    apy__wakeup_close(&uv->wakeup);
    uv_walk(&uv->loop, close_any, NULL);
    for (int pass = 0; pass < TEARDOWN_MAX_PASSES; pass++) {
        /* Only close callbacks are left to run: this never blocks. */
        uv_run(&uv->loop, UV_RUN_NOWAIT);
        if (apy__wakeup_closed(&uv->wakeup) && uv->nrecords == 0 &&
            uv_loop_close(&uv->loop) == 0) {
            PyMem_RawFree(uv->polls);
            PyMem_RawFree(uv->rbuf);
            PyMem_RawFree(uv);
            return;
        }
    }
    /* Something is still open: leaking is safe, freeing is not. */
}

/* Opens self->uv; 0, or -1 with OSError/MemoryError set. */
int
apy__loop_uv_open(ApyLoopObject *self)
{
    apy_uv_t *uv = PyMem_RawCalloc(1, sizeof(*uv));
    int err;

    if (uv == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    err = uv_loop_init(&uv->loop);
    if (err < 0) {
        PyMem_RawFree(uv);
        return apy__loop_set_uv_error(err);
    }
    err = apy__wakeup_init(&uv->wakeup, &uv->loop);
    if (err < 0) {
        uv_state_destroy(uv);
        return apy__loop_set_uv_error(err);
    }
    self->uv = uv;
    return 0;
}

/* Closes and frees self->uv (leaks it if libuv refuses); never fails. */
void
apy__loop_uv_teardown(ApyLoopObject *self)
{
    apy_uv_t *uv = self->uv;
    if (uv == NULL) {
        return;
    }
    /* Detach first: releasing the Handles may run code that reaches for
     * this loop, and it must find it closed. */
    self->uv = NULL;
    uv_state_destroy(uv);
}

/* The default executor's shutdown(wait=False), as BaseEventLoop.close().
 * Returns 0 or -1. */
static int
shutdown_executor(PyObject *self)
{
    PyObject *executor, *res;
    if (PyObject_SetAttrString(self, "_executor_shutdown_called", Py_True) <
        0) {
        return -1;
    }
    executor = PyObject_GetAttrString(self, "_default_executor");
    if (executor == NULL) {
        return -1;
    }
    if (executor == Py_None) {
        Py_DECREF(executor);
        return 0;
    }
    if (PyObject_SetAttrString(self, "_default_executor", Py_None) < 0) {
        Py_DECREF(executor);
        return -1;
    }
    /* executor.shutdown(wait=False) */
    PyObject *meth = PyObject_GetAttrString(executor, "shutdown");
    Py_DECREF(executor);
    if (meth == NULL) {
        return -1;
    }
    PyObject *args[2] = {NULL, Py_False};
    res = PyObject_Vectorcall(meth, args + 1,
                              0 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                              LOOP(self)->st->kw_wait);
    Py_DECREF(meth);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* _UnixSelectorEventLoop.close()'s signal part. Returns 0 or -1. */
static int
close_signals(ApyLoopObject *self)
{
    if (!_Py_IsFinalizing()) {
        return apy__loop_remove_all_signal_handlers(self);
    }
    if (PyDict_GET_SIZE(self->signal_handlers) > 0) {
        if (PyErr_WarnFormat(PyExc_ResourceWarning, 1,
                             "Closing the loop %R on interpreter shutdown "
                             "stage, skipping signal handlers removal",
                             (PyObject *)self) < 0) {
            return -1;
        }
        PyDict_Clear(self->signal_handlers);
        apy__loop_forget_signals(self);
    }
    return 0;
}

/* loop.close(): None (new reference), or NULL with RuntimeError if
 * running or the first error of the executor/signal cleanup. */
PyObject *
apy__loop_close(PyObject *op, PyObject *unused)
{
    ApyLoopObject *self = LOOP(op);
    int r = 0;

    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Cannot close a running event loop");
        return NULL;
    }
    if (self->closed) {
        Py_RETURN_NONE;
    }
    if (self->debug) {
        PyObject *logger = PyObject_GetAttrString(self->st->base_events,
                                                  "logger");
        if (logger == NULL) {
            return NULL;
        }
        PyObject *res = PyObject_CallMethod(logger, "debug", "sO",
                                            "Close %r", op);
        Py_DECREF(logger);
        if (res == NULL) {
            return NULL;
        }
        Py_DECREF(res);
    }
    self->closed = 1;
    /* Queued callbacks and timers are dropped, as asyncio's clear(). */
    {
        void **items;
        size_t n;
        while (apy__ring_take_all(&self->ready, &items, &n) < 0) {
            Py_DECREF((PyObject *)apy__ring_pop(&self->ready));
        }
        for (size_t i = 0; i < n; i++) {
            Py_DECREF((PyObject *)items[i]);
        }
        free(items);
    }
    apy__loop_clear_timers(self);
    if (shutdown_executor(op) < 0) {
        r = -1;
    }
    /* Keep going on errors: the libuv loop must be closed regardless;
     * the first exception is the one reported. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (close_signals(self) < 0) {
        if (type == NULL) {
            PyErr_Fetch(&type, &value, &tb);
        }
        PyErr_Clear();
        r = -1;
    }
    apy__loop_uv_teardown(self);
    if (r < 0) {
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    Py_RETURN_NONE;
}
