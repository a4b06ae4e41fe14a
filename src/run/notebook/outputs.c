/* SPDX-License-Identifier: MIT */
/* The recorder: the per-cell output list, the tee streams that keep output
 * streaming live to the terminal while it is recorded (consecutive text of
 * one stream merged, in order), %%capture, and the nbformat JSON of a
 * cell's outputs. It must not decide what runs; display.c formats objects,
 * cells.c runs code. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "internal.h"

/* A tee: sys.stdout or sys.stderr while the notebook runs. */
typedef struct {
    PyObject_HEAD
    PyObject *runtime; /* ApyNbRuntimeObject */
    int which;         /* APY_NBRUN_STDOUT or APY_NBRUN_STDERR */
    PyObject *target;  /* the stream written through to */
} ApyNbStreamObject;

/* What a %%capture took: the object its variable is bound to. */
typedef struct {
    PyObject_HEAD
    PyObject *parts[2];     /* pending text per stream, lists of str */
    PyObject *text[2];      /* stdout, stderr once the capture ended */
    PyObject *outputs;      /* list of display_data dicts */
    int take[2];            /* which streams are captured */
    int take_displays;
    PyObject *prev;         /* the enclosing capture, or NULL */
    PyObject *saved[2];     /* sys.stdout/err to restore, or NULL */
    PyObject *runtime;      /* for show(); may be detached */
} ApyNbCapturedObject;

static const char *const stream_names[2] = {"stdout", "stderr"};

/* ---- recording ---- */

#define BIG_TEXT APY_NBRUN_BIG_TEXT
#define BIG_CAPSULE "apyrun.nbrun.stream"

static void
big_capsule_free(PyObject *capsule)
{
    apy_nb_stream_unref(PyCapsule_GetPointer(capsule, BIG_CAPSULE));
}

PyObject *
apy__nbrun_big_capsule(apy_nb_stream_t *st)
{
    PyObject *capsule = PyCapsule_New(st, BIG_CAPSULE, big_capsule_free);
    if (capsule == NULL) {
        apy_nb_stream_unref(st);
    }
    return capsule;
}

apy_nb_stream_t *
apy__nbrun_big_stream(PyObject *obj)
{
    if (!PyCapsule_IsValid(obj, BIG_CAPSULE)) {
        return NULL;
    }
    return PyCapsule_GetPointer(obj, BIG_CAPSULE);
}

/* Appends text to the big stream. 0 or -1 with an exception set. */
static int
big_put(ApyNbRuntimeObject *rt, PyObject *text)
{
    /* Lone surrogates cannot be UTF-8; nbformat's JSON could not hold
     * them either. */
    PyObject *bytes = PyUnicode_AsEncodedString(text, "utf-8", "replace");
    if (bytes == NULL) {
        return -1;
    }
    int rc = apy_nb_stream_put(apy__nbrun_big_stream(rt->big),
                               PyBytes_AS_STRING(bytes),
                               (size_t)PyBytes_GET_SIZE(bytes));
    Py_DECREF(bytes);
    if (rc < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* The pending text grew past BIG_TEXT: moves it into a new big stream,
 * which gets the rest of this output's text. 0 or -1. */
static int
start_big(ApyNbRuntimeObject *rt)
{
    apy_nb_stream_t *st = apy_nb_stream_new(rt->run ? rt->run->spill_dir
                                                    : NULL);
    if (st == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    rt->big = PyCapsule_New(st, BIG_CAPSULE, big_capsule_free);
    if (rt->big == NULL) {
        apy_nb_stream_unref(st);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rt->parts); i++) {
        if (big_put(rt, PyList_GET_ITEM(rt->parts, i)) < 0) {
            return -1;
        }
    }
    rt->parts_len = 0;
    return PyList_SetSlice(rt->parts, 0, PyList_GET_SIZE(rt->parts), NULL);
}

/* Forgets the pending text. */
static void
drop_parts(ApyNbRuntimeObject *rt)
{
    if (rt->parts != NULL) {
        PyList_SetSlice(rt->parts, 0, PyList_GET_SIZE(rt->parts), NULL);
    }
    rt->parts_len = 0;
    Py_CLEAR(rt->big);
}

/* The strings of list parts joined: a new reference. */
static PyObject *
join_text(PyObject *parts)
{
    PyObject *empty = PyUnicode_FromString("");
    if (empty == NULL) {
        return NULL;
    }
    PyObject *text = PyUnicode_Join(empty, parts);
    Py_DECREF(empty);
    return text;
}

/* Turns pending stream text into one stream output. 0 or -1. */
static int
flush_parts(ApyNbRuntimeObject *rt)
{
    Py_ssize_t n = rt->parts != NULL ? PyList_GET_SIZE(rt->parts) : 0;
    if ((n == 0 && rt->big == NULL) || rt->part_name < 0) {
        return 0;
    }
    PyObject *text;
    if (rt->big != NULL) {
        if (apy_nb_stream_finish(apy__nbrun_big_stream(rt->big)) < 0) {
            PyErr_NoMemory();
            return -1;
        }
        text = rt->big;
        rt->big = NULL;
    } else {
        text = join_text(rt->parts);
        if (text == NULL) {
            return -1;
        }
    }
    PyObject *out = Py_BuildValue("{sssssN}", "output_type", "stream",
                                  "name", stream_names[rt->part_name],
                                  "text", text);
    if (out == NULL) {
        return -1;
    }
    int rc = -1;
    if (PyList_SetSlice(rt->parts, 0, n, NULL) == 0) {
        rt->parts_len = 0;
        rc = rt->outputs != NULL ? PyList_Append(rt->outputs, out) : 0;
    }
    Py_DECREF(out);
    return rc;
}

void
apy__nbrun_clear_output(ApyNbRuntimeObject *rt, int wait)
{
    if (wait) {
        rt->clear_pending = 1;
        return;
    }
    rt->clear_pending = 0;
    drop_parts(rt);
    rt->part_name = -1;
    if (rt->outputs != NULL) {
        PyList_SetSlice(rt->outputs, 0, PyList_GET_SIZE(rt->outputs), NULL);
    }
    PyErr_Clear();
}

int
apy__nbrun_append_output(ApyNbRuntimeObject *rt, PyObject *output)
{
    ApyNbCapturedObject *cap = (ApyNbCapturedObject *)rt->capture;
    if (cap != NULL && cap->take_displays) {
        return PyList_Append(cap->outputs, output) < 0 ? -1 : 1;
    }
    if (rt->outputs == NULL) {
        return 0;
    }
    if (rt->run != NULL) {
        apy__nbrun_fdcap_sync(rt->run, 0);
    }
    if (rt->clear_pending) {
        apy__nbrun_clear_output(rt, 0);
    }
    if (flush_parts(rt) < 0) {
        return -1;
    }
    rt->part_name = -1;
    return PyList_Append(rt->outputs, output) < 0 ? -1 : 1;
}

/* Records stream text for the cell. 0 or -1. */
static int
record_stream(ApyNbRuntimeObject *rt, int which, PyObject *text)
{
    if (rt->outputs == NULL || PyUnicode_GET_LENGTH(text) == 0) {
        return 0;
    }
    if (rt->clear_pending) {
        apy__nbrun_clear_output(rt, 0);
    }
    if (rt->part_name != which) {
        if (flush_parts(rt) < 0) {
            return -1;
        }
        rt->part_name = which;
    }
    if (rt->big != NULL) {
        return big_put(rt, text);
    }
    if (PyList_Append(rt->parts, text) < 0) {
        return -1;
    }
    rt->parts_len += PyUnicode_GET_LENGTH(text);
    return rt->parts_len > BIG_TEXT ? start_big(rt) : 0;
}

int
apy__nbrun_record_fd_text(apy_nbrun_t *run, int which, PyObject *text)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    return rt != NULL ? record_stream(rt, which, text) : 0;
}

int
apy__nbrun_record_begin(apy_nbrun_t *run)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    rt->clear_pending = 0;
    rt->part_name = -1;
    drop_parts(rt);
    Py_XSETREF(rt->outputs, run->recording ? PyList_New(0) : NULL);
    if (run->recording && rt->outputs == NULL) {
        return -1;
    }
    return 0;
}

PyObject *
apy__nbrun_record_end(apy_nbrun_t *run)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    /* The cell's own exception, if any, must survive the flush. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    apy__nbrun_fdcap_sync(run, 1);
    int rc = flush_parts(rt);
    rt->part_name = -1;
    PyObject *outputs = rt->outputs;
    rt->outputs = NULL;
    if (rc < 0) {
        Py_XDECREF(outputs);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return NULL;
    }
    PyErr_Restore(type, value, tb);
    return outputs != NULL ? outputs : PyList_New(0);
}

int
apy__nbrun_record_result(apy_nbrun_t *run, PyObject *value)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    if (value == Py_None) {
        return 0;
    }
    if (rt->outputs == NULL) {
        /* Nothing records the result; one that displays itself does. */
        apy__nbrun_self_display(run, value);
        return 0;
    }
    PyObject *bundle = apy__nbrun_format(run, value);
    if (bundle == NULL) {
        return apy__nbrun_format_failed(run);
    }
    if (bundle == Py_None) {
        Py_DECREF(bundle); /* it displayed itself: no result */
        return 0;
    }
    PyObject *out = Py_BuildValue("{sssisOsO}", "output_type",
                                  "execute_result", "execution_count",
                                  run->count, "data",
                                  PyTuple_GET_ITEM(bundle, 0), "metadata",
                                  PyTuple_GET_ITEM(bundle, 1));
    Py_DECREF(bundle);
    if (out == NULL) {
        return -1;
    }
    int rc = apy__nbrun_append_output(rt, out);
    Py_DECREF(out);
    return rc < 0 ? -1 : 0;
}

/* {"output_type": "error", "ename", "evalue", "traceback": lines}: a new
 * reference. */
static PyObject *
error_output(PyObject *exc, PyObject *lines)
{
    PyObject *out = NULL;
    PyObject *evalue = NULL;
    PyObject *ename = PyObject_GetAttrString((PyObject *)Py_TYPE(exc),
                                             "__name__");
    if (ename == NULL) {
        goto error;
    }
    evalue = PyObject_Str(exc);
    if (evalue == NULL) {
        goto error;
    }
    out = Py_BuildValue("{sssOsOsO}", "output_type", "error", "ename", ename,
                        "evalue", evalue, "traceback", lines);
error:
    Py_XDECREF(evalue);
    Py_XDECREF(ename);
    return out;
}

int
apy__nbrun_record_error(apy_nbrun_t *run, PyObject *exc, PyObject *lines)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    if (rt->outputs == NULL) {
        return 0;
    }
    PyObject *out = error_output(exc, lines);
    if (out == NULL) {
        return -1;
    }
    /* An error ends the cell: a capture still open is not where it goes. */
    apy__nbrun_fdcap_sync(run, 1);
    if (flush_parts(rt) < 0) {
        Py_DECREF(out);
        return -1;
    }
    rt->part_name = -1;
    int rc = PyList_Append(rt->outputs, out);
    Py_DECREF(out);
    return rc;
}

void
apy__nbrun_write_real(apy_nbrun_t *run, int which, const char *text)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    ApyNbRuntimeObject *rt = run != NULL
                                 ? (ApyNbRuntimeObject *)run->runtime : NULL;
    PyObject *stream = NULL;
    if (rt != NULL) {
        stream = rt->live[which] != NULL ? rt->live[which] : rt->real[which];
    }
    if (stream == NULL) {
        stream = PySys_GetObject(stream_names[which]); /* borrowed */
    }
    if (stream == NULL || stream == Py_None) {
        fputs(text, which == APY_NBRUN_STDOUT ? stdout : stderr);
    } else {
        PyObject *r = PyObject_CallMethod(stream, "write", "s", text);
        Py_XDECREF(r);
        r = PyObject_CallMethod(stream, "flush", NULL);
        Py_XDECREF(r);
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

int
apy__nbrun_mark_dirty(apy_nbrun_t *run, size_t i)
{
    if (run->cells[i].dirty) {
        return 0;
    }
    if (run->ndirty == run->dirty_cap) {
        size_t cap = run->dirty_cap ? 2 * run->dirty_cap : 16;
        size_t *grown = realloc(run->dirty, cap * sizeof(*grown));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        run->dirty = grown;
        run->dirty_cap = cap;
    }
    run->dirty[run->ndirty++] = i;
    run->cells[i].dirty = 1;
    return 0;
}

/* ---- the tee stream ---- */

/* write(text): to the real stream (or the active capture), and into the
 * cell. Returns the length written, or NULL with an exception set. */
static PyObject *
stream_write(ApyNbStreamObject *self, PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        return PyErr_Format(PyExc_TypeError,
                            "write() argument must be str, not %.100s",
                            Py_TYPE(text)->tp_name);
    }
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)self->runtime;
    ApyNbCapturedObject *cap = (ApyNbCapturedObject *)rt->capture;
    if (cap != NULL && cap->take[self->which]) {
        if (PyList_Append(cap->parts[self->which], text) < 0) {
            return NULL;
        }
        return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(text));
    }
    PyObject *r = PyObject_CallMethod(self->target, "write", "O", text);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    if (rt->run != NULL && rt->outputs != NULL) {
        /* What the fds got before this text comes first. */
        apy__nbrun_fdcap_sync(rt->run, 0);
    }
    if (rt->run != NULL && record_stream(rt, self->which, text) < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(text));
}

/* writelines(lines): write() for each. Returns None or NULL. */
static PyObject *
stream_writelines(ApyNbStreamObject *self, PyObject *lines)
{
    PyObject *it = PyObject_GetIter(lines);
    if (it == NULL) {
        return NULL;
    }
    PyObject *line;
    while ((line = PyIter_Next(it)) != NULL) {
        PyObject *r = stream_write(self, line);
        Py_DECREF(line);
        if (r == NULL) {
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* flush(): the real stream's. Returns its result or NULL. */
static PyObject *
stream_flush(ApyNbStreamObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyObject_CallMethod(self->target, "flush", NULL);
}

/* Everything else (fileno, isatty, encoding, buffer, ...) is the real
 * stream's, so code that inspects sys.stdout sees the terminal it is. */
static PyObject *
stream_getattro(ApyNbStreamObject *self, PyObject *name)
{
    PyObject *r = PyObject_GenericGetAttr((PyObject *)self, name);
    if (r != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return r;
    }
    PyErr_Clear();
    return PyObject_GetAttr(self->target, name);
}

static int
stream_traverse(ApyNbStreamObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->runtime);
    Py_VISIT(self->target);
    return 0;
}

static int
stream_clear(ApyNbStreamObject *self)
{
    Py_CLEAR(self->runtime);
    Py_CLEAR(self->target);
    return 0;
}

static void
stream_dealloc(ApyNbStreamObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    stream_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef stream_methods[] = {
    {"write", (PyCFunction)stream_write, METH_O,
     "Writes text to the terminal and records it in the cell."},
    {"writelines", (PyCFunction)stream_writelines, METH_O, NULL},
    {"flush", (PyCFunction)stream_flush, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot stream_slots[] = {
    {Py_tp_methods, stream_methods},
    {Py_tp_getattro, stream_getattro},
    {Py_tp_traverse, stream_traverse},
    {Py_tp_clear, stream_clear},
    {Py_tp_dealloc, stream_dealloc},
    {0, NULL},
};

PyType_Spec apy__nbrun_stream_spec = {
    .name = "apyrun.notebook.Stream",
    .basicsize = sizeof(ApyNbStreamObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = stream_slots,
};

/* Returns a new tee stream over target, or NULL with an exception. */
static PyObject *
stream_new(apy_nbrun_t *run, int which, PyObject *target)
{
    ApyNbStreamObject *s = PyObject_GC_New(ApyNbStreamObject,
                                           run->stream_type);
    if (s == NULL) {
        return NULL;
    }
    s->runtime = Py_NewRef(run->runtime);
    s->which = which;
    s->target = Py_NewRef(target);
    PyObject_GC_Track(s);
    return (PyObject *)s;
}

int
apy__nbrun_streams_install(apy_nbrun_t *run)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    for (int i = 0; i < 2; i++) {
        PyObject *cur = PySys_GetObject(stream_names[i]); /* borrowed */
        if (cur == NULL || cur == Py_None) {
            continue;
        }
        /* With fds 1 and 2 captured, the tee writes to the real fd. */
        PyObject *target = rt->live[i] != NULL ? rt->live[i] : cur;
        PyObject *tee = stream_new(run, i, target);
        if (tee == NULL) {
            return -1;
        }
        Py_XSETREF(rt->real[i], Py_NewRef(cur));
        int rc = PySys_SetObject(stream_names[i], tee);
        Py_DECREF(tee);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

void
apy__nbrun_streams_uninstall(apy_nbrun_t *run)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    for (int i = 0; i < 2; i++) {
        PyObject *cur = PySys_GetObject(stream_names[i]); /* borrowed */
        if (rt->real[i] != NULL && cur != NULL
            && Py_IS_TYPE(cur, run->stream_type)) {
            PySys_SetObject(stream_names[i], rt->real[i]);
        }
    }
}

/* ---- %%capture ---- */

/* Writes output's text/plain and a newline to sys.stdout, if it has both.
 * 0 or -1. The write may replace sys.stdout or change output: both are
 * held while it runs. */
static int
echo_plain(PyObject *output)
{
    PyObject *data = PyDict_GetItemString(output, "data"); /* borrowed */
    PyObject *plain = data != NULL && PyDict_Check(data)
                          ? PyDict_GetItemString(data, "text/plain")
                          : NULL; /* borrowed */
    PyObject *stream = PySys_GetObject("stdout"); /* borrowed */
    if (plain == NULL || stream == NULL) {
        return 0;
    }
    int rc = -1;
    Py_INCREF(plain);
    Py_INCREF(stream);
    PyObject *r = PyObject_CallMethod(stream, "write", "O", plain);
    if (r == NULL) {
        goto error;
    }
    Py_DECREF(r);
    r = PyObject_CallMethod(stream, "write", "s", "\n");
    if (r == NULL) {
        goto error;
    }
    Py_DECREF(r);
    rc = 0;
error:
    Py_DECREF(stream);
    Py_DECREF(plain);
    return rc;
}

/* show(): writes the captured text to sys.stdout/sys.stderr and shows
 * the captured outputs again (recorded, or their text printed).
 * Returns None or NULL with an exception set. */
static PyObject *
captured_show(ApyNbCapturedObject *self, PyObject *Py_UNUSED(ignored))
{
    for (int i = 0; i < 2; i++) {
        if (self->text[i] == NULL || PyUnicode_GET_LENGTH(self->text[i])
                                         == 0) {
            continue;
        }
        PyObject *stream = PySys_GetObject(stream_names[i]); /* borrowed */
        if (stream != NULL && stream != Py_None) {
            PyObject *r = PyObject_CallMethod(stream, "write", "O",
                                              self->text[i]);
            if (r == NULL) {
                return NULL;
            }
            Py_DECREF(r);
        }
    }
    Py_ssize_t n = PyList_GET_SIZE(self->outputs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *out = PyList_GET_ITEM(self->outputs, i); /* borrowed */
        ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)self->runtime;
        int rc = rt != NULL && rt->run != NULL
                     ? apy__nbrun_append_output(rt, out) : 0;
        if (rc < 0) {
            return NULL;
        }
        if (rc == 0) {
            /* Nothing records: show its text, as a terminal would. */
            if (echo_plain(out) < 0) {
                return NULL;
            }
        }
    }
    Py_RETURN_NONE;
}

/* The stdout, stderr and outputs attributes: new references. */
static PyObject *
captured_get(ApyNbCapturedObject *self, void *closure)
{
    int which = (int)(Py_intptr_t)closure;
    if (which == 2) {
        return Py_NewRef(self->outputs);
    }
    return self->text[which] != NULL ? Py_NewRef(self->text[which])
                                     : PyUnicode_FromString("");
}

/* Calling the object is show(), as IPython's CapturedIO. */
static PyObject *
captured_call(ApyNbCapturedObject *self, PyObject *args, PyObject *kwargs)
{
    if (!_PyArg_NoKeywords("CapturedIO", kwargs)
        || !_PyArg_NoPositional("CapturedIO", args)) {
        return NULL;
    }
    return captured_show(self, NULL);
}

static int
captured_traverse(ApyNbCapturedObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    for (int i = 0; i < 2; i++) {
        Py_VISIT(self->parts[i]);
        Py_VISIT(self->text[i]);
        Py_VISIT(self->saved[i]);
    }
    Py_VISIT(self->outputs);
    Py_VISIT(self->prev);
    Py_VISIT(self->runtime);
    return 0;
}

static int
captured_clear(ApyNbCapturedObject *self)
{
    for (int i = 0; i < 2; i++) {
        Py_CLEAR(self->parts[i]);
        Py_CLEAR(self->text[i]);
        Py_CLEAR(self->saved[i]);
    }
    Py_CLEAR(self->outputs);
    Py_CLEAR(self->prev);
    Py_CLEAR(self->runtime);
    return 0;
}

static void
captured_dealloc(ApyNbCapturedObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    captured_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef captured_methods[] = {
    {"show", (PyCFunction)captured_show, METH_NOARGS,
     "Writes the captured text and displays the captured outputs."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef captured_getset[] = {
    {"stdout", (getter)captured_get, NULL, "captured standard output",
     (void *)(Py_intptr_t)0},
    {"stderr", (getter)captured_get, NULL, "captured standard error",
     (void *)(Py_intptr_t)1},
    {"outputs", (getter)captured_get, NULL, "captured display outputs",
     (void *)(Py_intptr_t)2},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot captured_slots[] = {
    {Py_tp_methods, captured_methods},
    {Py_tp_getset, captured_getset},
    {Py_tp_call, captured_call},
    {Py_tp_traverse, captured_traverse},
    {Py_tp_clear, captured_clear},
    {Py_tp_dealloc, captured_dealloc},
    {0, NULL},
};

PyType_Spec apy__nbrun_captured_spec = {
    .name = "apyrun.notebook.CapturedIO",
    .basicsize = sizeof(ApyNbCapturedObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = captured_slots,
};

int
apy__nbrun_capture_begin(apy_nbrun_t *run, int out, int err, int displays)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    ApyNbCapturedObject *cap = PyObject_GC_New(ApyNbCapturedObject,
                                               run->captured_type);
    if (cap == NULL) {
        return -1;
    }
    cap->parts[0] = PyList_New(0);
    cap->parts[1] = PyList_New(0);
    cap->text[0] = cap->text[1] = NULL;
    cap->saved[0] = cap->saved[1] = NULL;
    cap->outputs = PyList_New(0);
    cap->take[0] = out;
    cap->take[1] = err;
    cap->take_displays = displays;
    cap->prev = rt->capture; /* the reference moves */
    cap->runtime = Py_NewRef(run->runtime);
    rt->capture = (PyObject *)cap;
    PyObject_GC_Track(cap);
    if (cap->parts[0] == NULL || cap->parts[1] == NULL
        || cap->outputs == NULL) {
        return -1;
    }
    /* Without a recording the tee streams are not in place; put them
     * there for the capture's duration. */
    for (int i = 0; i < 2; i++) {
        PyObject *cur = PySys_GetObject(stream_names[i]); /* borrowed */
        if (cur == NULL || cur == Py_None
            || Py_IS_TYPE(cur, run->stream_type)) {
            continue;
        }
        PyObject *tee = stream_new(run, i, cur);
        if (tee == NULL) {
            return -1;
        }
        cap->saved[i] = Py_NewRef(cur);
        int rc = PySys_SetObject(stream_names[i], tee);
        Py_DECREF(tee);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

PyObject *
apy__nbrun_capture_end(apy_nbrun_t *run)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    ApyNbCapturedObject *cap = (ApyNbCapturedObject *)rt->capture;
    if (cap == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no capture is active");
        return NULL;
    }
    rt->capture = cap->prev; /* the reference moves back */
    cap->prev = NULL;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (cap->saved[i] != NULL
            && PySys_SetObject(stream_names[i], cap->saved[i]) < 0) {
            rc = -1;
        }
        Py_CLEAR(cap->saved[i]);
        cap->text[i] = join_text(cap->parts[i]);
        if (cap->text[i] == NULL) {
            rc = -1;
        }
    }
    if (type != NULL) {
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        Py_DECREF(cap);
        return NULL;
    }
    if (rc < 0) {
        Py_DECREF(cap);
        return NULL;
    }
    return (PyObject *)cap;
}


/* 1 if exc is IPython's UsageError (a magic misused or unknown); IPython
 * is not imported for it. */
static int
usage_error(PyObject *exc)
{
    PyObject *name = PyUnicode_FromString("IPython.core.error");
    PyObject *mod = name != NULL ? PyImport_GetModule(name) : NULL;
    Py_XDECREF(name);
    PyObject *cls = mod != NULL ? PyObject_GetAttrString(mod, "UsageError")
                                : NULL;
    int is = cls != NULL && PyType_Check(cls)
             && PyObject_TypeCheck(exc, (PyTypeObject *)cls);
    Py_XDECREF(cls);
    Py_XDECREF(mod);
    PyErr_Clear();
    return is;
}

/* IPython's show_usage_error: "UsageError: message" on sys.stderr, so
 * that a run records it as a kernel does, as stderr and no traceback.
 * 0, or -1 (nothing shown). */
static int
show_usage_error(PyObject *exc)
{
    PyObject *err = PySys_GetObject("stderr"); /* borrowed */
    PyObject *text = err != NULL && err != Py_None
                         ? PyUnicode_FromFormat("UsageError: %S\n", exc)
                         : NULL;
    int rc = text != NULL ? PyFile_WriteObject(text, err, Py_PRINT_RAW) : -1;
    Py_XDECREF(text);
    PyErr_Clear();
    return rc;
}

PyObject *
apy__nbrun_show_exception(apy_nbrun_t *run, PyObject **lines_out)
{
    PyObject *type, *value, *tb, *traceback, *lines = NULL, *empty = NULL;
    PyObject *text = NULL;
    const char *utf8 = NULL;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value == NULL) {
        Py_XDECREF(type);
        Py_XDECREF(tb);
        return NULL;
    }
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    /* sys.last_type, last_value, last_traceback, as IPython's
     * showtraceback and python's REPL set them (%debug, pdb.pm()). */
    if (PySys_SetObject("last_type", type) < 0
        || PySys_SetObject("last_value", value) < 0
        || PySys_SetObject("last_traceback", tb != NULL ? tb : Py_None)
               < 0) {
        PyErr_Clear();
    }
    if (usage_error(value) && show_usage_error(value) == 0) {
        if (lines_out != NULL) {
            /* The one line, for the report's reason. */
            *lines_out = Py_BuildValue("[N]", PyUnicode_FromFormat(
                                                  "UsageError: %S\n", value));
            PyErr_Clear();
        }
        Py_XDECREF(type);
        Py_XDECREF(tb);
        return value;
    }
    traceback = PyImport_ImportModule("traceback");
    if (traceback != NULL) {
        lines = PyObject_CallMethod(traceback, "format_exception", "O",
                                    value);
    }
    empty = lines != NULL ? PyUnicode_FromString("") : NULL;
    text = empty != NULL ? PyUnicode_Join(empty, lines) : NULL;
    utf8 = text != NULL ? PyUnicode_AsUTF8(text) : NULL;
    PyErr_Clear();
    if (utf8 != NULL) {
        /* What the cell printed comes first. */
        PyObject *out = PySys_GetObject("stdout"); /* borrowed */
        if (out != NULL && out != Py_None) {
            PyObject *r = PyObject_CallMethod(out, "flush", NULL);
            Py_XDECREF(r);
        }
        PyErr_Clear();
        apy__nbrun_write_real(run, APY_NBRUN_STDERR, utf8);
    } else {
        /* The traceback module failed: python's own printer still tells
         * what happened. */
        PyErr_Restore(Py_NewRef(type), Py_NewRef(value), Py_XNewRef(tb));
        PyErr_Print();
    }
    if (lines != NULL && apy__nbrun_record_error(run, value, lines) < 0) {
        PyErr_Clear();
    }
    if (lines_out != NULL) {
        *lines_out = utf8 != NULL ? Py_NewRef(lines) : NULL;
    }
    Py_XDECREF(text);
    Py_XDECREF(empty);
    Py_XDECREF(lines);
    Py_XDECREF(traceback);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    PyErr_Clear();
    return value;
}

int
apy__nbrun_format_failed(apy_nbrun_t *run)
{
    if (run == NULL || !PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    Py_XDECREF(apy__nbrun_show_exception(run, NULL));
    return 0;
}
