/* SPDX-License-Identifier: MIT */
/* The "top-level await never completed" report: where the main task is
 * waiting, as a chain of frames from the module down to the awaited
 * future, following awaited tasks. Reads only public attributes of
 * coroutines, generators and asyncio tasks. */
#include <Python.h>

#include "stall.h"

#define MAX_DEPTH 200

/* getattr(obj, name, <missing>): 1 and a new reference in *out, 0 and
 * NULL when obj has no such attribute, -1 with an exception set. */
static int
lookup(PyObject *obj, const char *name, PyObject **out)
{
    PyObject *key = PyUnicode_FromString(name);
    if (key == NULL) {
        *out = NULL;
        return -1;
    }
    int rc = _PyObject_LookupAttr(obj, key, out);
    Py_DECREF(key);
    return rc;
}

/* Writes one frame line, with its source line when linecache has it.
 * Returns 0, or -1 with an exception set. */
static int
write_frame(PyObject *frame, PyObject *linecache)
{
    PyObject *code = NULL, *lineno = NULL, *filename = NULL, *name = NULL;
    int rc = -1;

    code = PyObject_GetAttrString(frame, "f_code");
    if (code == NULL) {
        goto done;
    }
    lineno = PyObject_GetAttrString(frame, "f_lineno");
    if (lineno == NULL) {
        goto done;
    }
    filename = PyObject_GetAttrString(code, "co_filename");
    if (filename == NULL) {
        goto done;
    }
    name = PyObject_GetAttrString(code, "co_name");
    if (name == NULL) {
        goto done;
    }
    PySys_FormatStderr("  File \"%U\", line %S, in %U\n", filename, lineno,
                       name);
    PyObject *line = PyObject_CallMethod(linecache, "getline", "OO",
                                         filename, lineno);
    if (line == NULL) {
        goto done;
    }
    PyObject *stripped = PyObject_CallMethod(line, "strip", NULL);
    Py_DECREF(line);
    if (stripped == NULL) {
        goto done;
    }
    if (PyUnicode_GET_LENGTH(stripped) > 0) {
        PySys_FormatStderr("    %U\n", stripped);
    }
    Py_DECREF(stripped);
    rc = 0;
done:
    Py_XDECREF(code);
    Py_XDECREF(lineno);
    Py_XDECREF(filename);
    Py_XDECREF(name);
    return rc;
}

/* Returns a new reference to the running frame of a coroutine, generator
 * or async generator, Py_None if it has none, NULL with an exception. */
static PyObject *
awaitable_frame(PyObject *obj)
{
    static const char *const attrs[] = {"cr_frame", "gi_frame", "ag_frame"};
    for (size_t i = 0; i < 3; i++) {
        PyObject *frame;
        if (lookup(obj, attrs[i], &frame) < 0) {
            return NULL;
        }
        if (frame != NULL) {
            return frame;
        }
    }
    return Py_NewRef(Py_None);
}

/* Returns a new reference to what obj (a coroutine or generator) is
 * delegating to, Py_None if nothing, NULL with an exception set. */
static PyObject *
awaitable_target(PyObject *obj)
{
    static const char *const attrs[] = {"cr_await", "gi_yieldfrom",
                                        "ag_await"};
    for (size_t i = 0; i < 3; i++) {
        PyObject *target;
        if (lookup(obj, attrs[i], &target) < 0) {
            return NULL;
        }
        if (target != NULL) {
            return target;
        }
    }
    return Py_NewRef(Py_None);
}

/* Walks one task's coroutine chain. Returns a new reference to the
 * future the task waits on (Py_None if unknown), NULL with an error. */
static PyObject *
write_task(PyObject *task, PyObject *linecache)
{
    PyObject *obj = PyObject_CallMethod(task, "get_coro", NULL);
    for (int depth = 0; obj != NULL && obj != Py_None && depth < MAX_DEPTH;
         depth++) {
        PyObject *frame = awaitable_frame(obj);
        if (frame == NULL) {
            Py_CLEAR(obj);
            break;
        }
        if (frame == Py_None) {
            /* A C awaitable (a future's iterator): the task's waiter
             * below says what it is. */
            Py_DECREF(frame);
            break;
        }
        int rc = write_frame(frame, linecache);
        Py_DECREF(frame);
        if (rc < 0) {
            Py_CLEAR(obj);
            break;
        }
        Py_SETREF(obj, awaitable_target(obj));
    }
    if (obj == NULL) {
        return NULL;
    }
    Py_DECREF(obj);
    PyObject *waiter;
    if (lookup(task, "_fut_waiter", &waiter) < 0) {
        return NULL;
    }
    return waiter != NULL ? waiter : Py_NewRef(Py_None);
}

/* Writes the stall report for main_task to stderr. 0, or -1 with an
 * exception set. */
int
apy__tla_write_stall_report(PyObject *main_task)
{
    PyObject *linecache = PyImport_ImportModule("linecache");
    if (linecache == NULL) {
        return -1;
    }
    PySys_WriteStderr("apyrun: top-level await never completed: nothing "
                      "left could wake it. It waits here:\n");
    PyObject *task = Py_NewRef(main_task);
    int rc = 0;
    for (int depth = 0; depth < MAX_DEPTH; depth++) {
        PyObject *waiter = write_task(task, linecache);
        Py_DECREF(task);
        if (waiter == NULL) {
            rc = -1;
            break;
        }
        if (waiter == Py_None) {
            Py_DECREF(waiter);
            break;
        }
        int is_task = PyObject_HasAttrString(waiter, "get_coro");
        PyObject *repr = PyObject_Repr(waiter);
        if (repr == NULL) {
            Py_DECREF(waiter);
            rc = -1;
            break;
        }
        PySys_FormatStderr("  %s %U\n",
                           is_task ? "awaiting task" : "waiting for", repr);
        Py_DECREF(repr);
        if (!is_task) {
            Py_DECREF(waiter);
            break;
        }
        task = waiter;
    }
    Py_DECREF(linecache);
    return rc;
}
