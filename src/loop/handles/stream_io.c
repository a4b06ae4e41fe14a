/* SPDX-License-Identifier: MIT */
/* The I/O paths of stream transports: reads arrive by uv_read_start into
 * the loop's shared buffer (or the protocol's get_buffer()) and go to
 * data_received()/buffer_updated()/eof_received(); writes try
 * uv_try_write first and queue the rest with uv_write, with asyncio's
 * flow control. These libuv callbacks take the GIL back and run protocol
 * code in the transport's context; its errors are routed as asyncio's
 * transports route them (stream.c). Nothing here opens or closes handles. */
#include <Python.h>
#include <string.h>
#include <sys/socket.h>

#include "stream.h"

/* Enters t's context for protocol callbacks; returns 1 if it did (pair
 * with ctx_exit). Never fails: a context already entered is left as is. */
static int
ctx_enter(ApyStreamObject *t)
{
    if (PyContext_Enter(t->context) < 0) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static void
ctx_exit(ApyStreamObject *t, int entered)
{
    if (entered && PyContext_Exit(t->context) < 0) {
        PyErr_Clear();
    }
}

/* --- reading --- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* Starts reading if the transport wants data now. Returns 0 or a UV_E*
 * code. */
int
apy__stream_read_start(ApyStreamObject *t)
{
    if (t->reading || t->uv == NULL || t->closing || t->paused ||
        !t->started) {
        return 0;
    }
    if (t->stop_pending) {
        /* Stopped and restarted within one alloc callback: libuv never
         * heard of the stop. */
        t->stop_pending = 0;
        t->reading = 1;
        return 0;
    }
    int err = uv_read_start(&t->uv->u.stream, on_alloc, on_read);
    if (err == 0) {
        t->reading = 1;
    }
    return err;
}

/* BufferedProtocol: the protocol's buffer for the next read, held in
 * t->rview until on_read. On error buf stays empty (libuv then calls
 * on_read with UV_ENOBUFS) and the exception waits in t->alloc_error:
 * nothing that may stop reading can run inside libuv's alloc callback. */
static void
alloc_from_protocol(ApyStreamObject *t, uv_buf_t *buf)
{
    apy_loop_state_t *st = t->loop->st;
    PyObject *minus_one = PyLong_FromLong(-1);
    PyObject *res = NULL;

    *buf = uv_buf_init(NULL, 0);
    if (t->protocol == NULL || minus_one == NULL) {
        Py_XDECREF(minus_one);
        PyErr_Clear();
        return;
    }
    Py_INCREF(t);
    t->in_alloc = 1;
    int entered = ctx_enter(t);
    res = PyObject_CallMethodOneArg(t->protocol, st->str_get_buffer,
                                    minus_one);
    Py_DECREF(minus_one);
    if (res != NULL) {
        if (PyObject_GetBuffer(res, &t->rview, PyBUF_WRITABLE) == 0) {
            if (t->rview.len == 0) {
                PyBuffer_Release(&t->rview);
                PyErr_SetString(PyExc_RuntimeError,
                                "get_buffer() returned an empty buffer");
            }
            else {
                t->has_rview = 1;
                *buf = uv_buf_init(t->rview.buf, (unsigned int)t->rview.len);
            }
        }
        Py_DECREF(res);
    }
    if (!t->has_rview) {
        Py_XSETREF(t->alloc_error, apy__loop_take_exception());
    }
    ctx_exit(t, entered);
    t->in_alloc = 0;
    Py_DECREF(t);
}

static void
on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    apy_stream_uv_t *rec = (apy_stream_uv_t *)handle;
    ApyStreamObject *t = rec->owner;

    if (t->buffered) {
        apy__loop_gil_take(t->loop);
        alloc_from_protocol(t, buf);
        return;
    }
    /* Plain protocols get a copy of what was read, so one buffer serves
     * every stream of the loop: callbacks never nest. */
    if (rec->uv->rbuf == NULL) {
        rec->uv->rbuf = PyMem_RawMalloc(APY_READ_MAX);
    }
    *buf = uv_buf_init(rec->uv->rbuf, rec->uv->rbuf ? APY_READ_MAX : 0);
}

/* data_received(bytes) or buffer_updated(n) for n bytes read. */
static void
read_data(ApyStreamObject *t, const char *base, ssize_t n, int buffered)
{
    apy_loop_state_t *st = t->loop->st;
    PyObject *arg, *res;

    if (t->protocol == NULL) {
        return;
    }
    if (buffered) {
        res = NULL;
        arg = PyLong_FromSsize_t(n);
        if (arg != NULL) {
            res = PyObject_CallMethodOneArg(t->protocol,
                                            st->str_buffer_updated, arg);
            Py_DECREF(arg);
        }
        if (res == NULL) {
            apy__stream_callback_failed(
                t, "Fatal error: protocol.buffer_updated() call failed.", 1);
        }
    }
    else {
        arg = PyBytes_FromStringAndSize(base, n);
        if (arg == NULL) {
            apy__stream_callback_failed(
                t, "Fatal read error on socket transport", 1);
            return;
        }
        res = PyObject_CallMethodOneArg(t->protocol, st->str_data_received,
                                        arg);
        Py_DECREF(arg);
        if (res == NULL) {
            apy__stream_callback_failed(
                t, "Fatal error: protocol.data_received() call failed.", 1);
        }
    }
    Py_XDECREF(res);
}

/* selector_events' _read_ready__on_eof. */
static void
read_eof(ApyStreamObject *t)
{
    apy_loop_state_t *st = t->loop->st;

    if (apy__stream_log_debug(t, "%r received EOF", NULL, NULL) < 0) {
        apy__stream_callback_failed(t, "Exception in EOF logging", 0);
    }
    if (t->protocol == NULL) {
        return;
    }
    int keep_open = apy__loop_truth(
        PyObject_CallMethodNoArgs(t->protocol, st->str_eof_received));
    if (keep_open < 0) {
        apy__stream_callback_failed(
            t, "Fatal error: protocol.eof_received() call failed.", 1);
        return;
    }
    if (keep_open) {
        /* libuv stopped reading at EOF already. */
        apy__stream_read_stop(t);
    }
    else if (apy__stream_close(t) < 0) {
        apy__stream_callback_failed(t, "Exception in transport.close()", 0);
    }
}

static void
on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    apy_stream_uv_t *rec = (apy_stream_uv_t *)stream;
    ApyStreamObject *t = rec->owner;
    int buffered = t->has_rview;

    if (nread == 0 && !buffered) {
        return; /* EAGAIN: nothing was read, nothing to release */
    }
    apy__loop_gil_take(t->loop);
    if (t->stop_pending) {
        t->stop_pending = 0;
        uv_read_stop(stream);
    }
    if (buffered) {
        /* Released before buffer_updated() runs, which may resize the
         * protocol's buffer (recv_into releases it just as early). */
        t->has_rview = 0;
        PyBuffer_Release(&t->rview);
    }
    if (nread == 0) {
        return;
    }
    Py_INCREF(t);
    int entered = ctx_enter(t);
    if (nread > 0) {
        read_data(t, buf->base, nread, buffered);
    }
    else if (nread == UV_EOF) {
        t->reading = 0; /* libuv stops reading at EOF */
        read_eof(t);
    }
    else if (nread == UV_ENOBUFS) {
        PyObject *exc = t->alloc_error;
        t->alloc_error = NULL;
        if (exc != NULL) {
            PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc,
                          PyException_GetTraceback(exc));
            apy__stream_callback_failed(
                t, "Fatal error: protocol.get_buffer() call failed.", 1);
        }
        else if (!t->conn_lost) {
            PyErr_NoMemory(); /* the shared read buffer */
            apy__stream_callback_failed(
                t, "Fatal read error on socket transport", 1);
        }
    }
    else {
        apy__stream_read_stop(t);
        apy__loop_set_uv_error((int)nread);
        apy__stream_callback_failed(t, "Fatal read error on socket transport",
                                   1);
    }
    ctx_exit(t, entered);
    Py_DECREF(t);
}

/* --- writing --- */

/* One queued write. Bytes objects are held rather than copied. */
typedef struct {
    uv_write_t req;
    PyObject *keep; /* immutable owner of the data, or NULL: data below */
    char data[];
} write_req_t;

static void on_write(uv_write_t *req, int status);

/* Returns the bytes libuv still has to write. */
Py_ssize_t
apy__stream_write_size(ApyStreamObject *t)
{
    if (t->uv == NULL || t->conn_lost) {
        return 0; /* asyncio's _force_close() drops its buffer too */
    }
    return (Py_ssize_t)uv_stream_get_write_queue_size(&t->uv->u.stream);
}

/* Calls protocol.pause_writing() or resume_writing() (method); an
 * exception goes to the loop's exception handler with msg, as asyncio's
 * _FlowControlMixin does. Returns 0, or -1 for SystemExit,
 * KeyboardInterrupt or a failing exception handler. */
static int
call_flow_method(ApyStreamObject *t, PyObject *method, const char *msg)
{
    PyObject *r = PyObject_CallMethodNoArgs(t->protocol, method);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return -1;
    }
    PyObject *exc = apy__loop_take_exception();
    int res = apy__stream_call_handler(t, msg, exc);
    Py_XDECREF(exc);
    return res;
}

/* _maybe_pause_protocol(). Returns 0, or -1 for SystemExit,
 * KeyboardInterrupt or a failing exception handler. */
int
apy__stream_maybe_pause(ApyStreamObject *t)
{
    if (apy__stream_write_size(t) <= t->high_water || t->protocol_paused ||
        t->protocol == NULL) {
        return 0;
    }
    t->protocol_paused = 1;
    return call_flow_method(t, t->loop->st->str_pause_writing,
                            "protocol.pause_writing() failed");
}

/* _maybe_resume_protocol(); as apy__stream_maybe_pause(). */
int
apy__stream_maybe_resume(ApyStreamObject *t)
{
    if (!t->protocol_paused || apy__stream_write_size(t) > t->low_water ||
        t->protocol == NULL) {
        return 0;
    }
    t->protocol_paused = 0;
    return call_flow_method(t, t->loop->st->str_resume_writing,
                            "protocol.resume_writing() failed");
}

/* A write failed with err: _fatal_error(), as asyncio's write() and
 * _write_ready() do. Returns 0 or -1. */
static int
write_failed(ApyStreamObject *t, int err)
{
    apy__loop_set_uv_error(err);
    PyObject *exc = apy__loop_take_exception();
    int r = apy__stream_fatal_error(t, exc,
                                   "Fatal write error on socket transport");
    if (r == 0 && t->empty_waiter != NULL) {
        PyObject *res = PyObject_CallMethod(t->empty_waiter, "set_exception",
                                            "O", exc);
        Py_XDECREF(res);
        r = res ? 0 : -1;
    }
    Py_XDECREF(exc);
    return r;
}

/* Queues p[:len] behind what libuv is writing: keep (an immutable owner
 * of p) is held, otherwise the bytes are copied. Returns 0, a negative
 * UV_E* code from uv_write, or -1 with MemoryError set (UV_ENOMEM). */
static int
queue_write(ApyStreamObject *t, PyObject *keep, const char *p, size_t len)
{
    write_req_t *w = PyMem_RawMalloc(sizeof(*w) + (keep ? 0 : len));
    if (w == NULL) {
        PyErr_NoMemory();
        return UV_ENOMEM;
    }
    if (keep != NULL) {
        w->keep = Py_NewRef(keep);
    }
    else {
        memcpy(w->data, p, len);
        p = w->data;
        w->keep = NULL;
    }
    uv_buf_t buf = uv_buf_init((char *)p, (unsigned int)len);
    int err = uv_write(&w->req, &t->uv->u.stream, &buf, 1, on_write);
    if (err < 0) {
        Py_XDECREF(w->keep);
        PyMem_RawFree(w);
        return err;
    }
    t->nwrites++;
    return 0;
}

/* Sends p[:len] now as far as the socket takes it and queues the rest
 * (keep: see queue_write()), then applies flow control. Socket errors
 * are not exceptions of the caller: they close the transport, as
 * asyncio's write(). Returns 0, or -1 with an exception set. */
int
apy__stream_send(ApyStreamObject *t, PyObject *keep, const char *p,
                size_t len)
{
    size_t done = 0;
    int n;

    if (t->uv == NULL) {
        /* The loop's teardown closed the handle under the transport. */
        return write_failed(t, UV_EBADF);
    }
    if (t->nwrites == 0) {
        /* uv_try_write answers in an int: offer at most 1 GiB at once. */
        size_t chunk = len < (1u << 30) ? len : (1u << 30);
        uv_buf_t buf = uv_buf_init((char *)p, (unsigned int)chunk);
        n = uv_try_write(&t->uv->u.stream, &buf, 1);
        if (n >= 0) {
            done = (size_t)n;
            if (done == len) {
                return 0;
            }
        }
        else if (n != UV_EAGAIN) {
            return write_failed(t, n);
        }
    }
    n = queue_write(t, keep, p + done, len - done);
    if (n == UV_ENOMEM) {
        return -1;
    }
    if (n < 0) {
        return write_failed(t, n);
    }
    return apy__stream_maybe_pause(t);
}

/* The write queue drained: the sendfile waiter, then a pending close()
 * (connection_lost now, as _write_ready) or write_eof(). Returns 0 or -1
 * with an exception set. */
static int
write_drained(ApyStreamObject *t)
{
    if (t->empty_waiter != NULL) {
        PyObject *r = PyObject_CallMethod(t->empty_waiter, "set_result", "O",
                                          Py_None);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    if (t->closing) {
        t->conn_lost++;
        return apy__stream_connection_lost(t, Py_None);
    }
    if (t->eof && shutdown(t->fd, SHUT_WR) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static void
on_write(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    apy_stream_uv_t *rec = (apy_stream_uv_t *)req->handle;
    ApyStreamObject *t = rec->owner;

    apy__loop_gil_take(t->loop);
    Py_XDECREF(w->keep);
    PyMem_RawFree(w);
    t->nwrites--;
    if (status == UV_ECANCELED || t->conn_lost || t->uv == NULL) {
        return; /* closing: nothing is waiting for this any more */
    }
    Py_INCREF(t);
    int entered = ctx_enter(t);
    if (status < 0) {
        if (write_failed(t, status) < 0) {
            apy__stream_callback_failed(t, "Exception in write callback", 0);
        }
    }
    else if (apy__stream_maybe_resume(t) < 0) {
        apy__stream_callback_failed(t, "Exception in write callback", 0);
    }
    else if (t->nwrites == 0 && t->uv != NULL && !t->conn_lost &&
             apy__stream_write_size(t) == 0 && write_drained(t) < 0) {
        apy__stream_callback_failed(t, "Exception in write callback", 0);
    }
    ctx_exit(t, entered);
    Py_DECREF(t);
}
