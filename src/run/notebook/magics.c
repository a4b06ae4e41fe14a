/* SPDX-License-Identifier: MIT */
/* The magics apyrun runs without IPython: `!cmd` and `x = !cmd`, %cd,
 * %env, %time (with translate.c), %pip, %matplotlib, and the cell magics
 * %%time, %%capture, %%bash, %%sh, %%writefile. Anything else goes to
 * IPython when it is importable, else fails with a message naming the
 * magic (the driver names the cell); their arguments are parsed in
 * magic_args.c. The helpers live on one object,
 * builtins.__apyrun_nb__, that translated cells call: a run installs its
 * own; an imported notebook with no run gets a process-wide one
 * (apy_nbrun_magics_install), whose expansions and %%capture use the
 * caller's globals and whose output is not recorded. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>

#include "apyrun/nbrun.h"
#include "nbrun.h"

typedef struct {
    PyObject_HEAD
    apy_nbrun_t *run;   /* NULL once the run is over */
    double tic[3];      /* wall, user, sys at the last %time start */
    PyObject *oldpwd;   /* the directory before the last %cd, or NULL */
    PyObject *shell;    /* IPython's InteractiveShell, once made */
    PyObject *captured; /* %%capture's class outside a run, once made */
} ApyNbMagicsObject;

/* Returns the namespace a magic works in (borrowed): the calling frame's
 * globals, which in a run are __main__'s; the run's when no Python frame
 * called (the driver); NULL when there is neither (nothing expands). */
static PyObject *
caller_globals(ApyNbMagicsObject *self)
{
    PyObject *g = PyEval_GetGlobals(); /* borrowed */
    if (g == NULL && self->run != NULL) {
        g = self->run->globals;
    }
    return g;
}

/* ---- times ---- */

static void
times_now(double t[3])
{
    struct rusage ru;
    t[0] = apy_nbrun_now();
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

/* Prints %time's report for a run that started at t0. 0 or -1. */
static int
print_times(const double t0[3])
{
    double t1[3];
    times_now(t1);
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
magics_tic(ApyNbMagicsObject *self, PyObject *Py_UNUSED(ignored))
{
    times_now(self->tic);
    Py_RETURN_NONE;
}

/* toc([_, value]): prints the times since tic() and returns value. */
static PyObject *
magics_toc(ApyNbMagicsObject *self, PyObject *const *args, Py_ssize_t n)
{
    if (print_times(self->tic) < 0) {
        return NULL;
    }
    return Py_NewRef(n >= 2 ? args[1] : Py_None);
}

/* system(cmd): `!cmd`. */
static PyObject *
magics_system(ApyNbMagicsObject *self, PyObject *cmd)
{
    return apy_nbrun_system(caller_globals(self), cmd);
}

/* getoutput(cmd): `x = !cmd`. */
static PyObject *
magics_getoutput(ApyNbMagicsObject *self, PyObject *cmd)
{
    return apy_nbrun_getoutput(caller_globals(self), cmd);
}

/* ---- line magics ---- */

/* %cd [DIR|-]: changes directory (home without DIR, the previous one
 * with -) and prints the new one, as IPython does. Returns None or
 * NULL with an exception set. */
static PyObject *
magic_cd(ApyNbMagicsObject *self, PyObject *arg)
{
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL) {
        return NULL;
    }
    PyObject *target = NULL, *old = PyObject_CallMethod(os, "getcwd", NULL);
    if (old == NULL) {
        goto done;
    }
    if (PyUnicode_GET_LENGTH(arg) == 0) {
        PyObject *path = PyObject_GetAttrString(os, "path");
        target = path ? PyObject_CallMethod(path, "expanduser", "s", "~")
                      : NULL;
        Py_XDECREF(path);
    } else if (PyUnicode_CompareWithASCIIString(arg, "-") == 0) {
        target = self->oldpwd ? Py_NewRef(self->oldpwd) : Py_NewRef(old);
    } else {
        PyObject *path = PyObject_GetAttrString(os, "path");
        /* IPython lets the directory be quoted. */
        PyObject *strip = PyObject_CallMethod(arg, "strip", "s", "'\"");
        target = path && strip ? PyObject_CallMethod(path, "expanduser",
                                                     "O", strip)
                               : NULL;
        Py_XDECREF(strip);
        Py_XDECREF(path);
    }
    PyObject *r = target ? PyObject_CallMethod(os, "chdir", "O", target)
                         : NULL;
    Py_XDECREF(r);
    if (r != NULL) {
        Py_XSETREF(self->oldpwd, Py_NewRef(old));
        PyObject *now = PyObject_CallMethod(os, "getcwd", NULL);
        PyObject *out = PySys_GetObject("stdout"); /* borrowed */
        int rc = now && out ? PyFile_WriteObject(now, out, Py_PRINT_RAW)
                            : -1;
        if (rc == 0) {
            rc = PyFile_WriteString("\n", out);
        }
        Py_XDECREF(now);
        if (rc < 0) {
            Py_CLEAR(target);
        }
    } else {
        Py_CLEAR(target);
    }
done:
    Py_XDECREF(old);
    Py_DECREF(os);
    if (target == NULL) {
        return NULL;
    }
    Py_DECREF(target);
    Py_RETURN_NONE;
}

/* %env: all variables (a dict), one (its value), or NAME=VALUE / NAME
 * VALUE to set one ("env: NAME=VALUE" is printed). */
static PyObject *
magic_env(PyObject *arg)
{
    PyObject *os = PyImport_ImportModule("os");
    PyObject *environ = os ? PyObject_GetAttrString(os, "environ") : NULL;
    Py_XDECREF(os);
    if (environ == NULL) {
        return NULL;
    }
    PyObject *name, *value, *result = NULL;
    int kind = apy_nbrun_env_args(arg, &name, &value);
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
magic_pip(ApyNbMagicsObject *self, PyObject *arg)
{
    PyObject *shlex = PyImport_ImportModule("shlex");
    PyObject *words = shlex ? PyObject_CallMethod(shlex, "split", "O", arg)
                            : NULL;
    Py_XDECREF(shlex);
    PyObject *exe = PySys_GetObject("executable"); /* borrowed */
    PyObject *argv = words && exe ? Py_BuildValue("[Oss]", exe, "-m", "pip")
                                  : NULL;
    if (argv != NULL && _PyList_Extend((PyListObject *)argv, words) == NULL) {
        Py_CLEAR(argv);
    }
    Py_XDECREF(words);
    PyObject *proc = argv ? apy_nbrun_shell_start(argv, 1, 0) : NULL;
    Py_XDECREF(argv);
    if (proc == NULL) {
        return NULL;
    }
    int status = apy_nbrun_shell_pump(proc, NULL);
    Py_DECREF(proc);
    if (status == -1000) {
        return NULL;
    }
    apy_nbrun_set_exit_code(caller_globals(self), status);
    PyObject *out = PySys_GetObject("stdout"); /* borrowed */
    if (out != NULL && PyFile_WriteString(
                           "Note: you may need to restart the kernel to use "
                           "updated packages.\n", out) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* %matplotlib [GUI]: inline (and the notebook frontends' backends) is
 * Agg with figures shown at the end of each cell; a GUI name selects that
 * GUI's backend. */
static PyObject *
magic_matplotlib(PyObject *arg)
{
    static const char *const map[][2] = {
        {"", "agg"},       {"inline", "agg"}, {"notebook", "agg"},
        {"widget", "agg"}, {"ipympl", "agg"}, {"agg", "agg"},
        {"qt", "QtAgg"},   {"qt5", "Qt5Agg"}, {"qt6", "QtAgg"},
        {"tk", "TkAgg"},   {"gtk3", "GTK3Agg"}, {"gtk4", "GTK4Agg"},
        {"wx", "WXAgg"},   {"osx", "MacOSX"},
    };
    PyObject *stripped = PyObject_CallMethod(arg, "strip", NULL);
    const char *name = stripped ? PyUnicode_AsUTF8(stripped) : NULL;
    if (name == NULL) {
        Py_XDECREF(stripped);
        return NULL;
    }
    const char *backend = name;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i][0], name) == 0) {
            backend = map[i][1];
        }
    }
    PyObject *mpl = PyImport_ImportModule("matplotlib");
    PyObject *r = mpl ? PyObject_CallMethod(mpl, "use", "s", backend) : NULL;
    Py_XDECREF(mpl);
    Py_DECREF(stripped);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* Returns a new reference to IPython's shell over __main__ (in a run,
 * its namespace; else the first caller's globals), made once, or NULL:
 * ImportError when IPython is not installed. */
static PyObject *
ipython_shell(ApyNbMagicsObject *self)
{
    if (self->shell != NULL) {
        return Py_NewRef(self->shell);
    }
    PyObject *mod = PyImport_ImportModule("IPython.core.interactiveshell");
    PyObject *cls = mod ? PyObject_GetAttrString(mod, "InteractiveShell")
                        : NULL;
    Py_XDECREF(mod);
    PyObject *main = cls ? PyImport_AddModule("__main__") : NULL;
    PyObject *ns = caller_globals(self); /* borrowed */
    PyObject *kw = main == NULL ? NULL
                   : ns != NULL ? Py_BuildValue("{sOsO}", "user_module",
                                                main, "user_ns", ns)
                                : Py_BuildValue("{sO}", "user_module", main);
    PyObject *args = kw ? PyTuple_New(0) : NULL;
    PyObject *inst = args ? PyObject_GetAttrString(cls, "instance") : NULL;
    PyObject *shell = inst ? PyObject_Call(inst, args, kw) : NULL;
    Py_XDECREF(inst);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(cls);
    if (shell == NULL) {
        return NULL;
    }
    /* The shell put its own display() into builtins: keep ours. */
    if (self->run != NULL && apy_nbrun_display_init(self->run) < 0) {
        Py_DECREF(shell);
        return NULL;
    }
    self->shell = Py_NewRef(shell);
    return shell;
}

/* Runs a magic apyrun does not know through IPython: kind "line" or
 * "cell". Returns the magic's value, or NULL with an exception that names
 * the magic. */
static PyObject *
ipython_magic(ApyNbMagicsObject *self, const char *kind, PyObject *name,
              PyObject *arg, PyObject *body)
{
    PyObject *shell = ipython_shell(self);
    if (shell == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ImportError)) {
            return NULL;
        }
        PyErr_Clear();
        return PyErr_Format(PyExc_RuntimeError,
                            "%s magic %s%U needs IPython, which cannot be "
                            "imported (apyrun itself runs !cmd, %%cd, %%env, "
                            "%%time, %%pip, %%matplotlib, %%%%time, "
                            "%%%%capture, %%%%bash, %%%%sh and "
                            "%%%%writefile)",
                            kind, body ? "%%" : "%", name);
    }
    PyObject *r = body ? PyObject_CallMethod(shell, "run_cell_magic", "OOO",
                                             name, arg, body)
                       : PyObject_CallMethod(shell, "run_line_magic", "OO",
                                             name, arg);
    Py_DECREF(shell);
    return r;
}

/* line_magic(name, arg): %name arg. */
static PyObject *
magics_line_magic(ApyNbMagicsObject *self, PyObject *const *args,
                  Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0])
        || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "line_magic(name, arg)");
        return NULL;
    }
    PyObject *name = args[0];
    PyObject *arg = apy_nbrun_expand(caller_globals(self), args[1]);
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
        r = magic_matplotlib(arg);
    } else if (strcmp(n, "time") == 0) {
        /* "%time" alone: nothing to time. */
        double t0[3];
        times_now(t0);
        r = print_times(t0) < 0 ? NULL : Py_NewRef(Py_None);
    } else {
        r = ipython_magic(self, "line", name, arg, NULL);
    }
    Py_DECREF(arg);
    return r;
}

/* ---- cell magics ---- */

/* %%writefile [-a|--append] FILE: the body into FILE, its name expanded
 * in globals (may be NULL). */
static int
cell_writefile(PyObject *globals, PyObject *arg, const char *body)
{
    PyObject *expanded = apy_nbrun_expand(globals, arg);
    int append;
    PyObject *file;
    int rc = expanded ? apy_nbrun_writefile_args(expanded, &append, &file)
                      : -1;
    Py_XDECREF(expanded);
    if (rc < 0) {
        return -1;
    }
    PyObject *os = PyImport_ImportModule("os");
    PyObject *path = os ? PyObject_GetAttrString(os, "path") : NULL;
    PyObject *exists = path ? PyObject_CallMethod(path, "exists", "O", file)
                            : NULL;
    Py_XDECREF(path);
    Py_XDECREF(os);
    rc = -1;
    if (exists != NULL) {
        const char *verb = append ? "Appending to"
                           : exists == Py_True ? "Overwriting" : "Writing";
        PyObject *line = PyUnicode_FromFormat("%s %U\n", verb, file);
        PyObject *out = PySys_GetObject("stdout"); /* borrowed */
        rc = line && out ? PyFile_WriteObject(line, out, Py_PRINT_RAW) : -1;
        Py_XDECREF(line);
        PyObject *io = rc == 0 ? PyImport_ImportModule("io") : NULL;
        PyObject *open = io ? PyObject_GetAttrString(io, "open") : NULL;
        PyObject *kw = open ? Py_BuildValue("{ss}", "encoding", "utf-8")
                            : NULL;
        PyObject *args = kw ? Py_BuildValue("(Os)", file,
                                            append ? "a" : "w")
                            : NULL;
        PyObject *f = args ? PyObject_Call(open, args, kw) : NULL;
        Py_XDECREF(args);
        Py_XDECREF(kw);
        Py_XDECREF(open);
        Py_XDECREF(io);
        PyObject *r = f ? PyObject_CallMethod(f, "write", "s", body) : NULL;
        Py_XDECREF(r);
        PyObject *c = f ? PyObject_CallMethod(f, "close", NULL) : NULL;
        Py_XDECREF(c);
        Py_XDECREF(f);
        rc = r != NULL && c != NULL ? 0 : -1;
    }
    Py_XDECREF(exists);
    Py_DECREF(file);
    return rc;
}

/* %%capture [--no-stdout] [--no-stderr] [--no-display] [VAR]. */
static int
cell_capture(apy_nbrun_t *run, PyObject *arg, const char *body,
             size_t first_line)
{
    int take[3];
    PyObject *var;
    if (apy_nbrun_capture_options(arg, take, &var) < 0) {
        return -1;
    }
    if (apy_nbrun_capture_begin(run, take[0], take[1], take[2]) < 0) {
        Py_XDECREF(var);
        PyObject *cap = apy_nbrun_capture_end(run);
        Py_XDECREF(cap);
        return -1;
    }
    int rc = apy_nbrun_run_source(run, body, first_line);
    if (rc == 0) {
        rc = apy_nbrun_flush_figures(run);
    }
    PyObject *cap = apy_nbrun_capture_end(run);
    if (cap == NULL) {
        rc = rc == -2 ? -2 : -1;
    } else if (rc == 0 && var != NULL
               && PyObject_SetItem(run->globals, var, cap) < 0) {
        rc = -1;
    }
    Py_XDECREF(cap);
    Py_XDECREF(var);
    return rc;
}

int
apy_nbrun_run_cell_magic(apy_nbrun_t *run, const char *source)
{
    PyObject *name, *arg;
    const char *body;
    size_t first_line;
    if (apy_nbrun_split_cell_magic(source, &name, &arg, &body, &first_line)
        < 0) {
        return -1;
    }
    const char *n = PyUnicode_AsUTF8(name);
    int rc;
    if (n == NULL) {
        rc = -1;
    } else if (strcmp(n, "time") == 0) {
        double t0[3];
        times_now(t0);
        rc = apy_nbrun_run_source(run, body, first_line);
        if (rc == 0) {
            rc = print_times(t0);
        }
    } else if (strcmp(n, "capture") == 0) {
        rc = cell_capture(run, arg, body, first_line);
    } else if (strcmp(n, "bash") == 0 || strcmp(n, "sh") == 0) {
        rc = apy_nbrun_run_script(n, body);
    } else if (strcmp(n, "writefile") == 0) {
        rc = cell_writefile(run->globals, arg, body);
    } else {
        PyObject *text = PyUnicode_FromString(body);
        PyObject *r = text ? ipython_magic((ApyNbMagicsObject *)run->magics,
                                           "cell", name, arg, text)
                           : NULL;
        Py_XDECREF(text);
        rc = r != NULL ? apy_nbrun_record_result(run, r) : -1;
        Py_XDECREF(r);
    }
    Py_DECREF(name);
    Py_DECREF(arg);
    return rc;
}

/* ---- cell magics outside a run (imported notebooks) ---- */

/* What %%capture keeps outside a run, as IPython's CapturedIO: no
 * displays are captured there, so outputs stays empty. */
static const char captured_source[] =
    "class CapturedIO:\n"
    "    def __init__(self, stdout, stderr):\n"
    "        self.stdout, self.stderr, self.outputs = stdout, stderr, []\n"
    "    def show(self):\n"
    "        import sys\n"
    "        sys.stdout.write(self.stdout)\n"
    "        sys.stderr.write(self.stderr)\n"
    "    __call__ = show\n"
    "    def __str__(self):\n"
    "        return self.stdout\n";

/* Returns a new reference to the CapturedIO class, made once, or NULL. */
static PyObject *
captured_class(ApyNbMagicsObject *self)
{
    if (self->captured != NULL) {
        return Py_NewRef(self->captured);
    }
    PyObject *ns = Py_BuildValue("{sssO}", "__name__", "apyrun.notebook",
                                 "__builtins__", PyEval_GetBuiltins());
    PyObject *r = ns ? PyRun_String(captured_source, Py_file_input, ns, ns)
                     : NULL;
    Py_XDECREF(r);
    PyObject *cls = r ? PyDict_GetItemString(ns, "CapturedIO") /* borrowed */
                      : NULL;
    if (cls != NULL) {
        Py_XSETREF(self->captured, Py_NewRef(cls));
        cls = Py_NewRef(cls);
    } else if (r != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "CapturedIO was not made");
    }
    Py_XDECREF(ns);
    return cls;
}

/* Runs body (python text that starts after the cell's line first_line)
 * in globals. Line numbers are the cell's own. 0 or -1. */
static int
exec_body(PyObject *globals, const char *body, size_t first_line)
{
    /* Blank lines in front keep the cell's numbering, as a run's
     * line map does. */
    size_t n = strlen(body);
    char *padded = PyMem_Malloc(first_line + n + 1);
    if (padded == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(padded, '\n', first_line);
    memcpy(padded + first_line, body, n + 1);
    PyObject *code = Py_CompileString(padded, "<cell magic>", Py_file_input);
    PyMem_Free(padded);
    PyObject *r = code ? PyEval_EvalCode(code, globals, globals) : NULL;
    Py_XDECREF(code);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* %%capture outside a run: sys.stdout/sys.stderr (those taken) go to
 * StringIOs while body runs; VAR gets a CapturedIO in globals. 0 or -1. */
static int
exec_capture(ApyNbMagicsObject *self, PyObject *globals, PyObject *arg,
             const char *body, size_t first_line)
{
    static const char *const names[2] = {"stdout", "stderr"};
    int take[3];
    PyObject *var, *saved[2] = {NULL, NULL}, *buf[2] = {NULL, NULL};
    if (apy_nbrun_capture_options(arg, take, &var) < 0) {
        return -1;
    }
    PyObject *io = PyImport_ImportModule("io");
    int rc = io != NULL ? 0 : -1;
    for (int i = 0; rc == 0 && i < 2; i++) {
        if (!take[i]) {
            continue;
        }
        buf[i] = PyObject_CallMethod(io, "StringIO", NULL);
        saved[i] = buf[i] ? PySys_GetObject(names[i]) : NULL; /* borrowed */
        Py_XINCREF(saved[i]);
        if (saved[i] == NULL
            || PySys_SetObject(names[i], buf[i]) < 0) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_RuntimeError, "lost sys.%s", names[i]);
            }
            rc = -1;
        }
    }
    if (rc == 0) {
        rc = exec_body(globals, body, first_line);
    }
    /* Put the streams back whatever happened, keeping the exception. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *text[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        if (saved[i] != NULL && PySys_SetObject(names[i], saved[i]) < 0) {
            PyErr_Clear();
        }
        text[i] = buf[i] ? PyObject_CallMethod(buf[i], "getvalue", NULL)
                         : PyUnicode_FromString("");
        if (text[i] == NULL) {
            PyErr_Clear();
        }
    }
    PyErr_Restore(type, value, tb);
    if (rc == 0 && var != NULL) {
        PyObject *cls = text[0] && text[1] ? captured_class(self) : NULL;
        PyObject *cap = cls ? PyObject_CallFunctionObjArgs(cls, text[0],
                                                           text[1], NULL)
                            : NULL;
        rc = cap != NULL && PyObject_SetItem(globals, var, cap) == 0 ? 0
                                                                      : -1;
        if (rc < 0 && !PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        Py_XDECREF(cap);
        Py_XDECREF(cls);
    }
    for (int i = 0; i < 2; i++) {
        Py_XDECREF(text[i]);
        Py_XDECREF(buf[i]);
        Py_XDECREF(saved[i]);
    }
    Py_XDECREF(io);
    Py_XDECREF(var);
    return rc;
}

/* run_cell_magic(text, globals): a %%magic cell of an imported notebook,
 * run in globals (its module's) without recording, whether or not a
 * notebook run is going on. Returns the magic's value (None for those
 * apyrun runs itself), or NULL with an exception set. */
static PyObject *
magics_run_cell_magic(ApyNbMagicsObject *self, PyObject *const *args,
                      Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "run_cell_magic(text: str, globals: dict)");
        return NULL;
    }
    PyObject *globals = args[1];
    const char *source = PyUnicode_AsUTF8(args[0]);
    PyObject *name, *arg;
    const char *body;
    size_t first_line;
    if (source == NULL
        || apy_nbrun_split_cell_magic(source, &name, &arg, &body,
                                      &first_line) < 0) {
        return NULL;
    }
    const char *n = PyUnicode_AsUTF8(name);
    PyObject *r = NULL;
    int rc = 0;
    if (n == NULL) {
        rc = -1;
    } else if (strcmp(n, "time") == 0) {
        double t0[3];
        times_now(t0);
        rc = exec_body(globals, body, first_line);
        if (rc == 0) {
            rc = print_times(t0);
        }
    } else if (strcmp(n, "capture") == 0) {
        rc = exec_capture(self, globals, arg, body, first_line);
    } else if (strcmp(n, "bash") == 0 || strcmp(n, "sh") == 0) {
        rc = apy_nbrun_run_script(n, body);
    } else if (strcmp(n, "writefile") == 0) {
        rc = cell_writefile(globals, arg, body);
    } else {
        PyObject *text = PyUnicode_FromString(body);
        r = text ? ipython_magic(self, "cell", name, arg, text) : NULL;
        Py_XDECREF(text);
        rc = r != NULL ? 0 : -1;
    }
    Py_DECREF(name);
    Py_DECREF(arg);
    if (rc < 0) {
        Py_XDECREF(r);
        return NULL;
    }
    return r != NULL ? r : Py_NewRef(Py_None);
}

/* ---- the helper object ---- */

static int
magics_traverse(ApyNbMagicsObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->oldpwd);
    Py_VISIT(self->shell);
    Py_VISIT(self->captured);
    return 0;
}

static int
magics_clear(ApyNbMagicsObject *self)
{
    Py_CLEAR(self->oldpwd);
    Py_CLEAR(self->shell);
    Py_CLEAR(self->captured);
    return 0;
}

static void
magics_dealloc(ApyNbMagicsObject *self)
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
    {"line_magic", (PyCFunction)(void (*)(void))magics_line_magic,
     METH_FASTCALL, "%name arg"},
    {"tic", (PyCFunction)magics_tic, METH_NOARGS, "%time starts"},
    {"toc", (PyCFunction)(void (*)(void))magics_toc, METH_FASTCALL,
     "%time ends: prints the times, returns the value"},
    {"run_cell_magic", (PyCFunction)(void (*)(void))magics_run_cell_magic,
     METH_FASTCALL, "run_cell_magic(text, globals): a %%magic cell"},
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
    .basicsize = sizeof(ApyNbMagicsObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = magics_slots,
};

/* Returns a new helper of type tp bound to run (may be NULL), or NULL
 * with an exception set. */
static PyObject *
magics_new(PyTypeObject *tp, apy_nbrun_t *run)
{
    ApyNbMagicsObject *m = PyObject_GC_New(ApyNbMagicsObject, tp);
    if (m == NULL) {
        return NULL;
    }
    m->run = run;
    times_now(m->tic);
    m->oldpwd = NULL;
    m->shell = NULL;
    m->captured = NULL;
    PyObject_GC_Track(m);
    return (PyObject *)m;
}

int
apy_nbrun_magics_init(apy_nbrun_t *run)
{
    run->magics_type = (PyTypeObject *)PyType_FromSpec(&magics_spec);
    if (run->magics_type == NULL) {
        return -1;
    }
    run->magics = magics_new(run->magics_type, NULL);
    if (run->magics == NULL) {
        return -1;
    }
    ((ApyNbMagicsObject *)run->magics)->run = run;
    return PyDict_SetItemString(PyEval_GetBuiltins(), "__apyrun_nb__",
                                run->magics);
}

int
apy_nbrun_magics_install(void)
{
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    if (builtins == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no builtins");
        return -1;
    }
    PyObject *key = PyUnicode_FromString("__apyrun_nb__");
    int have = key ? PyDict_Contains(builtins, key) : -1;
    if (have != 0) {
        /* A run's helper, or one installed before: keep it. */
        Py_XDECREF(key);
        return have < 0 ? -1 : 0;
    }
    /* The instance keeps its heap type alive; builtins keeps the
     * instance for the rest of the process. */
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(&magics_spec);
    PyObject *m = tp ? magics_new(tp, NULL) : NULL;
    Py_XDECREF(tp);
    int rc = m ? PyDict_SetItem(builtins, key, m) : -1;
    Py_XDECREF(m);
    Py_DECREF(key);
    return rc;
}

void
apy_nbrun_magics_fini(apy_nbrun_t *run)
{
    if (run->magics != NULL) {
        ((ApyNbMagicsObject *)run->magics)->run = NULL;
    }
    Py_CLEAR(run->magics);
    Py_CLEAR(run->magics_type);
}
