/* SPDX-License-Identifier: MIT */
/* ipykernel's own Kernel, for a program that imports ipykernel in a run:
 * ipykernel.comm.Comm() (bokeh's, a widget's) finds its kernel as
 * Kernel.instance(), whose session and comm manager it uses. Once
 * ipykernel.kernelbase is imported (the run's import hook says so),
 * that instance is made: a Kernel subclass whose session is a
 * jupyter_client Session subclass sending through kernel.c (so comm
 * messages go where a frontend's would: nowhere, as nbclient records
 * none), its parent the running cell's, its comm_manager ipykernel's
 * CommManager, made when first asked (ipykernel.comm is still being
 * imported when kernelbase is). It becomes get_ipython().kernel. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "internal.h"

/* send(session, stream, msg_or_type, ...), the Session subclass's. */
static PyObject *
ipk_send(ApyIpyMagicsObject *self, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "send() needs its session");
        return NULL;
    }
    PyObject *rest = PyTuple_GetSlice(args, 1, PY_SSIZE_T_MAX);
    PyObject *r = rest != NULL ? apy__ipy_kernel_send(self, rest, kwargs)
                               : NULL;
    Py_XDECREF(rest);
    return r;
}

/* get_parent(kernel, channel="shell"): the running cell's request. */
static PyObject *
ipk_get_parent(ApyIpyMagicsObject *self, PyObject *args)
{
    if (PyTuple_GET_SIZE(args) < 1 || PyTuple_GET_SIZE(args) > 2) {
        PyErr_SetString(PyExc_TypeError, "get_parent(channel='shell')");
        return NULL;
    }
    return Py_XNewRef(apy__ipy_kernel_parent(self));
}

/* The comm_manager property's getter: ipykernel's CommManager for the
 * kernel, made on the first call. */
static PyObject *
ipk_comm_manager(PyObject *self, PyObject *kernel)
{
    (void)self;
    PyObject *cm = PyObject_GetAttrString(kernel, "_apyrun_comm_manager");
    if (cm != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return cm;
    }
    PyErr_Clear();
    PyObject *mod = PyImport_ImportModule("ipykernel.comm");
    PyObject *cls = mod != NULL ? PyObject_GetAttrString(mod, "CommManager")
                                : NULL;
    Py_XDECREF(mod);
    PyObject *kw = cls != NULL ? Py_BuildValue("{sO}", "kernel", kernel)
                               : NULL;
    PyObject *none[1];
    cm = kw != NULL ? PyObject_VectorcallDict(cls, none, 0, kw) : NULL;
    Py_XDECREF(kw);
    Py_XDECREF(cls);
    if (cm != NULL
        && PyObject_SetAttrString(kernel, "_apyrun_comm_manager", cm) < 0) {
        Py_CLEAR(cm);
    }
    return cm;
}

static PyMethodDef ipk_defs[] = {
    {"send", (PyCFunction)(void (*)(void))ipk_send,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"get_parent", (PyCFunction)ipk_get_parent, METH_VARARGS, NULL},
    {"comm_manager", (PyCFunction)ipk_comm_manager, METH_O,
     "ipykernel's CommManager of the kernel"},
};

/* type(name, (base,), {key: value}) in module apyrun. New, or NULL. */
static PyObject *
subclass(const char *name, PyObject *base, const char *key,
         PyObject *value)
{
    PyObject *ns = Py_BuildValue("{sssO}", "__module__", "apyrun", key,
                                 value);
    PyObject *cls = ns != NULL ? PyObject_CallFunction(
                                     (PyObject *)&PyType_Type, "s(O)O",
                                     name, base, ns)
                               : NULL;
    Py_XDECREF(ns);
    return cls;
}

/* An instance method of def bound to self. New, or NULL. */
static PyObject *
method(PyMethodDef *def, PyObject *self)
{
    PyObject *f = PyCFunction_New(def, self);
    PyObject *m = f != NULL ? PyInstanceMethod_New(f) : NULL;
    Py_XDECREF(f);
    return m;
}

int
apy_ipy_kernel_module(PyObject *magics, PyObject *kernelbase)
{
    ApyIpyMagicsObject *self = (ApyIpyMagicsObject *)magics;
    PyObject *kernel = PyObject_GetAttrString(kernelbase, "Kernel");
    PyObject *made = kernel != NULL
                         ? PyObject_CallMethod(kernel, "initialized", NULL)
                         : NULL;
    int have = made != NULL ? PyObject_IsTrue(made) : -1;
    Py_XDECREF(made);
    if (have != 0 || self->kernel != NULL) {
        /* A kernel is running (apyrun inside one), or ours is made. */
        Py_XDECREF(kernel);
        return have < 0 ? -1 : 0;
    }
    PyObject *scls = NULL, *kcls = NULL, *session = NULL, *inst = NULL;
    PyObject *m = NULL, *get = NULL, *kw = NULL, *k = NULL;
    PyObject *base = PyImport_ImportModule("jupyter_client.session");
    int rc = -1;
    PyObject *sbase = base != NULL ? PyObject_GetAttrString(base, "Session")
                                   : NULL;
    m = sbase != NULL ? method(&ipk_defs[0], magics) : NULL;
    scls = m != NULL ? subclass("ApyrunSession", sbase, "send", m) : NULL;
    Py_CLEAR(m);
    session = scls != NULL ? PyObject_CallNoArgs(scls) : NULL;
    m = session != NULL ? method(&ipk_defs[1], magics) : NULL;
    kcls = m != NULL ? subclass("ApyrunKernel", kernel, "get_parent", m)
                     : NULL;
    get = kcls != NULL ? PyCFunction_New(&ipk_defs[2], NULL) : NULL;
    PyObject *prop = get != NULL ? PyObject_CallOneArg(
                                       (PyObject *)&PyProperty_Type, get)
                                 : NULL;
    if (prop == NULL
        || PyObject_SetAttrString(kcls, "comm_manager", prop) < 0) {
        Py_XDECREF(prop);
        goto done;
    }
    Py_DECREF(prop);
    inst = PyObject_GetAttrString(kcls, "instance");
    kw = inst != NULL ? Py_BuildValue("{sOss}", "session", session,
                                      "iopub_socket", "iopub")
                      : NULL;
    PyObject *none[1];
    k = kw != NULL ? PyObject_VectorcallDict(inst, none, 0, kw) : NULL;
    if (k == NULL) {
        goto done;
    }
    self->kernel = Py_NewRef(k);
    rc = self->shell != NULL
             ? PyObject_SetAttrString(self->shell, "kernel", k)
             : 0;
done:
    Py_XDECREF(k);
    Py_XDECREF(kw);
    Py_XDECREF(inst);
    Py_XDECREF(get);
    Py_XDECREF(kcls);
    Py_XDECREF(m);
    Py_XDECREF(session);
    Py_XDECREF(scls);
    Py_XDECREF(sbase);
    Py_XDECREF(base);
    Py_XDECREF(kernel);
    return rc;
}
