/* SPDX-License-Identifier: MIT */
/* %%script PROGRAM and its named forms (%%bash, %%sh, %%perl, %%ruby,
 * %%python, %%python2, %%python3, %%pypy), with IPython's options:
 * --out VAR and --err VAR (the stream's text into VAR), --bg (run in
 * the background: VAR gets the stream's pipe, --proc VAR the process),
 * --no-raise-error; and %killbgscripts. As in IPython 8 the program gets
 * the cell on its stdin (here from an unlinked temporary file, so a big
 * cell cannot block against the program's output) and a non-zero exit
 * raises CalledProcessError(status, cell as bytes). One change from
 * IPython 8.5: --out keeps the whole text, where 8.5 kept the last line
 * (IPython issue #13499). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static const char *const script_names[] = {
    "script", "sh", "bash", "perl", "ruby", "python", "python2", "python3",
    "pypy", NULL,
};

int
apy__ipy_is_script_magic(const char *name)
{
    for (const char *const *n = script_names; *n != NULL; n++) {
        if (strcmp(*n, name) == 0) {
            return 1;
        }
    }
    return 0;
}

typedef struct {
    PyObject *out, *err, *proc; /* borrowed from argv, or NULL */
    int bg, raise_error;
    PyObject *cmd; /* new list: the program and its arguments */
} script_args_t;

static const char *const options[] = {"--out", "--err", "--proc", "--bg",
                                      "--no-raise-error", NULL};

/* Which of options[] word (or its part before '=') names, as argparse
 * takes a unique prefix; -1 for none, -2 when ambiguous. */
static int
which_option(const char *word, size_t len)
{
    int found = -1;
    for (int i = 0; options[i] != NULL; i++) {
        if (strlen(options[i]) == len && memcmp(options[i], word, len) == 0) {
            return i;
        }
        if (len > 2 && strncmp(options[i], word, len) == 0) {
            found = found == -1 ? i : -2;
        }
    }
    return found;
}

/* Splits the (expanded) line as IPython's arg_split (shlex, POSIX) and
 * takes the options as argparse's parse_known_args: the other words, in
 * order, are the command. 0, or -1 with an exception set. */
static int
parse_args(const char *magic, PyObject *line, script_args_t *a,
           PyObject **words)
{
    PyObject *full;
    memset(a, 0, sizeof(*a));
    a->raise_error = 1;
    if (strcmp(magic, "script") == 0) {
        full = Py_NewRef(line);
    } else {
        full = PyUnicode_FromFormat("%s %U", magic, line);
    }
    if (full == NULL) {
        return -1;
    }
    *words = apy__ipy_call_module("shlex", "split", full);
    Py_DECREF(full);
    if (*words == NULL || (a->cmd = PyList_New(0)) == NULL) {
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(*words);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *w = PyList_GET_ITEM(*words, i);
        const char *s = PyUnicode_AsUTF8(w);
        if (s == NULL) {
            return -1;
        }
        const char *eq = strchr(s, '=');
        size_t len = eq != NULL ? (size_t)(eq - s) : strlen(s);
        int o = strncmp(s, "--", 2) == 0 ? which_option(s, len) : -1;
        if (o == -2) {
            PyErr_Format(PyExc_ValueError,
                         "%%%%%s: ambiguous option: %s", magic, s);
            return -1;
        }
        if (o < 0) {
            if (PyList_Append(a->cmd, w) < 0) {
                return -1;
            }
            continue;
        }
        if (o >= 3) {
            *(o == 3 ? &a->bg : &a->raise_error) = o == 3;
            continue;
        }
        PyObject *v;
        if (eq != NULL) {
            v = PyUnicode_FromString(eq + 1);
            if (v == NULL || PyList_Append(*words, v) < 0) {
                Py_XDECREF(v);
                return -1;
            }
            Py_DECREF(v);
            v = PyList_GET_ITEM(*words, PyList_GET_SIZE(*words) - 1);
        } else if (i + 1 < n) {
            v = PyList_GET_ITEM(*words, ++i);
        } else {
            PyErr_Format(PyExc_ValueError,
                         "%%%%%s: option %s: expected one argument", magic,
                         options[o]);
            return -1;
        }
        *(o == 0 ? &a->out : o == 1 ? &a->err : &a->proc) = v;
    }
    if (PyList_GET_SIZE(a->cmd) == 0) {
        PyErr_SetString(PyExc_ValueError, "%%script: no program given");
        return -1;
    }
    return 0;
}

/* Returns an fd open on an unlinked temporary file holding the cell (a
 * newline added when it has none), at offset 0; -1 with an exception. */
static int
cell_stdin(const char *body)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    if (dir == NULL || *dir == '\0') {
        dir = "/tmp";
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/apyrun-script-XXXXXX", dir)
        >= sizeof(path)) {
        PyErr_SetString(PyExc_OSError, "TMPDIR is too long");
        return -1;
    }
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        return -1;
    }
    unlink(path);
    size_t n = strlen(body);
    int nl = n == 0 || body[n - 1] != '\n';
    for (size_t done = 0; done < n + nl;) {
        ssize_t w = done < n ? write(fd, body + done, n - done)
                             : write(fd, "\n", 1);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        close(fd);
        return -1;
    }
    return fd;
}

/* Starts a->cmd with stdin from fd and each of stdout/stderr piped
 * (pipe[i]) or to /dev/null. A new Popen, or NULL with an exception;
 * NULL with none when the program does not exist (IPython's message
 * printed, as it does). */
static PyObject *
start(const script_args_t *a, int fd, const int pipe[2])
{
    PyObject *sp = PyImport_ImportModule("subprocess");
    PyObject *p_pipe = NULL, *p_null = NULL, *kw = NULL, *proc = NULL;
    if (sp == NULL || (p_pipe = PyObject_GetAttrString(sp, "PIPE")) == NULL
        || (p_null = PyObject_GetAttrString(sp, "DEVNULL")) == NULL) {
        goto done;
    }
    kw = Py_BuildValue("{sisOsO}", "stdin", fd, "stdout",
                       pipe[0] ? p_pipe : p_null, "stderr",
                       pipe[1] ? p_pipe : p_null);
    if (kw == NULL) {
        goto done;
    }
    PyObject *popen = PyObject_GetAttrString(sp, "Popen");
    PyObject *args = popen != NULL ? PyTuple_Pack(1, a->cmd) : NULL;
    proc = args != NULL ? PyObject_Call(popen, args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(popen);
    if (proc == NULL && PyErr_ExceptionMatches(PyExc_FileNotFoundError)) {
        PyErr_Clear();
        PyObject *msg = PyUnicode_FromFormat(
            "Couldn't find program: %R\n", PyList_GET_ITEM(a->cmd, 0));
        if (msg != NULL) {
            apy__ipy_write_stdout(msg);
            Py_DECREF(msg);
        }
    }
done:
    Py_XDECREF(kw);
    Py_XDECREF(p_null);
    Py_XDECREF(p_pipe);
    Py_XDECREF(sp);
    return proc;
}

/* Sets ns[var] = the joined text of the list parts. 0 or -1. */
static int
set_joined(PyObject *ns, PyObject *var, PyObject *parts)
{
    PyObject *empty = PyUnicode_FromString("");
    PyObject *text = empty != NULL ? PyUnicode_Join(empty, parts) : NULL;
    int rc = text != NULL ? PyObject_SetItem(ns, var, text) : -1;
    Py_XDECREF(text);
    Py_XDECREF(empty);
    return rc;
}

static PyObject *
kill_at_exit(PyObject *self, PyObject *unused)
{
    (void)unused;
    apy__ipy_kill_bg((ApyIpyMagicsObject *)self);
    Py_RETURN_NONE;
}

static PyMethodDef kill_at_exit_def = {
    "kill_bg_processes", kill_at_exit, METH_NOARGS,
    "Kills the %%script --bg processes still running.",
};

/* --bg: the process is kept (killed at exit and by %killbgscripts); VAR
 * of --out/--err gets the pipe (.read() gives bytes, as IPython's
 * stream proxy), --proc's the Popen. 0 or -1. */
static int
background(ApyIpyMagicsObject *self, PyObject *ns, const script_args_t *a,
           PyObject *proc)
{
    if (self->bg == NULL && (self->bg = PyList_New(0)) == NULL) {
        return -1;
    }
    if (!self->bg_atexit) {
        /* Killed at exit as IPython's atexit hook does. */
        PyObject *f = PyCFunction_New(&kill_at_exit_def, (PyObject *)self);
        PyObject *r = f != NULL ? apy__ipy_call_module("atexit", "register",
                                                       f)
                                : NULL;
        Py_XDECREF(f);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        self->bg_atexit = 1;
    }
    if (PyList_Append(self->bg, proc) < 0) {
        return -1;
    }
    static const char *const attr[2] = {"stdout", "stderr"};
    PyObject *var[3] = {a->out, a->err, a->proc};
    for (int i = 0; i < 3; i++) {
        if (var[i] == NULL) {
            continue;
        }
        PyObject *v = i < 2 ? PyObject_GetAttrString(proc, attr[i])
                            : Py_NewRef(proc);
        int rc = v != NULL ? PyObject_SetItem(ns, var[i], v) : -1;
        Py_XDECREF(v);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* Waits for the child, its streams shown or collected into --out/--err,
 * then raises as IPython for a non-zero status. 0 or -1. */
static int
foreground(PyObject *ns, const script_args_t *a, PyObject *proc,
           const char *body)
{
    PyObject *parts[2] = {NULL, NULL};
    PyObject *var[2] = {a->out, a->err};
    int rc = -1;
    for (int i = 0; i < 2; i++) {
        if (var[i] != NULL && (parts[i] = PyList_New(0)) == NULL) {
            goto done;
        }
    }
    int status = apy__ipy_shell_pump(proc, parts);
    if (status == -1000) {
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        if (var[i] != NULL && set_joined(ns, var[i], parts[i]) < 0) {
            goto done;
        }
    }
    if (status == 0 || !a->raise_error) {
        rc = 0;
        goto done;
    }
    size_t n = strlen(body);
    int nl = n == 0 || body[n - 1] != '\n';
    PyObject *cell = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n + nl));
    if (cell != NULL) {
        memcpy(PyBytes_AS_STRING(cell), body, n);
        if (nl) {
            PyBytes_AS_STRING(cell)[n] = '\n';
        }
        PyObject *sp = PyImport_ImportModule("subprocess");
        PyObject *err = sp != NULL ? PyObject_CallMethod(
                            sp, "CalledProcessError", "iO", status, cell)
                                   : NULL;
        Py_XDECREF(sp);
        Py_DECREF(cell);
        if (err != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(err), err);
            Py_DECREF(err);
        }
    }
done:
    Py_XDECREF(parts[0]);
    Py_XDECREF(parts[1]);
    return rc;
}

int
apy__ipy_script(ApyIpyMagicsObject *self, PyObject *ns, const char *magic,
                PyObject *line, const char *body)
{
    script_args_t a;
    PyObject *words = NULL, *proc = NULL;
    int rc = -1, fd = -1;
    PyObject *expanded = apy__ipy_expand(ns, line);
    if (expanded == NULL) {
        return -1;
    }
    if (parse_args(magic, expanded, &a, &words) < 0) {
        goto done;
    }
    if ((fd = cell_stdin(body)) < 0) {
        goto done;
    }
    int pipe[2] = {!a.bg || a.out != NULL, !a.bg || a.err != NULL};
    proc = start(&a, fd, pipe);
    if (proc == NULL) {
        rc = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    close(fd);
    fd = -1;
    rc = a.bg ? background(self, ns, &a, proc)
              : foreground(ns, &a, proc, body);
done:
    if (fd >= 0) {
        close(fd);
    }
    Py_XDECREF(proc);
    Py_XDECREF(a.cmd);
    Py_XDECREF(words);
    Py_DECREF(expanded);
    return rc;
}

/* Calls method on each process still running. */
static void
signal_running(PyObject *bg, const char *method, int sig)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(bg); i++) {
        PyObject *p = PyList_GET_ITEM(bg, i);
        PyObject *r = PyObject_CallMethod(p, "poll", NULL);
        if (r == Py_None) {
            Py_DECREF(r);
            r = sig != 0 ? PyObject_CallMethod(p, method, "i", sig)
                         : PyObject_CallMethod(p, method, NULL);
        }
        Py_XDECREF(r);
        PyErr_Clear();
    }
}

/* Drops the processes that ended from bg; returns how many run on. */
static Py_ssize_t
reap(PyObject *bg)
{
    for (Py_ssize_t i = PyList_GET_SIZE(bg) - 1; i >= 0; i--) {
        PyObject *r = PyObject_CallMethod(PyList_GET_ITEM(bg, i), "poll",
                                          NULL);
        if (r != Py_None && PySequence_DelItem(bg, i) < 0) {
            PyErr_Clear();
        }
        Py_XDECREF(r);
        PyErr_Clear();
    }
    return PyList_GET_SIZE(bg);
}

void
apy__ipy_kill_bg(ApyIpyMagicsObject *self)
{
    /* As IPython's kill_bg_processes: SIGINT, then SIGTERM, then
     * SIGKILL, 0.1 s apart, for those still running. */
    if (self->bg == NULL || reap(self->bg) == 0) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    signal_running(self->bg, "send_signal", SIGINT);
    for (int step = 0; step < 2 && reap(self->bg) > 0; step++) {
        Py_BEGIN_ALLOW_THREADS
        usleep(100000);
        Py_END_ALLOW_THREADS
        if (reap(self->bg) == 0) {
            break;
        }
        signal_running(self->bg, step == 0 ? "terminate" : "kill", 0);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(self->bg); i++) {
        PyObject *r = PyObject_CallMethod(PyList_GET_ITEM(self->bg, i),
                                          "wait", NULL);
        Py_XDECREF(r);
        PyErr_Clear();
    }
    Py_CLEAR(self->bg);
    PyErr_Restore(type, value, tb);
}
