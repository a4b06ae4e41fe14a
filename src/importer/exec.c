/* SPDX-License-Identifier: MIT */
/* Running a module body the loaders got from get_code, plain as importlib
 * runs it, TLA on apyrun's one persistent loop (no loop running here),
 * handed to an awaiter (under its import) or refused (AsyncImportError);
 * and the life cycle of one running body, the Exec object. */
#include <Python.h>

#include <stdio.h>
#include <time.h>

#include "apyrun/importer.h"
#include "apyrun/tla.h"
#include "importer.h"

/* TLA code (a CO_COROUTINE module body) runs:
 *   - with no loop running in this thread: to completion on apyrun's one
 *     persistent loop (never a loop per import), so that what the body
 *     starts outlives the import;
 *   - under an awaiter's import (awaiter.c): handed over to it, through a
 *     private exception that unwinds importlib, to be awaited;
 *   - otherwise: AsyncImportError, never a nested loop.
 * The Exec object: sys.modules registration for awaited bodies, waking
 * the tasks that share it. */

static double
monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --- the Exec object ------------------------------------------------- */

static int
exec_traverse(ApyExecObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->name);
    Py_VISIT(self->module);
    Py_VISIT(self->coro);
    Py_VISIT(self->task);
    Py_VISIT(self->waiters);
    Py_VISIT(self->alias);
    return 0;
}

static int
exec_clear(ApyExecObject *self)
{
    Py_CLEAR(self->name);
    Py_CLEAR(self->module);
    Py_CLEAR(self->coro);
    Py_CLEAR(self->task);
    Py_CLEAR(self->waiters);
    Py_CLEAR(self->alias);
    return 0;
}

static void
exec_dealloc(ApyExecObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    exec_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
exec_repr(ApyExecObject *self)
{
    return PyUnicode_FromFormat("<running import of %R>", self->name);
}

static PyType_Slot exec_slots[] = {
    {Py_tp_traverse, exec_traverse},
    {Py_tp_clear, exec_clear},
    {Py_tp_dealloc, exec_dealloc},
    {Py_tp_repr, exec_repr},
    {0, NULL},
};

PyType_Spec apy__importer_exec_spec = {
    .name = "_apyrun_importer._Execution",
    .basicsize = sizeof(ApyExecObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = exec_slots,
};

/* A new Exec object for module: new reference, or NULL with an exception
 * set. */
ApyExecObject *
apy__importer_exec_new(apy_importer_state_t *st, PyObject *module,
                       PyObject *coro, PyObject *alias)
{
    PyObject *name = PyObject_GetAttrString(module, "__name__");
    if (name == NULL) {
        return NULL;
    }
    ApyExecObject *rec = PyObject_GC_New(ApyExecObject, st->exec_type);
    if (rec == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    rec->name = name;
    rec->module = Py_NewRef(module);
    rec->coro = Py_XNewRef(coro);
    rec->task = NULL;
    rec->alias = Py_XNewRef(alias);
    rec->waiters = PyList_New(0);
    rec->started = monotonic();
    rec->sync = 0;
    rec->depth = 0;
    PyObject_GC_Track(rec);
    if (rec->waiters == NULL) {
        Py_DECREF(rec);
        return NULL;
    }
    return rec;
}

/* Sets module.__spec__._initializing, as _load_unlocked does while a
 * body runs (python's circular-import messages rely on it). */
static void
set_initializing(PyObject *module, int on)
{
    PyObject *spec = PyObject_GetAttrString(module, "__spec__");
    if (spec == NULL || spec == Py_None
        || PyObject_SetAttrString(spec, "_initializing",
                                  on ? Py_True : Py_False) < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(spec);
}

/* Finds the parent module of `name` in sys.modules. Returns 1 with new
 * references to it in *parent and to the child's last name component in
 * *child; 0 with both NULL when there is none. Never fails: an error on
 * the way is cleared and counts as none, as the callers only keep
 * importlib's bookkeeping. */
static int
parent_of(PyObject *name, PyObject **parent, PyObject **child)
{
    PyObject *pname = NULL;

    *parent = *child = NULL;
    Py_ssize_t len = PyUnicode_GET_LENGTH(name);
    Py_ssize_t dot = PyUnicode_FindChar(name, '.', 0, len, -1);
    if (dot < 0) {
        return 0;
    }
    pname = PyUnicode_Substring(name, 0, dot);
    if (pname == NULL) {
        goto none;
    }
    *child = PyUnicode_Substring(name, dot + 1, len);
    if (*child == NULL) {
        goto none;
    }
    *parent = PyImport_GetModule(pname);
    if (*parent == NULL) {
        goto none;
    }
    Py_DECREF(pname);
    return 1;

none:
    PyErr_Clear();
    Py_CLEAR(*child);
    Py_XDECREF(pname);
    return 0;
}

/* Adds (on) or removes the child from its parent's
 * __spec__._uninitialized_submodules, as _find_and_load_unlocked does
 * around a load (3.11's "partially initialized" messages read it). */
static void
track_submodule(PyObject *name, int on)
{
    PyObject *parent, *child;
    if (!parent_of(name, &parent, &child)) {
        return;
    }
    PyObject *subs = NULL;
    PyObject *spec = PyObject_GetAttrString(parent, "__spec__");
    if (spec != NULL && spec != Py_None) {
        subs = PyObject_GetAttrString(spec, "_uninitialized_submodules");
    }
    /* Only messages read the list: failing to keep it is no error. */
    if (subs != NULL && PyList_Check(subs)) {
        if (on) {
            (void)PyList_Append(subs, child);
        } else {
            PyObject *r = PyObject_CallMethod(subs, "remove", "O", child);
            Py_XDECREF(r);
        }
    }
    PyErr_Clear();
    Py_XDECREF(subs);
    Py_XDECREF(spec);
    Py_DECREF(child);
    Py_DECREF(parent);
}

/* What the other importers of rec get when its body failed with exc:
 * exc itself, except that a cancelled or abandoned body reaches them as
 * AsyncImportError (caused by exc), not as a CancelledError of a task
 * nobody cancelled. A new reference; never fails (trouble on the way
 * gives exc itself). Call with no exception set. */
static PyObject *
waiters_exception(apy_importer_state_t *st, ApyExecObject *rec,
                  PyObject *exc)
{
    int abandoned = PyErr_GivenExceptionMatches(exc, PyExc_GeneratorExit);
    if (!abandoned && PyErr_GivenExceptionMatches(exc, PyExc_Exception)) {
        return Py_NewRef(exc);
    }
    int was_cancelled = 0;
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio != NULL) {
        PyObject *cancelled = PyObject_GetAttrString(asyncio,
                                                     "CancelledError");
        if (cancelled != NULL) {
            was_cancelled = PyErr_GivenExceptionMatches(exc, cancelled);
            Py_DECREF(cancelled);
        }
        Py_DECREF(asyncio);
    }
    PyErr_Clear(); /* no asyncio to ask: not a cancellation */
    PyObject *err = NULL;
    if (was_cancelled || abandoned) {
        PyObject *msg = PyUnicode_FromFormat(
            "import of %R was %s in the task that ran it", rec->name,
            was_cancelled ? "cancelled" : "abandoned");
        if (msg != NULL) {
            err = PyObject_CallOneArg(st->async_import_error, msg);
            Py_DECREF(msg);
        }
    }
    PyErr_Clear();
    if (err == NULL) {
        return Py_NewRef(exc);
    }
    PyException_SetCause(err, Py_NewRef(exc));
    return err;
}

/* Wakes the other importers of rec: each waiting future gets the result
 * (exc NULL) or the exception waiters_exception gives for exc. The
 * current exception, if any, is kept. */
static void
wake_waiters(apy_importer_state_t *st, ApyExecObject *rec, PyObject *exc)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    /* Futures' callbacks may import: take the list out first. Without
     * memory for a new one, wake from the old list itself (rec->waiters
     * is never NULL: awaiters append to it). */
    PyObject *fresh = PyList_New(0);
    PyObject *waiters;
    if (fresh != NULL) {
        waiters = rec->waiters;
        rec->waiters = fresh;
    } else {
        waiters = Py_NewRef(rec->waiters);
    }
    PyObject *shared = NULL;
    if (exc != NULL) {
        shared = waiters_exception(st, rec, exc);
    }
    PyErr_Clear();
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(waiters); i++) {
        PyObject *fut = PyList_GET_ITEM(waiters, i); /* borrowed */
        PyObject *done = PyObject_CallMethod(fut, "done", NULL);
        int is_done = 1; /* a future that cannot say is left alone */
        if (done != NULL) {
            is_done = PyObject_IsTrue(done);
            Py_DECREF(done);
        }
        PyObject *r = NULL;
        if (!is_done && shared != NULL) {
            r = PyObject_CallMethod(fut, "set_exception", "O", shared);
        } else if (!is_done) {
            r = PyObject_CallMethod(fut, "set_result", "O", Py_None);
        }
        if (r == NULL && PyErr_Occurred()) {
            PyErr_WriteUnraisable(fut);
        }
        Py_XDECREF(r);
    }
    if (fresh == NULL
        && PyList_SetSlice(waiters, 0, PyList_GET_SIZE(waiters), NULL) < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(shared);
    Py_XDECREF(waiters);
    PyErr_Restore(type, value, tb);
}

/* Removes rec from the registry if it is still the entry for its name. */
static void
unregister(apy_importer_state_t *st, ApyExecObject *rec)
{
    PyObject *cur = PyDict_GetItemWithError(st->records, rec->name);
    if (cur == (PyObject *)rec && PyDict_DelItem(st->records, rec->name)) {
        PyErr_Clear();
    }
    PyErr_Clear();
}

/* Registers rec's body as started in `task` (importer.h). 0, or -1 with
 * an exception set. */
int
apy__importer_exec_start(apy_importer_state_t *st, ApyExecObject *rec,
                         PyObject *task)
{
    PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
    Py_XSETREF(rec->task, Py_XNewRef(task == Py_None ? NULL : task));
    /* Depth for -X importtime: awaited imports this task already runs. */
    Py_ssize_t pos = 0;
    PyObject *key, *val;
    while (task != NULL && PyDict_Next(st->records, &pos, &key, &val)) {
        if (((ApyExecObject *)val)->task == task) {
            rec->depth++;
        }
    }
    set_initializing(rec->module, 1);
    if (PyDict_SetItem(modules, rec->name, rec->module) < 0
        || (rec->alias != NULL
            && PyDict_SetItem(modules, rec->alias, rec->module) < 0)
        || PyDict_SetItem(st->records, rec->name, (PyObject *)rec) < 0) {
        /* Nothing half-registered. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyDict_DelItem(modules, rec->name);
        if (rec->alias != NULL) {
            PyDict_DelItem(modules, rec->alias);
        }
        set_initializing(rec->module, 0);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return -1;
    }
    track_submodule(rec->name, 1);
    rec->started = monotonic();
    return 0;
}

/* Ends rec's body, ok or with the exception set, which stays set
 * (importer.h). 0, or -1 with an exception set. */
int
apy__importer_exec_finish(apy_importer_state_t *st, ApyExecObject *rec,
                          int ok)
{
    PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    int rc = 0;

    if (!ok) {
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (value != NULL && tb != NULL) {
            PyException_SetTraceback(value, tb);
        }
    }
    if (!rec->sync) {
        track_submodule(rec->name, 0);
        set_initializing(rec->module, 0);
    }
    unregister(st, rec);
    if (rec->sync) {
        /* _load_unlocked registered the module and cleans up itself. */
    } else if (ok) {
        /* As _load_unlocked: the body may have replaced its module, and
         * the module moves to the end of sys.modules. */
        PyObject *mod = PyDict_GetItemWithError(modules, rec->name);
        if (mod == NULL) {
            PyErr_Clear();
            mod = rec->module;
        }
        Py_INCREF(mod);
        if (PyDict_DelItem(modules, rec->name) < 0) {
            PyErr_Clear();
        }
        PyObject *parent, *child;
        parent_of(rec->name, &parent, &child);
        if (PyDict_SetItem(modules, rec->name, mod) < 0
            || (rec->alias
                && PyDict_SetItem(modules, rec->alias, mod) < 0)) {
            rc = -1;
        } else if (parent != NULL
                   && PyObject_SetAttr(parent, child, mod) < 0) {
            /* importlib only warns here. */
            PyErr_Clear();
        }
        Py_XDECREF(parent);
        Py_XDECREF(child);
        Py_DECREF(mod);
        apy__importer_verbose("import %R # awaited", rec->name);
        apy__importer_importtime(rec->name, monotonic() - rec->started,
                                 rec->depth);
    } else {
        if (PyDict_DelItem(modules, rec->name) < 0) {
            PyErr_Clear();
        }
        if (rec->alias != NULL
            && PyDict_GetItemWithError(modules, rec->alias) == rec->module
            && PyDict_DelItem(modules, rec->alias) < 0) {
            PyErr_Clear();
        }
        PyErr_Clear();
    }
    wake_waiters(st, rec, ok ? NULL : value);
    if (!ok) {
        PyErr_Restore(type, value, tb);
        return -1;
    }
    return rc;
}

/* --- -X importtime -------------------------------------------------- */

/* Prints a -X importtime line for an awaited import; never fails. */
void
apy__importer_importtime(PyObject *name, double seconds, int depth)
{
    const PyConfig *config = _PyInterpreterState_GetConfig(
        PyInterpreterState_Get());
    if (!config->import_time) {
        return;
    }
    const char *s = PyUnicode_AsUTF8(name);
    if (s == NULL) {
        PyErr_Clear();
        return;
    }
    long us = (long)(seconds * 1e6);
    /* import.c's format; its own lines for this import only cover the
     * synchronous part, so this one names the awaited body. */
    fprintf(stderr, "import time: %9ld | %10ld | %*s%s\n", us, us,
            depth * 2, "", s);
}

/* --- the persistent loop -------------------------------------------- */

/* Returns 1 if loop.is_closed(), 0 if not, -1 with an exception set. */
static int
loop_is_closed(PyObject *loop)
{
    PyObject *closed = PyObject_CallMethod(loop, "is_closed", NULL);
    if (closed == NULL) {
        return -1;
    }
    int r = PyObject_IsTrue(closed);
    Py_DECREF(closed);
    return r;
}

/* The loop set as current in this thread, if it is open: a new
 * reference, Py_None, or NULL with an exception. Never creates one. */
static PyObject *
current_loop(PyObject *asyncio)
{
    PyObject *policy = PyObject_CallMethod(asyncio, "get_event_loop_policy",
                                           NULL);
    if (policy == NULL) {
        return NULL;
    }
    /* BaseDefaultEventLoopPolicy keeps it in _local._loop; reading it
     * there avoids get_event_loop()'s implicit creation. */
    PyObject *local = NULL, *loop = NULL;
    PyObject *s_local = PyUnicode_InternFromString("_local");
    if (s_local == NULL || _PyObject_LookupAttr(policy, s_local, &local) < 0) {
        Py_XDECREF(s_local);
        Py_DECREF(policy);
        return NULL;
    }
    Py_DECREF(s_local);
    if (local != NULL) {
        int found = -1;
        PyObject *s_loop = PyUnicode_InternFromString("_loop");
        if (s_loop != NULL) {
            found = _PyObject_LookupAttr(local, s_loop, &loop);
            Py_DECREF(s_loop);
        }
        Py_DECREF(local);
        if (found == 0) {
            /* A _local with no _loop (a policy's own threading.local):
             * no loop was ever set in this thread. */
            loop = Py_NewRef(Py_None);
        }
    } else {
        loop = PyObject_CallMethod(policy, "get_event_loop", NULL);
        if (loop == NULL && PyErr_ExceptionMatches(PyExc_RuntimeError)) {
            PyErr_Clear();
            loop = Py_NewRef(Py_None);
        }
    }
    Py_DECREF(policy);
    if (loop == NULL || loop == Py_None) {
        return loop;
    }
    int closed = loop_is_closed(loop);
    if (closed != 0) {
        Py_DECREF(loop);
        return closed < 0 ? NULL : Py_NewRef(Py_None);
    }
    return loop;
}

/* Registers _apyrun_importer._close_loop with atexit, once. */
static int
register_closer(apy_importer_state_t *st)
{
    if (st->closer_registered) {
        return 0;
    }
    PyObject *mod = NULL, *closer = NULL, *atexit = NULL, *r = NULL;
    int rc = -1;

    mod = PyImport_ImportModule(APY_IMPORTER_MODULE_NAME);
    if (mod == NULL) {
        goto done;
    }
    closer = PyObject_GetAttrString(mod, "_close_loop");
    if (closer == NULL) {
        goto done;
    }
    atexit = PyImport_ImportModule("atexit");
    if (atexit == NULL) {
        goto done;
    }
    r = PyObject_CallMethod(atexit, "register", "O", closer);
    if (r == NULL) {
        goto done;
    }
    st->closer_registered = 1;
    rc = 0;
done:
    Py_XDECREF(r);
    Py_XDECREF(atexit);
    Py_XDECREF(closer);
    Py_XDECREF(mod);
    return rc;
}

/* The loop loop-less imports run on (importer.h): new reference, or NULL
 * with an exception set. */
PyObject *
apy__importer_get_loop(apy_importer_state_t *st)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return NULL;
    }
    PyObject *loop = current_loop(asyncio);
    if (loop == NULL || loop != Py_None) {
        Py_DECREF(asyncio);
        return loop;
    }
    Py_DECREF(loop);
    loop = NULL;
    if (st->loop != NULL) {
        int is_closed = loop_is_closed(st->loop);
        if (is_closed < 0) {
            Py_DECREF(asyncio);
            return NULL;
        }
        if (!is_closed) {
            loop = Py_NewRef(st->loop);
        }
    }
    if (loop == NULL) {
        /* With stall detection: a body that can never finish is
         * reported, not waited for. */
        loop = apy_tla_new_loop();
        if (loop == NULL) {
            Py_DECREF(asyncio);
            return NULL;
        }
        Py_XSETREF(st->loop, Py_NewRef(loop));
        if (register_closer(st) < 0) {
            Py_DECREF(loop);
            Py_DECREF(asyncio);
            return NULL;
        }
    }
    /* Current, so that asyncio.get_event_loop() finds where the module's
     * tasks live. */
    PyObject *r = PyObject_CallMethod(asyncio, "set_event_loop", "O", loop);
    Py_DECREF(asyncio);
    if (r == NULL) {
        Py_DECREF(loop);
        return NULL;
    }
    Py_DECREF(r);
    return loop;
}

/* _close_loop() at exit: closes the persistent loop unless it is closed
 * or running. None, or NULL with an exception set. */
PyObject *
apy__importer_close_loop(PyObject *module, PyObject *unused)
{
    apy_importer_state_t *st = PyModule_GetState(module);
    PyObject *loop = st->loop;
    st->loop = NULL;
    if (loop == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *closed = NULL, *running = NULL;
    int rc = -1;

    closed = PyObject_CallMethod(loop, "is_closed", NULL);
    if (closed == NULL) {
        goto done;
    }
    running = PyObject_CallMethod(loop, "is_running", NULL);
    if (running == NULL) {
        goto done;
    }
    /* A loop closed already, or running (the program exits from a
     * callback), is left as it is. */
    rc = 0;
    if (closed != Py_True && running != Py_True) {
        rc = apy_tla_close_loop(loop);
    }
done:
    Py_XDECREF(running);
    Py_XDECREF(closed);
    Py_DECREF(loop);
    if (rc == -1) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* --- running a body ------------------------------------------------- */

/* _run_sync(module, code, alias): runs TLA code to completion on the
 * persistent loop; called through importlib's _call_with_frames_removed
 * so that tracebacks go from the import statement to the module. Returns
 * None or NULL. */
PyObject *
apy__importer_run_sync(PyObject *mod, PyObject *const *args,
                       Py_ssize_t nargs)
{
    apy_importer_state_t *st = PyModule_GetState(mod);
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_run_sync() takes 3 arguments");
        return NULL;
    }
    PyObject *module = args[0], *code = args[1];
    PyObject *alias = args[2] == Py_None ? NULL : args[2];
    PyObject *globals = NULL, *loop = NULL, *coro = NULL, *r = NULL;
    PyObject *running = NULL;
    ApyExecObject *rec = NULL;

    globals = PyObject_GetAttrString(module, "__dict__");
    if (globals == NULL) {
        return NULL;
    }
    loop = apy__importer_get_loop(st);
    if (loop == NULL) {
        goto done;
    }
    rec = apy__importer_exec_new(st, module, NULL, alias);
    if (rec == NULL) {
        goto done;
    }
    rec->sync = 1;
    if (PyDict_SetItem(st->records, rec->name, (PyObject *)rec) < 0) {
        goto done;
    }
    coro = PyEval_EvalCode(code, globals, globals);
    if (coro == NULL) {
        goto done;
    }
    running = PyObject_CallMethod(loop, "is_running", NULL);
    if (running == Py_True) {
        /* Running in another thread: the body runs there, this thread
         * waits. */
        r = apy__importer_run_threadsafe(coro, loop);
    } else if (running != NULL) {
        PyObject *task = PyObject_CallMethod(loop, "create_task", "O", coro);
        if (task != NULL) {
            Py_XSETREF(rec->task, Py_NewRef(task));
            r = PyObject_CallMethod(loop, "run_until_complete", "O", task);
            if (r == NULL) {
                /* Interrupted (Ctrl-C): the body must not go on later. */
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                PyObject *c = PyObject_CallMethod(task, "cancel", NULL);
                Py_XDECREF(c);
                PyErr_Clear();
                PyErr_Restore(type, value, tb);
            }
            Py_DECREF(task);
        }
    }
done:
    if (r == NULL && PyErr_Occurred()) {
        apy_tla_strip_internal_frames();
    }
    if (rec != NULL) {
        if (apy__importer_exec_finish(st, rec, r != NULL) < 0 && r != NULL) {
            Py_CLEAR(r);
        }
        Py_DECREF(rec);
    }
    Py_XDECREF(running);
    Py_XDECREF(coro);
    Py_XDECREF(loop);
    Py_DECREF(globals);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* The message of AsyncImportError for module `name`. */
static void
raise_async_import_error(apy_importer_state_t *st, PyObject *name)
{
    PyObject *msg = PyUnicode_FromFormat(
        "module %R has top-level await and cannot be imported "
        "synchronously while an event loop is running in this thread; "
        "use `await apyrun.import_module(%R)` in a coroutine, or import "
        "it at the module level of a module or notebook cell that "
        "itself uses top-level await",
        name, name);
    apy__importer_raise_async_import_error(st, name, msg);
}

/* Hands TLA code to the awaiter whose import reached this exec_module:
 * raises the private Deferred exception carrying the body. Returns -1. */
static int
defer_to_awaiter(apy_importer_state_t *st, PyObject *module, PyObject *code,
                 PyObject *globals, PyObject *alias)
{
    PyObject *coro = PyEval_EvalCode(code, globals, globals);
    if (coro == NULL) {
        return -1;
    }
    ApyExecObject *rec = apy__importer_exec_new(st, module, coro, alias);
    Py_DECREF(coro);
    if (rec == NULL) {
        return -1;
    }
    PyObject *exc = PyObject_CallOneArg(st->deferred, (PyObject *)rec);
    Py_DECREF(rec);
    if (exc != NULL) {
        PyErr_SetObject(st->deferred, exc);
        Py_DECREF(exc);
    }
    return -1;
}

/* Runs a module body from get_code, TLA or not (importer.h). 0, or -1
 * with an exception set. */
int
apy__importer_exec_code(apy_importer_state_t *st, PyObject *module,
                        PyObject *code, PyObject *alias)
{
    PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
    PyObject *globals = PyObject_GetAttrString(module, "__dict__");
    PyObject *r = NULL;
    if (globals == NULL) {
        return -1;
    }
    if (!apy_tla_is_coroutine_code(code)) {
        if (alias != NULL && PyDict_SetItem(modules, alias, module) < 0) {
            goto done;
        }
        r = PyObject_CallFunctionObjArgs(st->call_with_frames_removed,
                                         st->builtin_exec, code, globals,
                                         NULL);
        goto done;
    }
    /* As exec() does, so the body sees the builtins it expects. */
    if (PyDict_GetItemString(globals, "__builtins__") == NULL
        && PyDict_SetItemString(globals, "__builtins__",
                                PyEval_GetBuiltins()) < 0) {
        goto done;
    }
    if (apy__importer_need_asyncio(st) < 0) {
        goto done;
    }
    PyObject *running = apy__importer_running_loop();
    if (running == NULL) {
        goto done;
    }
    int loop_running = running != Py_None;
    Py_DECREF(running);
    if (loop_running) {
        PyObject *name = PyObject_GetAttrString(module, "__name__");
        if (name == NULL) {
            goto done;
        }
        if (apy__importer_is_awaited_import(st)) {
            defer_to_awaiter(st, module, code, globals, alias);
        } else {
            raise_async_import_error(st, name);
        }
        Py_DECREF(name);
        goto done;
    }
    if (alias != NULL && PyDict_SetItem(modules, alias, module) < 0) {
        goto done;
    }
    PyObject *mod = PyImport_ImportModule(APY_IMPORTER_MODULE_NAME);
    if (mod == NULL) {
        goto done;
    }
    PyObject *run = PyObject_GetAttrString(mod, "_run_sync");
    Py_DECREF(mod);
    if (run == NULL) {
        goto done;
    }
    r = PyObject_CallFunctionObjArgs(st->call_with_frames_removed, run,
                                     module, code, alias ? alias : Py_None,
                                     NULL);
    Py_DECREF(run);
done:
    Py_DECREF(globals);
    if (r == NULL) {
        if (alias != NULL && PyErr_Occurred()) {
            /* Nothing half-registered: _load_unlocked removes the module's
             * own name, this removes the second one. */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            if (PyDict_GetItemWithError(modules, alias) == module) {
                PyDict_DelItem(modules, alias);
            }
            PyErr_Clear();
            PyErr_Restore(type, value, tb);
        }
        return -1;
    }
    Py_DECREF(r);
    return 0;
}
