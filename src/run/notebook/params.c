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

#include "internal.h"

/* How deep lists and objects of a --params-file value may nest: python's
 * parser takes 200 levels of brackets, no more. */
#define MAX_NESTING 100

/* Returns a new reference to value typed as papermill types -p values.
 * The text is decoded as python decodes argv (sys.argv has the same). */
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
    PyObject *text = PyUnicode_DecodeFSDefault(value);
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

/* Returns a new reference to the Python source of value (a JSON value,
 * or a typed -p value) at nesting level `depth`: its repr, but for NaN
 * and the infinities, which have no literal of their own, also inside
 * lists and objects: 1e999, -1e999, (1e999 - 1e999). NULL with an
 * exception set: ValueError when it nests deeper than MAX_NESTING. */
static PyObject *
render(PyObject *value, int depth)
{
    if (PyFloat_Check(value)) {
        double d = PyFloat_AS_DOUBLE(value);
        /* Literals only: papermill's float('nan') breaks when another
         * parameter is named float (found by fuzz_params). */
        if (d != d) {
            return PyUnicode_FromString("(1e999 - 1e999)");
        }
        if (d > DBL_MAX || d < -DBL_MAX) {
            return PyUnicode_FromString(d > 0 ? "1e999" : "-1e999");
        }
    }
    int is_list = PyList_Check(value);
    if (!is_list && !PyDict_Check(value)) {
        return PyObject_Repr(value);
    }
    if (depth >= MAX_NESTING) {
        PyErr_Format(PyExc_ValueError, "nests deeper than %d levels",
                     MAX_NESTING);
        return NULL;
    }
    PyObject *parts = PyList_New(0);
    PyObject *key, *item;
    Py_ssize_t pos = 0, i = 0;
    while (parts != NULL
           && (is_list ? i < PyList_GET_SIZE(value)
                       : PyDict_Next(value, &pos, &key, &item))) {
        PyObject *part;
        if (is_list) {
            part = render(PyList_GET_ITEM(value, i++), depth + 1);
        } else {
            PyObject *k = PyObject_Repr(key);
            PyObject *v = k ? render(item, depth + 1) : NULL;
            part = v ? PyUnicode_FromFormat("%U: %U", k, v) : NULL;
            Py_XDECREF(k);
            Py_XDECREF(v);
        }
        if (part == NULL || PyList_Append(parts, part) < 0) {
            Py_CLEAR(parts);
        }
        Py_XDECREF(part);
    }
    PyObject *sep = parts ? PyUnicode_FromString(", ") : NULL;
    PyObject *inner = sep ? PyUnicode_Join(sep, parts) : NULL;
    PyObject *text = inner ? PyUnicode_FromFormat(is_list ? "[%U]" : "{%U}",
                                                  inner)
                           : NULL;
    Py_XDECREF(inner);
    Py_XDECREF(sep);
    Py_XDECREF(parts);
    return text;
}

/* Copies the message of the exception set (then cleared) into err, after
 * `what`; `fallback` when it has none to give. */
static void
error_message(const char *what, const char *fallback, char *err,
              size_t errlen)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *msg = value ? PyObject_Str(value) : NULL;
    const char *m = msg ? PyUnicode_AsUTF8(msg) : NULL;
    snprintf(err, errlen, "%s%s", what, m ? m : fallback);
    Py_XDECREF(msg);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
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
        /* Closed whatever json.load did, its exception kept. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *r = PyObject_CallMethod(f, "close", NULL);
        Py_XDECREF(r);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    Py_XDECREF(f);
    Py_XDECREF(json);
    Py_XDECREF(io);
    int rc = -1;
    if (obj == NULL) {
        char what[320];
        snprintf(what, sizeof(what), "--params-file %s: ", path);
        error_message(what, "cannot be read", err, errlen);
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

/* Returns 1 if key is a name the injected cell can assign as it is
 * written: an identifier, not a keyword nor __debug__, and in NFKC form
 * (python reads `ﬁ = 1` as `fi = 1`). 0 if not (ValueError set), -1 on
 * error. */
static int
check_name(PyObject *key)
{
    int ok = PyUnicode_Check(key) && PyUnicode_IsIdentifier(key);
    if (ok) {
        PyObject *keyword = PyImport_ImportModule("keyword");
        PyObject *r = keyword ? PyObject_CallMethod(keyword, "iskeyword",
                                                    "O", key)
                              : NULL;
        Py_XDECREF(keyword);
        if (r == NULL) {
            return -1;
        }
        ok = r == Py_False;
        Py_DECREF(r);
    }
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "%R is not a Python identifier",
                     key);
        return 0;
    }
    if (PyUnicode_CompareWithASCIIString(key, "__debug__") == 0) {
        PyErr_Format(PyExc_ValueError, "%R cannot be assigned to", key);
        return 0;
    }
    PyObject *ud = PyImport_ImportModule("unicodedata");
    PyObject *nfkc = ud ? PyObject_CallMethod(ud, "normalize", "sO", "NFKC",
                                              key)
                        : NULL;
    Py_XDECREF(ud);
    if (nfkc == NULL) {
        return -1;
    }
    int same = PyUnicode_Compare(nfkc, key) == 0;
    if (!same) {
        PyErr_Format(PyExc_ValueError, "%R is not a Python identifier as "
                     "written (python reads it as %R)", key, nfkc);
    }
    Py_DECREF(nfkc);
    return same;
}

char *
apy__nbrun_params_source(const apy_options_t *opts, char *err, size_t errlen)
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
        /* Names decoded as python decodes argv: bytes that are not UTF-8
         * make a name that is no identifier, reported as such. */
        PyObject *k = PyUnicode_DecodeFSDefault(opts->params[i].name);
        PyObject *v = k ? typed_value(opts->params[i].value) : NULL;
        int rc = v ? PyDict_SetItem(params, k, v) : -1;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (rc < 0) {
            Py_DECREF(params);
            goto nomem;
        }
    }
    PyObject *text = PyUnicode_FromString("# Parameters\n");
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (text != NULL && PyDict_Next(params, &pos, &key, &value)) {
        int ok = check_name(key);
        if (ok <= 0) {
            error_message(ok == 0 ? "parameter name " : "", "out of memory",
                          err, errlen);
            Py_CLEAR(text);
            break;
        }
        PyObject *src = render(value, 0);
        if (src == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyObject *what = PyUnicode_FromFormat("parameter %R ", key);
            const char *w = what ? PyUnicode_AsUTF8(what) : NULL;
            error_message(w ? w : "parameter ", "out of memory", err,
                          errlen);
            Py_XDECREF(what);
            Py_CLEAR(text);
            break;
        }
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
    if (out != NULL || err[0] != '\0') {
        return out;
    }
nomem:
    PyErr_Clear();
    snprintf(err, errlen, "out of memory");
    return NULL;
}
