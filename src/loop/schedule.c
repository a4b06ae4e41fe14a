/* SPDX-License-Identifier: MIT */
/* Scheduling: call_soon, call_soon_threadsafe, call_later, call_at,
 * create_future and create_task, plus the loop's side of the timer heap
 * (lazy cancellation, compaction, due timers). These are the hot methods
 * _asyncio's C Task and Future call, so they parse vectorcall arguments
 * themselves and never look anything up by name. */
#include <Python.h>

#include "internal.h"

#define LOOP(o) ((ApyLoopObject *)(o))

/* asyncio compacts the heap when more than half of over 100 entries are
 * cancelled (base_events._MIN_SCHEDULED_TIMER_HANDLES and
 * _MIN_CANCELLED_TIMER_HANDLES_FRACTION). */
#define MIN_SCHEDULED_FOR_COMPACTION 100

/* Finds context= among the keywords of a vectorcall; the positional
 * arguments are the callback's (*args). Returns 0 with *context set
 * (borrowed, NULL if absent), or -1 with TypeError for any other
 * keyword. */
static inline int
parse_context(apy_loop_state_t *st, const char *fname, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames, PyObject **context)
{
    return apy__args_parse(fname, args + nargs, 0, kwnames, st->args_context,
                           0, 0, context);
}

static int
missing(const char *fname, const char *names)
{
    PyErr_Format(PyExc_TypeError, "%s() missing required argument(s): %s",
                 fname, names);
    return -1;
}

/* Debug-mode checks of asyncio: the calling thread (unless threadsafe)
 * and _check_callback(), which stays Python since it only runs in debug
 * mode. Returns 0 or -1. */
static int
debug_checks(ApyLoopObject *self, PyObject *callback, const char *method,
             int check_thread)
{
    if (check_thread && apy__loop_check_thread(self) < 0) {
        return -1;
    }
    PyObject *res = PyObject_CallMethod((PyObject *)self, "_check_callback",
                                        "Os", callback, method);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

/* loop.call_soon(cb, *args, context=None): new Handle, or NULL. */
PyObject *
apy__loop_call_soon(PyObject *op, PyObject *const *args, Py_ssize_t nargsf,
                   PyObject *kwnames)
{
    ApyLoopObject *self = LOOP(op);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context, *h;

    if (parse_context(self->st, "call_soon", args, nargs, kwnames,
                      &context) < 0) {
        return NULL;
    }
    if (nargs < 1) {
        missing("call_soon", "'callback'");
        return NULL;
    }
    if (apy__loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->debug && debug_checks(self, args[0], "call_soon", 1) < 0) {
        return NULL;
    }
    h = apy__handle_new(self->st, args[0], args + 1, nargs - 1, op, context,
                       self->debug);
    if (h == NULL) {
        return NULL;
    }
    if (apy__loop_push_ready(self, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return h;
}

/* loop.call_soon_threadsafe(...): new Handle, or NULL. */
PyObject *
apy__loop_call_soon_threadsafe(PyObject *op, PyObject *const *args,
                              Py_ssize_t nargsf, PyObject *kwnames)
{
    ApyLoopObject *self = LOOP(op);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context, *h;

    if (parse_context(self->st, "call_soon_threadsafe", args, nargs,
                      kwnames, &context) < 0) {
        return NULL;
    }
    if (nargs < 1) {
        missing("call_soon_threadsafe", "'callback'");
        return NULL;
    }
    if (apy__loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->debug &&
        debug_checks(self, args[0], "call_soon_threadsafe", 0) < 0) {
        return NULL;
    }
    h = apy__handle_new(self->st, args[0], args + 1, nargs - 1, op, context,
                       self->debug);
    if (h == NULL) {
        return NULL;
    }
    /* The caller holds the GIL, which serialises this push with the loop
     * thread; only the wakeup has to cross threads. */
    if (apy__loop_push_ready(self, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    apy__loop_wake(self);
    return h;
}

/* Schedules callback(*args) at when. New reference to the TimerHandle,
 * or NULL with an exception set. */
static PyObject *
call_at_impl(ApyLoopObject *self, double when, PyObject *callback,
             PyObject *const *args, Py_ssize_t nargs, PyObject *context)
{
    PyObject *t;
    if (apy__loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->debug && debug_checks(self, callback, "call_at", 1) < 0) {
        return NULL;
    }
    t = apy__timer_new(self->st, when, callback, args, nargs,
                      (PyObject *)self, context, self->debug);
    if (t == NULL) {
        return NULL;
    }
    if (apy__theap_push(&self->timers, when, self->timer_seq++, t) < 0) {
        Py_DECREF(t);
        return PyErr_NoMemory();
    }
    Py_INCREF(t); /* the heap's reference */
    ((ApyTimerHandleObject *)t)->scheduled = 1;
    return t;
}

/* The arguments of call_later/call_at: (time, callback, *args,
 * context=None), with asyncio's messages for each method. Sets *context
 * (borrowed) and *t. Returns 0, or -1 with an exception set. */
static int
parse_timer_args(ApyLoopObject *self, const char *method, const char *needs,
                 const char *none_msg, PyObject *const *args,
                 Py_ssize_t nargs, PyObject *kwnames, PyObject **context,
                 double *t)
{
    if (parse_context(self->st, method, args, nargs, kwnames, context) < 0) {
        return -1;
    }
    if (nargs < 2) {
        missing(method, needs);
        return -1;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, none_msg);
        return -1;
    }
    *t = PyFloat_AsDouble(args[0]);
    return *t == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* loop.call_later(delay, cb, *args, context=None): new
 * TimerHandle, or NULL (TypeError for a None delay). */
PyObject *
apy__loop_call_later(PyObject *op, PyObject *const *args, Py_ssize_t nargsf,
                    PyObject *kwnames)
{
    ApyLoopObject *self = LOOP(op);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context;

    double delay;
    if (parse_timer_args(self, "call_later", "'delay' and 'callback'",
                         "delay must not be None", args, nargs, kwnames,
                         &context, &delay) < 0) {
        return NULL;
    }
    return call_at_impl(self, apy__loop_now() + delay, args[1], args + 2,
                        nargs - 2, context);
}

/* loop.call_at(when, cb, *args, context=None): new TimerHandle, or
 * NULL. */
PyObject *
apy__loop_call_at(PyObject *op, PyObject *const *args, Py_ssize_t nargsf,
                 PyObject *kwnames)
{
    ApyLoopObject *self = LOOP(op);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context;

    double when;
    if (parse_timer_args(self, "call_at", "'when' and 'callback'",
                         "when cannot be None", args, nargs, kwnames,
                         &context, &when) < 0) {
        return NULL;
    }
    return call_at_impl(self, when, args[1], args + 2, nargs - 2, context);
}

/* loop.create_future(): new Future, or NULL. */
PyObject *
apy__loop_create_future(PyObject *op, PyObject *unused)
{
    /* _asyncio.Future(loop=self); args[0] is the PY_VECTORCALL_ARGUMENTS_
     * OFFSET scratch slot. */
    PyObject *args[2] = {NULL, op};
    return PyObject_Vectorcall(LOOP(op)->st->future_type, args + 1,
                               0 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                               LOOP(op)->st->kw_loop);
}

/* loop.create_task(coro, *, name=None, context=None): new Task
 * (or the factory's result), or NULL. */
PyObject *
apy__loop_create_task(PyObject *op, PyObject *const *args, Py_ssize_t nargsf,
                     PyObject *kwnames)
{
    ApyLoopObject *self = LOOP(op);
    apy_loop_state_t *st = self->st;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *a[3], *task;

    /* create_task(coro, *, name=None, context=None) */
    if (apy__args_parse("create_task", args, nargs, kwnames,
                        st->args_create_task, 1, 1, a) < 0) {
        return NULL;
    }
    PyObject *coro = a[0];
    PyObject *name = a[1] != NULL ? a[1] : Py_None;
    PyObject *context = a[2] != NULL ? a[2] : Py_None;
    if (apy__loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->task_factory == NULL) {
        /* _asyncio.Task(coro, loop=self[, name=][, context=]) without
         * passing None keywords the Task would only have to skip. */
        PyObject *cargs[5] = {NULL, coro, op, NULL, NULL};
        PyObject *kw = st->kw_loop;
        if (name != Py_None && context != Py_None) {
            cargs[3] = name;
            cargs[4] = context;
            kw = st->kw_loop_name_context;
        }
        else if (name != Py_None) {
            cargs[3] = name;
            kw = st->kw_loop_name;
        }
        else if (context != Py_None) {
            cargs[3] = context;
            kw = st->kw_loop_context;
        }
        return PyObject_Vectorcall(st->task_type, cargs + 1,
                                   1 | PY_VECTORCALL_ARGUMENTS_OFFSET, kw);
    }
    if (context == Py_None) {
        /* The legacy factory signature, as asyncio. */
        task = PyObject_CallFunctionObjArgs(self->task_factory, op, coro,
                                            NULL);
    }
    else {
        PyObject *fargs[3] = {op, coro, context};
        task = PyObject_Vectorcall(self->task_factory, fargs, 2,
                                   st->kw_context);
    }
    if (task == NULL) {
        return NULL;
    }
    PyObject *r =
        PyObject_CallFunctionObjArgs(st->set_task_name, task, name, NULL);
    if (r == NULL) {
        Py_DECREF(task);
        return NULL;
    }
    Py_DECREF(r);
    return task;
}

/* --- the timer heap, loop side --- */

/* Unschedules every timer; never fails. */
void
apy__loop_clear_timers(ApyLoopObject *self)
{
    /* Take the array first: releasing a handle may run code that
     * schedules again, which must find a consistent (empty) heap. */
    apy_theap_t old = self->timers;
    apy__theap_init(&self->timers);
    self->timer_cancelled_count = 0;
    for (size_t i = 0; i < old.len; i++) {
        ApyTimerHandleObject *t = old.v[i].data;
        t->scheduled = 0;
    }
    for (size_t i = 0; i < old.len; i++) {
        Py_DECREF((PyObject *)old.v[i].data);
    }
    apy__theap_free(&old);
}

typedef struct {
    PyObject **dead;
    size_t n;
} dead_list_t;

static int
timer_is_dead(void *data, void *arg)
{
    ApyTimerHandleObject *t = data;
    dead_list_t *dl = arg;
    if (!t->base.cancelled) {
        return 0;
    }
    t->scheduled = 0;
    dl->dead[dl->n++] = data;
    return 1;
}

/* Rebuilds the heap without its cancelled timers. */
static void
timers_compact(ApyLoopObject *self)
{
    dead_list_t dl = {malloc(self->timers.len * sizeof(PyObject *)), 0};
    if (dl.dead == NULL) {
        return; /* try again next iteration; the head loop still works */
    }
    apy__theap_remove_if(&self->timers, timer_is_dead, &dl);
    self->timer_cancelled_count = 0;
    for (size_t i = 0; i < dl.n; i++) {
        Py_DECREF(dl.dead[i]);
    }
    free(dl.dead);
}

/* 1 with *when set if a live timer exists, else 0; never fails. */
int
apy__loop_next_deadline(ApyLoopObject *self, double *when)
{
    apy_theap_t *h = &self->timers;
    apy_theap_entry_t e;

    if (h->len > MIN_SCHEDULED_FOR_COMPACTION &&
        (size_t)self->timer_cancelled_count * 2 > h->len) {
        timers_compact(self);
    }
    while (h->len > 0 &&
           ((ApyTimerHandleObject *)h->v[0].data)->base.cancelled) {
        apy__theap_pop(h, &e);
        ((ApyTimerHandleObject *)e.data)->scheduled = 0;
        self->timer_cancelled_count--;
        Py_DECREF((PyObject *)e.data);
    }
    if (h->len == 0) {
        return 0;
    }
    *when = h->v[0].when;
    return 1;
}

/* 0, or -1 with MemoryError. */
int
apy__loop_pop_due_timers(ApyLoopObject *self, double end_time)
{
    apy_theap_t *h = &self->timers;
    apy_theap_entry_t e;

    while (h->len > 0 && h->v[0].when < end_time) {
        apy__theap_pop(h, &e);
        ((ApyTimerHandleObject *)e.data)->scheduled = 0;
        /* The heap's reference moves to the ready queue. */
        if (apy__ring_push(&self->ready, e.data) < 0) {
            Py_DECREF((PyObject *)e.data);
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}
