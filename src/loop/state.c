/* SPDX-License-Identifier: MIT */
/* The loop's part of the `apyrun` module state: creates the heap types
 * (Handle, TimerHandle, _LoopCore), builds apyrun.Loop on top of asyncio's
 * _UnixSelectorEventLoop, EventLoopPolicy and NeverCompletedError, and
 * caches every Python object the loop calls. No per-call lookups. */
#include <Python.h>

#include "handles/stream.h"

/* Every PyObject* field of the state, for traverse and clear. */
#define STATE_OBJECTS(X)                                                   \
    X(handle_type)                                                         \
    X(timer_type)                                                          \
    X(core_type)                                                           \
    X(selector_view_type)                                                  \
    X(selector_key)                                                        \
    X(loop_type)                                                           \
    X(policy_type)                                                         \
    X(never_completed_error)                                               \
    X(future_type)                                                         \
    X(task_type)                                                           \
    X(events)                                                              \
    X(format_callback_source)                                              \
    X(extract_stack)                                                       \
    X(base_events)                                                         \
    X(run_until_complete_cb)                                               \
    X(ensure_future)                                                       \
    X(isfuture)                                                            \
    X(set_task_name)                                                       \
    X(coroutines)                                                          \
    X(iscoroutine)                                                         \
    X(iscoroutinefunction)                                                 \
    X(get_asyncgen_hooks)                                                  \
    X(set_asyncgen_hooks)                                                  \
    X(get_origin_depth)                                                    \
    X(set_origin_depth)                                                    \
    X(set_wakeup_fd)                                                       \
    X(signal_signal)                                                       \
    X(siginterrupt)                                                        \
    X(valid_signals)                                                       \
    X(default_int_handler)                                                 \
    X(sig_dfl)                                                             \
    X(threading_enumerate)                                                 \
    X(weakset)                                                             \
    X(weakvaluedict)                                                       \
    X(signal_dispatch)                                                     \
    X(tcp_transport_type)                                                  \
    X(unix_transport_type)                                                 \
    X(transport_socket)                                                    \
    X(buffered_protocol)                                                   \
    X(set_result_unless_cancelled)                                         \
    X(ssl_protocol)                                                        \
    X(logger)                                                              \
    X(selector_make_socket_transport)                                      \
    X(selector_make_ssl_transport)                                         \
    X(selector_accept_connection)                                          \
    X(socket_type)                                                         \
    X(kw_fileno)                                                           \
    X(kw_wait)                                                             \
    X(str_data_received)                                                   \
    X(str_get_buffer)                                                      \
    X(str_buffer_updated)                                                  \
    X(str_eof_received)                                                    \
    X(str_connection_made)                                                 \
    X(str_connection_lost)                                                 \
    X(str_pause_writing)                                                   \
    X(str_resume_writing)                                                  \
    X(str_call_connection_lost)                                            \
    X(str_start_reading)                                                   \
    X(str_transports)                                                      \
    X(str_detach)                                                          \
    X(kw_ssl_timeouts)                                                     \
    X(str_context)                                                         \
    X(str_call_exception_handler)                                          \
    X(str_message)                                                         \
    X(str_exception)                                                       \
    X(str_handle)                                                          \
    X(str_source_traceback)                                                \
    X(str_cancelled)                                                       \
    X(str_cancelled_attr)                                                  \
    X(str_run)                                                             \
    X(str_get_debug)                                                       \
    X(str_timer_handle_cancelled)                                          \
    X(str_check_callback)                                                  \
    X(str_default_executor)                                                \
    X(kw_loop)                                                             \
    X(kw_loop_name)                                                        \
    X(kw_loop_context)                                                     \
    X(kw_loop_name_context)                                                \
    X(kw_context)                                                          \
    X(kw_firstiter_finalizer)                                              \
    X(kw_warn_on_full_buffer)                                              \
    X(empty_tuple)                                                         \
    X(args_context)                                                        \
    X(args_create_task)                                                    \
    X(args_extra_info)                                                     \
    X(args_socket_transport)                                               \
    X(args_ssl_transport)                                                  \
    X(args_accept_connection)

/* Returns getattr(module named modname, name), or the module itself if
 * name is NULL. New reference or NULL. */
static PyObject *
import_attr(const char *modname, const char *name)
{
    PyObject *mod = PyImport_ImportModule(modname);
    if (mod == NULL || name == NULL) {
        return mod;
    }
    PyObject *attr = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return attr;
}

static int
init_imports(apy_loop_state_t *st)
{
    static const struct {
        size_t offset;
        const char *module;
        const char *name;
    } imports[] = {
#define IMP(field, mod, name) {offsetof(apy_loop_state_t, field), mod, name}
        IMP(future_type, "asyncio.futures", "Future"),
        IMP(task_type, "asyncio.tasks", "Task"),
        /* Looked up per run, as BaseEventLoop does: tests swap in the
         * pure-Python implementations. */
        IMP(events, "asyncio.events", NULL),
        IMP(format_callback_source, "asyncio.format_helpers",
            "_format_callback_source"),
        IMP(extract_stack, "asyncio.format_helpers", "extract_stack"),
        /* Modules, not their functions, where tests patch the
         * attribute (debug-mode only paths, so the lookup is cheap). */
        IMP(base_events, "asyncio.base_events", NULL),
        IMP(run_until_complete_cb, "asyncio.base_events",
            "_run_until_complete_cb"),
        IMP(ensure_future, "asyncio.tasks", "ensure_future"),
        IMP(isfuture, "asyncio.futures", "isfuture"),
        IMP(set_task_name, "asyncio.tasks", "_set_task_name"),
        IMP(coroutines, "asyncio.coroutines", NULL),
        IMP(iscoroutine, "asyncio.coroutines", "iscoroutine"),
        IMP(iscoroutinefunction, "asyncio.coroutines",
            "iscoroutinefunction"),
        IMP(get_asyncgen_hooks, "sys", "get_asyncgen_hooks"),
        IMP(set_asyncgen_hooks, "sys", "set_asyncgen_hooks"),
        IMP(get_origin_depth, "sys", "get_coroutine_origin_tracking_depth"),
        IMP(set_origin_depth, "sys", "set_coroutine_origin_tracking_depth"),
        IMP(set_wakeup_fd, "signal", "set_wakeup_fd"),
        IMP(signal_signal, "signal", "signal"),
        IMP(siginterrupt, "signal", "siginterrupt"),
        IMP(valid_signals, "signal", "valid_signals"),
        IMP(default_int_handler, "signal", "default_int_handler"),
        IMP(sig_dfl, "signal", "SIG_DFL"),
        IMP(threading_enumerate, "threading", "enumerate"),
        IMP(weakset, "weakref", "WeakSet"),
        IMP(weakvaluedict, "weakref", "WeakValueDictionary"),
        IMP(selector_key, "selectors", "SelectorKey"),
        IMP(transport_socket, "asyncio.trsock", "TransportSocket"),
        IMP(buffered_protocol, "asyncio.protocols", "BufferedProtocol"),
        IMP(set_result_unless_cancelled, "asyncio.futures",
            "_set_result_unless_cancelled"),
        IMP(ssl_protocol, "asyncio.sslproto", "SSLProtocol"),
        IMP(logger, "asyncio.log", "logger"),
        IMP(socket_type, "socket", "socket"),
#undef IMP
    };
    for (size_t i = 0; i < sizeof(imports) / sizeof(imports[0]); i++) {
        PyObject *v = import_attr(imports[i].module, imports[i].name);
        if (v == NULL) {
            return -1;
        }
        *(PyObject **)((char *)st + imports[i].offset) = v;
    }
    return 0;
}

/* A tuple of the interned names, up to a NULL, for apy__args_parse().
 * New reference or NULL. */
static PyObject *
names_tuple(const char *const *names)
{
    Py_ssize_t n = 0;
    while (names[n] != NULL) {
        n++;
    }
    PyObject *t = PyTuple_New(n);
    if (t == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyUnicode_InternFromString(names[i]);
        if (s == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

static int
init_strings(apy_loop_state_t *st)
{
#define STR(field, text)                                                   \
    do {                                                                   \
        st->field = PyUnicode_InternFromString(text);                      \
        if (st->field == NULL) {                                           \
            return -1;                                                     \
        }                                                                  \
    } while (0)
    STR(str_context, "context");
    STR(str_call_exception_handler, "call_exception_handler");
    STR(str_message, "message");
    STR(str_exception, "exception");
    STR(str_handle, "handle");
    STR(str_source_traceback, "source_traceback");
    STR(str_cancelled, "cancelled");
    STR(str_cancelled_attr, "_cancelled");
    STR(str_run, "_run");
    STR(str_get_debug, "get_debug");
    STR(str_timer_handle_cancelled, "_timer_handle_cancelled");
    STR(str_check_callback, "_check_callback");
    STR(str_default_executor, "_default_executor");
    STR(str_data_received, "data_received");
    STR(str_get_buffer, "get_buffer");
    STR(str_buffer_updated, "buffer_updated");
    STR(str_eof_received, "eof_received");
    STR(str_connection_made, "connection_made");
    STR(str_connection_lost, "connection_lost");
    STR(str_pause_writing, "pause_writing");
    STR(str_resume_writing, "resume_writing");
    STR(str_call_connection_lost, "_call_connection_lost");
    STR(str_start_reading, "_start_reading");
    STR(str_transports, "_transports");
    STR(str_detach, "detach");
#undef STR
#define KW(field, ...)                                                     \
    do {                                                                   \
        st->field = Py_BuildValue(__VA_ARGS__);                            \
        if (st->field == NULL) {                                           \
            return -1;                                                     \
        }                                                                  \
    } while (0)
    KW(kw_loop, "(s)", "loop");
    KW(kw_loop_name, "(ss)", "loop", "name");
    KW(kw_loop_context, "(ss)", "loop", "context");
    KW(kw_loop_name_context, "(sss)", "loop", "name", "context");
    KW(kw_context, "(s)", "context");
    KW(kw_firstiter_finalizer, "(ss)", "firstiter", "finalizer");
    KW(kw_warn_on_full_buffer, "(s)", "warn_on_full_buffer");
    KW(empty_tuple, "()");
    KW(kw_ssl_timeouts, "(ss)", "ssl_handshake_timeout",
       "ssl_shutdown_timeout");
    KW(kw_fileno, "(s)", "fileno");
    KW(kw_wait, "(s)", "wait");
#undef KW
#define NAMES(field, ...)                                                  \
    do {                                                                   \
        st->field = names_tuple((const char *const[]){__VA_ARGS__, NULL}); \
        if (st->field == NULL) {                                           \
            return -1;                                                     \
        }                                                                  \
    } while (0)
    NAMES(args_context, "context");
    NAMES(args_create_task, "coro", "name", "context");
    NAMES(args_extra_info, "name", "default");
    NAMES(args_socket_transport, "sock", "protocol", "waiter", "extra",
          "server");
    NAMES(args_ssl_transport, "rawsock", "protocol", "sslcontext", "waiter",
          "server_side", "server_hostname", "extra", "server",
          "ssl_handshake_timeout", "ssl_shutdown_timeout");
    NAMES(args_accept_connection, "protocol_factory", "sock", "sslcontext",
          "server", "backlog", "ssl_handshake_timeout",
          "ssl_shutdown_timeout");
#undef NAMES
    return 0;
}

/* time.get_clock_info('monotonic').resolution, as BaseEventLoop. */
static int
init_clock(apy_loop_state_t *st)
{
    PyObject *info = NULL, *res = NULL;
    PyObject *get = import_attr("time", "get_clock_info");
    if (get != NULL) {
        info = PyObject_CallFunction(get, "s", "monotonic");
        Py_DECREF(get);
    }
    if (info != NULL) {
        res = PyObject_GetAttrString(info, "resolution");
        Py_DECREF(info);
    }
    if (res == NULL) {
        return -1;
    }
    st->clock_resolution = PyFloat_AsDouble(res);
    Py_DECREF(res);
    return PyErr_Occurred() ? -1 : 0;
}

/* Builds apyrun.Loop = type("Loop", (_LoopCore, _UnixSelectorEventLoop),
 * ns): asyncio's Python code supplies every method the C core does not
 * define (sockets, servers, transports, subprocesses, DNS, TLS...), and
 * the C methods come first in the MRO. */
static int
init_classes(PyObject *module, apy_loop_state_t *st)
{
    PyObject *unix_loop = import_attr("asyncio.unix_events",
                                      "_UnixSelectorEventLoop");
    if (unix_loop == NULL) {
        return -1;
    }
    PyObject *policy_base = import_attr("asyncio", "DefaultEventLoopPolicy");
    if (policy_base == NULL) {
        Py_DECREF(unix_loop);
        return -1;
    }
    st->loop_type = PyObject_CallFunction(
        (PyObject *)&PyType_Type, "s(OO){s:s,s:s,s:s}", "Loop",
        (PyObject *)st->core_type, unix_loop, "__module__", "apyrun",
        "__qualname__", "Loop", "__doc__",
        "asyncio event loop whose core is written in C on libuv.");
    Py_DECREF(unix_loop);
    if (st->loop_type != NULL) {
        st->policy_type = PyObject_CallFunction(
            (PyObject *)&PyType_Type, "s(O){s:O,s:s,s:s}", "EventLoopPolicy",
            policy_base, "_loop_factory", st->loop_type, "__module__",
            "apyrun", "__doc__",
            "asyncio's default policy, creating apyrun loops.");
    }
    Py_DECREF(policy_base);
    if (st->policy_type == NULL) {
        return -1;
    }
    st->never_completed_error = PyErr_NewExceptionWithDoc(
        "apyrun.NeverCompletedError",
        "run_until_complete() found its future pending with nothing left "
        "that could complete it (stall detection).",
        PyExc_RuntimeError, NULL);
    if (st->never_completed_error == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Loop", st->loop_type) < 0 ||
        PyModule_AddObjectRef(module, "EventLoopPolicy", st->policy_type) <
            0 ||
        PyModule_AddObjectRef(module, "NeverCompletedError",
                              st->never_completed_error) < 0 ||
        PyModule_AddObjectRef(module, "Handle",
                              (PyObject *)st->handle_type) < 0 ||
        PyModule_AddObjectRef(module, "TimerHandle",
                              (PyObject *)st->timer_type) < 0 ||
        PyModule_AddObjectRef(module, "_LoopCore",
                              (PyObject *)st->core_type) < 0) {
        return -1;
    }
    return 0;
}

/* Creates apyrun.TCPTransport on asyncio's transports._FlowControlMixin
 * (so isinstance() checks for Transport and _FlowControlMixin hold), and
 * fetches what the transports need from selector_events and constants.
 * Returns 0 or -1. */
static int
init_transports(PyObject *module, apy_loop_state_t *st)
{
    PyObject *base = import_attr("asyncio.transports", "_FlowControlMixin");
    if (base == NULL) {
        return -1;
    }
    /* The layout reserves the mixin's slots; a different stdlib would
     * break that silently, so refuse it loudly. */
    if (((PyTypeObject *)base)->tp_basicsize !=
        (Py_ssize_t)offsetof(ApyStreamObject, dict)) {
        PyErr_Format(PyExc_RuntimeError,
                     "apyrun: asyncio.transports._FlowControlMixin has an "
                     "unexpected layout (%zd bytes)",
                     ((PyTypeObject *)base)->tp_basicsize);
        Py_DECREF(base);
        return -1;
    }
    st->tcp_transport_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &apy__tcp_transport_spec, base);
    st->unix_transport_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &apy__unix_transport_spec, base);
    Py_DECREF(base);
    if (st->tcp_transport_type == NULL || st->unix_transport_type == NULL) {
        return -1;
    }
    PyObject *sel = import_attr("asyncio.selector_events",
                                "BaseSelectorEventLoop");
    if (sel == NULL) {
        return -1;
    }
    st->selector_make_socket_transport =
        PyObject_GetAttrString(sel, "_make_socket_transport");
    st->selector_make_ssl_transport =
        PyObject_GetAttrString(sel, "_make_ssl_transport");
    st->selector_accept_connection =
        PyObject_GetAttrString(sel, "_accept_connection");
    Py_DECREF(sel);
    if (st->selector_make_socket_transport == NULL ||
        st->selector_make_ssl_transport == NULL ||
        st->selector_accept_connection == NULL) {
        return -1;
    }
    PyObject *threshold = import_attr("asyncio.constants",
                                      "LOG_THRESHOLD_FOR_CONNLOST_WRITES");
    if (threshold == NULL) {
        return -1;
    }
    PyObject *mode = import_attr("asyncio.constants", "_SendfileMode");
    if (mode == NULL) {
        Py_DECREF(threshold);
        return -1;
    }
    PyObject *try_native = PyObject_GetAttrString(mode, "TRY_NATIVE");
    Py_DECREF(mode);
    if (try_native == NULL) {
        Py_DECREF(threshold);
        return -1;
    }
    st->connlost_log_threshold = PyLong_AsLong(threshold);
    Py_DECREF(threshold);
    PyObject *max_size = PyLong_FromLong(APY_READ_MAX);
    int r = max_size == NULL;
    PyTypeObject *types[2] = {st->tcp_transport_type,
                              st->unix_transport_type};
    const char *names[2] = {"TCPTransport", "UnixTransport"};
    for (int i = 0; i < 2 && !r; i++) {
        PyObject *tp = (PyObject *)types[i];
        r = PyObject_SetAttrString(tp, "_start_tls_compatible", Py_True) <
                0 ||
            PyObject_SetAttrString(tp, "_sendfile_compatible", try_native) <
                0 ||
            PyObject_SetAttrString(tp, "max_size", max_size) < 0 ||
            PyModule_AddObjectRef(module, names[i], tp) < 0;
    }
    Py_XDECREF(max_size);
    Py_DECREF(try_native);
    return r ? -1 : 0;
}

/* A zeroed state, or NULL with MemoryError. */
apy_loop_state_t *
apy_loop_state_new(void)
{
    apy_loop_state_t *st = PyMem_Calloc(1, sizeof(*st));
    if (st == NULL) {
        PyErr_NoMemory();
    }
    return st;
}

/* 0, or -1 with an exception set. */
int
apy_loop_state_init(PyObject *module, apy_loop_state_t *st)
{
    st->handle_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &apy__handle_spec, NULL);
    if (st->handle_type == NULL) {
        return -1;
    }
    st->timer_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &apy__timer_spec, (PyObject *)st->handle_type);
    if (st->timer_type == NULL) {
        return -1;
    }
    st->core_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &apy__loop_core_spec, NULL);
    if (st->core_type == NULL) {
        return -1;
    }
    st->core_dealloc = st->core_type->tp_dealloc;
    st->selector_view_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &apy__selector_view_spec, NULL);
    if (st->selector_view_type == NULL) {
        return -1;
    }
    if (init_imports(st) < 0 || init_strings(st) < 0 || init_clock(st) < 0 ||
        init_transports(module, st) < 0) {
        return -1;
    }
    st->signal_dispatch =
        PyCMethod_New(&apy__signal_dispatch_def, module, NULL, NULL);
    if (st->signal_dispatch == NULL) {
        return -1;
    }
    return init_classes(module, st);
}

/* GC traverse of every object the state holds. */
int
apy_loop_state_traverse(apy_loop_state_t *st, visitproc visit, void *arg)
{
    if (st == NULL) {
        return 0;
    }
#define VISIT(field) Py_VISIT(st->field);
    STATE_OBJECTS(VISIT)
#undef VISIT
    return 0;
}

/* Drops every reference and the freelists; never fails. */
void
apy_loop_state_clear(apy_loop_state_t *st)
{
    if (st == NULL) {
        return;
    }
#define CLEAR(field) Py_CLEAR(st->field);
    STATE_OBJECTS(CLEAR)
#undef CLEAR
    /* Dead Handles waiting for reuse are raw memory now; later deaths go
     * straight to tp_free. */
    st->freelist_off = 1;
    while (st->nhandle_free > 0) {
        PyObject_GC_Del(st->handle_free[--st->nhandle_free]);
    }
    while (st->ntimer_free > 0) {
        PyObject_GC_Del(st->timer_free[--st->ntimer_free]);
    }
    for (int i = 0; i < APY_NSIG; i++) {
        st->signal_loops[i] = NULL;
    }
}

/* Clears and frees st; NULL is allowed. */
void
apy_loop_state_free(apy_loop_state_t *st)
{
    apy_loop_state_clear(st);
    PyMem_Free(st);
}

/* Borrowed, or NULL before init; never fails. */
PyObject *
apy_loop_state_loop_type(const apy_loop_state_t *st)
{
    return st->loop_type;
}

/* Borrowed, or NULL before init; never fails. */
PyObject *
apy_loop_state_policy_type(const apy_loop_state_t *st)
{
    return st->policy_type;
}
