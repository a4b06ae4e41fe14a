/* SPDX-License-Identifier: MIT */
/* Signals, through Python's own machinery only (never uv_signal): the
 * loop's pipe is Python's wakeup fd while it runs in the main thread, so
 * a signal interrupts a blocked uv_run and PyErr_CheckSignals() runs the
 * Python-level handlers; add_signal_handler() installs a module function
 * as that handler, which queues the loop's Handle. */
#include <Python.h>
#include <errno.h>

#include "internal.h"

#define LOOP(o) ((ApyLoopObject *)(o))

/* --- the wakeup fd --- */

/* 0, or -1 if signal.set_wakeup_fd() failed unexpectedly. */
int
apy__loop_wakeup_install(ApyLoopObject *self)
{
    apy_loop_state_t *st = self->st;
    if (self->wakeup_installed || self->uv == NULL || !_PyOS_IsMainThread()) {
        return 0;
    }
    PyObject *args[3] = {NULL, NULL, Py_False};
    args[1] = PyLong_FromLong(self->uv->wakeup.sig_wfd);
    if (args[1] == NULL) {
        return -1;
    }
    /* warn_on_full_buffer=False: a full pipe already means "wake up". */
    PyObject *old = PyObject_Vectorcall(st->set_wakeup_fd, args + 1,
                                        1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                        st->kw_warn_on_full_buffer);
    Py_DECREF(args[1]);
    if (old == NULL) {
        /* Not the main interpreter: signals are not ours to see. */
        if (PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    self->saved_wakeup_fd = _PyLong_AsInt(old);
    Py_DECREF(old);
    if (self->saved_wakeup_fd == -1 && PyErr_Occurred()) {
        PyErr_Clear();
    }
    self->wakeup_installed = 1;
    return 0;
}

/* signal.set_wakeup_fd(fd). Returns the previous fd, or -2 on error. */
static int
set_wakeup_fd(apy_loop_state_t *st, int fd)
{
    PyObject *res = PyObject_CallFunction(st->set_wakeup_fd, "i", fd);
    if (res == NULL) {
        return -2;
    }
    int prev = _PyLong_AsInt(res);
    Py_DECREF(res);
    return prev;
}

/* Restores the previous wakeup fd; never fails. */
void
apy__loop_wakeup_uninstall(ApyLoopObject *self)
{
    apy_loop_state_t *st = self->st;
    if (!self->wakeup_installed) {
        return;
    }
    self->wakeup_installed = 0;
    int ours = self->uv ? self->uv->wakeup.sig_wfd : -1;
    int prev = set_wakeup_fd(st, self->saved_wakeup_fd);
    if (prev == -2) {
        /* The saved fd went away meanwhile: leave no wakeup fd at all. */
        PyErr_Clear();
        if (set_wakeup_fd(st, -1) == -2) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
    }
    else if (prev != ours) {
        /* Someone replaced ours while we ran: theirs stays. */
        if (set_wakeup_fd(st, prev) == -2) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
    }
    self->saved_wakeup_fd = -1;
}

/* --- add_signal_handler / remove_signal_handler --- */

/* _UnixSelectorEventLoop._check_signal. Returns the number or -1. */
static int
check_signal(apy_loop_state_t *st, PyObject *sig)
{
    if (!PyLong_Check(sig)) {
        PyErr_Format(PyExc_TypeError, "sig must be an int, not %R", sig);
        return -1;
    }
    PyObject *valid = PyObject_CallNoArgs(st->valid_signals);
    if (valid == NULL) {
        return -1;
    }
    int ok = PySequence_Contains(valid, sig);
    Py_DECREF(valid);
    if (ok < 0) {
        return -1;
    }
    long n = -1;
    if (ok) {
        n = PyLong_AsLong(sig);
    }
    if (n <= 0 || n >= APY_NSIG) {
        PyErr_Format(PyExc_ValueError, "invalid signal number %S", sig);
        return -1;
    }
    return (int)n;
}

/* signal.signal(sig, handler); OSError(EINVAL) becomes asyncio's
 * RuntimeError. Returns 0 or -1. */
static int
set_handler(apy_loop_state_t *st, int sig, PyObject *handler)
{
    PyObject *res = PyObject_CallFunction(st->signal_signal, "iO", sig,
                                          handler);
    if (res == NULL) {
        if (PyErr_ExceptionMatches(PyExc_OSError)) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            PyObject *eno = PyObject_GetAttrString(value, "errno");
            int einval = eno != NULL && PyLong_Check(eno) &&
                         PyLong_AsLong(eno) == EINVAL;
            Py_XDECREF(eno);
            if (einval) {
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
                PyErr_Format(PyExc_RuntimeError, "sig %d cannot be caught",
                             sig);
                return -1;
            }
            PyErr_Clear();
            PyErr_Restore(type, value, tb);
        }
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* loop.add_signal_handler(sig, cb, *args): None, or NULL
 * (TypeError, ValueError, RuntimeError as asyncio). */
PyObject *
apy__loop_add_signal_handler(PyObject *op, PyObject *const *args,
                            Py_ssize_t nargs)
{
    ApyLoopObject *self = LOOP(op);
    apy_loop_state_t *st = self->st;
    PyObject *callback, *res, *handle, *key;
    int sig, is_coro;

    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError, "add_signal_handler() missing "
                                         "required arguments 'sig' and "
                                         "'callback'");
        return NULL;
    }
    callback = args[1];
    is_coro = apy__loop_truth(PyObject_CallOneArg(st->iscoroutine, callback));
    if (is_coro == 0) {
        is_coro = apy__loop_truth(
            PyObject_CallOneArg(st->iscoroutinefunction, callback));
    }
    if (is_coro < 0) {
        return NULL;
    }
    if (is_coro) {
        PyErr_SetString(PyExc_TypeError,
                        "coroutines cannot be used with add_signal_handler()");
        return NULL;
    }
    sig = check_signal(st, args[0]);
    if (sig < 0 || apy__loop_check_closed(self) < 0) {
        return NULL;
    }
    /* asyncio learns this from set_wakeup_fd(); the message is Python's. */
    if (!_PyOS_IsMainThread()) {
        PyErr_SetString(PyExc_RuntimeError, "set_wakeup_fd only works in "
                                            "main thread of the main "
                                            "interpreter");
        return NULL;
    }
    handle = apy__handle_new(st, callback, args + 2, nargs - 2, op, NULL,
                            self->debug);
    if (handle == NULL) {
        return NULL;
    }
    key = PyLong_FromLong(sig);
    if (key == NULL ||
        PyDict_SetItem(self->signal_handlers, key, handle) < 0) {
        goto error;
    }
    ApyLoopObject *prev_owner = st->signal_loops[sig];
    st->signal_loops[sig] = self;
    if (set_handler(st, sig, st->signal_dispatch) < 0) {
        st->signal_loops[sig] = prev_owner;
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (PyDict_DelItem(self->signal_handlers, key) < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(type, value, tb);
        goto error;
    }
    /* Restart interrupted syscalls, as asyncio (SA_RESTART). */
    res = PyObject_CallFunction(st->siginterrupt, "iO", sig, Py_False);
    if (res == NULL) {
        goto error;
    }
    Py_DECREF(res);
    Py_DECREF(key);
    Py_DECREF(handle);
    Py_RETURN_NONE;

error:
    Py_XDECREF(key);
    Py_DECREF(handle);
    return NULL;
}

/* Removes sig's registration. Returns 1 if there was one, 0 if not, -1
 * on error. */
static int
remove_handler(ApyLoopObject *self, int sig, PyObject *key)
{
    apy_loop_state_t *st = self->st;
    PyObject *handle = PyDict_GetItemWithError(self->signal_handlers, key);
    if (handle == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (PyDict_DelItem(self->signal_handlers, key) < 0) {
        return -1;
    }
    /* Another loop may have taken the signal over since: leave it be. */
    if (st->signal_loops[sig] != self) {
        return 1;
    }
    st->signal_loops[sig] = NULL;
    PyObject *dfl = sig == SIGINT ? st->default_int_handler : st->sig_dfl;
    return set_handler(st, sig, dfl) < 0 ? -1 : 1;
}

/* loop.remove_signal_handler(sig): new bool, or NULL. */
PyObject *
apy__loop_remove_signal_handler(PyObject *op, PyObject *sig_obj)
{
    ApyLoopObject *self = LOOP(op);
    int sig = check_signal(self->st, sig_obj);
    if (sig < 0) {
        return NULL;
    }
    int r = remove_handler(self, sig, sig_obj);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

/* 0, or -1 if restoring a handler failed. */
int
apy__loop_remove_all_signal_handlers(ApyLoopObject *self)
{
    PyObject *keys = PyDict_Keys(self->signal_handlers);
    if (keys == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *key = PyList_GET_ITEM(keys, i); /* borrowed */
        int sig = PyLong_Check(key) ? _PyLong_AsInt(key) : -1;
        int r;
        PyErr_Clear();
        if (sig <= 0 || sig >= APY_NSIG) {
            /* Put there by hand (tests do): nothing was installed. */
            r = PyDict_DelItem(self->signal_handlers, key);
        }
        else {
            r = remove_handler(self, sig, key);
        }
        if (r < 0) {
            Py_DECREF(keys);
            return -1;
        }
    }
    Py_DECREF(keys);
    return 0;
}

/* Clears self from the per-signal table; never fails. */
void
apy__loop_forget_signals(ApyLoopObject *self)
{
    apy_loop_state_t *st = self->st;
    if (st == NULL) {
        return;
    }
    for (int sig = 0; sig < APY_NSIG; sig++) {
        if (st->signal_loops[sig] == self) {
            st->signal_loops[sig] = NULL;
        }
    }
}

/* loop._handle_signal(sig): None, or NULL. */
PyObject *
apy__loop_handle_signal(PyObject *op, PyObject *sig)
{
    ApyLoopObject *self = LOOP(op);
    PyObject *handle = PyDict_GetItemWithError(self->signal_handlers, sig);
    if (handle == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    Py_INCREF(handle);
    int cancelled = apy__loop_truth(
        PyObject_GetAttr(handle, self->st->str_cancelled_attr));
    PyObject *res = NULL;
    if (cancelled > 0) {
        res = PyObject_CallMethod(op, "remove_signal_handler", "O", sig);
    }
    else if (cancelled == 0 && apy__loop_push_ready(self, handle) == 0) {
        apy__loop_wake(self);
        res = Py_NewRef(Py_None);
    }
    Py_DECREF(handle);
    Py_XDECREF(res);
    if (res == NULL) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* signal_dispatch(signum, frame): the Python-level handler of signals
 * registered with add_signal_handler(). It runs in the main thread at a
 * bytecode boundary or from the loop's PyErr_CheckSignals(), and only
 * queues the loop's Handle, as asyncio's _handle_signal(). */
static PyObject *
signal_dispatch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    apy_loop_state_t *st = apy__loop_state_at(PyModule_GetState(module));
    if (nargs < 1 || !PyLong_Check(args[0])) {
        Py_RETURN_NONE;
    }
    long sig = PyLong_AsLong(args[0]);
    if (sig <= 0 || sig >= APY_NSIG || st->signal_loops[sig] == NULL) {
        Py_RETURN_NONE;
    }
    ApyLoopObject *self = st->signal_loops[sig];
    Py_INCREF(self);
    PyObject *handle = PyDict_GetItemWithError(self->signal_handlers,
                                               args[0]); /* borrowed */
    PyObject *ret = Py_None;
    if (handle == NULL) {
        ret = PyErr_Occurred() ? NULL : Py_None;
    }
    else if (PyObject_TypeCheck(handle, st->handle_type) &&
             ((ApyHandleObject *)handle)->cancelled) {
        if (remove_handler(self, (int)sig, args[0]) < 0) {
            ret = NULL;
        }
    }
    else if (apy__loop_push_ready(self, handle) < 0) {
        ret = NULL;
    }
    else {
        apy__loop_wake(self);
    }
    Py_DECREF(self);
    return Py_XNewRef(ret);
}

/* signal_dispatch as a module function (state.c binds it). */
PyMethodDef apy__signal_dispatch_def = {
    "_signal_dispatch", (PyCFunction)(void (*)(void))signal_dispatch,
    METH_FASTCALL, "Signal handler of apyrun loops' add_signal_handler()."};
