/* SPDX-License-Identifier: MIT */
/* Unix stream sockets on uv_pipe_t: the transport that
 * loop._make_socket_transport (tcp.c) gives an AF_UNIX SOCK_STREAM socket,
 * from create_unix_connection, open_unix_connection, or a Unix server's
 * accepted connections (which asyncio's Python accept path hands to the
 * same method). Reading, writing and closing are stream.c's, as for TCP;
 * only the opening differs: libuv's pipe on the socket's own fd. */
#include <Python.h>

#include "stream.h"

/* New reference, or NULL with an exception set (contract: stream.h). */
PyObject *
apy__unix_transport_new(ApyLoopObject *loop, PyObject *sock, int fd,
                       PyObject *protocol, PyObject *waiter, PyObject *extra,
                       PyObject *server)
{
    apy_stream_uv_t *rec = apy__stream_record_new(loop);
    if (rec == NULL) {
        return NULL;
    }
    int err = uv_pipe_init(&loop->uv->loop, &rec->u.pipe, 0);
    if (err < 0) {
        apy__stream_discard(rec, 0);
        apy__loop_set_uv_error(err);
        return NULL;
    }
    /* As for TCP: a failed open leaves the fd to the socket object. */
    err = uv_pipe_open(&rec->u.pipe, fd);
    if (err < 0) {
        apy__stream_discard(rec, 1);
        apy__loop_set_uv_error(err);
        return NULL;
    }
    return apy__stream_new(loop->st->unix_transport_type, loop, rec, sock, fd,
                          protocol, waiter, extra, server);
}

/* apyrun.UnixTransport: stream_api.c's slots, base given by state.c. */
PyType_Spec apy__unix_transport_spec = {
    .name = "apyrun.UnixTransport",
    .basicsize = sizeof(ApyStreamObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = apy__stream_slots,
};
