/* SPDX-License-Identifier: MIT */
/* `from __future__ import ...` anywhere at a cell's top level, as IPython
 * allows it (it compiles a cell statement by statement): CPython's
 * compiler wants such imports first in the module, so one that comes
 * later is compiled alone for the features it turns on, which then apply
 * to the whole cell and the cells after, and leaves a `pass` where it
 * stood (line numbers stay). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "apyrun/ipython.h"

/* 1 if stmt is `from __future__ import ...`. */
static int
is_future(PyObject *ast, PyObject *stmt)
{
    PyObject *cls = PyObject_GetAttrString(ast, "ImportFrom");
    int is = cls != NULL ? PyObject_IsInstance(stmt, cls) : -1;
    Py_XDECREF(cls);
    if (is <= 0) {
        PyErr_Clear();
        return 0;
    }
    PyObject *module = PyObject_GetAttrString(stmt, "module");
    is = module != NULL && PyUnicode_Check(module)
         && PyUnicode_CompareWithASCIIString(module, "__future__") == 0;
    Py_XDECREF(module);
    PyErr_Clear();
    return is;
}

/* 1 if stmt is a docstring (a constant str expression). */
static int
is_docstring(PyObject *ast, PyObject *stmt)
{
    PyObject *cls = PyObject_GetAttrString(ast, "Expr");
    int is = cls != NULL ? PyObject_IsInstance(stmt, cls) : -1;
    Py_XDECREF(cls);
    PyObject *value = is > 0 ? PyObject_GetAttrString(stmt, "value") : NULL;
    PyObject *c = value != NULL ? PyObject_GetAttrString(value, "value")
                                : NULL;
    is = c != NULL && PyUnicode_Check(c);
    Py_XDECREF(c);
    Py_XDECREF(value);
    PyErr_Clear();
    return is;
}

/* Compiles stmt alone (a module of it) and adds the future features it
 * turns on to *flags; then puts a pass with its location in its place.
 * 0, or -1 with an exception set (an unknown feature's SyntaxError). */
static int
hoist(PyObject *ast, PyObject *body, Py_ssize_t i, PyObject *filename,
      int *flags)
{
    PyObject *stmt = PyList_GET_ITEM(body, i); /* borrowed */
    PyObject *mod = NULL, *code = NULL, *pass = NULL;
    int rc = -1;
    mod = PyObject_CallMethod(ast, "Module", "([O][])", stmt);
    if (mod == NULL) {
        goto done;
    }
    PyObject *compile = PyDict_GetItemString(PyEval_GetBuiltins(),
                                             "compile"); /* borrowed */
    if (compile == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "builtins.compile is gone");
        goto done;
    }
    code = PyObject_CallFunction(compile, "OOsii", mod, filename, "exec",
                                 *flags, 1);
    if (code == NULL || !PyCode_Check(code)) {
        goto done;
    }
    *flags |= ((PyCodeObject *)code)->co_flags & PyCF_MASK;
    pass = PyObject_CallMethod(ast, "Pass", NULL);
    if (pass == NULL) {
        goto done;
    }
    PyObject *r = PyObject_CallMethod(ast, "copy_location", "OO", pass,
                                      stmt);
    Py_XDECREF(r);
    if (r != NULL && PyList_SetItem(body, i, Py_NewRef(pass)) == 0) {
        rc = 0;
    }
done:
    Py_XDECREF(pass);
    Py_XDECREF(code);
    Py_XDECREF(mod);
    return rc;
}

int
apy_ipy_late_futures(PyObject *mod, PyObject *filename, int *flags)
{
    PyObject *ast = PyImport_ImportModule("ast");
    PyObject *body = ast != NULL ? PyObject_GetAttrString(mod, "body")
                                 : NULL;
    int rc = body != NULL && PyList_Check(body) ? 0 : -1;
    if (rc < 0 && body != NULL) {
        PyErr_SetString(PyExc_TypeError, "a module's body is a list");
    }
    /* Those CPython takes: after a docstring, before anything else. */
    Py_ssize_t i = 0, n = rc == 0 ? PyList_GET_SIZE(body) : 0;
    if (i < n && is_docstring(ast, PyList_GET_ITEM(body, i))) {
        i++;
    }
    while (i < n && is_future(ast, PyList_GET_ITEM(body, i))) {
        i++;
    }
    for (; rc == 0 && i < n; i++) {
        if (is_future(ast, PyList_GET_ITEM(body, i))) {
            rc = hoist(ast, body, i, filename, flags);
        }
    }
    Py_XDECREF(body);
    Py_XDECREF(ast);
    return rc;
}
