/* SPDX-License-Identifier: MIT */
/* The magics' arguments: how a %%magic cell splits into name, arguments
 * and body, and what %%capture, %%writefile and %env make of their
 * arguments. Pure functions of the text (no namespace, no files, no
 * environment), so that tests/fuzz/fuzz_magics.c reaches them; running
 * the magics is magics.c's. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "internal.h"

int
apy__ipy_split_cell_magic(const char *source, PyObject **name,
                           PyObject **arg, const char **body,
                           size_t *first_line)
{
    const char *p = source;
    size_t line = 1;
    while (*p == '\n' || *p == ' ' || *p == '\t' || *p == '\r') {
        line += *p == '\n';
        p++;
    }
    p += 2; /* "%%" */
    const char *q = p;
    while (*q != '\0' && *q != '\n' && *q != ' ' && *q != '\t') {
        q++;
    }
    const char *eol = strchr(q, '\n');
    const char *end = eol ? eol : q + strlen(q);
    *body = eol ? eol + 1 : end;
    *first_line = line;
    *arg = NULL;
    *name = PyUnicode_DecodeUTF8(p, q - p, "replace");
    if (*name == NULL) {
        return -1;
    }
    PyObject *raw = PyUnicode_DecodeUTF8(q, end - q, "replace");
    if (raw == NULL) {
        goto error;
    }
    *arg = PyObject_CallMethod(raw, "strip", NULL);
    Py_DECREF(raw);
    if (*arg == NULL) {
        goto error;
    }
    return 0;
error:
    Py_CLEAR(*name);
    return -1;
}

int
apy__ipy_capture_options(PyObject *arg, int take[3], PyObject **var_out)
{
    PyObject *words = PyUnicode_Split(arg, NULL, -1);
    if (words == NULL) {
        return -1;
    }
    int out = 1, err = 1, displays = 1;
    PyObject *var = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(words); i++) {
        PyObject *w = PyList_GET_ITEM(words, i);
        if (PyUnicode_CompareWithASCIIString(w, "--no-stdout") == 0) {
            out = 0;
        } else if (PyUnicode_CompareWithASCIIString(w, "--no-stderr") == 0) {
            err = 0;
        } else if (PyUnicode_CompareWithASCIIString(w, "--no-display")
                   == 0) {
            displays = 0;
        } else {
            var = w;
        }
    }
    Py_XINCREF(var);
    Py_DECREF(words);
    take[0] = out;
    take[1] = err;
    take[2] = displays;
    *var_out = var;
    return 0;
}

int
apy__ipy_writefile_args(PyObject *arg, int *append, PyObject **file)
{
    PyObject *words = PyUnicode_Split(arg, NULL, -1);
    if (words == NULL) {
        return -1;
    }
    *append = 0;
    *file = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(words); i++) {
        PyObject *w = PyList_GET_ITEM(words, i);
        if (PyUnicode_CompareWithASCIIString(w, "-a") == 0
            || PyUnicode_CompareWithASCIIString(w, "--append") == 0) {
            *append = 1;
        } else if (*file == NULL) {
            *file = PyObject_CallMethod(w, "strip", "s", "'\"");
            if (*file == NULL) {
                Py_DECREF(words);
                return -1;
            }
        }
    }
    Py_DECREF(words);
    if (*file == NULL) {
        PyErr_SetString(PyExc_ValueError, "%%writefile needs a file name");
        return -1;
    }
    return 0;
}

/* text split once at its first '=' when it has one, else at its first
 * run of whitespace: a new list of one or two strings. */
static PyObject *
split_assignment(PyObject *text)
{
    PyObject *eq = PyUnicode_FromString("=");
    if (eq == NULL) {
        return NULL;
    }
    PyObject *parts = NULL;
    int has_eq = PyUnicode_Contains(text, eq);
    if (has_eq >= 0) {
        parts = PyUnicode_Split(text, has_eq ? eq : NULL, 1);
    }
    Py_DECREF(eq);
    return parts;
}

int
apy__ipy_env_args(PyObject *arg, PyObject **name, PyObject **value)
{
    *name = *value = NULL;
    PyObject *stripped = PyObject_CallMethod(arg, "strip", NULL);
    if (stripped == NULL) {
        return -1;
    }
    if (PyUnicode_GET_LENGTH(stripped) == 0) {
        Py_DECREF(stripped);
        return 0;
    }
    /* NAME=VALUE (a '=' anywhere wins, as in IPython), NAME VALUE, or
     * NAME to read one. */
    PyObject *parts = split_assignment(stripped);
    if (parts == NULL) {
        Py_DECREF(stripped);
        return -1;
    }
    if (PyList_GET_SIZE(parts) != 2) {
        Py_DECREF(parts);
        *name = stripped;
        return 1;
    }
    Py_DECREF(stripped);
    *name = PyObject_CallMethod(PyList_GET_ITEM(parts, 0), "strip", NULL);
    if (*name != NULL) {
        *value = PyObject_CallMethod(PyList_GET_ITEM(parts, 1), "strip",
                                     NULL);
    }
    Py_DECREF(parts);
    if (*value == NULL) {
        Py_CLEAR(*name);
        return -1;
    }
    return 2;
}
