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

#include "nbrun.h"

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
    Py_ssize_t n = PyUnicode_GET_LENGTH(val);
    int rc = 0;
    for (Py_ssize_t at = 0; at < n && rc == 0; at += BIG_TEXT) {
        PyObject *piece = PyUnicode_Substring(val, at, at + BIG_TEXT);
        /* Lone surrogates cannot be UTF-8 (as in big_put). */
        PyObject *bytes = piece ? PyUnicode_AsEncodedString(piece, "utf-8",
                                                            "replace")
                                : NULL;
        rc = bytes == NULL ? -1
             : apy_nb_stream_put(st, PyBytes_AS_STRING(bytes),
                                 (size_t)PyBytes_GET_SIZE(bytes))
                     < 0
                 ? (PyErr_NoMemory(), -1)
                 : 0;
        Py_XDECREF(bytes);
        Py_XDECREF(piece);
    }
    if (rc == 0 && apy_nb_stream_finish(st) < 0) {
        PyErr_NoMemory();
        rc = -1;
    }
    if (rc == 0 && *streams == NULL && (*streams = PyList_New(0)) == NULL) {
        rc = -1;
    }
    PyObject *tag = rc == 0 ? PyUnicode_FromFormat(
                                  "%s%zd", apy__nbrun_value_tag(),
                                  PyList_GET_SIZE(*streams))
                            : NULL;
    if (tag != NULL && PyList_Append(*streams, capsule) < 0) {
        Py_CLEAR(tag);
    }
    Py_DECREF(capsule);
    return tag;
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
            Py_DECREF(copy);
            return NULL;
        }
    } else if (text != NULL) {
        PyObject *lines = split_text(text);
        if (lines == NULL || PyDict_SetItemString(copy, "text", lines) < 0) {
            Py_XDECREF(lines);
            Py_DECREF(copy);
            return NULL;
        }
        Py_DECREF(lines);
    }
    PyObject *data = PyDict_GetItemString(copy, "data"); /* borrowed */
    if (data != NULL && PyDict_Check(data)) {
        PyObject *dcopy = PyDict_New();
        if (dcopy == NULL) {
            Py_DECREF(copy);
            return NULL;
        }
        /* In the order they are written, so that big values' streams
         * are listed in that order too. */
        PyObject *keys = dcopy ? PyDict_Keys(data) : NULL;
        if (keys == NULL || PyList_Sort(keys) < 0) {
            PyErr_Clear(); /* keys that do not sort: json.dumps says so */
            Py_XDECREF(keys);
            keys = dcopy ? PyDict_Keys(data) : NULL;
            if (keys == NULL) {
                Py_CLEAR(dcopy);
            }
        }
        for (Py_ssize_t j = 0; dcopy != NULL && j < PyList_GET_SIZE(keys);
             j++) {
            PyObject *key = PyList_GET_ITEM(keys, j);
            PyObject *val = PyDict_GetItemWithError(data, key);
            if (val == NULL) {
                Py_CLEAR(dcopy);
                break;
            }
            /* JSON mime types hold structures, not text. */
            const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key)
                                                 : NULL;
            size_t klen = k != NULL ? strlen(k) : 0;
            int is_json = klen >= 4 && strcmp(k + klen - 4, "json") == 0;
            PyErr_Clear();
            PyObject *v = is_json ? Py_NewRef(val)
                          : k != NULL && PyUnicode_Check(val)
                                  && PyUnicode_GET_LENGTH(val) > BIG_TEXT
                              ? big_value(rt_spill_dir, k, val, streams)
                              : split_text(val);
            if (v == NULL || PyDict_SetItem(dcopy, key, v) < 0) {
                Py_XDECREF(v);
                Py_CLEAR(dcopy);
                break;
            }
            Py_DECREF(v);
        }
        Py_XDECREF(keys);
        if (dcopy == NULL || PyDict_SetItemString(copy, "data", dcopy) < 0) {
            Py_XDECREF(dcopy);
            Py_DECREF(copy);
            return NULL;
        }
        Py_DECREF(dcopy);
    }
    return copy;
}

PyObject *
apy__nbrun_outputs_json(PyObject *outputs, PyObject **streams,
                        const char *spill_dir)
{
    Py_ssize_t n = PyList_GET_SIZE(outputs);
    *streams = NULL;
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = output_for_json(PyList_GET_ITEM(outputs, i), streams,
                                      spill_dir);
        if (o == NULL) {
            Py_DECREF(list);
            Py_CLEAR(*streams);
            return NULL;
        }
        PyList_SET_ITEM(list, i, o);
    }
    PyObject *json = PyImport_ImportModule("json");
    PyObject *text = NULL;
    if (json != NULL) {
        PyObject *dumps = PyObject_GetAttrString(json, "dumps");
        PyObject *kw = dumps ? Py_BuildValue("{sOsOsO}", "ensure_ascii",
                                             Py_False, "sort_keys", Py_True,
                                             "default", (PyObject *)
                                             &PyUnicode_Type)
                             : NULL;
        PyObject *args = kw ? PyTuple_Pack(1, list) : NULL;
        text = args ? PyObject_Call(dumps, args, kw) : NULL;
        Py_XDECREF(args);
        Py_XDECREF(kw);
        Py_XDECREF(dumps);
        Py_DECREF(json);
    }
    Py_DECREF(list);
    if (text == NULL) {
        Py_CLEAR(*streams);
    }
    return text;
}
