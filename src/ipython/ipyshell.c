/* SPDX-License-Identifier: MIT */
/* get_ipython(): the shell a notebook's code sees, made on the first call
 * (never on the path of a notebook that does not ask: importing IPython
 * costs a quarter of a second). Where IPython is importable it is a
 * subclass of IPython's InteractiveShell over __main__, its history in
 * memory, whose run_line_magic/run_cell_magic run apyrun's own magics
 * (%cd, %env, %pip, %matplotlib, %%time, %%capture, %%bash, %%sh,
 * %%writefile) as a cell's `%` line would, and IPython's for the rest;
 * otherwise a small shell with what apyrun implements: user_ns,
 * user_module, run_line_magic, run_cell_magic, system, getoutput,
 * execution_count and events. Around each cell of a run the shell's
 * events fire as in IPython's run_cell (apy_ipy_cell_begin/end). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "apyrun/ipython.h"
#include "internal.h"

/* The magics apyrun runs itself when the shell is asked by name. %time
 * is not one: IPython's times the statement in its argument. */
static const char *const own_line[] = {"cd", "env", "set_env", "pip",
                                       "matplotlib", "config",
                                       "killbgscripts", NULL};
static const char *const own_cell[] = {
    "time", "capture", "writefile", "script", "bash", "sh", "perl",
    "ruby", "python", "python2", "python3", "pypy", NULL,
};
static const char *const event_names[] = {
    "pre_execute", "pre_run_cell", "post_execute", "post_run_cell",
    "shell_initialized", NULL,
};

static int
listed(const char *const *names, PyObject *name)
{
    for (const char *const *n = names; *n != NULL; n++) {
        if (PyUnicode_CompareWithASCIIString(name, *n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- the methods both shells share (self: the helper) ---- */

/* shell is IPython's (subclassed), not the small one: said by its type,
 * since the helper knows only once the shell's __init__ returned, and
 * __init__ runs magics itself (%colors). */
static int
is_ipython(PyObject *shell)
{
    return Py_TYPE(shell)->tp_base != &PyBaseObject_Type;
}

/* IPython's own method name of shell's class, ApyrunShell or one a
 * program made (new: the first on its MRO that is not apyrun's instance
 * method), or NULL with AttributeError. */
static PyObject *
base_method(PyObject *shell, const char *name)
{
    PyObject *mro = Py_TYPE(shell)->tp_mro;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyObject *dict = ((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_dict;
        PyObject *f = dict != NULL ? PyDict_GetItemString(dict, name) : NULL;
        if (f != NULL && !PyInstanceMethod_Check(f)) {
            return Py_NewRef(f);
        }
    }
    return PyErr_Format(PyExc_AttributeError, "the shell has no %s", name);
}

/* InteractiveShell's method name on args (args[0] the shell). */
static PyObject *
call_base(const char *name, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    PyObject *f = base_method(args[0], name);
    if (f == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_Vectorcall(f, args, (size_t)nargs, kwnames);
    Py_DECREF(f);
    return r;
}

/* run_line_magic(shell, magic_name, line, _stack_depth=1). */
static PyObject *
shell_run_line_magic(ApyIpyMagicsObject *self, PyObject *const *args,
                     Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs < 3 || !PyUnicode_Check(args[1]) || !PyUnicode_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "run_line_magic(magic_name, line)");
        return NULL;
    }
    if (listed(own_line, args[1]) || !is_ipython(args[0])) {
        return apy__ipy_magics_line_magic(self, args + 1, 2);
    }
    /* IPython's own, which finds the caller's frame by _stack_depth: no
     * Python frame stands between (this is C). */
    return call_base("run_line_magic", args, nargs, kwnames);
}

/* The text of a %%magic cell: "%%name line\nbody". New, or NULL. */
static PyObject *
cell_text(PyObject *name, PyObject *line, PyObject *body)
{
    return PyUnicode_FromFormat("%%%%%U %U\n%U", name, line, body);
}

/* run_cell_magic(shell, magic_name, line, cell). */
static PyObject *
shell_run_cell_magic(ApyIpyMagicsObject *self, PyObject *const *args,
                     Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 4 || kwnames != NULL || !PyUnicode_Check(args[1])
        || !PyUnicode_Check(args[2]) || !PyUnicode_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "run_cell_magic(magic_name, line, cell)");
        return NULL;
    }
    if (!listed(own_cell, args[1]) && is_ipython(args[0])) {
        return call_base("run_cell_magic", args, nargs, NULL);
    }
    /* Ours, or (the small shell) IPython's error for the others: the
     * body is exec()ed in the caller's namespace, as a call can only. */
    PyObject *globals = apy__ipy_caller_globals(self); /* borrowed */
    if (globals == NULL) {
        globals = PyObject_GetAttrString(args[0], "user_ns");
        if (globals == NULL) {
            return NULL;
        }
    } else {
        Py_INCREF(globals);
    }
    PyObject *r = NULL;
    PyObject *text = cell_text(args[1], args[2], args[3]);
    if (text != NULL) {
        PyObject *call[2] = {text, globals};
        r = apy__ipy_magics_run_cell_magic(self, call, 2);
        Py_DECREF(text);
    }
    Py_DECREF(globals);
    return r;
}

static PyObject *
shell_system(ApyIpyMagicsObject *self, PyObject *const *args,
             Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "system(cmd)");
        return NULL;
    }
    return apy__ipy_system(apy__ipy_caller_globals(self), args[1],
                           apy__ipy_on_pty(self));
}

static PyObject *
shell_getoutput(ApyIpyMagicsObject *self, PyObject *const *args,
                Py_ssize_t nargs)
{
    if (nargs < 2 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "getoutput(cmd)");
        return NULL;
    }
    return apy__ipy_getoutput(apy__ipy_caller_globals(self), args[1]);
}

/* enable_gui(gui), which IPython's enable_matplotlib calls: the
 * frontends' backends (inline, nbagg, ipympl) need no event loop, as in
 * ipykernel; a GUI toolkit's loop is not apyrun's (its %matplotlib GUI
 * names select the GUI backend, without IPython). */
static PyObject *
shell_enable_gui(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const none[] = {"inline", "nbagg", "notebook",
                                       "widget", "ipympl", NULL};
    (void)self;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "enable_gui(gui=None)");
        return NULL;
    }
    PyObject *gui = nargs > 1 ? args[1] : Py_None;
    int ok = gui == Py_None;
    for (const char *const *n = none; !ok && *n != NULL; n++) {
        ok = PyUnicode_Check(gui)
             && PyUnicode_CompareWithASCIIString(gui, *n) == 0;
    }
    if (!ok) {
        return PyErr_Format(PyExc_ValueError, "GUI event loop %R is not "
                            "run in a notebook under apyrun", gui);
    }
    if (PyObject_SetAttrString(args[0], "active_eventloop", gui) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
shell_get_ipython(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    return Py_NewRef(nargs > 0 ? args[0] : Py_None);
}

/* ---- the small shell's events, as IPython.core.events.EventManager ---- */

static PyObject *
event_list(PyObject *events, PyObject *name)
{
    PyObject *callbacks = PyObject_GetAttrString(events, "callbacks");
    if (callbacks == NULL) {
        return NULL;
    }
    PyObject *list = PyDict_GetItemWithError(callbacks, name); /* borrowed */
    if (list == NULL && !PyErr_Occurred()) {
        PyErr_Format(PyExc_KeyError, "Unknown event type: %R", name);
    }
    Py_XINCREF(list);
    Py_DECREF(callbacks);
    return list;
}

/* register(events, name, function) / unregister(events, name, function). */
static PyObject *
events_change(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "register(event, function)");
        return NULL;
    }
    int add = self != NULL;
    if (add && !PyCallable_Check(args[2])) {
        return PyErr_Format(PyExc_TypeError, "Need a callable, got %R",
                            args[2]);
    }
    PyObject *list = event_list(args[0], args[1]);
    if (list == NULL) {
        return NULL;
    }
    int rc = 0;
    int have = PySequence_Contains(list, args[2]);
    if (have < 0) {
        rc = -1;
    } else if (add && !have) {
        rc = PyList_Append(list, args[2]);
    } else if (!add && have) {
        PyObject *r = PyObject_CallMethod(list, "remove", "(O)", args[2]);
        rc = r != NULL ? 0 : -1;
        Py_XDECREF(r);
    } else if (!add) {
        PyErr_Format(PyExc_ValueError, "Function %R is not registered as "
                     "a %U callback", args[2], args[1]);
        rc = -1;
    }
    Py_DECREF(list);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

/* trigger(events, name, *args): each callback in turn; one that raises
 * is reported on stderr and the others still run, as IPython's. */
static PyObject *
events_trigger(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError, "trigger(event, *args)");
        return NULL;
    }
    PyObject *list = event_list(args[0], args[1]);
    PyObject *copy = list != NULL ? PySequence_List(list) : NULL;
    Py_XDECREF(list);
    if (copy == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(copy); i++) {
        PyObject *fn = PyList_GET_ITEM(copy, i); /* borrowed */
        PyObject *r = PyObject_Vectorcall(fn, args + 2, (size_t)(nargs - 2),
                                          NULL);
        if (r == NULL) {
            PySys_FormatStderr("Error in callback %R (for %U):\n", fn,
                               args[1]);
            PyErr_Print();
        }
        Py_XDECREF(r);
    }
    Py_DECREF(copy);
    Py_RETURN_NONE;
}

/* ---- making the classes ---- */

/* Puts name: an instance method calling def (bound to self) into ns. */
static int
put_method(PyObject *ns, PyMethodDef *def, PyObject *self)
{
    PyObject *f = PyCFunction_NewEx(def, self, NULL);
    PyObject *m = f != NULL ? PyInstanceMethod_New(f) : NULL;
    Py_XDECREF(f);
    if (m == NULL) {
        return -1;
    }
    int rc = PyDict_SetItemString(ns, def->ml_name, m);
    Py_DECREF(m);
    return rc;
}

static PyMethodDef shell_defs[] = {
    {"run_line_magic", (PyCFunction)(void (*)(void))shell_run_line_magic,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"run_cell_magic", (PyCFunction)(void (*)(void))shell_run_cell_magic,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"enable_gui", (PyCFunction)(void (*)(void))shell_enable_gui,
     METH_FASTCALL, NULL},
    /* The small shell only, from here. */
    {"system", (PyCFunction)(void (*)(void))shell_system, METH_FASTCALL,
     NULL},
    {"getoutput", (PyCFunction)(void (*)(void))shell_getoutput,
     METH_FASTCALL, NULL},
    {"get_ipython", (PyCFunction)(void (*)(void))shell_get_ipython,
     METH_FASTCALL, NULL},
};
#define IPYTHON_DEFS 3
#define ALL_DEFS (sizeof(shell_defs) / sizeof(shell_defs[0]))

/* "register"'s self is not NULL: that is how events_change tells. */
static PyMethodDef event_defs[] = {
    {"register", (PyCFunction)(void (*)(void))events_change, METH_FASTCALL,
     NULL},
    {"unregister", (PyCFunction)(void (*)(void))events_change,
     METH_FASTCALL, NULL},
    {"trigger", (PyCFunction)(void (*)(void))events_trigger, METH_FASTCALL,
     NULL},
};

/* type(name, (base,), {methods}) with __module__ "apyrun". New, or NULL. */
static PyObject *
make_class(const char *name, PyObject *base, PyMethodDef *defs, size_t n,
           PyObject *const *selves, const char *doc)
{
    PyObject *cls = NULL;
    PyObject *ns = Py_BuildValue("{ssss}", "__module__", "apyrun", "__doc__",
                                 doc);
    if (ns == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (put_method(ns, &defs[i], selves[i]) < 0) {
            goto error;
        }
    }
    cls = PyObject_CallFunction((PyObject *)&PyType_Type, "s(O)O", name,
                                base, ns);
error:
    Py_DECREF(ns);
    return cls;
}

/* The small shell's events object: callbacks {name: []}. New, or NULL. */
static PyObject *
small_events(void)
{
    PyObject *selves[] = {Py_True, NULL, NULL};
    PyObject *events = NULL, *callbacks = NULL;
    PyObject *cls = make_class("EventManager", (PyObject *)&PyBaseObject_Type,
                               event_defs, 3, selves,
                               "apyrun's IPython-like event callbacks");
    if (cls == NULL) {
        return NULL;
    }
    events = PyObject_CallNoArgs(cls);
    callbacks = PyDict_New();
    if (events == NULL || callbacks == NULL) {
        goto error;
    }
    for (const char *const *n = event_names; *n != NULL; n++) {
        PyObject *list = PyList_New(0);
        if (list == NULL || PyDict_SetItemString(callbacks, *n, list) < 0) {
            Py_XDECREF(list);
            goto error;
        }
        Py_DECREF(list);
    }
    if (PyObject_SetAttrString(events, "callbacks", callbacks) < 0) {
        goto error;
    }
    Py_DECREF(callbacks);
    Py_DECREF(cls);
    return events;
error:
    Py_XDECREF(callbacks);
    Py_XDECREF(events);
    Py_DECREF(cls);
    return NULL;
}

/* The namespace and module the shell works in: the run's __main__. */
static int
main_of(ApyIpyMagicsObject *self, PyObject **module, PyObject **ns)
{
    *module = PyImport_AddModule("__main__"); /* borrowed */
    if (*module == NULL) {
        return -1;
    }
    *ns = apy__ipy_main_ns(self);
    return *ns != NULL ? 0 : -1;
}

static PyObject *
small_shell(ApyIpyMagicsObject *self)
{
    PyObject *selves[ALL_DEFS];
    PyObject *module, *ns, *shell = NULL, *events = NULL;
    for (size_t i = 0; i < ALL_DEFS; i++) {
        selves[i] = (PyObject *)self;
    }
    if (main_of(self, &module, &ns) < 0) {
        return NULL;
    }
    PyObject *cls = make_class("Shell", (PyObject *)&PyBaseObject_Type,
                               shell_defs, ALL_DEFS, selves,
                               "apyrun's shell: IPython is not importable");
    if (cls == NULL) {
        return NULL;
    }
    shell = PyObject_CallNoArgs(cls);
    events = small_events();
    PyObject *count = PyLong_FromLong(1);
    if (shell == NULL || events == NULL || count == NULL
        || PyObject_SetAttrString(shell, "user_ns", ns) < 0
        || PyObject_SetAttrString(shell, "user_module", module) < 0
        || PyObject_SetAttrString(shell, "events", events) < 0
        || PyObject_SetAttrString(shell, "execution_count", count) < 0) {
        Py_CLEAR(shell);
    }
    Py_XDECREF(count);
    Py_XDECREF(events);
    Py_DECREF(cls);
    return shell;
}

/* traitlets Config with the history in memory, as a kernel that keeps no
 * history file. New, or NULL. */
static PyObject *
shell_config(void)
{
    PyObject *loader = PyImport_ImportModule("traitlets.config.loader");
    if (loader == NULL) {
        return NULL;
    }
    PyObject *cfg = PyObject_CallMethod(loader, "Config", "({s{ss}})",
                                        "HistoryManager", "hist_file",
                                        ":memory:");
    Py_DECREF(loader);
    return cfg;
}

/* IPython's shell, subclassed; ImportError when IPython is not there. */
static PyObject *
ipython_shell(ApyIpyMagicsObject *self)
{
    PyObject *selves[IPYTHON_DEFS] = {(PyObject *)self, (PyObject *)self};
    PyObject *module, *ns, *base = NULL, *cls = NULL, *cfg = NULL;
    PyObject *kw = NULL, *inst = NULL, *shell = NULL;
    PyObject *mod = PyImport_ImportModule("IPython.core.interactiveshell");
    if (mod == NULL) {
        return NULL;
    }
    base = PyObject_GetAttrString(mod, "InteractiveShell");
    Py_DECREF(mod);
    if (base == NULL || main_of(self, &module, &ns) < 0) {
        goto error;
    }
    /* One the program made itself stands (a singleton). */
    PyObject *made = PyObject_CallMethod(base, "initialized", NULL);
    int have = made != NULL ? PyObject_IsTrue(made) : -1;
    Py_XDECREF(made);
    if (have != 0) {
        shell = have > 0 ? PyObject_CallMethod(base, "instance", NULL) : NULL;
        goto error;
    }
    cls = make_class("ApyrunShell", base, shell_defs, IPYTHON_DEFS, selves,
                     "IPython's shell over apyrun's run");
    cfg = shell_config();
    if (cls == NULL || cfg == NULL) {
        goto error;
    }
    kw = Py_BuildValue("{sOsOsO}", "config", cfg, "user_module", module,
                       "user_ns", ns);
    inst = PyObject_GetAttrString(cls, "instance");
    if (kw == NULL || inst == NULL) {
        goto error;
    }
    /* Its __init__ resets the output history in ns (_, _N, ...): what
     * the cells so far made of it is put back. */
    PyObject *kept = apy__ipy_history_names(ns);
    if (kept == NULL) {
        goto error;
    }
    PyObject *none[1];
    shell = PyObject_VectorcallDict(inst, none, 0, kw);
    if (shell != NULL && PyDict_Update(ns, kept) < 0) {
        Py_CLEAR(shell);
    }
    Py_DECREF(kept);
    /* Its exit and quit ask a terminal to leave: the builtins' are the
     * run's, as a kernel's (magics.c). */
    static const char *const exits[] = {"exit", "quit", NULL};
    for (const char *const *n = exits; shell != NULL && *n != NULL; n++) {
        if (PyDict_DelItemString(ns, *n) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
                Py_CLEAR(shell);
            } else {
                PyErr_Clear();
            }
        }
    }
error:
    Py_XDECREF(inst);
    Py_XDECREF(kw);
    Py_XDECREF(cfg);
    Py_XDECREF(cls);
    Py_XDECREF(base);
    return shell;
}

/* The shell takes the running cell: its count and (IPython's) its input
 * history. 0 or -1. */
static int
take_cell(ApyIpyMagicsObject *self, int store)
{
    PyObject *n = PyLong_FromLong(self->cell_count);
    if (n == NULL || PyObject_SetAttrString(self->shell, "execution_count",
                                            n) < 0) {
        Py_XDECREF(n);
        return -1;
    }
    Py_DECREF(n);
    if (self->shell_kind != APY_IPY_SHELL_IPYTHON || !store) {
        return 0;
    }
    /* In, _ih, _i, _ii, _iN and %history, as run_cell stores them. */
    PyObject *hm = PyObject_GetAttrString(self->shell, "history_manager");
    PyObject *text = PyUnicode_DecodeUTF8(self->cell_source,
                                          (Py_ssize_t)strlen(
                                              self->cell_source),
                                          "replace");
    PyObject *r = hm != NULL && text != NULL
                      ? PyObject_CallMethod(hm, "store_inputs", "lO",
                                            self->cell_count, text)
                      : NULL;
    Py_XDECREF(text);
    Py_XDECREF(hm);
    Py_XDECREF(r);
    return r != NULL ? 0 : -1;
}

/* Makes self->shell. 0 or -1. */
static int
make_shell(ApyIpyMagicsObject *self)
{
    PyObject *shell = ipython_shell(self);
    int kind = APY_IPY_SHELL_IPYTHON;
    if (shell == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ImportError)) {
            return -1;
        }
        PyErr_Clear();
        shell = small_shell(self);
        kind = APY_IPY_SHELL_SMALL;
        if (shell == NULL) {
            return -1;
        }
    }
    self->shell = shell;
    self->shell_kind = kind;
    /* The history so far becomes the shell's; made in a running cell,
     * it takes that cell's count (its input is in the history). */
    if (kind == APY_IPY_SHELL_IPYTHON
        && apy__ipy_hand_over_history(self) < 0) {
        return -1;
    }
    if (self->cell_source != NULL && take_cell(self, 0) < 0) {
        return -1;
    }
    if (kind == APY_IPY_SHELL_IPYTHON && apy__ipy_install_pager(self) < 0) {
        return -1;
    }
    /* A kernel's attributes: a shell with .kernel is a kernel's, not a
     * terminal's, to code that asks hasattr(ip, "kernel") (pandas'
     * display.max_columns is 20 there, as in Jupyter, not 0). */
    if (apy__ipy_kernel_attach(self, shell) < 0) {
        return -1;
    }
    /* IPython's shell put its own display() into builtins: the host puts
     * the run's back. */
    if (kind == APY_IPY_SHELL_IPYTHON && self->host != NULL
        && self->host->shell_made != NULL
        && self->host->shell_made(self->ctx) < 0) {
        return -1;
    }
    return 0;
}

PyObject *
apy__ipy_get_ipython(ApyIpyMagicsObject *self, PyObject *unused)
{
    (void)unused;
    if (self->shell == NULL && make_shell(self) < 0) {
        return NULL;
    }
    return Py_NewRef(self->shell);
}

PyObject *
apy__ipy_ipython_magic(ApyIpyMagicsObject *self, const char *kind,
                       PyObject *name, PyObject *arg, PyObject *body)
{
    if (self->shell == NULL && make_shell(self) < 0) {
        return NULL;
    }
    if (self->shell_kind != APY_IPY_SHELL_IPYTHON) {
        return PyErr_Format(PyExc_RuntimeError,
                            "%s magic %s%U needs IPython, which cannot be "
                            "imported (apyrun itself runs !cmd, %%cd, %%env, "
                            "%%time, %%pip, %%matplotlib, %%%%time, "
                            "%%%%capture, %%%%bash, %%%%sh and "
                            "%%%%writefile)",
                            kind, body ? "%%" : "%", name);
    }
    /* InteractiveShell's methods themselves: the subclass's would come
     * back here for a magic that is not apyrun's. */
    PyObject *args[4] = {self->shell, name, arg, body};
    return call_base(body != NULL ? "run_cell_magic" : "run_line_magic",
                     args, body != NULL ? 4 : 3, NULL);
}

/* ---- around each cell ---- */

/* shell.events.trigger(name[, arg]). 0 or -1. */
static int
trigger(PyObject *shell, const char *name, PyObject *arg)
{
    PyObject *events = PyObject_GetAttrString(shell, "events");
    if (events == NULL) {
        return -1;
    }
    PyObject *r = arg != NULL
                      ? PyObject_CallMethod(events, "trigger", "sO", name, arg)
                      : PyObject_CallMethod(events, "trigger", "s", name);
    Py_DECREF(events);
    Py_XDECREF(r);
    return r != NULL ? 0 : -1;
}

/* IPython's ExecutionInfo for source, or a plain namespace with the same
 * attributes (the small shell). New, or NULL. */
static PyObject *
execution_info(ApyIpyMagicsObject *self, const char *source)
{
    PyObject *mod = NULL, *cls = NULL, *kw = NULL, *info = NULL;
    /* Decoded leniently, as the history does (history.c). */
    PyObject *raw = PyUnicode_DecodeUTF8(source, (Py_ssize_t)strlen(source),
                                         "replace");
    if (raw == NULL) {
        return NULL;
    }
    int ipython = self->shell_kind == APY_IPY_SHELL_IPYTHON;
    mod = PyImport_ImportModule(ipython ? "IPython.core.interactiveshell"
                                        : "types");
    if (mod == NULL) {
        goto done;
    }
    cls = PyObject_GetAttrString(mod, ipython ? "ExecutionInfo"
                                              : "SimpleNamespace");
    kw = Py_BuildValue("{sOsOsOsOsO}", "raw_cell", raw, "store_history",
                       Py_True, "silent", Py_False, "shell_futures", Py_True,
                       "cell_id", Py_None);
    if (cls != NULL && kw != NULL) {
        PyObject *none[1];
        info = PyObject_VectorcallDict(cls, none, 0, kw);
    }
done:
    Py_XDECREF(kw);
    Py_XDECREF(cls);
    Py_XDECREF(mod);
    Py_DECREF(raw);
    return info;
}

int
apy_ipy_cell_begin(PyObject *magics, const char *source, long count)
{
    ApyIpyMagicsObject *self = (ApyIpyMagicsObject *)magics;
    Py_CLEAR(self->cell_info);
    self->cell_source = source;
    self->cell_count = count;
    if (apy__ipy_kernel_cell(self) < 0) {
        return -1;
    }
    if (self->shell_kind != APY_IPY_SHELL_IPYTHON) {
        PyObject *module, *ns;
        if (main_of(self, &module, &ns) < 0
            || apy__ipy_store_input(self, ns, source, count) < 0) {
            return -1;
        }
    }
    if (self->shell == NULL) {
        return 0;
    }
    if (take_cell(self, 1) < 0) {
        return -1;
    }
    self->cell_info = execution_info(self, source);
    if (self->cell_info == NULL) {
        return -1;
    }
    if (trigger(self->shell, "pre_execute", NULL) < 0
        || trigger(self->shell, "pre_run_cell", self->cell_info) < 0) {
        return -1;
    }
    return 0;
}

/* ExecutionResult(info) with the count and the error. New, or NULL. */
static PyObject *
execution_result(ApyIpyMagicsObject *self, PyObject *error)
{
    PyObject *res;
    if (self->shell_kind == APY_IPY_SHELL_IPYTHON) {
        PyObject *mod = PyImport_ImportModule("IPython.core.interactiveshell");
        if (mod == NULL) {
            return NULL;
        }
        res = PyObject_CallMethod(mod, "ExecutionResult", "O",
                                  self->cell_info);
        Py_DECREF(mod);
    } else {
        PyObject *types = PyImport_ImportModule("types");
        res = types != NULL ? PyObject_CallMethod(types, "SimpleNamespace",
                                                  NULL)
                            : NULL;
        Py_XDECREF(types);
        if (res != NULL
            && (PyObject_SetAttrString(res, "info", self->cell_info) < 0
                || PyObject_SetAttrString(res, "error_before_exec", Py_None)
                       < 0
                || PyObject_SetAttrString(res, "result", Py_None) < 0
                || PyObject_SetAttrString(res, "success",
                                          error ? Py_False : Py_True) < 0)) {
            Py_CLEAR(res);
        }
    }
    PyObject *count = res != NULL ? PyObject_GetAttrString(self->shell,
                                                           "execution_count")
                                  : NULL;
    if (count == NULL
        || PyObject_SetAttrString(res, "execution_count", count) < 0
        || PyObject_SetAttrString(res, "error_in_exec",
                                  error ? error : Py_None) < 0) {
        Py_CLEAR(res);
    }
    Py_XDECREF(count);
    return res;
}

int
apy_ipy_cell_end(PyObject *magics, PyObject *error)
{
    ApyIpyMagicsObject *self = (ApyIpyMagicsObject *)magics;
    if (self->shell == NULL) {
        return 0;
    }
    if (self->cell_info == NULL) {
        /* The shell was made in this cell: its begin had no shell. */
        self->cell_info = execution_info(self, self->cell_source != NULL
                                                   ? self->cell_source
                                                   : "");
        if (self->cell_info == NULL) {
            return -1;
        }
    }
    PyObject *result = execution_result(self, error);
    /* As run_cell: the count moves on before post_run_cell. */
    PyObject *next = PyLong_FromLong(self->cell_count + 1);
    int rc = -1;
    if (result != NULL && next != NULL
        && trigger(self->shell, "post_execute", NULL) == 0
        && PyObject_SetAttrString(self->shell, "execution_count", next) == 0
        && trigger(self->shell, "post_run_cell", result) == 0) {
        rc = 0;
    }
    Py_XDECREF(next);
    Py_XDECREF(result);
    Py_CLEAR(self->cell_info);
    self->cell_source = NULL;
    return rc;
}

/* ---- text/plain ---- */

/* IPython.lib.pretty, imported once, or NULL (no exception) without it. */
static PyObject *
pretty_module(ApyIpyMagicsObject *self)
{
    if (self->pretty == NULL) {
        self->pretty = PyImport_ImportModule("IPython.lib.pretty");
        if (self->pretty == NULL) {
            PyErr_Clear(); /* not installed, or broken: repr() it is */
            self->pretty = Py_NewRef(Py_None);
        }
    }
    return self->pretty != Py_None ? self->pretty : NULL;
}

/* What PlainTextFormatter.__call__ does with the shell's formatter f,
 * without its catch-all (the caller reports a failure as ipykernel
 * does): a RepresentationPrinter over f's printers and settings. */
static PyObject *
shell_pretty(PyObject *pretty, PyObject *f, PyObject *obj)
{
    PyObject *io = NULL, *stream = NULL, *printer = NULL, *r = NULL;
    PyObject *text = NULL, *kw = NULL, *args = NULL;
    PyObject *on = PyObject_GetAttrString(f, "pprint");
    int pprint = on != NULL ? PyObject_IsTrue(on) : -1;
    Py_XDECREF(on);
    if (pprint <= 0) {
        return pprint < 0 ? NULL : PyObject_Repr(obj);
    }
    io = PyImport_ImportModule("io");
    stream = io != NULL ? PyObject_CallMethod(io, "StringIO", NULL) : NULL;
    if (stream == NULL) {
        goto error;
    }
    args = Py_BuildValue("(ONNN)", stream,
                         PyObject_GetAttrString(f, "verbose"),
                         PyObject_GetAttrString(f, "max_width"),
                         PyObject_GetAttrString(f, "newline"));
    kw = Py_BuildValue("{sNsNsNsN}",
                       "max_seq_length",
                       PyObject_GetAttrString(f, "max_seq_length"),
                       "singleton_pprinters",
                       PyObject_GetAttrString(f, "singleton_printers"),
                       "type_pprinters",
                       PyObject_GetAttrString(f, "type_printers"),
                       "deferred_pprinters",
                       PyObject_GetAttrString(f, "deferred_printers"));
    if (args == NULL || kw == NULL) {
        goto error;
    }
    PyObject *cls = PyObject_GetAttrString(pretty, "RepresentationPrinter");
    if (cls == NULL) {
        goto error;
    }
    printer = PyObject_Call(cls, args, kw);
    Py_DECREF(cls);
    if (printer == NULL) {
        goto error;
    }
    r = PyObject_CallMethod(printer, "pretty", "(O)", obj);
    if (r == NULL) {
        goto error;
    }
    Py_SETREF(r, PyObject_CallMethod(printer, "flush", NULL));
    if (r != NULL) {
        text = PyObject_CallMethod(stream, "getvalue", NULL);
    }
error:
    Py_XDECREF(r);
    Py_XDECREF(printer);
    Py_XDECREF(kw);
    Py_XDECREF(args);
    Py_XDECREF(stream);
    Py_XDECREF(io);
    return text;
}

/* 1 when IPython's pretty printer gives obj's repr() as it is: None, a
 * bool, int, float, complex, str or bytes, or a list, tuple or dict (of
 * exactly those types, a set's order being pretty's own) of such
 * things, up to *budget of them, whose repr fits in 79 columns (pretty
 * breaks no line then). Its default printers all are repr() for these. */
static int
simple_repr(PyObject *obj, int depth, int *budget)
{
    PyTypeObject *t = Py_TYPE(obj);
    if (--*budget < 0) {
        return 0;
    }
    if (obj == Py_None || t == &PyBool_Type || t == &PyLong_Type
        || t == &PyFloat_Type || t == &PyComplex_Type || t == &PyUnicode_Type
        || t == &PyBytes_Type) {
        return 1;
    }
    if (depth >= 3) {
        return 0;
    }
    if (t == &PyList_Type || t == &PyTuple_Type) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(obj);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!simple_repr(PySequence_Fast_GET_ITEM(obj, i), depth + 1,
                             budget)) {
                return 0;
            }
        }
        return 1;
    }
    if (t == &PyDict_Type) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(obj, &pos, &k, &v)) {
            if (!simple_repr(k, depth + 1, budget)
                || !simple_repr(v, depth + 1, budget)) {
                return 0;
            }
        }
        return 1;
    }
    return 0;
}

/* obj's repr() when it is what IPython's printer would give (then
 * IPython need not be imported for it), or NULL with no exception. */
static PyObject *
repr_as_pretty(PyObject *obj)
{
    int budget = 200;
    if (!simple_repr(obj, 0, &budget)) {
        return NULL;
    }
    PyObject *r = PyObject_Repr(obj);
    if (r != NULL && PyUnicode_GET_LENGTH(r) <= 79) {
        return r;
    }
    Py_XDECREF(r);
    PyErr_Clear(); /* the printer meets the same error and reports it */
    return NULL;
}

PyObject *
apy_ipy_plain_text(PyObject *magics, PyObject *obj)
{
    ApyIpyMagicsObject *self = (ApyIpyMagicsObject *)magics;
    if (self == NULL) {
        return PyObject_Repr(obj);
    }
    /* Before the printer is imported (by us or the program, which may
     * have registered its own printers), a plain value needs none. */
    if (self->pretty == NULL && self->shell == NULL) {
        PyObject *name = PyUnicode_FromString("IPython.lib.pretty");
        PyObject *have = name != NULL ? PyImport_GetModule(name) : NULL;
        Py_XDECREF(name);
        PyObject *text = NULL;
        if (have == NULL && !PyErr_Occurred()) {
            text = repr_as_pretty(obj);
        }
        Py_XDECREF(have);
        PyErr_Clear();
        if (text != NULL) {
            return text;
        }
    }
    if (pretty_module(self) == NULL) {
        return PyObject_Repr(obj);
    }
    if (self->shell != NULL && self->shell_kind == APY_IPY_SHELL_IPYTHON) {
        /* The shell's formatter: printers registered with for_type. */
        PyObject *df = PyObject_GetAttrString(self->shell,
                                              "display_formatter");
        PyObject *all = df != NULL ? PyObject_GetAttrString(df, "formatters")
                                   : NULL;
        PyObject *f = all != NULL ? PyMapping_GetItemString(all,
                                                            "text/plain")
                                  : NULL;
        Py_XDECREF(all);
        Py_XDECREF(df);
        if (f == NULL) {
            return NULL;
        }
        PyObject *text = shell_pretty(self->pretty, f, obj);
        Py_DECREF(f);
        return text;
    }
    PyObject *kw = Py_BuildValue("{sisi}", "max_width", 79, "max_seq_length",
                                 1000);
    PyObject *f = PyObject_GetAttrString(self->pretty, "pretty");
    PyObject *text = NULL;
    if (kw != NULL && f != NULL) {
        PyObject *args[1] = {obj};
        text = PyObject_VectorcallDict(f, args, 1, kw);
    }
    Py_XDECREF(f);
    Py_XDECREF(kw);
    return text;
}
