/* SPDX-License-Identifier: MIT */
/* Notebook text for linecache: tracebacks and inspect.getsource read a
 * module's lines through linecache, which would otherwise read the
 * notebook's JSON. Each notebook's Python text, at its JSON lines, goes
 * into linecache.cache, now or once linecache is imported. */
#include <Python.h>

#include "apyrun/importer.h"
#include "importer.h"

/* linecache is not imported early (it costs milliseconds, and a plain
 * import must not pay them): the entries wait in the state and are added
 * once linecache has executed (apy__importer_after_import). Entries carry
 * the file's size and mtime, so linecache drops them when the notebook
 * changes. */

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
        if (entry == NULL) {
            rc = -1;
            break;
        }
        /* borrowed; what linecache has already for the file wins */
        if (PyDict_SetDefault(cache, key, entry) == NULL) {
            rc = -1;
        }
        Py_DECREF(entry);
    }
    Py_DECREF(waiting);
    return rc;
}

/* Called with linecache once it has been imported: adds the waiting
 * entries to linecache.cache. self is the _apyrun_importer module.
 * Returns None (linecache works without our entries, so a failure here
 * is not linecache's import failing). */
static PyObject *
flush_into_linecache(PyObject *owner, PyObject *linecache)
{
    apy_importer_state_t *st = PyModule_GetState(owner);
    PyObject *cache = PyObject_GetAttrString(linecache, "cache");
    if (st != NULL && cache != NULL && PyDict_Check(cache)) {
        flush_waiting(st, cache);
    }
    Py_XDECREF(cache);
    PyErr_Clear();
    Py_RETURN_NONE;
}

static PyMethodDef flush_def = {
    "flush_into_linecache", flush_into_linecache, METH_O, NULL,
};

/* Arranges for the waiting entries to reach linecache once it is
 * imported. 0 or -1. */
static int
install_hook(apy_importer_state_t *st)
{
    PyObject *owner = PyImport_ImportModule(APY_IMPORTER_MODULE_NAME);
    if (owner == NULL) {
        return -1;
    }
    PyObject *callback = PyCFunction_New(&flush_def, owner);
    Py_DECREF(owner);
    if (callback == NULL) {
        return -1;
    }
    int rc = apy__importer_after_import("linecache", callback);
    Py_DECREF(callback);
    if (rc == 0) {
        st->linecache_hooked = 1;
    }
    return rc;
}

/* Gives linecache the lines of notebook `path` (importer.h). 0, or -1
 * with an exception set. */
int
apy__importer_register_lines(apy_importer_state_t *st, PyObject *path,
                             const apy_source_stat_t *src, PyObject *source)
{
    PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
    PyObject *lc = PyDict_GetItemString(modules, "linecache"); /* borrowed */
    if (lc != NULL && lc != Py_None) {
        PyObject *entry = NULL;
        PyObject *cache = PyObject_GetAttrString(lc, "cache");
        if (cache != NULL && PyDict_Check(cache)) {
            entry = make_entry(path, source, src);
        }
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
    if (waiting == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(st->lines, path, waiting);
    Py_DECREF(waiting);
    if (rc == 0 && !st->linecache_hooked) {
        rc = install_hook(st);
    }
    return rc;
}
