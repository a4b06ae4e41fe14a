/* SPDX-License-Identifier: MIT */
/* TCP on uv_tcp_t: the loop methods through which asyncio's Python code
 * (create_connection, connect_accepted_socket, start_server/open_connection)
 * makes socket transports, and the accept path of asyncio's Server. TCP
 * sockets get an apyrun.TCPTransport (stream.c) on a uv_tcp opened on the
 * socket's own fd, with TCP_NODELAY as asyncio sets it; Unix stream
 * sockets an apyrun.UnixTransport (pipe.c), except under TLS. Unix
 * servers' accepts, TLS servers' accepts, TLS on Unix sockets, other
 * sockets and loops with native_tcp off take
 * selector_events' Python path (whose accepts come back here for the
 * transport). */
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream.h"

#define LOOP(o) ((ApyLoopObject *)(o))

/* Returns sock's fd if the loop should give it a native transport (an
 * AF_INET/AF_INET6 SOCK_STREAM socket, or AF_UNIX if unix_ok; native_tcp
 * on), else -1; *domain is its family. Never raises: anything unusual
 * takes asyncio's path. */
static int
native_fd(ApyLoopObject *loop, PyObject *sock, int unix_ok, int *domain_out)
{
    if (!loop->native_tcp || loop->uv == NULL) {
        return -1;
    }
    PyObject *fdobj = PyObject_CallMethod(sock, "fileno", NULL);
    if (fdobj == NULL) {
        PyErr_Clear();
        return -1;
    }
    long fd = PyLong_AsLong(fdobj);
    Py_DECREF(fdobj);
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Clear();
        return -1;
    }
    int domain = 0, type = 0;
    socklen_t len = sizeof(domain);
    if (getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) {
        return -1;
    }
    len = sizeof(type);
    if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
        return -1;
    }
    if ((domain != AF_INET && domain != AF_INET6
         && !(unix_ok && domain == AF_UNIX)) || type != SOCK_STREAM) {
        return -1;
    }
    *domain_out = domain;
    return (int)fd;
}

/* base_events._set_nodelay(sock): TCP_NODELAY when sock.proto says TCP,
 * exactly asyncio's condition. Returns 0, or -1 with OSError. */
static int
set_nodelay(PyObject *sock, int fd)
{
    PyObject *proto = PyObject_GetAttrString(sock, "proto");
    if (proto == NULL) {
        return -1;
    }
    long p = PyLong_AsLong(proto);
    Py_DECREF(proto);
    if (p == -1 && PyErr_Occurred()) {
        return -1;
    }
    int one = 1;
    if (p == IPPROTO_TCP &&
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

/* A TCPTransport on sock (fd). New reference, or NULL. */
static PyObject *
tcp_transport_new(ApyLoopObject *loop, PyObject *sock, int fd,
                  PyObject *protocol, PyObject *waiter, PyObject *extra,
                  PyObject *server)
{
    if (set_nodelay(sock, fd) < 0) {
        return NULL;
    }
    apy_stream_uv_t *rec = apy__stream_record_new(loop);
    if (rec == NULL) {
        return NULL;
    }
    int err = uv_tcp_init(&loop->uv->loop, &rec->u.tcp);
    if (err < 0) {
        apy__stream_discard(rec, 0);
        apy__loop_set_uv_error(err);
        return NULL;
    }
    /* Opening fails before the handle takes the fd (EEXIST: someone
     * watches it with add_reader), so closing the handle leaves it be. */
    err = uv_tcp_open(&rec->u.tcp, fd);
    if (err < 0) {
        apy__stream_discard(rec, 1);
        apy__loop_set_uv_error(err);
        return NULL;
    }
    return apy__stream_new(loop->st->tcp_transport_type, loop, rec, sock, fd,
                          protocol, waiter, extra, server);
}

/* Calls the selector loop's implementation, fn(self, *args, **kw). New
 * reference or NULL. */
static PyObject *
call_selector(PyObject *fn, PyObject *self, PyObject *const *args,
              Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *small[16];
    PyObject **stack = small;

    if (nargs + nkw + 1 > (Py_ssize_t)(sizeof(small) / sizeof(small[0]))) {
        stack = PyMem_Malloc((nargs + nkw + 1) * sizeof(PyObject *));
        if (stack == NULL) {
            return PyErr_NoMemory();
        }
    }
    stack[0] = self;
    for (Py_ssize_t i = 0; i < nargs + nkw; i++) {
        stack[i + 1] = args[i];
    }
    PyObject *r = PyObject_Vectorcall(fn, stack, nargs + 1, kwnames);
    if (stack != small) {
        PyMem_Free(stack);
    }
    return r;
}

/* loop._make_socket_transport(sock, protocol, waiter=None, *, extra=None,
 * server=None): see internal.h. */
PyObject *
apy__loop_make_socket_transport(PyObject *self, PyObject *const *args,
                               Py_ssize_t nargsf, PyObject *kwnames)
{
    PyObject *a[5];
    ApyLoopObject *loop = LOOP(self);

    if (apy__args_parse("_make_socket_transport", args,
                        PyVectorcall_NARGS(nargsf), kwnames,
                        loop->st->args_socket_transport, 3, 2, a) < 0) {
        return NULL;
    }
    int domain;
    int fd = native_fd(loop, a[0], 1, &domain);
    if (fd < 0) {
        return call_selector(loop->st->selector_make_socket_transport, self,
                             args, nargsf, kwnames);
    }
    if (domain == AF_UNIX) {
        return apy__unix_transport_new(loop, a[0], fd, a[1], a[2], a[3],
                                      a[4]);
    }
    return tcp_transport_new(loop, a[0], fd, a[1], a[2], a[3], a[4]);
}

/* loop._make_ssl_transport(rawsock, protocol, sslcontext, waiter=None, *,
 * server_side=False, server_hostname=None, extra=None, server=None,
 * ssl_handshake_timeout=..., ssl_shutdown_timeout=...): see
 * internal.h. */
PyObject *
apy__loop_make_ssl_transport(PyObject *self, PyObject *const *args,
                            Py_ssize_t nargsf, PyObject *kwnames)
{
    PyObject *a[10];
    ApyLoopObject *loop = LOOP(self);
    apy_loop_state_t *st = loop->st;

    if (apy__args_parse("_make_ssl_transport", args,
                        PyVectorcall_NARGS(nargsf), kwnames,
                        st->args_ssl_transport, 4, 3, a) < 0) {
        return NULL;
    }
    /* TLS on a Unix socket keeps asyncio's transport: on the native one,
     * which reads a peer's reply and EOF in fewer iterations, CPython's
     * test_create_ssl_unix_connection finds the connection already lost
     * when it checks get_extra_info() (about 6 runs in 20 under load). */
    int domain;
    int fd = native_fd(loop, a[0], 0, &domain);
    if (fd < 0) {
        return call_selector(st->selector_make_ssl_transport, self, args,
                             nargsf, kwnames);
    }
    /* sslproto.SSLProtocol(loop, app_protocol, sslcontext, waiter,
     * server_side, server_hostname, ssl_handshake_timeout=...,
     * ssl_shutdown_timeout=...); None timeouts mean asyncio's defaults. */
    PyObject *pargs[8] = {
        self,
        a[1],
        a[2],
        a[3] ? a[3] : Py_None,
        a[4] ? a[4] : Py_False,
        a[5] ? a[5] : Py_None,
        a[8] ? a[8] : Py_None,
        a[9] ? a[9] : Py_None,
    };
    PyObject *ssl_protocol = PyObject_Vectorcall(st->ssl_protocol, pargs, 6,
                                                 st->kw_ssl_timeouts);
    if (ssl_protocol == NULL) {
        return NULL;
    }
    PyObject *tr = tcp_transport_new(loop, a[0], fd, ssl_protocol, NULL,
                                     a[6], a[7]);
    if (tr == NULL) {
        Py_DECREF(ssl_protocol);
        return NULL;
    }
    Py_DECREF(tr);
    PyObject *app = PyObject_GetAttrString(ssl_protocol, "_app_transport");
    Py_DECREF(ssl_protocol);
    return app;
}

/* --- the accept path --- */

/* The peer address as socket.accept() reports it (socketmodule.c's
 * makesockaddr for AF_INET/AF_INET6). New reference, or NULL. */
static PyObject *
make_addr(const struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        return Py_BuildValue("(si)", host, ntohs(a->sin_port));
    }
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    return Py_BuildValue("(siII)", host, ntohs(a->sin6_port),
                         (unsigned int)ntohl(a->sin6_flowinfo),
                         (unsigned int)a->sin6_scope_id);
}

/* accept4() on the listening fd: returns the new fd (non-blocking,
 * close-on-exec), -1 when nothing is waiting (EAGAIN, ECONNABORTED), or
 * -2 with errno set for a real error. */
static int
accept_fd(int lfd, struct sockaddr_storage *ss)
{
    for (;;) {
        socklen_t len = sizeof(*ss);
        int fd = accept4(lfd, (struct sockaddr *)ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            return fd;
        }
        if (errno == EINTR) {
            continue; /* as socket.accept() retries (PEP 475) */
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK ||
            errno == ECONNABORTED) {
            return -1;
        }
        return -2;
    }
}

/* asyncio's answer to running out of fds or memory while accepting:
 * tell the exception handler, stop accepting, and call _start_serving()
 * again after ACCEPT_RETRY_DELAY. a: _accept_connection()'s arguments.
 * Returns 0 or -1. */
static int
accept_out_of_resources(PyObject *self, PyObject *const *a)
{
    apy_loop_state_t *st = LOOP(self)->st;
    PyErr_SetFromErrno(PyExc_OSError);
    PyObject *exc = apy__loop_take_exception();
    PyObject *tsock = PyObject_CallOneArg(st->transport_socket, a[1]);
    if (tsock == NULL) {
        Py_XDECREF(exc);
        return -1;
    }
    PyObject *ctx = Py_BuildValue("{s:s,s:O,s:O}", "message",
                                  "socket.accept() out of system resource",
                                  "exception", exc, "socket", tsock);
    Py_DECREF(tsock);
    Py_XDECREF(exc);
    if (ctx == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(
        self, st->str_call_exception_handler, ctx);
    Py_DECREF(ctx);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    r = PyObject_CallMethod(self, "_remove_reader", "O", a[1]);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    PyObject *start = PyObject_GetAttrString(self, "_start_serving");
    PyObject *delay = PyFloat_FromDouble(1.0); /* ACCEPT_RETRY_DELAY */
    PyObject *backlog = PyLong_FromLong(100);
    if (start == NULL || delay == NULL || backlog == NULL) {
        Py_XDECREF(start);
        Py_XDECREF(delay);
        Py_XDECREF(backlog);
        return -1;
    }
    /* call_later(delay, self._start_serving, protocol_factory, sock,
     * sslcontext, server, backlog, ssl_handshake_timeout,
     * ssl_shutdown_timeout); None timeouts mean asyncio's defaults. */
    PyObject *cargs[9] = {delay, start};
    for (int i = 0; i < 7; i++) {
        cargs[2 + i] = a[i] != NULL ? a[i] : i == 4 ? backlog : Py_None;
    }
    PyObject *h = apy__loop_call_later(self, cargs, 9, NULL);
    Py_DECREF(start);
    Py_DECREF(delay);
    Py_DECREF(backlog);
    Py_XDECREF(h);
    return h != NULL ? 0 : -1;
}

/* socket.socket(lsock.family, lsock.type, lsock.proto, fileno=fd): the
 * object socket.accept() would have made. New reference, or NULL (fd is
 * then still the caller's). */
static PyObject *
new_socket(apy_loop_state_t *st, PyObject *lsock, int fd)
{
    PyObject *family = NULL, *type = NULL, *proto = NULL, *fdobj = NULL;
    PyObject *conn = NULL;

    family = PyObject_GetAttrString(lsock, "family");
    if (family == NULL) {
        goto error;
    }
    type = PyObject_GetAttrString(lsock, "type");
    if (type == NULL) {
        goto error;
    }
    proto = PyObject_GetAttrString(lsock, "proto");
    if (proto == NULL) {
        goto error;
    }
    fdobj = PyLong_FromLong(fd);
    if (fdobj == NULL) {
        goto error;
    }
    PyObject *args[5] = {NULL, family, type, proto, fdobj};
    conn = PyObject_Vectorcall(st->socket_type, args + 1,
                               3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                               st->kw_fileno);
error:
    Py_XDECREF(family);
    Py_XDECREF(type);
    Py_XDECREF(proto);
    Py_XDECREF(fdobj);
    return conn;
}

/* Debug mode's report of a failed transport creation for an accepted
 * connection: loop.call_exception_handler({message, exception[,
 * protocol]}). Needs no exception pending. Returns 0, or -1 with the
 * exception of building the context or of the handler. */
static int
report_accept_error(ApyLoopObject *loop, PyObject *exc, PyObject *protocol)
{
    PyObject *c = Py_BuildValue(
        "{s:s,s:O}", "message",
        "Error on transport creation for incoming connection", "exception",
        exc);
    if (c == NULL) {
        return -1;
    }
    /* The handler must not be called with a failed insertion pending. */
    if (protocol != NULL && PyDict_SetItemString(c, "protocol", protocol) <
                                0) {
        Py_DECREF(c);
        return -1;
    }
    PyObject *res = PyObject_CallMethodOneArg(
        (PyObject *)loop, loop->st->str_call_exception_handler, c);
    Py_DECREF(c);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* One accepted connection on fd, as _accept_connection2 minus the task:
 * a socket object like socket.accept()'s, then protocol_factory() and
 * the transport in a copy of the current context. Errors of that part
 * are only reported in debug mode, as asyncio's. Returns 0, or -1 with
 * SystemExit/KeyboardInterrupt (or a failing exception handler). */
static int
accept_one(ApyLoopObject *loop, PyObject *lsock, int fd,
           const struct sockaddr_storage *ss, PyObject *protocol_factory,
           PyObject *server)
{
    apy_loop_state_t *st = loop->st;
    PyObject *conn = NULL, *addr = NULL, *extra = NULL, *protocol = NULL;
    PyObject *tr = NULL, *ctx = NULL, *et, *ev, *etb;
    int r = -1;

    /* socket.socket(lsock.family, lsock.type, lsock.proto, fileno=fd) */
    conn = new_socket(st, lsock, fd);
    if (conn == NULL) {
        close(fd);
        return -1;
    }
    PyObject *res = PyObject_CallMethod(conn, "setblocking", "O", Py_False);
    if (res == NULL) {
        goto error;
    }
    Py_DECREF(res);
    addr = make_addr(ss);
    if (addr == NULL) {
        goto error;
    }
    if (loop->debug) {
        PyObject *logger = st->logger;
        res = PyObject_CallMethod(logger, "debug", "sOOO",
                                  "%r got a new connection from %r: %r",
                                  server ? server : Py_None, addr, conn);
        if (res == NULL) {
            goto error;
        }
        Py_DECREF(res);
    }
    extra = Py_BuildValue("{s:O}", "peername", addr);
    if (extra == NULL) {
        goto error;
    }
    ctx = PyContext_CopyCurrent();
    if (ctx == NULL || PyContext_Enter(ctx) < 0) {
        goto error;
    }
    protocol = PyObject_CallNoArgs(protocol_factory);
    if (protocol != NULL) {
        tr = tcp_transport_new(loop, conn, fd, protocol, NULL, extra, server);
    }
    /* Leave the context with the factory's or the transport's exception
     * set aside: nothing may run with one pending. */
    PyErr_Fetch(&et, &ev, &etb);
    int exit_failed = PyContext_Exit(ctx) < 0;
    if (et != NULL) {
        _PyErr_ChainExceptions(et, ev, etb);
    }
    if (exit_failed || tr == NULL) {
        goto error;
    }
    r = 0;
    goto done;

error:
    if (!PyErr_ExceptionMatches(PyExc_SystemExit) &&
        !PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        /* asyncio logs these only in debug mode and goes on serving. */
        PyObject *exc = apy__loop_take_exception();
        r = 0;
        if (loop->debug && exc != NULL) {
            r = report_accept_error(loop, exc, protocol);
        }
        Py_XDECREF(exc);
    }
    if (tr == NULL) {
        /* Still ours unless the transport took it (it is detached then). */
        PyErr_Fetch(&et, &ev, &etb);
        res = PyObject_CallMethod(conn, "close", NULL);
        Py_XDECREF(res);
        PyErr_Clear();
        PyErr_Restore(et, ev, etb);
    }
done:
    Py_XDECREF(tr);
    Py_XDECREF(ctx);
    Py_XDECREF(protocol);
    Py_XDECREF(extra);
    Py_XDECREF(addr);
    Py_DECREF(conn);
    return r;
}

/* loop._accept_connection(protocol_factory, sock, sslcontext=None,
 * server=None, backlog=100, ssl_handshake_timeout=...,
 * ssl_shutdown_timeout=...): see internal.h. */
PyObject *
apy__loop_accept_connection(PyObject *self, PyObject *const *args,
                           Py_ssize_t nargsf, PyObject *kwnames)
{
    PyObject *a[7];
    ApyLoopObject *loop = LOOP(self);
    struct sockaddr_storage ss;

    if (apy__args_parse("_accept_connection", args,
                        PyVectorcall_NARGS(nargsf), kwnames,
                        loop->st->args_accept_connection, 7, 2, a) < 0) {
        return NULL;
    }
    int tls = a[2] != NULL ? PyObject_IsTrue(a[2]) : 0;
    if (tls < 0) {
        return NULL;
    }
    int domain;
    int lfd = tls ? -1 : native_fd(loop, a[1], 0, &domain);
    if (lfd < 0) {
        /* TLS servers keep asyncio's task per connection, which awaits
         * the handshake through _make_ssl_transport(). */
        return call_selector(loop->st->selector_accept_connection, self,
                             args, nargsf, kwnames);
    }
    long backlog = 100;
    if (a[4] != NULL && a[4] != Py_None) {
        backlog = PyLong_AsLong(a[4]);
        if (backlog == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    PyObject *server = a[3] != NULL && a[3] != Py_None ? a[3] : NULL;
    /* As asyncio: up to backlog connections per readiness event. */
    for (long i = 0; i < backlog; i++) {
        int fd = accept_fd(lfd, &ss);
        if (fd == -1) {
            break;
        }
        if (fd == -2) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                if (accept_out_of_resources(self, a) < 0) {
                    return NULL;
                }
                break;
            }
            /* The Handle reports it to the exception handler. */
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (accept_one(loop, a[1], fd, &ss, a[0], server) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

/* apyrun.TCPTransport: stream_api.c's slots, base given by state.c. */
PyType_Spec apy__tcp_transport_spec = {
    .name = "apyrun.TCPTransport",
    .basicsize = sizeof(ApyStreamObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = apy__stream_slots,
};
