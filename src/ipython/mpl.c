/* SPDX-License-Identifier: MIT */
/* matplotlib as a Jupyter kernel sets it up. Where IPython and
 * matplotlib-inline are importable, `%matplotlib inline` (and the
 * frontends' notebook/widget backends) is IPython's own magic on
 * get_ipython()'s shell (magics.c sends it there), `%config
 * InlineBackend.*` finds the InlineBackend it configures, and figures are
 * formatted by the shell's formatters (formatters.c), so figure_formats
 * (svg, retina, pdf, jpeg) and print_figure_kwargs apply. Otherwise, and
 * in a notebook that never says %matplotlib, apyrun's Agg (no IPython
 * import): figures shown as PNG at the end of each cell, as the inline
 * backend shows them. This file calls nothing else of the layer's but
 * shell.c's helpers. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "internal.h"

/* The backends a kernel's frontend provides, which `%matplotlib NAME`
 * gives to IPython when it and matplotlib-inline are importable. */
static const char *const frontend[] = {"", "inline", "notebook", "nbagg",
                                       "widget", "ipympl", NULL};

/* 1 if module name can be imported (found without importing it), 0 if
 * not; -1 with an exception set. */
static int
importable(const char *name)
{
    PyObject *n = PyUnicode_FromString(name);
    if (n == NULL) {
        return -1;
    }
    PyObject *spec = apy__ipy_call_module("importlib.util", "find_spec", n);
    Py_DECREF(n);
    if (spec == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ImportError)
            || PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    int found = spec != Py_None;
    Py_DECREF(spec);
    return found;
}

int
apy__ipy_mpl_frontend_name(PyObject *arg)
{
    PyObject *stripped = PyObject_CallMethod(arg, "strip", NULL);
    if (stripped == NULL) {
        return -1;
    }
    int listed = 0;
    for (const char *const *f = frontend; *f != NULL; f++) {
        listed |= PyUnicode_CompareWithASCIIString(stripped, *f) == 0;
    }
    Py_DECREF(stripped);
    return listed;
}

int
apy_ipy_shows_figures(PyObject *magics)
{
    return magics == NULL || !((ApyIpyMagicsObject *)magics)->mpl_hidden;
}

int
apy_ipy_inline_flushes(PyObject *magics)
{
    PyObject *shell = magics != NULL ? ((ApyIpyMagicsObject *)magics)->shell
                                     : NULL;
    if (shell == NULL
        || ((ApyIpyMagicsObject *)magics)->shell_kind
               != APY_IPY_SHELL_IPYTHON) {
        return 0;
    }
    PyObject *events = PyObject_GetAttrString(shell, "events");
    PyObject *cbs = events != NULL ? PyObject_GetAttrString(events,
                                                            "callbacks")
                                   : NULL;
    PyObject *post = cbs != NULL && PyDict_Check(cbs)
                         ? PyDict_GetItemString(cbs, "post_execute")
                         : NULL;
    int found = 0;
    for (Py_ssize_t i = 0; post != NULL && PyList_Check(post)
                           && !found && i < PyList_GET_SIZE(post);
         i++) {
        PyObject *f = PyList_GET_ITEM(post, i);
        PyObject *mod = PyObject_GetAttrString(f, "__module__");
        PyObject *name = PyObject_GetAttrString(f, "__name__");
        found = mod != NULL && name != NULL && PyUnicode_Check(mod)
                && PyUnicode_Check(name)
                && PyUnicode_CompareWithASCIIString(
                       mod, "matplotlib_inline.backend_inline") == 0
                && PyUnicode_CompareWithASCIIString(name, "flush_figures")
                       == 0;
        Py_XDECREF(mod);
        Py_XDECREF(name);
    }
    PyErr_Clear(); /* a callback with no names is not the one */
    Py_XDECREF(cbs);
    Py_XDECREF(events);
    return found;
}

int
apy__ipy_mpl_frontend(PyObject *arg)
{
    int listed = apy__ipy_mpl_frontend_name(arg);
    if (listed <= 0) {
        return listed;
    }
    int have = importable("IPython");
    return have > 0 ? importable("matplotlib_inline") : have;
}

PyObject *
apy__ipy_mpl_agg(PyObject *arg)
{
    static const char *const map[][2] = {
        {"", "agg"},       {"inline", "agg"}, {"notebook", "agg"},
        {"nbagg", "agg"},  {"widget", "agg"}, {"ipympl", "agg"},
        {"agg", "agg"},    {"qt", "QtAgg"},   {"qt5", "Qt5Agg"},
        {"qt6", "QtAgg"},  {"tk", "TkAgg"},   {"gtk3", "GTK3Agg"},
        {"gtk4", "GTK4Agg"}, {"wx", "WXAgg"}, {"osx", "MacOSX"},
    };
    PyObject *stripped, *mpl = NULL, *r = NULL;
    const char *name, *backend;
    stripped = PyObject_CallMethod(arg, "strip", NULL);
    if (stripped == NULL) {
        return NULL;
    }
    name = PyUnicode_AsUTF8(stripped);
    if (name == NULL) {
        goto done;
    }
    backend = name;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i][0], name) == 0) {
            backend = map[i][1];
        }
    }
    mpl = PyImport_ImportModule("matplotlib");
    if (mpl == NULL) {
        goto done;
    }
    r = PyObject_CallMethod(mpl, "use", "s", backend);
    if (r != NULL) {
        Py_SETREF(r, Py_NewRef(Py_None));
    }
done:
    Py_XDECREF(mpl);
    Py_DECREF(stripped);
    return r;
}

int
apy__ipy_inline_config(PyObject *shell)
{
    /* As ipykernel has it from its start: InlineBackend among the
     * shell's configurables, its shell set, so that a change of
     * figure_formats re-registers the figure formatters. */
    PyObject *cfg = NULL, *cls = NULL, *list = NULL, *kw = NULL;
    int rc = -1;
    PyObject *mod = PyImport_ImportModule("matplotlib_inline.config");
    if (mod == NULL) {
        return -1;
    }
    cls = PyObject_GetAttrString(mod, "InlineBackend");
    kw = Py_BuildValue("{sO}", "parent", shell);
    PyObject *inst = cls != NULL ? PyObject_GetAttrString(cls, "instance")
                                 : NULL;
    PyObject *noargs = PyTuple_New(0);
    if (inst != NULL && kw != NULL && noargs != NULL) {
        cfg = PyObject_Call(inst, noargs, kw);
    }
    Py_XDECREF(noargs);
    Py_XDECREF(inst);
    if (cfg == NULL || PyObject_SetAttrString(cfg, "shell", shell) < 0) {
        goto done;
    }
    list = PyObject_GetAttrString(shell, "configurables");
    if (list == NULL) {
        goto done;
    }
    int in = PySequence_Contains(list, cfg);
    if (in < 0 || (in == 0 && PyList_Check(list)
                   && PyList_Append(list, cfg) < 0)) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(list);
    Py_XDECREF(kw);
    Py_XDECREF(cls);
    Py_XDECREF(cfg);
    Py_DECREF(mod);
    return rc;
}
