/* SPDX-License-Identifier: MIT */
/* builtins.__apyrun_nb__, the helper object translated cells call, and
 * the line magics apyrun runs without IPython: `!cmd` and `x = !cmd`,
 * %cd, %env, %time (with translate.c), %pip, %matplotlib, and help
 * (%pinfo, %pinfo2, %psearch: `obj?`); anything else
 * goes to IPython when it is importable, else fails with a message naming
 * the magic. Cell magics are cell_magics.c's, argument parsing
 * magic_args.c's, child processes shell.c's. A run makes its own helper
 * with a host (apy_ipy_magics_new); an imported notebook with no run gets
 * a process-wide one with none (apy_ipy_magics_install). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "apyrun/ipython.h"
#include "internal.h"

/* Returns the namespace a magic works in (borrowed): the calling frame's
 * globals, which in a run are __main__'s; the run's when no Python frame
 * called (the driver); NULL when there is neither (nothing expands). */
PyObject *
apy__ipy_caller_globals(ApyIpyMagicsObject *self)
{
    PyObject *g = PyEval_GetGlobals(); /* borrowed */
    if (g == NULL && self->host != NULL) {
        g = self->host->globals(self->ctx);
    }
    return g;
}

/* ---- times ---- */

void
apy__ipy_times_now(double t[3])
{
    struct rusage ru;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t[0] = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    t[1] = t[2] = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        t[1] = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
        t[2] = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    }
}

/* Formats a duration with 3 significant digits in s, ms, µs or ns. */
static void
format_span(char *out, size_t n, double s)
{
    static const char *const units[] = {"s", "ms", "\xc2\xb5s", "ns"};
    static const double scale[] = {1.0, 1e3, 1e6, 1e9};
    int u = 0;
    /* The first unit in which the value, rounded to 3 digits, is >= 1. */
    while (u < 3 && s * scale[u] < 0.9995) {
        u++;
    }
    double scaled = s > 0 ? s * scale[u] : 0;
    if (s >= 60) {
        snprintf(out, n, "%dmin %.0fs", (int)(s / 60), s - 60 * (int)(s / 60));
        return;
    }
    snprintf(out, n, "%.3g %s", scaled, units[u]);
}

int
apy__ipy_print_times(const double t0[3])
{
    double t1[3];
    apy__ipy_times_now(t1);
    char user[32], sys[32], total[32], wall[32], line[200];
    format_span(user, sizeof(user), t1[1] - t0[1]);
    format_span(sys, sizeof(sys), t1[2] - t0[2]);
    format_span(total, sizeof(total), t1[1] - t0[1] + t1[2] - t0[2]);
    format_span(wall, sizeof(wall), t1[0] - t0[0]);
    snprintf(line, sizeof(line),
             "CPU times: user %s, sys: %s, total: %s\nWall time: %s\n", user,
             sys, total, wall);
    PyObject *out = PySys_GetObject("stdout"); /* borrowed */
    return out != NULL && out != Py_None ? PyFile_WriteString(line, out) : 0;
}

/* tic(): %time starts; returns None. */
static PyObject *
magics_tic(ApyIpyMagicsObject *self, PyObject *Py_UNUSED(ignored))
{
    apy__ipy_times_now(self->tic);
    Py_RETURN_NONE;
}

/* toc([_, value]): prints the times since tic() and returns value. */
static PyObject *
magics_toc(ApyIpyMagicsObject *self, PyObject *const *args, Py_ssize_t n)
{
    if (apy__ipy_print_times(self->tic) < 0) {
        return NULL;
    }
    return Py_NewRef(n >= 2 ? args[1] : Py_None);
}

/* system(cmd): `!cmd`. */
static PyObject *
magics_system(ApyIpyMagicsObject *self, PyObject *cmd)
{
    return apy__ipy_system(apy__ipy_caller_globals(self), cmd,
                           apy__ipy_on_pty(self));
}

/* getoutput(cmd): `x = !cmd`. */
static PyObject *
magics_getoutput(ApyIpyMagicsObject *self, PyObject *cmd)
{
    return apy__ipy_getoutput(apy__ipy_caller_globals(self), cmd);
}

/* ---- line magics ---- */

/* %cd [DIR|-]: changes directory (home without DIR, the previous one
 * with -) and prints the new one, as IPython does. Returns None or
 * NULL with an exception set. */
static PyObject *
magic_cd(ApyIpyMagicsObject *self, PyObject *arg)
{
    PyObject *os, *old, *target = NULL, *path = NULL, *strip = NULL;
    PyObject *r, *now = NULL, *result = NULL;
    os = PyImport_ImportModule("os");
    if (os == NULL) {
        return NULL;
    }
    old = PyObject_CallMethod(os, "getcwd", NULL);
    if (old == NULL) {
        goto done;
    }
    /* -q: quiet, as IPython's (its option, first). */
    const char *a = PyUnicode_AsUTF8(arg);
    int quiet = a != NULL && a[0] == '-' && a[1] == 'q'
                && (a[2] == '\0' || a[2] == ' ' || a[2] == '\t');
    if (a == NULL) {
        goto done;
    }
    if (quiet) {
        arg = strip = PyUnicode_FromString(a + 2 + strspn(a + 2, " \t"));
        if (strip == NULL) {
            goto done;
        }
    }
    if (PyUnicode_CompareWithASCIIString(arg, "-") == 0) {
        target = Py_NewRef(self->oldpwd ? self->oldpwd : old);
    } else {
        path = PyObject_GetAttrString(os, "path");
        if (path == NULL) {
            goto done;
        }
        if (PyUnicode_GET_LENGTH(arg) == 0) {
            target = PyObject_CallMethod(path, "expanduser", "s", "~");
        } else {
            /* IPython lets the directory be quoted. */
            Py_XSETREF(strip, PyObject_CallMethod(arg, "strip", "s", "'\""));
            if (strip == NULL) {
                goto done;
            }
            target = PyObject_CallMethod(path, "expanduser", "O", strip);
        }
        if (target == NULL) {
            goto done;
        }
    }
    r = PyObject_CallMethod(os, "chdir", "O", target);
    if (r == NULL) {
        goto done;
    }
    Py_DECREF(r);
    Py_XSETREF(self->oldpwd, Py_NewRef(old));
    now = PyObject_CallMethod(os, "getcwd", NULL);
    if (now == NULL) {
        goto done;
    }
    PyObject *out = PySys_GetObject("stdout"); /* borrowed */
    if (!quiet
        && (out == NULL || PyFile_WriteObject(now, out, Py_PRINT_RAW) < 0
            || PyFile_WriteString("\n", out) < 0)) {
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(now);
    Py_XDECREF(strip);
    Py_XDECREF(path);
    Py_XDECREF(target);
    Py_XDECREF(old);
    Py_DECREF(os);
    return result;
}

/* %env: all variables (a dict), one (its value), or NAME=VALUE / NAME
 * VALUE to set one ("env: NAME=VALUE" is printed). */
static PyObject *
magic_env(PyObject *arg)
{
    PyObject *name, *value, *result = NULL;
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL) {
        return NULL;
    }
    PyObject *environ = PyObject_GetAttrString(os, "environ");
    Py_DECREF(os);
    if (environ == NULL) {
        return NULL;
    }
    int kind = apy__ipy_env_args(arg, &name, &value);
    if (kind == 0) {
        result = PyDict_New();
        if (result != NULL && PyDict_Update(result, environ) < 0) {
            Py_CLEAR(result);
        }
    } else if (kind == 1) {
        result = PyObject_GetItem(environ, name);
        if (result == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_KeyError,
                         "%%env: environment variable %R is not set", name);
        }
        Py_DECREF(name);
    } else if (kind == 2) {
        if (PyObject_SetItem(environ, name, value) == 0) {
            PyObject *line = PyUnicode_FromFormat("env: %U=%U\n", name,
                                                  value);
            PyObject *out = PySys_GetObject("stdout"); /* borrowed */
            if (line != NULL && out != NULL
                && PyFile_WriteObject(line, out, Py_PRINT_RAW) == 0) {
                result = Py_NewRef(Py_None);
            }
            Py_XDECREF(line);
        }
        Py_DECREF(name);
        Py_DECREF(value);
    }
    Py_DECREF(environ);
    return result;
}

/* %pip ARGS: `sys.executable -m pip ARGS` (apyrun is a python). */
static PyObject *
magic_pip(ApyIpyMagicsObject *self, PyObject *arg)
{
    PyObject *words, *exe, *argv = NULL, *proc = NULL, *result = NULL;
    int status;
    words = apy__ipy_call_module("shlex", "split", arg);
    if (words == NULL) {
        return NULL;
    }
    exe = PySys_GetObject("executable"); /* borrowed */
    if (exe == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no sys.executable");
        goto done;
    }
    argv = Py_BuildValue("[Oss]", exe, "-m", "pip");
    if (argv == NULL
        || _PyList_Extend((PyListObject *)argv, words) == NULL) {
        goto done;
    }
    Py_DECREF(Py_None); /* _PyList_Extend's result */
    proc = apy__ipy_shell_start(argv, 1, 0);
    if (proc == NULL) {
        goto done;
    }
    status = apy__ipy_shell_pump(proc, NULL);
    if (status == -1000) {
        goto done;
    }
    apy__ipy_set_exit_code(apy__ipy_caller_globals(self), status);
    PyObject *out = PySys_GetObject("stdout"); /* borrowed */
    if (out != NULL && PyFile_WriteString(
                           "Note: you may need to restart the kernel to use "
                           "updated packages.\n", out) < 0) {
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(proc);
    Py_XDECREF(argv);
    Py_DECREF(words);
    return result;
}

/* %matplotlib [GUI]: a frontend's backend (inline, notebook, widget)
 * through IPython's own magic where it and matplotlib-inline are
 * importable, as in a kernel; otherwise, and for a GUI's name, apyrun's
 * Agg or that GUI's backend (mpl.c). */
static PyObject *
magic_matplotlib(ApyIpyMagicsObject *self, PyObject *arg)
{
    /* A backend named for itself (agg, a GUI's) shows no figures at a
     * cell's end, as in a kernel; a frontend's name does. */
    int named = apy__ipy_mpl_frontend_name(arg);
    if (named < 0) {
        return NULL;
    }
    self->mpl_hidden = !named;
    int kernel = named ? apy__ipy_mpl_frontend(arg) : 0;
    if (kernel < 0) {
        return NULL;
    }
    if (kernel) {
        PyObject *shell = apy__ipy_get_ipython(self, NULL);
        if (shell == NULL) {
            return NULL;
        }
        Py_DECREF(shell);
    }
    if (!kernel || self->shell_kind != APY_IPY_SHELL_IPYTHON) {
        return apy__ipy_mpl_agg(arg);
    }
    /* A kernel configured inline support at its start: its later
     * %matplotlib inline keeps the figure formats the program set
     * (matplotlib-inline's configure_inline_support selects them once). */
    PyObject *bi = PyImport_ImportModule("matplotlib_inline.backend_inline");
    PyObject *cis = bi != NULL ? PyObject_GetAttrString(
                                     bi, "configure_inline_support")
                               : NULL;
    Py_XDECREF(bi);
    if (cis != NULL && !PyObject_HasAttrString(cis, "current_backend")) {
        PyObject *v = PyUnicode_FromString("inline");
        if (v == NULL || PyObject_SetAttrString(cis, "current_backend", v)
                             < 0) {
            PyErr_Clear();
        }
        Py_XDECREF(v);
    }
    Py_XDECREF(cis);
    PyErr_Clear();
    PyObject *name = PyUnicode_FromString("matplotlib");
    PyObject *gui = PyObject_CallMethod(arg, "strip", NULL);
    PyObject *r = NULL;
    if (name != NULL && gui != NULL) {
        if (PyUnicode_GET_LENGTH(gui) > 0
            && PyUnicode_CompareWithASCIIString(gui, "inline") != 0) {
            /* nbagg and ipympl figures talk to the browser through a
             * kernel's comm: inline figures instead, and a note. */
            PyObject *msg = PyUnicode_FromFormat(
                "apyrun: %%matplotlib %U needs a Jupyter frontend (its "
                "figures talk to the browser through a kernel comm); "
                "figures are shown inline instead\n", gui);
            const char *m = msg != NULL ? PyUnicode_AsUTF8(msg) : NULL;
            if (m != NULL && self->host != NULL && self->host->note != NULL) {
                self->host->note(self->ctx, m);
            } else if (m != NULL) {
                PySys_WriteStderr("%s", m);
            }
            Py_XDECREF(msg);
            PyErr_Clear();
            Py_SETREF(gui, PyUnicode_FromString("inline"));
        } else if (PyUnicode_GET_LENGTH(gui) == 0) {
            Py_SETREF(gui, PyUnicode_FromString("inline"));
        }
        r = gui != NULL ? apy__ipy_ipython_magic(self, "line", name, gui,
                                                 NULL)
                        : NULL;
    }
    Py_XDECREF(gui);
    Py_XDECREF(name);
    return r;
}

/* %config InlineBackend.X = V: the InlineBackend a kernel has from its
 * start is made first (mpl.c); then IPython's %config. */
static PyObject *
magic_config(ApyIpyMagicsObject *self, PyObject *name, PyObject *arg)
{
    const char *text = PyUnicode_AsUTF8(arg);
    if (text == NULL) {
        return NULL;
    }
    text += strspn(text, " \t");
    int inline_ = strncmp(text, "InlineBackend", 13) == 0;
    if (inline_) {
        PyObject *shell = apy__ipy_get_ipython(self, NULL);
        if (shell == NULL) {
            return NULL;
        }
        int rc = self->shell_kind == APY_IPY_SHELL_IPYTHON
                     ? apy__ipy_inline_config(shell)
                     : 0;
        Py_DECREF(shell);
        if (rc < 0) {
            return NULL;
        }
    }
    return apy__ipy_ipython_magic(self, "line", name, arg, NULL);
}

PyObject *
apy__ipy_magics_line_magic(ApyIpyMagicsObject *self, PyObject *const *args,
                  Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0])
        || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "line_magic(name, arg)");
        return NULL;
    }
    PyObject *name = args[0];
    PyObject *arg = apy__ipy_expand(apy__ipy_caller_globals(self), args[1]);
    if (arg == NULL) {
        return NULL;
    }
    const char *n = PyUnicode_AsUTF8(name);
    PyObject *r;
    if (n == NULL) {
        r = NULL;
    } else if (strcmp(n, "cd") == 0) {
        r = magic_cd(self, arg);
    } else if (strcmp(n, "env") == 0 || strcmp(n, "set_env") == 0) {
        r = magic_env(arg);
    } else if (strcmp(n, "pip") == 0) {
        r = magic_pip(self, arg);
    } else if (strcmp(n, "matplotlib") == 0) {
        r = magic_matplotlib(self, arg);
    } else if (strcmp(n, "config") == 0) {
        r = magic_config(self, name, arg);
    } else if (strcmp(n, "pinfo") == 0 || strcmp(n, "pinfo2") == 0
               || strcmp(n, "psearch") == 0) {
        r = apy__ipy_help(self, n, arg);
    } else if (apy__ipy_is_kernel_magic(n)) {
        r = apy__ipy_kernel_magic(self, n, arg);
    } else if (strcmp(n, "killbgscripts") == 0) {
        apy__ipy_kill_bg(self);
        PyObject *msg = PyUnicode_FromString(
            "All background processes were killed.\n");
        r = msg != NULL && apy__ipy_write_stdout(msg) == 0
                ? Py_NewRef(Py_None)
                : NULL;
        Py_XDECREF(msg);
    } else if (strcmp(n, "time") == 0) {
        /* "%time" alone: nothing to time. */
        double t0[3];
        apy__ipy_times_now(t0);
        r = apy__ipy_print_times(t0) < 0 ? NULL : Py_NewRef(Py_None);
    } else {
        r = apy__ipy_ipython_magic(self, "line", name, arg, NULL);
    }
    Py_DECREF(arg);
    return r;
}

/* ---- the helper object ---- */

static int
magics_traverse(ApyIpyMagicsObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->oldpwd);
    Py_VISIT(self->shell);
    Py_VISIT(self->cell_info);
    Py_VISIT(self->pretty);
    Py_VISIT(self->hist_in);
    Py_VISIT(self->hist_out);
    for (int i = 0; i < 3; i++) {
        Py_VISIT(self->under[i]);
    }
    Py_VISIT(self->captured);
    Py_VISIT(self->bg);
    Py_VISIT(self->parent);
    Py_VISIT(self->kernel);
    return 0;
}

static int
magics_clear(ApyIpyMagicsObject *self)
{
    Py_CLEAR(self->oldpwd);
    Py_CLEAR(self->shell);
    Py_CLEAR(self->cell_info);
    Py_CLEAR(self->pretty);
    Py_CLEAR(self->hist_in);
    Py_CLEAR(self->hist_out);
    for (int i = 0; i < 3; i++) {
        Py_CLEAR(self->under[i]);
    }
    Py_CLEAR(self->captured);
    Py_CLEAR(self->bg);
    Py_CLEAR(self->parent);
    Py_CLEAR(self->kernel);
    return 0;
}

static void
magics_dealloc(ApyIpyMagicsObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    magics_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef magics_methods[] = {
    {"system", (PyCFunction)magics_system, METH_O, "!cmd"},
    {"getoutput", (PyCFunction)magics_getoutput, METH_O, "x = !cmd"},
    {"line_magic", (PyCFunction)(void (*)(void))apy__ipy_magics_line_magic,
     METH_FASTCALL, "%name arg"},
    {"tic", (PyCFunction)magics_tic, METH_NOARGS, "%time starts"},
    {"toc", (PyCFunction)(void (*)(void))magics_toc, METH_FASTCALL,
     "%time ends: prints the times, returns the value"},
    {"run_cell_magic",
     (PyCFunction)(void (*)(void))apy__ipy_magics_run_cell_magic,
     METH_FASTCALL, "run_cell_magic(text, globals): a %%magic cell"},
    {"get_ipython", (PyCFunction)apy__ipy_get_ipython, METH_NOARGS,
     "get_ipython(): the shell (IPython's when importable)"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot magics_slots[] = {
    {Py_tp_methods, magics_methods},
    {Py_tp_traverse, magics_traverse},
    {Py_tp_clear, magics_clear},
    {Py_tp_dealloc, magics_dealloc},
    {0, NULL},
};

static PyType_Spec magics_spec = {
    .name = "apyrun.notebook.Magics",
    .basicsize = sizeof(ApyIpyMagicsObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = magics_slots,
};

/* Returns a new helper of type tp with host (may be NULL) and ctx, or
 * NULL with an exception set. */
static PyObject *
magics_new(PyTypeObject *tp, const apy_ipy_host_t *host, void *ctx)
{
    ApyIpyMagicsObject *m = PyObject_GC_New(ApyIpyMagicsObject, tp);
    if (m == NULL) {
        return NULL;
    }
    m->host = host;
    m->ctx = ctx;
    apy__ipy_times_now(m->tic);
    m->oldpwd = NULL;
    m->shell = NULL;
    m->shell_kind = APY_IPY_SHELL_NONE;
    m->cell_info = NULL;
    m->cell_source = NULL;
    m->cell_count = 0;
    m->pretty = NULL;
    m->hist_in = m->hist_out = NULL;
    m->under[0] = m->under[1] = m->under[2] = NULL;
    m->captured = NULL;
    m->bg = NULL;
    m->parent = NULL;
    m->kernel = NULL;
    m->bg_atexit = 0;
    m->mpl_hidden = 0;
    PyObject_GC_Track(m);
    return (PyObject *)m;
}

PyObject *
apy_ipy_magics_new(const apy_ipy_host_t *host, void *ctx)
{
    /* The instance keeps its heap type alive. */
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&magics_spec);
    if (tp == NULL) {
        return NULL;
    }
    PyObject *m = magics_new(tp, host, ctx);
    Py_DECREF(tp);
    return m;
}

void
apy_ipy_magics_detach(PyObject *magics)
{
    ApyIpyMagicsObject *m = (ApyIpyMagicsObject *)magics;
    m->host = NULL;
    m->ctx = NULL;
    m->cell_source = NULL; /* the host's text goes with it */
}

int
apy_ipy_magics_install(void)
{
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    PyObject *key, *m;
    int have, rc = -1;
    if (builtins == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no builtins");
        return -1;
    }
    key = PyUnicode_FromString("__apyrun_nb__");
    if (key == NULL) {
        return -1;
    }
    have = PyDict_Contains(builtins, key);
    if (have != 0) {
        /* A run's helper, or one installed before: keep it. */
        Py_DECREF(key);
        return have < 0 ? -1 : 0;
    }
    /* builtins keeps the helper for the rest of the process. */
    m = apy_ipy_magics_new(NULL, NULL);
    if (m != NULL) {
        rc = apy_ipy_magics_put(m);
        Py_DECREF(m);
    }
    Py_DECREF(key);
    return rc;
}

/* exit(keep_kernel=False) and quit() in a notebook run: as ipykernel's,
 * they only ask the frontend to close the kernel, which nbclient and
 * papermill ignore: nothing is recorded, the run goes on. apyrun says so
 * on its stderr; sys.exit() ends a run. */
static PyObject *
magics_exit(ApyIpyMagicsObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"keep_kernel", NULL};
    int keep = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:exit", kwlist,
                                     &keep)) {
        return NULL;
    }
    static const char note[] =
        "apyrun: exit() does not end a notebook run, as it does not in a "
        "Jupyter kernel run by nbclient; sys.exit() does\n";
    if (self->host != NULL && self->host->note != NULL) {
        if (self->host->note(self->ctx, note) < 0) {
            return NULL;
        }
    } else {
        PySys_WriteStderr("%s", note);
    }
    Py_RETURN_NONE;
}

static PyMethodDef exit_def = {
    "exit", (PyCFunction)(void (*)(void))magics_exit,
    METH_VARARGS | METH_KEYWORDS,
    "exit(keep_kernel=False)\n--\n\nAs in a Jupyter kernel: the notebook "
    "run goes on (sys.exit() ends it).",
};

int
apy_ipy_magics_put(PyObject *magics)
{
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    if (builtins == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no builtins");
        return -1;
    }
    PyObject *get = PyObject_GetAttrString(magics, "get_ipython");
    if (get == NULL) {
        return -1;
    }
    int rc = PyDict_SetItemString(builtins, "__apyrun_nb__", magics);
    if (rc == 0) {
        rc = PyDict_SetItemString(builtins, "get_ipython", get);
    }
    Py_DECREF(get);
    if (rc == 0 && ((ApyIpyMagicsObject *)magics)->host != NULL) {
        /* A run's: exit and quit as a kernel's. */
        PyObject *f = PyCFunction_New(&exit_def, magics);
        rc = f != NULL ? PyDict_SetItemString(builtins, "exit", f) : -1;
        if (rc == 0) {
            rc = PyDict_SetItemString(builtins, "quit", f);
        }
        Py_XDECREF(f);
    }
    return rc;
}

/* ---- help, as a Jupyter kernel gives it ----
 * `obj?`, `obj??`, `?obj` and `*pat*?` (translate.c makes them %pinfo,
 * %pinfo2 and %psearch) show IPython's inspector text, or pydoc's without
 * IPython, where a kernel's pager payload goes: on the terminal, not in
 * the cell's outputs (the host's page). A name that is not found is
 * printed, and so recorded, as IPython prints it. */

/* text without its colours (ANSI SGR sequences): a new reference. */
static PyObject *
no_colour(PyObject *text)
{
    PyObject *re = PyImport_ImportModule("re");
    PyObject *r = re != NULL ? PyObject_CallMethod(re, "sub", "ssO",
                                                   "\x1b\\[[0-9;]*m", "",
                                                   text)
                             : NULL;
    Py_XDECREF(re);
    return r;
}

/* Shows text through the host's pager, else on sys.stdout; in colour
 * only on a terminal and never with NO_COLOR. 0 or -1. */
static int
page(ApyIpyMagicsObject *self, PyObject *coloured)
{
    const char *nc = getenv("NO_COLOR");
    PyObject *text = isatty(1) && (nc == NULL || nc[0] == '\0')
                         ? Py_NewRef(coloured)
                         : no_colour(coloured);
    if (text == NULL) {
        return -1;
    }
    int rc = apy__ipy_show_page(self, text);
    Py_DECREF(text);
    return rc;
}

/* The object a dotted name names in globals (else builtins): a new
 * reference, or NULL with no exception when there is none. */
static PyObject *
find_object(PyObject *globals, PyObject *name)
{
    PyObject *dot = PyUnicode_FromString(".");
    PyObject *parts = dot != NULL ? PyUnicode_Split(name, dot, -1) : NULL;
    Py_XDECREF(dot);
    if (parts == NULL) {
        return NULL;
    }
    PyObject *obj = NULL;
    PyObject *first = PyList_GET_ITEM(parts, 0); /* borrowed */
    if (globals != NULL) {
        obj = PyDict_GetItemWithError(globals, first); /* borrowed */
    }
    if (obj == NULL && !PyErr_Occurred()) {
        obj = PyDict_GetItemWithError(PyEval_GetBuiltins(), first);
    }
    Py_XINCREF(obj);
    for (Py_ssize_t i = 1; obj != NULL && i < PyList_GET_SIZE(parts); i++) {
        Py_SETREF(obj, PyObject_GetAttr(obj, PyList_GET_ITEM(parts, i)));
    }
    Py_DECREF(parts);
    PyErr_Clear();
    return obj;
}

/* Help for name without IPython: pydoc's plain text, or "Object `x` not
 * found.\n" (then *found is 0). */
static PyObject *
pydoc_help(ApyIpyMagicsObject *self, PyObject *name, int *found)
{
    PyObject *obj = find_object(apy__ipy_caller_globals(self), name);
    *found = obj != NULL;
    if (obj == NULL) {
        return PyErr_Occurred()
                   ? NULL
                   : PyUnicode_FromFormat("Object `%U` not found.\n", name);
    }
    PyObject *pydoc = PyImport_ImportModule("pydoc");
    PyObject *text = NULL;
    if (pydoc != NULL) {
        PyObject *plain = PyObject_GetAttrString(pydoc, "plaintext");
        if (plain != NULL) {
            text = PyObject_CallMethod(pydoc, "render_doc", "OsOO", obj,
                                       "%s", Py_False, plain);
        }
        Py_XDECREF(plain);
    }
    Py_XDECREF(pydoc);
    Py_DECREF(obj);
    return text;
}

/* IPython's text for %pinfo/%pinfo2 name, or "Object `x` not found.\n"
 * (then *found is 0). */
static PyObject *
ipython_help(ApyIpyMagicsObject *self, PyObject *name, int detail,
             int *found)
{
    PyObject *info = PyObject_CallMethod(self->shell, "_object_find", "O",
                                         name);
    PyObject *ok = info != NULL ? PyObject_GetAttrString(info, "found")
                                : NULL;
    PyObject *obj = ok != NULL ? PyObject_GetAttrString(info, "obj") : NULL;
    Py_XDECREF(info);
    *found = obj != NULL ? PyObject_IsTrue(ok) : -1;
    /* A magic written in C (a kernel's, kernel.c) has no source to
     * show, and IPython's inspector fails on a magic with nothing to
     * show: its docstring, as for `%name?`. */
    if (obj != NULL && PyCFunction_Check(obj)) {
        detail = 0;
    }
    Py_XDECREF(obj);
    Py_XDECREF(ok);
    if (*found < 0) {
        return NULL;
    }
    if (*found == 0) {
        return PyUnicode_FromFormat("Object `%U` not found.\n", name);
    }
    return PyObject_CallMethod(self->shell, "object_inspect_text", "Oi", name,
                               detail);
}

/* %psearch through IPython's, its paged text captured. */
static PyObject *
ipython_psearch(ApyIpyMagicsObject *self, PyObject *arg)
{
    PyObject *io = PyImport_ImportModule("io");
    PyObject *buf = io != NULL ? PyObject_CallMethod(io, "StringIO", NULL)
                               : NULL;
    Py_XDECREF(io);
    if (buf == NULL) {
        return NULL;
    }
    PyObject *saved = Py_XNewRef(PySys_GetObject("stdout"));
    PyObject *text = NULL;
    if (PySys_SetObject("stdout", buf) == 0) {
        PyObject *name = PyUnicode_FromString("psearch");
        PyObject *r = name != NULL ? apy__ipy_ipython_magic(self, "line",
                                                            name, arg, NULL)
                                   : NULL;
        Py_XDECREF(name);
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PySys_SetObject("stdout", saved);
        PyErr_Restore(type, value, tb);
        if (r != NULL) {
            text = PyObject_CallMethod(buf, "getvalue", NULL);
        }
        Py_XDECREF(r);
    }
    Py_XDECREF(saved);
    Py_DECREF(buf);
    return text;
}

PyObject *
apy__ipy_help(ApyIpyMagicsObject *self, const char *magic, PyObject *arg)
{
    PyObject *name = PyObject_CallMethod(arg, "strip", NULL);
    if (name == NULL) {
        return NULL;
    }
    PyObject *shell = apy__ipy_get_ipython(self, NULL); /* made once */
    if (shell == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    Py_DECREF(shell);
    int ipython = self->shell_kind == APY_IPY_SHELL_IPYTHON;
    PyObject *text;
    int found = 1;
    if (PyUnicode_GET_LENGTH(name) == 0 && strcmp(magic, "psearch") != 0) {
        /* `?` alone: IPython's usage screen (show_usage), paged. */
        PyObject *usage = ipython ? PyImport_ImportModule("IPython.core.usage")
                                  : NULL;
        text = usage != NULL
                   ? PyObject_GetAttrString(usage, "interactive_usage")
                   : PyUnicode_FromString(
                         "IPython's help syntax in apyrun's notebooks: "
                         "obj? and %pinfo obj show obj's help, obj?? its "
                         "source too; IPython's own usage screen needs "
                         "IPython.\n");
        Py_XDECREF(usage);
    } else if (strcmp(magic, "psearch") == 0) {
        text = ipython ? ipython_psearch(self, name)
                       : PyErr_Format(PyExc_RuntimeError,
                                      "%%psearch needs IPython, which "
                                      "cannot be imported");
    } else if (ipython) {
        text = ipython_help(self, name, strcmp(magic, "pinfo2") == 0,
                            &found);
    } else {
        text = pydoc_help(self, name, &found);
    }
    Py_DECREF(name);
    if (text == NULL) {
        return NULL;
    }
    /* Not found: IPython print()s it, so a kernel records it. */
    int rc = found ? page(self, text) : apy__ipy_write_stdout(text);
    Py_DECREF(text);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}
