/* SPDX-License-Identifier: MIT */
/* The pager of a notebook run: text a kernel sends as a pager payload
 * (help, %quickref, %magic) goes to the host's page (the terminal), not
 * into the cell's outputs; with no host, to sys.stdout. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "internal.h"

/* Shows text through the host's pager, else on sys.stdout. 0 or -1. */
int
apy__ipy_show_page(ApyIpyMagicsObject *self, PyObject *text)
{
    const char *utf8 = PyUnicode_AsUTF8(text);
    if (utf8 == NULL) {
        return -1;
    }
    size_t n = strlen(utf8);
    int newline = n == 0 || utf8[n - 1] != '\n'; /* a pager ends lines */
    if (self->host != NULL && self->host->page != NULL) {
        if (self->host->page(self->ctx, utf8) < 0) {
            return -1;
        }
        return newline ? self->host->page(self->ctx, "\n") : 0;
    }
    if (apy__ipy_write_stdout(text) < 0) {
        return -1;
    }
    if (!newline) {
        return 0;
    }
    PyObject *nl = PyUnicode_FromString("\n");
    int rc = nl != NULL ? apy__ipy_write_stdout(nl) : -1;
    Py_XDECREF(nl);
    return rc;
}

/* page(strng, start=0, screen_lines=0, pager_cmd=None), which IPython's
 * IPython.core.page.page becomes once its shell exists: text (or a mime
 * bundle's text/plain) goes where a kernel's pager payload goes (the
 * host's page), as ipykernel's payload page does. */
static PyObject *
magics_page(ApyIpyMagicsObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"strng", "start", "screen_lines", "pager_cmd",
                             NULL};
    PyObject *strng, *pager_cmd = NULL;
    int start = 0, lines = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|iiO:page", kwlist,
                                     &strng, &start, &lines, &pager_cmd)) {
        return NULL;
    }
    PyObject *text = PyDict_Check(strng)
                         ? Py_XNewRef(PyDict_GetItemString(strng,
                                                           "text/plain"))
                         : PyObject_Str(strng);
    if (text == NULL) {
        if (!PyErr_Occurred()) {
            Py_RETURN_NONE;
        }
        return NULL;
    }
    int rc = PyUnicode_Check(text) ? apy__ipy_show_page(self, text) : 0;
    Py_DECREF(text);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

static PyMethodDef page_def = {
    "page", (PyCFunction)(void (*)(void))magics_page,
    METH_VARARGS | METH_KEYWORDS,
    "page(strng, start=0, screen_lines=0, pager_cmd=None)\n--\n\n"
    "IPython's pager in a notebook run: the text goes where a kernel's "
    "pager payload goes, not into the cell's outputs.",
};

int
apy__ipy_install_pager(ApyIpyMagicsObject *self)
{
    /* IPython's pager (%quickref, %magic, obj? by IPython's own paths)
     * pages as in a kernel: IPython.core.page.page becomes page(), as
     * ipykernel's install_payload_page replaces it. */
    PyObject *mod = PyImport_ImportModule("IPython.core.page");
    if (mod == NULL) {
        return -1;
    }
    PyObject *f = PyCFunction_New(&page_def, (PyObject *)self);
    int rc = f != NULL ? PyObject_SetAttrString(mod, "page", f) : -1;
    Py_XDECREF(f);
    Py_DECREF(mod);
    return rc;
}
