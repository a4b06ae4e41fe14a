/* SPDX-License-Identifier: MIT */
/* The synchronous side of waiting for a TLA body: importlib's
 * _lock_unlock_module, which python calls for a module found in
 * sys.modules while it is still initialising, replaced so that such an
 * import of a running TLA body fails clearly (AsyncImportError) in the
 * loop's thread and waits for it from other threads. Replacing it is the
 * one way in: the import statement's fast path calls nothing else. It
 * creates awaiters, so it sits above awaiter.c and waits.c. */
#include <Python.h>

#include "importer.h"

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
    apy__importer_raise_async_import_error(st, name, msg);
}

/* Blocks this thread (no loop runs in it) until the body of rec, which
 * runs on a loop in another thread, is done: an awaited import of the
 * module submitted to that loop. Returns a new reference or NULL. */
static PyObject *
wait_from_thread(apy_importer_state_t *st, ApyExecObject *rec,
                 PyObject *loop)
{
    PyObject *coro = apy__importer_awaiter_new(st, rec->name, NULL, Py_None,
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
apy__importer_lock_unlock(PyObject *module, PyObject *name)
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
        PyObject *running = apy__importer_running_loop();
        int in_loop = running != NULL && running != Py_None;
        int cycle = in_loop ? apy__importer_would_cycle(st, rec) : 0;
        PyObject *r = Py_None;
        if (running == NULL || cycle < 0) {
            r = NULL;
        } else if (running != Py_None) {
            /* The awaiter's own import waits after it returns; a cycle
             * gets the partial module, as python gives it. */
            if (!cycle && !apy__importer_is_awaited_import(st)) {
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
