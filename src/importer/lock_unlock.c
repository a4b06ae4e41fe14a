/* SPDX-License-Identifier: MIT */
/* The synchronous side of waiting for a TLA body: importlib's
 * _lock_unlock_module replaced, so that a synchronous import of a running
 * TLA body fails clearly (AsyncImportError) in the loop's thread and
 * waits for it from other threads. It creates awaiters, so it sits above
 * awaiter.c and waits.c. */
#include <Python.h>

#include "importer.h"

/* python calls _lock_unlock_module for a module found in sys.modules
 * while it is still initialising. Replacing it is the one way in: the
 * import statement's fast path calls nothing else. */

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
    if (coro == NULL) {
        return NULL;
    }
    PyObject *r = apy__importer_run_threadsafe(coro, loop);
    Py_DECREF(coro);
    return r;
}

/* What a synchronous import of `name` does about rec, a TLA body running
 * on a loop (see apy__importer_lock_unlock). Returns 1 when the import
 * goes on without importlib's lock (a loop runs in this thread: async
 * bodies hold no module lock), 0 when importlib's own is still to be
 * called (after waiting for a body on another thread's loop), -1 with an
 * exception set. */
static int
wait_for_body(apy_importer_state_t *st, ApyExecObject *rec, PyObject *name)
{
    PyObject *running = NULL, *loop = NULL, *on = NULL, *r = NULL;
    int rc = -1;

    running = apy__importer_running_loop();
    if (running == NULL) {
        goto done;
    }
    if (running != Py_None) {
        /* The awaiter's own import waits after it returns; a cycle gets
         * the partial module, as python gives it. */
        int cycle = apy__importer_would_cycle(st, rec);
        if (cycle < 0) {
            goto done;
        }
        if (!cycle && !apy__importer_is_awaited_import(st)) {
            raise_in_progress(st, name);
            goto done;
        }
        rc = 1;
        goto done;
    }
    if (rec->task != NULL) {
        loop = PyObject_CallMethod(rec->task, "get_loop", NULL);
        if (loop == NULL) {
            goto done;
        }
        on = PyObject_CallMethod(loop, "is_running", NULL);
        if (on == NULL) {
            goto done;
        }
        if (on == Py_True) {
            r = wait_from_thread(st, rec, loop);
            if (r == NULL) {
                goto done;
            }
        }
    }
    rc = 0;
done:
    Py_XDECREF(r);
    Py_XDECREF(on);
    Py_XDECREF(loop);
    Py_XDECREF(running);
    return rc;
}

/* _lock_unlock_module(name), in importlib's place (importer.h). None, or
 * NULL with an exception set. */
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
        int rc = wait_for_body(st, rec, name);
        Py_DECREF(rec);
        if (rc < 0) {
            return NULL;
        }
        if (rc > 0) {
            Py_RETURN_NONE;
        }
    }
    return PyObject_CallOneArg(st->orig_lock_unlock, name);
}
