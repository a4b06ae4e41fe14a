/* SPDX-License-Identifier: MIT */
/* The messages a program sends as a kernel would (through
 * get_ipython().kernel.session.send, or the shell's display_pub),
 * recorded as nbclient records a kernel's IOPub messages
 * (nbclient/client.py, process_message() and output()). apyrun runs no
 * kernel: what the frontend would get becomes the cell's outputs. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "internal.h"

/* content[key] when it is a dict (borrowed), else a new empty dict kept
 * in *own (the caller releases it). NULL with an exception set when
 * content[key] is there and not a dict. */
static PyObject *
dict_item(PyObject *content, const char *key, PyObject **own)
{
    PyObject *v = PyDict_GetItemString(content, key); /* borrowed */
    if (v == NULL || v == Py_None) {
        *own = PyDict_New();
        return *own;
    }
    if (!PyDict_Check(v)) {
        PyErr_Format(PyExc_TypeError,
                     "a message's %s must be a dict, not %.100s", key,
                     Py_TYPE(v)->tp_name);
        return NULL;
    }
    return v;
}

/* transient["display_id"] as a str (new), or NULL: none (no exception)
 * or an error. */
static PyObject *
display_id_of(PyObject *content)
{
    PyObject *own = NULL;
    PyObject *transient = dict_item(content, "transient", &own);
    PyObject *id = transient != NULL
                       ? PyDict_GetItemString(transient, "display_id")
                       : NULL;
    id = id != NULL && id != Py_None ? PyObject_Str(id) : NULL;
    Py_XDECREF(own);
    return id;
}

/* display_data, update_display_data and execute_result (count: the
 * content's execution_count for it, else -1). 0 or -1. */
static int
rich_message(ApyNbRuntimeObject *rt, const char *msg_type,
             PyObject *content)
{
    PyObject *own_data = NULL, *own_md = NULL, *out = NULL;
    int rc = -1;
    PyObject *data = dict_item(content, "data", &own_data);
    PyObject *md = data != NULL ? dict_item(content, "metadata", &own_md)
                                : NULL;
    PyObject *id = md != NULL ? display_id_of(content) : NULL;
    if (md == NULL || PyErr_Occurred()) {
        goto done;
    }
    if (strcmp(msg_type, "update_display_data") == 0) {
        /* Only updates: nbclient appends no output for it. */
        rc = id == NULL || rt->capture != NULL
                 ? 0
                 : apy__nbrun_update_display_id(rt, id, data, md);
        goto done;
    }
    if (strcmp(msg_type, "execute_result") == 0) {
        PyObject *count = PyDict_GetItemString(content, "execution_count");
        out = Py_BuildValue("{sssOsOsO}", "output_type", "execute_result",
                            "execution_count",
                            count != NULL ? count : Py_None, "data", data,
                            "metadata", md);
    } else {
        out = Py_BuildValue("{sssOsO}", "output_type", "display_data",
                            "data", data, "metadata", md);
    }
    rc = out != NULL ? apy__nbrun_show_output(rt, out, id) : -1;
    if (rc == 0) {
        /* Nothing records: its text, as a terminal's IPython shows it. */
        PyObject *plain = PyDict_GetItemString(data, "text/plain");
        PyObject *so = PySys_GetObject("stdout"); /* borrowed */
        if (plain != NULL && so != NULL && so != Py_None
            && (PyFile_WriteObject(plain, so, Py_PRINT_RAW) < 0
                || PyFile_WriteString("\n", so) < 0)) {
            rc = -1;
        }
    }
    rc = rc < 0 ? -1 : 0;
done:
    Py_XDECREF(out);
    Py_XDECREF(id);
    Py_XDECREF(own_md);
    Py_XDECREF(own_data);
    return rc;
}

/* stream: {"name": "stdout" | "stderr", "text"}; shown on apyrun's
 * terminal as a print() is, and recorded. 0 or -1. */
static int
stream_message(apy_nbrun_t *run, PyObject *content)
{
    PyObject *name = PyDict_GetItemString(content, "name");
    PyObject *text = PyDict_GetItemString(content, "text");
    if (name == NULL || text == NULL || !PyUnicode_Check(name)
        || !PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError,
                        "a stream message needs str name and text");
        return -1;
    }
    int which = PyUnicode_CompareWithASCIIString(name, "stderr") == 0
                    ? APY_NBRUN_STDERR
                    : APY_NBRUN_STDOUT;
    const char *s = PyUnicode_AsUTF8(text);
    if (s == NULL) {
        return -1;
    }
    apy__nbrun_write_real(run, which, s);
    return apy__nbrun_record_fd_text(run, which, text);
}

/* error: {"ename", "evalue", "traceback": [str]}, an output of its own
 * (the cell goes on: no exception was raised). 0 or -1. */
static int
error_message(ApyNbRuntimeObject *rt, PyObject *content)
{
    PyObject *ename = PyDict_GetItemString(content, "ename");
    PyObject *evalue = PyDict_GetItemString(content, "evalue");
    PyObject *tb = PyDict_GetItemString(content, "traceback");
    if (ename == NULL || evalue == NULL || !PyUnicode_Check(ename)
        || !PyUnicode_Check(evalue)) {
        PyErr_SetString(PyExc_TypeError,
                        "an error message needs str ename and evalue");
        return -1;
    }
    PyObject *lines = tb != NULL && PyList_Check(tb) ? PySequence_List(tb)
                                                     : PyList_New(0);
    /* On apyrun's terminal too, as the cell's own errors are. */
    PyObject *nl = lines != NULL ? PyUnicode_FromString("\n") : NULL;
    PyObject *text = nl != NULL ? PyUnicode_Join(nl, lines) : NULL;
    const char *s = text != NULL ? PyUnicode_AsUTF8(text) : NULL;
    if (s != NULL) {
        apy__nbrun_write_real(rt->run, APY_NBRUN_STDERR, s);
        apy__nbrun_write_real(rt->run, APY_NBRUN_STDERR, "\n");
    }
    Py_XDECREF(text);
    Py_XDECREF(nl);
    PyErr_Clear(); /* a traceback of no text is recorded as it is */
    PyObject *out = lines != NULL
                        ? Py_BuildValue("{sssOsOsO}", "output_type", "error",
                                        "ename", ename, "evalue", evalue,
                                        "traceback", lines)
                        : NULL;
    Py_XDECREF(lines);
    int rc = out != NULL ? apy__nbrun_append_output(rt, out) : -1;
    Py_XDECREF(out);
    return rc < 0 ? -1 : 0;
}

int
apy__nbrun_message(apy_nbrun_t *run, const char *msg_type,
                   PyObject *content)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    if (!PyDict_Check(content)) {
        PyErr_Format(PyExc_TypeError,
                     "a message's content must be a dict, not %.100s",
                     Py_TYPE(content)->tp_name);
        return -1;
    }
    if (strcmp(msg_type, "display_data") == 0
        || strcmp(msg_type, "update_display_data") == 0
        || strcmp(msg_type, "execute_result") == 0) {
        return rich_message(rt, msg_type, content);
    }
    if (strcmp(msg_type, "stream") == 0) {
        return stream_message(run, content);
    }
    if (strcmp(msg_type, "error") == 0) {
        return error_message(rt, content);
    }
    if (strcmp(msg_type, "clear_output") == 0) {
        PyObject *wait = PyDict_GetItemString(content, "wait");
        int w = wait != NULL ? PyObject_IsTrue(wait) : 0;
        if (w < 0) {
            return -1;
        }
        apy__nbrun_clear_output(rt, w);
        return 0;
    }
    return 0; /* comm_*, status, execute_input: no output */
}
