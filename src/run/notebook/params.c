/* SPDX-License-Identifier: MIT */
/* Papermill's parameters: -p NAME VALUE (True/False/None/int/float, else
 * str) and --params-file F.json (a JSON object), rendered as the source
 * of the injected-parameters cell. Where the cell goes is the driver's
 * business. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "nbrun.h"

/* Returns a new reference to value typed as papermill types -p values. */
static PyObject *
typed_value(const char *value)
{
    if (strcmp(value, "True") == 0) {
        Py_RETURN_TRUE;
    }
    if (strcmp(value, "False") == 0) {
        Py_RETURN_FALSE;
    }
    if (strcmp(value, "None") == 0) {
        Py_RETURN_NONE;
    }
    PyObject *text = PyUnicode_FromString(value);
    if (text == NULL) {
        return NULL;
    }
    PyObject *v = PyLong_FromUnicodeObject(text, 10);
    if (v == NULL) {
        PyErr_Clear();
        v = PyFloat_FromString(text);
    }
    if (v == NULL) {
        PyErr_Clear();
        v = Py_NewRef(text);
    }
    Py_DECREF(text);
    return v;
}

/* Returns a new reference to the Python source of value. */
static PyObject *
render(PyObject *value)
{
    if (PyFloat_Check(value)) {
        double d = PyFloat_AS_DOUBLE(value);
        if (d != d) {
            return PyUnicode_FromString("float('nan')");
        }
        if (d > DBL_MAX || d < -DBL_MAX) {
            return PyUnicode_FromString(d > 0 ? "float('inf')"
                                              : "float('-inf')");
        }
    }
    return PyObject_Repr(value);
}

/* Loads --params-file into dict params. 0, or -1 with a message. */
static int
load_params_file(const char *path, PyObject *params, char *err,
                 size_t errlen)
{
    PyObject *io = PyImport_ImportModule("io");
    PyObject *json = io ? PyImport_ImportModule("json") : NULL;
    PyObject *open = json ? PyObject_GetAttrString(io, "open") : NULL;
    PyObject *kw = open ? Py_BuildValue("{ss}", "encoding", "utf-8") : NULL;
    PyObject *args = kw ? Py_BuildValue("(s)", path) : NULL;
    PyObject *f = args ? PyObject_Call(open, args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(open);
    PyObject *obj = f ? PyObject_CallMethod(json, "load", "O", f) : NULL;
    if (f != NULL) {
        PyObject *r = PyObject_CallMethod(f, "close", NULL);
        Py_XDECREF(r);
    }
    Py_XDECREF(f);
    Py_XDECREF(json);
    Py_XDECREF(io);
    int rc = -1;
    if (obj == NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *msg = value ? PyObject_Str(value) : NULL;
        const char *m = msg ? PyUnicode_AsUTF8(msg) : NULL;
        snprintf(err, errlen, "--params-file %s: %s", path,
                 m ? m : "cannot be read");
        Py_XDECREF(msg);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        PyErr_Clear();
        return -1;
    }
    if (!PyDict_Check(obj)) {
        snprintf(err, errlen, "--params-file %s: not a JSON object", path);
    } else {
        rc = PyDict_Update(params, obj);
        if (rc < 0) {
            PyErr_Clear();
            snprintf(err, errlen, "--params-file %s: cannot be read", path);
        }
    }
    Py_DECREF(obj);
    return rc;
}

/* Checks that every key of params is a Python identifier. */
static int
check_names(PyObject *params, char *err, size_t errlen)
{
    PyObject *keyword = PyImport_ImportModule("keyword");
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    int rc = 0;
    while (rc == 0 && PyDict_Next(params, &pos, &key, &value)) {
        int ok = PyUnicode_Check(key) && PyUnicode_IsIdentifier(key);
        if (ok && keyword != NULL) {
            PyObject *r = PyObject_CallMethod(keyword, "iskeyword", "O",
                                              key);
            ok = r == Py_False;
            Py_XDECREF(r);
        }
        if (!ok) {
            PyObject *s = PyObject_Str(key);
            const char *name = s ? PyUnicode_AsUTF8(s) : NULL;
            snprintf(err, errlen, "parameter name '%s' is not a Python "
                     "identifier", name ? name : "?");
            Py_XDECREF(s);
            rc = -1;
        }
    }
    Py_XDECREF(keyword);
    PyErr_Clear();
    return rc;
}

char *
apy_nbrun_params_source(const apy_options_t *opts, char *err, size_t errlen)
{
    err[0] = '\0';
    if (opts->params_file == NULL && opts->nparams == 0) {
        return NULL;
    }
    PyObject *params = PyDict_New();
    if (params == NULL) {
        goto nomem;
    }
    if (opts->params_file != NULL
        && load_params_file(opts->params_file, params, err, errlen) < 0) {
        Py_DECREF(params);
        return NULL;
    }
    for (size_t i = 0; i < opts->nparams; i++) {
        PyObject *v = typed_value(opts->params[i].value);
        if (v == NULL || PyDict_SetItemString(params, opts->params[i].name,
                                              v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(params);
            goto nomem;
        }
        Py_DECREF(v);
    }
    if (check_names(params, err, errlen) < 0) {
        Py_DECREF(params);
        return NULL;
    }
    PyObject *text = PyUnicode_FromString("# Parameters\n");
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (text != NULL && PyDict_Next(params, &pos, &key, &value)) {
        PyObject *src = render(value);
        PyObject *line = src ? PyUnicode_FromFormat("%U = %U\n", key, src)
                             : NULL;
        Py_XDECREF(src);
        if (line == NULL) {
            Py_CLEAR(text);
            break;
        }
        PyUnicode_AppendAndDel(&text, line);
    }
    Py_DECREF(params);
    const char *utf8 = text ? PyUnicode_AsUTF8(text) : NULL;
    char *out = utf8 ? strdup(utf8) : NULL;
    Py_XDECREF(text);
    if (out != NULL) {
        return out;
    }
nomem:
    PyErr_Clear();
    snprintf(err, errlen, "out of memory");
    return NULL;
}
