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
    PyObject *parts = NULL, *part = NULL, *k = NULL, *v = NULL;
    PyObject *sep = NULL, *inner = NULL, *text = NULL;
    PyObject *key, *item;
    Py_ssize_t pos = 0, i = 0;
    parts = PyList_New(0);
    if (parts == NULL) {
        goto done;
    }
    while (is_list ? i < PyList_GET_SIZE(value)
                   : PyDict_Next(value, &pos, &key, &item)) {
        if (is_list) {
            part = render(PyList_GET_ITEM(value, i++), depth + 1);
        } else {
            k = PyObject_Repr(key);
            if (k == NULL) {
                goto done;
            }
            v = render(item, depth + 1);
            if (v == NULL) {
                goto done;
            }
            part = PyUnicode_FromFormat("%U: %U", k, v);
            Py_CLEAR(k);
            Py_CLEAR(v);
        }
        if (part == NULL || PyList_Append(parts, part) < 0) {
            goto done;
        }
        Py_CLEAR(part);
    }
    sep = PyUnicode_FromString(", ");
    if (sep == NULL) {
        goto done;
    }
    inner = PyUnicode_Join(sep, parts);
    if (inner == NULL) {
        goto done;
    }
    text = PyUnicode_FromFormat(is_list ? "[%U]" : "{%U}", inner);
done:
    Py_XDECREF(inner);
    Py_XDECREF(sep);
    Py_XDECREF(v);
    Py_XDECREF(k);
    Py_XDECREF(part);
    Py_XDECREF(parts);
    return text;
}

/* Copies the message of the exception set (then cleared) into err, after
 * `what`; `fallback` when it has none to give. */
static void
error_message(const char *what, const char *fallback, char *err,
              size_t errlen)
{
    PyObject *type, *value, *tb, *msg = NULL;
    const char *m = NULL;
    PyErr_Fetch(&type, &value, &tb);
    if (value == NULL) {
        goto done;
    }
    msg = PyObject_Str(value);
    if (msg == NULL) {
        goto done;
    }
    m = PyUnicode_AsUTF8(msg);
done:
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
    PyObject *io = NULL, *json = NULL, *open = NULL, *kw = NULL;
    PyObject *args = NULL, *f = NULL, *obj = NULL;
    char what[320];
    int rc = -1;
    io = PyImport_ImportModule("io");
    if (io == NULL) {
        goto unreadable;
    }
    json = PyImport_ImportModule("json");
    if (json == NULL) {
        goto unreadable;
    }
    open = PyObject_GetAttrString(io, "open");
    if (open == NULL) {
        goto unreadable;
    }
    kw = Py_BuildValue("{ss}", "encoding", "utf-8");
    if (kw == NULL) {
        goto unreadable;
    }
    args = Py_BuildValue("(s)", path);
    if (args == NULL) {
        goto unreadable;
    }
    f = PyObject_Call(open, args, kw);
    if (f == NULL) {
        goto unreadable;
    }
    obj = PyObject_CallMethod(json, "load", "O", f);
    /* Closed whatever json.load did, its exception kept. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *r = PyObject_CallMethod(f, "close", NULL);
    Py_XDECREF(r);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    if (obj == NULL) {
        goto unreadable;
    }
    if (!PyDict_Check(obj)) {
        snprintf(err, errlen, "--params-file %s: not a JSON object", path);
        goto done;
    }
    rc = PyDict_Update(params, obj);
    if (rc < 0) {
        PyErr_Clear();
        snprintf(err, errlen, "--params-file %s: cannot be read", path);
    }
    goto done;

unreadable:
    snprintf(what, sizeof(what), "--params-file %s: ", path);
    error_message(what, "cannot be read", err, errlen);
done:
    Py_XDECREF(obj);
    Py_XDECREF(f);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(open);
    Py_XDECREF(json);
    Py_XDECREF(io);
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
        if (keyword == NULL) {
            return -1;
        }
        PyObject *r = PyObject_CallMethod(keyword, "iskeyword", "O", key);
        Py_DECREF(keyword);
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
    if (ud == NULL) {
        return -1;
    }
    PyObject *nfkc = PyObject_CallMethod(ud, "normalize", "sO", "NFKC", key);
    Py_DECREF(ud);
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

/* Puts "parameter KEY " and the message of the ValueError being raised
 * (then cleared) into err. The ValueError is put aside while KEY is
 * formatted: repr() must not run with an exception set. */
static void
value_error_message(PyObject *key, char *err, size_t errlen)
{
    const char *w = NULL;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *what = PyUnicode_FromFormat("parameter %R ", key);
    if (what != NULL) {
        w = PyUnicode_AsUTF8(what);
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    error_message(w ? w : "parameter ", "out of memory", err, errlen);
    Py_XDECREF(what);
}

char *
apy__nbrun_params_source(const apy_options_t *opts, char *err, size_t errlen)
{
    PyObject *params = NULL, *k = NULL, *v = NULL, *text = NULL;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    char *out = NULL;
    err[0] = '\0';
    if (opts->params_file == NULL && opts->nparams == 0) {
        return NULL;
    }
    params = PyDict_New();
    if (params == NULL) {
        goto done;
    }
    /* A failed load leaves its message in err. */
    if (opts->params_file != NULL
        && load_params_file(opts->params_file, params, err, errlen) < 0) {
        goto done;
    }
    for (size_t i = 0; i < opts->nparams; i++) {
        /* Names decoded as python decodes argv: bytes that are not UTF-8
         * make a name that is no identifier, reported as such. */
        k = PyUnicode_DecodeFSDefault(opts->params[i].name);
        if (k == NULL) {
            goto done;
        }
        v = typed_value(opts->params[i].value);
        if (v == NULL || PyDict_SetItem(params, k, v) < 0) {
            goto done;
        }
        Py_CLEAR(k);
        Py_CLEAR(v);
    }
    text = PyUnicode_FromString("# Parameters\n");
    if (text == NULL) {
        goto done;
    }
    while (PyDict_Next(params, &pos, &key, &value)) {
        int ok = check_name(key);
        if (ok <= 0) {
            error_message(ok == 0 ? "parameter name " : "", "out of memory",
                          err, errlen);
            goto done;
        }
        PyObject *src = render(value, 0);
        if (src == NULL) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                value_error_message(key, err, errlen);
            }
            goto done;
        }
        PyObject *line = PyUnicode_FromFormat("%U = %U\n", key, src);
        Py_DECREF(src);
        if (line == NULL) {
            goto done;
        }
        PyUnicode_AppendAndDel(&text, line);
        if (text == NULL) {
            goto done;
        }
    }
    const char *utf8 = PyUnicode_AsUTF8(text);
    if (utf8 != NULL) {
        out = strdup(utf8);
    }
done:
    Py_XDECREF(text);
    Py_XDECREF(v);
    Py_XDECREF(k);
    Py_XDECREF(params);
    if (out == NULL && err[0] == '\0') {
        PyErr_Clear();
        snprintf(err, errlen, "out of memory");
    }
    return out;
}
