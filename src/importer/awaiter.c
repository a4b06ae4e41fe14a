/* SPDX-License-Identifier: MIT */
/* Awaited imports: the object behind `await apyrun.import_module(name)`
 * and behind the await the TLA compile puts in front of module-level
 * import statements; it makes python's own import and awaits the TLA
 * bodies that import reaches, sharing a running body between tasks and
 * giving a cycle the partial module. */
#include <Python.h>

#include "importer.h"

/* Awaiting it makes the ordinary import (PyImport_ImportModuleLevelObject,
 * so finders, locks, -X importtime and errors are python's) while
 * "armed": a TLA body that this very import reaches through importlib
 * alone is handed back by exec.c instead of raising AsyncImportError, and
 * is then awaited here, in the importing task, like `yield from`. The
 * import is made again once the body is done, so a chain `a.b.c` with TLA
 * members runs each body in order.
 *
 * Sharing and cycles: a body that runs is registered (st->records) with
 * the task running it. Another task that needs it waits on a future of
 * its own, unless the wait would close a cycle: following "task T waits
 * for the body run by task U" (st->waits) from the body's task back to
 * the current task. Then, as python does for circular imports, the
 * partially initialised module is what the import gets. */

typedef enum {
    AW_START, /* nothing done yet, or a body/wait just finished */
    AW_RUN,   /* delegating to a TLA body this awaiter runs */
    AW_WAIT,  /* delegating to a future: another task runs the body */
    AW_DONE,
} aw_state_t;

typedef struct {
    PyObject_HEAD
    PyObject *name;     /* as given (absolute in module mode) */
    PyObject *globals;  /* the importer's globals (statement mode) */
    PyObject *fromlist; /* tuple or None */
    PyObject *chain;    /* absolute names that may be running, or NULL */
    ApyExecObject *rec; /* the body run (AW_RUN) or waited for (AW_WAIT) */
    PyObject *sub;      /* what is delegated to */
    PyObject *waiter;   /* our future in rec->waiters (AW_WAIT) */
    PyObject *task;     /* our key in st->waits (AW_WAIT), or NULL */
    int level;
    int module_mode; /* import_module(): the value is the module itself */
    aw_state_t state;
} ApyAwaiterObject;

#define AWAITER_STATE(self) apy__importer_state_of(Py_TYPE(self))

/* The import itself, armed. Returns what __import__ returns (the module
 * in module mode), or NULL with an exception (possibly st->deferred). */
static PyObject *
armed_import(ApyAwaiterObject *self, apy_importer_state_t *st)
{
    PyThreadState *prev_tstate = st->armed_tstate;
    PyFrameObject *prev_frame = st->armed_frame;
    st->armed_tstate = PyThreadState_Get();
    st->armed_frame = PyEval_GetFrame();
    PyObject *r;
    if (self->module_mode) {
        r = PyImport_ImportModuleLevelObject(self->name, NULL, NULL, NULL, 0);
        if (r != NULL) {
            PyObject *mod = PyImport_GetModule(self->name);
            if (mod != NULL) {
                Py_SETREF(r, mod);
            }
            PyErr_Clear();
        }
    } else {
        r = PyImport_ImportModuleLevelObject(self->name, self->globals, NULL,
                                             self->fromlist, self->level);
    }
    st->armed_tstate = prev_tstate;
    st->armed_frame = prev_frame;
    return r;
}

/* --- which running bodies concern this import ---------------------- */

/* The package a relative import in `globals` is relative to, as
 * importlib's _calc___package__ finds it. New reference or NULL. */
static PyObject *
package_of(PyObject *globals)
{
    PyObject *pkg = PyDict_GetItemString(globals, "__package__");
    if (pkg != NULL && pkg != Py_None) {
        return Py_NewRef(pkg);
    }
    PyObject *spec = PyDict_GetItemString(globals, "__spec__");
    if (spec != NULL && spec != Py_None) {
        return PyObject_GetAttrString(spec, "parent");
    }
    PyObject *name = PyDict_GetItemString(globals, "__name__");
    if (name == NULL || !PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_KeyError, "__name__ not in globals");
        return NULL;
    }
    if (PyDict_GetItemString(globals, "__path__") != NULL) {
        return Py_NewRef(name);
    }
    Py_ssize_t dot = PyUnicode_FindChar(name, '.', 0,
                                        PyUnicode_GET_LENGTH(name), -1);
    return PyUnicode_Substring(name, 0, dot < 0 ? 0 : dot);
}

/* importlib's _resolve_name: `name` relative to `package` at `level`.
 * New reference or NULL with ImportError. */
static PyObject *
resolve_name(PyObject *name, PyObject *package, int level)
{
    if (!PyUnicode_Check(package)) {
        PyErr_SetString(PyExc_TypeError, "__package__ not set to a string");
        return NULL;
    }
    PyObject *dot = PyUnicode_FromString(".");
    if (dot == NULL) {
        return NULL;
    }
    PyObject *bits = PyUnicode_RSplit(package, dot, level - 1);
    Py_DECREF(dot);
    if (bits == NULL) {
        return NULL;
    }
    if (PyList_GET_SIZE(bits) < level) {
        Py_DECREF(bits);
        PyErr_SetString(PyExc_ImportError,
                        "attempted relative import beyond top-level package");
        return NULL;
    }
    PyObject *base = PyList_GET_ITEM(bits, 0); /* borrowed */
    PyObject *abs = PyUnicode_GET_LENGTH(name) > 0
                        ? PyUnicode_FromFormat("%U.%U", base, name)
                        : Py_NewRef(base);
    Py_DECREF(bits);
    return abs;
}

/* Fills self->chain: every prefix of the absolute name, then the
 * submodules the fromlist may name. On failure the chain is empty and
 * the import itself reports the problem. Returns 0 or -1. */
static int
compute_chain(ApyAwaiterObject *self)
{
    PyObject *abs = NULL;
    if (self->module_mode || self->level == 0) {
        abs = Py_NewRef(self->name);
    } else {
        PyObject *pkg = package_of(self->globals);
        if (pkg != NULL) {
            abs = resolve_name(self->name, pkg, self->level);
            Py_DECREF(pkg);
        }
        if (abs == NULL) {
            /* The import itself reports the problem. */
            PyErr_Clear();
        }
    }
    PyObject *chain = PyList_New(0);
    if (chain == NULL) {
        Py_XDECREF(abs);
        return -1;
    }
    if (abs == NULL || PyUnicode_GET_LENGTH(abs) == 0) {
        Py_XDECREF(abs);
        Py_XSETREF(self->chain, chain);
        return 0;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(abs);
    for (Py_ssize_t i = 0; i <= len; i++) {
        if (i == len || PyUnicode_READ_CHAR(abs, i) == '.') {
            PyObject *prefix = PyUnicode_Substring(abs, 0, i);
            if (prefix == NULL || PyList_Append(chain, prefix) < 0) {
                Py_XDECREF(prefix);
                goto fail;
            }
            Py_DECREF(prefix);
        }
    }
    if (self->fromlist != NULL && PyTuple_Check(self->fromlist)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(self->fromlist); i++) {
            PyObject *item = PyTuple_GET_ITEM(self->fromlist, i);
            if (!PyUnicode_Check(item)
                || PyUnicode_CompareWithASCIIString(item, "*") == 0) {
                continue;
            }
            PyObject *sub = PyUnicode_FromFormat("%U.%U", abs, item);
            if (sub == NULL || PyList_Append(chain, sub) < 0) {
                Py_XDECREF(sub);
                goto fail;
            }
            Py_DECREF(sub);
        }
    }
    Py_DECREF(abs);
    Py_XSETREF(self->chain, chain);
    return 0;
fail:
    Py_DECREF(abs);
    Py_DECREF(chain);
    return -1;
}

/* Finds the first running body on this import's chain that may be
 * waited for. Returns 1 and a new reference to it in *out, 0 (*out NULL)
 * when there is none, -1 (*out NULL) with an exception set. */
static int
find_blocking(ApyAwaiterObject *self, apy_importer_state_t *st,
              ApyExecObject **out)
{
    *out = NULL;
    if (PyDict_GET_SIZE(st->records) == 0) {
        return 0;
    }
    if (self->chain == NULL && compute_chain(self) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(self->chain); i++) {
        PyObject *rec = PyDict_GetItemWithError(
            st->records, PyList_GET_ITEM(self->chain, i)); /* borrowed */
        if (rec == NULL) {
            if (PyErr_Occurred()) {
                return -1;
            }
            continue;
        }
        int cycle = apy__importer_would_cycle(st, (ApyExecObject *)rec);
        if (cycle < 0) {
            return -1;
        }
        if (!cycle) {
            *out = (ApyExecObject *)Py_NewRef(rec);
            return 1;
        }
    }
    return 0;
}

/* --- the state machine ---------------------------------------------- */

/* Starts waiting for rec's body on a future of our own (cancelling us
 * cancels that future, never the body). Steals rec. 0 or -1. */
static int
begin_wait(ApyAwaiterObject *self, apy_importer_state_t *st,
           ApyExecObject *rec)
{
    PyObject *loop = NULL, *fut = NULL, *task = NULL, *it = NULL;

    loop = apy__importer_running_loop();
    if (loop == NULL) {
        goto error;
    }
    if (loop == Py_None) {
        PyErr_SetString(PyExc_RuntimeError, "no running event loop");
        goto error;
    }
    fut = PyObject_CallMethod(loop, "create_future", NULL);
    Py_CLEAR(loop);
    if (fut == NULL) {
        goto error;
    }
    task = apy__importer_current_task(st);
    if (task == NULL) {
        goto error;
    }
    PyAsyncMethods *am = Py_TYPE(fut)->tp_as_async;
    if (am != NULL && am->am_await != NULL) {
        it = am->am_await(fut);
    }
    if (it == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "future is not awaitable");
        }
        goto error;
    }
    if (PyList_Append(rec->waiters, fut) < 0
        || (task != Py_None
            && PyDict_SetItem(st->waits, task, (PyObject *)rec) < 0)) {
        goto error;
    }
    if (task == Py_None) {
        Py_CLEAR(task);
    }
    self->rec = rec;
    self->sub = it;
    self->waiter = fut;
    self->task = task;
    self->state = AW_WAIT;
    return 0;

error:
    Py_XDECREF(it);
    Py_XDECREF(task);
    Py_XDECREF(fut);
    Py_XDECREF(loop);
    Py_DECREF(rec);
    return -1;
}

/* Stops waiting: forgets our future and our entry in st->waits. The
 * current exception is kept. */
static void
end_wait(ApyAwaiterObject *self, apy_importer_state_t *st)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (self->task != NULL
        && PyDict_GetItemWithError(st->waits, self->task)
               == (PyObject *)self->rec) {
        PyDict_DelItem(st->waits, self->task);
    }
    if (self->rec != NULL && self->waiter != NULL) {
        PyObject *waiters = self->rec->waiters;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(waiters); i++) {
            if (PyList_GET_ITEM(waiters, i) == self->waiter) {
                PySequence_DelItem(waiters, i);
                break;
            }
        }
    }
    PyErr_Clear();
    Py_CLEAR(self->task);
    Py_CLEAR(self->waiter);
    Py_CLEAR(self->sub);
    Py_CLEAR(self->rec);
    PyErr_Restore(type, value, tb);
}

/* Takes over the body the import handed back (st->deferred is set):
 * registers the module and delegates to its coroutine. 0 or -1. */
static int
begin_run(ApyAwaiterObject *self, apy_importer_state_t *st)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *args = NULL;
    if (value != NULL) {
        args = PyObject_GetAttrString(value, "args");
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (args == NULL || !PyTuple_Check(args) || PyTuple_GET_SIZE(args) != 1
        || !Py_IS_TYPE(PyTuple_GET_ITEM(args, 0), st->exec_type)) {
        Py_XDECREF(args);
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError, "apyrun: bad deferred body");
        }
        return -1;
    }
    ApyExecObject *rec = (ApyExecObject *)Py_NewRef(PyTuple_GET_ITEM(args,
                                                                     0));
    Py_DECREF(args);
    PyObject *task = apy__importer_current_task(st);
    if (task == NULL || apy__importer_exec_start(st, rec, task) < 0) {
        Py_XDECREF(task);
        Py_DECREF(rec);
        return -1;
    }
    Py_DECREF(task);
    self->sub = rec->coro;
    rec->coro = NULL;
    self->rec = rec;
    self->state = AW_RUN;
    return 0;
}

static PySendResult run_start(ApyAwaiterObject *self, PyObject **result);

/* Handles what the delegate did: `status`/`out` as PyIter_Send gives
 * them (an exception set for PYGEN_ERROR). */
static PySendResult
after_sub(ApyAwaiterObject *self, PySendResult status, PyObject *out,
          PyObject **result)
{
    apy_importer_state_t *st = AWAITER_STATE(self);
    if (status == PYGEN_NEXT) {
        *result = out;
        return PYGEN_NEXT;
    }
    if (self->state == AW_RUN) {
        ApyExecObject *rec = self->rec;
        self->rec = NULL;
        Py_CLEAR(self->sub);
        Py_XDECREF(out);
        int rc = apy__importer_exec_finish(st, rec,
                                           status == PYGEN_RETURN);
        Py_DECREF(rec);
        if (rc < 0) {
            self->state = AW_DONE;
            *result = NULL;
            return PYGEN_ERROR;
        }
    } else {
        Py_XDECREF(out);
        end_wait(self, st);
        if (status == PYGEN_ERROR) {
            self->state = AW_DONE;
            *result = NULL;
            return PYGEN_ERROR;
        }
    }
    self->state = AW_START;
    return run_start(self, result);
}

/* Starts the delegate just set up by begin_wait/begin_run. */
static PySendResult
first_send(ApyAwaiterObject *self, PyObject **result)
{
    PyObject *out = NULL;
    PySendResult status = PyIter_Send(self->sub, Py_None, &out);
    return after_sub(self, status, out, result);
}

/* Waits for rec's body (steals rec): begin_wait, then the first send. */
static PySendResult
wait_for(ApyAwaiterObject *self, apy_importer_state_t *st,
         ApyExecObject *rec, PyObject **result)
{
    if (begin_wait(self, st, rec) < 0) {
        self->state = AW_DONE;
        return PYGEN_ERROR;
    }
    return first_send(self, result);
}

/* The import, from the start or again after a body finished. */
static PySendResult
run_start(ApyAwaiterObject *self, PyObject **result)
{
    apy_importer_state_t *st = AWAITER_STATE(self);
    ApyExecObject *rec;
    *result = NULL;
    int found = find_blocking(self, st, &rec);
    if (found > 0) {
        return wait_for(self, st, rec, result);
    }
    if (found < 0) {
        self->state = AW_DONE;
        return PYGEN_ERROR;
    }
    PyObject *r = armed_import(self, st);
    if (r == NULL) {
        if (PyErr_ExceptionMatches(st->deferred)) {
            if (begin_run(self, st) == 0) {
                return first_send(self, result);
            }
        }
        self->state = AW_DONE;
        return PYGEN_ERROR;
    }
    /* A body on the chain may have started in another task meanwhile
     * (or the fromlist named one): the import returned it partially
     * initialised, so wait for it and import again. */
    found = find_blocking(self, st, &rec);
    if (found != 0) {
        Py_DECREF(r);
        if (found > 0) {
            return wait_for(self, st, rec, result);
        }
        self->state = AW_DONE;
        return PYGEN_ERROR;
    }
    self->state = AW_DONE;
    *result = r;
    return PYGEN_RETURN;
}

static PySendResult
awaiter_am_send(ApyAwaiterObject *self, PyObject *value, PyObject **result)
{
    *result = NULL;
    switch (self->state) {
    case AW_START:
        if (apy__importer_need_asyncio(AWAITER_STATE(self)) < 0) {
            self->state = AW_DONE;
            return PYGEN_ERROR;
        }
        return run_start(self, result);
    case AW_RUN:
    case AW_WAIT: {
        PyObject *out = NULL;
        PySendResult status = PyIter_Send(self->sub, value, &out);
        return after_sub(self, status, out, result);
    }
    default:
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot reuse already awaited import");
        return PYGEN_ERROR;
    }
}

/* --- the iterator/coroutine protocol -------------------------------- */

static PyObject *
awaiter_iternext(ApyAwaiterObject *self)
{
    PyObject *result;
    PySendResult status = awaiter_am_send(self, Py_None, &result);
    if (status == PYGEN_RETURN) {
        if (result != Py_None) {
            _PyGen_SetStopIterationValue(result);
        }
        Py_DECREF(result);
        return NULL;
    }
    return status == PYGEN_NEXT ? result : NULL;
}

/* A send/throw outcome as the iterator protocol reports it: the yielded
 * value (PYGEN_NEXT), NULL with StopIteration(value) (PYGEN_RETURN), or
 * NULL with the error set (PYGEN_ERROR). Steals result. */
static PyObject *
send_result(PySendResult status, PyObject *result)
{
    if (status == PYGEN_RETURN) {
        if (result == Py_None) {
            PyErr_SetNone(PyExc_StopIteration);
        } else {
            _PyGen_SetStopIterationValue(result);
        }
        Py_DECREF(result);
        return NULL;
    }
    return status == PYGEN_NEXT ? result : NULL;
}

static PyObject *
awaiter_send(ApyAwaiterObject *self, PyObject *value)
{
    PyObject *result;
    PySendResult status = awaiter_am_send(self, value, &result);
    return send_result(status, result);
}

/* throw(typ[, val[, tb]]): into the delegate when there is one (so a
 * cancelled importer cancels the body it runs), else raised here. */
static PyObject *
awaiter_throw(ApyAwaiterObject *self, PyObject *args)
{
    PyObject *typ, *val = NULL, *tb = NULL;
    if (!PyArg_UnpackTuple(args, "throw", 1, 3, &typ, &val, &tb)) {
        return NULL;
    }
    if (self->state != AW_RUN && self->state != AW_WAIT) {
        self->state = AW_DONE;
        if (PyExceptionInstance_Check(typ)) {
            PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
        } else if (PyExceptionClass_Check(typ)) {
            PyErr_SetObject(typ, val);
        } else {
            PyErr_SetString(PyExc_TypeError,
                            "exceptions must be classes or instances "
                            "deriving from BaseException");
        }
        return NULL;
    }
    PyObject *out = NULL;
    PyObject *meth = PyObject_GetAttrString(self->sub, "throw");
    if (meth != NULL) {
        out = PyObject_Call(meth, args, NULL);
        Py_DECREF(meth);
    }
    PySendResult status = PYGEN_NEXT;
    if (out == NULL) {
        status = PYGEN_ERROR;
        if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
            status = _PyGen_FetchStopIterationValue(&out) == 0 ? PYGEN_RETURN
                                                               : PYGEN_ERROR;
        }
    }
    PyObject *result;
    status = after_sub(self, status, out, &result);
    return send_result(status, result);
}

/* close(): a body this awaiter runs is closed and unregistered (its
 * waiters are told it was abandoned); a wait is simply dropped. */
static PyObject *
awaiter_close(ApyAwaiterObject *self, PyObject *unused)
{
    apy_importer_state_t *st = AWAITER_STATE(self);
    aw_state_t state = self->state;
    self->state = AW_DONE;
    if (state == AW_WAIT) {
        end_wait(self, st);
        Py_RETURN_NONE;
    }
    if (state != AW_RUN) {
        Py_RETURN_NONE;
    }
    ApyExecObject *rec = self->rec;
    PyObject *sub = self->sub;
    self->rec = NULL;
    self->sub = NULL;
    PyObject *r = PyObject_CallMethod(sub, "close", NULL);
    Py_DECREF(sub);
    int failed = r == NULL;
    Py_XDECREF(r);
    if (!failed) {
        PyErr_SetNone(PyExc_GeneratorExit);
    }
    apy__importer_exec_finish(st, rec, 0);
    Py_DECREF(rec);
    if (!failed) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return NULL;
}

static PyObject *
awaiter_await(PyObject *self)
{
    return Py_NewRef(self);
}

static void
awaiter_finalize(ApyAwaiterObject *self)
{
    if (self->state != AW_RUN && self->state != AW_WAIT) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *r = awaiter_close(self, NULL);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    Py_XDECREF(r);
    PyErr_Restore(type, value, tb);
}

static int
awaiter_traverse(ApyAwaiterObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->name);
    Py_VISIT(self->globals);
    Py_VISIT(self->fromlist);
    Py_VISIT(self->chain);
    Py_VISIT(self->rec);
    Py_VISIT(self->sub);
    Py_VISIT(self->waiter);
    Py_VISIT(self->task);
    return 0;
}

static int
awaiter_clear(ApyAwaiterObject *self)
{
    Py_CLEAR(self->name);
    Py_CLEAR(self->globals);
    Py_CLEAR(self->fromlist);
    Py_CLEAR(self->chain);
    Py_CLEAR(self->rec);
    Py_CLEAR(self->sub);
    Py_CLEAR(self->waiter);
    Py_CLEAR(self->task);
    return 0;
}

static void
awaiter_dealloc(ApyAwaiterObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    awaiter_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
awaiter_repr(ApyAwaiterObject *self)
{
    return PyUnicode_FromFormat("<apyrun import of %R>", self->name);
}

static PyMethodDef awaiter_methods[] = {
    {"send", (PyCFunction)awaiter_send, METH_O, NULL},
    {"throw", (PyCFunction)awaiter_throw, METH_VARARGS, NULL},
    {"close", (PyCFunction)awaiter_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot awaiter_slots[] = {
    {Py_am_await, awaiter_await},
    {Py_am_send, awaiter_am_send},
    {Py_tp_iter, awaiter_await},
    {Py_tp_iternext, awaiter_iternext},
    {Py_tp_methods, awaiter_methods},
    {Py_tp_finalize, awaiter_finalize},
    {Py_tp_traverse, awaiter_traverse},
    {Py_tp_clear, awaiter_clear},
    {Py_tp_dealloc, awaiter_dealloc},
    {Py_tp_repr, awaiter_repr},
    {0, NULL},
};

PyType_Spec apy__importer_awaiter_spec = {
    .name = "_apyrun_importer._ImportAwaiter",
    .basicsize = sizeof(ApyAwaiterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = awaiter_slots,
};

/* --- constructors (module functions) -------------------------------- */

/* A new awaiter for `name` (importer.h): new reference, or NULL with an
 * exception set. */
PyObject *
apy__importer_awaiter_new(apy_importer_state_t *st, PyObject *name,
                          PyObject *globals, PyObject *fromlist, int level,
                          int module_mode)
{
    ApyAwaiterObject *self = PyObject_GC_New(ApyAwaiterObject,
                                             st->awaiter_type);
    if (self == NULL) {
        return NULL;
    }
    self->name = Py_NewRef(name);
    self->globals = Py_XNewRef(globals);
    self->fromlist = Py_NewRef(fromlist);
    self->chain = NULL;
    self->rec = NULL;
    self->sub = NULL;
    self->waiter = NULL;
    self->task = NULL;
    self->level = level;
    self->module_mode = module_mode;
    self->state = AW_START;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* _await_import(name, fromlist, level): a new awaiter, or NULL with an
 * exception set (TypeError for bad arguments). */
PyObject *
apy__importer_await_import(PyObject *module, PyObject *const *args,
                           Py_ssize_t nargs)
{
    apy_importer_state_t *st = PyModule_GetState(module);
    if (nargs != 3 || !PyUnicode_Check(args[0])
        || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "_await_import(name: str, fromlist, level: int)");
        return NULL;
    }
    int level = _PyLong_AsInt(args[2]);
    if (level == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* The importing module's globals: this is called from its frame. */
    PyObject *globals = PyEval_GetGlobals(); /* borrowed */
    if (globals == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_await_import: no frame");
        return NULL;
    }
    return apy__importer_awaiter_new(st, args[0], globals, args[1], level, 0);
}

/* import_module(name, package=None): a new awaiter, or NULL with an
 * exception set (TypeError, ValueError, ImportError as importlib's). */
PyObject *
apy__importer_import_module(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "package", NULL};
    apy_importer_state_t *st = PyModule_GetState(module);
    PyObject *name, *package = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|O:import_module", kwlist,
                                     &name, &package)) {
        return NULL;
    }
    int level = 0;
    while (level < PyUnicode_GET_LENGTH(name)
           && PyUnicode_READ_CHAR(name, level) == '.') {
        level++;
    }
    PyObject *abs;
    if (level > 0) {
        int given = package == Py_None ? 0 : PyObject_IsTrue(package);
        if (given < 0) {
            return NULL;
        }
        if (!given) {
            PyErr_Format(PyExc_TypeError,
                         "the 'package' argument is required to perform a "
                         "relative import for %R",
                         name);
            return NULL;
        }
        PyObject *rest = PyUnicode_Substring(name, level,
                                             PyUnicode_GET_LENGTH(name));
        if (rest == NULL) {
            return NULL;
        }
        abs = resolve_name(rest, package, level);
        Py_DECREF(rest);
    } else {
        abs = Py_NewRef(name);
    }
    if (abs == NULL) {
        return NULL;
    }
    if (PyUnicode_GET_LENGTH(abs) == 0) {
        Py_DECREF(abs);
        PyErr_SetString(PyExc_ValueError, "Empty module name");
        return NULL;
    }
    PyObject *self = apy__importer_awaiter_new(st, abs, NULL, Py_None, 0, 1);
    Py_DECREF(abs);
    return self;
}
