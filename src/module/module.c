/* SPDX-License-Identifier: MIT */
/* The built-in `apyrun` module: multi-phase init, a module state that
 * starts with the loop's opaque state (apyrun/loop.h), and the functions
 * new_event_loop(), run() and install(). The types themselves are built by
 * the loop layer (src/loop/state.c); nothing here is a static PyObject. */
#include <Python.h>

#include "apyrun/importer.h"
#include "apyrun/loop.h"
#include "apyrun/module.h"
#include "apyrun_config.h"

/* The module state. The loop layer finds its part through the types'
 * module (PyType_GetModuleState), so it must stay the first member. */
typedef struct {
    apy_loop_state_t *loop; /* owned; NULL until module_exec made it */
    int install_pending; /* install() came while module_exec ran */
} module_state_t;

static inline module_state_t *
get_state(PyObject *module)
{
    return (module_state_t *)PyModule_GetState(module);
}

/* new_event_loop(): a new apyrun.Loop. */
static PyObject *
module_new_event_loop(PyObject *module, PyObject *unused)
{
    return PyObject_CallNoArgs(
        apy_loop_state_loop_type(get_state(module)->loop));
}

/* run(coro, *, debug=None): asyncio.run() on an apyrun loop, through
 * asyncio.Runner(debug=debug, loop_factory=apyrun.Loop). */
static PyObject *
module_run(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"main", "debug", NULL};
    PyObject *main, *debug = Py_None;
    PyObject *asyncio, *running = NULL, *runner_cls = NULL, *kw = NULL;
    PyObject *runner = NULL, *res = NULL, *closed;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$O:run", kwlist, &main,
                                     &debug)) {
        return NULL;
    }
    asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return NULL;
    }
    /* asyncio re-exports events._get_running_loop. */
    running = PyObject_CallMethod(asyncio, "_get_running_loop", NULL);
    if (running == NULL) {
        goto error;
    }
    if (running != Py_None) {
        PyErr_SetString(PyExc_RuntimeError, "apyrun.run() cannot be called "
                                            "from a running event loop");
        goto error;
    }
    runner_cls = PyObject_GetAttrString(asyncio, "Runner");
    if (runner_cls == NULL) {
        goto error;
    }
    kw = Py_BuildValue("{s:O,s:O}", "debug", debug, "loop_factory",
                       apy_loop_state_loop_type(get_state(module)->loop));
    if (kw == NULL) {
        goto error;
    }
    runner = PyObject_VectorcallDict(runner_cls, NULL, 0, kw);
    if (runner == NULL) {
        goto error;
    }
    Py_DECREF(kw);
    Py_DECREF(runner_cls);
    Py_DECREF(running);
    Py_DECREF(asyncio);
    /* with Runner(...) as runner: return runner.run(main) */
    res = PyObject_CallMethod(runner, "run", "O", main);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    closed = PyObject_CallMethod(runner, "close", NULL);
    Py_DECREF(runner);
    if (closed == NULL) {
        Py_CLEAR(res);
        if (type != NULL) {
            _PyErr_ChainExceptions(type, value, tb);
        }
        return NULL;
    }
    Py_DECREF(closed);
    PyErr_Restore(type, value, tb);
    return res;

error:
    Py_XDECREF(kw);
    Py_XDECREF(runner_cls);
    Py_XDECREF(running);
    Py_DECREF(asyncio);
    return NULL;
}

/* install(): asyncio.set_event_loop_policy(apyrun.EventLoopPolicy()). */
static PyObject *
module_install(PyObject *module, PyObject *unused)
{
    apy_loop_state_t *st = get_state(module)->loop;
    if (st == NULL || apy_loop_state_policy_type(st) == NULL) {
        /* Called while this module is still executing: importing asyncio
         * from module_exec triggers the launcher's asyncio hook, which
         * calls install() on the half-built module. Finish it first. */
        get_state(module)->install_pending = 1;
        Py_RETURN_NONE;
    }
    PyObject *policy = PyObject_CallNoArgs(apy_loop_state_policy_type(st));
    if (policy == NULL) {
        return NULL;
    }
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        Py_DECREF(policy);
        return NULL;
    }
    PyObject *res = PyObject_CallMethod(asyncio, "set_event_loop_policy",
                                        "O", policy);
    Py_DECREF(asyncio);
    Py_DECREF(policy);
    return res;
}

/* _set_stall_check(loop, on): apy_loop_set_stall_check() for tests.
 * Returns True if loop is an apyrun loop. */
static PyObject *
module_set_stall_check(PyObject *module, PyObject *const *args,
                       Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "_set_stall_check(loop, on) takes 2 arguments");
        return NULL;
    }
    int on = PyObject_IsTrue(args[1]);
    if (on < 0) {
        return NULL;
    }
    return PyBool_FromLong(apy_loop_set_stall_check(args[0], on));
}

static PyMethodDef module_methods[] = {
    {"_set_stall_check", (PyCFunction)(void (*)(void))module_set_stall_check,
     METH_FASTCALL, "_set_stall_check(loop, on)\n--\n\n"
     "Turn run_until_complete()'s stall detection on or off (testing)."},
    {"new_event_loop", module_new_event_loop, METH_NOARGS,
     "new_event_loop()\n--\n\nReturn a new apyrun event loop."},
    {"run", (PyCFunction)(void (*)(void))module_run,
     METH_VARARGS | METH_KEYWORDS,
     "run(main, *, debug=None)\n--\n\n"
     "Run a coroutine on a new apyrun loop, as asyncio.run()."},
    {"install", module_install, METH_NOARGS,
     "install()\n--\n\nMake apyrun's loop asyncio's default "
     "(sets apyrun.EventLoopPolicy)."},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *module)
{
    get_state(module)->loop = apy_loop_state_new();
    if (get_state(module)->loop == NULL ||
        apy_loop_state_init(module, get_state(module)->loop) < 0) {
        return -1;
    }
    if (PyModule_AddStringConstant(module, "__version__", APYRUN_VERSION) <
        0) {
        return -1;
    }
    /* apyrun.import_module and apyrun.AsyncImportError (src/importer). */
    if (apy_importer_add_to_module(module) < 0) {
        return -1;
    }
    if (get_state(module)->install_pending) {
        get_state(module)->install_pending = 0;
        PyObject *r = module_install(module, NULL);
        Py_XDECREF(r);
        return r ? 0 : -1;
    }
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    return apy_loop_state_traverse(get_state(module)->loop, visit, arg);
}

static int
module_clear(PyObject *module)
{
    apy_loop_state_clear(get_state(module)->loop);
    return 0;
}

static void
module_free(void *module)
{
    apy_loop_state_free(get_state((PyObject *)module)->loop);
    get_state((PyObject *)module)->loop = NULL;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "apyrun",
    .m_doc = "apyrun: an asyncio event loop written in C on libuv.",
    .m_size = sizeof(module_state_t),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

/* PyInit of `apyrun`: the module definition (multi-phase init). */
PyMODINIT_FUNC
apy_module_init(void)
{
    return PyModuleDef_Init(&module_def);
}
