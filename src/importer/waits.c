/* SPDX-License-Identifier: MIT */
/* Who waits for whom among running TLA bodies: whether an exec_module
 * was reached by an awaiter's own import (frames), the current task, the
 * cycle check behind "a wait that would close a cycle gets the partial
 * module, as python's circular imports do", and the synchronous side:
 * importlib's _lock_unlock_module, which python calls for a module found
 * in sys.modules while it is still initialising, replaced so that such an
 * import of a running TLA body fails clearly (AsyncImportError) in the
 * loop's thread and waits for it from other threads. Replacing it is the
 * one way in: the import statement's fast path calls nothing else. */
#include <Python.h>
#include <frameobject.h>

#include <string.h>

#include "importer.h"

/* Returns 1 if frame runs importlib's own code. */
static int
is_importlib_frame(PyFrameObject *frame)
{
    PyCodeObject *code = PyFrame_GetCode(frame);
    const char *fn = PyUnicode_AsUTF8(code->co_filename);
    int yes = fn != NULL
              && strncmp(fn, "<frozen importlib._bootstrap", 28) == 0;
    Py_DECREF(code);
    PyErr_Clear();
    return yes;
}

int
apy_importer_is_awaited_import(apy_importer_state_t *st)
{
    if (st->armed_tstate == NULL || st->armed_tstate != PyThreadState_Get()) {
        return 0;
    }
    /* Between exec_module and the awaiting frame there must be importlib
     * and nothing else: a module body in between is synchronous code
     * that imports, and cannot await. */
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    Py_XINCREF(frame);
    while (frame != NULL && frame != st->armed_frame) {
        if (!is_importlib_frame(frame)) {
            Py_DECREF(frame);
            return 0;
        }
        PyFrameObject *back = PyFrame_GetBack(frame);
        Py_DECREF(frame);
        frame = back;
    }
    if (frame == NULL) {
        return st->armed_frame == NULL;
    }
    Py_DECREF(frame);
    return 1;
}

PyObject *
apy_importer_current_task(apy_importer_state_t *st)
{
    /* asyncio.current_task(), without its Python frame: the task the
     * running loop is stepping. */
    PyObject *loop = apy_importer_running_loop();
    if (loop == NULL || loop == Py_None) {
        return loop;
    }
    PyObject *task = PyDict_GetItemWithError(st->current_task, loop);
    Py_DECREF(loop);
    if (task == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    return Py_NewRef(task);
}

int
apy_importer_would_cycle(apy_importer_state_t *st, ApyExecObject *rec)
{
    PyObject *me = apy_importer_current_task(st);
    if (me == NULL) {
        return -1;
    }
    int cycle = me == Py_None;
    PyObject *t = rec->task; /* borrowed: kept alive by its record */
    for (Py_ssize_t hops = 0; !cycle && t != NULL; hops++) {
        if (t == me || hops > PyDict_GET_SIZE(st->waits)) {
            cycle = 1;
            break;
        }
        ApyExecObject *next = (ApyExecObject *)PyDict_GetItemWithError(
            st->waits, t); /* borrowed */
        if (next == NULL) {
            break;
        }
        t = next->task;
    }
    Py_DECREF(me);
    return PyErr_Occurred() ? -1 : cycle;
}

/* Raises AsyncImportError for a synchronous import of `name`, whose body
 * another task is running. */
static void
raise_in_progress(apy_importer_state_t *st, PyObject *name)
{
    PyObject *msg = PyUnicode_FromFormat(
        "module %R is being imported with top-level await by another "
        "task, and a synchronous import cannot wait for it; use `await "
        "apyrun.import_module(%R)` in a coroutine, or import it at the "
        "module level of top-level-await code",
        name, name);
    PyObject *kw = msg ? Py_BuildValue("{s:O}", "name", name) : NULL;
    PyObject *args = kw ? PyTuple_Pack(1, msg) : NULL;
    PyObject *exc = args ? PyObject_Call(st->async_import_error, args, kw)
                         : NULL;
    if (exc != NULL) {
        PyErr_SetObject(st->async_import_error, exc);
        Py_DECREF(exc);
    }
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(msg);
}

/* Blocks this thread (no loop runs in it) until the body of rec, which
 * runs on a loop in another thread, is done: an awaited import of the
 * module submitted to that loop. Returns a new reference or NULL. */
static PyObject *
wait_from_thread(apy_importer_state_t *st, ApyExecObject *rec,
                 PyObject *loop)
{
    PyObject *coro = apy_importer_awaiter_new(st, rec->name, NULL, Py_None,
                                              0, 1);
    PyObject *asyncio = coro ? PyImport_ImportModule("asyncio") : NULL;
    PyObject *cf = asyncio ? PyObject_CallMethod(asyncio,
                                                 "run_coroutine_threadsafe",
                                                 "OO", coro, loop)
                           : NULL;
    PyObject *r = cf ? PyObject_CallMethod(cf, "result", NULL) : NULL;
    Py_XDECREF(cf);
    Py_XDECREF(asyncio);
    Py_XDECREF(coro);
    return r;
}

PyObject *
apy_importer_lock_unlock(PyObject *module, PyObject *name)
{
    apy_importer_state_t *st = PyModule_GetState(module);
    if (st->records == NULL || st->orig_lock_unlock == NULL) {
        /* Finalising: the module's state is gone. */
        Py_RETURN_NONE;
    }
    ApyExecObject *rec = (ApyExecObject *)PyDict_GetItemWithError(
        st->records, name); /* borrowed */
    if (rec == NULL && PyErr_Occurred()) {
        return NULL;
    }
    if (rec != NULL && st->current_task != NULL) {
        Py_INCREF(rec);
        PyObject *running = apy_importer_running_loop();
        int in_loop = running != NULL && running != Py_None;
        int cycle = in_loop ? apy_importer_would_cycle(st, rec) : 0;
        PyObject *r = Py_None;
        if (running == NULL || cycle < 0) {
            r = NULL;
        } else if (running != Py_None) {
            /* The awaiter's own import waits after it returns; a cycle
             * gets the partial module, as python gives it. */
            if (!cycle && !apy_importer_is_awaited_import(st)) {
                raise_in_progress(st, name);
                r = NULL;
            }
        } else if (rec->task != NULL) {
            PyObject *loop = PyObject_CallMethod(rec->task, "get_loop",
                                                 NULL);
            PyObject *on = loop ? PyObject_CallMethod(loop, "is_running",
                                                      NULL)
                                : NULL;
            if (on == Py_True) {
                r = wait_from_thread(st, rec, loop);
                Py_XDECREF(r);
                r = r ? Py_None : NULL;
            } else if (on == NULL) {
                r = NULL;
            }
            Py_XDECREF(on);
            Py_XDECREF(loop);
        }
        Py_XDECREF(running);
        Py_DECREF(rec);
        if (r == NULL) {
            return NULL;
        }
        if (in_loop) {
            /* Async bodies hold no module lock: nothing to wait for. */
            Py_RETURN_NONE;
        }
    }
    return PyObject_CallOneArg(st->orig_lock_unlock, name);
}
