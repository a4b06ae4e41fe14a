/* SPDX-License-Identifier: MIT */
/* The attributes asyncio's inherited Python methods read on a loop
 * (_debug, _closed, _stopping, _thread_id, _ready, _scheduled, ...), as
 * getset descriptors on _LoopCore over the C fields. Read and write the
 * fields only: behaviour belongs to the methods in the files below. */
#include <Python.h>
#include <pythread.h>

#include "internal.h"

#define LOOP(o) ((ApyLoopObject *)(o))

/* New reference to a bool. */
static PyObject *
get_bool(char v)
{
    return PyBool_FromLong(v);
}

static int
set_bool(char *field, PyObject *value)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0) {
        return -1;
    }
    *field = (char)v;
    return 0;
}

/* Getters below return new references (None for unset objects). */
static PyObject *
get_debug_attr(PyObject *self, void *c)
{
    return get_bool(LOOP(self)->debug);
}

static int
set_debug_attr(PyObject *self, PyObject *v, void *c)
{
    return set_bool(&LOOP(self)->debug, v);
}

/* loop._closed: new bool. */
static PyObject *
get_closed_attr(PyObject *self, void *c)
{
    return get_bool(LOOP(self)->closed);
}

/* loop._stopping: new bool. */
static PyObject *
get_stopping_attr(PyObject *self, void *c)
{
    return get_bool(LOOP(self)->stopping);
}

static int
set_stopping_attr(PyObject *self, PyObject *v, void *c)
{
    return set_bool(&LOOP(self)->stopping, v);
}

/* loop._thread_id: new int while running, else None. */
static PyObject *
get_thread_id(PyObject *self, void *c)
{
    if (!LOOP(self)->running) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLong(LOOP(self)->thread_id);
}

/* loop._timer_cancelled_count: new int. */
static PyObject *
get_cancelled_count(PyObject *self, void *c)
{
    return PyLong_FromSsize_t(LOOP(self)->timer_cancelled_count);
}

static int
set_cancelled_count(PyObject *self, PyObject *v, void *c)
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    Py_ssize_t n = PyLong_AsSsize_t(v);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    LOOP(self)->timer_cancelled_count = n;
    return 0;
}

/* loop._task_factory: new reference or None. */
static PyObject *
get_task_factory_attr(PyObject *self, void *c)
{
    PyObject *f = LOOP(self)->task_factory;
    return Py_NewRef(f ? f : Py_None);
}

static int
set_task_factory_attr(PyObject *self, PyObject *v, void *c)
{
    Py_XSETREF(LOOP(self)->task_factory,
               v == NULL || v == Py_None ? NULL : Py_NewRef(v));
    return 0;
}

/* loop._current_handle (debug mode): new reference or None. */
static PyObject *
get_current_handle(PyObject *self, void *c)
{
    PyObject *h = LOOP(self)->current_handle;
    return Py_NewRef(h ? h : Py_None);
}

static int
set_current_handle(PyObject *self, PyObject *v, void *c)
{
    Py_XSETREF(LOOP(self)->current_handle,
               v == NULL || v == Py_None ? NULL : Py_NewRef(v));
    return 0;
}

/* loop.slow_callback_duration: new float. */
static PyObject *
get_slow_duration(PyObject *self, void *c)
{
    return PyFloat_FromDouble(LOOP(self)->slow_callback_duration);
}

static int
set_slow_duration(PyObject *self, PyObject *v, void *c)
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    LOOP(self)->slow_callback_duration = d;
    return 0;
}

/* loop._clock_resolution: new float. */
static PyObject *
get_clock_resolution(PyObject *self, void *c)
{
    return PyFloat_FromDouble(LOOP(self)->st->clock_resolution);
}

/* loop._signal_handlers: new reference to the loop's dict. */
static PyObject *
get_signal_handlers(PyObject *self, void *c)
{
    return Py_NewRef(LOOP(self)->signal_handlers);
}

/* loop._internal_fds: new int. */
static PyObject *
get_internal_fds(PyObject *self, void *c)
{
    /* asyncio counts its self-pipe; ours is the signal pipe. */
    return PyLong_FromLong(LOOP(self)->uv != NULL);
}

/* loop._coroutine_origin_tracking_enabled: new bool. */
static PyObject *
get_origin_tracking(PyObject *self, void *c)
{
    return get_bool(LOOP(self)->origin_tracking);
}

/* A snapshot of the ready queue, oldest first (inspection only). */
static PyObject *
get_ready(PyObject *self, void *c)
{
    apy_ring_t *r = &LOOP(self)->ready;
    PyObject *list = PyList_New((Py_ssize_t)r->len);
    if (list == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < r->len; i++) {
        PyObject *h = apy__ring_at(r, i);
        PyList_SET_ITEM(list, (Py_ssize_t)i, Py_NewRef(h));
    }
    return list;
}

/* A snapshot of the timer heap in heap order (inspection only). */
static PyObject *
get_scheduled(PyObject *self, void *c)
{
    apy_theap_t *h = &LOOP(self)->timers;
    PyObject *list = PyList_New((Py_ssize_t)h->len);
    if (list == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < h->len; i++) {
        PyList_SET_ITEM(list, (Py_ssize_t)i, Py_NewRef(h->v[i].data));
    }
    return list;
}

/* loop._native_tcp: new bool; whether TCP sockets get TCPTransport. */
static PyObject *
get_native_tcp(PyObject *self, void *c)
{
    return get_bool(LOOP(self)->native_tcp);
}

static int
set_native_tcp(PyObject *self, PyObject *v, void *c)
{
    return set_bool(&LOOP(self)->native_tcp, v);
}

/* loop._selector: see apy__loop_selector_view(). */
static PyObject *
get_selector(PyObject *self, void *c)
{
    return apy__loop_selector_view(LOOP(self));
}

/* _LoopCore's descriptors, under the names asyncio's code reads; the
 * type's spec (loop.c) points at this table. */
PyGetSetDef apy__loop_getset[] = {
    {"_selector", get_selector, NULL, NULL, NULL},
    {"_debug", get_debug_attr, set_debug_attr, NULL, NULL},
    {"_closed", get_closed_attr, NULL, NULL, NULL},
    {"_stopping", get_stopping_attr, set_stopping_attr, NULL, NULL},
    {"_thread_id", get_thread_id, NULL, NULL, NULL},
    {"_timer_cancelled_count", get_cancelled_count, set_cancelled_count,
     NULL, NULL},
    {"_task_factory", get_task_factory_attr, set_task_factory_attr, NULL,
     NULL},
    {"_current_handle", get_current_handle, set_current_handle, NULL, NULL},
    {"slow_callback_duration", get_slow_duration, set_slow_duration, NULL,
     NULL},
    {"_clock_resolution", get_clock_resolution, NULL, NULL, NULL},
    {"_signal_handlers", get_signal_handlers, NULL, NULL, NULL},
    {"_internal_fds", get_internal_fds, NULL, NULL, NULL},
    {"_coroutine_origin_tracking_enabled", get_origin_tracking, NULL, NULL,
     NULL},
    {"_ready", get_ready, NULL, NULL, NULL},
    {"_scheduled", get_scheduled, NULL, NULL, NULL},
    {"_native_tcp", get_native_tcp, set_native_tcp, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
