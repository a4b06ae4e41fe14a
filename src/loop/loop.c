/* SPDX-License-Identifier: MIT */
/* _LoopCore: the C half of apyrun.Loop, the top of the loop's files but
 * state.c. Owns the object's lifetime (new, __init__, finalize, GC,
 * dealloc), the small methods, the method table and the C controls of
 * apyrun/loop.h. The attributes are in attrs.c; the scheduling, running,
 * I/O and signal methods live in their own files. */
#include <Python.h>
#include <pythread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void loop_dealloc(PyObject *self);

#define LOOP(o) ((ApyLoopObject *)(o))

/* 1 if obj is a _LoopCore instance, else 0; never fails. */
static int
is_core(PyObject *obj)
{
    /* _LoopCore has its own layout, so it is on the tp_base chain of
     * every subclass: usually one step up from apyrun.Loop. */
    for (PyTypeObject *tp = Py_TYPE(obj); tp != NULL; tp = tp->tp_base) {
        if (tp->tp_dealloc == loop_dealloc) {
            return 1;
        }
    }
    return 0;
}

/* --- object lifetime --- */

/* _LoopCore.__new__: a new loop with its libuv state, or NULL
 * (TypeError for _LoopCore itself, OSError, MemoryError). */
static PyObject *
loop_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    apy_loop_state_t *st = apy__loop_state_of(type, loop_dealloc);
    if (st != NULL && type == st->core_type) {
        PyErr_SetString(PyExc_TypeError,
                        "_LoopCore is abstract: instantiate apyrun.Loop");
        return NULL;
    }
    ApyLoopObject *self = (ApyLoopObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->st = st;
    apy__ring_init(&self->ready);
    apy__theap_init(&self->timers);
    self->slow_callback_duration = 0.1;
    self->saved_wakeup_fd = -1;
    self->signal_handlers = PyDict_New();
    if (self->signal_handlers == NULL || apy__loop_uv_open(self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* Sets the attributes BaseEventLoop.__init__, BaseSelectorEventLoop's and
 * _UnixSelectorEventLoop's set and that the inherited Python methods read
 * from the instance dict. The C-backed ones are descriptors below. */
static int
loop_init(PyObject *op, PyObject *args, PyObject *kwds)
{
    ApyLoopObject *self = LOOP(op);
    apy_loop_state_t *st = self->st;
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Loop", kwlist)) {
        return -1;
    }
    PyObject *debug = PyObject_CallMethod(st->coroutines, "_is_debug_mode",
                                          NULL);
    if (debug == NULL) {
        return -1;
    }
    int d = PyObject_IsTrue(debug);
    Py_DECREF(debug);
    if (d < 0) {
        return -1;
    }
    self->debug = (char)d;
    /* APYRUN_NATIVE_TCP=0 gives TCP sockets asyncio's selector transports
     * (for bisecting); read per loop so a test can flip it. */
    const char *native = getenv("APYRUN_NATIVE_TCP");
    self->native_tcp = !(native != NULL && strcmp(native, "0") == 0);

    struct {
        const char *name;
        PyObject *factory; /* called for a fresh value, or NULL */
        PyObject *value;
    } attrs[] = {
        {"_default_executor", NULL, Py_None},
        {"_exception_handler", NULL, Py_None},
        {"_asyncgens", st->weakset, NULL},
        {"_asyncgens_shutdown_called", NULL, Py_False},
        {"_executor_shutdown_called", NULL, Py_False},
        {"_transports", st->weakvaluedict, NULL},
        /* No self-pipe: uv_async wakes the loop (and _selector is a view
         * of the uv_poll records, a descriptor below). */
        {"_ssock", NULL, Py_None},
        {"_csock", NULL, Py_None},
    };
    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
        PyObject *v = attrs[i].factory ? PyObject_CallNoArgs(attrs[i].factory)
                                       : Py_NewRef(attrs[i].value);
        if (v == NULL) {
            return -1;
        }
        int r = PyObject_SetAttrString(op, attrs[i].name, v);
        Py_DECREF(v);
        if (r < 0) {
            return -1;
        }
    }
    self->initialised = 1;
    return 0;
}

/* BaseEventLoop.__del__: warn about an unclosed loop and close it. */
static void
loop_finalize(PyObject *op)
{
    ApyLoopObject *self = LOOP(op);
    PyObject *type, *value, *tb;

    if (self->closed || !self->initialised) {
        return;
    }
    PyErr_Fetch(&type, &value, &tb);
    if (PyErr_ResourceWarning(op, 1, "unclosed event loop %R", op) < 0) {
        PyErr_WriteUnraisable(op);
    }
    if (!self->running) {
        PyObject *res = PyObject_CallMethod(op, "close", NULL);
        if (res == NULL) {
            PyErr_WriteUnraisable(op);
        }
        Py_XDECREF(res);
    }
    PyErr_Restore(type, value, tb);
}

static int
loop_traverse(PyObject *op, visitproc visit, void *arg)
{
    ApyLoopObject *self = LOOP(op);
    Py_VISIT(Py_TYPE(op));
    for (size_t i = 0; i < self->ready.len; i++) {
        Py_VISIT((PyObject *)apy__ring_at(&self->ready, i));
    }
    for (size_t i = 0; i < self->timers.len; i++) {
        Py_VISIT((PyObject *)self->timers.v[i].data);
    }
    Py_VISIT(self->task_factory);
    Py_VISIT(self->current_handle);
    Py_VISIT(self->signal_handlers);
    Py_VISIT(self->stall_future);
    Py_VISIT(self->uv_error);
    if (self->uv != NULL) {
        return apy__poll_traverse(self->uv, visit, arg);
    }
    return 0;
}

/* Drops every reference held in the ready queue. Never fails. */
static void
loop_clear_ready(ApyLoopObject *self)
{
    void **items;
    size_t n;
    while (apy__ring_take_all(&self->ready, &items, &n) < 0) {
        /* No memory to unwrap: release one by one instead. */
        PyObject *h = apy__ring_pop(&self->ready);
        Py_DECREF(h);
    }
    for (size_t i = 0; i < n; i++) {
        Py_DECREF((PyObject *)items[i]);
    }
    free(items);
}

static int
loop_clear(PyObject *op)
{
    ApyLoopObject *self = LOOP(op);
    loop_clear_ready(self);
    apy__loop_clear_timers(self);
    Py_CLEAR(self->task_factory);
    Py_CLEAR(self->current_handle);
    Py_CLEAR(self->signal_handlers);
    Py_CLEAR(self->stall_future);
    Py_CLEAR(self->uv_error);
    if (self->uv != NULL) {
        apy__poll_close_all(self->uv);
    }
    return 0;
}

static void
loop_dealloc(PyObject *op)
{
    ApyLoopObject *self = LOOP(op);
    PyTypeObject *tp = Py_TYPE(op);

    PyObject_GC_UnTrack(op);
    /* apyrun.Loop's subtype_dealloc already ran the finalizer (close());
     * whatever is left of libuv is torn down in C. */
    apy__loop_forget_signals(self);
    apy__loop_uv_teardown(self);
    loop_clear(op);
    apy__ring_free(&self->ready);
    apy__theap_free(&self->timers);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* --- small methods --- */

/* loop.time(): new reference to a float. */
static PyObject *
loop_time(PyObject *self, PyObject *unused)
{
    return PyFloat_FromDouble(apy__loop_now());
}

/* loop.is_running(): new reference to a bool. */
static PyObject *
loop_is_running(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(LOOP(self)->running);
}

/* loop.is_closed(): new reference to a bool. */
static PyObject *
loop_is_closed(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(LOOP(self)->closed);
}

/* loop.stop(): None; the loop stops after the current iteration. */
static PyObject *
loop_stop(PyObject *self, PyObject *unused)
{
    LOOP(self)->stopping = 1;
    Py_RETURN_NONE;
}

/* loop.get_debug(): new reference to a bool. */
static PyObject *
loop_get_debug(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(LOOP(self)->debug);
}

/* loop._set_coroutine_origin_tracking(on): None, or NULL. */
static PyObject *
loop_set_origin_tracking(PyObject *self, PyObject *enabled)
{
    int on = PyObject_IsTrue(enabled);
    if (on < 0 || apy__loop_track_origins(LOOP(self), on) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* loop.set_debug(on): None, or NULL. */
static PyObject *
loop_set_debug(PyObject *self, PyObject *enabled)
{
    int on = PyObject_IsTrue(enabled);
    if (on < 0) {
        return NULL;
    }
    LOOP(self)->debug = (char)on;
    if (LOOP(self)->running) {
        /* As asyncio: the tracking depth is per thread, so change it from
         * the loop's thread. */
        PyObject *meth =
            PyObject_GetAttrString(self, "_set_coroutine_origin_tracking");
        if (meth == NULL) {
            return NULL;
        }
        PyObject *args[2] = {meth, enabled};
        PyObject *h = apy__loop_call_soon_threadsafe(self, args, 2, NULL);
        Py_DECREF(meth);
        if (h == NULL) {
            return NULL;
        }
        Py_DECREF(h);
    }
    Py_RETURN_NONE;
}

/* loop._check_closed(): None, or NULL with RuntimeError. */
static PyObject *
loop_check_closed_meth(PyObject *self, PyObject *unused)
{
    if (apy__loop_check_closed(LOOP(self)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* loop._check_thread(): None, or NULL with RuntimeError. */
static PyObject *
loop_check_thread_meth(PyObject *self, PyObject *unused)
{
    if (apy__loop_check_thread(LOOP(self)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* loop.get_task_factory(): new reference (None if unset). */
static PyObject *
loop_get_task_factory(PyObject *self, PyObject *unused)
{
    PyObject *f = LOOP(self)->task_factory;
    return Py_NewRef(f ? f : Py_None);
}

/* loop.set_task_factory(f): None, or NULL with TypeError. */
static PyObject *
loop_set_task_factory(PyObject *self, PyObject *factory)
{
    if (factory != Py_None && !PyCallable_Check(factory)) {
        PyErr_SetString(PyExc_TypeError,
                        "task factory must be a callable or None");
        return NULL;
    }
    Py_XSETREF(LOOP(self)->task_factory,
               factory == Py_None ? NULL : Py_NewRef(factory));
    Py_RETURN_NONE;
}

/* Returns 1/0 for handle._cancelled, -1 on error. */
static int
handle_is_cancelled(ApyLoopObject *self, PyObject *handle)
{
    if (PyObject_TypeCheck(handle, self->st->handle_type)) {
        return ((ApyHandleObject *)handle)->cancelled;
    }
    PyObject *c = PyObject_GetAttr(handle, self->st->str_cancelled_attr);
    if (c == NULL) {
        return -1;
    }
    int r = PyObject_IsTrue(c);
    Py_DECREF(c);
    return r;
}

/* loop._add_callback(handle): None, or NULL. */
static PyObject *
loop_add_callback(PyObject *self, PyObject *handle)
{
    int c = handle_is_cancelled(LOOP(self), handle);
    if (c < 0) {
        return NULL;
    }
    if (!c && apy__loop_push_ready(LOOP(self), handle) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* loop._write_to_self(): None; wakes the loop from any thread. */
static PyObject *
loop_write_to_self(PyObject *self, PyObject *unused)
{
    if (LOOP(self)->uv != NULL) {
        apy__wakeup_send(&LOOP(self)->uv->wakeup);
    }
    Py_RETURN_NONE;
}

/* loop._add_callback_signalsafe(handle): None, or NULL. */
static PyObject *
loop_add_callback_signalsafe(PyObject *self, PyObject *handle)
{
    PyObject *r = loop_add_callback(self, handle);
    if (r != NULL) {
        Py_DECREF(loop_write_to_self(self, NULL));
    }
    return r;
}

/* loop._timer_handle_cancelled(handle): None, or NULL. */
static PyObject *
loop_timer_handle_cancelled(PyObject *self, PyObject *handle)
{
    ApyLoopObject *lo = LOOP(self);
    int scheduled;
    if (PyObject_TypeCheck(handle, lo->st->timer_type)) {
        scheduled = ((ApyTimerHandleObject *)handle)->scheduled;
    }
    else {
        PyObject *s = PyObject_GetAttrString(handle, "_scheduled");
        if (s == NULL) {
            return NULL;
        }
        scheduled = PyObject_IsTrue(s);
        Py_DECREF(s);
        if (scheduled < 0) {
            return NULL;
        }
    }
    if (scheduled) {
        lo->timer_cancelled_count++;
    }
    Py_RETURN_NONE;
}

/* loop._process_events(events): None, always. */
static PyObject *
loop_process_events(PyObject *self, PyObject *events)
{
    /* Selector hook of BaseSelectorEventLoop: libuv dispatches instead. */
    Py_RETURN_NONE;
}

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)
#define FN(f) ((PyCFunction)(void (*)(void))(f))

static PyMethodDef loop_methods[] = {
    {"call_soon", FN(apy__loop_call_soon), FASTKW, NULL},
    {"call_soon_threadsafe", FN(apy__loop_call_soon_threadsafe), FASTKW,
     NULL},
    {"call_later", FN(apy__loop_call_later), FASTKW, NULL},
    {"call_at", FN(apy__loop_call_at), FASTKW, NULL},
    {"time", loop_time, METH_NOARGS, NULL},
    {"create_future", apy__loop_create_future, METH_NOARGS, NULL},
    {"create_task", FN(apy__loop_create_task), FASTKW, NULL},
    {"get_task_factory", loop_get_task_factory, METH_NOARGS, NULL},
    {"set_task_factory", loop_set_task_factory, METH_O, NULL},
    {"run_forever", apy__loop_run_forever, METH_NOARGS, NULL},
    {"run_until_complete", apy__loop_run_until_complete, METH_O, NULL},
    {"_run_once", apy__loop_run_once, METH_NOARGS, NULL},
    {"stop", loop_stop, METH_NOARGS, NULL},
    {"close", apy__loop_close, METH_NOARGS, NULL},
    {"is_running", loop_is_running, METH_NOARGS, NULL},
    {"is_closed", loop_is_closed, METH_NOARGS, NULL},
    {"get_debug", loop_get_debug, METH_NOARGS, NULL},
    {"set_debug", loop_set_debug, METH_O, NULL},
    {"_set_coroutine_origin_tracking", loop_set_origin_tracking, METH_O,
     NULL},
    {"_check_closed", loop_check_closed_meth, METH_NOARGS, NULL},
    {"_check_thread", loop_check_thread_meth, METH_NOARGS, NULL},
    {"_timer_handle_cancelled", loop_timer_handle_cancelled, METH_O, NULL},
    {"_add_callback", loop_add_callback, METH_O, NULL},
    {"_add_callback_signalsafe", loop_add_callback_signalsafe, METH_O, NULL},
    {"_write_to_self", loop_write_to_self, METH_NOARGS, NULL},
    {"_process_events", loop_process_events, METH_O, NULL},
    {"_add_reader", FN(apy__loop_add_reader), METH_FASTCALL, NULL},
    {"_add_writer", FN(apy__loop_add_writer), METH_FASTCALL, NULL},
    {"_remove_reader", apy__loop_remove_reader, METH_O, NULL},
    {"_remove_writer", apy__loop_remove_writer, METH_O, NULL},
    {"add_reader", FN(apy__loop_add_reader_pub), METH_FASTCALL, NULL},
    {"add_writer", FN(apy__loop_add_writer_pub), METH_FASTCALL, NULL},
    {"remove_reader", apy__loop_remove_reader_pub, METH_O, NULL},
    {"remove_writer", apy__loop_remove_writer_pub, METH_O, NULL},
    {"add_signal_handler", FN(apy__loop_add_signal_handler), METH_FASTCALL,
     NULL},
    {"remove_signal_handler", apy__loop_remove_signal_handler, METH_O, NULL},
    {"_handle_signal", apy__loop_handle_signal, METH_O, NULL},
    {"_make_socket_transport", FN(apy__loop_make_socket_transport), FASTKW,
     NULL},
    {"_make_ssl_transport", FN(apy__loop_make_ssl_transport), FASTKW, NULL},
    {"_accept_connection", FN(apy__loop_accept_connection), FASTKW, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot loop_slots[] = {
    {Py_tp_new, loop_new},
    {Py_tp_init, loop_init},
    {Py_tp_finalize, loop_finalize},
    {Py_tp_dealloc, loop_dealloc},
    {Py_tp_traverse, loop_traverse},
    {Py_tp_clear, loop_clear},
    {Py_tp_methods, loop_methods},
    {Py_tp_getset, apy__loop_getset},
    {Py_tp_doc, "C core of apyrun.Loop: scheduling, timers, running, "
                "I/O watchers and signals on libuv."},
    {0, NULL},
};

/* _LoopCore; state.c creates it and builds apyrun.Loop on it. */
PyType_Spec apy__loop_core_spec = {
    .name = "apyrun._LoopCore",
    .basicsize = sizeof(ApyLoopObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = loop_slots,
};

/* 1 for an apyrun loop (flag set), 0 otherwise; never fails. */
int
apy_loop_set_stall_check(PyObject *loop, int on)
{
    if (!is_core(loop)) {
        return 0;
    }
    LOOP(loop)->stall_check = (char)(on != 0);
    return 1;
}

/* 1 for an apyrun loop (*in_callback set), 0 otherwise; never fails. */
int
apy_loop_in_callback(PyObject *loop, int *in_callback)
{
    if (!is_core(loop)) {
        return 0;
    }
    *in_callback = LOOP(loop)->in_callback;
    return 1;
}
