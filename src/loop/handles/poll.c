/* SPDX-License-Identifier: MIT */
/* Readers and writers on uv_poll: one record (one uv_poll) per fd holding
 * the reader and writer Handles, with asyncio's selector semantics, and
 * loop._selector, a read-only selectors-shaped view of the records. The
 * poll callback runs inside uv_run, possibly without the GIL, so it only
 * marks the record; apy__poll_dispatch() queues the Handles afterwards.
 * Record memory is C memory, freed only by libuv's close callback. */
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>

#include "../internal.h"

#define LOOP(o) ((ApyLoopObject *)(o))
#define POLL_MAP_MIN 64

static inline int
wanted(const apy_poll_t *rec)
{
    return (rec->reader ? UV_READABLE : 0) | (rec->writer ? UV_WRITABLE : 0);
}

static void
fired_append(apy_uv_t *uv, apy_poll_t *rec)
{
    if (rec->in_fired) {
        return;
    }
    rec->in_fired = 1;
    rec->fired_next = NULL;
    if (uv->fired_tail != NULL) {
        uv->fired_tail->fired_next = rec;
    }
    else {
        uv->fired_head = rec;
    }
    uv->fired_tail = rec;
}

static void
on_poll(uv_poll_t *handle, int status, int events)
{
    apy_poll_t *rec = handle->data;
    if (status < 0) {
        /* On POLLERR libuv stops the watcher and reports an error. The
         * selectors module maps EPOLLERR to both readable and writable,
         * so both callbacks run and find the error themselves; dispatch
         * restarts the watcher, keeping epoll's level-triggered feel. */
        rec->started = 0;
        events = UV_READABLE | UV_WRITABLE;
    }
    rec->revents |= events & (UV_READABLE | UV_WRITABLE);
    fired_append(rec->uv, rec);
}

static void
on_poll_closed(uv_handle_t *handle)
{
    apy_poll_t *rec = handle->data;
    rec->uv->nrecords--;
    PyMem_RawFree(rec);
}

static int
to_epoll(int uv_events)
{
    return ((uv_events & UV_READABLE) ? EPOLLIN : 0) |
           ((uv_events & UV_WRITABLE) ? EPOLLOUT : 0);
}

/* Registers rec's fd in libuv's epoll set now. libuv applies epoll_ctl
 * lazily in uv__io_poll and abort()s if it fails, e.g. on an fd closed in
 * between; after this, libuv's own ADD meets EEXIST and turns into a MOD,
 * which it handles. Returns 0 or a negative errno. */
static int
register_now(apy_uv_t *uv, apy_poll_t *rec)
{
    struct epoll_event ev;
    ev.events = (uint32_t)to_epoll(rec->started);
    ev.data.u64 = 0;
    ev.data.fd = rec->fd; /* what libuv itself stores */
    if (epoll_ctl(uv_backend_fd(&uv->loop), EPOLL_CTL_ADD, rec->fd, &ev) ==
            0 ||
        errno == EEXIST) {
        return 0;
    }
    return -errno;
}

/* Re-registers started records before uv_run; never fails. */
void
apy__poll_preflight(apy_uv_t *uv)
{
    while (uv->pending != NULL) {
        apy_poll_t *rec = uv->pending;
        uv->pending = rec->pending_next;
        rec->in_pending = 0;
        if (rec->started == 0 || rec->closing) {
            continue;
        }
        if (register_now(uv, rec) < 0) {
            /* Closed (or replaced by an unpollable file) since it was
             * added: like epoll, which forgets closed fds, stop watching
             * it; remove_reader()/add_reader() still work as asyncio's. */
            uv_poll_stop(&rec->handle);
            rec->started = 0;
        }
    }
}

/* Makes libuv poll exactly for the events rec's Handles want. fresh: the
 * uv_poll was just initialised (uv_poll_init checked the fd already).
 * Returns 0 or a negative errno/UV_E* code, the record unchanged then. */
static int
poll_update(apy_uv_t *uv, apy_poll_t *rec, int fresh)
{
    int want = wanted(rec);
    if (want == rec->started) {
        return 0;
    }
    if (want == 0) {
        uv_poll_stop(&rec->handle);
        rec->started = 0;
        return 0;
    }
    int was = rec->started;
    int err = uv_poll_start(&rec->handle, want, on_poll);
    if (err < 0) {
        return err;
    }
    rec->started = want;
    if (was == 0 && !fresh) {
        /* A reused record: its fd may now be a different file; report
         * EPERM/EBADF now, as asyncio's selector.register() would. */
        err = register_now(uv, rec);
        if (err < 0) {
            uv_poll_stop(&rec->handle);
            rec->started = 0;
            return err;
        }
    }
    if (!rec->in_pending) {
        rec->in_pending = 1;
        rec->pending_next = uv->pending;
        uv->pending = rec;
    }
    return 0;
}

/* The fd of an int or an object with fileno(), or -1 with ValueError. */
int
apy__poll_fileobj_to_fd(PyObject *obj)
{
    PyObject *num;
    if (PyLong_Check(obj)) {
        num = Py_NewRef(obj);
    }
    else {
        PyObject *f = PyObject_CallMethod(obj, "fileno", NULL);
        num = NULL;
        if (f != NULL) {
            num = PyNumber_Long(f);
            Py_DECREF(f);
        }
        if (num == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError) ||
                PyErr_ExceptionMatches(PyExc_TypeError) ||
                PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "Invalid file object: %R",
                             obj);
            }
            return -1;
        }
    }
    long fd = PyLong_AsLong(num);
    if (fd == -1 && PyErr_Occurred()) {
        Py_DECREF(num);
        return -1;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %S", num);
        Py_DECREF(num);
        return -1;
    }
    Py_DECREF(num);
    return (int)fd;
}

/* Returns fd's record, creating it (and its uv_poll) if needed. Borrowed;
 * NULL with an exception set. *fresh says whether it was just made. */
static apy_poll_t *
poll_get_or_new(apy_uv_t *uv, int fd, int *fresh)
{
    *fresh = 0;
    if (fd < uv->npolls && uv->polls[fd] != NULL) {
        return uv->polls[fd];
    }
    if (fd >= uv->npolls) {
        int n = uv->npolls ? uv->npolls : POLL_MAP_MIN;
        while (n <= fd) {
            n *= 2;
        }
        apy_poll_t **map = PyMem_RawRealloc(uv->polls, n * sizeof(*map));
        if (map == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(map + uv->npolls, 0, (n - uv->npolls) * sizeof(*map));
        uv->polls = map;
        uv->npolls = n;
    }
    apy_poll_t *rec = PyMem_RawCalloc(1, sizeof(*rec));
    if (rec == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) {
        PyMem_RawFree(rec);
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    int err = uv_poll_init(&uv->loop, &rec->handle, fd);
    if (err < 0) {
        PyMem_RawFree(rec);
        apy__loop_set_uv_error(err);
        return NULL;
    }
    /* uv_poll_init makes the fd non-blocking; asyncio's add_reader never
     * changes a file's mode, and polling does not need it. */
    if (!(flags & O_NONBLOCK)) {
        (void)fcntl(fd, F_SETFL, flags);
    }
    rec->handle.data = rec;
    rec->uv = uv;
    rec->fd = fd;
    uv->polls[fd] = rec;
    uv->nrecords++;
    *fresh = 1;
    return rec;
}

/* Cancels a Handle the record let go of (asyncio's reader.cancel()).
 * Consumes the reference. Returns 0 or -1. */
static int
drop_handle(ApyLoopObject *self, PyObject *h)
{
    int r = 0;
    if (PyObject_TypeCheck(h, self->st->handle_type)) {
        r = apy__handle_cancel((ApyHandleObject *)h);
    }
    else {
        PyObject *res = PyObject_CallMethod(h, "cancel", NULL);
        Py_XDECREF(res);
        r = res ? 0 : -1;
    }
    Py_DECREF(h);
    return r;
}

/* _add_reader/_add_writer: returns the new Handle (new reference), or
 * NULL with an exception set. */
static PyObject *
add_watcher(ApyLoopObject *self, PyObject *const *args, Py_ssize_t nargs,
            int writable)
{
    apy_uv_t *uv = self->uv;
    int fresh;

    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError,
                     "%s() missing required arguments 'fd' and 'callback'",
                     writable ? "add_writer" : "add_reader");
        return NULL;
    }
    if (apy__loop_check_closed(self) < 0) {
        return NULL;
    }
    int fd = apy__poll_fileobj_to_fd(args[0]);
    if (fd < 0) {
        return NULL;
    }
    PyObject *h = apy__handle_new(self->st, args[1], args + 2, nargs - 2,
                                 (PyObject *)self, NULL, self->debug);
    if (h == NULL) {
        return NULL;
    }
    apy_poll_t *rec = poll_get_or_new(uv, fd, &fresh);
    if (rec == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    PyObject **slot = writable ? &rec->writer : &rec->reader;
    PyObject *old = *slot;
    *slot = Py_NewRef(h);
    int err = poll_update(uv, rec, fresh);
    if (err < 0) {
        *slot = old;
        Py_DECREF(h); /* the slot's reference */
        Py_DECREF(h);
        apy__loop_set_uv_error(err);
        return NULL;
    }
    if (rec->fileobj == NULL) {
        rec->fileobj = Py_NewRef(args[0]); /* selectors' register() */
    }
    if (old != NULL && drop_handle(self, old) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return h;
}

/* The fd of obj as the selectors module looks it up: its fileno(), or,
 * when that fails with ValueError (a closed socket's -1), the fd of the
 * watched record registered with obj itself. -1 with the ValueError set
 * if neither. uv may be NULL. */
static int
lookup_fd(apy_uv_t *uv, PyObject *obj)
{
    int fd = apy__poll_fileobj_to_fd(obj);
    if (fd >= 0 || uv == NULL || !PyErr_ExceptionMatches(PyExc_ValueError)) {
        return fd;
    }
    for (int i = 0; i < uv->npolls; i++) {
        if (uv->polls[i] != NULL && uv->polls[i]->fileobj == obj) {
            PyErr_Clear();
            return i;
        }
    }
    return -1;
}

/* _remove_reader/_remove_writer: returns 1 if a Handle was removed, 0 if
 * none was registered, -1 on error. */
static int
remove_watcher(ApyLoopObject *self, PyObject *fdobj, int writable)
{
    if (self->closed || self->uv == NULL) {
        return 0;
    }
    apy_uv_t *uv = self->uv;
    int fd = lookup_fd(uv, fdobj);
    if (fd < 0) {
        return -1;
    }
    apy_poll_t *rec = fd < uv->npolls ? uv->polls[fd] : NULL;
    if (rec == NULL) {
        return 0;
    }
    PyObject **slot = writable ? &rec->writer : &rec->reader;
    PyObject *old = *slot;
    if (old == NULL) {
        return 0;
    }
    *slot = NULL;
    PyObject *fileobj = NULL;
    if (rec->reader == NULL && rec->writer == NULL) {
        fileobj = rec->fileobj; /* selectors' unregister() */
        rec->fileobj = NULL;
    }
    /* Stopping never fails; the record stays for the next add on fd. */
    (void)poll_update(uv, rec, 0);
    int r = drop_handle(self, old) < 0 ? -1 : 1;
    Py_XDECREF(fileobj);
    return r;
}

/* loop._add_reader(fd, cb, *args): new reference to the Handle, or
 * NULL (ValueError, OSError, RuntimeError if closed). */
PyObject *
apy__loop_add_reader(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_watcher(LOOP(self), args, nargs, 0);
}

/* loop._add_writer(fd, cb, *args): as _add_reader. */
PyObject *
apy__loop_add_writer(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_watcher(LOOP(self), args, nargs, 1);
}

/* loop._remove_reader(fd): new bool (was one registered), or NULL. */
PyObject *
apy__loop_remove_reader(PyObject *self, PyObject *fd)
{
    int r = remove_watcher(LOOP(self), fd, 0);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

/* loop._remove_writer(fd): new bool, or NULL. */
PyObject *
apy__loop_remove_writer(PyObject *self, PyObject *fd)
{
    int r = remove_watcher(LOOP(self), fd, 1);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

/* The public methods keep selector_events' check that no transport owns
 * the fd (its _ensure_fd_no_transport stays Python: it reads
 * _transports). Returns 0 or -1. */
static int
ensure_no_transport(PyObject *self, PyObject *fd)
{
    PyObject *r = PyObject_CallMethod(self, "_ensure_fd_no_transport", "O",
                                      fd);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* loop.add_reader(): None, or NULL (also RuntimeError when a
 * transport owns the fd). */
PyObject *
apy__loop_add_reader_pub(PyObject *self, PyObject *const *args,
                        Py_ssize_t nargs)
{
    if (nargs >= 1 && ensure_no_transport(self, args[0]) < 0) {
        return NULL;
    }
    PyObject *h = add_watcher(LOOP(self), args, nargs, 0);
    if (h == NULL) {
        return NULL;
    }
    Py_DECREF(h);
    Py_RETURN_NONE;
}

/* loop.add_writer(): None, or NULL as add_reader(). */
PyObject *
apy__loop_add_writer_pub(PyObject *self, PyObject *const *args,
                        Py_ssize_t nargs)
{
    if (nargs >= 1 && ensure_no_transport(self, args[0]) < 0) {
        return NULL;
    }
    PyObject *h = add_watcher(LOOP(self), args, nargs, 1);
    if (h == NULL) {
        return NULL;
    }
    Py_DECREF(h);
    Py_RETURN_NONE;
}

/* loop.remove_reader(): new bool, or NULL. */
PyObject *
apy__loop_remove_reader_pub(PyObject *self, PyObject *fd)
{
    if (ensure_no_transport(self, fd) < 0) {
        return NULL;
    }
    return apy__loop_remove_reader(self, fd);
}

/* loop.remove_writer(): new bool, or NULL. */
PyObject *
apy__loop_remove_writer_pub(PyObject *self, PyObject *fd)
{
    if (ensure_no_transport(self, fd) < 0) {
        return NULL;
    }
    return apy__loop_remove_writer(self, fd);
}

/* Queues h for its event unless cancelled, in which case the watcher goes
 * (asyncio's _process_events). Returns 0 or -1. */
static int
dispatch_one(ApyLoopObject *self, apy_poll_t *rec, int writable)
{
    PyObject *h = writable ? rec->writer : rec->reader;
    if (h == NULL) {
        return 0;
    }
    int cancelled;
    if (PyObject_TypeCheck(h, self->st->handle_type)) {
        cancelled = ((ApyHandleObject *)h)->cancelled;
    }
    else {
        cancelled = apy__loop_truth(
            PyObject_GetAttr(h, self->st->str_cancelled_attr));
        if (cancelled < 0) {
            return -1;
        }
    }
    if (!cancelled) {
        return apy__loop_push_ready(self, h);
    }
    PyObject *fd = PyLong_FromLong(rec->fd);
    if (fd == NULL) {
        return -1;
    }
    int r = remove_watcher(self, fd, writable);
    Py_DECREF(fd);
    return r < 0 ? -1 : 0;
}

/* Queues Handles of fired fds; 0, or -1 with MemoryError. */
int
apy__poll_dispatch(ApyLoopObject *self)
{
    apy_uv_t *uv = self->uv;
    while (uv->fired_head != NULL) {
        /* Unlink first: what runs below may add or remove watchers.
         * Records are only freed by teardown, never while running. */
        apy_poll_t *rec = uv->fired_head;
        uv->fired_head = rec->fired_next;
        if (uv->fired_head == NULL) {
            uv->fired_tail = NULL;
        }
        rec->in_fired = 0;
        int ev = rec->revents;
        rec->revents = 0;
        if (rec->closing) {
            continue;
        }
        if ((ev & UV_READABLE) && dispatch_one(self, rec, 0) < 0) {
            return -1;
        }
        if ((ev & UV_WRITABLE) && dispatch_one(self, rec, 1) < 0) {
            return -1;
        }
        if (rec->started == 0 && wanted(rec) != 0) {
            /* Re-arm after an error stopped it (see on_poll). */
            (void)poll_update(uv, rec, 0);
        }
    }
    return 0;
}

/* Starts closing every record; never fails. */
void
apy__poll_close_all(apy_uv_t *uv)
{
    uv->fired_head = uv->fired_tail = NULL;
    uv->pending = NULL;
    for (int fd = 0; fd < uv->npolls; fd++) {
        apy_poll_t *rec = uv->polls[fd];
        if (rec == NULL) {
            continue;
        }
        uv->polls[fd] = NULL;
        PyObject *reader = rec->reader, *writer = rec->writer;
        PyObject *fileobj = rec->fileobj;
        rec->reader = rec->writer = rec->fileobj = NULL;
        rec->in_fired = rec->in_pending = 0;
        rec->closing = 1;
        uv_close((uv_handle_t *)&rec->handle, on_poll_closed);
        /* Released last: this may run arbitrary code. */
        Py_XDECREF(reader);
        Py_XDECREF(writer);
        Py_XDECREF(fileobj);
    }
}

/* Visits the Handles held by the records. */
int
apy__poll_traverse(apy_uv_t *uv, visitproc visit, void *arg)
{
    for (int fd = 0; fd < uv->npolls; fd++) {
        apy_poll_t *rec = uv->polls[fd];
        if (rec != NULL) {
            Py_VISIT(rec->reader);
            Py_VISIT(rec->writer);
            Py_VISIT(rec->fileobj);
        }
    }
    return 0;
}

/* --- loop._selector: a view for the asyncio code that inspects it
 * (transports' __repr__, _test_selector_event, tests). It answers
 * get_key()/get_map() from the records and never polls or registers. --- */

typedef struct {
    PyObject_HEAD
    PyObject *loop; /* the ApyLoopObject viewed */
} SelectorViewObject;

/* Returns selectors.SelectorKey(fileobj, fd, events, (reader, writer))
 * for fd, a new reference; NULL without exception if fd is not watched,
 * NULL with an exception on error. */
static PyObject *
make_key(ApyLoopObject *loop, PyObject *fileobj, int fd)
{
    apy_uv_t *uv = loop->uv;
    apy_poll_t *rec = uv != NULL && fd < uv->npolls ? uv->polls[fd] : NULL;
    if (rec == NULL || (rec->reader == NULL && rec->writer == NULL)) {
        return NULL;
    }
    /* selectors.EVENT_READ == 1, EVENT_WRITE == 2 */
    int events = (rec->reader ? 1 : 0) | (rec->writer ? 2 : 0);
    return PyObject_CallFunction(
        loop->st->selector_key, "OiiN",
        rec->fileobj != NULL ? rec->fileobj : fileobj, fd, events,
        PyTuple_Pack(2, rec->reader ? rec->reader : Py_None,
                     rec->writer ? rec->writer : Py_None));
}

/* selector.get_key(fileobj): new SelectorKey, or NULL with KeyError
 * (not watched) or ValueError (bad fileobj). */
static PyObject *
view_get_key(PyObject *op, PyObject *fileobj)
{
    ApyLoopObject *loop = (ApyLoopObject *)((SelectorViewObject *)op)->loop;
    int fd = lookup_fd(loop->uv, fileobj);
    if (fd < 0) {
        return NULL;
    }
    PyObject *key = make_key(loop, fileobj, fd);
    if (key == NULL && !PyErr_Occurred()) {
        PyErr_Format(PyExc_KeyError, "%R is not registered", fileobj);
    }
    return key;
}

/* selector.get_map(): a new dict {fd: SelectorKey}, or NULL. */
static PyObject *
view_get_map(PyObject *op, PyObject *unused)
{
    ApyLoopObject *loop = (ApyLoopObject *)((SelectorViewObject *)op)->loop;
    PyObject *map = PyDict_New();
    if (map == NULL) {
        return NULL;
    }
    for (int fd = 0; loop->uv != NULL && fd < loop->uv->npolls; fd++) {
        PyObject *fdobj = PyLong_FromLong(fd);
        if (fdobj == NULL) {
            goto error;
        }
        PyObject *key = make_key(loop, fdobj, fd);
        int r = 0;
        if (key != NULL) {
            r = PyDict_SetItem(map, fdobj, key);
            Py_DECREF(key);
        }
        Py_DECREF(fdobj);
        /* No key and no exception: nothing watches fd. */
        if (r < 0 || (key == NULL && PyErr_Occurred())) {
            goto error;
        }
    }
    return map;

error:
    Py_DECREF(map);
    return NULL;
}

/* Always NULL with NotImplementedError: the view is read-only. */
static PyObject *
view_unsupported(PyObject *op, PyObject *args)
{
    PyErr_SetString(PyExc_NotImplementedError,
                    "apyrun loops poll through libuv; this selector is a "
                    "read-only view");
    return NULL;
}

/* selector.close(): None; there is nothing to close. */
static PyObject *
view_close(PyObject *op, PyObject *unused)
{
    Py_RETURN_NONE;
}

static int
view_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(((SelectorViewObject *)op)->loop);
    return 0;
}

static int
view_clear(PyObject *op)
{
    Py_CLEAR(((SelectorViewObject *)op)->loop);
    return 0;
}

static void
view_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    view_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef view_methods[] = {
    {"get_key", view_get_key, METH_O, NULL},
    {"get_map", view_get_map, METH_NOARGS, NULL},
    {"close", view_close, METH_NOARGS, NULL},
    {"select", view_unsupported, METH_VARARGS, NULL},
    {"register", view_unsupported, METH_VARARGS, NULL},
    {"unregister", view_unsupported, METH_VARARGS, NULL},
    {"modify", view_unsupported, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot view_slots[] = {
    {Py_tp_dealloc, view_dealloc},
    {Py_tp_traverse, view_traverse},
    {Py_tp_clear, view_clear},
    {Py_tp_methods, view_methods},
    {Py_tp_doc, "Read-only selector view of an apyrun loop's fd watchers."},
    {0, NULL},
};

/* The type of loop._selector; state.c creates it from this spec. */
PyType_Spec apy__selector_view_spec = {
    .name = "apyrun.LibuvSelectorView",
    .basicsize = sizeof(SelectorViewObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = view_slots,
};

/* New reference to a view (None once closed), or NULL. */
PyObject *
apy__loop_selector_view(ApyLoopObject *loop)
{
    if (loop->uv == NULL) {
        Py_RETURN_NONE; /* asyncio's close() sets _selector to None */
    }
    SelectorViewObject *view =
        PyObject_GC_New(SelectorViewObject, loop->st->selector_view_type);
    if (view == NULL) {
        return NULL;
    }
    view->loop = Py_NewRef(loop);
    PyObject_GC_Track(view);
    return (PyObject *)view;
}
