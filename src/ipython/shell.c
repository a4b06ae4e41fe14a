/* SPDX-License-Identifier: MIT */
/* Commands for the magics: IPython's $name/{expr} expansion in the
 * caller's namespace (a run's __main__ or an imported notebook's module),
 * and child processes whose output streams live to sys.stdout and
 * sys.stderr (so it is shown, and recorded in a run) while they run:
 * `!cmd`, `x = !cmd`, %pip, %%script (script.c). Which magic runs what
 * is magics.c's. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ---- $name and {expr} in commands ---- */

/* Returns a new reference to the value of expression text s[0..n) in
 * globals, evaluated as IPython evaluates it, with eval() on a str:
 * leading spaces and tabs skipped, the text UTF-8 whatever coding cookie
 * it holds, a NUL refused. NULL with an exception set. */
static PyObject *
eval_text(PyObject *globals, const char *s, Py_ssize_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    if (memchr(s, '\0', n) != NULL) {
        PyErr_SetString(PyExc_ValueError,
                        "source code string cannot contain null bytes");
        return NULL;
    }
    char *code = PyMem_Malloc(n + 1);
    if (code == NULL) {
        return PyErr_NoMemory();
    }
    memcpy(code, s, n);
    code[n] = '\0';
    PyCompilerFlags cf = _PyCompilerFlags_INIT;
    cf.cf_flags = PyCF_IGNORE_COOKIE;
    PyObject *v = PyRun_StringFlags(code, Py_eval_input, globals, globals,
                                    &cf);
    PyMem_Free(code);
    return v;
}

PyObject *
apy__ipy_expand(PyObject *globals, PyObject *cmd)
{
    if (globals == NULL) {
        return Py_NewRef(cmd);
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(cmd, &n);
    if (s == NULL) {
        return NULL;
    }
    if (memchr(s, '$', n) == NULL && memchr(s, '{', n) == NULL) {
        return Py_NewRef(cmd);
    }
    _PyUnicodeWriter w;
    _PyUnicodeWriter_Init(&w);
    for (Py_ssize_t i = 0; i < n;) {
        const char *expr = NULL;
        Py_ssize_t elen = 0, next = i + 1;
        if (s[i] == '$' && i + 1 < n && s[i + 1] == '$') {
            if (_PyUnicodeWriter_WriteChar(&w, '$') < 0) {
                goto fail;
            }
            i += 2;
            continue;
        }
        if ((s[i] == '{' || s[i] == '}') && i + 1 < n && s[i + 1] == s[i]) {
            if (_PyUnicodeWriter_WriteChar(&w, (Py_UCS4)s[i]) < 0) {
                goto fail;
            }
            i += 2;
            continue;
        }
        if (s[i] == '$' && i + 1 < n
            && (Py_ISALPHA(s[i + 1]) || s[i + 1] == '_')) {
            Py_ssize_t j = i + 1;
            while (j < n && (Py_ISALNUM(s[j]) || s[j] == '_')) {
                j++;
            }
            expr = s + i + 1;
            elen = j - i - 1;
            next = j;
        } else if (s[i] == '{') {
            const char *close = memchr(s + i, '}', n - i);
            if (close == NULL) {
                goto unchanged;
            }
            expr = s + i + 1;
            elen = close - expr;
            next = close - s + 1;
        }
        if (expr == NULL) {
            /* Copy one UTF-8 sequence as it is. */
            Py_ssize_t j = i + 1;
            while (j < n && ((unsigned char)s[j] & 0xC0) == 0x80) {
                j++;
            }
            PyObject *piece = PyUnicode_DecodeUTF8(s + i, j - i, "replace");
            if (piece == NULL) {
                goto fail;
            }
            int rc = _PyUnicodeWriter_WriteStr(&w, piece);
            Py_DECREF(piece);
            if (rc < 0) {
                goto fail;
            }
            i = j;
            continue;
        }
        PyObject *v = eval_text(globals, expr, elen);
        if (v == NULL) {
            goto unchanged;
        }
        PyObject *str = PyObject_Str(v);
        Py_DECREF(v);
        if (str == NULL) {
            goto unchanged;
        }
        int rc = _PyUnicodeWriter_WriteStr(&w, str);
        Py_DECREF(str);
        if (rc < 0) {
            goto fail;
        }
        i = next;
    }
    return _PyUnicodeWriter_Finish(&w);
unchanged:
    PyErr_Clear();
    _PyUnicodeWriter_Dealloc(&w);
    return Py_NewRef(cmd);
fail:
    _PyUnicodeWriter_Dealloc(&w);
    return NULL;
}

/* ---- processes ---- */

PyObject *
apy__ipy_shell_start(PyObject *argv, int merge, int shell)
{
    PyObject *subprocess = NULL, *pipe = NULL, *stdout_ = NULL;
    PyObject *popen_cls = NULL, *kw = NULL, *args = NULL, *proc = NULL;
    subprocess = PyImport_ImportModule("subprocess");
    if (subprocess == NULL) {
        goto done;
    }
    pipe = PyObject_GetAttrString(subprocess, "PIPE");
    if (pipe == NULL) {
        goto done;
    }
    stdout_ = PyObject_GetAttrString(subprocess, "STDOUT");
    if (stdout_ == NULL) {
        goto done;
    }
    popen_cls = PyObject_GetAttrString(subprocess, "Popen");
    if (popen_cls == NULL) {
        goto done;
    }
    kw = Py_BuildValue("{sOsOsO}", "stdout", pipe, "stderr",
                       merge ? stdout_ : pipe, "shell",
                       shell ? Py_True : Py_False);
    if (kw == NULL) {
        goto done;
    }
    args = PyTuple_Pack(1, argv);
    if (args == NULL) {
        goto done;
    }
    proc = PyObject_Call(popen_cls, args, kw);
done:
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(popen_cls);
    Py_XDECREF(stdout_);
    Py_XDECREF(pipe);
    Py_XDECREF(subprocess);
    return proc;
}

/* Returns the fd of proc.<name> (a pipe), or -1 if it has none. */
static int
pipe_fd(PyObject *proc, const char *name)
{
    PyObject *f = PyObject_GetAttrString(proc, name);
    int fd = -1;
    if (f != NULL && f != Py_None) {
        PyObject *r = PyObject_CallMethod(f, "fileno", NULL);
        if (r != NULL) {
            fd = (int)PyLong_AsLong(r);
            Py_DECREF(r);
        }
    }
    Py_XDECREF(f);
    PyErr_Clear();
    return fd;
}

/* Writes text to the stream out, then flushes it. 0, or -1 with an
 * exception set when the write failed; a failed flush is ignored (the
 * text was written). */
static int
write_flush(PyObject *out, PyObject *text)
{
    if (PyFile_WriteObject(text, out, Py_PRINT_RAW) < 0) {
        return -1;
    }
    PyObject *r = PyObject_CallMethod(out, "flush", NULL);
    Py_XDECREF(r);
    PyErr_Clear();
    return 0;
}

/* Puts two new incremental UTF-8 decoders (errors="replace") into dec.
 * 0, or -1 with an exception set (then dec may hold one). */
static int
make_decoders(PyObject *dec[2])
{
    PyObject *codecs = PyImport_ImportModule("codecs");
    if (codecs == NULL) {
        return -1;
    }
    PyObject *factory = PyObject_CallMethod(codecs, "getincrementaldecoder",
                                            "s", "utf-8");
    Py_DECREF(codecs);
    if (factory == NULL) {
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        dec[i] = PyObject_CallFunction(factory, "s", "replace");
        if (dec[i] == NULL) {
            rc = -1;
            break;
        }
    }
    Py_DECREF(factory);
    return rc;
}

static const char *const names[2] = {"stdout", "stderr"};

/* The loop of apy__ipy_shell_pump, on fd[0] (to stdout) and fd[1] (to
 * stderr), either -1; a read error (a pty's EIO once the child's side
 * is closed) ends that stream as its end does. */
static int
pump(PyObject *proc, const int fd[2], PyObject *const collect[2])
{
    struct pollfd fds[2];
    PyObject *dec[2] = {NULL, NULL};
    int nfds = 0, status = -1000;
    for (int i = 0; i < 2; i++) {
        fds[i].fd = fd[i];
        fds[i].events = POLLIN;
        nfds += fds[i].fd >= 0;
    }
    if (make_decoders(dec) < 0) {
        goto done;
    }
    char buf[8192];
    while (nfds > 0) {
        int r;
        Py_BEGIN_ALLOW_THREADS
        r = poll(fds, 2, -1);
        Py_END_ALLOW_THREADS
        if (r < 0) {
            if (errno == EINTR && PyErr_CheckSignals() == 0) {
                continue;
            }
            if (!PyErr_Occurred()) {
                PyErr_SetFromErrno(PyExc_OSError);
            }
            goto done;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || fds[i].revents == 0) {
                continue;
            }
            ssize_t got = read(fds[i].fd, buf, sizeof(buf));
            if (got < 0 && errno == EINTR) {
                continue;
            }
            int final = got <= 0;
            PyObject *text = PyObject_CallMethod(
                dec[i], "decode", "y#O", buf, (Py_ssize_t)(got > 0 ? got : 0),
                final ? Py_True : Py_False);
            if (text == NULL) {
                goto done;
            }
            int rc = 0;
            if (PyUnicode_GET_LENGTH(text) > 0) {
                if (collect != NULL && collect[i] != NULL) {
                    rc = PyList_Append(collect[i], text);
                } else {
                    PyObject *out = PySys_GetObject(names[i]); /* borrowed */
                    if (out != NULL && out != Py_None) {
                        rc = write_flush(out, text);
                    }
                }
            }
            Py_DECREF(text);
            if (rc < 0) {
                goto done;
            }
            if (final) {
                fds[i].fd = -1;
                nfds--;
            }
        }
    }
    PyObject *waited = PyObject_CallMethod(proc, "wait", NULL);
    if (waited != NULL) {
        status = (int)PyLong_AsLong(waited);
        Py_DECREF(waited);
    }
done:
    if (status == -1000) {
        /* Interrupted: do not leave the child running. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *r = PyObject_CallMethod(proc, "kill", NULL);
        Py_XDECREF(r);
        r = PyObject_CallMethod(proc, "wait", NULL);
        Py_XDECREF(r);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    for (int i = 0; i < 2; i++) {
        Py_XDECREF(dec[i]);
    }
    return status;
}

int
apy__ipy_shell_pump(PyObject *proc, PyObject *const collect[2])
{
    int fd[2] = {pipe_fd(proc, names[0]), pipe_fd(proc, names[1])};
    int status = pump(proc, fd, collect);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    for (int i = 0; i < 2; i++) {
        PyObject *f = PyObject_GetAttrString(proc, names[i]);
        if (f != NULL && f != Py_None) {
            PyObject *r = PyObject_CallMethod(f, "close", NULL);
            Py_XDECREF(r);
        }
        Py_XDECREF(f);
        PyErr_Clear();
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    return status;
}

void
apy__ipy_set_exit_code(PyObject *globals, int status)
{
    if (globals == NULL) {
        return;
    }
    PyObject *v = PyLong_FromLong(status);
    if (v == NULL || PyDict_SetItemString(globals, "_exit_code", v) < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(v);
}

/* What a Jupyter kernel puts in the environment its children see
 * (ipykernel's zmqshell init_environment). */
static const char *const kernel_env[][2] = {
    {"TERM", "xterm-color"}, {"CLICOLOR", "1"}, {"PAGER", "cat"},
    {"GIT_PAGER", "cat"},
};

/* Starts argv with its stdout and stderr on a new pseudo-terminal of 24
 * rows and 80 columns, as pexpect's spawn (on which ipykernel runs
 * `!cmd`) makes it, and the environment a kernel gives its children; its
 * stdin stays apyrun's. Returns a new Popen with *master the pty's side
 * to read, or NULL with an exception set. */
static PyObject *
pty_start(PyObject *argv, int *master)
{
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    PyObject *sp = NULL, *env = NULL, *kw = NULL, *args = NULL, *proc = NULL;
    int m, sl;
    if (openpty(&m, &sl, NULL, NULL, &ws) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    (void)fcntl(m, F_SETFD, FD_CLOEXEC);
    (void)fcntl(sl, F_SETFD, FD_CLOEXEC);
    PyObject *os = PyImport_ImportModule("os");
    PyObject *environ = os != NULL ? PyObject_GetAttrString(os, "environ")
                                   : NULL;
    Py_XDECREF(os);
    env = environ != NULL ? PyDict_New() : NULL;
    if (env == NULL || PyDict_Merge(env, environ, 1) < 0) {
        goto done;
    }
    for (size_t i = 0; i < sizeof(kernel_env) / sizeof(kernel_env[0]); i++) {
        PyObject *v = PyUnicode_FromString(kernel_env[i][1]);
        int rc = v != NULL
                     ? PyDict_SetItemString(env, kernel_env[i][0], v)
                     : -1;
        Py_XDECREF(v);
        if (rc < 0) {
            goto done;
        }
    }
    sp = PyImport_ImportModule("subprocess");
    kw = Py_BuildValue("{sisisO}", "stdout", sl, "stderr", sl, "env", env);
    args = PyTuple_Pack(1, argv);
    PyObject *popen = sp != NULL ? PyObject_GetAttrString(sp, "Popen")
                                 : NULL;
    if (popen != NULL && kw != NULL && args != NULL) {
        proc = PyObject_Call(popen, args, kw);
    }
    Py_XDECREF(popen);
done:
    close(sl);
    if (proc == NULL) {
        close(m);
    }
    *master = m;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(sp);
    Py_XDECREF(env);
    Py_XDECREF(environ);
    return proc;
}

int
apy__ipy_pty_run(PyObject *argv)
{
    int master = -1;
    PyObject *proc = pty_start(argv, &master);
    if (proc == NULL) {
        return -1000;
    }
    const int fd[2] = {master, -1};
    int status = pump(proc, fd, NULL);
    close(master);
    Py_DECREF(proc);
    /* pexpect's status as IPython gives it: a shell's 128 + N (its child
     * killed by signal N) is -N too. */
    return status > 128 ? -(status - 128) : status;
}

PyObject *
apy__ipy_system(PyObject *globals, PyObject *cmd, int pty)
{
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(cmd, &n);
    if (text == NULL) {
        return NULL;
    }
    while (n > 0 && Py_ISSPACE(text[n - 1])) {
        n--;
    }
    if (n > 0 && text[n - 1] == '&') {
        /* ipykernel's refusal: the output could not be read to its end. */
        PyErr_SetString(PyExc_OSError, "Background processes not supported.");
        return NULL;
    }
    PyObject *expanded = apy__ipy_expand(globals, cmd);
    int status;
    if (expanded == NULL) {
        return NULL;
    }
    if (pty) {
        PyObject *argv = Py_BuildValue("[ssO]", "/bin/sh", "-c", expanded);
        Py_DECREF(expanded);
        if (argv == NULL) {
            return NULL;
        }
        status = apy__ipy_pty_run(argv);
        Py_DECREF(argv);
    } else {
        PyObject *proc = apy__ipy_shell_start(expanded, 1, 1);
        Py_DECREF(expanded);
        if (proc == NULL) {
            return NULL;
        }
        status = apy__ipy_shell_pump(proc, NULL);
        Py_DECREF(proc);
    }
    if (status == -1000) {
        return NULL;
    }
    apy__ipy_set_exit_code(globals, status);
    Py_RETURN_NONE;
}

PyObject *
apy__ipy_getoutput(PyObject *globals, PyObject *cmd)
{
    PyObject *expanded = NULL, *proc = NULL, *parts = NULL;
    PyObject *empty = NULL, *text = NULL, *lines = NULL;
    expanded = apy__ipy_expand(globals, cmd);
    if (expanded == NULL) {
        goto done;
    }
    proc = apy__ipy_shell_start(expanded, 1, 1);
    Py_CLEAR(expanded);
    if (proc == NULL) {
        goto done;
    }
    parts = PyList_New(0);
    if (parts == NULL) {
        goto done;
    }
    PyObject *const collect[2] = {parts, NULL};
    int status = apy__ipy_shell_pump(proc, collect);
    Py_CLEAR(proc);
    if (status == -1000) {
        goto done;
    }
    apy__ipy_set_exit_code(globals, status);
    empty = PyUnicode_FromString("");
    if (empty == NULL) {
        goto done;
    }
    text = PyUnicode_Join(empty, parts);
    if (text == NULL) {
        goto done;
    }
    lines = PyUnicode_Splitlines(text, 0);
done:
    Py_XDECREF(text);
    Py_XDECREF(empty);
    Py_XDECREF(parts);
    Py_XDECREF(proc);
    Py_XDECREF(expanded);
    return lines;
}

/* ---- small helpers of the magics ----
 * (here, at the bottom of the layer's calls, so that any file may use
 * them without a circle) */

PyObject *
apy__ipy_call_module(const char *module, const char *func, PyObject *arg)
{
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_CallMethod(mod, func, "(O)", arg);
    Py_DECREF(mod);
    return r;
}

int
apy__ipy_write_stdout(PyObject *text)
{
    PyObject *out = PySys_GetObject("stdout"); /* borrowed */
    if (out == NULL || out == Py_None) {
        return 0;
    }
    return PyFile_WriteObject(text, out, Py_PRINT_RAW);
}

PyObject *
apy__ipy_open_utf8(PyObject *file, const char *mode)
{
    PyObject *io, *open = NULL, *args = NULL, *kw = NULL, *f = NULL;
    io = PyImport_ImportModule("io");
    if (io == NULL) {
        return NULL;
    }
    open = PyObject_GetAttrString(io, "open");
    args = Py_BuildValue("(Os)", file, mode);
    kw = Py_BuildValue("{ss}", "encoding", "utf-8");
    if (open != NULL && args != NULL && kw != NULL) {
        f = PyObject_Call(open, args, kw);
    }
    Py_XDECREF(kw);
    Py_XDECREF(args);
    Py_XDECREF(open);
    Py_DECREF(io);
    return f;
}

PyObject *
apy__ipy_usage_error(PyObject *message)
{
    if (message == NULL) {
        return NULL;
    }
    PyObject *mod = PyImport_ImportModule("IPython.core.error");
    PyObject *cls = mod != NULL ? PyObject_GetAttrString(mod, "UsageError")
                                : NULL;
    Py_XDECREF(mod);
    PyErr_Clear();
    PyErr_SetObject(cls != NULL ? cls : PyExc_ValueError, message);
    Py_XDECREF(cls);
    Py_DECREF(message);
    return NULL;
}

int
apy__ipy_on_pty(ApyIpyMagicsObject *self)
{
    return self->host != NULL && self->host->records != NULL
           && self->host->records(self->ctx);
}
