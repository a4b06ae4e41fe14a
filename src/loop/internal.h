/* SPDX-License-Identifier: MIT */
/* Private to the loop layer (src/loop, src/loop/handles): the state the
 * loop caches its Python objects in, the Handle and Loop object layouts,
 * and the C-level entry points between the loop's files. Nothing outside
 * src/loop includes this; other layers use apyrun/loop.h. */
#ifndef APY_LOOP_INTERNAL_H
#define APY_LOOP_INTERNAL_H

#include <Python.h>
#include <signal.h>
#include <uv.h>

#include "apyrun/loop.h"
#include "args.h"
#include "queues.h"
#include "wakeup.h"

#define APY_NSIG 65          /* Linux's NSIG: signals are 1..64 */
#define APY_FREELIST_MAX 256 /* dead Handles kept for reuse, per type */

typedef struct ApyLoopObject ApyLoopObject;
typedef struct apy_poll_s apy_poll_t;
typedef struct apy_uv_s apy_uv_t;
typedef struct apy_stream_uv_s apy_stream_uv_t;

/* asyncio.Handle's fields, as C. Cancelling drops callback and args. */
typedef struct {
    PyObject_HEAD
    PyObject *callback;         /* NULL once cancelled */
    PyObject *args;             /* tuple; NULL once cancelled */
    PyObject *context;          /* contextvars.Context */
    PyObject *loop;             /* any loop object; usually ours */
    PyObject *source_traceback; /* list (debug mode) or NULL */
    PyObject *repr;             /* repr frozen by cancel() in debug mode */
    PyObject *weakreflist;
    char cancelled;
} ApyHandleObject;

/* asyncio.TimerHandle: a Handle with a deadline. */
typedef struct {
    ApyHandleObject base;
    double when;
    char scheduled; /* in its loop's timer heap */
} ApyTimerHandleObject;

/* The loop's part of the `apyrun` module state (apyrun/loop.h): heap
 * types and the Python objects the loop calls, fetched once at import
 * instead of per call. The module's state starts with a pointer to it. */
struct apy_loop_state_s {
    PyTypeObject *handle_type;
    PyTypeObject *timer_type;
    PyTypeObject *core_type; /* _LoopCore: the C half of apyrun.Loop */
    destructor core_dealloc; /* its tp_dealloc: tells our loops apart */
    PyTypeObject *selector_view_type;
    PyObject *selector_key; /* selectors.SelectorKey */
    PyObject *loop_type;     /* apyrun.Loop */
    PyObject *policy_type;   /* apyrun.EventLoopPolicy */
    PyObject *never_completed_error;

    /* asyncio and friends */
    PyObject *future_type;            /* _asyncio.Future */
    PyObject *task_type;              /* _asyncio.Task */
    PyObject *events; /* the module: _get/_set_running_loop, per run */
    PyObject *format_callback_source; /* format_helpers._format_... */
    PyObject *extract_stack;          /* format_helpers.extract_stack */
    PyObject *base_events; /* the module: logger, _format_handle */
    PyObject *run_until_complete_cb;  /* base_events._run_until_... */
    PyObject *ensure_future;
    PyObject *isfuture;
    PyObject *set_task_name;     /* tasks._set_task_name */
    PyObject *coroutines;        /* the module: _is_debug_mode */
    PyObject *iscoroutine;       /* coroutines.iscoroutine */
    PyObject *iscoroutinefunction;
    PyObject *get_asyncgen_hooks; /* sys.* */
    PyObject *set_asyncgen_hooks;
    PyObject *get_origin_depth; /* sys.get_coroutine_origin_tracking_depth */
    PyObject *set_origin_depth;
    PyObject *set_wakeup_fd; /* signal.* */
    PyObject *signal_signal;
    PyObject *siginterrupt;
    PyObject *valid_signals;
    PyObject *default_int_handler;
    PyObject *sig_dfl;
    PyObject *threading_enumerate;
    PyObject *weakset;       /* weakref.WeakSet */
    PyObject *weakvaluedict; /* weakref.WeakValueDictionary */
    PyObject *signal_dispatch; /* our Python-level signal handler */

    /* native stream transports (handles/stream.c, handles/tcp.c) */
    PyTypeObject *tcp_transport_type; /* apyrun.TCPTransport */
    PyTypeObject *unix_transport_type; /* apyrun.UnixTransport */
    PyObject *transport_socket;       /* trsock.TransportSocket */
    PyObject *buffered_protocol;      /* protocols.BufferedProtocol */
    PyObject *set_result_unless_cancelled; /* futures._set_result_... */
    PyObject *ssl_protocol;           /* sslproto.SSLProtocol */
    PyObject *logger;                 /* asyncio.log.logger */
    PyObject *selector_make_socket_transport; /* BaseSelectorEventLoop's */
    PyObject *selector_make_ssl_transport;
    PyObject *selector_accept_connection;
    PyObject *socket_type; /* socket.socket */
    PyObject *str_data_received;
    PyObject *str_get_buffer;
    PyObject *str_buffer_updated;
    PyObject *str_eof_received;
    PyObject *str_connection_made;
    PyObject *str_connection_lost;
    PyObject *str_pause_writing;
    PyObject *str_resume_writing;
    PyObject *str_call_connection_lost; /* "_call_connection_lost" */
    PyObject *str_start_reading;        /* "_start_reading" */
    PyObject *str_transports;           /* "_transports" */
    PyObject *str_detach;
    PyObject *kw_ssl_timeouts; /* ("ssl_handshake_timeout",
                                  "ssl_shutdown_timeout") */
    PyObject *kw_fileno;       /* ("fileno",) */
    PyObject *kw_wait;         /* ("wait",) */
    long connlost_log_threshold; /* LOG_THRESHOLD_FOR_CONNLOST_WRITES */

    /* interned names and keyword tuples for vectorcall */
    PyObject *str_context;
    PyObject *str_call_exception_handler;
    PyObject *str_message;
    PyObject *str_exception;
    PyObject *str_handle;
    PyObject *str_source_traceback;
    PyObject *str_cancelled;
    PyObject *str_cancelled_attr; /* "_cancelled" */
    PyObject *str_run;            /* "_run" */
    PyObject *str_get_debug;
    PyObject *str_timer_handle_cancelled;
    PyObject *str_check_callback;
    PyObject *str_default_executor;
    PyObject *kw_loop;              /* ("loop",) */
    PyObject *kw_loop_name;         /* ("loop", "name") */
    PyObject *kw_loop_context;      /* ("loop", "context") */
    PyObject *kw_loop_name_context; /* ("loop", "name", "context") */
    PyObject *kw_context;           /* ("context",) */
    PyObject *kw_firstiter_finalizer;
    PyObject *kw_warn_on_full_buffer;
    PyObject *empty_tuple;

    /* parameter names of the vectorcall methods, interned (args.h) */
    PyObject *args_context;           /* call_soon & co. */
    PyObject *args_create_task;       /* (coro, name, context) */
    PyObject *args_extra_info;        /* (name, default) */
    PyObject *args_socket_transport;  /* _make_socket_transport */
    PyObject *args_ssl_transport;     /* _make_ssl_transport */
    PyObject *args_accept_connection; /* _accept_connection */

    /* Raw memory of dead Handles, untracked, reused by handle_alloc. */
    ApyHandleObject *handle_free[APY_FREELIST_MAX];
    int nhandle_free;
    ApyTimerHandleObject *timer_free[APY_FREELIST_MAX];
    int ntimer_free;
    int freelist_off; /* set once the module state is being cleared */

    /* Which loop owns add_signal_handler() for each signal (borrowed:
     * a loop clears its entries when it removes handlers or dies). */
    ApyLoopObject *signal_loops[APY_NSIG];
    double clock_resolution;
};

/* The loop state behind a module state (PyModule_GetState,
 * PyType_GetModuleState of one of our types): its first member is the
 * pointer apy_loop_state_new() returned. Borrowed. */
static inline apy_loop_state_t *
apy__loop_state_at(void *module_state)
{
    return *(apy_loop_state_t **)module_state;
}

/* libuv state of one loop: C memory outside the Python object, freed only
 * once every handle in it has finished closing (STYLE.md, ownership). */
struct apy_uv_s {
    uv_loop_t loop;
    apy_wakeup_t wakeup;
    apy_poll_t **polls; /* user fd watchers, indexed by fd */
    int npolls;         /* length of polls */
    apy_poll_t *fired_head; /* records with events to dispatch, FIFO */
    apy_poll_t *fired_tail;
    apy_poll_t *pending; /* records started since the last uv_run */
    int nrecords;        /* poll records allocated and not yet freed */
    apy_stream_uv_t *streams; /* open stream handles (not yet closing) */
    char *rbuf; /* the read buffer every stream of the loop shares */
};

/* One user fd watched by one uv_poll: reader and writer Handles share it
 * (libuv allows a single uv_poll per fd and loop). */
struct apy_poll_s {
    uv_poll_t handle;
    apy_uv_t *uv;
    int fd;
    int started;  /* UV_READABLE|UV_WRITABLE libuv polls for now */
    int revents;  /* fired, not yet dispatched; -1 bit: error */
    PyObject *reader; /* Handle or NULL */
    PyObject *writer;
    /* What add_reader/add_writer got when the fd became watched (the
     * selector key's fileobj): a closed socket is found by it. Strong;
     * NULL while neither Handle is set. */
    PyObject *fileobj;
    apy_poll_t *fired_next;
    apy_poll_t *pending_next;
    char in_fired;
    char in_pending;
    char closing;
};

/* The C half of apyrun.Loop. Fields Python code reads are exposed as
 * descriptors on _LoopCore, so BaseEventLoop's inherited methods see them
 * under their asyncio names (_debug, _closed, _stopping, _thread_id...). */
struct ApyLoopObject {
    PyObject_HEAD
    apy_loop_state_t *st; /* borrowed: alive while our type is */
    apy_uv_t *uv;         /* owned; NULL once closed */
    apy_ring_t ready;     /* strong references to Handles */
    apy_theap_t timers;   /* strong references to TimerHandles */
    uint64_t timer_seq;
    Py_ssize_t timer_cancelled_count;
    unsigned long thread_id; /* valid while running */
    double slow_callback_duration;
    PyObject *task_factory;
    PyObject *current_handle;
    PyObject *signal_handlers; /* dict: signal number -> Handle */
    PyObject *stall_future;    /* run_until_complete's future, if checked */
    PyThreadState *released;   /* set while a blocking uv_run runs */
    PyObject *uv_error; /* exception a libuv callback left to stop the loop */
    int saved_wakeup_fd;
    int saved_origin_depth;
    char debug;
    char closed;
    char stopping;
    char running;
    char sleeping; /* blocked in uv_run with the GIL released */
    char in_callback; /* running ready handles: user code may block */
    char stall_check;
    char origin_tracking;
    char wakeup_installed;
    char initialised; /* __init__ ran */
    char native_tcp;  /* TCP and Unix stream sockets get native transports */
};

/* --- core.c --- */

/* Returns 1 if obj is an instance of _LoopCore (any subclass, any
 * instance of the module), else 0; never fails. */
int apy__loop_is_core(apy_loop_state_t *st, PyObject *obj);

/* Returns the state owning type tp (or one of its bases) when marker is
 * the tp_dealloc of the apyrun type looked for; NULL (no exception)
 * if tp does not derive from such a type. Borrowed. */
apy_loop_state_t *apy__loop_state_of(PyTypeObject *tp, destructor marker);

/* Monotonic time in seconds, the clock and conversion time.monotonic()
 * uses (CLOCK_MONOTONIC nanoseconds / 1e9). */
double apy__loop_now(void);

/* Appends a Handle (or any object with _run/_cancelled) to the ready
 * queue, taking a new reference. Returns 0, or -1 with MemoryError. */
int apy__loop_push_ready(ApyLoopObject *self, PyObject *handle);

/* Wakes the loop if another thread may find it blocked in uv_run. */
void apy__loop_wake(ApyLoopObject *self);

/* Raises RuntimeError('Event loop is closed') and returns -1 if closed. */
int apy__loop_check_closed(ApyLoopObject *self);

/* asyncio's _check_thread(): -1 with RuntimeError when called from a
 * thread other than the one running the loop, else 0. */
int apy__loop_check_thread(ApyLoopObject *self);

/* Turns coroutine origin tracking on or off as BaseEventLoop's
 * _set_coroutine_origin_tracking(). Returns 0 or -1. */
int apy__loop_track_origins(ApyLoopObject *self, int enabled);

/* --- errors.c --- */

/* Raises OSError for a libuv error code (one place for the mapping: on
 * Unix UV_E* is -errno, so CPython picks the OSError subclass). Always
 * returns -1. */
int apy__loop_set_uv_error(int err);

/* Takes the pending exception: a new reference to it, normalised, with
 * its traceback attached, and clears it; NULL if none was set. */
PyObject *apy__loop_take_exception(void);

/* For a libuv callback whose Python code raised what must stop the loop
 * (SystemExit, KeyboardInterrupt, a failing exception handler): moves the
 * pending exception into the loop and asks uv_run to return; run_once()
 * raises it. A second one while the first waits is reported as
 * unraisable. Needs the GIL and an exception set; never fails. */
void apy__loop_stash_error(ApyLoopObject *self);

/* Raises the exception a libuv callback stashed, if any: returns -1 with
 * it set, or 0 when there was none. */
int apy__loop_raise_stashed(ApyLoopObject *self);

/* --- inline helpers --- */

/* Truth of a call's result, consuming it: res is a new reference, or NULL
 * with an exception set (then -1). Returns 1, 0, or -1 with an exception
 * set. Lets "bool(f())" read as one step. */
static inline int
apy__loop_truth(PyObject *res)
{
    if (res == NULL) {
        return -1;
    }
    int t = PyObject_IsTrue(res);
    Py_DECREF(res);
    return t;
}

/* For libuv callbacks (native transports) that must run Python code: a
 * blocking uv_run runs without the GIL, a non-blocking one with it. Takes
 * the GIL back if the loop released it, and keeps it for the rest of that
 * uv_run: once a callback ran, libuv does not block again in the same
 * uv_run (uv__io_poll returns after dispatching events, and pending
 * callbacks make the poll non-blocking), so holding the GIL to the end
 * costs nothing and saves a release per callback. poll_io() takes it back
 * itself if no callback did. The caller must not return to libuv with a
 * Python exception pending: see apy__loop_stash_error(). */
static inline void
apy__loop_gil_take(ApyLoopObject *self)
{
    PyThreadState *ts = self->released;
    if (ts != NULL) {
        self->released = NULL;
        PyEval_RestoreThread(ts);
    }
}

/* --- handle.c --- */

/* Type specs for Handle and TimerHandle (TimerHandle's base is Handle). */
extern PyType_Spec apy__handle_spec;
extern PyType_Spec apy__timer_spec;

/* Returns a new Handle for callback(*args) in context (NULL: a copy of
 * the current context), attached to loop; in debug mode it records the
 * creation stack. New reference, or NULL with an exception set. */
PyObject *apy__handle_new(apy_loop_state_t *st, PyObject *callback,
                         PyObject *const *args, Py_ssize_t nargs,
                         PyObject *loop, PyObject *context, int debug);

/* Like apy__handle_new() for a TimerHandle due at when (not scheduled). */
PyObject *apy__timer_new(apy_loop_state_t *st, double when,
                        PyObject *callback, PyObject *const *args,
                        Py_ssize_t nargs, PyObject *loop, PyObject *context,
                        int debug);

/* Runs a Handle's callback in its context as asyncio's Handle._run does:
 * an Exception (or any BaseException but SystemExit/KeyboardInterrupt)
 * goes to the loop's exception handler. Returns 0, or -1 with the
 * exception set when it must stop the loop (SystemExit,
 * KeyboardInterrupt, or a failing exception handler). */
int apy__handle_run(ApyHandleObject *h);

/* Cancels a Handle as Handle.cancel() does. Returns 0 or -1. */
int apy__handle_cancel(ApyHandleObject *h);

/* --- schedule.c (methods of _LoopCore) --- */

PyObject *apy__loop_call_soon(PyObject *self, PyObject *const *args,
                             Py_ssize_t nargsf, PyObject *kwnames);
PyObject *apy__loop_call_soon_threadsafe(PyObject *self,
                                        PyObject *const *args,
                                        Py_ssize_t nargsf,
                                        PyObject *kwnames);
PyObject *apy__loop_call_later(PyObject *self, PyObject *const *args,
                              Py_ssize_t nargsf, PyObject *kwnames);
PyObject *apy__loop_call_at(PyObject *self, PyObject *const *args,
                           Py_ssize_t nargsf, PyObject *kwnames);
PyObject *apy__loop_create_future(PyObject *self, PyObject *unused);
PyObject *apy__loop_create_task(PyObject *self, PyObject *const *args,
                               Py_ssize_t nargsf, PyObject *kwnames);

/* Drops every scheduled timer (close()). Never fails. */
void apy__loop_clear_timers(ApyLoopObject *self);

/* Removes cancelled timers (compacting when they dominate) and returns
 * the earliest live deadline in *when; returns 1 if there is one, else 0.
 * Never fails. */
int apy__loop_next_deadline(ApyLoopObject *self, double *when);

/* Moves timers due before end_time to the ready queue. Returns 0 or -1. */
int apy__loop_pop_due_timers(ApyLoopObject *self, double end_time);

/* --- signals.c --- */

PyObject *apy__loop_add_signal_handler(PyObject *self, PyObject *const *args,
                                      Py_ssize_t nargs);
PyObject *apy__loop_remove_signal_handler(PyObject *self, PyObject *sig);

/* _handle_signal(sig), as _UnixSelectorEventLoop's: queues sig's Handle,
 * or removes it if cancelled. Returns None, or NULL on error. */
PyObject *apy__loop_handle_signal(PyObject *self, PyObject *sig);

/* The Python-level handler installed by add_signal_handler(); a module
 * function (self is the module). */
extern PyMethodDef apy__signal_dispatch_def;

/* Makes the loop's pipe Python's signal wakeup fd while the loop runs in
 * the main thread, so a signal interrupts a blocked uv_run. Returns 0 or
 * -1 with an exception set. */
int apy__loop_wakeup_install(ApyLoopObject *self);

/* Restores the wakeup fd apy__loop_wakeup_install() replaced. Never fails
 * (errors are reported as unraisable). */
void apy__loop_wakeup_uninstall(ApyLoopObject *self);

/* Removes every add_signal_handler() registration (close()). */
int apy__loop_remove_all_signal_handlers(ApyLoopObject *self);

/* Forgets self in the per-signal table (dealloc). Never fails. */
void apy__loop_forget_signals(ApyLoopObject *self);

/* --- handles/poll.c: loop._selector --- */

extern PyType_Spec apy__selector_view_spec;

/* Returns loop._selector: a read-only selectors-like view of the fd
 * watchers (None once closed, as asyncio). New reference or NULL. */
PyObject *apy__loop_selector_view(ApyLoopObject *loop);

/* --- handles/poll.c --- */

PyObject *apy__loop_add_reader(PyObject *self, PyObject *const *args,
                              Py_ssize_t nargs);
PyObject *apy__loop_add_writer(PyObject *self, PyObject *const *args,
                              Py_ssize_t nargs);
PyObject *apy__loop_remove_reader(PyObject *self, PyObject *fd);
PyObject *apy__loop_remove_writer(PyObject *self, PyObject *fd);
PyObject *apy__loop_add_reader_pub(PyObject *self, PyObject *const *args,
                                  Py_ssize_t nargs);
PyObject *apy__loop_add_writer_pub(PyObject *self, PyObject *const *args,
                                  Py_ssize_t nargs);
PyObject *apy__loop_remove_reader_pub(PyObject *self, PyObject *fd);
PyObject *apy__loop_remove_writer_pub(PyObject *self, PyObject *fd);

/* selectors._fileobj_to_fd(): returns the fd, or -1 with ValueError. */
int apy__poll_fileobj_to_fd(PyObject *obj);

/* Before a uv_run: re-registers fds started since the last one, dropping
 * the ones the user closed meanwhile (libuv would abort on them). */
void apy__poll_preflight(apy_uv_t *uv);

/* After a uv_run: appends reader/writer Handles of fired fds to the ready
 * queue as asyncio's _process_events does. Returns 0 or -1. */
int apy__poll_dispatch(ApyLoopObject *self);

/* Drops the Python references of every record and starts closing them
 * (teardown). Never fails. */
void apy__poll_close_all(apy_uv_t *uv);

/* GC support for the Handles the records hold. */
int apy__poll_traverse(apy_uv_t *uv, visitproc visit, void *arg);

/* --- handles/stream.c --- */

/* Starts closing every open stream handle of uv, as loop teardown must:
 * the transports lose their handle (their sockets are detached, libuv
 * closes the fds) and are released by the close callbacks. Needs the GIL;
 * never fails. */
void apy__stream_close_all(apy_uv_t *uv);

/* --- handles/tcp.c (methods of _LoopCore) --- */

/* loop._make_socket_transport(sock, protocol, waiter=None, *, extra=None,
 * server=None): an apyrun.TCPTransport for a TCP socket when the loop's
 * native_tcp is on, else selector_events' transport. New reference or
 * NULL. */
PyObject *apy__loop_make_socket_transport(PyObject *self,
                                         PyObject *const *args,
                                         Py_ssize_t nargsf,
                                         PyObject *kwnames);

/* loop._make_ssl_transport(...): as selector_events', with sslproto's
 * SSLProtocol over an apyrun.TCPTransport when native. New reference to
 * the app transport, or NULL. */
PyObject *apy__loop_make_ssl_transport(PyObject *self, PyObject *const *args,
                                      Py_ssize_t nargsf, PyObject *kwnames);

/* loop._accept_connection(protocol_factory, sock, sslcontext=None,
 * server=None, backlog=100, ssl_handshake_timeout=...,
 * ssl_shutdown_timeout=...): the reader asyncio's Server registers on a
 * listening socket. For a TCP socket of a loop with native_tcp on and no
 * TLS, accepts in C (up to backlog connections) and makes each transport
 * at once; otherwise selector_events' Python version. None, or NULL. */
PyObject *apy__loop_accept_connection(PyObject *self, PyObject *const *args,
                                     Py_ssize_t nargsf, PyObject *kwnames);

/* Type spec of apyrun.TCPTransport (its base, asyncio's
 * transports._FlowControlMixin, is given at creation). */
extern PyType_Spec apy__tcp_transport_spec;

/* Type spec of apyrun.UnixTransport (handles/pipe.c), the same transport
 * on a Unix stream socket; same base. */
extern PyType_Spec apy__unix_transport_spec;

/* --- run.c (methods of _LoopCore) --- */

PyObject *apy__loop_run_forever(PyObject *self, PyObject *unused);
PyObject *apy__loop_run_until_complete(PyObject *self, PyObject *future);
PyObject *apy__loop_run_once(PyObject *self, PyObject *unused);

/* --- close.c --- */

/* Allocates and initialises self->uv (libuv loop and wakeups). Returns 0
 * or -1 with OSError set. */
int apy__loop_uv_open(ApyLoopObject *self);

/* Closes every libuv handle, runs the loop until they are closed, closes
 * the libuv loop and frees self->uv. Python references held by poll
 * records are dropped first. Never fails (a loop that cannot close is
 * leaked rather than freed under libuv's feet). */
void apy__loop_uv_teardown(ApyLoopObject *self);

PyObject *apy__loop_close(PyObject *self, PyObject *unused);

/* --- attrs.c, loop.c: the type --- */

/* The descriptors of _LoopCore (attrs.c). */
extern PyGetSetDef apy__loop_getset[];

/* Type spec of _LoopCore (loop.c). */
extern PyType_Spec apy__loop_core_spec;

#endif
