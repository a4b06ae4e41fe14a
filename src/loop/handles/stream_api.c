/* SPDX-License-Identifier: MIT */
/* The Python face of stream transports: asyncio.Transport's methods
 * (write, close, abort, flow control, reading control, extra info), the
 * private ones asyncio's own code calls (_force_close, sslproto;
 * _make_empty_waiter, sendfile), the attributes it reads, repr, and the
 * object's life (GC, finalizer warning, dealloc). The I/O itself is in
 * stream_io.c; nothing here touches libuv beyond starting/stopping reads. */
#include <Python.h>
#include <structmember.h>
#include <sys/socket.h>

#include "stream.h"

#define T(o) ((ApyStreamObject *)(o))

/* --- writing --- */

/* write(data): None, or NULL (TypeError, RuntimeError after write_eof()
 * or during sendfile, BufferError, SystemExit from pause_writing()). */
static PyObject *
stream_write(PyObject *op, PyObject *data)
{
    ApyStreamObject *t = T(op);
    Py_buffer view;
    int r;

    if (PyBytes_Check(data)) {
        view.buf = PyBytes_AS_STRING(data);
        view.len = PyBytes_GET_SIZE(data);
        view.obj = NULL;
    }
    else if (PyByteArray_Check(data) || PyMemoryView_Check(data)) {
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "data argument must be a bytes-like object, not '%.100s'",
                     _PyType_Name(Py_TYPE(data)));
        return NULL;
    }
    if (t->eof) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Cannot call write() after write_eof()");
        r = -1;
    }
    else if (t->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "unable to write; sendfile is in progress");
        r = -1;
    }
    else if (view.len == 0) {
        r = 0;
    }
    else if (t->conn_lost) {
        r = 0;
        if (t->conn_lost >= t->loop->st->connlost_log_threshold) {
            PyObject *res = PyObject_CallMethod(t->loop->st->logger,
                                                "warning", "s",
                                                "socket.send() raised "
                                                "exception.");
            Py_XDECREF(res);
            r = res ? 0 : -1;
        }
        t->conn_lost++;
    }
    else {
        /* bytes are immutable: libuv may keep pointing into them. */
        r = apy__stream_send(t, view.obj == NULL ? data : NULL, view.buf,
                            (size_t)view.len);
    }
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* writelines(list_of_data): write(b''.join(list_of_data)). */
static PyObject *
stream_writelines(PyObject *op, PyObject *list)
{
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    if (empty == NULL) {
        return NULL;
    }
    PyObject *data = _PyBytes_Join(empty, list);
    Py_DECREF(empty);
    if (data == NULL) {
        return NULL;
    }
    PyObject *r = stream_write(op, data);
    Py_DECREF(data);
    return r;
}

/* write_eof(): None, or NULL with OSError from shutdown(). */
static PyObject *
stream_write_eof(PyObject *op, PyObject *unused)
{
    ApyStreamObject *t = T(op);
    if (t->closing || t->eof) {
        Py_RETURN_NONE;
    }
    t->eof = 1;
    /* With writes queued, on_write shuts down once they are out. */
    if (t->nwrites == 0 && shutdown(t->fd, SHUT_WR) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* can_write_eof(): True. */
static PyObject *
stream_can_write_eof(PyObject *op, PyObject *unused)
{
    Py_RETURN_TRUE;
}

/* get_write_buffer_size(): new int. */
static PyObject *
stream_get_write_buffer_size(PyObject *op, PyObject *unused)
{
    return PyLong_FromSsize_t(apy__stream_write_size(T(op)));
}

/* get_write_buffer_limits(): new tuple (low, high). */
static PyObject *
stream_get_write_buffer_limits(PyObject *op, PyObject *unused)
{
    return Py_BuildValue("(nn)", T(op)->low_water, T(op)->high_water);
}

/* _FlowControlMixin._set_write_buffer_limits(high=None, low=None).
 * Returns 0, or -1 with ValueError (or TypeError from parsing). */
static int
set_limits(ApyStreamObject *t, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"high", "low", NULL};
    PyObject *high_o = Py_None, *low_o = Py_None;
    Py_ssize_t high, low;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:set_write_buffer_limits",
                                     kwlist, &high_o, &low_o)) {
        return -1;
    }
    if (high_o == Py_None) {
        if (low_o == Py_None) {
            high = 64 * 1024;
        }
        else {
            low = PyNumber_AsSsize_t(low_o, PyExc_OverflowError);
            if (low == -1 && PyErr_Occurred()) {
                return -1;
            }
            high = 4 * low;
        }
    }
    else {
        high = PyNumber_AsSsize_t(high_o, PyExc_OverflowError);
        if (high == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (low_o == Py_None) {
        low = high / 4;
        /* Python's floor division, for negative highs too. */
        if (high < 0 && high % 4 != 0) {
            low -= 1;
        }
    }
    else {
        low = PyNumber_AsSsize_t(low_o, PyExc_OverflowError);
        if (low == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (!(high >= low && low >= 0)) {
        PyErr_Format(PyExc_ValueError,
                     "high (%zd) must be >= low (%zd) must be >= 0", high,
                     low);
        return -1;
    }
    t->high_water = high;
    t->low_water = low;
    return 0;
}

/* set_write_buffer_limits(high=None, low=None): None, or NULL. */
static PyObject *
stream_set_write_buffer_limits(PyObject *op, PyObject *args, PyObject *kwds)
{
    if (set_limits(T(op), args, kwds) < 0 ||
        apy__stream_maybe_pause(T(op)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _set_write_buffer_limits(high=None, low=None): None, or NULL. */
static PyObject *
stream_set_limits_private(PyObject *op, PyObject *args, PyObject *kwds)
{
    if (set_limits(T(op), args, kwds) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _maybe_pause_protocol(): None, or NULL. */
static PyObject *
stream_maybe_pause_meth(PyObject *op, PyObject *unused)
{
    if (apy__stream_maybe_pause(T(op)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _maybe_resume_protocol(): None, or NULL. */
static PyObject *
stream_maybe_resume_meth(PyObject *op, PyObject *unused)
{
    if (apy__stream_maybe_resume(T(op)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* --- reading --- */

/* is_reading(): new bool. */
static PyObject *
stream_is_reading(PyObject *op, PyObject *unused)
{
    return PyBool_FromLong(!T(op)->paused && !T(op)->closing);
}

/* pause_reading(): None, or NULL (debug logging failed). */
static PyObject *
stream_pause_reading(PyObject *op, PyObject *unused)
{
    ApyStreamObject *t = T(op);
    if (t->closing || t->paused) {
        Py_RETURN_NONE;
    }
    t->paused = 1;
    apy__stream_read_stop(t);
    if (apy__stream_log_debug(t, "%r pauses reading", NULL, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* resume_reading(): None, or NULL with OSError. */
static PyObject *
stream_resume_reading(PyObject *op, PyObject *unused)
{
    ApyStreamObject *t = T(op);
    if (t->closing || !t->paused) {
        Py_RETURN_NONE;
    }
    t->paused = 0;
    int err = apy__stream_read_start(t);
    if (err < 0) {
        apy__loop_set_uv_error(err);
        return NULL;
    }
    if (apy__stream_log_debug(t, "%r resumes reading", NULL, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _start_reading(): called soon after connection_made was scheduled, as
 * selector_events' call_soon(_add_reader). None, or NULL. */
static PyObject *
stream_start_reading(PyObject *op, PyObject *unused)
{
    ApyStreamObject *t = T(op);
    t->started = 1;
    int err = apy__stream_read_start(t);
    if (err < 0) {
        apy__loop_set_uv_error(err);
        PyObject *exc = apy__loop_take_exception();
        int r = apy__stream_fatal_error(t, exc,
                                       "Fatal read error on socket "
                                       "transport");
        Py_XDECREF(exc);
        if (r < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

/* --- closing --- */

/* is_closing(): new bool. */
static PyObject *
stream_is_closing(PyObject *op, PyObject *unused)
{
    return PyBool_FromLong(T(op)->closing);
}

/* close(): None, or NULL (RuntimeError once the loop is closed). */
static PyObject *
stream_close_meth(PyObject *op, PyObject *unused)
{
    if (apy__stream_close(T(op)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* abort(): _force_close(None). */
static PyObject *
stream_abort(PyObject *op, PyObject *unused)
{
    if (apy__stream_force_close(T(op), Py_None) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _force_close(exc): None, or NULL. */
static PyObject *
stream_force_close_meth(PyObject *op, PyObject *exc)
{
    if (apy__stream_force_close(T(op), exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _fatal_error(exc, message='Fatal error on transport'): None, or NULL. */
static PyObject *
stream_fatal_error_meth(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"exc", "message", NULL};
    PyObject *exc;
    const char *message = "Fatal error on transport";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|s:_fatal_error", kwlist,
                                     &exc, &message)) {
        return NULL;
    }
    if (apy__stream_fatal_error(T(op), exc, message) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _call_connection_lost(exc): None, or NULL with connection_lost()'s
 * exception. */
static PyObject *
stream_connection_lost_meth(PyObject *op, PyObject *exc)
{
    if (apy__stream_connection_lost(T(op), exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* --- protocol, extra info, sendfile --- */

/* set_protocol(protocol): None, or NULL. */
static PyObject *
stream_set_protocol_meth(PyObject *op, PyObject *protocol)
{
    if (apy__stream_set_protocol(T(op), protocol) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* get_protocol(): new reference (None once connection_lost ran). */
static PyObject *
stream_get_protocol(PyObject *op, PyObject *unused)
{
    PyObject *p = T(op)->protocol;
    return Py_NewRef(p != NULL ? p : Py_None);
}

/* get_extra_info(name, default=None): new reference, or NULL with
 * TypeError for bad arguments. */
static PyObject *
stream_get_extra_info(PyObject *op, PyObject *const *args, Py_ssize_t nargsf,
                      PyObject *kwnames)
{
    PyObject *a[2]; /* name, default=None */

    if (apy__args_parse("get_extra_info", args, PyVectorcall_NARGS(nargsf),
                        kwnames, T(op)->loop->st->args_extra_info, 2, 1,
                        a) < 0) {
        return NULL;
    }
    PyObject *name = a[0], *deflt = a[1];
    PyObject *v = PyDict_GetItemWithError(T(op)->extra, name);
    if (v == NULL && PyErr_Occurred()) {
        return NULL;
    }
    if (v == NULL) {
        v = deflt != NULL ? deflt : Py_None;
    }
    return Py_NewRef(v);
}

/* _make_empty_waiter(): a new future, done once libuv has written
 * everything queued; NULL with RuntimeError if one is set. */
static PyObject *
stream_make_empty_waiter(PyObject *op, PyObject *unused)
{
    ApyStreamObject *t = T(op);
    if (t->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Empty waiter is already set");
        return NULL;
    }
    PyObject *fut = apy__loop_create_future((PyObject *)t->loop, NULL);
    if (fut == NULL) {
        return NULL;
    }
    if (t->nwrites == 0) {
        PyObject *r = PyObject_CallMethod(fut, "set_result", "O", Py_None);
        if (r == NULL) {
            Py_DECREF(fut);
            return NULL;
        }
        Py_DECREF(r);
    }
    t->empty_waiter = Py_NewRef(fut);
    return fut;
}

/* _reset_empty_waiter(): None. */
static PyObject *
stream_reset_empty_waiter(PyObject *op, PyObject *unused)
{
    Py_CLEAR(T(op)->empty_waiter);
    Py_RETURN_NONE;
}

/* repr(): as _SelectorTransport's, e.g.
 * <TCPTransport fd=7 read=polling write=<idle, bufsize=0>>. */
static PyObject *
stream_repr(PyObject *op)
{
    ApyStreamObject *t = T(op);
    const char *state = t->sock == NULL ? " closed"
                        : t->closing    ? " closing"
                                        : "";
    if (t->sock == NULL || t->loop == NULL || t->loop->closed) {
        return PyUnicode_FromFormat("<%s%s fd=%d>",
                                    _PyType_Name(Py_TYPE(op)), state, t->fd);
    }
    return PyUnicode_FromFormat(
        "<%s%s fd=%d read=%s write=<%s, bufsize=%zd>>",
        _PyType_Name(Py_TYPE(op)), state, t->fd,
        t->reading ? "polling" : "idle", t->nwrites ? "polling" : "idle",
        apy__stream_write_size(t));
}

/* --- attributes asyncio's Python code reads --- */

/* Getters return new references; objects unset read as None. */
static PyObject *
or_none(PyObject *v)
{
    return Py_NewRef(v != NULL ? v : Py_None);
}

static PyObject *
get_loop(PyObject *op, void *c)
{
    /* selector_events drops _loop with the connection. */
    return or_none(T(op)->sock != NULL ? (PyObject *)T(op)->loop : NULL);
}

static PyObject *
get_protocol_attr(PyObject *op, void *c)
{
    return or_none(T(op)->protocol);
}

static PyObject *
get_sock(PyObject *op, void *c)
{
    return or_none(T(op)->sock);
}

static PyObject *
get_server(PyObject *op, void *c)
{
    return or_none(T(op)->server);
}

static PyObject *
get_extra(PyObject *op, void *c)
{
    return or_none(T(op)->extra);
}

static PyObject *
get_empty_waiter(PyObject *op, void *c)
{
    return or_none(T(op)->empty_waiter);
}

static PyObject *
get_sock_fd(PyObject *op, void *c)
{
    return PyLong_FromLong(T(op)->fd);
}

static PyObject *
get_conn_lost(PyObject *op, void *c)
{
    return PyLong_FromLong(T(op)->conn_lost);
}

/* Offsets of the char flags exposed as bools (closure). */
static PyObject *
get_flag(PyObject *op, void *c)
{
    return PyBool_FromLong(*((char *)op + (Py_ssize_t)c));
}

static int
set_flag(PyObject *op, PyObject *v, void *c)
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    int b = PyObject_IsTrue(v);
    if (b < 0) {
        return -1;
    }
    *((char *)op + (Py_ssize_t)c) = (char)b;
    return 0;
}

static PyObject *
get_water(PyObject *op, void *c)
{
    return PyLong_FromSsize_t(c ? T(op)->high_water : T(op)->low_water);
}

#define FLAG(name, field)                                                  \
    {name, get_flag, NULL, NULL,                                           \
     (void *)offsetof(ApyStreamObject, field)}

static PyGetSetDef stream_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL,
     NULL},
    {"_loop", get_loop, NULL, NULL, NULL},
    {"_protocol", get_protocol_attr, NULL, NULL, NULL},
    {"_sock", get_sock, NULL, NULL, NULL},
    {"_sock_fd", get_sock_fd, NULL, NULL, NULL},
    {"_server", get_server, NULL, NULL, NULL},
    {"_extra", get_extra, NULL, NULL, NULL},
    {"_empty_waiter", get_empty_waiter, NULL, NULL, NULL},
    {"_conn_lost", get_conn_lost, NULL, NULL, NULL},
    {"_high_water", get_water, NULL, NULL, (void *)1},
    {"_low_water", get_water, NULL, NULL, NULL},
    {"_protocol_paused", get_flag, set_flag, NULL,
     (void *)offsetof(ApyStreamObject, protocol_paused)},
    FLAG("_closing", closing),
    FLAG("_eof", eof),
    FLAG("_paused", paused),
    FLAG("_protocol_connected", protocol_connected),
    {NULL, NULL, NULL, NULL, NULL},
};

#undef FLAG

static PyMemberDef stream_members[] = {
    {"__weaklistoffset__", T_PYSSIZET,
     offsetof(ApyStreamObject, weakreflist), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(ApyStreamObject, dict),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

#define FN(f) ((PyCFunction)(void (*)(void))(f))

static PyMethodDef stream_methods[] = {
    {"write", stream_write, METH_O, NULL},
    {"writelines", stream_writelines, METH_O, NULL},
    {"write_eof", stream_write_eof, METH_NOARGS, NULL},
    {"can_write_eof", stream_can_write_eof, METH_NOARGS, NULL},
    {"get_write_buffer_size", stream_get_write_buffer_size, METH_NOARGS,
     NULL},
    {"get_write_buffer_limits", stream_get_write_buffer_limits, METH_NOARGS,
     NULL},
    {"set_write_buffer_limits", FN(stream_set_write_buffer_limits),
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_set_write_buffer_limits", FN(stream_set_limits_private),
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_maybe_pause_protocol", stream_maybe_pause_meth, METH_NOARGS, NULL},
    {"_maybe_resume_protocol", stream_maybe_resume_meth, METH_NOARGS, NULL},
    {"is_reading", stream_is_reading, METH_NOARGS, NULL},
    {"pause_reading", stream_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", stream_resume_reading, METH_NOARGS, NULL},
    {"_start_reading", stream_start_reading, METH_NOARGS, NULL},
    {"is_closing", stream_is_closing, METH_NOARGS, NULL},
    {"close", stream_close_meth, METH_NOARGS, NULL},
    {"abort", stream_abort, METH_NOARGS, NULL},
    {"_force_close", stream_force_close_meth, METH_O, NULL},
    {"_fatal_error", FN(stream_fatal_error_meth),
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_call_connection_lost", stream_connection_lost_meth, METH_O, NULL},
    {"set_protocol", stream_set_protocol_meth, METH_O, NULL},
    {"get_protocol", stream_get_protocol, METH_NOARGS, NULL},
    {"get_extra_info", FN(stream_get_extra_info),
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_make_empty_waiter", stream_make_empty_waiter, METH_NOARGS, NULL},
    {"_reset_empty_waiter", stream_reset_empty_waiter, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

#undef FN

/* --- object life --- */

static int
stream_traverse(PyObject *op, visitproc visit, void *arg)
{
    ApyStreamObject *t = T(op);
    Py_VISIT(Py_TYPE(op));
    /* The open record's reference is deliberately not visited: the
     * transport must outlive its handle, so it stays unreachable-proof
     * (a GC root) until the close callback. */
    for (int i = 0; i < APY_FLOWCONTROL_SLOTS; i++) {
        Py_VISIT(t->mixin_slots[i]);
    }
    Py_VISIT(t->dict);
    Py_VISIT(t->loop);
    Py_VISIT(t->sock);
    Py_VISIT(t->protocol);
    Py_VISIT(t->extra);
    Py_VISIT(t->server);
    Py_VISIT(t->context);
    Py_VISIT(t->empty_waiter);
    Py_VISIT(t->alloc_error);
    return 0;
}

static int
stream_clear(PyObject *op)
{
    ApyStreamObject *t = T(op);
    for (int i = 0; i < APY_FLOWCONTROL_SLOTS; i++) {
        Py_CLEAR(t->mixin_slots[i]);
    }
    Py_CLEAR(t->dict);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->extra);
    Py_CLEAR(t->server);
    Py_CLEAR(t->context);
    Py_CLEAR(t->empty_waiter);
    Py_CLEAR(t->alloc_error);
    /* t->loop stays until dealloc: the close callback needs it. */
    return 0;
}

/* _SelectorTransport.__del__: a transport whose connection_lost never ran
 * (its handle went with the loop) warns as unclosed. */
static void
stream_finalize(PyObject *op)
{
    ApyStreamObject *t = T(op);
    PyObject *type, *value, *tb;

    if (t->sock == NULL) {
        return;
    }
    PyErr_Fetch(&type, &value, &tb);
    if (PyErr_ResourceWarning(op, 1, "unclosed transport %R", op) < 0) {
        PyErr_WriteUnraisable(op);
    }
    PyErr_Restore(type, value, tb);
}

static void
stream_dealloc(PyObject *op)
{
    ApyStreamObject *t = T(op);
    PyTypeObject *tp = Py_TYPE(op);

    if (PyObject_CallFinalizerFromDealloc(op) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(op);
    if (t->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    if (t->has_rview) {
        t->has_rview = 0;
        PyBuffer_Release(&t->rview);
    }
    stream_clear(op);
    Py_CLEAR(t->loop);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* The slots every stream transport type shares (tcp.c, pipe.c). */
PyType_Slot apy__stream_slots[] = {
    {Py_tp_dealloc, stream_dealloc},
    {Py_tp_traverse, stream_traverse},
    {Py_tp_clear, stream_clear},
    {Py_tp_finalize, stream_finalize},
    {Py_tp_repr, stream_repr},
    {Py_tp_methods, stream_methods},
    {Py_tp_getset, stream_getset},
    {Py_tp_members, stream_members},
    {Py_tp_doc, "asyncio transport on a libuv stream (apyrun)."},
    {0, NULL},
};
