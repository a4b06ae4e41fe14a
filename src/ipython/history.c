/* SPDX-License-Identifier: MIT */
/* The history a kernel keeps, for the cells of a run: In and _ih, _i,
 * _ii, _iii and _iN (apy_ipy_cell_begin), Out and _oh, _, __, ___ and _N
 * (apy_ipy_cell_result), as IPython's HistoryManager.store_inputs and
 * DisplayHook.update_user_ns keep them. Until get_ipython() makes
 * IPython's shell apyrun keeps them itself; then the shell does, and
 * takes over what was kept (apy__ipy_hand_over_history). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <string.h>

#include "apyrun/ipython.h"
#include "internal.h"

PyObject *
apy__ipy_main_ns(ApyIpyMagicsObject *self)
{
    PyObject *ns = self->host != NULL ? self->host->globals(self->ctx) : NULL;
    if (ns != NULL) {
        return ns;
    }
    PyObject *module = PyImport_AddModule("__main__"); /* borrowed */
    return module != NULL ? PyModule_GetDict(module) : NULL;
}

/* 1 if name is one of the history's: _, __, ___, _N, _i, _ii, _iii or
 * _iN. */
static int
history_name(PyObject *key)
{
    const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
    if (k == NULL || k[0] != '_') {
        PyErr_Clear();
        return 0;
    }
    size_t n = strlen(k);
    if (n <= 3 && strspn(k, "_") == n) {
        return 1;
    }
    size_t i = 1 + (k[1] == 'i' ? strspn(k + 1, "i") : 0);
    if (k[1] == 'i' && i <= 4 && k[i] == '\0') {
        return 1; /* _i, _ii, _iii */
    }
    return k[i] != '\0' && strspn(k + i, "0123456789") == n - i;
}

/* A new dict of ns's history names (history_name) and their values. */
PyObject *
apy__ipy_history_names(PyObject *ns)
{
    PyObject *kept = PyDict_New();
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (kept != NULL && PyDict_Next(ns, &pos, &key, &value)) {
        if (history_name(key) && PyDict_SetItem(kept, key, value) < 0) {
            Py_CLEAR(kept);
        }
    }
    return kept;
}

/* ns[name] = value for each pair of names/values. 0 or -1. */
static int
put_names(PyObject *ns, const char *const *names, PyObject *const *values,
          size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (PyDict_SetItemString(ns, names[i], values[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The input of cell count, as IPython's store_inputs: In and _ih (made
 * on the first cell), _i, _ii, _iii (the three before) and _iN. 0 or
 * -1. */
int
apy__ipy_store_input(ApyIpyMagicsObject *self, PyObject *ns,
                     const char *source, long count)
{
    if (self->hist_in == NULL) {
        self->hist_in = Py_BuildValue("[s]", "");
        self->hist_out = PyDict_New();
        static const char *const names[] = {"In", "_ih", "Out", "_oh"};
        PyObject *values[] = {self->hist_in, self->hist_in, self->hist_out,
                              self->hist_out};
        if (self->hist_in == NULL || self->hist_out == NULL
            || put_names(ns, names, values, 4) < 0) {
            Py_CLEAR(self->hist_in); /* both, or neither */
            Py_CLEAR(self->hist_out);
            return -1;
        }
    }
    /* Decoded leniently: the host's text (UTF-8 from the notebook
     * reader) must not fail the cell for the history's sake. */
    PyObject *text = PyUnicode_DecodeUTF8(source, (Py_ssize_t)strlen(source),
                                          "replace");
    if (text == NULL || PyList_Append(self->hist_in, text) < 0) {
        Py_XDECREF(text);
        return -1;
    }
    Py_DECREF(text);
    char name[32];
    snprintf(name, sizeof(name), "_i%ld", count);
    Py_ssize_t n = PyList_GET_SIZE(self->hist_in);
    const char *names[] = {"_i", "_ii", "_iii", name};
    PyObject *values[4];
    for (Py_ssize_t i = 0; i < 3; i++) {
        values[i] = n - 2 - i > 0 ? PyList_GET_ITEM(self->hist_in, n - 2 - i)
                                  : PyList_GET_ITEM(self->hist_in, 0);
    }
    values[3] = PyList_GET_ITEM(self->hist_in, n - 1);
    return put_names(ns, names, values, 4);
}

/* A result, as IPython's displayhook keeps it: _N and Out[N]; _, __ and
 * ___ move on, in ns only while the program has not assigned them. */
static int
small_store_result(ApyIpyMagicsObject *self, PyObject *ns, PyObject *value)
{
    static const char *const unders[] = {"_", "__", "___"};
    int ours = 1;
    for (int i = 0; i < 3; i++) {
        if (self->under[i] == NULL) {
            self->under[i] = PyUnicode_FromString(""); /* IPython's start */
            if (self->under[i] == NULL) {
                return -1;
            }
        }
        PyObject *v = PyDict_GetItemString(ns, unders[i]); /* borrowed */
        if (v != NULL && v != self->under[i]) {
            ours = 0;
        }
    }
    Py_XSETREF(self->under[2], self->under[1]);
    self->under[1] = self->under[0];
    self->under[0] = Py_NewRef(value);
    for (int i = 0; ours && i < 3; i++) {
        if (PyDict_SetItemString(ns, unders[i], self->under[i]) < 0) {
            return -1;
        }
    }
    char name[32];
    snprintf(name, sizeof(name), "_%ld", self->cell_count);
    PyObject *key = PyLong_FromLong(self->cell_count);
    int rc = key != NULL && PyDict_SetItem(self->hist_out, key, value) == 0
                     && PyDict_SetItemString(ns, name, value) == 0
                 ? 0
                 : -1;
    Py_XDECREF(key);
    return rc;
}

/* IPython's shell was made: the history kept so far becomes its own (its
 * __init__ bound In, Out, _ih and _oh to its empty ones). 0 or -1. */
int
apy__ipy_hand_over_history(ApyIpyMagicsObject *self)
{
    if (self->hist_in == NULL) {
        return 0;
    }
    PyObject *hm = PyObject_GetAttrString(self->shell, "history_manager");
    PyObject *dh = PyObject_GetAttrString(self->shell, "displayhook");
    int rc = -1;
    if (hm == NULL || dh == NULL) {
        goto done;
    }
    static const char *const lists[] = {"input_hist_parsed",
                                        "input_hist_raw"};
    for (int i = 0; i < 2; i++) {
        PyObject *list = PyObject_GetAttrString(hm, lists[i]);
        int set = list != NULL
                      ? PySequence_SetSlice(list, 0, PY_SSIZE_T_MAX,
                                            self->hist_in)
                      : -1;
        Py_XDECREF(list);
        if (set < 0) {
            goto done;
        }
    }
    PyObject *out = PyObject_GetAttrString(hm, "output_hist");
    int upd = out != NULL ? PyDict_Update(out, self->hist_out) : -1;
    Py_XDECREF(out);
    if (upd < 0) {
        goto done;
    }
    static const char *const unders[] = {"_", "__", "___"};
    for (int i = 0; i < 3; i++) {
        PyObject *v = self->under[i] != NULL ? self->under[i] : Py_None;
        if (self->under[i] != NULL
            && PyObject_SetAttrString(dh, unders[i], v) < 0) {
            goto done;
        }
    }
    rc = 0;
    Py_CLEAR(self->hist_in);
    Py_CLEAR(self->hist_out);
    for (int i = 0; i < 3; i++) {
        Py_CLEAR(self->under[i]);
    }
done:
    Py_XDECREF(dh);
    Py_XDECREF(hm);
    return rc;
}

int
apy_ipy_cell_result(PyObject *magics, PyObject *value)
{
    ApyIpyMagicsObject *self = (ApyIpyMagicsObject *)magics;
    if (value == Py_None) {
        return 0;
    }
    if (self->shell_kind == APY_IPY_SHELL_IPYTHON) {
        PyObject *dh = PyObject_GetAttrString(self->shell, "displayhook");
        PyObject *r = dh != NULL ? PyObject_CallMethod(dh, "update_user_ns",
                                                       "(O)", value)
                                 : NULL;
        Py_XDECREF(dh);
        Py_XDECREF(r);
        return r != NULL ? 0 : -1;
    }
    PyObject *ns = apy__ipy_main_ns(self); /* borrowed */
    if (self->hist_out == NULL || ns == NULL) {
        return ns == NULL && PyErr_Occurred() ? -1 : 0;
    }
    return small_store_result(self, ns, value);
}

