/* SPDX-License-Identifier: MIT */
/* Handle and TimerHandle: asyncio's callback handles as C heap types with
 * asyncio's API and repr, a freelist per type, and the C runner that
 * routes a callback's exception to its loop's exception handler. Knows
 * nothing of the loop's queues: the loop schedules, handles run. */
#include <Python.h>
#include <structmember.h>

#include "internal.h"

static void handle_dealloc(PyObject *self);

static inline int
is_timer(apy_loop_state_t *st, PyObject *self)
{
    return PyObject_TypeCheck(self, st->timer_type);
}

/* Returns the state of a Handle's type; only apyrun's types and their
 * subclasses get here, so it never fails. Borrowed. */
static apy_loop_state_t *
handle_state(PyObject *self)
{
    return apy__loop_state_of(Py_TYPE(self), handle_dealloc);
}

/* Returns 1/0 for loop.get_debug(), -1 on error, without a call for our
 * own loops. */
static int
loop_debug(apy_loop_state_t *st, PyObject *loop)
{
    if (apy__loop_is_core(st, loop)) {
        return ((ApyLoopObject *)loop)->debug;
    }
    PyObject *res = PyObject_CallMethodNoArgs(loop, st->str_get_debug);
    if (res == NULL) {
        return -1;
    }
    int r = PyObject_IsTrue(res);
    Py_DECREF(res);
    return r;
}

/* Returns memory for a Handle of the exact type tp, reused from the
 * freelist when possible, untracked and with NULL fields. New reference,
 * or NULL with MemoryError. */
static ApyHandleObject *
handle_alloc(apy_loop_state_t *st, int timer)
{
    ApyHandleObject *h;
    PyTypeObject *tp = timer ? st->timer_type : st->handle_type;

    if (timer && st->ntimer_free > 0) {
        h = (ApyHandleObject *)st->timer_free[--st->ntimer_free];
        PyObject_Init((PyObject *)h, tp);
    }
    else if (!timer && st->nhandle_free > 0) {
        h = st->handle_free[--st->nhandle_free];
        PyObject_Init((PyObject *)h, tp);
    }
    else if (timer) {
        h = (ApyHandleObject *)PyObject_GC_New(ApyTimerHandleObject, tp);
    }
    else {
        h = PyObject_GC_New(ApyHandleObject, tp);
    }
    if (h == NULL) {
        return NULL;
    }
    h->callback = NULL;
    h->args = NULL;
    h->context = NULL;
    h->loop = NULL;
    h->source_traceback = NULL;
    h->repr = NULL;
    h->weakreflist = NULL;
    h->cancelled = 0;
    return h;
}

/* Records format_helpers.extract_stack() of the innermost Python frame:
 * C call_soon/call_at leave no frame of their own, so, unlike asyncio's
 * Python methods, there is nothing to delete from the end. */
static int
handle_set_traceback(apy_loop_state_t *st, ApyHandleObject *h)
{
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    if (frame == NULL) {
        return 0;
    }
    PyObject *tb = PyObject_CallOneArg(st->extract_stack, (PyObject *)frame);
    if (tb == NULL) {
        return -1;
    }
    h->source_traceback = tb;
    return 0;
}

/* Fills the fields of a fresh Handle. Returns 0 or -1. */
static int
handle_fill(apy_loop_state_t *st, ApyHandleObject *h, PyObject *callback,
            PyObject *const *args, Py_ssize_t nargs, PyObject *loop,
            PyObject *context, int debug)
{
    PyObject *tuple;
    if (nargs == 0) {
        tuple = Py_NewRef(st->empty_tuple);
    }
    else {
        tuple = PyTuple_New(nargs);
        if (tuple == NULL) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < nargs; i++) {
            PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
        }
    }
    h->args = tuple;
    if (context == NULL || context == Py_None) {
        h->context = PyContext_CopyCurrent();
        if (h->context == NULL) {
            return -1;
        }
    }
    else {
        h->context = Py_NewRef(context);
    }
    h->callback = Py_NewRef(callback);
    h->loop = Py_NewRef(loop);
    if (debug && handle_set_traceback(st, h) < 0) {
        return -1;
    }
    return 0;
}

/* New reference to a Handle, or NULL with an exception set. */
PyObject *
apy__handle_new(apy_loop_state_t *st, PyObject *callback,
               PyObject *const *args, Py_ssize_t nargs, PyObject *loop,
               PyObject *context, int debug)
{
    ApyHandleObject *h = handle_alloc(st, 0);
    if (h == NULL) {
        return NULL;
    }
    if (handle_fill(st, h, callback, args, nargs, loop, context, debug) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    PyObject_GC_Track(h);
    return (PyObject *)h;
}

/* New reference to an unscheduled TimerHandle, or NULL. */
PyObject *
apy__timer_new(apy_loop_state_t *st, double when, PyObject *callback,
              PyObject *const *args, Py_ssize_t nargs, PyObject *loop,
              PyObject *context, int debug)
{
    ApyTimerHandleObject *t = (ApyTimerHandleObject *)handle_alloc(st, 1);
    if (t == NULL) {
        return NULL;
    }
    t->when = when;
    t->scheduled = 0;
    if (handle_fill(st, &t->base, callback, args, nargs, loop, context,
                    debug) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    PyObject_GC_Track(t);
    return (PyObject *)t;
}

/* Routes the pending exception of a failed callback as Handle._run does.
 * Returns 0 when the exception handler took it, -1 to propagate. */
static int
handle_report(ApyHandleObject *h)
{
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return -1;
    }
    apy_loop_state_t *st = handle_state((PyObject *)h);
    PyObject *type, *value, *tb;
    PyObject *source = NULL, *msg = NULL, *ctx = NULL, *res = NULL;
    PyObject *cb = h->callback ? h->callback : Py_None;
    PyObject *args = h->args ? h->args : Py_None;

    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    source = PyObject_CallFunctionObjArgs(st->format_callback_source, cb,
                                          args, NULL);
    if (source == NULL) {
        goto error;
    }
    msg = PyUnicode_FromFormat("Exception in callback %U", source);
    if (msg == NULL) {
        goto error;
    }
    ctx = PyDict_New();
    if (ctx == NULL || PyDict_SetItem(ctx, st->str_message, msg) < 0 ||
        PyDict_SetItem(ctx, st->str_exception, value) < 0 ||
        PyDict_SetItem(ctx, st->str_handle, (PyObject *)h) < 0) {
        goto error;
    }
    if (h->source_traceback != NULL &&
        PyObject_IsTrue(h->source_traceback) == 1 &&
        PyDict_SetItem(ctx, st->str_source_traceback, h->source_traceback) <
            0) {
        goto error;
    }
    res = PyObject_CallMethodOneArg(h->loop, st->str_call_exception_handler,
                                    ctx);
    if (res == NULL) {
        goto error;
    }
    Py_DECREF(res);
    Py_DECREF(ctx);
    Py_DECREF(msg);
    Py_DECREF(source);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return 0;

error:
    /* The handler (or formatting) failed: that exception stops the loop,
     * chained to the callback's as Python's except clause would. */
    _PyErr_ChainExceptions(type, value, tb);
    Py_XDECREF(ctx);
    Py_XDECREF(msg);
    Py_XDECREF(source);
    return -1;
}

/* 0, or -1 with the exception that must stop the loop. */
int
apy__handle_run(ApyHandleObject *h)
{
    PyObject *cb = h->callback;
    PyObject *args = h->args;
    PyObject *res;

    if (cb == NULL) {
        return 0; /* cancelled after it was queued */
    }
    /* The callback may cancel its own handle, which drops these fields
     * while the call is still running: hold them. */
    Py_INCREF(cb);
    Py_INCREF(args);
    if (PyContext_Enter(h->context) < 0) {
        res = NULL;
    }
    else {
        res = PyObject_Vectorcall(cb, &PyTuple_GET_ITEM(args, 0),
                                  PyTuple_GET_SIZE(args), NULL);
        if (PyContext_Exit(h->context) < 0) {
            Py_CLEAR(res);
        }
    }
    Py_DECREF(args);
    Py_DECREF(cb);
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    return handle_report(h);
}

/* TimerHandle.cancel() tells the loop first, while still uncancelled. */
static int
timer_notify_loop(apy_loop_state_t *st, ApyHandleObject *h)
{
    ApyTimerHandleObject *t = (ApyTimerHandleObject *)h;
    if (apy__loop_is_core(st, h->loop)) {
        if (t->scheduled) {
            ((ApyLoopObject *)h->loop)->timer_cancelled_count++;
        }
        return 0;
    }
    PyObject *res = PyObject_CallMethodOneArg(
        h->loop, st->str_timer_handle_cancelled, (PyObject *)h);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

/* Handle.cancel(); 0, or -1 if the loop or repr() failed. */
int
apy__handle_cancel(ApyHandleObject *h)
{
    if (h->cancelled) {
        return 0;
    }
    apy_loop_state_t *st = handle_state((PyObject *)h);
    if (is_timer(st, (PyObject *)h) && timer_notify_loop(st, h) < 0) {
        return -1;
    }
    h->cancelled = 1;
    int debug = loop_debug(st, h->loop);
    if (debug < 0) {
        return -1;
    }
    if (debug) {
        /* Keep the callback's description for "Executing ... took". */
        PyObject *r = PyObject_Repr((PyObject *)h);
        if (r == NULL) {
            return -1;
        }
        Py_XSETREF(h->repr, r);
    }
    /* Move out before releasing: a __del__ could reach this handle. */
    PyObject *cb = h->callback, *args = h->args;
    h->callback = NULL;
    h->args = NULL;
    Py_XDECREF(cb);
    Py_XDECREF(args);
    return 0;
}

/* "created at file:line" from the last frame of a source traceback.
 * New reference, or NULL. */
static PyObject *
created_at(PyObject *source_traceback)
{
    PyObject *file = NULL, *line = NULL, *res = NULL;
    PyObject *frame = PySequence_GetItem(source_traceback, -1);
    if (frame == NULL) {
        return NULL;
    }
    file = PySequence_GetItem(frame, 0);
    if (file == NULL) {
        goto done;
    }
    line = PySequence_GetItem(frame, 1);
    if (line == NULL) {
        goto done;
    }
    res = PyUnicode_FromFormat("created at %S:%S", file, line);
done:
    Py_XDECREF(line);
    Py_XDECREF(file);
    Py_DECREF(frame);
    return res;
}

/* Returns the list asyncio's _repr_info() builds. New reference. */
static PyObject *
handle_repr_info(ApyHandleObject *h)
{
    apy_loop_state_t *st = handle_state((PyObject *)h);
    PyObject *info = PyList_New(0), *item = NULL;
    if (info == NULL) {
        return NULL;
    }
    item = PyType_GetName(Py_TYPE(h));
    if (item == NULL || PyList_Append(info, item) < 0) {
        goto error;
    }
    Py_CLEAR(item);
    if (h->cancelled) {
        item = PyUnicode_FromString("cancelled");
        if (item == NULL || PyList_Append(info, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
    }
    if (is_timer(st, (PyObject *)h)) {
        PyObject *when =
            PyFloat_FromDouble(((ApyTimerHandleObject *)h)->when);
        if (when == NULL) {
            goto error;
        }
        item = PyUnicode_FromFormat("when=%R", when);
        Py_DECREF(when);
        if (item == NULL || PyList_Append(info, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
    }
    if (h->callback != NULL) {
        item = PyObject_CallFunctionObjArgs(st->format_callback_source,
                                            h->callback, h->args, NULL);
        if (item == NULL || PyList_Append(info, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
    }
    if (h->source_traceback != NULL &&
        PyObject_IsTrue(h->source_traceback) == 1) {
        item = created_at(h->source_traceback);
        if (item == NULL || PyList_Append(info, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
    }
    return info;

error:
    Py_XDECREF(item);
    Py_DECREF(info);
    return NULL;
}

/* repr(handle) as asyncio's: new reference or NULL. */
static PyObject *
handle_repr(PyObject *self)
{
    ApyHandleObject *h = (ApyHandleObject *)self;
    if (h->repr != NULL) {
        return Py_NewRef(h->repr);
    }
    PyObject *info = handle_repr_info(h);
    if (info == NULL) {
        return NULL;
    }
    PyObject *sep = PyUnicode_FromString(" ");
    if (sep == NULL) {
        Py_DECREF(info);
        return NULL;
    }
    PyObject *joined = PyUnicode_Join(sep, info);
    Py_DECREF(sep);
    Py_DECREF(info);
    if (joined == NULL) {
        return NULL;
    }
    PyObject *res = PyUnicode_FromFormat("<%U>", joined);
    Py_DECREF(joined);
    return res;
}

/* handle.cancel(): None, or NULL on error. */
static PyObject *
handle_cancel_meth(PyObject *self, PyObject *unused)
{
    if (apy__handle_cancel((ApyHandleObject *)self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* handle.cancelled(): a new reference to a bool. */
static PyObject *
handle_cancelled_meth(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(((ApyHandleObject *)self)->cancelled);
}

/* handle.get_context(): new reference to the Context. */
static PyObject *
handle_get_context(PyObject *self, PyObject *unused)
{
    return Py_NewRef(((ApyHandleObject *)self)->context);
}

/* handle._run(): None, or NULL with SystemExit/KeyboardInterrupt
 * or the exception handler's own error. */
static PyObject *
handle_run_meth(PyObject *self, PyObject *unused)
{
    if (apy__handle_run((ApyHandleObject *)self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* timer.when(): new reference to a float. */
static PyObject *
timer_when(PyObject *self, PyObject *unused)
{
    return PyFloat_FromDouble(((ApyTimerHandleObject *)self)->when);
}

/* Handle(callback, args, loop, context=None), as asyncio's constructor;
 * also TimerHandle(when, callback, args, loop, context=None). */
static PyObject *
handle_new_py(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *hkw[] = {"callback", "args", "loop", "context", NULL};
    static char *tkw[] = {"when", "callback", "args", "loop", "context",
                          NULL};
    apy_loop_state_t *st = apy__loop_state_of(type, handle_dealloc);
    PyObject *callback, *cargs, *loop, *context = Py_None, *seq;
    double when = 0;
    int timer = PyType_IsSubtype(type, st->timer_type);

    if (timer) {
        if (!PyArg_ParseTupleAndKeywords(args, kwds, "dOOO|O:TimerHandle",
                                         tkw, &when, &callback, &cargs,
                                         &loop, &context)) {
            return NULL;
        }
    }
    else if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|O:Handle", hkw,
                                          &callback, &cargs, &loop,
                                          &context)) {
        return NULL;
    }
    int debug = loop_debug(st, loop);
    if (debug < 0) {
        return NULL;
    }
    seq = cargs == Py_None ? PyTuple_New(0) : PySequence_Tuple(cargs);
    if (seq == NULL) {
        return NULL;
    }
    ApyHandleObject *h = (ApyHandleObject *)type->tp_alloc(type, 0);
    if (h == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    if (timer) {
        ((ApyTimerHandleObject *)h)->when = when;
    }
    int r = handle_fill(st, h, callback, &PyTuple_GET_ITEM(seq, 0),
                        PyTuple_GET_SIZE(seq), loop, context, debug);
    Py_DECREF(seq);
    if (r < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

static int
handle_traverse(PyObject *self, visitproc visit, void *arg)
{
    ApyHandleObject *h = (ApyHandleObject *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(h->callback);
    Py_VISIT(h->args);
    Py_VISIT(h->context);
    Py_VISIT(h->loop);
    Py_VISIT(h->source_traceback);
    Py_VISIT(h->repr);
    return 0;
}

static int
handle_clear(PyObject *self)
{
    ApyHandleObject *h = (ApyHandleObject *)self;
    Py_CLEAR(h->callback);
    Py_CLEAR(h->args);
    Py_CLEAR(h->context);
    Py_CLEAR(h->loop);
    Py_CLEAR(h->source_traceback);
    Py_CLEAR(h->repr);
    return 0;
}

static void
handle_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    ApyHandleObject *h = (ApyHandleObject *)self;
    apy_loop_state_t *st = NULL;

    PyObject_GC_UnTrack(self);
    if (h->weakreflist != NULL) {
        PyObject_ClearWeakRefs(self);
    }
    handle_clear(self);
    /* Only exact apyrun types are recycled: a subclass's instances have
     * another size and come through subtype_dealloc. */
    if (tp->tp_dealloc == handle_dealloc) {
        st = apy__loop_state_at(PyType_GetModuleState(tp));
    }
    if (st != NULL && !st->freelist_off) {
        if (tp == st->handle_type && st->nhandle_free < APY_FREELIST_MAX) {
            st->handle_free[st->nhandle_free++] = h;
            Py_DECREF(tp);
            return;
        }
        if (tp == st->timer_type && st->ntimer_free < APY_FREELIST_MAX) {
            st->timer_free[st->ntimer_free++] = (ApyTimerHandleObject *)h;
            Py_DECREF(tp);
            return;
        }
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* asyncio.TimerHandle's comparisons: a new bool, NotImplemented for
 * other types, or NULL if comparing callbacks/args raised. */
static PyObject *
timer_richcompare(PyObject *self, PyObject *other, int op)
{
    apy_loop_state_t *st = handle_state(self);
    if (!PyObject_TypeCheck(other, st->timer_type)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    ApyTimerHandleObject *a = (ApyTimerHandleObject *)self;
    ApyTimerHandleObject *b = (ApyTimerHandleObject *)other;
    int eq = 0;
    if (op == Py_EQ || op == Py_NE || op == Py_LE || op == Py_GE) {
        /* asyncio's __eq__: when, callback, args and cancelled. */
        eq = a->when == b->when && a->base.cancelled == b->base.cancelled;
        if (eq) {
            PyObject *ca = a->base.callback ? a->base.callback : Py_None;
            PyObject *cb = b->base.callback ? b->base.callback : Py_None;
            eq = PyObject_RichCompareBool(ca, cb, Py_EQ);
            if (eq < 0) {
                return NULL;
            }
        }
        if (eq) {
            PyObject *aa = a->base.args ? a->base.args : Py_None;
            PyObject *ab = b->base.args ? b->base.args : Py_None;
            eq = PyObject_RichCompareBool(aa, ab, Py_EQ);
            if (eq < 0) {
                return NULL;
            }
        }
    }
    switch (op) {
    case Py_EQ:
        return PyBool_FromLong(eq);
    case Py_NE:
        return PyBool_FromLong(!eq);
    case Py_LT:
        return PyBool_FromLong(a->when < b->when);
    case Py_GT:
        return PyBool_FromLong(a->when > b->when);
    case Py_LE:
        return PyBool_FromLong(a->when < b->when || eq);
    default:
        return PyBool_FromLong(a->when > b->when || eq);
    }
}

static Py_hash_t
timer_hash(PyObject *self)
{
    PyObject *when = PyFloat_FromDouble(((ApyTimerHandleObject *)self)->when);
    if (when == NULL) {
        return -1;
    }
    Py_hash_t h = PyObject_Hash(when);
    Py_DECREF(when);
    return h;
}

static PyMethodDef handle_methods[] = {
    {"cancel", handle_cancel_meth, METH_NOARGS, NULL},
    {"cancelled", handle_cancelled_meth, METH_NOARGS, NULL},
    {"get_context", handle_get_context, METH_NOARGS, NULL},
    {"_run", handle_run_meth, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef handle_members[] = {
    {"_callback", T_OBJECT, offsetof(ApyHandleObject, callback), READONLY},
    {"_args", T_OBJECT, offsetof(ApyHandleObject, args), READONLY},
    {"_context", T_OBJECT, offsetof(ApyHandleObject, context), READONLY},
    {"_loop", T_OBJECT, offsetof(ApyHandleObject, loop), READONLY},
    {"_source_traceback", T_OBJECT,
     offsetof(ApyHandleObject, source_traceback), 0},
    {"_repr", T_OBJECT, offsetof(ApyHandleObject, repr), 0},
    {"_cancelled", T_BOOL, offsetof(ApyHandleObject, cancelled), READONLY},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(ApyHandleObject, weakreflist),
     READONLY},
    {NULL, 0, 0, 0},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_new, handle_new_py},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_repr, handle_repr},
    {Py_tp_methods, handle_methods},
    {Py_tp_members, handle_members},
    {Py_tp_doc, "Object returned by callback registration methods."},
    {0, NULL},
};

/* apyrun.Handle; state.c creates it from this spec. */
PyType_Spec apy__handle_spec = {
    .name = "apyrun.Handle",
    .basicsize = sizeof(ApyHandleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = handle_slots,
};

static PyMethodDef timer_methods[] = {
    {"when", timer_when, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef timer_members[] = {
    {"_when", T_DOUBLE, offsetof(ApyTimerHandleObject, when), READONLY},
    {"_scheduled", T_BOOL, offsetof(ApyTimerHandleObject, scheduled),
     READONLY},
    {NULL, 0, 0, 0},
};

static PyType_Slot timer_slots[] = {
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_richcompare, timer_richcompare},
    {Py_tp_hash, timer_hash},
    {Py_tp_methods, timer_methods},
    {Py_tp_members, timer_members},
    {Py_tp_doc, "Object returned by timed callback registration methods."},
    {0, NULL},
};

/* apyrun.TimerHandle, a Handle subclass (base given by state.c). */
PyType_Spec apy__timer_spec = {
    .name = "apyrun.TimerHandle",
    .basicsize = sizeof(ApyTimerHandleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = timer_slots,
};
