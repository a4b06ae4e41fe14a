/* SPDX-License-Identifier: MIT */
/* The recorder object a run's builtins reach (run->runtime): its type,
 * with display.c's methods, and the types of the tee streams and of
 * %%capture's object (outputs.c); made and released for a run here. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "internal.h"

static int
runtime_traverse(ApyNbRuntimeObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->outputs);
    Py_VISIT(self->parts);
    Py_VISIT(self->big);
    Py_VISIT(self->capture);
    Py_VISIT(self->real[0]);
    Py_VISIT(self->real[1]);
    Py_VISIT(self->live[0]);
    Py_VISIT(self->live[1]);
    Py_VISIT(self->display_ids);
    Py_VISIT(self->ipy_handle);
    return 0;
}

static int
runtime_clear(ApyNbRuntimeObject *self)
{
    Py_CLEAR(self->outputs);
    Py_CLEAR(self->parts);
    Py_CLEAR(self->big);
    Py_CLEAR(self->capture);
    Py_CLEAR(self->real[0]);
    Py_CLEAR(self->real[1]);
    Py_CLEAR(self->live[0]);
    Py_CLEAR(self->live[1]);
    Py_CLEAR(self->display_ids);
    Py_CLEAR(self->ipy_handle);
    return 0;
}

static void
runtime_dealloc(ApyNbRuntimeObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    runtime_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot runtime_slots[] = {
    {Py_tp_methods, apy__nbrun_display_methods},
    {Py_tp_traverse, runtime_traverse},
    {Py_tp_clear, runtime_clear},
    {Py_tp_dealloc, runtime_dealloc},
    {0, NULL},
};

static PyType_Spec runtime_spec = {
    .name = "apyrun.notebook.Runtime",
    .basicsize = sizeof(ApyNbRuntimeObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = runtime_slots,
};

int
apy__nbrun_outputs_init(apy_nbrun_t *run)
{
    run->runtime_type = (PyTypeObject *)PyType_FromSpec(&runtime_spec);
    run->stream_type =
        (PyTypeObject *)PyType_FromSpec(&apy__nbrun_stream_spec);
    run->captured_type =
        (PyTypeObject *)PyType_FromSpec(&apy__nbrun_captured_spec);
    if (run->runtime_type == NULL || run->stream_type == NULL
        || run->captured_type == NULL) {
        return -1;
    }
    ApyNbRuntimeObject *rt = PyObject_GC_New(ApyNbRuntimeObject,
                                             run->runtime_type);
    if (rt == NULL) {
        return -1;
    }
    rt->run = run;
    rt->outputs = NULL;
    rt->parts = PyList_New(0);
    rt->parts_len = 0;
    rt->big = NULL;
    rt->part_name = -1;
    rt->clear_pending = 0;
    rt->capture = NULL;
    rt->real[0] = rt->real[1] = NULL;
    rt->live[0] = rt->live[1] = NULL;
    rt->display_ids = PyDict_New();
    rt->ipy_handle = NULL;
    PyObject_GC_Track(rt);
    run->runtime = (PyObject *)rt;
    if (rt->parts == NULL || rt->display_ids == NULL) {
        return -1;
    }
    return 0;
}

void
apy__nbrun_outputs_fini(apy_nbrun_t *run)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    if (rt != NULL) {
        while (rt->capture != NULL) {
            PyObject *cap = apy__nbrun_capture_end(run);
            Py_XDECREF(cap);
            PyErr_Clear();
        }
        apy__nbrun_streams_uninstall(run);
        rt->run = NULL;
        Py_CLEAR(rt->outputs);
    }
    Py_CLEAR(run->runtime);
    Py_CLEAR(run->runtime_type);
    Py_CLEAR(run->stream_type);
    Py_CLEAR(run->captured_type);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

