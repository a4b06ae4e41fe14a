/* SPDX-License-Identifier: MIT */
/* What a Jupyter kernel adds to the shell, apyrun running none:
 * get_ipython().kernel (its session.send() records what a kernel would
 * send its frontend, through the host's message), the shell's
 * display_pub (publish_display_data() records, as ipykernel's
 * ZMQDisplayPublisher sends), ipykernel's KernelMagics (%autosave,
 * %clear, %connect_info, %less, %man, %more, %qtconsole) and the
 * storemagic extension a kernel loads (%store). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <string.h>

#include <structmember.h>

#include "internal.h"

/* ---- delivering a message ---- */

/* Writes content[key] (when a str) to sys.<stream>. 0 or -1. */
static int
print_item(PyObject *content, const char *key, const char *stream)
{
    PyObject *v = PyDict_GetItemString(content, key); /* borrowed */
    PyObject *out = PySys_GetObject(stream);          /* borrowed */
    if (v == NULL || !PyUnicode_Check(v) || out == NULL || out == Py_None) {
        return 0;
    }
    return PyFile_WriteObject(v, out, Py_PRINT_RAW);
}

/* A message for the host's frontend; with none, a terminal's view of it
 * (display data's text/plain, stream text). 0 or -1. */
static int
deliver(ApyIpyMagicsObject *self, const char *msg_type, PyObject *content)
{
    if (!PyDict_Check(content)) {
        PyErr_Format(PyExc_TypeError,
                     "a message's content must be a dict, not %.100s",
                     Py_TYPE(content)->tp_name);
        return -1;
    }
    if (self->host != NULL && self->host->message != NULL) {
        return self->host->message(self->ctx, msg_type, content);
    }
    if (strcmp(msg_type, "stream") == 0) {
        PyObject *name = PyDict_GetItemString(content, "name");
        int err = name != NULL && PyUnicode_Check(name)
                  && PyUnicode_CompareWithASCIIString(name, "stderr") == 0;
        return print_item(content, "text", err ? "stderr" : "stdout");
    }
    if (strcmp(msg_type, "error") == 0) {
        /* IPython's own _showtraceback prints the text on stdout. */
        PyObject *tb = PyDict_GetItemString(content, "traceback");
        PyObject *nl = tb != NULL ? PyUnicode_FromString("\n") : NULL;
        PyObject *text = nl != NULL ? PyUnicode_Join(nl, tb) : NULL;
        PyObject *out = PySys_GetObject("stdout"); /* borrowed */
        int rc = text != NULL && out != NULL && out != Py_None
                         && (PyFile_WriteObject(text, out, Py_PRINT_RAW) < 0
                             || PyFile_WriteString("\n", out) < 0)
                     ? -1
                     : 0;
        Py_XDECREF(text);
        Py_XDECREF(nl);
        return tb == NULL || text != NULL ? rc : -1;
    }
    if (strcmp(msg_type, "display_data") == 0
        || strcmp(msg_type, "execute_result") == 0) {
        PyObject *data = PyDict_GetItemString(content, "data");
        if (data == NULL || !PyDict_Check(data)
            || PyDict_GetItemString(data, "text/plain") == NULL) {
            return 0;
        }
        PyObject *out = PySys_GetObject("stdout"); /* borrowed */
        return print_item(data, "text/plain", "stdout") < 0
                       || (out != NULL && out != Py_None
                           && PyFile_WriteString("\n", out) < 0)
                   ? -1
                   : 0;
    }
    return 0;
}

/* ---- the request a cell is ---- */

PyObject *
apy_ipy_new_id(void)
{
    unsigned char raw[16];
    char hex[33];
    if (_PyOS_URandomNonblock(raw, sizeof(raw)) < 0) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    }
    return PyUnicode_FromStringAndSize(hex, 32);
}

/* A new parent header: a kernel's execute_request, its msg_id fresh.
 * NULL with an exception set. */
static PyObject *
new_parent(void)
{
    PyObject *id = apy_ipy_new_id();
    return id != NULL ? Py_BuildValue("{sNssssssss}", "msg_id", id,
                                      "msg_type", "execute_request",
                                      "session", "", "username", "",
                                      "version", "5.3")
                      : NULL;
}

PyObject *
apy__ipy_kernel_parent(ApyIpyMagicsObject *self)
{
    if (self->parent == NULL) {
        self->parent = new_parent();
    }
    return self->parent;
}

int
apy__ipy_kernel_cell(ApyIpyMagicsObject *self)
{
    Py_CLEAR(self->parent);
    if (self->shell == NULL) {
        return 0; /* made with the shell, if ever */
    }
    PyObject *parent = apy__ipy_kernel_parent(self);
    return parent != NULL
               ? PyObject_SetAttrString(self->shell, "parent_header", parent)
               : -1;
}

/* 1 if parent (a message's) is the running cell's: nbclient records
 * only the messages sent in answer to the cell's request. */
static int
is_current(ApyIpyMagicsObject *self, PyObject *parent)
{
    PyObject *cur = self->parent;
    if (cur == NULL || !PyDict_Check(parent)) {
        return 0;
    }
    PyObject *a = PyDict_GetItemString(parent, "msg_id");
    PyObject *b = PyDict_GetItemString(cur, "msg_id");
    int same = a != NULL && b != NULL ? PyObject_RichCompareBool(a, b, Py_EQ)
                                      : 0;
    PyErr_Clear();
    return same == 1;
}

/* ---- the kernel's session ---- */

typedef struct {
    PyObject_HEAD
    PyObject *magics; /* the helper, whose host gets the messages */
} ApyIpySessionObject;

/* send(stream, msg_or_type, content=None, parent=None, ident=None,
 *      buffers=None, track=False, header=None, metadata=None), as
 * jupyter_client's Session: msg_or_type is a message type or a whole
 * message (its header's msg_type and its content are sent). Only a
 * message whose parent is the running cell's request (ip.parent_header,
 * kernel.get_parent()) is recorded, as nbclient records only those.
 * Returns the message, a dict. */
PyObject *
apy__ipy_kernel_send(ApyIpyMagicsObject *m, PyObject *args,
                     PyObject *kwargs)
{
    static char *kwlist[] = {"stream", "msg_or_type", "content", "parent",
                             "ident", "buffers", "track", "header",
                             "metadata", NULL};
    PyObject *stream, *msg, *content = Py_None, *parent = Py_None;
    PyObject *ident = Py_None, *buffers = Py_None, *track = Py_False;
    PyObject *header = Py_None, *metadata = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOOOOOO:send", kwlist,
                                     &stream, &msg, &content, &parent,
                                     &ident, &buffers, &track, &header,
                                     &metadata)) {
        return NULL;
    }
    PyObject *type = msg;
    if (PyDict_Check(msg)) {
        PyObject *h = PyDict_GetItemString(msg, "header");
        type = h != NULL && PyDict_Check(h)
                   ? PyDict_GetItemString(h, "msg_type")
                   : PyDict_GetItemString(msg, "msg_type");
        PyObject *c = PyDict_GetItemString(msg, "content");
        content = c != NULL ? c : content;
    }
    const char *t = type != NULL && PyUnicode_Check(type)
                        ? PyUnicode_AsUTF8(type)
                        : NULL;
    if (t == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError,
                            "send() needs a message type (a str) or a "
                            "message with one");
        }
        return NULL;
    }
    PyObject *body = content == Py_None ? PyDict_New() : Py_NewRef(content);
    if (body == NULL) {
        return NULL;
    }
    PyObject *sent = NULL;
    if (!is_current(m, parent) || deliver(m, t, body) == 0) {
        sent = Py_BuildValue(
            "{s{sO}sOsOsOsO}", "header", "msg_type", type, "msg_type", type,
            "content", body, "parent_header",
            parent == Py_None ? Py_None : parent, "metadata",
            metadata == Py_None ? Py_None : metadata);
    }
    Py_DECREF(body);
    return sent;
}

static PyObject *
session_send(ApyIpySessionObject *self, PyObject *args, PyObject *kwargs)
{
    return apy__ipy_kernel_send((ApyIpyMagicsObject *)self->magics, args,
                                kwargs);
}

static int
session_traverse(ApyIpySessionObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->magics);
    return 0;
}

static int
session_clear(ApyIpySessionObject *self)
{
    Py_CLEAR(self->magics);
    return 0;
}

static void
session_dealloc(ApyIpySessionObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    session_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef session_methods[] = {
    {"send", (PyCFunction)(void (*)(void))session_send,
     METH_VARARGS | METH_KEYWORDS,
     "send(stream, msg_or_type, content=None, ...)\n--\n\n"
     "Records the message as a kernel's frontend would show it."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot session_slots[] = {
    {Py_tp_methods, session_methods},
    {Py_tp_traverse, session_traverse},
    {Py_tp_clear, session_clear},
    {Py_tp_dealloc, session_dealloc},
    {Py_tp_doc, "A kernel session's send(), for a run with no kernel."},
    {0, NULL},
};

static PyType_Spec session_spec = {
    .name = "apyrun.Session",
    .basicsize = sizeof(ApyIpySessionObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = session_slots,
};

/* ---- the kernel ---- */

typedef struct {
    PyObject_HEAD
    PyObject *session;
    PyObject *iopub_socket; /* a token send() is given back */
    PyObject *dict;         /* attributes a program sets */
} ApyIpyKernelObject;

/* get_parent(channel="shell"): the request being answered, the running
 * cell's. */
static PyObject *
kernel_get_parent(ApyIpyKernelObject *self, PyObject *const *args,
                  Py_ssize_t nargs)
{
    (void)args;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "get_parent(channel='shell')");
        return NULL;
    }
    ApyIpySessionObject *session = (ApyIpySessionObject *)self->session;
    PyObject *parent = apy__ipy_kernel_parent(
        (ApyIpyMagicsObject *)session->magics);
    return Py_XNewRef(parent);
}

static int
kernel_traverse(ApyIpyKernelObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->session);
    Py_VISIT(self->iopub_socket);
    Py_VISIT(self->dict);
    return 0;
}

static int
kernel_clear(ApyIpyKernelObject *self)
{
    Py_CLEAR(self->session);
    Py_CLEAR(self->iopub_socket);
    Py_CLEAR(self->dict);
    return 0;
}

static void
kernel_dealloc(ApyIpyKernelObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    kernel_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef kernel_methods[] = {
    {"get_parent", (PyCFunction)(void (*)(void))kernel_get_parent,
     METH_FASTCALL, "The parent header of the request: {} (none)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef kernel_members[] = {
    {"session", T_OBJECT_EX, offsetof(ApyIpyKernelObject, session),
     READONLY, "the session whose send() records messages"},
    {"iopub_socket", T_OBJECT_EX,
     offsetof(ApyIpyKernelObject, iopub_socket), READONLY,
     "what to give send() as its stream"},
    {"__dictoffset__", T_PYSSIZET, offsetof(ApyIpyKernelObject, dict),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot kernel_slots[] = {
    {Py_tp_methods, kernel_methods},
    {Py_tp_members, kernel_members},
    {Py_tp_traverse, kernel_traverse},
    {Py_tp_clear, kernel_clear},
    {Py_tp_dealloc, kernel_dealloc},
    {Py_tp_doc, "What get_ipython().kernel is in apyrun, which runs no "
                "kernel: session.send() records the messages."},
    {0, NULL},
};

static PyType_Spec kernel_spec = {
    .name = "apyrun.Kernel",
    .basicsize = sizeof(ApyIpyKernelObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = kernel_slots,
};

/* A new kernel whose session delivers through self, or NULL. */
static PyObject *
new_kernel(ApyIpyMagicsObject *self)
{
    PyTypeObject *stp = (PyTypeObject *)PyType_FromSpec(&session_spec);
    PyTypeObject *ktp = (PyTypeObject *)PyType_FromSpec(&kernel_spec);
    ApyIpySessionObject *session = NULL;
    ApyIpyKernelObject *kernel = NULL;
    if (stp == NULL || ktp == NULL) {
        goto done;
    }
    session = PyObject_GC_New(ApyIpySessionObject, stp);
    if (session == NULL) {
        goto done;
    }
    session->magics = Py_NewRef(self);
    PyObject_GC_Track(session);
    kernel = PyObject_GC_New(ApyIpyKernelObject, ktp);
    if (kernel == NULL) {
        goto done;
    }
    kernel->session = Py_NewRef(session);
    kernel->iopub_socket = PyUnicode_FromString("iopub");
    kernel->dict = NULL;
    PyObject_GC_Track(kernel);
    if (kernel->iopub_socket == NULL) {
        Py_CLEAR(kernel);
    }
done:
    Py_XDECREF(session);
    Py_XDECREF(stp);
    Py_XDECREF(ktp);
    return (PyObject *)kernel;
}

/* ---- display_pub ---- */

/* publish(self, data, metadata=None, source=None, *, transient=None,
 * update=False, **kwargs), IPython's DisplayPublisher's (self: the
 * publisher; the C self: the helper). */
static PyObject *
pub_publish(ApyIpyMagicsObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *pub, *data, *md = Py_None, *source = Py_None;
    PyObject *transient = Py_None;
    int update = 0;
    static char *kwlist[] = {"", "data", "metadata", "source", "transient",
                             "update", NULL};
    PyObject *rest = NULL;
    if (kwargs != NULL) {
        /* IPython's publish takes **kwargs: they are dropped. */
        rest = PyDict_New();
        for (char **k = kwlist + 1; rest != NULL && *k != NULL; k++) {
            PyObject *v = PyDict_GetItemString(kwargs, *k);
            if (v != NULL && PyDict_SetItemString(rest, *k, v) < 0) {
                Py_CLEAR(rest);
            }
        }
        if (rest == NULL) {
            return NULL;
        }
    }
    int ok = PyArg_ParseTupleAndKeywords(args, rest, "OO|OO$Op:publish",
                                         kwlist, &pub, &data, &md, &source,
                                         &transient, &update);
    Py_XDECREF(rest);
    if (!ok) {
        return NULL;
    }
    PyObject *content = Py_BuildValue("{sOsOsO}", "data", data, "metadata",
                                      md, "transient", transient);
    if (content == NULL) {
        return NULL;
    }
    int rc = deliver(self, update ? "update_display_data" : "display_data",
                     content);
    Py_DECREF(content);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

/* clear_output(self, wait=False). */
static PyObject *
pub_clear_output(ApyIpyMagicsObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "wait", NULL};
    PyObject *pub;
    int wait = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|p:clear_output",
                                     kwlist, &pub, &wait)) {
        return NULL;
    }
    PyObject *content = Py_BuildValue("{sO}", "wait",
                                      wait ? Py_True : Py_False);
    int rc = content != NULL ? deliver(self, "clear_output", content) : -1;
    Py_XDECREF(content);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

static PyMethodDef pub_defs[] = {
    {"publish", (PyCFunction)(void (*)(void))pub_publish,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"clear_output", (PyCFunction)(void (*)(void))pub_clear_output,
     METH_VARARGS | METH_KEYWORDS, NULL},
};

/* shell.display_pub becomes an instance of a DisplayPublisher subclass
 * whose publish() and clear_output() deliver. 0 or -1. */
static int
put_display_pub(ApyIpyMagicsObject *self, PyObject *shell)
{
    PyObject *mod = PyImport_ImportModule("IPython.core.displaypub");
    PyObject *base = mod != NULL ? PyObject_GetAttrString(mod,
                                                          "DisplayPublisher")
                                 : NULL;
    Py_XDECREF(mod);
    PyObject *ns = base != NULL ? Py_BuildValue("{ssss}", "__module__",
                                                "apyrun", "__doc__",
                                                "IPython's display publisher "
                                                "over apyrun's outputs")
                                : NULL;
    PyObject *cls = NULL, *pub = NULL;
    for (size_t i = 0; ns != NULL && i < 2; i++) {
        PyObject *f = PyCFunction_NewEx(&pub_defs[i], (PyObject *)self,
                                        NULL);
        PyObject *m = f != NULL ? PyInstanceMethod_New(f) : NULL;
        Py_XDECREF(f);
        if (m == NULL || PyDict_SetItemString(ns, pub_defs[i].ml_name, m)
                             < 0) {
            Py_XDECREF(m);
            Py_CLEAR(ns);
            break;
        }
        Py_DECREF(m);
    }
    if (ns != NULL) {
        cls = PyObject_CallFunction((PyObject *)&PyType_Type, "s(O)O",
                                    "ApyrunDisplayPublisher", base, ns);
    }
    if (cls != NULL) {
        PyObject *kw = Py_BuildValue("{sOsO}", "parent", shell, "shell",
                                     shell);
        PyObject *none[1];
        pub = kw != NULL ? PyObject_VectorcallDict(cls, none, 0, kw) : NULL;
        Py_XDECREF(kw);
    }
    int rc = pub != NULL ? PyObject_SetAttrString(shell, "display_pub", pub)
                         : -1;
    Py_XDECREF(pub);
    Py_XDECREF(cls);
    Py_XDECREF(ns);
    Py_XDECREF(base);
    return rc;
}

/* _showtraceback(etype, evalue, stb), which IPython's showtraceback
 * calls (an event callback's error, a figure that fails to draw): an
 * error output, as ipykernel's shell sends it. */
static PyObject *
shell_showtraceback(ApyIpyMagicsObject *self, PyObject *args)
{
    PyObject *etype, *evalue, *stb;
    if (!PyArg_ParseTuple(args, "OOO:_showtraceback", &etype, &evalue,
                          &stb)) {
        return NULL;
    }
    PyObject *ename = PyObject_GetAttrString(etype, "__name__");
    PyObject *name = ename != NULL ? PyObject_Str(ename) : NULL;
    PyObject *value = name != NULL ? PyObject_Str(evalue) : NULL;
    PyObject *lines = value != NULL ? PySequence_List(stb) : NULL;
    PyObject *content = lines != NULL
                            ? Py_BuildValue("{sOsOsO}", "traceback", lines,
                                            "ename", name, "evalue", value)
                            : NULL;
    int rc = content != NULL ? deliver(self, "error", content) : -1;
    Py_XDECREF(content);
    Py_XDECREF(lines);
    Py_XDECREF(value);
    Py_XDECREF(name);
    Py_XDECREF(ename);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

static PyMethodDef showtraceback_def = {
    "_showtraceback", (PyCFunction)shell_showtraceback, METH_VARARGS,
    "Records a traceback IPython shows as an error output, as a kernel.",
};

/* ---- ipykernel's KernelMagics ---- */

static const char *const kernel_magics[] = {
    "autosave", "clear", "connect_info", "less", "man", "more",
    "qtconsole", NULL,
};

int
apy__ipy_is_kernel_magic(const char *name)
{
    for (const char *const *n = kernel_magics; *n != NULL; n++) {
        if (strcmp(*n, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* %autosave N: the notebook's JavaScript to set the interval (shown as
 * display_data, as ipykernel does), then what it says. */
static PyObject *
magic_autosave(PyObject *arg)
{
    PyObject *n = PyLong_FromUnicodeObject(arg, 10);
    if (n == NULL) {
        PyErr_Clear();
        return apy__ipy_usage_error(PyUnicode_FromFormat(
            "%%autosave requires an integer, got %R", arg));
    }
    long seconds = PyLong_AsLong(n);
    Py_DECREF(n);
    if (seconds == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *display = PyDict_GetItemString(PyEval_GetBuiltins(),
                                             "display"); /* borrowed */
    if (display != NULL) {
        PyObject *bundle = PyUnicode_FromFormat(
            "IPython.notebook.set_autosave_interval(%ld)", seconds * 1000);
        PyObject *data = bundle != NULL
                             ? Py_BuildValue("{sN}", "application/javascript",
                                             bundle)
                             : NULL;
        PyObject *kw = data != NULL ? Py_BuildValue("{sO}", "raw", Py_True)
                                    : NULL;
        PyObject *args = kw != NULL ? PyTuple_Pack(1, data) : NULL;
        PyObject *r = args != NULL ? PyObject_Call(display, args, kw) : NULL;
        Py_XDECREF(args);
        Py_XDECREF(kw);
        Py_XDECREF(data);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    PyObject *text = seconds != 0
                         ? PyUnicode_FromFormat("Autosaving every %ld "
                                                "seconds\n", seconds)
                         : PyUnicode_FromString("Autosave disabled\n");
    int rc = text != NULL ? apy__ipy_write_stdout(text) : -1;
    Py_XDECREF(text);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

/* %less FILE, %more FILE: the file through the pager, a .py file
 * coloured by IPython's shell when there is one (ipykernel's). */
static PyObject *
magic_less(ApyIpyMagicsObject *self, PyObject *arg)
{
    PyObject *path = PyObject_CallMethod(arg, "strip", NULL);
    if (path == NULL) {
        return NULL;
    }
    if (PyUnicode_GET_LENGTH(path) == 0) {
        Py_DECREF(path);
        return apy__ipy_usage_error(PyUnicode_FromString(
            "Missing filename."));
    }
    PyObject *text = NULL;
    PyObject *suffix = PyUnicode_FromString(".py");
    int py = suffix != NULL ? (int)PyUnicode_Tailmatch(path, suffix, 0,
                                                       PY_SSIZE_T_MAX, 1)
                            : -1;
    Py_XDECREF(suffix);
    if (py == 1 && self->shell_kind == APY_IPY_SHELL_IPYTHON) {
        PyObject *src = apy__ipy_call_module("IPython.utils.openpy",
                                             "read_py_file", path);
        text = src != NULL ? PyObject_CallMethod(self->shell, "pycolorize",
                                                 "O", src)
                           : NULL;
        Py_XDECREF(src);
    } else if (py >= 0) {
        PyObject *f = apy__ipy_open_utf8(path, "r");
        text = f != NULL ? PyObject_CallMethod(f, "read", NULL) : NULL;
        PyObject *r = f != NULL ? PyObject_CallMethod(f, "close", NULL)
                                : NULL;
        Py_XDECREF(r);
        Py_XDECREF(f);
    }
    Py_DECREF(path);
    if (text != NULL && !PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "%less read no text");
        Py_CLEAR(text);
    }
    int rc = text != NULL ? apy__ipy_show_page(self, text) : -1;
    Py_XDECREF(text);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

/* %man NAME: `man NAME | col -b` through the pager. */
static PyObject *
magic_man(ApyIpyMagicsObject *self, PyObject *arg)
{
    PyObject *cmd = PyUnicode_FromFormat("man %U | col -b", arg);
    PyObject *lines = cmd != NULL ? apy__ipy_getoutput(NULL, cmd) : NULL;
    Py_XDECREF(cmd);
    PyObject *nl = lines != NULL ? PyUnicode_FromString("\n") : NULL;
    PyObject *text = nl != NULL ? PyUnicode_Join(nl, lines) : NULL;
    Py_XDECREF(nl);
    Py_XDECREF(lines);
    int rc = text != NULL ? apy__ipy_show_page(self, text) : -1;
    Py_XDECREF(text);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

PyObject *
apy__ipy_kernel_magic(ApyIpyMagicsObject *self, const char *name,
                      PyObject *arg)
{
    if (strcmp(name, "autosave") == 0) {
        return magic_autosave(arg);
    }
    if (strcmp(name, "less") == 0 || strcmp(name, "more") == 0) {
        return magic_less(self, arg);
    }
    if (strcmp(name, "man") == 0) {
        return magic_man(self, arg);
    }
    if (strcmp(name, "clear") == 0) {
        /* ipykernel runs `clear` as `!clear` (its escapes recorded). */
        PyObject *cmd = PyUnicode_FromString("clear");
        PyObject *r = cmd != NULL
                          ? apy__ipy_system(NULL, cmd, apy__ipy_on_pty(self))
                          : NULL;
        Py_XDECREF(cmd);
        return r;
    }
    /* %connect_info, %qtconsole: they talk about the kernel's
     * connection, and apyrun runs no kernel. */
    return apy__ipy_usage_error(PyUnicode_FromFormat(
        "%%%s needs a Jupyter kernel to connect to; apyrun runs the "
        "notebook without one", name));
}

/* A registered magic's function: line, expanded by IPython's
 * run_line_magic; self is (helper, name). */
static PyObject *
registered_magic(PyObject *self, PyObject *line)
{
    PyObject *helper = PyTuple_GET_ITEM(self, 0);
    const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(self, 1));
    if (name == NULL) {
        return NULL;
    }
    if (!PyUnicode_Check(line)) {
        PyErr_SetString(PyExc_TypeError, "a magic's line must be a str");
        return NULL;
    }
    return apy__ipy_kernel_magic((ApyIpyMagicsObject *)helper, name, line);
}

/* One per kernel magic, in kernel_magics' order: their docstrings. */
#define REGISTERED(doc)                                                  \
    {"kernel_magic", (PyCFunction)registered_magic, METH_O, doc}
static PyMethodDef registered_defs[] = {
    REGISTERED("%autosave SECONDS: sets the notebook's autosave interval "
               "(0 turns it off), as a Jupyter kernel's magic."),
    REGISTERED("%clear: clears the terminal (runs `clear`)."),
    REGISTERED("%connect_info: a Jupyter kernel's connection information; "
               "apyrun runs no kernel."),
    REGISTERED("%less FILE: shows FILE through the pager."),
    REGISTERED("%man NAME: shows NAME's man page through the pager."),
    REGISTERED("%more FILE: shows FILE through the pager."),
    REGISTERED("%qtconsole: a Qt console on a Jupyter kernel; apyrun runs "
               "no kernel."),
};
#undef REGISTERED

/* The kernel's magics become IPython's line magics (for %lsmagic, %name?
 * and run_line_magic), and its storemagic extension is loaded. 0 or
 * -1. */
static int
register_magics(ApyIpyMagicsObject *self, PyObject *shell)
{
    for (size_t i = 0; kernel_magics[i] != NULL; i++) {
        const char *n = kernel_magics[i];
        PyObject *bound = Py_BuildValue("(Os)", (PyObject *)self, n);
        PyObject *f = bound != NULL ? PyCFunction_NewEx(&registered_defs[i],
                                                        bound, NULL)
                                    : NULL;
        Py_XDECREF(bound);
        PyObject *r = f != NULL ? PyObject_CallMethod(
                                      shell, "register_magic_function",
                                      "Oss", f, "line", n)
                                : NULL;
        Py_XDECREF(f);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    PyObject *ext = PyObject_GetAttrString(shell, "extension_manager");
    PyObject *r = ext != NULL ? PyObject_CallMethod(ext, "load_extension",
                                                    "s", "storemagic")
                              : NULL;
    Py_XDECREF(ext);
    if (r == NULL) {
        /* As a kernel, which logs it and goes on. */
        PyErr_Clear();
    }
    Py_XDECREF(r);
    return 0;
}

int
apy__ipy_kernel_attach(ApyIpyMagicsObject *self, PyObject *shell)
{
    /* ipykernel's own Kernel once the program imported it (ipykernel.c),
     * else apyrun's. */
    PyObject *kernel = self->kernel != NULL ? Py_NewRef(self->kernel)
                                            : new_kernel(self);
    PyObject *parent = kernel != NULL
                           ? Py_XNewRef(apy__ipy_kernel_parent(self))
                           : NULL;
    int rc = parent != NULL
                     && PyObject_SetAttrString(shell, "kernel", kernel) == 0
                     && PyObject_SetAttrString(shell, "parent_header",
                                               parent) == 0
                 ? 0
                 : -1;
    Py_XDECREF(parent);
    Py_XDECREF(kernel);
    if (rc < 0 || self->shell_kind != APY_IPY_SHELL_IPYTHON) {
        return rc;
    }
    PyObject *show = PyCFunction_New(&showtraceback_def, (PyObject *)self);
    rc = show != NULL ? PyObject_SetAttrString(shell, "_showtraceback", show)
                      : -1;
    Py_XDECREF(show);
    if (rc < 0 || put_display_pub(self, shell) < 0) {
        return -1;
    }
    return register_magics(self, shell);
}
