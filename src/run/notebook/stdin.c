/* SPDX-License-Identifier: MIT */
/* input() and getpass.getpass() when apyrun's stdin is not a terminal:
 * as in a notebook run by nbclient or papermill (their frontend does not
 * answer input requests), they raise StdinNotImplementedError with
 * ipykernel's words, instead of reading a pipe or /dev/null. On a
 * terminal they read it, as python3 does. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <unistd.h>

#include "internal.h"

/* IPython's StdinNotImplementedError where IPython is importable (the
 * import happens at the first input() only), else one of the same name
 * made here. A new reference, or NULL with an exception set. */
static PyObject *
error_class(void)
{
    static PyObject *own;
    PyObject *mod = PyImport_ImportModule("IPython.core.error");
    if (mod != NULL) {
        PyObject *cls = PyObject_GetAttrString(mod,
                                               "StdinNotImplementedError");
        Py_DECREF(mod);
        if (cls != NULL) {
            return cls;
        }
    }
    PyErr_Clear();
    if (own == NULL) {
        own = PyErr_NewException("apyrun.StdinNotImplementedError",
                                 PyExc_NotImplementedError, NULL);
    }
    return Py_XNewRef(own);
}

static PyObject *
refuse(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)args;
    (void)kwargs;
    const char *what = PyUnicode_AsUTF8(self);
    if (what == NULL) {
        return NULL;
    }
    PyObject *cls = error_class();
    if (cls != NULL) {
        PyErr_Format(cls, "%s was called, but this frontend does not "
                     "support input requests.", what);
        Py_DECREF(cls);
    }
    return NULL;
}

static PyMethodDef input_def = {
    "input", (PyCFunction)(void (*)(void))refuse,
    METH_VARARGS | METH_KEYWORDS,
    "input(prompt='')\n--\n\nIn a notebook run whose stdin is not a "
    "terminal: raises StdinNotImplementedError, as a kernel whose frontend "
    "does not answer input requests.",
};

static PyMethodDef getpass_def = {
    "getpass", (PyCFunction)(void (*)(void))refuse,
    METH_VARARGS | METH_KEYWORDS,
    "getpass(prompt='Password: ', stream=None)\n--\n\nAs input().",
};

/* Sets obj.name (a dict's item when obj is one) to a refusing function
 * named by what. 0 or -1. */
static int
put_refusal(PyObject *obj, PyMethodDef *def, const char *what)
{
    PyObject *name = PyUnicode_FromString(what);
    PyObject *f = name != NULL ? PyCFunction_New(def, name) : NULL;
    Py_XDECREF(name);
    if (f == NULL) {
        return -1;
    }
    int rc = PyDict_Check(obj) ? PyDict_SetItemString(obj, def->ml_name, f)
                               : PyObject_SetAttrString(obj, def->ml_name, f);
    Py_DECREF(f);
    return rc;
}

int
apy__nbrun_stdin_init(apy_nbrun_t *run)
{
    (void)run;
    if (isatty(STDIN_FILENO)) {
        return 0;
    }
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    if (builtins == NULL || put_refusal(builtins, &input_def, "raw_input")
        < 0) {
        return -1;
    }
    PyObject *getpass = PyImport_ImportModule("getpass");
    if (getpass == NULL) {
        PyErr_Clear(); /* no getpass: nothing to refuse */
        return 0;
    }
    int rc = put_refusal(getpass, &getpass_def, "getpass");
    Py_DECREF(getpass);
    return rc;
}
