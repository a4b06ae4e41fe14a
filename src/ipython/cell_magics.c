/* SPDX-License-Identifier: MIT */
/* The cell magics apyrun runs itself, %%time, %%capture, %%writefile and
 * %%script with its named forms (script.c), behind one dispatcher
 * (apy_ipy_run_cell_magic); any other goes to IPython. Running the body
 * and capturing its output are the host's (a notebook run records
 * them); with no host, this file's exec host runs the body with exec()
 * in the module's globals and captures sys.stdout/sys.stderr into
 * StringIOs, recording nothing. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "apyrun/ipython.h"
#include "internal.h"

/* ---- the exec host: cell magics with no run (imported notebooks) ---- */

typedef struct {
    ApyIpyMagicsObject *magics;
    PyObject *globals;     /* borrowed: the module's namespace */
    PyObject *saved[2];    /* sys.stdout/stderr while captured, or NULL */
    PyObject *buf[2];      /* their StringIOs, or NULL */
} exec_ctx_t;

static const char *const stream_names[2] = {"stdout", "stderr"};

/* Runs body (python text that starts after the cell's line first_line)
 * in the context's globals; line numbers are the cell's own. 0 or -1. */
static int
exec_run_source(void *ctx, const char *body, size_t first_line)
{
    exec_ctx_t *x = ctx;
    PyObject *code = NULL, *r = NULL;
    /* Blank lines in front keep the cell's numbering, as a run's line
     * map does. */
    size_t n = strlen(body);
    char *padded = PyMem_Malloc(first_line + n + 1);
    if (padded == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(padded, '\n', first_line);
    memcpy(padded + first_line, body, n + 1);
    code = Py_CompileString(padded, "<cell magic>", Py_file_input);
    PyMem_Free(padded);
    if (code == NULL) {
        return -1;
    }
    r = PyEval_EvalCode(code, x->globals, x->globals);
    Py_DECREF(code);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* sys.stdout/sys.stderr (those taken) go to StringIOs. 0 or -1; what
 * was swapped is put back by exec_capture_end either way. */
static int
exec_capture_begin(void *ctx, const int take[3])
{
    exec_ctx_t *x = ctx;
    PyObject *io = PyImport_ImportModule("io");
    if (io == NULL) {
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        if (!take[i]) {
            continue;
        }
        x->buf[i] = PyObject_CallMethod(io, "StringIO", NULL);
        if (x->buf[i] == NULL) {
            goto error;
        }
        x->saved[i] = Py_XNewRef(PySys_GetObject(stream_names[i]));
        if (x->saved[i] == NULL) {
            PyErr_Format(PyExc_RuntimeError, "lost sys.%s", stream_names[i]);
            goto error;
        }
        if (PySys_SetObject(stream_names[i], x->buf[i]) < 0) {
            goto error;
        }
    }
    Py_DECREF(io);
    return 0;
error:
    Py_DECREF(io);
    return -1;
}

/* What %%capture keeps with no run, as IPython's CapturedIO: no displays
 * are captured there, so outputs stays empty. */
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

/* Returns a new reference to the CapturedIO class, made once per helper,
 * or NULL with an exception set. */
static PyObject *
captured_class(ApyIpyMagicsObject *self)
{
    PyObject *ns, *r, *cls;
    if (self->captured != NULL) {
        return Py_NewRef(self->captured);
    }
    ns = Py_BuildValue("{sssO}", "__name__", "apyrun.notebook",
                       "__builtins__", PyEval_GetBuiltins());
    if (ns == NULL) {
        return NULL;
    }
    r = PyRun_String(captured_source, Py_file_input, ns, ns);
    if (r == NULL) {
        goto error;
    }
    Py_DECREF(r);
    cls = PyDict_GetItemString(ns, "CapturedIO"); /* borrowed */
    if (cls == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "CapturedIO was not made");
        goto error;
    }
    Py_XSETREF(self->captured, Py_NewRef(cls));
    Py_DECREF(ns);
    return Py_NewRef(cls);
error:
    Py_DECREF(ns);
    return NULL;
}

/* Puts the streams back whatever happened and returns a new CapturedIO
 * of what they got, or NULL; a pending exception stays and wins. */
static PyObject *
exec_capture_end(void *ctx)
{
    exec_ctx_t *x = ctx;
    PyObject *text[2] = {NULL, NULL}, *cls = NULL, *cap = NULL;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    for (int i = 0; i < 2; i++) {
        if (x->saved[i] != NULL
            && PySys_SetObject(stream_names[i], x->saved[i]) < 0) {
            PyErr_Clear();
        }
        text[i] = x->buf[i] != NULL
                      ? PyObject_CallMethod(x->buf[i], "getvalue", NULL)
                      : PyUnicode_FromString("");
        if (text[i] == NULL) {
            goto done;
        }
    }
    cls = captured_class(x->magics);
    if (cls != NULL) {
        cap = PyObject_CallFunctionObjArgs(cls, text[0], text[1], NULL);
    }
done:
    for (int i = 0; i < 2; i++) {
        Py_XDECREF(text[i]);
        Py_CLEAR(x->buf[i]);
        Py_CLEAR(x->saved[i]);
    }
    Py_XDECREF(cls);
    if (type != NULL) {
        Py_CLEAR(cap);
        PyErr_Restore(type, value, tb); /* the body's exception wins */
    }
    return cap;
}

static PyObject *
exec_globals(void *ctx)
{
    return ((exec_ctx_t *)ctx)->globals;
}

static const apy_ipy_host_t exec_host = {
    .run_source = exec_run_source,
    .capture_begin = exec_capture_begin,
    .capture_end = exec_capture_end,
    .flush_figures = NULL, /* nothing records figures with no run */
    .shell_made = NULL,
    .globals = exec_globals,
    .page = NULL,
};

/* ---- the magics ---- */

/* %%writefile [-a|--append] FILE: the body into FILE, its name expanded
 * in globals (may be NULL). 0 or -1. */
static int
cell_writefile(PyObject *globals, PyObject *arg, const char *body)
{
    PyObject *expanded, *file = NULL, *exists = NULL, *line = NULL;
    PyObject *f = NULL, *r;
    int append, rc = -1;
    expanded = apy__ipy_expand(globals, arg);
    if (expanded == NULL) {
        return -1;
    }
    rc = apy__ipy_writefile_args(expanded, &append, &file);
    Py_DECREF(expanded);
    if (rc < 0) {
        return -1;
    }
    rc = -1;
    exists = apy__ipy_call_module("os.path", "exists", file);
    if (exists == NULL) {
        goto done;
    }
    line = PyUnicode_FromFormat("%s %U\n",
                                append              ? "Appending to"
                                : exists == Py_True ? "Overwriting"
                                                    : "Writing",
                                file);
    if (line == NULL || apy__ipy_write_stdout(line) < 0) {
        goto done;
    }
    f = apy__ipy_open_utf8(file, append ? "a" : "w");
    if (f == NULL) {
        goto done;
    }
    r = PyObject_CallMethod(f, "write", "s", body);
    if (r == NULL) {
        goto done;
    }
    Py_DECREF(r);

    r = PyObject_CallMethod(f, "close", NULL);
    if (r == NULL) {
        goto done;
    }
    Py_DECREF(r);
    rc = 0;
done:
    Py_XDECREF(f);
    Py_XDECREF(line);
    Py_XDECREF(exists);
    Py_DECREF(file);
    return rc;
}

/* A StringIO of cap.<name> when take, else None. New, or NULL. */
static PyObject *
captured_text(PyObject *cap, const char *name, int take)
{
    if (!take) {
        Py_RETURN_NONE;
    }
    PyObject *text = PyObject_GetAttrString(cap, name);
    PyObject *io = text != NULL ? apy__ipy_call_module("io", "StringIO", text)
                                : NULL;
    Py_XDECREF(text);
    return io;
}

/* The captured object as IPython's CapturedIO where IPython is
 * importable, as a kernel's %%capture makes it (its outputs the keyword
 * arguments of RichOutput, show() through IPython's display); else cap
 * itself. cap is stolen; a new reference, or NULL. */
static PyObject *
ipython_captured(PyObject *cap, const int take[3])
{
    PyObject *mod = PyImport_ImportModule("IPython.utils.capture");
    if (mod == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ImportError)) {
            PyErr_Clear();
            return cap;
        }
        Py_DECREF(cap);
        return NULL;
    }
    PyObject *io[2] = {captured_text(cap, "stdout", take[0]), NULL};
    io[1] = io[0] != NULL ? captured_text(cap, "stderr", take[1]) : NULL;
    PyObject *outs = io[1] != NULL ? PyObject_GetAttrString(cap, "outputs")
                                   : NULL;
    PyObject *kw = outs != NULL ? PyList_New(0) : NULL;
    Py_ssize_t n = kw != NULL && PyList_Check(outs) ? PyList_GET_SIZE(outs)
                                                    : 0;
    for (Py_ssize_t i = 0; kw != NULL && i < n; i++) {
        PyObject *o = PyList_GET_ITEM(outs, i);
        PyObject *data = PyDict_Check(o) ? PyDict_GetItemString(o, "data")
                                         : NULL;
        PyObject *md = data != NULL ? PyDict_GetItemString(o, "metadata")
                                    : NULL;
        if (data == NULL) {
            continue; /* not a display's */
        }
        PyObject *one = Py_BuildValue("{sOsOsOsO}", "data", data, "metadata",
                                      md != NULL ? md : Py_None, "transient",
                                      Py_None, "update", Py_False);
        if (one == NULL || PyList_Append(kw, one) < 0) {
            Py_CLEAR(kw);
        }
        Py_XDECREF(one);
    }
    PyObject *made = kw != NULL ? PyObject_CallMethod(mod, "CapturedIO",
                                                      "OOO", io[0], io[1],
                                                      kw)
                                : NULL;
    Py_XDECREF(kw);
    Py_XDECREF(outs);
    Py_XDECREF(io[1]);
    Py_XDECREF(io[0]);
    Py_DECREF(mod);
    Py_DECREF(cap);
    return made;
}

/* %%capture [--no-stdout] [--no-stderr] [--no-display] [VAR]: the body
 * runs with the host capturing; VAR gets the captured object in globals.
 * Results as run_source. */
static int
cell_capture(const apy_ipy_host_t *host, void *ctx, PyObject *globals,
             PyObject *arg, const char *body, size_t first_line)
{
    int take[3], rc;
    PyObject *var, *cap;
    if (apy__ipy_capture_options(arg, take, &var) < 0) {
        return -1;
    }
    rc = host->capture_begin(ctx, take);
    if (rc == 0) {
        rc = host->run_source(ctx, body, first_line);
    }
    if (rc == 0 && host->flush_figures != NULL) {
        rc = host->flush_figures(ctx);
    }
    cap = host->capture_end(ctx);
    if (cap != NULL && var != NULL) {
        cap = ipython_captured(cap, take);
    }
    if (cap == NULL) {
        rc = rc == -2 ? -2 : -1;
    } else if (rc == 0 && var != NULL
               && PyObject_SetItem(globals, var, cap) < 0) {
        rc = -1;
    }
    Py_XDECREF(cap);
    Py_XDECREF(var);
    return rc;
}

/* Runs the %%magic cell source with host and ctx in globals: the one
 * dispatcher, for runs and imported notebooks alike. */
static int
run_cell_magic(ApyIpyMagicsObject *self, const apy_ipy_host_t *host,
               void *ctx, PyObject *globals, const char *source,
               PyObject **value)
{
    PyObject *name, *arg, *text;
    const char *body, *n;
    size_t first_line;
    double t0[3];
    int rc = -1;
    *value = NULL;
    if (apy__ipy_split_cell_magic(source, &name, &arg, &body, &first_line)
        < 0) {
        return -1;
    }
    n = PyUnicode_AsUTF8(name);
    if (n == NULL) {
        goto done;
    }
    if (strcmp(n, "time") == 0) {
        apy__ipy_times_now(t0);
        rc = host->run_source(ctx, body, first_line);
        if (rc == 0) {
            rc = apy__ipy_print_times(t0);
        }
    } else if (strcmp(n, "capture") == 0) {
        rc = cell_capture(host, ctx, globals, arg, body, first_line);
    } else if (apy__ipy_is_script_magic(n)) {
        rc = apy__ipy_script(self, globals, n, arg, body);
    } else if (strcmp(n, "writefile") == 0) {
        rc = cell_writefile(globals, arg, body);
    } else {
        text = PyUnicode_FromString(body);
        if (text == NULL) {
            goto done;
        }
        *value = apy__ipy_ipython_magic(self, "cell", name, arg, text);
        Py_DECREF(text);
        rc = *value != NULL ? 0 : -1;
    }
    if (rc == 0 && *value == NULL) {
        *value = Py_NewRef(Py_None);
    }
done:
    Py_DECREF(name);
    Py_DECREF(arg);
    if (rc < 0) {
        Py_CLEAR(*value);
    }
    return rc;
}

int
apy_ipy_run_cell_magic(PyObject *magics, PyObject *globals,
                       const char *source, PyObject **value)
{
    ApyIpyMagicsObject *self = (ApyIpyMagicsObject *)magics;
    if (self->host != NULL) {
        return run_cell_magic(self, self->host, self->ctx, globals, source,
                              value);
    }
    exec_ctx_t x = {.magics = self, .globals = globals};
    return run_cell_magic(self, &exec_host, &x, globals, source, value);
}

PyObject *
apy__ipy_magics_run_cell_magic(ApyIpyMagicsObject *self,
                               PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *value;
    const char *source;
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "run_cell_magic(text: str, globals: dict)");
        return NULL;
    }
    source = PyUnicode_AsUTF8(args[0]);
    if (source == NULL) {
        return NULL;
    }
    /* An imported notebook's cell: its module's globals, never recorded,
     * whether or not a run is going on. */
    exec_ctx_t x = {.magics = self, .globals = args[1]};
    if (run_cell_magic(self, &exec_host, &x, args[1], source, &value) < 0) {
        return NULL;
    }
    return value;
}
