/* SPDX-License-Identifier: MIT */
/* --durations FILE: the testcase times of a previous JUnit report (ours,
 * pytest's, pytest-xdist's), read with Python's xml.etree.ElementTree in
 * the batch's interpreter before any child exists, as the weights
 * --shard balances. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* {(classname, name): seconds} of every <testcase> with a numeric time
 * in the document root: a new dict, or NULL with an exception set. */
static PyObject *
testcase_times(PyObject *root)
{
    PyObject *times = PyDict_New();
    PyObject *cases = NULL;
    if (times == NULL) {
        return NULL;
    }
    cases = PyObject_CallMethod(root, "iter", "s", "testcase");
    if (cases == NULL) {
        goto error;
    }
    PyObject *tc;
    while ((tc = PyIter_Next(cases)) != NULL) {
        PyObject *key = NULL, *value = NULL;
        PyObject *t = PyObject_CallMethod(tc, "get", "ss", "time", "");
        PyObject *cls = PyObject_CallMethod(tc, "get", "ss", "classname",
                                            "");
        PyObject *name = PyObject_CallMethod(tc, "get", "ss", "name", "");
        Py_DECREF(tc);
        int rc = -1;
        if (t == NULL || cls == NULL || name == NULL) {
            goto next;
        }
        value = PyFloat_FromString(t);
        if (value == NULL) {
            /* No time, or not a number: that testcase says nothing. */
            PyErr_Clear();
            rc = 0;
            goto next;
        }
        key = PyTuple_Pack(2, cls, name);
        if (key != NULL) {
            rc = PyDict_SetItem(times, key, value);
        }
    next:
        Py_XDECREF(key);
        Py_XDECREF(value);
        Py_XDECREF(t);
        Py_XDECREF(cls);
        Py_XDECREF(name);
        if (rc < 0) {
            goto error;
        }
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(cases);
    return times;
error:
    Py_XDECREF(cases);
    Py_DECREF(times);
    return NULL;
}

/* The time times gives item it: by (classname, name), else by its path
 * as a name (a pytest node id's file part). -1.0 when none. */
static double
time_of(PyObject *times, const apy_batch_item_t *it)
{
    char *cls, *name;
    if (apy__batch_junit_names(it->path, &cls, &name) < 0) {
        return -1.0;
    }
    double found = -1.0;
    const char *keys[2][2] = {{cls, name}, {"", it->path}};
    for (int k = 0; k < 2 && found < 0; k++) {
        PyObject *key = Py_BuildValue("(ss)", keys[k][0], keys[k][1]);
        if (key == NULL) {
            break;
        }
        PyObject *v = PyDict_GetItemWithError(times, key); /* borrowed */
        if (v != NULL) {
            found = PyFloat_AsDouble(v);
        }
        Py_DECREF(key);
    }
    PyErr_Clear(); /* no memory: no time, the mean stands in */
    free(cls);
    free(name);
    return found;
}

/* "not XML: <ParseError's text>" or the OSError's, one line, in err. */
static void
describe_error(const char *path, char *err, size_t errlen)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    int is_os = type != NULL
                && PyErr_GivenExceptionMatches(type, PyExc_OSError);
    const char *utf8 = NULL;
    PyObject *text = NULL;
    if (value != NULL) {
        text = PyObject_Str(value);
    }
    if (text != NULL) {
        utf8 = PyUnicode_AsUTF8(text);
    }
    snprintf(err, errlen, "--durations %.300s: %s%.400s", path,
             is_os ? "" : "not XML: ", utf8 != NULL ? utf8 : "unreadable");
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
}

int
apy__batch_read_durations(const char *path, apy_batch_item_t *items,
                          size_t n, char *err, size_t errlen)
{
    PyObject *et = NULL, *tree = NULL, *root = NULL, *times = NULL;
    int rc = -1;
    et = PyImport_ImportModule("xml.etree.ElementTree");
    if (et == NULL) {
        goto error;
    }
    tree = PyObject_CallMethod(et, "parse", "s", path);
    if (tree == NULL) {
        goto error;
    }
    root = PyObject_CallMethod(tree, "getroot", NULL);
    if (root == NULL) {
        goto error;
    }
    times = testcase_times(root);
    if (times == NULL) {
        goto error;
    }
    double sum = 0;
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].weight = time_of(times, &items[i]);
        if (items[i].weight >= 0) {
            sum += items[i].weight;
            found++;
        }
    }
    double mean = found > 0 ? sum / (double)found : 1.0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].weight < 0) {
            items[i].weight = mean;
        }
    }
    rc = 0;
    goto done;

error:
    describe_error(path, err, errlen);
done:
    Py_XDECREF(times);
    Py_XDECREF(root);
    Py_XDECREF(tree);
    Py_XDECREF(et);
    return rc;
}
