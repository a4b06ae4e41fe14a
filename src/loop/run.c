/* SPDX-License-Identifier: MIT */
/* Running the loop: one iteration (poll libuv only when it can matter,
 * dispatch I/O, check signals, move due timers, run the ready callbacks),
 * run_forever, run_until_complete, and the stall check the TLA runner
 * turns on. The GIL is released only around a blocking uv_run; libuv
 * callbacks then touch C state only (see handles/poll.c, wakeup.c). */
#include <Python.h>
#include <math.h>
#include <pythread.h>

#include "internal.h"

#define LOOP(o) ((ApyLoopObject *)(o))

/* asyncio's MAXIMUM_SELECT_TIMEOUT: 24 hours. */
#define MAX_TIMEOUT_MS (24LL * 3600 * 1000)
/* How often a stall-checked loop looks again while threads are alive. */
#define STALL_RECHECK_MS 100

/* --- stall detection --- */

/* Returns 1/0 for obj.name() is true, -1 on error. */
static int
method_true(PyObject *obj, const char *name)
{
    return apy__loop_truth(PyObject_CallMethod(obj, name, NULL));
}

/* Returns 1 when executor is a ThreadPoolExecutor whose threads are all
 * idle with nothing queued, else 0 (anything unexpected counts as busy:
 * waiting is always safe, declaring a stall is not). */
static int
executor_idle(PyObject *executor)
{
    PyObject *threads = NULL, *queue = NULL, *sem = NULL, *value = NULL;
    int idle = 0;

    threads = PyObject_GetAttrString(executor, "_threads");
    if (threads == NULL) {
        goto done;
    }
    queue = PyObject_GetAttrString(executor, "_work_queue");
    if (queue == NULL) {
        goto done;
    }
    sem = PyObject_GetAttrString(executor, "_idle_semaphore");
    if (sem == NULL) {
        goto done;
    }
    value = PyObject_GetAttrString(sem, "_value");
    if (value == NULL) {
        goto done;
    }
    /* A worker releases _idle_semaphore after finishing an item, so one
     * count per thread means every thread waits for work. */
    Py_ssize_t nthreads = PyObject_Size(threads);
    long nidle = PyLong_AsLong(value);
    PyObject *empty = PyObject_CallMethod(queue, "empty", NULL);
    idle = nthreads >= 0 && nidle >= nthreads && empty == Py_True;
    Py_XDECREF(empty);
done:
    PyErr_Clear();
    Py_XDECREF(threads);
    Py_XDECREF(queue);
    Py_XDECREF(sem);
    Py_XDECREF(value);
    return idle;
}

/* Returns 1 if a Python thread other than this one is alive and is not an
 * idle worker of the loop's default executor, 0 if none, -1 on error. */
static int
other_threads_busy(ApyLoopObject *self)
{
    PyObject *threads = PyObject_CallNoArgs(self->st->threading_enumerate);
    if (threads == NULL) {
        return -1;
    }
    PyObject *executor = PyObject_GetAttr((PyObject *)self,
                                          self->st->str_default_executor);
    if (executor == NULL) {
        Py_DECREF(threads);
        return -1;
    }
    PyObject *workers = NULL;
    if (executor != Py_None && executor_idle(executor)) {
        workers = PyObject_GetAttrString(executor, "_threads");
        PyErr_Clear();
    }
    unsigned long me = PyThread_get_thread_ident();
    int busy = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(threads); i++) {
        PyObject *t = PyList_GET_ITEM(threads, i); /* borrowed */
        PyObject *ident = PyObject_GetAttrString(t, "ident");
        if (ident == NULL) {
            busy = -1;
            break;
        }
        if (ident == Py_None) {
            Py_DECREF(ident); /* not started yet: it will do something */
            busy = 1;
            break;
        }
        unsigned long id = PyLong_AsUnsignedLong(ident);
        Py_DECREF(ident);
        if (id == (unsigned long)-1 && PyErr_Occurred()) {
            busy = -1;
            break;
        }
        if (id == me) {
            continue;
        }
        int alive = method_true(t, "is_alive");
        if (alive < 0) {
            busy = -1;
            break;
        }
        if (!alive) {
            continue;
        }
        if (workers != NULL) {
            int w = PySequence_Contains(workers, t);
            if (w < 0) {
                busy = -1;
                break;
            }
            if (w) {
                continue;
            }
        }
        busy = 1;
        break;
    }
    Py_XDECREF(workers);
    Py_DECREF(executor);
    Py_DECREF(threads);
    return busy;
}

/* Decides how long a stall-checked loop about to sleep without deadline
 * may block: returns the timeout in ms (-1: forever, as asyncio), or -2
 * with NeverCompletedError set when nothing can ever complete the
 * future. */
static long long
stall_timeout(ApyLoopObject *self)
{
    PyObject *fut = self->stall_future;
    PyObject *done = PyObject_CallMethod(fut, "done", NULL);
    if (done == NULL) {
        return -2;
    }
    int is_done = done == Py_True;
    Py_DECREF(done);
    /* Referenced libuv handles are user I/O: our own are unreferenced. */
    if (is_done || uv_loop_alive(&self->uv->loop) ||
        PyDict_GET_SIZE(self->signal_handlers) > 0) {
        return -1;
    }
    int busy = other_threads_busy(self);
    if (busy < 0) {
        return -2;
    }
    if (busy) {
        return STALL_RECHECK_MS;
    }
    /* The probes above ran Python code (a thread switch, a signal
     * handler): only trust the verdict if nothing was scheduled since. A
     * worker schedules its result before it counts itself idle. */
    if (self->ready.len > 0 || self->stopping || self->timers.len > 0) {
        return 0;
    }
    PyObject *msg = PyUnicode_FromFormat(
        "run_until_complete() can never complete: %R is pending and "
        "nothing is scheduled to wake it (no callbacks, timers, I/O "
        "watchers, signal handlers or other threads)",
        fut);
    if (msg == NULL) {
        return -2;
    }
    PyObject *exc = PyObject_CallOneArg(self->st->never_completed_error, msg);
    Py_DECREF(msg);
    if (exc != NULL) {
        if (PyObject_SetAttrString(exc, "future", fut) == 0) {
            PyErr_SetObject(self->st->never_completed_error, exc);
        }
        Py_DECREF(exc);
    }
    return -2;
}

/* --- one iteration --- */

/* Debug mode's logger.warning('Executing %s took %.3f seconds', ...)
 * for a slow callback h. Returns 0, or -1 with an exception set. */
static int
warn_slow(apy_loop_state_t *st, PyObject *h, double dt)
{
    PyObject *logger = NULL, *res = NULL;
    PyObject *desc = PyObject_CallMethod(st->base_events, "_format_handle",
                                         "O", h);
    if (desc == NULL) {
        return -1;
    }
    logger = PyObject_GetAttrString(st->base_events, "logger");
    if (logger == NULL) {
        goto done;
    }
    res = PyObject_CallMethod(logger, "warning", "sOd",
                              "Executing %s took %.3f seconds", desc, dt);
done:
    Py_XDECREF(logger);
    Py_DECREF(desc);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* Runs one ready handle (new reference consumed). Returns 0 or -1. */
static int
run_handle(ApyLoopObject *self, PyObject *h)
{
    apy_loop_state_t *st = self->st;
    int r;

    if (Py_IS_TYPE(h, st->handle_type) || Py_IS_TYPE(h, st->timer_type) ||
        PyObject_TypeCheck(h, st->handle_type)) {
        if (((ApyHandleObject *)h)->cancelled) {
            Py_DECREF(h);
            return 0;
        }
        if (!self->debug) {
            r = apy__handle_run((ApyHandleObject *)h);
            Py_DECREF(h);
            return r;
        }
    }
    else {
        /* A foreign handle from _add_callback(): asyncio's protocol. */
        int cancelled =
            apy__loop_truth(PyObject_GetAttr(h, st->str_cancelled_attr));
        if (cancelled != 0) {
            Py_DECREF(h);
            return cancelled < 0 ? -1 : 0;
        }
    }
    if (self->debug) {
        Py_XSETREF(self->current_handle, Py_NewRef(h));
    }
    double t0 = apy__loop_now();
    if (PyObject_TypeCheck(h, st->handle_type)) {
        r = apy__handle_run((ApyHandleObject *)h);
    }
    else {
        PyObject *res = PyObject_CallMethodNoArgs(h, st->str_run);
        Py_XDECREF(res);
        r = res ? 0 : -1;
    }
    if (self->debug) {
        double dt = apy__loop_now() - t0;
        if (r == 0 && dt >= self->slow_callback_duration) {
            r = warn_slow(st, h, dt);
        }
        Py_CLEAR(self->current_handle);
    }
    Py_DECREF(h);
    return r;
}

/* Polls libuv: without blocking when callbacks are ready, else until the
 * nearest deadline, an I/O event, a thread's wakeup or a signal. Returns
 * 0 or -1. */
static int
poll_io(ApyLoopObject *self)
{
    apy_uv_t *uv = self->uv;
    double when;
    int has_deadline = apy__loop_next_deadline(self, &when);

    if (self->ready.len > 0 || self->stopping) {
        /* Internal wakeups need no polling here: thread-safe calls are
         * already in the ready queue (pushed under the GIL) and signals
         * are seen by PyErr_CheckSignals(). So with no user watchers the
         * iteration makes no syscall at all. */
        if (uv_loop_alive(&uv->loop)) {
            apy__poll_preflight(uv);
            uv_run(&uv->loop, UV_RUN_NOWAIT);
        }
        return apy__loop_raise_stashed(self);
    }
    long long timeout = -1;
    if (has_deadline) {
        double d = when - apy__loop_now();
        if (d <= 0) {
            timeout = 0;
        }
        else if (d * 1000.0 >= (double)MAX_TIMEOUT_MS) {
            timeout = MAX_TIMEOUT_MS;
        }
        else {
            /* Round up as select.epoll does, so a wakeup is never early. */
            timeout = (long long)ceil(d * 1000.0);
        }
    }
    if (timeout == 0) {
        if (uv_loop_alive(&uv->loop)) {
            apy__poll_preflight(uv);
            uv_run(&uv->loop, UV_RUN_NOWAIT);
        }
        return apy__loop_raise_stashed(self);
    }
    /* From here another thread must wake us: set the flag before running
     * any Python code (the stall check) that could let one in. */
    self->sleeping = 1;
    if (timeout < 0 && self->stall_future != NULL) {
        timeout = stall_timeout(self);
        if (timeout == -2) {
            self->sleeping = 0;
            return -1;
        }
        if (self->ready.len > 0) {
            timeout = 0;
        }
    }
    apy__poll_preflight(uv);
    apy__wakeup_arm(&uv->wakeup, timeout);
    /* Not Py_BEGIN_ALLOW_THREADS: the thread state is kept in the loop so
     * a libuv callback can take the GIL back (apy__loop_gil_take), which
     * it then keeps until uv_run returns. */
    self->released = PyEval_SaveThread();
    uv_run(&uv->loop, timeout == 0 ? UV_RUN_NOWAIT : UV_RUN_ONCE);
    if (self->released != NULL) {
        PyEval_RestoreThread(self->released);
        self->released = NULL;
    }
    apy__wakeup_disarm(&uv->wakeup);
    self->sleeping = 0;
    return apy__loop_raise_stashed(self);
}

/* One iteration of the loop, as BaseEventLoop._run_once. Returns 0, or -1
 * with the exception that stops the loop. */
static int
run_once(ApyLoopObject *self)
{
    if (poll_io(self) < 0) {
        return -1;
    }
    apy__wakeup_take(&self->uv->wakeup);
    if (self->uv->fired_head != NULL && apy__poll_dispatch(self) < 0) {
        return -1;
    }
    /* Runs Python-level signal handlers: KeyboardInterrupt from the
     * default SIGINT handler surfaces here, as from asyncio's select(). */
    if (PyErr_CheckSignals() < 0) {
        return -1;
    }
    if (self->timers.len > 0 &&
        apy__loop_pop_due_timers(
            self, apy__loop_now() + self->st->clock_resolution) < 0) {
        return -1;
    }
    /* Only what is ready now: callbacks scheduled by these callbacks wait
     * for the next iteration (asyncio's ntodo). in_callback tells a SIGINT
     * handler that user code runs (apy_loop_in_callback): only here does
     * it; a signal that came while the loop slept is handled above, by
     * PyErr_CheckSignals, outside this window. Saved, not just cleared:
     * loop._run_once() may be called from a callback. */
    char outer = self->in_callback;
    int rc = 0;
    self->in_callback = 1;
    for (size_t ntodo = self->ready.len; ntodo > 0; ntodo--) {
        PyObject *h = apy__ring_pop(&self->ready);
        if (h == NULL) {
            break; /* only pops happen here, but never trust a count */
        }
        if (run_handle(self, h) < 0) {
            rc = -1;
            break;
        }
    }
    self->in_callback = outer;
    return rc;
}

/* loop._run_once(): None, or NULL with what stopped the iteration. */
PyObject *
apy__loop_run_once(PyObject *op, PyObject *unused)
{
    if (apy__loop_check_closed(LOOP(op)) < 0 || run_once(LOOP(op)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* --- run_forever / run_until_complete --- */

static int
check_running(ApyLoopObject *self)
{
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError,
                        "This event loop is already running");
        return -1;
    }
    PyObject *running = PyObject_CallMethod(self->st->events,
                                            "_get_running_loop", NULL);
    if (running == NULL) {
        return -1;
    }
    int other = running != Py_None;
    Py_DECREF(running);
    if (other) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot run the event loop while "
                                            "another loop is running");
        return -1;
    }
    return 0;
}

static int
set_running_loop(ApyLoopObject *self, PyObject *loop)
{
    PyObject *r = PyObject_CallMethod(self->st->events, "_set_running_loop",
                                      "O", loop);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* Installs the loop's async generator hooks. New reference to the old
 * hooks, or NULL. */
static PyObject *
swap_asyncgen_hooks(ApyLoopObject *self)
{
    apy_loop_state_t *st = self->st;
    PyObject *old = PyObject_CallNoArgs(st->get_asyncgen_hooks);
    if (old == NULL) {
        return NULL;
    }
    PyObject *args[3] = {NULL, NULL, NULL};
    PyObject *r = NULL;
    args[1] = PyObject_GetAttrString((PyObject *)self,
                                     "_asyncgen_firstiter_hook");
    if (args[1] == NULL) {
        goto error;
    }
    args[2] = PyObject_GetAttrString((PyObject *)self,
                                     "_asyncgen_finalizer_hook");
    if (args[2] == NULL) {
        goto error;
    }
    r = PyObject_Vectorcall(st->set_asyncgen_hooks, args + 1,
                            0 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                            st->kw_firstiter_finalizer);
    if (r == NULL) {
        goto error;
    }
    Py_DECREF(r);
    Py_DECREF(args[1]);
    Py_DECREF(args[2]);
    return old;

error:
    Py_XDECREF(args[1]);
    Py_XDECREF(args[2]);
    Py_DECREF(old);
    return NULL;
}

/* BaseEventLoop.run_forever in C. Returns 0, or -1 with the exception
 * that stopped the loop. */
static int
run_forever_impl(ApyLoopObject *self)
{
    PyObject *old_hooks, *type, *value, *tb;
    int r = 0;

    if (apy__loop_check_closed(self) < 0 || check_running(self) < 0) {
        return -1;
    }
    if (apy__loop_track_origins(self, self->debug) < 0) {
        return -1;
    }
    old_hooks = swap_asyncgen_hooks(self);
    if (old_hooks == NULL) {
        apy__loop_track_origins(self, 0);
        return -1;
    }
    self->thread_id = PyThread_get_thread_ident();
    self->running = 1;
    if (set_running_loop(self, (PyObject *)self) < 0 ||
        apy__loop_wakeup_install(self) < 0) {
        r = -1;
    }
    while (r == 0) {
        if (self->uv == NULL) {
            /* close() from a callback is refused, but dealloc paths are
             * not: never iterate a torn-down loop. */
            PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
            r = -1;
            break;
        }
        r = run_once(self);
        if (self->stopping) {
            break;
        }
    }

    /* The finally: clause; keep the loop's exception over cleanup's. */
    PyErr_Fetch(&type, &value, &tb);
    self->stopping = 0;
    self->running = 0;
    apy__loop_wakeup_uninstall(self);
    if (set_running_loop(self, Py_None) < 0 ||
        apy__loop_track_origins(self, 0) < 0) {
        r = -1;
    }
    PyObject *res = PyObject_Call(self->st->set_asyncgen_hooks, old_hooks,
                                  NULL);
    Py_DECREF(old_hooks);
    if (res == NULL) {
        r = -1;
    }
    Py_XDECREF(res);
    if (type != NULL) {
        if (PyErr_Occurred()) {
            _PyErr_ChainExceptions(type, value, tb);
        }
        else {
            PyErr_Restore(type, value, tb);
        }
        r = -1;
    }
    return r;
}

/* loop.run_forever(): None, or NULL with what stopped the loop. */
PyObject *
apy__loop_run_forever(PyObject *op, PyObject *unused)
{
    if (run_forever_impl(LOOP(op)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
call_method_ignore(PyObject *obj, const char *name, PyObject *arg)
{
    PyObject *r;
    if (arg != NULL) {
        r = PyObject_CallMethod(obj, name, "O", arg);
    }
    else {
        r = PyObject_CallMethod(obj, name, NULL);
    }
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* loop.run_until_complete(f): new reference to the result, or NULL
 * (its exception, RuntimeError, NeverCompletedError). */
PyObject *
apy__loop_run_until_complete(PyObject *op, PyObject *future)
{
    ApyLoopObject *self = LOOP(op);
    apy_loop_state_t *st = self->st;
    PyObject *fut, *type, *value, *tb;
    int new_task;

    if (apy__loop_check_closed(self) < 0 || check_running(self) < 0) {
        return NULL;
    }
    if (PyObject_TypeCheck(future, (PyTypeObject *)st->future_type)) {
        new_task = 0;
    }
    else {
        PyObject *isf = PyObject_CallOneArg(st->isfuture, future);
        if (isf == NULL) {
            return NULL;
        }
        int is_future = PyObject_IsTrue(isf);
        Py_DECREF(isf);
        if (is_future < 0) {
            return NULL;
        }
        new_task = !is_future;
    }
    PyObject *args[3] = {NULL, future, op};
    fut = PyObject_Vectorcall(st->ensure_future, args + 1,
                              1 | PY_VECTORCALL_ARGUMENTS_OFFSET, st->kw_loop);
    if (fut == NULL) {
        return NULL;
    }
    if (new_task &&
        PyObject_SetAttrString(fut, "_log_destroy_pending", Py_False) < 0) {
        goto error;
    }
    if (call_method_ignore(fut, "add_done_callback",
                           st->run_until_complete_cb) < 0) {
        goto error;
    }
    if (self->stall_check) {
        Py_XSETREF(self->stall_future, Py_NewRef(fut));
    }
    int r = run_forever_impl(self);
    Py_CLEAR(self->stall_future);
    if (r < 0) {
        PyErr_Fetch(&type, &value, &tb);
        /* The coroutine raised a BaseException: consume it so the local
         * task does not log "exception was never retrieved". */
        if (new_task && method_true(fut, "done") == 1 &&
            method_true(fut, "cancelled") == 0) {
            call_method_ignore(fut, "exception", NULL);
        }
        PyErr_Clear();
        call_method_ignore(fut, "remove_done_callback",
                           st->run_until_complete_cb);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        goto error;
    }
    if (call_method_ignore(fut, "remove_done_callback",
                           st->run_until_complete_cb) < 0) {
        goto error;
    }
    int done = method_true(fut, "done");
    if (done < 0) {
        goto error;
    }
    if (!done) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Event loop stopped before Future completed.");
        goto error;
    }
    PyObject *res = PyObject_CallMethod(fut, "result", NULL);
    Py_DECREF(fut);
    return res;

error:
    Py_DECREF(fut);
    return NULL;
}


//END
