/* SPDX-License-Identifier: MIT */
/* Makes apyrun's loop asyncio's default without importing asyncio at
 * startup: a one-shot meta-path finder waits for `import asyncio`, lets the
 * real finder and loader do all the work, and once the package has
 * executed puts the real loader back and calls apyrun.install(). Nothing
 * of it is left afterwards: asyncio's spec and __loader__ are the
 * originals. */
#include <Python.h>
#include <structmember.h>

#include "apyrun/importer.h"

/* The finder is also the loader it hands out for asyncio: it wraps the
 * real loader only for the duration of that one import. */
typedef struct {
    PyObject_HEAD
    PyObject *real_loader; /* asyncio's loader while the import runs */
    PyObject *spec;        /* asyncio's spec while the import runs */
    int done;
} AsyncioHookObject;

static int
hook_traverse(AsyncioHookObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->real_loader);
    Py_VISIT(self->spec);
    return 0;
}

static int
hook_clear(AsyncioHookObject *self)
{
    Py_CLEAR(self->real_loader);
    Py_CLEAR(self->spec);
    return 0;
}

static void
hook_dealloc(AsyncioHookObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    hook_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* Removes self from sys.meta_path. Returns 0 or -1 with an exception. */
static int
unhook(PyObject *self)
{
    PyObject *meta_path = PySys_GetObject("meta_path"); /* borrowed */
    if (meta_path == NULL || !PyList_Check(meta_path)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(meta_path); i++) {
        if (PyList_GET_ITEM(meta_path, i) == self) {
            return PySequence_DelItem(meta_path, i);
        }
    }
    return 0;
}

/* find_spec(name, path=None, target=None): for "asyncio", the spec the
 * rest of sys.meta_path finds, with this object as its loader. Returns a
 * new reference (None for every other name), NULL on error. */
static PyObject *
hook_find_spec(AsyncioHookObject *self, PyObject *args)
{
    PyObject *name, *path = Py_None, *target = Py_None;
    if (!PyArg_ParseTuple(args, "U|OO:find_spec", &name, &path, &target)) {
        return NULL;
    }
    if (self->done || !_PyUnicode_EqualToASCIIString(name, "asyncio")) {
        Py_RETURN_NONE;
    }
    self->done = 1;
    if (unhook((PyObject *)self) < 0) {
        return NULL;
    }
    PyObject *meta_path = PySys_GetObject("meta_path"); /* borrowed */
    PyObject *finders = meta_path ? PySequence_List(meta_path) : NULL;
    if (finders == NULL) {
        return NULL;
    }
    PyObject *spec = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(finders); i++) {
        PyObject *finder = PyList_GET_ITEM(finders, i); /* borrowed */
        if (!PyObject_HasAttrString(finder, "find_spec")) {
            continue;
        }
        PyObject *find = PyObject_GetAttrString(finder, "find_spec");
        if (find == NULL) {
            break;
        }
        spec = PyObject_CallFunctionObjArgs(find, name, path, target, NULL);
        Py_DECREF(find);
        if (spec == NULL || spec != Py_None) {
            break;
        }
        Py_CLEAR(spec);
    }
    Py_DECREF(finders);
    if (spec == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *loader = PyObject_GetAttrString(spec, "loader");
    if (loader == NULL || loader == Py_None
        || !PyObject_HasAttrString(loader, "exec_module")) {
        /* Nothing to wrap: leave this import alone. */
        Py_XDECREF(loader);
        PyErr_Clear();
        return spec;
    }
    if (PyObject_SetAttrString(spec, "loader", (PyObject *)self) < 0) {
        Py_DECREF(loader);
        Py_DECREF(spec);
        return NULL;
    }
    Py_XSETREF(self->real_loader, loader);
    Py_XSETREF(self->spec, Py_NewRef(spec));
    return spec;
}

/* create_module(spec): the real loader's answer. New reference or NULL. */
static PyObject *
hook_create_module(AsyncioHookObject *self, PyObject *spec)
{
    if (self->real_loader == NULL) {
        Py_RETURN_NONE;
    }
    return PyObject_CallMethod(self->real_loader, "create_module", "O", spec);
}

/* Puts the real loader back on the spec and the module. */
static void
restore_loader(AsyncioHookObject *self, PyObject *module)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (self->spec != NULL && self->real_loader != NULL) {
        PyObject_SetAttrString(self->spec, "loader", self->real_loader);
        PyObject_SetAttrString(module, "__loader__", self->real_loader);
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

/* exec_module(module): runs asyncio's own loader, then makes apyrun's
 * loop the default. Returns None, or NULL with an exception set. */
static PyObject *
hook_exec_module(AsyncioHookObject *self, PyObject *module)
{
    if (self->real_loader == NULL) {
        PyErr_SetString(PyExc_ImportError, "apyrun: asyncio hook misused");
        return NULL;
    }
    PyObject *r = PyObject_CallMethod(self->real_loader, "exec_module", "O",
                                      module);
    restore_loader(self, module);
    hook_clear(self);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    PyObject *apyrun = PyImport_ImportModule("apyrun");
    r = apyrun ? PyObject_CallMethod(apyrun, "install", NULL) : NULL;
    Py_XDECREF(apyrun);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyMethodDef hook_methods[] = {
    {"find_spec", (PyCFunction)hook_find_spec, METH_VARARGS, NULL},
    {"create_module", (PyCFunction)hook_create_module, METH_O, NULL},
    {"exec_module", (PyCFunction)hook_exec_module, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot hook_slots[] = {
    {Py_tp_dealloc, hook_dealloc},
    {Py_tp_traverse, hook_traverse},
    {Py_tp_clear, hook_clear},
    {Py_tp_methods, hook_methods},
    {Py_tp_doc, "apyrun: makes apyrun's loop asyncio's default once "
                "asyncio is imported."},
    {0, NULL},
};

static PyType_Spec hook_spec = {
    .name = "apyrun._AsyncioLoopHook",
    .basicsize = sizeof(AsyncioHookObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = hook_slots,
};

int
apy_importer_install_loop_hook(void)
{
    PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
    if (PyDict_GetItemString(modules, "asyncio") != NULL) {
        return 0;
    }
    /* The type lives as long as its one instance (which holds it). */
    PyObject *type = PyType_FromSpec(&hook_spec);
    if (type == NULL) {
        return -1;
    }
    AsyncioHookObject *hook = PyObject_GC_New(AsyncioHookObject,
                                              (PyTypeObject *)type);
    Py_DECREF(type);
    if (hook == NULL) {
        return -1;
    }
    hook->real_loader = NULL;
    hook->spec = NULL;
    hook->done = 0;
    PyObject_GC_Track(hook);
    PyObject *meta_path = PySys_GetObject("meta_path"); /* borrowed */
    int rc = meta_path && PyList_Check(meta_path)
                 ? PyList_Insert(meta_path, 0, (PyObject *)hook)
                 : 0;
    Py_DECREF(hook);
    return rc;
}
