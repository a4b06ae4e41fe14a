/* SPDX-License-Identifier: MIT */
/* The .py loader: importlib's SourceFileLoader with three methods
 * replaced, so that a module with top-level await imports while every
 * other module loads exactly as python loads it (same pycs, same get_code
 * path, same tracebacks). */
#include <Python.h>

#include <string.h>

#include "apyrun/tla.h"
#include "importer.h"

/* TLA code is compiled only when the plain compile fails, cached under a
 * name python never reads (so python still reports the SyntaxError), and
 * run by exec.c. */

/* Per-thread key naming the source whose TLA code source_to_code just
 * returned, so that _cache_bytecode, called next by SourceLoader.get_code,
 * does not write it to the python-readable pyc. */
#define TLA_MARK_KEY "apyrun.importer.tla_source"

/* Compiles module source bytes or str as apy_tla_compile does: new code
 * object (and *is_tla), or NULL with an exception set. */
PyObject *
apy__importer_compile(PyObject *data, PyObject *path, int flags, int *is_tla)
{
    const char *source;
    *is_tla = 0;
    if (PyBytes_Check(data)) {
        source = PyBytes_AS_STRING(data);
        if (strlen(source) != (size_t)PyBytes_GET_SIZE(data)) {
            PyErr_SetString(PyExc_SyntaxError,
                            "source code cannot contain null bytes");
            return NULL;
        }
    } else if (PyUnicode_Check(data)) {
        Py_ssize_t len;
        source = PyUnicode_AsUTF8AndSize(data, &len);
        if (source == NULL) {
            return NULL;
        }
        if (strlen(source) != (size_t)len) {
            PyErr_SetString(PyExc_SyntaxError,
                            "source code cannot contain null bytes");
            return NULL;
        }
        flags |= PyCF_IGNORE_COOKIE;
    } else {
        PyErr_SetString(PyExc_TypeError, "source must be bytes or str");
        return NULL;
    }
    return apy_tla_compile(source, path, flags, is_tla);
}

/* Sets (path != NULL) or clears this thread's TLA mark. 0 or -1. */
static int
set_tla_mark(PyObject *path)
{
    PyObject *tdict = PyThreadState_GetDict(); /* borrowed */
    if (tdict == NULL) {
        return 0;
    }
    if (path != NULL) {
        return PyDict_SetItemString(tdict, TLA_MARK_KEY, path);
    }
    if (PyDict_DelItemString(tdict, TLA_MARK_KEY) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
            return -1;
        }
        PyErr_Clear();
    }
    return 0;
}

/* Returns 1 (and clears the mark) if path is this thread's TLA mark. */
static int
take_tla_mark(PyObject *path)
{
    PyObject *tdict = PyThreadState_GetDict(); /* borrowed */
    if (tdict == NULL) {
        return 0;
    }
    PyObject *mark = PyDict_GetItemString(tdict, TLA_MARK_KEY); /* borrowed */
    if (mark == NULL) {
        return 0;
    }
    int same = PyObject_RichCompareBool(mark, path, Py_EQ);
    if (same < 0) {
        return -1;
    }
    if (same && set_tla_mark(NULL) < 0) {
        return -1;
    }
    return same;
}

/* The cached TLA code for source path `path`, if fresh. Returns a new
 * reference to the code, Py_None on a miss, NULL with an exception. */
static PyObject *
cached_tla_code(apy_importer_state_t *st, PyObject *path,
                const apy_source_stat_t *src, PyObject **cache_out)
{
    *cache_out = apy__importer_cache_path(st, path, APY_CACHE_TAG_TLA);
    if (*cache_out == NULL) {
        return NULL;
    }
    if (*cache_out == Py_None) {
        Py_RETURN_NONE;
    }
    PyObject *code = apy__importer_cache_read(*cache_out, src);
    if (code == NULL || code == Py_None) {
        return code;
    }
    if (!PyCode_Check(code)) {
        Py_DECREF(code);
        Py_RETURN_NONE;
    }
    /* The tree may have moved since the cache was written. */
    PyObject *r = PyObject_CallFunctionObjArgs(st->fix_co_filename, code,
                                               path, NULL);
    if (r == NULL) {
        Py_DECREF(code);
        return NULL;
    }
    Py_DECREF(r);
    apy__importer_verbose("%U matches %U", *cache_out, path);
    return code;
}

/* Exactly SourceLoader.source_to_code: compile(data, path, 'exec',
 * dont_inherit=True, optimize=optimize) (-1 for NULL) through importlib's
 * _call_with_frames_removed, whose frame trimming then hides the importer
 * from a SyntaxError's traceback. A new code object, or NULL with an
 * exception set. */
static PyObject *
plain_compile(apy_importer_state_t *st, PyObject *data, PyObject *path,
              PyObject *optimize)
{
    PyObject *minus_one = NULL, *kw = NULL, *cargs = NULL, *code = NULL;
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    PyObject *compile = PyDict_GetItemString(builtins, "compile");
    if (compile == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "builtins.compile is missing");
        return NULL;
    }
    if (optimize == NULL) {
        minus_one = PyLong_FromLong(-1);
        if (minus_one == NULL) {
            goto done;
        }
        optimize = minus_one;
    }
    kw = Py_BuildValue("{s:O,s:O}", "dont_inherit", Py_True, "optimize",
                       optimize);
    if (kw == NULL) {
        goto done;
    }
    cargs = Py_BuildValue("(OOOs)", compile, data, path, "exec");
    if (cargs == NULL) {
        goto done;
    }
    code = PyObject_Call(st->call_with_frames_removed, cargs, kw);
done:
    Py_XDECREF(cargs);
    Py_XDECREF(kw);
    Py_XDECREF(minus_one);
    return code;
}

/* source_to_code(data, path, *, _optimize=-1): python's compile; when it
 * fails with a SyntaxError and the code is TLA, the TLA code (from the
 * apyrun cache when fresh). Returns a new code object or NULL. */
static PyObject *
loader_source_to_code(PyObject *self, PyTypeObject *cls,
                      PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    apy_importer_state_t *st = apy__importer_state_of(cls);
    PyObject *optimize = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(kw, "_optimize") != 0) {
            PyErr_Format(PyExc_TypeError, "source_to_code() got an "
                                          "unexpected keyword argument %R",
                         kw);
            return NULL;
        }
        optimize = args[nargs + i];
    }
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "source_to_code() takes exactly 2 arguments");
        return NULL;
    }
    PyObject *data = args[0], *path = args[1];
    if (set_tla_mark(NULL) < 0) {
        return NULL;
    }

    /* A module imported before as TLA has no python pyc, so get_code
     * lands here each time: try apyrun's cache before paying for a
     * plain compile that is known to fail. */
    apy_source_stat_t src;
    int have_stat = PyUnicode_Check(path) && apy__importer_stat(path, &src)
                                                 == 0;
    PyObject *cache = NULL;
    if (!have_stat) {
        PyErr_Clear();
    } else {
        PyObject *code = cached_tla_code(st, path, &src, &cache);
        if (code == NULL) {
            Py_XDECREF(cache);
            return NULL;
        }
        if (code != Py_None) {
            Py_XDECREF(cache);
            if (set_tla_mark(path) < 0) {
                Py_DECREF(code);
                return NULL;
            }
            return code;
        }
        Py_DECREF(code);
    }

    PyObject *code = plain_compile(st, data, path, optimize);
    if (code != NULL || !PyErr_ExceptionMatches(PyExc_SyntaxError)) {
        Py_XDECREF(cache);
        return code;
    }

    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int is_tla = 0;
    code = apy__importer_compile(data, path, 0, &is_tla);
    if (code == NULL || !is_tla) {
        Py_XDECREF(code);
        Py_XDECREF(cache);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    apy__importer_verbose("top-level await code object from %U", path);
    if (have_stat && cache != NULL && cache != Py_None
        && apy__importer_cache_write(cache, &src, code) < 0) {
        Py_DECREF(cache);
        Py_DECREF(code);
        return NULL;
    }
    Py_XDECREF(cache);
    if (set_tla_mark(path) < 0) {
        Py_DECREF(code);
        return NULL;
    }
    return code;
}

/* _cache_bytecode(source_path, bytecode_path, data): SourceFileLoader's,
 * except for TLA code, which must never land in python's pyc (python
 * would then import an empty module instead of reporting the
 * SyntaxError). Returns a new reference or NULL. */
static PyObject *
loader_cache_bytecode(PyObject *self, PyTypeObject *cls,
                      PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    if (nargs != 3 || (kwnames && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError,
                        "_cache_bytecode() takes exactly 3 arguments");
        return NULL;
    }
    int marked = take_tla_mark(args[0]);
    if (marked < 0) {
        return NULL;
    }
    if (marked) {
        Py_RETURN_NONE;
    }
    PyObject *base = (PyObject *)cls->tp_base; /* SourceFileLoader */
    PyObject *func = PyObject_GetAttrString(base, "_cache_bytecode");
    if (func == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(func, self, args[0], args[1],
                                               args[2], NULL);
    Py_DECREF(func);
    return r;
}

/* exec_module(module): get_code, then run it (exec.c decides how TLA
 * code runs). Returns None or NULL. */
static PyObject *
loader_exec_module(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                   Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 1 || (kwnames && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError,
                        "exec_module() takes exactly 1 argument");
        return NULL;
    }
    apy_importer_state_t *st = apy__importer_state_of(cls);
    PyObject *module = args[0];
    PyObject *name = PyObject_GetAttrString(module, "__name__");
    if (name == NULL) {
        return NULL;
    }
    PyObject *code = PyObject_CallMethod(self, "get_code", "O", name);
    if (code == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    if (code == Py_None) {
        PyErr_Format(PyExc_ImportError,
                     "cannot load module %R when get_code() returns None",
                     name);
        Py_DECREF(code);
        Py_DECREF(name);
        return NULL;
    }
    Py_DECREF(name);
    int rc = apy__importer_exec_code(st, module, code, NULL);
    Py_DECREF(code);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

#define LOADER_METH(name, func, doc)                                       \
    {                                                                      \
        name, (PyCFunction)(void (*)(void))func,                           \
            METH_METHOD | METH_FASTCALL | METH_KEYWORDS, PyDoc_STR(doc)    \
    }

static PyMethodDef loader_methods[] = {
    LOADER_METH("source_to_code", loader_source_to_code,
                "Compile source; top-level-await code when python's "
                "compile fails and the module awaits at top level."),
    LOADER_METH("_cache_bytecode", loader_cache_bytecode,
                "Write the pyc, except for top-level-await code."),
    LOADER_METH("exec_module", loader_exec_module,
                "Execute the module; top-level-await code runs on "
                "apyrun's loop."),
    {NULL, NULL, 0, NULL},
};

static PyType_Slot loader_slots[] = {
    {Py_tp_methods, loader_methods},
    {Py_tp_doc, "apyrun's SourceFileLoader: python's, plus modules with "
                "top-level await."},
    {0, NULL},
};

/* Created with importlib's SourceFileLoader as its base (module.c); the
 * instance layout is the base's (basicsize 0). */
PyType_Spec apy__importer_source_loader_spec = {
    .name = "_apyrun_importer.SourceFileLoader",
    .basicsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = loader_slots,
};
