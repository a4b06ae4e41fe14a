/* SPDX-License-Identifier: MIT */
/* Stream transports on libuv streams, the life of one: the uv record
 * (C memory, freed only by the close callback, owning a reference to its
 * transport while open), creation as _SelectorSocketTransport.__init__,
 * close and connection_lost, and the error routing every path shares
 * (_fatal_error, _force_close, callback exceptions), stopping reads and
 * set_protocol. The bottom of the stream chain: handle kinds (tcp.c)
 * open the stream; reads and writes are in stream_io.c, the Python-facing
 * methods in stream_api.c; nothing here calls them. */
#include <Python.h>

#include "stream.h"

/* --- records: the libuv side --- */

static void
record_link(apy_stream_uv_t *rec)
{
    apy_uv_t *uv = rec->uv;
    rec->prev = NULL;
    rec->next = uv->streams;
    if (uv->streams != NULL) {
        uv->streams->prev = rec;
    }
    uv->streams = rec;
}

static void
record_unlink(apy_stream_uv_t *rec)
{
    apy_uv_t *uv = rec->uv;
    if (rec->prev != NULL) {
        rec->prev->next = rec->next;
    }
    else if (uv->streams == rec) {
        uv->streams = rec->next;
    }
    if (rec->next != NULL) {
        rec->next->prev = rec->prev;
    }
    rec->prev = rec->next = NULL;
}

/* The close callback: frees the record and drops its reference to the
 * transport (taking the GIL back for that). */
static void
on_close(uv_handle_t *handle)
{
    apy_stream_uv_t *rec = (apy_stream_uv_t *)handle;
    ApyStreamObject *t = rec->owner;

    PyMem_RawFree(rec);
    if (t != NULL) {
        /* The loop outlives this: whoever runs uv_run holds a reference
         * to it, and teardown only runs with the GIL held. */
        apy__loop_gil_take(t->loop);
        Py_DECREF(t);
    }
}

/* A zeroed record, or NULL with MemoryError. */
apy_stream_uv_t *
apy__stream_record_new(ApyLoopObject *loop)
{
    apy_stream_uv_t *rec = PyMem_RawCalloc(1, sizeof(*rec));
    if (rec == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    rec->uv = loop->uv;
    return rec;
}

/* Closes (or frees) a record without transport; never fails. */
void
apy__stream_discard(apy_stream_uv_t *rec, int init_done)
{
    if (!init_done) {
        PyMem_RawFree(rec);
        return;
    }
    rec->owner = NULL;
    uv_close(&rec->u.handle, on_close);
}

/* Adds delta to sock._io_refs. socket.socket.close() only closes the fd
 * once no io reference is left (makefile() relies on it), so the one a
 * transport holds keeps a user's early sock.close() from freeing an fd
 * number libuv still watches and will close. Returns 1 if done, 0 for an
 * object without _io_refs; never raises. */
static int
io_ref(PyObject *sock, int delta)
{
    int r = 0;
    PyObject *n = PyObject_GetAttrString(sock, "_io_refs");
    if (n == NULL) {
        goto done;
    }
    long refs = PyLong_AsLong(n);
    Py_DECREF(n);
    if (refs < 0) {
        goto done;
    }
    PyObject *m = PyLong_FromLong(refs + delta);
    if (m == NULL) {
        goto done;
    }
    r = PyObject_SetAttrString(sock, "_io_refs", m) == 0;
    Py_DECREF(m);
done:
    PyErr_Clear();
    return r;
}

/* Stops reading; never fails. */
void
apy__stream_read_stop(ApyStreamObject *t)
{
    if (!t->reading) {
        return;
    }
    t->reading = 0;
    if (t->uv == NULL) {
        return;
    }
    if (t->in_alloc) {
        /* libuv 1.44 calls read_cb right after alloc_cb without checking
         * it is still set: uv_read_stop() now would make that a NULL
         * call. on_read stops instead. */
        t->stop_pending = 1;
        return;
    }
    uv_read_stop(&t->uv->u.stream);
}

/* 0, or -1 with an exception. */
int
apy__stream_set_protocol(ApyStreamObject *t, PyObject *protocol)
{
    int b = PyObject_IsInstance(protocol, t->loop->st->buffered_protocol);
    if (b < 0) {
        return -1;
    }
    Py_XSETREF(t->protocol, Py_NewRef(protocol));
    t->buffered = (char)b;
    t->protocol_connected = 1;
    return 0;
}

/* Starts closing t's handle: the socket object lets go of the fd first,
 * since libuv closes it. Idempotent; never fails (a failing detach is
 * reported as unraisable). Needs the GIL and no exception pending. */
void
apy__stream_close_handle(ApyStreamObject *t)
{
    apy_stream_uv_t *rec = t->uv;
    if (rec == NULL) {
        return;
    }
    t->uv = NULL;
    t->reading = 0;
    if (t->sock != NULL) {
        if (t->io_ref) {
            t->io_ref = 0;
            io_ref(t->sock, -1);
        }
        PyObject *r = PyObject_CallMethodNoArgs(t->sock,
                                                t->loop->st->str_detach);
        if (r == NULL) {
            PyErr_WriteUnraisable((PyObject *)t);
        }
        Py_XDECREF(r);
    }
    record_unlink(rec);
    uv_close(&rec->u.handle, on_close);
}

/* Teardown: every open stream starts closing; never fails. */
void
apy__stream_close_all(apy_uv_t *uv)
{
    while (uv->streams != NULL) {
        apy_stream_uv_t *rec = uv->streams;
        if (rec->owner != NULL && rec->owner->uv == rec) {
            apy__stream_close_handle(rec->owner);
        }
        else {
            record_unlink(rec);
            uv_close(&rec->u.handle, on_close);
        }
    }
}

/* --- errors --- */

/* loop.call_exception_handler({message, exception, transport, protocol}).
 * Returns 0 or -1 (only if the handler machinery itself raised). */
int
apy__stream_call_handler(ApyStreamObject *t, const char *message,
                        PyObject *exc)
{
    apy_loop_state_t *st = t->loop->st;
    PyObject *ctx = Py_BuildValue(
        "{s:s,s:O,s:O,s:O}", "message", message, "exception", exc,
        "transport", (PyObject *)t, "protocol",
        t->protocol != NULL ? t->protocol : Py_None);
    if (ctx == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(
        (PyObject *)t->loop, st->str_call_exception_handler, ctx);
    Py_DECREF(ctx);
    Py_XDECREF(r);
    return r != NULL ? 0 : -1;
}

/* logger.debug(fmt, t, arg, exc_info=exc) when the loop is in debug mode.
 * Returns 0 or -1. */
int
apy__stream_log_debug(ApyStreamObject *t, const char *fmt, PyObject *arg,
                     PyObject *exc)
{
    if (!t->loop->debug) {
        return 0;
    }
    PyObject *meth = PyObject_GetAttrString(t->loop->st->logger, "debug");
    if (meth == NULL) {
        return -1;
    }
    PyObject *args, *kw = NULL, *r = NULL;
    if (arg != NULL) {
        args = Py_BuildValue("(sOO)", fmt, t, arg);
    }
    else {
        args = Py_BuildValue("(sO)", fmt, t);
    }
    if (args == NULL) {
        goto done;
    }
    if (exc != NULL) {
        kw = Py_BuildValue("{s:O}", "exc_info", exc);
        if (kw == NULL) {
            goto done;
        }
    }
    r = PyObject_Call(meth, args, kw);
done:
    Py_XDECREF(kw);
    Py_XDECREF(args);
    Py_DECREF(meth);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Schedules callable(*args) in t's context, as loop.call_soon. Returns 0,
 * or -1 (RuntimeError once the loop is closed). */
int
apy__stream_soon(ApyStreamObject *t, PyObject *callable,
                PyObject *const *args, Py_ssize_t nargs)
{
    ApyLoopObject *loop = t->loop;
    if (apy__loop_check_closed(loop) < 0) {
        return -1;
    }
    PyObject *h = apy__handle_new(loop->st, callable, args, nargs,
                                 (PyObject *)loop, t->context, loop->debug);
    if (h == NULL) {
        return -1;
    }
    int r = apy__loop_push_ready(loop, h);
    Py_DECREF(h);
    return r;
}

/* selector_events' _force_close(exc): stop reading, then connection_lost
 * soon. libuv's queued writes go with the handle, which that closes.
 * Returns 0 or -1. */
int
apy__stream_force_close(ApyStreamObject *t, PyObject *exc)
{
    if (t->conn_lost) {
        return 0;
    }
    if (!t->closing) {
        t->closing = 1;
        apy__stream_read_stop(t);
    }
    t->conn_lost++;
    PyObject *meth = PyObject_GetAttr((PyObject *)t,
                                      t->loop->st->str_call_connection_lost);
    if (meth == NULL) {
        return -1;
    }
    int r = apy__stream_soon(t, meth, &exc, 1);
    Py_DECREF(meth);
    return r;
}

/* selector_events' _fatal_error(exc, message): OSErrors are only logged
 * in debug mode, others go to the exception handler; then _force_close.
 * Returns 0 or -1. */
int
apy__stream_fatal_error(ApyStreamObject *t, PyObject *exc,
                       const char *message)
{
    if (PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_OSError)) {
        PyObject *msg = PyUnicode_FromString(message);
        if (msg == NULL) {
            return -1;
        }
        int r = apy__stream_log_debug(t, "%r: %s", msg, exc);
        Py_DECREF(msg);
        if (r < 0) {
            return -1;
        }
    }
    else if (apy__stream_call_handler(t, message, exc) < 0) {
        return -1;
    }
    return apy__stream_force_close(t, exc);
}

/* For Python code run from a libuv callback that raised: SystemExit and
 * KeyboardInterrupt stop the loop; anything else is a fatal error of the
 * transport (fatal != 0) or goes to the exception handler as an escaping
 * callback exception would. Clears the exception; never fails. */
void
apy__stream_callback_failed(ApyStreamObject *t, const char *message,
                           int fatal)
{
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        apy__loop_stash_error(t->loop);
        return;
    }
    PyObject *exc = apy__loop_take_exception();
    if (exc == NULL) {
        return;
    }
    int r = fatal ? apy__stream_fatal_error(t, exc, message)
                  : apy__stream_call_handler(t, message, exc);
    Py_DECREF(exc);
    if (r < 0) {
        apy__loop_stash_error(t->loop);
    }
}

/* --- closing --- */

/* close(): stop reading; connection_lost once libuv has written
 * everything (soon if nothing is queued). Returns 0 or -1. */
int
apy__stream_close(ApyStreamObject *t)
{
    if (t->closing) {
        return 0;
    }
    t->closing = 1;
    apy__stream_read_stop(t);
    if (t->nwrites > 0) {
        return 0; /* on_write calls connection_lost when drained */
    }
    t->conn_lost++;
    PyObject *meth = PyObject_GetAttr((PyObject *)t,
                                      t->loop->st->str_call_connection_lost);
    if (meth == NULL) {
        return -1;
    }
    PyObject *none = Py_None;
    int r = apy__stream_soon(t, meth, &none, 1);
    Py_DECREF(meth);
    return r;
}

/* _call_connection_lost(exc): protocol.connection_lost(exc), then, even
 * if it raised, the handle closes and the transport forgets its socket,
 * protocol and server (server._detach()). Then a sendfile waiter learns
 * the connection is gone. Returns 0 or -1. */
int
apy__stream_connection_lost(ApyStreamObject *t, PyObject *exc)
{
    apy_loop_state_t *st = t->loop->st;
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    int r = 0;

    if (t->protocol_connected && t->protocol != NULL) {
        PyObject *protocol = Py_NewRef(t->protocol);
        PyObject *res = PyObject_CallMethodOneArg(protocol,
                                                  st->str_connection_lost,
                                                  exc);
        Py_DECREF(protocol);
        if (res == NULL) {
            PyErr_Fetch(&type, &value, &tb);
        }
        Py_XDECREF(res);
    }
    /* finally: */
    apy__stream_close_handle(t);
    PyObject *sock = t->sock, *protocol = t->protocol, *server = t->server;
    t->sock = t->protocol = t->server = NULL;
    Py_XDECREF(sock);
    Py_XDECREF(protocol);
    if (server != NULL) {
        PyObject *res = PyObject_CallMethod(server, "_detach", NULL);
        Py_XDECREF(res);
        r = res ? 0 : -1;
        Py_DECREF(server);
    }
    if (type != NULL) {
        if (r < 0) {
            _PyErr_ChainExceptions(type, value, tb);
        }
        else {
            PyErr_Restore(type, value, tb);
        }
        return -1;
    }
    if (r == 0 && t->empty_waiter != NULL) {
        PyObject *err = PyObject_CallFunction(
            PyExc_ConnectionError, "s", "Connection is closed by peer");
        if (err == NULL) {
            return -1;
        }
        PyObject *res = PyObject_CallMethod(t->empty_waiter, "set_exception",
                                            "O", err);
        Py_DECREF(err);
        if (res == NULL) {
            return -1;
        }
        Py_DECREF(res);
    }
    return r;
}

/* --- creation --- */

/* extra['socket'], ['sockname'] and (unless given) ['peername'], as
 * _SelectorTransport.__init__. Returns 0 or -1. */
static int
fill_extra(ApyStreamObject *t, PyObject *sock)
{
    apy_loop_state_t *st = t->loop->st;
    static const char *names[] = {"sockname", "peername"};
    static const char *getters[] = {"getsockname", "getpeername"};

    PyObject *tsock = PyObject_CallOneArg(st->transport_socket, sock);
    if (tsock == NULL) {
        return -1;
    }
    int r = PyDict_SetItemString(t->extra, "socket", tsock);
    Py_DECREF(tsock);
    if (r < 0) {
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        if (i == 1) {
            PyObject *given = PyDict_GetItemString(t->extra, names[i]);
            if (given != NULL) {
                continue; /* borrowed; the accept path knows it already */
            }
        }
        PyObject *v = PyObject_CallMethod(sock, getters[i], NULL);
        if (v == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_OSError)) {
                return -1;
            }
            PyErr_Clear();
            v = Py_NewRef(Py_None);
        }
        r = PyDict_SetItemString(t->extra, names[i], v);
        Py_DECREF(v);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

/* Schedules what _SelectorSocketTransport.__init__ schedules:
 * connection_made, then reading, then the waiter. Returns 0 or -1. */
static int
schedule_start(ApyStreamObject *t, PyObject *waiter)
{
    apy_loop_state_t *st = t->loop->st;
    PyObject *meth = PyObject_GetAttr(t->protocol, st->str_connection_made);
    if (meth == NULL) {
        return -1;
    }
    PyObject *arg = (PyObject *)t;
    int r = apy__stream_soon(t, meth, &arg, 1);
    Py_DECREF(meth);
    if (r < 0) {
        return -1;
    }
    meth = PyObject_GetAttr((PyObject *)t, st->str_start_reading);
    if (meth == NULL) {
        return -1;
    }
    r = apy__stream_soon(t, meth, NULL, 0);
    Py_DECREF(meth);
    if (r < 0 || waiter == NULL || waiter == Py_None) {
        return r;
    }
    PyObject *args[2] = {waiter, Py_None};
    return apy__stream_soon(t, st->set_result_unless_cancelled, args, 2);
}

/* A new transport on rec (see stream.h), or NULL. */
PyObject *
apy__stream_new(PyTypeObject *tp, ApyLoopObject *loop, apy_stream_uv_t *rec,
               PyObject *sock, int fd, PyObject *protocol, PyObject *waiter,
               PyObject *extra, PyObject *server)
{
    apy_loop_state_t *st = loop->st;
    ApyStreamObject *t = PyObject_GC_New(ApyStreamObject, tp);
    if (t == NULL) {
        apy__stream_discard(rec, 1);
        return NULL;
    }
    memset((char *)t + sizeof(PyObject), 0, sizeof(*t) - sizeof(PyObject));
    t->loop = (ApyLoopObject *)Py_NewRef(loop);
    t->fd = fd;
    t->high_water = 64 * 1024;
    t->low_water = 16 * 1024;
    t->uv = rec;
    rec->owner = (ApyStreamObject *)Py_NewRef(t); /* the record's */
    record_link(rec);
    t->sock = Py_NewRef(sock);
    t->io_ref = (char)io_ref(sock, 1);
    t->context = PyContext_CopyCurrent();
    PyObject_GC_Track(t);
    if (t->context == NULL) {
        goto error;
    }
    t->extra = extra != NULL && extra != Py_None ? Py_NewRef(extra)
                                                 : PyDict_New();
    if (t->extra == NULL || fill_extra(t, sock) < 0 ||
        apy__stream_set_protocol(t, protocol) < 0) {
        goto error;
    }
    if (server != NULL && server != Py_None) {
        t->server = Py_NewRef(server);
        PyObject *r = PyObject_CallMethod(server, "_attach", NULL);
        if (r == NULL) {
            Py_CLEAR(t->server);
            goto error;
        }
        Py_DECREF(r);
    }
    PyObject *transports = PyObject_GetAttr((PyObject *)loop,
                                            st->str_transports);
    if (transports == NULL) {
        goto error;
    }
    PyObject *key = PyLong_FromLong(fd);
    if (key == NULL) {
        Py_DECREF(transports);
        goto error;
    }
    int r = PyObject_SetItem(transports, key, (PyObject *)t);
    Py_DECREF(key);
    Py_DECREF(transports);
    if (r < 0 || schedule_start(t, waiter) < 0) {
        goto error;
    }
    return (PyObject *)t;

error:
    /* The socket is the transport's now: it goes with the handle. The
     * cleanup calls Python, so the error waits aside meanwhile. */
    {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        apy__stream_close_handle(t);
        t->closing = 1;
        t->conn_lost = 1;
        Py_CLEAR(t->sock);
        if (t->server != NULL) {
            PyObject *res = PyObject_CallMethod(t->server, "_detach", NULL);
            Py_XDECREF(res);
            PyErr_Clear();
            Py_CLEAR(t->server);
        }
        PyErr_Restore(type, value, tb);
    }
    Py_DECREF(t);
    return NULL;
}
