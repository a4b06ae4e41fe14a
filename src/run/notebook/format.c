/* SPDX-License-Identifier: MIT */
/* An object's mime bundle as IPython's display formatter makes it:
 * _repr_*_ methods in IPython's order, _repr_mimebundle_, matplotlib
 * figures as image/png, and text/plain always (IPython's pretty printer
 * where it imports: apy_ipy_plain_text). Records nothing and shows
 * nothing: display.c and outputs.c decide where a bundle goes. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>
#include <strings.h>

#include "apyrun/ipython.h"
#include "internal.h"

/* _repr_*_ methods and the mime type each fills, in IPython's order. */
static const struct {
    const char *method;
    const char *mime;
    int binary; /* bytes are base64-encoded */
} repr_methods[] = {
    {"_repr_html_", "text/html", 0},
    {"_repr_markdown_", "text/markdown", 0},
    {"_repr_svg_", "image/svg+xml", 0},
    {"_repr_png_", "image/png", 1},
    {"_repr_jpeg_", "image/jpeg", 1},
    {"_repr_pdf_", "application/pdf", 1},
    {"_repr_latex_", "text/latex", 0},
    {"_repr_json_", "application/json", 0},
    {"_repr_javascript_", "application/javascript", 0},
};

#define NREPR (sizeof(repr_methods) / sizeof(repr_methods[0]))

/* Reports a failing _repr_ method the way ipykernel does (its traceback
 * on stderr and, in a run, an error output before the object's) and goes
 * on without that representation. */
static void
report_repr_error(apy_nbrun_t *run)
{
    if (run != NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
        Py_XDECREF(apy__nbrun_show_exception(run, NULL));
        return;
    }
    PyErr_Print();
}

/* Returns a new reference to data as base64 text, or NULL. */
static PyObject *
base64_text(PyObject *data)
{
    PyObject *binascii = PyImport_ImportModule("binascii");
    if (binascii == NULL) {
        return NULL;
    }
    PyObject *b = PyObject_CallMethod(binascii, "b2a_base64", "O", data);
    Py_DECREF(binascii);
    if (b == NULL) {
        return NULL;
    }
    PyObject *s = PyUnicode_DecodeASCII(PyBytes_AS_STRING(b),
                                        PyBytes_GET_SIZE(b) - 1, "strict");
    Py_DECREF(b);
    return s;
}

/* Returns 1 if obj is a matplotlib figure, else 0. */
static int
is_figure(PyObject *obj)
{
    PyObject *mod = PyObject_GetAttrString((PyObject *)Py_TYPE(obj),
                                           "__module__");
    const char *m = mod && PyUnicode_Check(mod) ? PyUnicode_AsUTF8(mod)
                                                : NULL;
    int fig = m != NULL && strncmp(m, "matplotlib.figure", 17) == 0
              && PyObject_HasAttrString(obj, "savefig");
    Py_XDECREF(mod);
    PyErr_Clear();
    return fig;
}

/* Returns a new reference to the figure as base64 PNG text, or NULL. */
static PyObject *
figure_png(PyObject *fig)
{
    PyObject *io = NULL, *buf = NULL, *savefig = NULL, *kw = NULL;
    PyObject *args = NULL, *r = NULL, *png = NULL, *text = NULL;
    io = PyImport_ImportModule("io");
    if (io == NULL) {
        goto done;
    }
    buf = PyObject_CallMethod(io, "BytesIO", NULL);
    if (buf == NULL) {
        goto done;
    }
    savefig = PyObject_GetAttrString(fig, "savefig");
    if (savefig == NULL) {
        goto done;
    }
    kw = Py_BuildValue("{ssss}", "format", "png", "bbox_inches", "tight");
    if (kw == NULL) {
        goto done;
    }
    args = PyTuple_Pack(1, buf);
    if (args == NULL) {
        goto done;
    }
    r = PyObject_Call(savefig, args, kw);
    if (r == NULL) {
        goto done;
    }
    png = PyObject_CallMethod(buf, "getvalue", NULL);
    if (png == NULL) {
        goto done;
    }
    text = base64_text(png);
done:
    Py_XDECREF(png);
    Py_XDECREF(r);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(savefig);
    Py_XDECREF(buf);
    Py_XDECREF(io);
    return text;
}

/* Returns a new reference to meth(include=None, exclude=None), or NULL
 * with the failure reported (as a failing _repr_ is) and cleared. */
/* 1 when the mime type (a str) is one display()'s include and exclude
 * let through (NULL or None: all); -1 with an exception set. */
static int
wanted(const apy_nbrun_select_t *sel, PyObject *mime)
{
    if (sel == NULL) {
        return 1;
    }
    if (sel->include != NULL && sel->include != Py_None) {
        int in = PySequence_Contains(sel->include, mime);
        if (in <= 0) {
            return in;
        }
    }
    if (sel->exclude != NULL && sel->exclude != Py_None) {
        int out = PySequence_Contains(sel->exclude, mime);
        return out < 0 ? -1 : !out;
    }
    return 1;
}

/* wanted() for a C string. */
static int
wanted_str(const apy_nbrun_select_t *sel, const char *mime)
{
    if (sel == NULL) {
        return 1;
    }
    PyObject *m = PyUnicode_FromString(mime);
    int w = m != NULL ? wanted(sel, m) : -1;
    Py_XDECREF(m);
    return w;
}

static PyObject *
call_mimebundle(apy_nbrun_t *run, PyObject *meth,
                const apy_nbrun_select_t *sel)
{
    PyObject *kw = NULL, *args = NULL, *r = NULL;
    PyObject *inc = sel != NULL && sel->include != NULL ? sel->include
                                                       : Py_None;
    PyObject *exc = sel != NULL && sel->exclude != NULL ? sel->exclude
                                                       : Py_None;
    kw = Py_BuildValue("{sOsO}", "include", inc, "exclude", exc);
    if (kw == NULL) {
        goto done;
    }
    args = PyTuple_New(0);
    if (args == NULL) {
        goto done;
    }
    r = PyObject_Call(meth, args, kw);
done:
    Py_XDECREF(args);
    Py_XDECREF(kw);
    if (r == NULL) {
        report_repr_error(run);
    }
    return r;
}

/* Merges _repr_mimebundle_'s result into data and md. 0 or -1. */
static int
merge_mimebundle(apy_nbrun_t *run, PyObject *obj, PyObject *data,
                 PyObject *md, const apy_nbrun_select_t *sel)
{
    PyObject *meth = PyObject_GetAttrString(obj, "_repr_mimebundle_");
    if (meth == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *r = PyCallable_Check(meth) ? call_mimebundle(run, meth, sel)
                                         : NULL;
    Py_DECREF(meth);
    if (r == NULL || r == Py_None) {
        Py_XDECREF(r);
        return 0;
    }
    int rc = 0;
    if (PyTuple_Check(r) && PyTuple_GET_SIZE(r) == 2) {
        PyObject *d = PyTuple_GET_ITEM(r, 0), *m = PyTuple_GET_ITEM(r, 1);
        if (PyDict_Check(d)) {
            rc = PyDict_Update(data, d);
        }
        if (rc == 0 && PyDict_Check(m)) {
            rc = PyDict_Update(md, m);
        }
    } else if (PyDict_Check(r)) {
        rc = PyDict_Update(data, r);
    }
    Py_DECREF(r);
    return rc;
}

/* Adds the representation `i` of repr_methods to data/md if obj has one.
 * 0 or -1. */
static int
add_repr(apy_nbrun_t *run, PyObject *obj, size_t i, PyObject *data,
         PyObject *md, const apy_nbrun_select_t *sel)
{
    if (PyDict_GetItemString(data, repr_methods[i].mime) != NULL) {
        return 0;
    }
    int w = wanted_str(sel, repr_methods[i].mime);
    if (w <= 0) {
        return w;
    }
    PyObject *meth = PyObject_GetAttrString(obj, repr_methods[i].method);
    if (meth == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *v = PyCallable_Check(meth) ? PyObject_CallNoArgs(meth)
                                         : Py_NewRef(Py_None);
    Py_DECREF(meth);
    if (v == NULL) {
        report_repr_error(run);
        return 0;
    }
    if (PyTuple_Check(v) && PyTuple_GET_SIZE(v) == 2) {
        if (PyDict_SetItemString(md, repr_methods[i].mime,
                                 PyTuple_GET_ITEM(v, 1)) < 0) {
            Py_DECREF(v);
            return -1;
        }
        Py_SETREF(v, Py_NewRef(PyTuple_GET_ITEM(v, 0)));
    }
    if (v != Py_None && repr_methods[i].binary && PyBytes_Check(v)) {
        Py_SETREF(v, base64_text(v));
        if (v == NULL) {
            return -1;
        }
    }
    int rc = v != Py_None ? PyDict_SetItemString(data, repr_methods[i].mime,
                                                 v)
                          : 0;
    Py_DECREF(v);
    return rc;
}

int
apy__nbrun_self_display(apy_nbrun_t *run, PyObject *obj)
{
    if (PyType_Check(obj)) {
        return 0;
    }
    PyObject *meth = PyObject_GetAttrString(obj, "_ipython_display_");
    if (meth == NULL || !PyCallable_Check(meth)) {
        Py_XDECREF(meth);
        PyErr_Clear();
        return 0;
    }
    PyObject *r = PyObject_CallNoArgs(meth);
    Py_DECREF(meth);
    if (r == NULL) {
        report_repr_error(run);
        return 1; /* IPython shows nothing else for it either */
    }
    Py_DECREF(r);
    return 1;
}

/* Drops from data the types sel does not let through. 0 or -1. */
static int
select_types(PyObject *data, const apy_nbrun_select_t *sel)
{
    if (sel == NULL) {
        return 0;
    }
    PyObject *keys = PyDict_Keys(data);
    if (keys == NULL) {
        return -1;
    }
    int rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(keys); i++) {
        PyObject *k = PyList_GET_ITEM(keys, i); /* borrowed */
        int w = wanted(sel, k);
        if (w < 0 || (w == 0 && PyDict_DelItem(data, k) < 0)) {
            rc = -1;
        }
    }
    Py_DECREF(keys);
    return rc;
}

PyObject *
apy__nbrun_format(apy_nbrun_t *run, PyObject *obj)
{
    return apy__nbrun_format_some(run, obj, NULL);
}

PyObject *
apy__nbrun_format_some(apy_nbrun_t *run, PyObject *obj,
                       const apy_nbrun_select_t *sel)
{
    PyObject *data = NULL, *md = NULL;
    if (apy__nbrun_self_display(run, obj)) {
        return Py_NewRef(Py_None);
    }
    data = PyDict_New();
    if (data == NULL) {
        goto error;
    }
    md = PyDict_New();
    if (md == NULL) {
        goto error;
    }
    if (!PyType_Check(obj) && is_figure(obj) && run != NULL) {
        /* The inline backend's formats, once the shell has them. */
        PyObject *r = apy_ipy_figure_format(run->magics, obj,
                                            sel != NULL ? sel->include : NULL,
                                            sel != NULL ? sel->exclude : NULL);
        if (r == NULL) {
            goto error;
        }
        if (r != Py_None) {
            Py_DECREF(data);
            Py_DECREF(md);
            return r;
        }
        Py_DECREF(r);
    }
    /* A class has _repr_*_ functions, not representations. */
    if (!PyType_Check(obj)) {
        if (merge_mimebundle(run, obj, data, md, sel) < 0) {
            goto error;
        }
        for (size_t i = 0; i < NREPR; i++) {
            if (add_repr(run, obj, i, data, md, sel) < 0) {
                goto error;
            }
        }
        /* Printers registered on the shell's formatters (sympy's). A
         * printer that raises is reported as a failing _repr_ is. */
        if (run != NULL
            && apy_ipy_shell_formats(run->magics, obj, data, md,
                                     sel != NULL ? sel->include : NULL,
                                     sel != NULL ? sel->exclude : NULL)
                   < 0) {
            report_repr_error(run);
        }
        if (PyDict_GetItemString(data, "image/png") == NULL
            && wanted_str(sel, "image/png") == 1 && is_figure(obj)) {
            /* A figure that fails to draw (bad mathtext) is reported as
             * IPython's formatter reports it, and shown as its text. */
            PyObject *png = figure_png(obj);
            if (png == NULL) {
                report_repr_error(run);
            } else if (PyDict_SetItemString(data, "image/png", png) < 0) {
                Py_DECREF(png);
                goto error;
            } else {
                Py_DECREF(png);
            }
        }
    }
    if (select_types(data, sel) < 0) {
        goto error;
    }
    int plain = wanted_str(sel, "text/plain");
    if (plain < 0) {
        goto error;
    }
    if (plain && PyDict_GetItemString(data, "text/plain") == NULL) {
        PyObject *text = apy_ipy_plain_text(run != NULL ? run->magics
                                                        : NULL,
                                            obj);
        if (text == NULL
            || PyDict_SetItemString(data, "text/plain", text) < 0) {
            Py_XDECREF(text);
            goto error;
        }
        Py_DECREF(text);
    }
    return Py_BuildValue("(NN)", data, md);
error:
    Py_XDECREF(data);
    Py_XDECREF(md);
    return NULL;
}
