/* SPDX-License-Identifier: MIT */
/* Native stream transports: an asyncio.Transport on a uv_stream_t, split
 * over a chain of files, each using only the ones before it:
 * src/loop/handles/stream.c (life, close, error routing, stopping reads,
 * set_protocol) <- stream_io.c (reads, writes, flow control) <-
 * stream_api.c (the Python methods and attributes) <- the handle kinds
 * that open the stream (tcp.c, pipe.c). Private to src/loop. */
#ifndef APY_LOOP_STREAM_H
#define APY_LOOP_STREAM_H

#include "../internal.h"

/* Pointer-sized __slots__ of transports._FlowControlMixin and its bases
 * (_extra, _high_water, _loop, _low_water, _protocol_paused). Our layout
 * reserves them so the type can derive from it; the C fields below
 * shadow them with descriptors, so they stay NULL. */
#define APY_FLOWCONTROL_SLOTS 5

/* selector_events' max_size: the most one read hands to data_received. */
#define APY_READ_MAX (256 * 1024)

typedef struct ApyStreamObject ApyStreamObject;

/* The libuv side of a stream transport: C memory, allocated by the handle
 * kind that opens it and freed only by the close callback. While it is
 * open it owns a reference to its transport (STYLE.md: the wrapper holds
 * itself alive until libuv is done with it). */
struct apy_stream_uv_s {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    apy_uv_t *uv;           /* the loop's libuv state; outlives the record */
    ApyStreamObject *owner; /* strong; NULL if no transport was made */
    apy_stream_uv_t *prev;  /* in uv->streams until closing starts */
    apy_stream_uv_t *next;
};

/* apyrun.TCPTransport (and future stream transports): selector_events'
 * _SelectorSocketTransport state, as C. */
struct ApyStreamObject {
    PyObject_HEAD
    PyObject *mixin_slots[APY_FLOWCONTROL_SLOTS]; /* unused, see above */
    PyObject *dict;
    PyObject *weakreflist;
    ApyLoopObject *loop;   /* strong, until dealloc */
    apy_stream_uv_t *uv;   /* NULL once the handle is closing or closed */
    PyObject *sock;        /* socket.socket; NULL once connection_lost ran */
    PyObject *protocol;    /* NULL once connection_lost ran */
    PyObject *extra;       /* dict: get_extra_info() */
    PyObject *server;      /* asyncio Server or NULL */
    PyObject *context;     /* protocol callbacks from libuv run in it */
    PyObject *empty_waiter; /* sendfile's future, or NULL */
    PyObject *alloc_error; /* get_buffer()'s exception, for on_read */
    Py_buffer rview;       /* get_buffer()'s buffer, between alloc and read */
    Py_ssize_t high_water;
    Py_ssize_t low_water;
    int fd;
    int conn_lost;         /* as selector_events: connection_lost scheduled */
    int nwrites;           /* uv_write requests not yet called back */
    char closing;
    char eof;              /* write_eof() called */
    char paused;           /* pause_reading() */
    char reading;          /* uv_read_start active */
    char started;          /* reading may start (after connection_made) */
    char buffered;         /* the protocol is a BufferedProtocol */
    char has_rview;
    char in_alloc;         /* inside libuv's alloc callback */
    char stop_pending;     /* uv_read_stop deferred to the read callback */
    char protocol_connected;
    char protocol_paused;  /* pause_writing() was called */
    char io_ref;           /* holds one of sock._io_refs (see stream.c) */
};

/* --- stream.c --- */

/* Slots of the stream transport types; a handle kind's spec uses them. */
extern PyType_Slot apy__stream_slots[];

/* Makes a transport of type tp on rec, an open uv stream of loop's whose
 * fd is sock's, as _SelectorSocketTransport.__init__ does: extra info
 * (socket, sockname, peername), protocol, server._attach(), registration
 * in loop._transports, then call_soon of connection_made, of the start of
 * reading and of waiter's result. rec's ownership passes to the
 * transport in every case (on failure the handle is being closed).
 * Returns a new reference, or NULL with an exception set. */
PyObject *apy__stream_new(PyTypeObject *tp, ApyLoopObject *loop,
                         apy_stream_uv_t *rec, PyObject *sock, int fd,
                         PyObject *protocol, PyObject *waiter,
                         PyObject *extra, PyObject *server);

/* Allocates a zeroed stream record on loop's libuv state. Returns it, or
 * NULL with MemoryError. The handle kind then initialises rec->u and
 * must hand it to apy__stream_new() or apy__stream_discard(). */
apy_stream_uv_t *apy__stream_record_new(ApyLoopObject *loop);

/* Gets rid of a record no transport took: closes its handle if init_done
 * (the close callback frees it), else frees it now. Never fails. */
void apy__stream_discard(apy_stream_uv_t *rec, int init_done);

/* --- pipe.c --- */

/* An apyrun.UnixTransport on sock, a connected AF_UNIX SOCK_STREAM socket
 * whose fd is fd, on a uv_pipe_t opened on that fd; then as
 * apy__stream_new(). New reference, or NULL with an exception set. */
PyObject *apy__unix_transport_new(ApyLoopObject *loop, PyObject *sock, int fd,
                                 PyObject *protocol, PyObject *waiter,
                                 PyObject *extra, PyObject *server);

/* The steps of selector_events' socket transport, shared by the stream
 * files. Functions returning int give 0, or -1 with an exception set;
 * they need the GIL. */

/* Starts closing t's handle (its socket object detaches the fd libuv
 * closes). Idempotent; never fails; no exception may be pending. */
void apy__stream_close_handle(ApyStreamObject *t);

/* loop.call_exception_handler({message, exception, transport,
 * protocol}). */
int apy__stream_call_handler(ApyStreamObject *t, const char *message,
                            PyObject *exc);

/* In debug mode, logger.debug(fmt, t[, arg], exc_info=exc) (arg, exc may
 * be NULL); nothing otherwise. */
int apy__stream_log_debug(ApyStreamObject *t, const char *fmt, PyObject *arg,
                         PyObject *exc);

/* loop.call_soon(callable, *args) in t's context. */
int apy__stream_soon(ApyStreamObject *t, PyObject *callable,
                    PyObject *const *args, Py_ssize_t nargs);

/* _force_close(exc), _fatal_error(exc, message), close(). */
int apy__stream_force_close(ApyStreamObject *t, PyObject *exc);
int apy__stream_fatal_error(ApyStreamObject *t, PyObject *exc,
                           const char *message);
int apy__stream_close(ApyStreamObject *t);

/* _call_connection_lost(exc). */
int apy__stream_connection_lost(ApyStreamObject *t, PyObject *exc);

/* Stops reading (deferred to the read callback inside libuv's alloc
 * callback); never fails. */
void apy__stream_read_stop(ApyStreamObject *t);

/* set_protocol(protocol): also notes whether it is a BufferedProtocol. */
int apy__stream_set_protocol(ApyStreamObject *t, PyObject *protocol);

/* Routes the exception raised by Python code a libuv callback ran:
 * SystemExit/KeyboardInterrupt stop the loop, others are a fatal error
 * (fatal) or go to the exception handler. Clears it; never fails. */
void apy__stream_callback_failed(ApyStreamObject *t, const char *message,
                                int fatal);

/* --- stream_io.c --- */

/* uv_read_start when t wants data (returns 0 or UV_E*). */
int apy__stream_read_start(ApyStreamObject *t);

/* Bytes still queued in libuv (0 once the connection is lost). */
Py_ssize_t apy__stream_write_size(ApyStreamObject *t);

/* _maybe_pause_protocol() / _maybe_resume_protocol(): -1 only for
 * SystemExit, KeyboardInterrupt or a failing exception handler. */
int apy__stream_maybe_pause(ApyStreamObject *t);
int apy__stream_maybe_resume(ApyStreamObject *t);

/* Writes p[:len] now or queues it (keep: an immutable object owning p,
 * held instead of a copy; may be NULL); socket errors close the
 * transport instead of raising. */
int apy__stream_send(ApyStreamObject *t, PyObject *keep, const char *p,
                    size_t len);

/* --- stream_api.c --- */

#endif
