/* SPDX-License-Identifier: MIT */
/* The `_apyrun_importer` module state as the other importer files reach
 * it (from a type, or by importing the module), and the asyncio pieces
 * TLA imports need, fetched on first use and never at startup. Calls no
 * other file of the importer. */
#include <Python.h>

#include "apyrun/importer.h"
#include "importer.h"

/* The importer state of `tp`'s module: borrowed, never NULL for the
 * importer's own types. */
apy_importer_state_t *
apy__importer_state_of(PyTypeObject *tp)
{
    return PyType_GetModuleState(tp);
}

/* The imported module's state: borrowed, or NULL with an exception set. */
apy_importer_state_t *
apy__importer_find_state(void)
{
    PyObject *mod = PyImport_ImportModule(APY_IMPORTER_MODULE_NAME);
    if (mod == NULL) {
        return NULL;
    }
    apy_importer_state_t *st = PyModule_GetState(mod);
    Py_DECREF(mod); /* sys.modules keeps it */
    return st;
}

/* Fetches asyncio's task registry on first use. 0, or -1 with an
 * exception set. */
int
apy__importer_need_asyncio(apy_importer_state_t *st)
{
    if (st->current_task != NULL) {
        return 0;
    }
    /* asyncio first: _asyncio imported on its own, before the package,
     * initialises twice and ends up with two task registries. */
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return -1;
    }
    PyObject *mod = PyImport_ImportModule("_asyncio");
    Py_DECREF(asyncio);
    if (mod == NULL) {
        return -1;
    }
    st->current_task = PyObject_GetAttrString(mod, "_current_tasks");
    Py_DECREF(mod);
    return st->current_task != NULL ? 0 : -1;
}

/* asyncio._get_running_loop(): new reference, Py_None when none runs,
 * NULL with an exception set. */
PyObject *
apy__importer_running_loop(void)
{
    /* Looked up at each call, never kept in the state: the function's
     * self is the _asyncio module, whose C globals hold asyncio, whose
     * modules hold our loaders, whose types hold this module. Kept, that
     * cycle would run through C statics that no GC sees, and the
     * importer (module, state, types) and asyncio with it would outlive
     * Py_Finalize (LSan showed the importer's types alive at exit after
     * any awaited import). The _current_tasks dict holds no module. */
    PyObject *mod = PyImport_ImportModule("_asyncio");
    if (mod == NULL) {
        return NULL;
    }
    PyObject *loop = PyObject_CallMethod(mod, "_get_running_loop", NULL);
    Py_DECREF(mod);
    return loop;
}

/* Runs coro on loop (another thread's) and waits: new reference to its
 * result, or NULL with its exception set. */
PyObject *
apy__importer_run_threadsafe(PyObject *coro, PyObject *loop)
{
    PyObject *asyncio = NULL, *cf = NULL, *r = NULL;

    asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        goto done;
    }
    cf = PyObject_CallMethod(asyncio, "run_coroutine_threadsafe", "OO", coro,
                             loop);
    if (cf == NULL) {
        goto done;
    }
    /* concurrent.futures.Future.result() waits with the GIL released. */
    r = PyObject_CallMethod(cf, "result", NULL);
done:
    Py_XDECREF(cf);
    Py_XDECREF(asyncio);
    return r;
}

/* Raises AsyncImportError(msg, name=name); steals msg (NULL: its
 * exception is already set). Always leaves an exception set. */
void
apy__importer_raise_async_import_error(apy_importer_state_t *st,
                                       PyObject *name, PyObject *msg)
{
    PyObject *kw = NULL, *args = NULL, *exc = NULL;

    if (msg == NULL) {
        return;
    }
    kw = Py_BuildValue("{s:O}", "name", name);
    if (kw == NULL) {
        goto error;
    }
    args = PyTuple_Pack(1, msg);
    if (args == NULL) {
        goto error;
    }
    exc = PyObject_Call(st->async_import_error, args, kw);
    if (exc == NULL) {
        goto error;
    }
    PyErr_SetObject(st->async_import_error, exc);
error:
    Py_XDECREF(exc);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_DECREF(msg);
}
