/* SPDX-License-Identifier: MIT */
/* The IPython shell's display formatters, where a run's own formatting
 * (run/notebook/format.c: _repr_*_ methods, IPython's pretty printer)
 * stops: printers registered with for_type on a mime type's formatter
 * (sympy's init_printing, pandas' and others' extensions), and the
 * figure formats matplotlib-inline's select_figure_formats registers.
 * Without IPython's shell there are none. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "apyrun/ipython.h"
#include "internal.h"

/* 1 when the program made IPython's InteractiveShell itself (one of
 * matplotlib-inline's set_matplotlib_formats() does) before asking
 * get_ipython(): the helper then takes it as its shell, as
 * get_ipython() would. 0 when there is none; -1 with an exception. */
static int
adopt_program_shell(ApyIpyMagicsObject *self)
{
    PyObject *name = PyUnicode_FromString("IPython.core.interactiveshell");
    PyObject *mod = name != NULL ? PyImport_GetModule(name) : NULL;
    Py_XDECREF(name);
    if (mod == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *cls = PyObject_GetAttrString(mod, "InteractiveShell");
    Py_DECREF(mod);
    PyObject *made = cls != NULL ? PyObject_CallMethod(cls, "initialized",
                                                       NULL)
                                 : NULL;
    Py_XDECREF(cls);
    int have = made != NULL ? PyObject_IsTrue(made) : -1;
    Py_XDECREF(made);
    if (have <= 0) {
        return have;
    }
    PyObject *shell = apy__ipy_get_ipython(self, NULL);
    Py_XDECREF(shell);
    return shell != NULL ? 1 : -1;
}

/* The IPython shell's formatters dict (mime -> formatter), new, or NULL
 * without an exception when there is no IPython shell. */
static PyObject *
shell_formatters(ApyIpyMagicsObject *self)
{
    if (self != NULL && self->shell == NULL
        && adopt_program_shell(self) < 0) {
        return NULL;
    }
    if (self == NULL || self->shell == NULL
        || self->shell_kind != APY_IPY_SHELL_IPYTHON) {
        return NULL;
    }
    PyObject *df = PyObject_GetAttrString(self->shell, "display_formatter");
    PyObject *all = df != NULL ? PyObject_GetAttrString(df, "formatters")
                               : NULL;
    Py_XDECREF(df);
    return all;
}

/* 1 when mime is one sel lets through (include/exclude NULL or None:
 * all), 0 when not, -1 with an exception set. */
static int
let_through(PyObject *mime, PyObject *include, PyObject *exclude)
{
    if (include != NULL && include != Py_None) {
        int in = PySequence_Contains(include, mime);
        if (in <= 0) {
            return in;
        }
    }
    if (exclude != NULL && exclude != Py_None) {
        int out = PySequence_Contains(exclude, mime);
        return out < 0 ? -1 : !out;
    }
    return 1;
}

int
apy_ipy_shell_formats(PyObject *magics, PyObject *obj, PyObject *data,
                      PyObject *md, PyObject *include, PyObject *exclude)
{
    PyObject *all = shell_formatters((ApyIpyMagicsObject *)magics);
    if (all == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *items = PyMapping_Items(all);
    Py_DECREF(all);
    if (items == NULL) {
        return -1;
    }
    int rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(items); i++) {
        PyObject *mime = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
        PyObject *f = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
        if (!PyUnicode_Check(mime)
            || PyUnicode_CompareWithASCIIString(mime, "text/plain") == 0
            || PyDict_GetItemWithError(data, mime) != NULL) {
            continue;
        }
        int w = let_through(mime, include, exclude);
        if (w <= 0) {
            rc = w;
            continue;
        }
        /* Only a printer registered for obj's type: the _repr_*_ methods
         * are format.c's. */
        PyObject *printer = PyObject_CallMethod(f, "lookup", "(O)", obj);
        if (printer == NULL) {
            if (PyErr_ExceptionMatches(PyExc_KeyError)) {
                PyErr_Clear();
                continue;
            }
            rc = -1;
            break;
        }
        Py_DECREF(printer);
        PyObject *v = PyObject_CallOneArg(f, obj);
        if (v == NULL) {
            rc = -1;
            break;
        }
        if (PyTuple_Check(v) && PyTuple_GET_SIZE(v) == 2) {
            PyObject *m = PyTuple_GET_ITEM(v, 1);
            if (m != Py_None && PyDict_SetItem(md, mime, m) < 0) {
                rc = -1;
            }
            Py_SETREF(v, Py_NewRef(PyTuple_GET_ITEM(v, 0)));
        }
        if (rc == 0 && v != Py_None && PyDict_SetItem(data, mime, v) < 0) {
            rc = -1;
        }
        Py_DECREF(v);
    }
    Py_DECREF(items);
    return rc;
}

PyObject *
apy_ipy_figure_format(PyObject *magics, PyObject *fig, PyObject *include,
                      PyObject *exclude)
{
    static const char *const images[] = {"image/png", "image/svg+xml",
                                         "application/pdf", "image/jpeg",
                                         NULL};
    ApyIpyMagicsObject *self = (ApyIpyMagicsObject *)magics;
    if (self != NULL && self->shell == NULL
        && adopt_program_shell(self) < 0) {
        return NULL;
    }
    if (self == NULL || self->shell == NULL
        || self->shell_kind != APY_IPY_SHELL_IPYTHON) {
        Py_RETURN_NONE;
    }
    PyObject *df = PyObject_GetAttrString(self->shell, "display_formatter");
    PyObject *fs = df != NULL ? PyObject_GetAttrString(df, "formatters")
                              : NULL;
    PyObject *format = fs != NULL ? PyObject_GetAttrString(df, "format")
                                  : NULL;
    Py_XDECREF(df);
    if (format == NULL) {
        Py_XDECREF(fs);
        return NULL;
    }
    /* Only when the shell has a figure formatter (select_figure_formats
     * ran): else apyrun's own PNG. Its answer stands even without an
     * image: a figure that failed to draw was reported by IPython. */
    int image = 0;
    for (const char *const *m = images; PyDict_Check(fs) && *m != NULL
                                        && !image;
         m++) {
        PyObject *f = PyDict_GetItemString(fs, *m); /* borrowed */
        PyObject *p = f != NULL ? PyObject_CallMethod(f, "lookup", "(O)",
                                                      fig)
                                : NULL;
        image = p != NULL;
        Py_XDECREF(p);
        PyErr_Clear(); /* KeyError: no printer for figures */
    }
    Py_DECREF(fs);
    if (!image) {
        Py_DECREF(format);
        Py_RETURN_NONE;
    }
    PyObject *kw = Py_BuildValue("{sOsO}", "include",
                                 include != NULL ? include : Py_None,
                                 "exclude",
                                 exclude != NULL ? exclude : Py_None);
    PyObject *args = PyTuple_Pack(1, fig);
    PyObject *r = kw != NULL && args != NULL ? PyObject_Call(format, args, kw)
                                             : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_DECREF(format);
    return r;
}
