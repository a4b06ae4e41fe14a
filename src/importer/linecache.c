/* SPDX-License-Identifier: MIT */
/* Notebook text for linecache: tracebacks (the traceback module) and
 * inspect.getsource read a module's lines through linecache, which would
 * otherwise read the notebook's JSON. Each imported notebook's Python
 * text, at its JSON lines, goes into linecache.cache; when linecache is
 * not imported yet (it costs milliseconds, and a plain import must not
 * pay them), the entries wait in the state and a one-shot meta-path hook
 * adds them once linecache has executed. Entries carry the file's size
 * and mtime, so linecache drops them when the notebook changes. */
#include <Python.h>

#include "apyrun/importer.h"
#include "importer.h"

/* The one-shot hook: wraps linecache's loader for that one import. */
typedef struct {
    PyObject_HEAD
    PyObject *owner;       /* the _apyrun_importer module */
    PyObject *real_loader; /* linecache's loader while it loads */
    PyObject *spec;        /* linecache's spec while it loads */
    int done;
} ApyLinecacheHookObject;

/* The linecache entry for notebook `path`: (size, mtime, lines, path),
 * lines being `source` split (one per JSON line). New reference or NULL. */
static PyObject *
make_entry(PyObject *path, PyObject *source, const apy_source_stat_t *src)
{
    PyObject *lines = PyUnicode_Splitlines(source, 1);
    if (lines == NULL) {
        return NULL;
    }
    PyObject *entry = Py_BuildValue("(LdOO)", (long long)src->size,
                                    src->mtime_float, lines, path);
    Py_DECREF(lines);
    return entry;
}

/* Adds every waiting entry to `cache` (linecache.cache), keeping entries
 * linecache already has. Returns 0 or -1. */
static int
flush_waiting(apy_importer_state_t *st, PyObject *cache)
{
    PyObject *waiting = st->lines;
    st->lines = PyDict_New();
    if (st->lines == NULL) {
        st->lines = waiting;
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *val;
    int rc = 0;
    while (rc == 0 && PyDict_Next(waiting, &pos, &key, &val)) {
        /* val: (source, size, mtime) */
        apy_source_stat_t src = {0};
        src.size = PyLong_AsLongLong(PyTuple_GET_ITEM(val, 1));
        src.mtime_float = PyFloat_AsDouble(PyTuple_GET_ITEM(val, 2));
        PyObject *entry = make_entry(key, PyTuple_GET_ITEM(val, 0), &src);
        PyObject *r = entry ? PyDict_SetDefault(cache, key, entry) : NULL;
        rc = r == NULL ? -1 : 0;
        Py_XDECREF(entry);
    }
    Py_DECREF(waiting);
    return rc;
}

/* Removes self from sys.meta_path. 0 or -1. */
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

/* find_spec(name, path=None, target=None): for "linecache", its real
 * spec with this hook as the loader; None otherwise. */
static PyObject *
hook_find_spec(ApyLinecacheHookObject *self, PyObject *args)
{
    PyObject *name, *path = Py_None, *target = Py_None;
    if (!PyArg_ParseTuple(args, "U|OO:find_spec", &name, &path, &target)) {
        return NULL;
    }
    if (self->done || PyUnicode_CompareWithASCIIString(name, "linecache")) {
        Py_RETURN_NONE;
    }
    self->done = 1;
    if (unhook((PyObject *)self) < 0) {
        return NULL;
    }
    /* importlib's own search over what is left of sys.meta_path. */
    PyObject *bootstrap = PyImport_ImportModule("_frozen_importlib");
    PyObject *spec = bootstrap ? PyObject_CallMethod(bootstrap, "_find_spec",
                                                     "OOO", name, path,
                                                     target)
                               : NULL;
    Py_XDECREF(bootstrap);
    if (spec == NULL || spec == Py_None) {
        return spec;
    }
    PyObject *loader = PyObject_GetAttrString(spec, "loader");
    if (loader == NULL || loader == Py_None
        || !PyObject_HasAttrString(loader, "exec_module")
        || PyObject_SetAttrString(spec, "loader", (PyObject *)self) < 0) {
        Py_XDECREF(loader);
        PyErr_Clear();
        return spec;
    }
    Py_XSETREF(self->real_loader, loader);
    Py_XSETREF(self->spec, Py_NewRef(spec));
    return spec;
}

static PyObject *
hook_create_module(ApyLinecacheHookObject *self, PyObject *spec)
{
    if (self->real_loader == NULL) {
        Py_RETURN_NONE;
    }
    return PyObject_CallMethod(self->real_loader, "create_module", "O", spec);
}

/* exec_module(module): linecache's own, then the waiting entries. */
static PyObject *
hook_exec_module(ApyLinecacheHookObject *self, PyObject *module)
{
    PyObject *real = self->real_loader, *spec = self->spec;
    self->real_loader = self->spec = NULL;
    if (real == NULL) {
        Py_XDECREF(spec);
        PyErr_SetString(PyExc_ImportError, "apyrun: linecache hook misused");
        return NULL;
    }
    PyObject *r = PyObject_CallMethod(real, "exec_module", "O", module);
    /* Nothing of the hook stays visible on linecache. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (PyObject_SetAttrString(spec, "loader", real) < 0
        || PyObject_SetAttrString(module, "__loader__", real) < 0) {
        PyErr_Clear();
    }
    PyErr_Restore(type, value, tb);
    Py_DECREF(real);
    Py_DECREF(spec);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    apy_importer_state_t *st = PyModule_GetState(self->owner);
    PyObject *cache = PyObject_GetAttrString(module, "cache");
    int rc = cache && PyDict_Check(cache) ? flush_waiting(st, cache) : 0;
    Py_XDECREF(cache);
    PyErr_Clear(); /* linecache works without our entries */
    (void)rc;
    Py_RETURN_NONE;
}

static int
hook_traverse(ApyLinecacheHookObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->owner);
    Py_VISIT(self->real_loader);
    Py_VISIT(self->spec);
    return 0;
}

static int
hook_clear(ApyLinecacheHookObject *self)
{
    Py_CLEAR(self->owner);
    Py_CLEAR(self->real_loader);
    Py_CLEAR(self->spec);
    return 0;
}

static void
hook_dealloc(ApyLinecacheHookObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    hook_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef hook_methods[] = {
    {"find_spec", (PyCFunction)hook_find_spec, METH_VARARGS, NULL},
    {"create_module", (PyCFunction)hook_create_module, METH_O, NULL},
    {"exec_module", (PyCFunction)hook_exec_module, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot hook_slots[] = {
    {Py_tp_methods, hook_methods},
    {Py_tp_traverse, hook_traverse},
    {Py_tp_clear, hook_clear},
    {Py_tp_dealloc, hook_dealloc},
    {Py_tp_doc, "apyrun: gives linecache the text of notebooks imported "
                "before it."},
    {0, NULL},
};

PyType_Spec apy_importer_linecache_hook_spec = {
    .name = "_apyrun_importer._LinecacheHook",
    .basicsize = sizeof(ApyLinecacheHookObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = hook_slots,
};

/* Puts the one-shot hook at the front of sys.meta_path. 0 or -1. */
static int
install_hook(apy_importer_state_t *st)
{
    PyObject *owner = PyImport_ImportModule(APY_IMPORTER_MODULE_NAME);
    ApyLinecacheHookObject *hook = owner ? PyObject_GC_New(
                                               ApyLinecacheHookObject,
                                               st->linecache_hook_type)
                                         : NULL;
    if (hook == NULL) {
        Py_XDECREF(owner);
        return -1;
    }
    hook->owner = owner;
    hook->real_loader = NULL;
    hook->spec = NULL;
    hook->done = 0;
    PyObject_GC_Track(hook);
    PyObject *meta_path = PySys_GetObject("meta_path"); /* borrowed */
    int rc = meta_path && PyList_Check(meta_path)
                 ? PyList_Insert(meta_path, 0, (PyObject *)hook)
                 : 0;
    Py_DECREF(hook);
    if (rc == 0) {
        st->linecache_hooked = 1;
    }
    return rc;
}

int
apy_importer_register_lines(apy_importer_state_t *st, PyObject *path,
                            const apy_source_stat_t *src, PyObject *source)
{
    PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
    PyObject *lc = PyDict_GetItemString(modules, "linecache"); /* borrowed */
    if (lc != NULL && lc != Py_None) {
        PyObject *cache = PyObject_GetAttrString(lc, "cache");
        PyObject *entry = cache && PyDict_Check(cache)
                              ? make_entry(path, source, src)
                              : NULL;
        if (entry == NULL || PyDict_SetItem(cache, path, entry) < 0) {
            /* linecache works without our entry: the file's own text. */
            PyErr_Clear();
        }
        Py_XDECREF(entry);
        Py_XDECREF(cache);
        return 0;
    }
    /* Split later, if ever: most programs never read these lines. */
    PyObject *waiting = Py_BuildValue("(OLd)", source, (long long)src->size,
                                      src->mtime_float);
    int rc = waiting ? PyDict_SetItem(st->lines, path, waiting) : -1;
    Py_XDECREF(waiting);
    if (rc == 0 && !st->linecache_hooked) {
        rc = install_hook(st);
    }
    return rc;
}
