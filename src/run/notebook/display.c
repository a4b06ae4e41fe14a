/* SPDX-License-Identifier: MIT */
/* Rich output without IPython: the display() builtin, clear_output() and
 * update_display() (the recorder's methods), open matplotlib figures as
 * image/png at the end of a cell, and the hook that routes IPython's own
 * display functions here once IPython is imported. Mime bundles are
 * format.c's; where the outputs go is outputs.c's business. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>
#include <strings.h>

#include "apyrun/ipython.h"
#include "internal.h"

/* Prints a bundle's text/plain on sys.stdout (nothing records). */
static int
print_plain(PyObject *data)
{
    PyObject *plain = PyDict_GetItemString(data, "text/plain");
    PyObject *out = PySys_GetObject("stdout"); /* borrowed */
    if (plain == NULL || out == NULL || out == Py_None) {
        return 0;
    }
    if (PyFile_WriteObject(plain, out, Py_PRINT_RAW) < 0) {
        return -1;
    }
    return PyFile_WriteString("\n", out);
}

/* Adds (the running cell, out) to the outputs shown with display_id, which
 * update_display changes. 0 or -1. */
static int
register_display(ApyNbRuntimeObject *rt, PyObject *display_id,
                 PyObject *out)
{
    PyObject *list = PyDict_GetItemWithError(rt->display_ids,
                                             display_id); /* borrowed */
    if (list == NULL) {
        if (PyErr_Occurred()) {
            return -1;
        }
        list = PyList_New(0);
        if (list == NULL) {
            return -1;
        }
        int rc = PyDict_SetItem(rt->display_ids, display_id, list);
        Py_DECREF(list); /* the dict keeps it */
        if (rc < 0) {
            return -1;
        }
    }
    PyObject *entry = Py_BuildValue("(nO)", (Py_ssize_t)rt->run->cur, out);
    if (entry == NULL) {
        return -1;
    }
    int rc = PyList_Append(list, entry);
    Py_DECREF(entry);
    return rc;
}

int
apy__nbrun_update_display_id(ApyNbRuntimeObject *rt, PyObject *display_id,
                             PyObject *data, PyObject *md)
{
    PyObject *list = PyDict_GetItemWithError(rt->display_ids,
                                             display_id); /* borrowed */
    if (list == NULL || rt->run == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *entry = PyList_GET_ITEM(list, i);
        Py_ssize_t cell = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 0));
        PyObject *out = PyTuple_GET_ITEM(entry, 1);
        if (PyDict_SetItemString(out, "data", data) < 0
            || PyDict_SetItemString(out, "metadata", md) < 0) {
            return -1;
        }
        if (cell >= 0 && (size_t)cell < rt->run->nb.ncells
            && apy__nbrun_mark_dirty(rt->run, (size_t)cell) < 0) {
            return -1;
        }
    }
    return 0;
}

int
apy__nbrun_show_output(ApyNbRuntimeObject *rt, PyObject *out,
                       PyObject *display_id)
{
    int shown = display_id != NULL && display_id != Py_None;
    /* As nbclient: an output with a display_id the run showed before
     * changes those earlier outputs too, and is then one of them. */
    if (shown && rt->run != NULL && rt->outputs != NULL
        && rt->capture == NULL
        && apy__nbrun_update_display_id(
               rt, display_id, PyDict_GetItemString(out, "data"),
               PyDict_GetItemString(out, "metadata")) < 0) {
        return -1;
    }
    int rc = rt->run != NULL ? apy__nbrun_append_output(rt, out) : 0;
    if (rc > 0 && shown && rt->capture == NULL
        && register_display(rt, display_id, out) < 0) {
        return -1;
    }
    return rc;
}

/* Shows one bundle as display_data, registering display_id. 0 or -1. */
static int
show_bundle(ApyNbRuntimeObject *rt, PyObject *data, PyObject *md,
            PyObject *display_id)
{
    PyObject *out = Py_BuildValue("{sssOsO}", "output_type", "display_data",
                                  "data", data, "metadata", md);
    if (out == NULL) {
        return -1;
    }
    int rc = apy__nbrun_show_output(rt, out, display_id);
    if (rc == 0) {
        rc = print_plain(data);
    }
    Py_DECREF(out);
    return rc < 0 ? -1 : 0;
}

int
apy__nbrun_display_obj(PyObject *runtime, PyObject *obj, PyObject *metadata,
                       PyObject *display_id, const apy_nbrun_select_t *sel)
{
    apy_nbrun_t *run = ((ApyNbRuntimeObject *)runtime)->run;
    PyObject *bundle = apy__nbrun_format_some(run, obj, sel);
    if (bundle == NULL) {
        return apy__nbrun_format_failed(run);
    }
    if (bundle == Py_None || PyDict_GET_SIZE(PyTuple_GET_ITEM(bundle, 0))
                                 == 0) {
        Py_DECREF(bundle); /* it displayed itself, or nothing was wanted */
        return 0;
    }
    PyObject *data = PyTuple_GET_ITEM(bundle, 0);
    PyObject *md = PyTuple_GET_ITEM(bundle, 1);
    int rc = 0;
    if (metadata != NULL && metadata != Py_None) {
        rc = PyDict_Update(md, metadata);
    }
    if (rc == 0) {
        rc = show_bundle((ApyNbRuntimeObject *)runtime, data, md,
                         display_id);
    }
    Py_DECREF(bundle);
    return rc;
}

static PyObject *runtime_update_display(ApyNbRuntimeObject *self,
                                        PyObject *args, PyObject *kwargs);

/* display(*objs, include=None, exclude=None, metadata=None,
 *         transient=None, display_id=None, raw=False, clear=False,
 *         update=False)
 * as IPython's: returns None, or a DisplayHandle for a display_id
 * (IPython's class, imported then; None where IPython is missing). */
static PyObject *
runtime_display(ApyNbRuntimeObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *metadata = NULL, *display_id = NULL, *transient = NULL;
    apy_nbrun_select_t sel = {NULL, NULL};
    int raw = 0, clear = 0;
    if (kwargs != NULL) {
        sel.include = PyDict_GetItemString(kwargs, "include");
        sel.exclude = PyDict_GetItemString(kwargs, "exclude");
        metadata = PyDict_GetItemString(kwargs, "metadata");
        display_id = PyDict_GetItemString(kwargs, "display_id");
        transient = PyDict_GetItemString(kwargs, "transient");
        PyObject *v = PyDict_GetItemString(kwargs, "raw");
        raw = v != NULL && PyObject_IsTrue(v) == 1;
        v = PyDict_GetItemString(kwargs, "clear");
        clear = v != NULL && PyObject_IsTrue(v) == 1;
    }
    if ((display_id == NULL || display_id == Py_None) && transient != NULL
        && PyDict_Check(transient)) {
        display_id = PyDict_GetItemString(transient, "display_id");
    }
    PyObject *id = NULL;
    if (display_id == Py_True) {
        id = apy_ipy_new_id();
        if (id == NULL) {
            return NULL;
        }
    } else if (display_id != NULL && display_id != Py_None) {
        id = PyObject_Str(display_id);
        if (id == NULL) {
            return NULL;
        }
    }
    PyObject *up = kwargs != NULL ? PyDict_GetItemString(kwargs, "update")
                                  : NULL;
    if (up != NULL && PyObject_IsTrue(up) == 1) {
        /* update=True: what update_display does, as IPython's display. */
        if (id == NULL) {
            PyErr_SetString(PyExc_TypeError,
                            "display_id required for update_display");
            return NULL;
        }
        /* and the handle comes back, as from any display with an id */
        PyObject *kw = Py_BuildValue("{sOsO}", "display_id", id, "metadata",
                                     metadata != NULL ? metadata : Py_None);
        for (Py_ssize_t i = 0; kw != NULL && i < PyTuple_GET_SIZE(args);
             i++) {
            PyObject *one = PyTuple_Pack(1, PyTuple_GET_ITEM(args, i));
            PyObject *r = one != NULL ? runtime_update_display(self, one, kw)
                                      : NULL;
            Py_XDECREF(one);
            if (r == NULL) {
                Py_CLEAR(kw);
                break;
            }
            Py_DECREF(r);
        }
        if (kw == NULL) {
            goto error;
        }
        Py_DECREF(kw);
        goto handle;
    }
    if (clear) {
        apy__nbrun_clear_output(self, 1);
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *obj = PyTuple_GET_ITEM(args, i);
        int rc;
        if (raw && PyDict_Check(obj)) {
            PyObject *md = metadata && PyDict_Check(metadata)
                               ? PyDict_Copy(metadata) : PyDict_New();
            if (md == NULL) {
                goto error;
            }
            rc = show_bundle(self, obj, md, id);
            Py_DECREF(md);
        } else {
            rc = apy__nbrun_display_obj((PyObject *)self, obj, metadata, id,
                                        &sel);
        }
        if (rc < 0) {
            goto error;
        }
    }
handle:
    if (id != NULL && self->ipy_handle == NULL) {
        /* As in Jupyter, the handle comes back even when the notebook
         * never imported IPython: importing it now (our hook patches
         * it) costs only the cells that ask for an id. */
        PyObject *m = PyImport_ImportModule("IPython.core.display_functions");
        if (m == NULL) {
            PyErr_Clear(); /* no IPython: None, as documented */
        }
        Py_XDECREF(m);
    }
    if (id != NULL && self->ipy_handle != NULL) {
        PyObject *h = PyObject_CallOneArg(self->ipy_handle, id);
        Py_DECREF(id);
        return h;
    }
    Py_XDECREF(id);
    Py_RETURN_NONE;

error:
    Py_XDECREF(id);
    return NULL;
}

/* update_display(obj, *, display_id, **kwargs): replaces what earlier
 * displays with that id show, in this cell or earlier ones. */
static PyObject *
runtime_update_display(ApyNbRuntimeObject *self, PyObject *args,
                       PyObject *kwargs)
{
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "O:update_display", &obj)) {
        return NULL;
    }
    PyObject *display_id = kwargs ? PyDict_GetItemString(kwargs,
                                                         "display_id")
                                  : NULL;
    if (display_id == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "update_display() needs a display_id keyword");
        return NULL;
    }
    PyObject *id = PyObject_Str(display_id);
    if (id == NULL) {
        return NULL;
    }
    int known = PyDict_Contains(self->display_ids, id);
    if (known <= 0 || self->run == NULL) {
        Py_DECREF(id);
        return known < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *bundle = apy__nbrun_format(self->run, obj);
    if (bundle == NULL) {
        Py_DECREF(id);
        if (apy__nbrun_format_failed(self->run) < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (bundle == Py_None) {
        Py_DECREF(id);
        return bundle; /* it displayed itself */
    }
    PyObject *md = kwargs ? PyDict_GetItemString(kwargs, "metadata") : NULL;
    if (md != NULL && PyDict_Check(md)
        && PyDict_Update(PyTuple_GET_ITEM(bundle, 1), md) < 0) {
        goto error;
    }
    if (apy__nbrun_update_display_id(self, id, PyTuple_GET_ITEM(bundle, 0),
                                     PyTuple_GET_ITEM(bundle, 1)) < 0) {
        goto error;
    }
    Py_DECREF(id);
    Py_DECREF(bundle);
    Py_RETURN_NONE;

error:
    Py_DECREF(id);
    Py_DECREF(bundle);
    return NULL;
}

/* clear_output(wait=False): clears the cell's outputs now, or at its
 * next output when wait. Returns None, or NULL on bad arguments. */
static PyObject *
runtime_clear_output(ApyNbRuntimeObject *self, PyObject *args,
                     PyObject *kwargs)
{
    static char *kwlist[] = {"wait", NULL};
    int wait = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:clear_output",
                                     kwlist, &wait)) {
        return NULL;
    }
    apy__nbrun_clear_output(self, wait);
    Py_RETURN_NONE;
}

/* matplotlib.pyplot.show(*args, **kwargs) while Agg is apyrun's choice:
 * the open figures become outputs here and are closed, as the inline
 * backend's show() does; under a backend the program chose since, that
 * backend's show(). */
static PyObject *
runtime_show_figures(ApyNbRuntimeObject *self, PyObject *args,
                     PyObject *kwargs)
{
    PyObject *mpl = PyImport_ImportModule("matplotlib");
    if (mpl == NULL) {
        return NULL;
    }
    PyObject *backend = PyObject_CallMethod(mpl, "get_backend", NULL);
    Py_DECREF(mpl);
    if (backend == NULL) {
        return NULL;
    }
    const char *b = PyUnicode_Check(backend) ? PyUnicode_AsUTF8(backend)
                                             : NULL;
    int agg = b != NULL && strcasecmp(b, "agg") == 0;
    Py_DECREF(backend);
    if (b == NULL && PyErr_Occurred()) {
        return NULL; /* a backend name that is no UTF-8 */
    }
    if (agg && self->run != NULL) {
        if (apy__nbrun_flush_figures(self->run, 1) < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *plt = NULL, *mod = NULL, *show = NULL, *r = NULL;
    plt = PyImport_ImportModule("matplotlib.pyplot");
    if (plt == NULL) {
        goto done;
    }
    mod = PyObject_CallMethod(plt, "_get_backend_mod", NULL);
    if (mod == NULL) {
        goto done;
    }
    show = PyObject_GetAttrString(mod, "show");
    if (show == NULL) {
        goto done;
    }
    r = PyObject_Call(show, args, kwargs);
done:
    Py_XDECREF(show);
    Py_XDECREF(mod);
    Py_XDECREF(plt);
    return r;
}

PyMethodDef apy__nbrun_display_methods[] = {
    {"show_figures", (PyCFunction)(void (*)(void))runtime_show_figures,
     METH_VARARGS | METH_KEYWORDS,
     "plt.show() in a notebook: shows the open figures as outputs."},
    {"display", (PyCFunction)(void (*)(void))runtime_display,
     METH_VARARGS | METH_KEYWORDS,
     "display(*objs, metadata=None, display_id=None, raw=False, "
     "clear=False)\n--\n\nShows objects as rich outputs of the cell."},
    {"update_display", (PyCFunction)(void (*)(void))runtime_update_display,
     METH_VARARGS | METH_KEYWORDS,
     "Updates the outputs shown with a display_id."},
    {"clear_output", (PyCFunction)(void (*)(void))runtime_clear_output,
     METH_VARARGS | METH_KEYWORDS,
     "Clears the cell's outputs (at the next output if wait)."},
    {NULL, NULL, 0, NULL},
};

int
apy__nbrun_flush_figures(apy_nbrun_t *run, int nested)
{
    PyObject *name = PyUnicode_FromString("matplotlib.pyplot");
    if (name == NULL) {
        return -1;
    }
    PyObject *plt = PyImport_GetModule(name);
    Py_DECREF(name);
    if (plt == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    int rc = -1;
    PyObject *nums = NULL;
    /* Agg (apyrun's) and the inline backend show figures at the end of a
     * cell; any other backend shows them itself (nbagg, a GUI), and so
     * does the inline backend's own post_execute callback where IPython's
     * shell has it, but for a nested cell's (%%capture's body, which
     * IPython runs with run_cell: its figures are captured). */
    PyObject *backend = PyObject_CallMethod(plt, "get_backend", NULL);
    const char *b = backend != NULL && PyUnicode_Check(backend)
                        ? PyUnicode_AsUTF8(backend)
                        : NULL;
    int ours = b != NULL
               && (strcasecmp(b, "agg") == 0
                   || (strstr(b, "matplotlib_inline") != NULL
                       && (nested || !apy_ipy_inline_flushes(run->magics))))
               && apy_ipy_shows_figures(run->magics);
    Py_XDECREF(backend);
    if (b == NULL) {
        goto done;
    }
    if (!ours) {
        rc = 0;
        goto done;
    }
    nums = PyObject_CallMethod(plt, "get_fignums", NULL);
    if (nums == NULL) {
        goto done;
    }
    if (!PyList_Check(nums)) {
        PyErr_Format(PyExc_TypeError,
                     "pyplot.get_fignums() returned %.200s, not a list",
                     Py_TYPE(nums)->tp_name);
        goto done;
    }
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    int shows = rt->outputs != NULL || rt->capture != NULL;
    for (Py_ssize_t i = 0; shows && i < PyList_GET_SIZE(nums); i++) {
        PyObject *fig = PyObject_CallMethod(plt, "figure", "O",
                                            PyList_GET_ITEM(nums, i));
        if (fig == NULL) {
            goto done;
        }
        int r = apy__nbrun_display_obj(run->runtime, fig, NULL, NULL, NULL);
        Py_DECREF(fig);
        if (r < 0) {
            goto done;
        }
    }
    PyObject *r = PyObject_CallMethod(plt, "close", "s", "all");
    if (r == NULL) {
        goto done;
    }
    Py_DECREF(r);
    rc = 0;
done:
    Py_XDECREF(nums);
    Py_DECREF(plt);
    return rc;
}

int
apy__nbrun_display_init(apy_nbrun_t *run)
{
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    PyObject *display = PyObject_GetAttrString(run->runtime, "display");
    if (display == NULL) {
        return -1;
    }
    int rc = PyDict_SetItemString(builtins, "display", display);
    Py_DECREF(display);
    return rc;
}
