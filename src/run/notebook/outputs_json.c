/* SPDX-License-Identifier: MIT */
/* A cell's outputs as nbformat's JSON: multi-line strings as lists of
 * lines, big stream texts and big data values handed to the notebook
 * layer as streams (their place a tag the writer cuts out). Reads the
 * recorder's output dicts; changes nothing. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define BIG_TEXT APY_NBRUN_BIG_TEXT

/* Returns a new reference: text split into lines (ends kept), as
 * nbformat stores multi-line strings. */
static PyObject *
split_text(PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        return Py_NewRef(text);
    }
    return PyUnicode_Splitlines(text, 1);
}

/* The tag a big data value's place holds in the outputs' JSON, followed
 * by its stream's index: random, so that no value of the program's is
 * taken for one. */
static char value_tag[48];

const char *
apy__nbrun_value_tag(void)
{
    if (value_tag[0] == '\0') {
        unsigned char r[8];
        if (_PyOS_URandomNonblock(r, sizeof(r)) < 0) {
            PyErr_Clear();
            memset(r, 0x5a, sizeof(r));
        }
        snprintf(value_tag, sizeof(value_tag),
                 "\x01apyrun-value-%02x%02x%02x%02x%02x%02x%02x%02x-", r[0],
                 r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
    }
    return value_tag;
}

/* A data value past BIG_TEXT characters (an image's base64, a page of
 * HTML) goes into a value stream, as nbformat writes it for this mime
 * type, a piece at a time, never whole into the outputs' JSON. Returns
 * a new reference to the tag that takes its place (its capsule appended
 * to *streams), or NULL with an exception set. */
static PyObject *
big_value(const char *spill_dir, const char *mime, PyObject *val,
          PyObject **streams)
{
    /* nbformat's split_lines: text/ types, SVG and JavaScript. */
    int split = strncmp(mime, "text/", 5) == 0
                || strcmp(mime, "image/svg+xml") == 0
                || strcmp(mime, "application/javascript") == 0;
    apy_nb_stream_t *st = apy_nb_value_new(spill_dir, split);
    if (st == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *capsule = apy__nbrun_big_capsule(st);
    if (capsule == NULL) {
        return NULL;
    }
    PyObject *piece = NULL, *bytes = NULL, *tag = NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(val);
    for (Py_ssize_t at = 0; at < n; at += BIG_TEXT) {
        piece = PyUnicode_Substring(val, at, at + BIG_TEXT);
        if (piece == NULL) {
            goto done;
        }
        /* Lone surrogates cannot be UTF-8 (as in big_put). */
        bytes = PyUnicode_AsEncodedString(piece, "utf-8", "replace");
        if (bytes == NULL) {
            goto done;
        }
        if (apy_nb_stream_put(st, PyBytes_AS_STRING(bytes),
                              (size_t)PyBytes_GET_SIZE(bytes)) < 0) {
            PyErr_NoMemory();
            goto done;
        }
        Py_CLEAR(bytes);
        Py_CLEAR(piece);
    }
    if (apy_nb_stream_finish(st) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (*streams == NULL && (*streams = PyList_New(0)) == NULL) {
        goto done;
    }
    tag = PyUnicode_FromFormat("%s%zd", apy__nbrun_value_tag(),
                               PyList_GET_SIZE(*streams));
    if (tag != NULL && PyList_Append(*streams, capsule) < 0) {
        Py_CLEAR(tag);
    }
done:
    Py_XDECREF(bytes);
    Py_XDECREF(piece);
    Py_DECREF(capsule);
    return tag;
}

/* Returns a new reference to data value val of mime type key as
 * nbformat writes it: a JSON type's structure as it is, a big text as its
 * stream's tag (big_value), other text as lines. NULL with an exception
 * set. */
static PyObject *
value_for_json(PyObject *key, PyObject *val, PyObject **streams,
               const char *rt_spill_dir)
{
    /* JSON mime types hold structures, not text. */
    const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
    size_t klen = k != NULL ? strlen(k) : 0;
    int is_json = klen >= 4 && strcmp(k + klen - 4, "json") == 0;
    PyErr_Clear();
    if (is_json) {
        return Py_NewRef(val);
    }
    if (k != NULL && PyUnicode_Check(val)
        && PyUnicode_GET_LENGTH(val) > BIG_TEXT) {
        return big_value(rt_spill_dir, k, val, streams);
    }
    return split_text(val);
}

/* Returns a new reference to a copy of data (a mime bundle) as nbformat
 * writes it (value_for_json), or NULL with an exception set. */
static PyObject *
data_for_json(PyObject *data, PyObject **streams, const char *rt_spill_dir)
{
    PyObject *dcopy = NULL, *keys = NULL, *v = NULL;
    dcopy = PyDict_New();
    if (dcopy == NULL) {
        goto error;
    }
    /* In the order they are written, so that big values' streams are
     * listed in that order too. */
    keys = PyDict_Keys(data);
    if (keys == NULL || PyList_Sort(keys) < 0) {
        PyErr_Clear(); /* keys that do not sort: json.dumps says so */
        Py_XDECREF(keys);
        keys = PyDict_Keys(data);
        if (keys == NULL) {
            goto error;
        }
    }
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(keys); j++) {
        PyObject *key = PyList_GET_ITEM(keys, j); /* borrowed */
        PyObject *val = PyDict_GetItemWithError(data, key); /* borrowed */
        if (val == NULL) {
            goto error;
        }
        v = value_for_json(key, val, streams, rt_spill_dir);
        if (v == NULL || PyDict_SetItem(dcopy, key, v) < 0) {
            goto error;
        }
        Py_CLEAR(v);
    }
    Py_DECREF(keys);
    return dcopy;

error:
    Py_XDECREF(v);
    Py_XDECREF(keys);
    Py_XDECREF(dcopy);
    return NULL;
}

/* Returns a new reference to output as nbformat writes it; a big
 * stream's text becomes null and its capsule goes to *streams, as does a
 * big data value's (big_value). */
static PyObject *
output_for_json(PyObject *output, PyObject **streams,
                const char *rt_spill_dir)
{
    PyObject *copy = PyDict_Copy(output);
    if (copy == NULL) {
        return NULL;
    }
    PyObject *text = PyDict_GetItemString(copy, "text"); /* borrowed */
    if (text != NULL && apy__nbrun_big_stream(text) != NULL) {
        if ((*streams == NULL && (*streams = PyList_New(0)) == NULL)
            || PyList_Append(*streams, text) < 0
            || PyDict_SetItemString(copy, "text", Py_None) < 0) {
            goto error;
        }
    } else if (text != NULL) {
        PyObject *lines = split_text(text);
        if (lines == NULL) {
            goto error;
        }
        int rc = PyDict_SetItemString(copy, "text", lines);
        Py_DECREF(lines);
        if (rc < 0) {
            goto error;
        }
    }
    PyObject *data = PyDict_GetItemString(copy, "data"); /* borrowed */
    if (data != NULL && PyDict_Check(data)) {
        PyObject *dcopy = data_for_json(data, streams, rt_spill_dir);
        if (dcopy == NULL) {
            goto error;
        }
        int rc = PyDict_SetItemString(copy, "data", dcopy);
        Py_DECREF(dcopy);
        if (rc < 0) {
            goto error;
        }
    }
    return copy;

error:
    Py_DECREF(copy);
    return NULL;
}

PyObject *
apy__nbrun_outputs_json(PyObject *outputs, PyObject **streams,
                        const char *spill_dir)
{
    PyObject *list = NULL, *json = NULL, *dumps = NULL, *kw = NULL;
    PyObject *args = NULL, *text = NULL;
    Py_ssize_t n = PyList_GET_SIZE(outputs);
    *streams = NULL;
    list = PyList_New(n);
    if (list == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = output_for_json(PyList_GET_ITEM(outputs, i), streams,
                                      spill_dir);
        if (o == NULL) {
            goto done;
        }
        PyList_SET_ITEM(list, i, o);
    }
    json = PyImport_ImportModule("json");
    if (json == NULL) {
        goto done;
    }
    dumps = PyObject_GetAttrString(json, "dumps");
    if (dumps == NULL) {
        goto done;
    }
    kw = Py_BuildValue("{sOsOsO}", "ensure_ascii", Py_False, "sort_keys",
                       Py_True, "default", (PyObject *)&PyUnicode_Type);
    if (kw == NULL) {
        goto done;
    }
    args = PyTuple_Pack(1, list);
    if (args == NULL) {
        goto done;
    }
    text = PyObject_Call(dumps, args, kw);
done:
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(dumps);
    Py_XDECREF(json);
    Py_XDECREF(list);
    if (text == NULL) {
        Py_CLEAR(*streams);
    }
    return text;
}
