/* SPDX-License-Identifier: MIT */
/* Driving a TLA module coroutine as the program's main task, with
 * asyncio.run's semantics, written in C so that no runner frame ever
 * shows in the user's traceback. Must not know how the loop is built: it
 * only uses the AbstractEventLoop API (and the loop.h flags). */
#include <Python.h>
#include <frameobject.h>

#include <signal.h>
#include <string.h>

#include "apyrun/loop.h"
#include "apyrun/tla.h"
#include "stall.h"

/* asyncio.Runner in 3.11: context copy, SIGINT cancels the main task
 * while it awaits, leftover tasks cancelled, async generators and the
 * default executor shut down; but a SIGINT while user code runs
 * interrupts it, as in python3. */

#define SIGINT_CAPSULE "apyrun.tla.sigint"

/* What the SIGINT handler needs; owned by a capsule. */
typedef struct {
    PyObject *loop;
    PyObject *task;
    int cancels; /* Ctrl-Cs that cancelled the task: 0 or 1 */
} sigint_state_t;

static void
sigint_capsule_free(PyObject *capsule)
{
    sigint_state_t *st = PyCapsule_GetPointer(capsule, SIGINT_CAPSULE);
    if (st != NULL) {
        Py_XDECREF(st->loop);
        Py_XDECREF(st->task);
        PyMem_Free(st);
    }
}

/* Returns 1 if frame (a frame object or None) runs the code of a loop
 * written in Python (asyncio, selectors), else 0; never fails. */
static int
is_loop_frame(PyObject *frame)
{
    if (!PyFrame_Check(frame)) {
        return 1; /* no Python code runs: the loop's own C code does */
    }
    PyObject *globals = PyFrame_GetGlobals((PyFrameObject *)frame);
    PyObject *name = PyDict_GetItemString(globals, "__name__"); /* borrowed */
    const char *s = NULL;
    if (name != NULL && PyUnicode_Check(name)) {
        s = PyUnicode_AsUTF8(name);
        if (s == NULL) {
            PyErr_Clear(); /* not UTF-8: not a loop module's name either */
        }
    }
    int loop = s != NULL && (strcmp(s, "selectors") == 0
                             || strcmp(s, "asyncio") == 0
                             || strncmp(s, "asyncio.", 8) == 0);
    Py_DECREF(globals);
    return loop;
}

/* Returns 1 if the main task awaits (the loop waits for events or does
 * its own work between callbacks), 0 if code runs that a Ctrl-C must
 * interrupt where it is (a task step or a callback that blocks, as
 * time.sleep in a cell); never fails. frame is the signal handler's. */
static int
main_task_awaits(PyObject *loop, PyObject *frame)
{
    int in_callback;
    if (apy_loop_in_callback(loop, &in_callback)) {
        return !in_callback;
    }
    /* Another loop (--loop asyncio) does not say what it does, but a
     * Python signal handler runs in the innermost Python frame: the
     * stdlib loop waits in selectors' select() and works between
     * callbacks in asyncio's own modules; user code is anywhere else
     * (time.sleep has the caller's frame, Event.wait threading's). */
    return is_loop_frame(frame);
}

/* signal.signal(SIGINT) handler while the main task runs. A Ctrl-C while
 * the main task awaits cancels it, as Runner._on_sigint does in
 * asyncio/runners.py; one while user code runs (blocking in a call, or
 * computing) raises KeyboardInterrupt there at once, as python3 and
 * ipykernel do: returning would resume the blocking call (PEP 475). A
 * Ctrl-C after the task was cancelled interrupts, whatever runs. Returns
 * None, or NULL with KeyboardInterrupt set. */
static PyObject *
on_sigint(PyObject *capsule, PyObject *const *args, Py_ssize_t nargs)
{
    sigint_state_t *st = PyCapsule_GetPointer(capsule, SIGINT_CAPSULE);
    if (st == NULL) {
        return NULL;
    }
    PyObject *frame = nargs >= 2 ? args[1] : Py_None;
    if (st->cancels == 0 && main_task_awaits(st->loop, frame)) {
        PyObject *done = PyObject_CallMethod(st->task, "done", NULL);
        if (done == NULL) {
            return NULL;
        }
        int is_done = PyObject_IsTrue(done);
        Py_DECREF(done);
        if (is_done < 0) {
            return NULL;
        }
        if (!is_done) {
            PyObject *r = PyObject_CallMethod(st->task, "cancel", NULL);
            if (r == NULL) {
                return NULL;
            }
            Py_DECREF(r);
            st->cancels++;
            /* A loop blocked in select() with a long timeout (the stdlib
             * loop with --loop asyncio) must wake up to see the cancel:
             * any cheap callable does; task.done has no side effect. */
            PyObject *wake = PyObject_GetAttrString(st->task, "done");
            if (wake == NULL) {
                return NULL;
            }
            r = PyObject_CallMethod(st->loop, "call_soon_threadsafe", "O",
                                    wake);
            Py_DECREF(wake);
            if (r == NULL) {
                return NULL;
            }
            Py_DECREF(r);
            Py_RETURN_NONE;
        }
    }
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    return NULL;
}

static PyMethodDef sigint_def = {
    "apyrun_sigint", (PyCFunction)(void (*)(void))on_sigint, METH_FASTCALL,
    "Cancels apyrun's main task on Ctrl-C while it awaits, else "
    "interrupts.",
};

/* Installs on_sigint if SIGINT still has python's default handler (as
 * Runner does; the launcher runs the main task in the main thread).
 * Returns a new reference to the handler installed, Py_None if none was,
 * NULL with an exception set. */
static PyObject *
install_sigint(PyObject *signal_mod, PyObject *loop, PyObject *task)
{
    PyObject *current = PyObject_CallMethod(signal_mod, "getsignal", "i",
                                            SIGINT);
    if (current == NULL) {
        return NULL;
    }
    PyObject *dflt = PyObject_GetAttrString(signal_mod,
                                            "default_int_handler");
    if (dflt == NULL) {
        Py_DECREF(current);
        return NULL;
    }
    int is_default = current == dflt;
    Py_DECREF(current);
    Py_DECREF(dflt);
    if (!is_default) {
        Py_RETURN_NONE;
    }
    sigint_state_t *st = PyMem_Calloc(1, sizeof(*st));
    if (st == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *capsule = PyCapsule_New(st, SIGINT_CAPSULE,
                                      sigint_capsule_free);
    if (capsule == NULL) {
        PyMem_Free(st);
        return NULL;
    }
    st->loop = Py_NewRef(loop);
    st->task = Py_NewRef(task);
    PyObject *handler = PyCFunction_New(&sigint_def, capsule);
    Py_DECREF(capsule);
    if (handler == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_CallMethod(signal_mod, "signal", "iO", SIGINT,
                                      handler);
    if (r == NULL) {
        Py_DECREF(handler);
        return NULL;
    }
    Py_DECREF(r);
    return handler;
}

/* Puts python's default SIGINT handler back if ours is still there. The
 * current exception, if any, stays set. */
static void
restore_sigint(PyObject *signal_mod, PyObject *handler)
{
    if (handler == Py_None) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *current = PyObject_CallMethod(signal_mod, "getsignal", "i",
                                            SIGINT);
    if (current == handler) {
        PyObject *dflt = PyObject_GetAttrString(signal_mod,
                                                "default_int_handler");
        if (dflt != NULL) {
            PyObject *r = PyObject_CallMethod(signal_mod, "signal", "iO",
                                              SIGINT, dflt);
            Py_XDECREF(r);
            Py_DECREF(dflt);
        }
    }
    Py_XDECREF(current);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

/* Returns 1 if handler (from install_sigint) cancelled the main task,
 * else 0. */
static int
sigint_cancelled(PyObject *handler)
{
    if (handler == Py_None) {
        return 0;
    }
    PyObject *capsule = PyCFunction_GET_SELF(handler);
    sigint_state_t *st = PyCapsule_GetPointer(capsule, SIGINT_CAPSULE);
    return st != NULL && st->cancels > 0;
}

/* After a Ctrl-C cancelled the main task: if the task did not swallow the
 * cancellation, the program ends with KeyboardInterrupt, whose traceback is
 * where the main task was when it was cancelled. Call with CancelledError
 * set; leaves either KeyboardInterrupt or the original error set. */
static void
cancelled_to_keyboard_interrupt(PyObject *task)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *r = PyObject_CallMethod(task, "uncancel", NULL);
    long left = -1;
    if (r != NULL) {
        left = PyLong_AsLong(r);
        Py_DECREF(r);
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    if (left != 0) {
        /* The program caught the cancellation and went on: its own
         * outcome stands. */
        return;
    }
    apy_tla_strip_internal_frames();
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    /* The user's frames are on the first exception of the chain that has
     * any once internal frames are stripped. */
    PyObject *user_tb = NULL;
    for (PyObject *e = value; e != NULL;) {
        PyObject *t = PyException_GetTraceback(e);
        if (t != NULL && t != Py_None) {
            user_tb = t;
            break;
        }
        Py_XDECREF(t);
        PyObject *next = PyException_GetContext(e);
        Py_XDECREF(next); /* kept alive by value's chain */
        e = next;
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    Py_XSETREF(tb, user_tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    PyErr_Restore(type, value, Py_XNewRef(tb));
    Py_XDECREF(tb);
}

/* Returns 1 if the current exception is apyrun.NeverCompletedError, else
 * 0; the exception stays set either way. */
static int
is_never_completed(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *cls = NULL;
    PyObject *apyrun = PyImport_ImportModule("apyrun");
    if (apyrun != NULL) {
        cls = PyObject_GetAttrString(apyrun, "NeverCompletedError");
        Py_DECREF(apyrun);
    }
    PyErr_Clear();
    int match = cls != NULL && type != NULL
                && PyErr_GivenExceptionMatches(type, cls);
    Py_XDECREF(cls);
    PyErr_Restore(type, value, tb);
    return match;
}

/* Returns 1 if the current exception is asyncio.CancelledError, else 0;
 * the exception stays set either way. */
static int
is_cancelled_error(PyObject *asyncio)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *cls = PyObject_GetAttrString(asyncio, "CancelledError");
    PyErr_Clear();
    int match = cls != NULL && type != NULL
                && PyErr_GivenExceptionMatches(type, cls);
    Py_XDECREF(cls);
    PyErr_Restore(type, value, tb);
    return match;
}

/* run_until_complete(coro_factory()) on loop; returns 0 or -1. */
static int
run_method(PyObject *loop, const char *method)
{
    PyObject *coro = PyObject_CallMethod(loop, method, NULL);
    if (coro == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethod(loop, "run_until_complete", "O", coro);
    Py_DECREF(coro);
    Py_XDECREF(r);
    return r != NULL ? 0 : -1;
}

/* Runner.close(): cancel leftover tasks, shut down async generators and
 * the default executor, unset and close the loop. Returns 0, -1 with an
 * exception set, or -2 (reported) when leftover tasks never finish. */
static int
close_loop(PyObject *asyncio, PyObject *loop)
{
    int rc = -1;
    PyObject *r = NULL;
    PyObject *runners = PyImport_ImportModule("asyncio.runners");
    if (runners != NULL) {
        r = PyObject_CallMethod(runners, "_cancel_all_tasks", "O", loop);
        Py_DECREF(runners);
    }
    if (r != NULL) {
        Py_DECREF(r);
        rc = 0;
    }
    if (rc == 0) {
        rc = run_method(loop, "shutdown_asyncgens");
    }
    if (rc == 0) {
        rc = run_method(loop, "shutdown_default_executor");
    }
    if (rc < 0 && is_never_completed()) {
        PyErr_Clear();
        PySys_WriteStderr("apyrun: tasks left running at the end never "
                          "finished after being cancelled\n");
        rc = -2;
    }

    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    r = PyObject_CallMethod(asyncio, "set_event_loop", "O", Py_None);
    Py_XDECREF(r);
    if (r != NULL) {
        r = PyObject_CallMethod(loop, "close", NULL);
        Py_XDECREF(r);
    }
    if (r == NULL && rc == 0) {
        return -1;
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    return rc;
}

/* The loop current in this thread if it is open (one loop per process:
 * the importer makes its loop current when loop-less code imports a TLA
 * module, and what that module started must go on running), else a new
 * one. policy.get_event_loop() creates one itself when none was ever
 * set. New reference or NULL with an exception set. */
static PyObject *
current_or_new_loop(PyObject *asyncio)
{
    PyObject *loop = NULL;
    PyObject *policy = PyObject_CallMethod(asyncio, "get_event_loop_policy",
                                           NULL);
    if (policy != NULL) {
        loop = PyObject_CallMethod(policy, "get_event_loop", NULL);
        Py_DECREF(policy);
    }
    if (loop == NULL) {
        /* No loop for this thread: a new one, as for a closed one. */
        if (!PyErr_ExceptionMatches(PyExc_RuntimeError)) {
            return NULL;
        }
        PyErr_Clear();
        return apy_tla_new_loop();
    }
    PyObject *closed = PyObject_CallMethod(loop, "is_closed", NULL);
    int reuse = closed != NULL && PyObject_IsTrue(closed) == 0;
    Py_XDECREF(closed);
    PyErr_Clear();
    if (reuse) {
        return loop;
    }
    Py_DECREF(loop);
    return apy_tla_new_loop();
}

/* A new main-task loop with stall detection, not current: new reference,
 * or NULL with an exception set. */
PyObject *
apy_tla_new_loop(void)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return NULL;
    }
    PyObject *loop = PyObject_CallMethod(asyncio, "new_event_loop", NULL);
    Py_DECREF(asyncio);
    if (loop == NULL) {
        return NULL;
    }
    /* A main task that can never finish is reported, not waited for. */
    apy_loop_set_stall_check(loop, 1);
    return loop;
}

/* The thread's open loop or a new one, made current: new reference, or
 * NULL with an exception set. */
PyObject *
apy_tla_open_loop(void)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return NULL;
    }
    PyObject *loop = current_or_new_loop(asyncio);
    if (loop == NULL) {
        Py_DECREF(asyncio);
        return NULL;
    }
    apy_loop_set_stall_check(loop, 1);
    PyObject *r = PyObject_CallMethod(asyncio, "set_event_loop", "O", loop);
    Py_DECREF(asyncio);
    if (r == NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *c = PyObject_CallMethod(loop, "close", NULL);
        Py_XDECREF(c);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        Py_DECREF(loop);
        return NULL;
    }
    Py_DECREF(r);
    return loop;
}

/* loop.create_task(coro, context=copy_context()): a new reference to the
 * task, or NULL with an exception set. */
static PyObject *
create_main_task(PyObject *loop, PyObject *coro)
{
    PyObject *ctx = NULL, *create_task = NULL, *kwargs = NULL, *args = NULL;
    PyObject *task = NULL;

    ctx = PyContext_CopyCurrent();
    if (ctx == NULL) {
        goto done;
    }
    create_task = PyObject_GetAttrString(loop, "create_task");
    if (create_task == NULL) {
        goto done;
    }
    kwargs = Py_BuildValue("{sO}", "context", ctx);
    if (kwargs == NULL) {
        goto done;
    }
    args = PyTuple_Pack(1, coro);
    if (args == NULL) {
        goto done;
    }
    task = PyObject_Call(create_task, args, kwargs);
done:
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(create_task);
    Py_XDECREF(ctx);
    return task;
}

/* Runs coro as the main task (apyrun/tla.h). 0 (and *result), -1 with
 * the exception set, or -2 when it can never finish (reported). */
int
apy_tla_run_coro(PyObject *loop, PyObject *coro, PyObject **result)
{
    PyObject *asyncio = NULL, *signal_mod = NULL, *task = NULL;
    PyObject *handler = NULL, *r = NULL;
    int rc = -1;

    if (result != NULL) {
        *result = NULL;
    }
    asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        goto done;
    }
    signal_mod = PyImport_ImportModule("signal");
    if (signal_mod == NULL) {
        goto done;
    }
    task = create_main_task(loop, coro);
    if (task == NULL) {
        goto done;
    }
    handler = install_sigint(signal_mod, loop, task);
    if (handler == NULL) {
        goto done;
    }
    r = PyObject_CallMethod(loop, "run_until_complete", "O", task);
    if (r != NULL) {
        rc = 0;
        if (result != NULL) {
            *result = r;
            r = NULL;
        }
    } else if (is_never_completed()) {
        PyErr_Clear();
        if (apy__tla_write_stall_report(task) < 0) {
            PyErr_Print();
        }
        rc = -2;
    } else if (sigint_cancelled(handler) && is_cancelled_error(asyncio)) {
        cancelled_to_keyboard_interrupt(task);
    }
    restore_sigint(signal_mod, handler);
done:
    if (rc == -1) {
        apy_tla_strip_internal_frames();
    }
    Py_XDECREF(r);
    Py_XDECREF(handler);
    Py_XDECREF(task);
    Py_XDECREF(signal_mod);
    Py_XDECREF(asyncio);
    return rc;
}

/* Closes a loop as asyncio.Runner.close does (apyrun/tla.h). 0, -1 with
 * an exception set (one already set wins), or -2 (reported). */
int
apy_tla_close_loop(PyObject *loop)
{
    /* The program's own outcome wins over a failure to clean up, as an
     * exception from Runner.run wins in asyncio.run. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int rc = -1;
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio != NULL) {
        rc = close_loop(asyncio, loop);
        Py_DECREF(asyncio);
    }
    if (type != NULL) {
        if (rc == -1) {
            PyErr_WriteUnraisable(loop);
        }
        PyErr_Restore(type, value, tb);
        return -1;
    }
    if (rc == -1) {
        apy_tla_strip_internal_frames();
    }
    return rc;
}

/* Runs TLA module code as the main task of a new loop (apyrun/tla.h).
 * 0, -1 with the exception set, or -2 when it can never finish. */
int
apy_tla_run_main(PyObject *code, PyObject *globals)
{
    PyObject *loop = apy_tla_open_loop();
    if (loop == NULL) {
        return -1;
    }
    /* The module body becomes a coroutine only now, so that nothing of it
     * runs before the loop exists. */
    int rc = -1;
    PyObject *coro = PyEval_EvalCode(code, globals, globals);
    if (coro != NULL) {
        rc = apy_tla_run_coro(loop, coro, NULL);
        Py_DECREF(coro);
    }
    int crc = apy_tla_close_loop(loop);
    Py_DECREF(loop);
    return rc != 0 ? rc : crc;
}
