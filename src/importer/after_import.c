/* SPDX-License-Identifier: MIT */
/* Running code right after a module is first imported, without importing
 * it early: a one-shot meta-path finder that lets python do all the work
 * and leaves no trace. Used to make apyrun's loop asyncio's default, and
 * to give linecache the text of notebooks imported before it. */
#include <Python.h>

#include "apyrun/importer.h"
#include "importer.h"

/* The finder waits for the name, lets the rest of sys.meta_path and the
 * module's own loader do all the work, and once the module has executed
 * puts the real loader back and calls a callback with the module.
 * Nothing of it is left afterwards: the module's spec and __loader__ are
 * the originals. */

/* The finder is also the loader it hands out for its one import. */
typedef struct {
    PyObject_HEAD
    PyObject *name;        /* the module waited for */
    PyObject *callback;    /* called with the module after it executed */
    PyObject *real_loader; /* the module's loader while the import runs */
    PyObject *spec;        /* the module's spec while the import runs */
} AfterImportObject;

static int
hook_traverse(AfterImportObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->name);
    Py_VISIT(self->callback);
    Py_VISIT(self->real_loader);
    Py_VISIT(self->spec);
    return 0;
}

static int
hook_clear(AfterImportObject *self)
{
    Py_CLEAR(self->name);
    Py_CLEAR(self->callback);
    Py_CLEAR(self->real_loader);
    Py_CLEAR(self->spec);
    return 0;
}

static void
hook_dealloc(AfterImportObject *self)
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
    for (Py_ssize_t i = 0; meta_path && PyList_Check(meta_path)
                           && i < PyList_GET_SIZE(meta_path);
         i++) {
        if (PyList_GET_ITEM(meta_path, i) == self) {
            return PySequence_DelItem(meta_path, i);
        }
    }
    return 0;
}

/* find_spec(name, path=None, target=None): for the awaited name, the spec
 * importlib finds over the rest of sys.meta_path, with this object as its
 * loader. Returns a new reference (None for every other name), NULL on
 * error. */
static PyObject *
hook_find_spec(AfterImportObject *self, PyObject *args)
{
    PyObject *name, *path = Py_None, *target = Py_None;
    if (!PyArg_ParseTuple(args, "U|OO:find_spec", &name, &path, &target)) {
        return NULL;
    }
    if (self->name == NULL
        || PyUnicode_Compare(name, self->name) != 0) {
        Py_RETURN_NONE;
    }
    if (unhook((PyObject *)self) < 0) {
        return NULL;
    }
    PyObject *bootstrap = PyImport_ImportModule("_frozen_importlib");
    if (bootstrap == NULL) {
        return NULL;
    }
    PyObject *spec = PyObject_CallMethod(bootstrap, "_find_spec", "OOO",
                                         name, path, target);
    Py_DECREF(bootstrap);
    if (spec == NULL || spec == Py_None) {
        return spec;
    }
    PyObject *loader = PyObject_GetAttrString(spec, "loader");
    if (loader == NULL || loader == Py_None
        || !PyObject_HasAttrString(loader, "exec_module")
        || PyObject_SetAttrString(spec, "loader", (PyObject *)self) < 0) {
        /* Nothing to wrap: leave this import alone. */
        Py_XDECREF(loader);
        PyErr_Clear();
        return spec;
    }
    Py_XSETREF(self->real_loader, loader);
    Py_XSETREF(self->spec, Py_NewRef(spec));
    return spec;
}

/* create_module(spec): the real loader's answer. New reference or NULL. */
static PyObject *
hook_create_module(AfterImportObject *self, PyObject *spec)
{
    if (self->real_loader == NULL) {
        Py_RETURN_NONE;
    }
    return PyObject_CallMethod(self->real_loader, "create_module", "O", spec);
}

/* exec_module(module): the real loader's, then the callback. Returns None,
 * or NULL with an exception set (the import then fails with it). */
static PyObject *
hook_exec_module(AfterImportObject *self, PyObject *module)
{
    PyObject *real = self->real_loader, *spec = self->spec;
    PyObject *callback = self->callback;
    self->real_loader = self->spec = self->callback = NULL;
    Py_CLEAR(self->name);
    if (real == NULL || callback == NULL) {
        Py_XDECREF(real);
        Py_XDECREF(spec);
        Py_XDECREF(callback);
        PyErr_SetString(PyExc_ImportError, "apyrun: import hook misused");
        return NULL;
    }
    PyObject *r = PyObject_CallMethod(real, "exec_module", "O", module);
    /* Nothing of the hook stays visible on the module. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (PyObject_SetAttrString(spec, "loader", real) < 0
        || PyObject_SetAttrString(module, "__loader__", real) < 0) {
        PyErr_Clear();
    }
    PyErr_Restore(type, value, tb);
    Py_DECREF(real);
    Py_DECREF(spec);
    if (r != NULL) {
        Py_SETREF(r, PyObject_CallOneArg(callback, module));
    }
    Py_DECREF(callback);
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
    {Py_tp_doc, "apyrun: runs a callback once a module has been imported."},
    {0, NULL},
};

static PyType_Spec hook_spec = {
    .name = "apyrun._AfterImportHook",
    .basicsize = sizeof(AfterImportObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = hook_slots,
};

/* Calls callback(module) right after `name` is first imported (see
 * importer.h). 0, or -1 with an exception set. */
int
apy__importer_after_import(const char *name, PyObject *callback)
{
    /* The type lives as long as its instance (which holds it): a hook is
     * installed once or twice per process, never on a hot path. */
    PyObject *type = PyType_FromSpec(&hook_spec);
    if (type == NULL) {
        return -1;
    }
    AfterImportObject *hook = PyObject_GC_New(AfterImportObject,
                                              (PyTypeObject *)type);
    Py_DECREF(type);
    if (hook == NULL) {
        return -1;
    }
    hook->name = PyUnicode_FromString(name);
    hook->callback = Py_NewRef(callback);
    hook->real_loader = NULL;
    hook->spec = NULL;
    PyObject_GC_Track(hook);
    int rc = -1;
    if (hook->name != NULL) {
        /* No sys.meta_path, no import to wait for. */
        PyObject *meta_path = PySys_GetObject("meta_path"); /* borrowed */
        rc = meta_path != NULL && PyList_Check(meta_path)
                 ? PyList_Insert(meta_path, 0, (PyObject *)hook)
                 : 0;
    }
    Py_DECREF(hook);
    return rc;
}

/* The callback after asyncio's import: apyrun.install(). Returns None or
 * NULL with an exception set (asyncio's import then fails loudly). */
static PyObject *
install_apyrun_loop(PyObject *unused, PyObject *asyncio)
{
    PyObject *apyrun = PyImport_ImportModule("apyrun");
    if (apyrun == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_CallMethod(apyrun, "install", NULL);
    Py_DECREF(apyrun);
    return r;
}

static PyMethodDef install_def = {
    "install_apyrun_loop", install_apyrun_loop, METH_O, NULL,
};

/* Makes apyrun's loop asyncio's default once asyncio is imported
 * (apyrun/importer.h). 0, or -1 with an exception set. */
int
apy_importer_install_loop_hook(void)
{
    PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
    if (PyDict_GetItemString(modules, "asyncio") != NULL) {
        return 0;
    }
    PyObject *callback = PyCFunction_New(&install_def, NULL);
    if (callback == NULL) {
        return -1;
    }
    int rc = apy__importer_after_import("asyncio", callback);
    Py_DECREF(callback);
    return rc;
}
