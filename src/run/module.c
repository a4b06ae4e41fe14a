/* SPDX-License-Identifier: MIT */
/* The -m target. Non-TLA modules run through runpy._run_module_as_main,
 * exactly as python's own -m; a module whose code is TLA (its compile
 * fails, the flagged compile yields a coroutine) runs as the main task
 * with the globals runpy would give it. */
#include <Python.h>

#include <unistd.h>

#include "apyrun/tla.h"
#include "apyrun/run_report.h"
#include "run.h"

/* Finds the spec of the module -m runs: name, or name.__main__ for a
 * package. Returns a new reference, Py_None if not found, NULL on error. */
static PyObject *
main_spec(PyObject *util, PyObject *name)
{
    PyObject *spec = PyObject_CallMethod(util, "find_spec", "O", name);
    if (spec == NULL || spec == Py_None) {
        return spec;
    }
    PyObject *locations = PyObject_GetAttrString(spec,
                                                 "submodule_search_locations");
    if (locations == NULL) {
        Py_DECREF(spec);
        return NULL;
    }
    int is_package = locations != Py_None;
    Py_DECREF(locations);
    if (!is_package) {
        return spec;
    }
    Py_DECREF(spec);
    PyObject *sub = PyUnicode_FromFormat("%U.__main__", name);
    if (sub == NULL) {
        return NULL;
    }
    spec = PyObject_CallMethod(util, "find_spec", "O", sub);
    Py_DECREF(sub);
    return spec;
}

/* spec.loader.get_source(spec.name): a new reference (None when the
 * loader has no source), or NULL with an exception set. */
static PyObject *
module_source(PyObject *spec)
{
    PyObject *loader = NULL, *spec_name = NULL, *source = NULL;
    loader = PyObject_GetAttrString(spec, "loader");
    if (loader == NULL) {
        goto done;
    }
    spec_name = PyObject_GetAttrString(spec, "name");
    if (spec_name == NULL) {
        goto done;
    }
    source = PyObject_CallMethod(loader, "get_source", "O", spec_name);
done:
    Py_XDECREF(spec_name);
    Py_XDECREF(loader);
    return source;
}

/* Called with the SyntaxError of runpy's compile set. Returns a new
 * reference to the module's TLA code and its spec in *spec_out, or NULL
 * with the original SyntaxError restored when the module is not TLA. */
static PyObject *
tla_module_code(PyObject *name, PyObject **spec_out)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    *spec_out = NULL;

    PyObject *code = NULL, *spec = NULL, *source = NULL, *origin = NULL;
    PyObject *util = PyImport_ImportModule("importlib.util");
    if (util == NULL) {
        goto fail;
    }
    spec = main_spec(util, name);
    Py_DECREF(util);
    if (spec == NULL || spec == Py_None) {
        goto fail;
    }
    origin = PyObject_GetAttrString(spec, "origin");
    if (origin == NULL || value == NULL) {
        goto fail;
    }
    PyObject *err_file = PyObject_GetAttrString(value, "filename");
    int same = err_file != NULL
               && PyObject_RichCompareBool(origin, err_file, Py_EQ) == 1;
    Py_XDECREF(err_file);
    if (!same) {
        /* The syntax error is in another module (a parent package): it
         * is python's to report. */
        goto fail;
    }
    source = module_source(spec);
    if (source == NULL || !PyUnicode_Check(source)) {
        goto fail;
    }
    const char *text = PyUnicode_AsUTF8(source);
    if (text == NULL) {
        goto fail;
    }
    int is_tla = 0;
    code = apy_tla_compile(text, origin, PyCF_IGNORE_COOKIE, &is_tla);
    if (code == NULL || !is_tla) {
        Py_CLEAR(code);
        goto fail;
    }
    Py_DECREF(source);
    Py_DECREF(origin);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    *spec_out = spec;
    return code;
fail:
    Py_XDECREF(spec);
    Py_XDECREF(source);
    Py_XDECREF(origin);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    return NULL;
}

/* The module globals runpy._run_code gives a module run as __main__. */
static int
set_runpy_globals(PyObject *globals, PyObject *spec)
{
    static const char *const keys[][2] = {
        {"__file__", "origin"},  {"__cached__", "cached"},
        {"__loader__", "loader"}, {"__package__", "parent"},
    };
    PyObject *main_name = PyUnicode_FromString("__main__");
    if (main_name == NULL) {
        return -1;
    }
    int rc = PyDict_SetItemString(globals, "__name__", main_name);
    Py_DECREF(main_name);
    if (rc < 0) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        PyObject *v = PyObject_GetAttrString(spec, keys[i][1]);
        if (v == NULL || PyDict_SetItemString(globals, keys[i][0], v) < 0) {
            Py_XDECREF(v);
            return -1;
        }
        Py_DECREF(v);
    }
    if (PyDict_SetItemString(globals, "__doc__", Py_None) < 0
        || PyDict_SetItemString(globals, "__spec__", spec) < 0) {
        return -1;
    }
    /* runpy: sys.argv[0] becomes the module's file, failing as its
     * `sys.argv[0] = ...` does (IndexError for an empty list). */
    PyObject *argv = PySys_GetObject("argv"); /* borrowed */
    if (argv == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lost sys.argv");
        return -1;
    }
    PyObject *origin = PyObject_GetAttrString(spec, "origin");
    if (origin == NULL) {
        return -1;
    }
    rc = PySequence_SetItem(argv, 0, origin);
    Py_DECREF(origin);
    return rc;
}

/* python -m: sys.path[0] is the working directory. 0 or -1. */
static int
set_cwd_path0(const PyConfig *config)
{
    char cwd[4096];
    PyObject *path0 = getcwd(cwd, sizeof(cwd))
                          ? PyUnicode_DecodeFSDefault(cwd)
                          : PyErr_SetFromErrno(PyExc_OSError);
    if (path0 == NULL) {
        return -1;
    }
    int rc = apy_run_set_path0(config, path0);
    Py_DECREF(path0);
    return rc;
}

/* Runs module name's TLA code as the main task in __main__, with the
 * globals runpy gives it: code and spec (both stolen) as runpy found
 * them, or when code is NULL found again after runpy's SyntaxError (set).
 * Returns the exit code. */
static int
run_tla_module(PyObject *name, PyObject *spec, PyObject *code,
               int *unhandled_sigint)
{
    if (code == NULL) {
        code = tla_module_code(name, &spec);
        if (code == NULL) {
            return apy_run_report_error(unhandled_sigint);
        }
    }
    int exitcode;
    PyObject *main_mod = PyImport_AddModule("__main__"); /* borrowed */
    if (main_mod == NULL) {
        exitcode = apy_run_report_error(unhandled_sigint);
        goto done;
    }
    PyObject *globals = PyModule_GetDict(main_mod); /* borrowed */
    if (set_runpy_globals(globals, spec) < 0) {
        exitcode = apy_run_report_error(unhandled_sigint);
        goto done;
    }
    exitcode = apy_run_tla_result(apy_tla_run_main(code, globals),
                                  unhandled_sigint);
done:
    Py_DECREF(code);
    Py_DECREF(spec);
    return exitcode;
}

int
apy__run_module(const PyConfig *config, int *unhandled_sigint)
{
    PyObject *name = NULL, *runpy = NULL, *details = NULL;
    PyObject *tla_spec = NULL, *tla_code = NULL;
    int exitcode;
    name = PyUnicode_FromWideChar(config->run_module, -1);
    if (name == NULL || set_cwd_path0(config) != 0) {
        goto error;
    }
    runpy = PyImport_ImportModule("runpy");
    if (runpy == NULL) {
        goto error;
    }

    /* Compile first: a SyntaxError here may be TLA. runpy's own errors
     * (no such module, a package without __main__) are left for
     * _run_module_as_main to report in python's words. */
    PyObject *error_cls = PyObject_GetAttrString(runpy, "_Error");
    if (error_cls != NULL) {
        details = PyObject_CallMethod(runpy, "_get_module_details", "OO",
                                      name, error_cls);
        Py_DECREF(error_cls);
    }
    /* apyrun's importer compiles a TLA module or notebook without a
     * SyntaxError: its code object is then the coroutine body. */
    if (details != NULL && PyTuple_Check(details)
        && PyTuple_GET_SIZE(details) == 3
        && apy_tla_is_coroutine_code(PyTuple_GET_ITEM(details, 2))) {
        tla_spec = Py_NewRef(PyTuple_GET_ITEM(details, 1));
        tla_code = Py_NewRef(PyTuple_GET_ITEM(details, 2));
    }
    int syntax_error = details == NULL
                       && PyErr_ExceptionMatches(PyExc_SyntaxError);
    Py_CLEAR(details);
    if (tla_code != NULL || syntax_error) {
        exitcode = run_tla_module(name, tla_spec, tla_code,
                                  unhandled_sigint);
    } else {
        PyErr_Clear();
        PyObject *r = PyObject_CallMethod(runpy, "_run_module_as_main", "OO",
                                          name, Py_True);
        if (r != NULL) {
            Py_DECREF(r);
            exitcode = 0;
        } else {
            exitcode = apy_run_report_error(unhandled_sigint);
        }
    }
    Py_DECREF(runpy);
    Py_DECREF(name);
    apy_run_inspect(config, &exitcode);
    return exitcode;

error:
    Py_XDECREF(name);
    return apy_run_report_error(unhandled_sigint);
}
