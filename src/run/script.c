/* SPDX-License-Identifier: MIT */
/* Runs a script file, -c CODE or the program on stdin as __main__. Code
 * without top-level await is handed to CPython's own Py_RunMain whenever
 * it can be, so that sys.path[0], -i, PYTHONSTARTUP, pyc/zip/directory
 * targets and exit codes are python's by construction; TLA code runs
 * here as the main task (src/tla). */
#include <Python.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apyrun/run_report.h"
#include "apyrun/tla.h"
#include "run.h"

/* Returns 1 if source may hold top-level await: it names async or await
 * at all. A cheap filter so that ordinary scripts reach Py_RunMain with
 * no compile of ours. */
static int
may_be_tla(const char *source, size_t len)
{
    return memmem(source, len, "await", 5) != NULL
           || memmem(source, len, "async", 5) != NULL;
}

/* Reads all of fp. Returns a malloc'ed NUL-terminated buffer and its
 * length, or NULL (errno set) on a read error or embedded NUL byte. It
 * stops at the first read that brings a NUL: such source is never run by
 * apyrun (python reports it), and reading on would make a script linked
 * to /dev/zero cost all of memory where python refuses it at once. */
static char *
read_all(FILE *fp, size_t *len)
{
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        return NULL;
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                return NULL;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, fp);
        int nul = memchr(buf + n, '\0', got) != NULL;
        n += got;
        if (got == 0 || nul) {
            break;
        }
    }
    if (ferror(fp) || memchr(buf, '\0', n) != NULL) {
        free(buf);
        errno = EINVAL;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Sets or clears __main__.__file__ and __cached__ as python's
 * _PyRun_SimpleFileObject does around a file run. */
static int
set_main_file(PyObject *globals, PyObject *filename)
{
    if (filename == NULL) {
        int rc = 0;
        if (PyDict_DelItemString(globals, "__file__") < 0) {
            rc = -1;
        }
        if (PyDict_DelItemString(globals, "__cached__") < 0) {
            rc = -1;
        }
        PyErr_Clear();
        return rc;
    }
    if (PyDict_SetItemString(globals, "__file__", filename) < 0
        || PyDict_SetItemString(globals, "__cached__", Py_None) < 0) {
        return -1;
    }
    return 0;
}

/* Runs compiled module code in __main__: TLA code as the main task, other
 * code directly. filename, when not NULL, becomes __file__ for the run.
 * Returns the exit code. */
static int
run_main_code(const PyConfig *config, PyObject *code, int is_tla,
              PyObject *filename, int *unhandled_sigint)
{
    PyObject *main_mod = PyImport_AddModule("__main__"); /* borrowed */
    if (main_mod == NULL) {
        return apy_run_report_error(unhandled_sigint);
    }
    PyObject *globals = PyModule_GetDict(main_mod); /* borrowed */
    if (filename != NULL && set_main_file(globals, filename) < 0) {
        return apy_run_report_error(unhandled_sigint);
    }
    int exitcode;
    if (is_tla) {
        exitcode = apy_run_tla_result(apy_tla_run_main(code, globals),
                                      unhandled_sigint);
    } else {
        PyObject *r = PyEval_EvalCode(code, globals, globals);
        if (r != NULL) {
            Py_DECREF(r);
            exitcode = 0;
        } else {
            exitcode = apy_run_report_error(unhandled_sigint);
        }
    }
    if (filename != NULL) {
        set_main_file(globals, NULL);
    }
    PyErr_Clear();
    apy_run_inspect(config, &exitcode);
    return exitcode;
}

/* sys.path[0] = "", as python has it for -c and stdin. 0 or -1. */
static int
set_empty_path0(const PyConfig *config)
{
    PyObject *empty = PyUnicode_FromString("");
    if (empty == NULL) {
        return -1;
    }
    int rc = apy_run_set_path0(config, empty);
    Py_DECREF(empty);
    return rc;
}

/* The -c target. Returns the exit code; -3 means "not TLA: let
 * Py_RunMain run it". */
int
apy__run_command(const PyConfig *config, int *unhandled_sigint)
{
    PyObject *text = NULL, *filename = NULL, *code = NULL;
    int is_tla = 0, exitcode = -3;
    text = PyUnicode_FromWideChar(config->run_command, -1);
    if (text == NULL) {
        goto not_ours;
    }
    const char *source = PyUnicode_AsUTF8(text);
    if (source == NULL) {
        goto not_ours;
    }
    if (!may_be_tla(source, strlen(source))) {
        goto done;
    }
    filename = PyUnicode_FromString("<string>");
    if (filename == NULL) {
        goto not_ours;
    }
    code = apy_tla_compile(source, filename, PyCF_IGNORE_COOKIE, &is_tla);
    Py_CLEAR(filename);
    Py_CLEAR(text); /* source is gone with it */
    if (code == NULL || !is_tla) {
        goto not_ours;
    }
    if (set_empty_path0(config) < 0) {
        exitcode = apy_run_report_error(unhandled_sigint);
    } else {
        exitcode = run_main_code(config, code, 1, NULL, unhandled_sigint);
    }
    goto done;

not_ours:
    PyErr_Clear();
done:
    Py_XDECREF(code);
    Py_XDECREF(filename);
    Py_XDECREF(text);
    return exitcode;
}

/* Returns 1 if dir holds something python runs as __main__. */
static int
dir_has_main(const char *dir)
{
    static const char *const names[] = {"__main__.py", "__main__.pyc",
                                        "__main__"};
    char path[4096];
    struct stat st;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (stat(path, &st) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Returns 1 if filename is a zip archive python would run, but without a
 * __main__ module in it; 0 otherwise (not a zip, or runnable). */
static int
is_zip_without_main(PyObject *filename)
{
    PyObject *importer = NULL;
    PyObject *zipimport = PyImport_ImportModule("zipimport");
    if (zipimport != NULL) {
        importer = PyObject_CallMethod(zipimport, "zipimporter", "O",
                                       filename);
        Py_DECREF(zipimport);
    }
    if (importer == NULL) {
        /* Not a zip archive (ZipImportError): python runs it as source. */
        PyErr_Clear();
        return 0;
    }
    PyObject *spec = PyObject_CallMethod(importer, "find_spec", "s",
                                         "__main__");
    Py_DECREF(importer);
    int missing = spec == Py_None;
    Py_XDECREF(spec);
    PyErr_Clear();
    return missing;
}

/* sys.path[0] is the script's real directory, as python's
 * _PyPathConfig_ComputeSysPath0 makes it (symlinks resolved). 0 or -1. */
static int
set_script_path0(const PyConfig *config, const char *path)
{
    char *real = realpath(path, NULL);
    const char *slash = real ? strrchr(real, '/') : NULL;
    PyObject *path0 = slash ? PyUnicode_DecodeFSDefaultAndSize(
                                  real, slash == real ? 1 : slash - real)
                            : PyUnicode_FromString("");
    free(real);
    if (path0 == NULL) {
        return -1;
    }
    int rc = apy_run_set_path0(config, path0);
    Py_DECREF(path0);
    return rc;
}

/* The FILE target. Returns the exit code, or -3 for "let Py_RunMain run
 * it" (non-TLA code, and every case python reports itself: unreadable
 * files, .pyc files, zip files). */
int
apy__run_file(const PyConfig *config, const char *program,
              int *unhandled_sigint)
{
    PyObject *filename = NULL, *fsname = NULL, *code = NULL;
    int exitcode = -3;
    filename = PyUnicode_FromWideChar(config->run_filename, -1);
    if (filename == NULL) {
        goto not_ours;
    }
    fsname = PyUnicode_EncodeFSDefault(filename);
    if (fsname == NULL) {
        goto not_ours;
    }
    const char *path = PyBytes_AS_STRING(fsname);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (!dir_has_main(path)) {
            /* python exits 1 here; apyrun's contract is 2 for every
             * unusable input file (DESIGN 6). */
            PyObject *name_repr = PyObject_Repr(filename);
            if (name_repr != NULL) {
                fprintf(stderr, "%s: can't find '__main__' module in %s\n",
                        program, PyUnicode_AsUTF8(name_repr)
                                     ? PyUnicode_AsUTF8(name_repr) : "?");
                Py_DECREF(name_repr);
            }
            PyErr_Clear();
            exitcode = 2;
        }
        goto done;
    }
    size_t path_len = strlen(path);
    int dot_py = path_len >= 3 && strcmp(path + path_len - 3, ".py") == 0;
    if (!dot_py && is_zip_without_main(filename)) {
        fprintf(stderr, "%s: can't find '__main__' module in '%s'\n",
                program, path);
        exitcode = 2;
        goto done;
    }
    size_t plen = strlen(path);
    if (plen >= 4 && strcmp(path + plen - 4, ".pyc") == 0) {
        goto done;
    }
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        goto done;
    }
    size_t len = 0;
    char *source = read_all(fp, &len);
    fclose(fp);
    if (source == NULL || (len >= 2 && source[0] == 'P' && source[1] == 'K')
        || !may_be_tla(source, len)) {
        free(source);
        goto done;
    }
    int is_tla = 0;
    code = apy_tla_compile(source, filename, 0, &is_tla);
    free(source);
    if (code == NULL || !is_tla) {
        goto not_ours;
    }
    if (set_script_path0(config, path) < 0) {
        exitcode = apy_run_report_error(unhandled_sigint);
    } else {
        exitcode = run_main_code(config, code, 1, filename,
                                 unhandled_sigint);
    }
    goto done;

not_ours:
    PyErr_Clear();
done:
    Py_XDECREF(code);
    Py_XDECREF(fsname);
    Py_XDECREF(filename);
    return exitcode;
}

/* A program piped on stdin (no target, or "-", stdin not a terminal). It
 * cannot be read twice, so it always runs here. */
int
apy__run_stdin(const PyConfig *config, int *unhandled_sigint)
{
    size_t len = 0;
    char *source = read_all(stdin, &len);
    if (source == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        return apy_run_report_error(unhandled_sigint);
    }
    PyObject *code = NULL;
    int is_tla = 0;
    PyObject *filename = PyUnicode_FromString("<stdin>");
    if (filename != NULL) {
        code = apy_tla_compile(source, filename, 0, &is_tla);
    }
    free(source);
    int rc = set_empty_path0(config);
    int exitcode;
    if (code == NULL || rc < 0) {
        exitcode = apy_run_report_error(unhandled_sigint);
    } else {
        exitcode = run_main_code(config, code, is_tla, filename,
                                 unhandled_sigint);
    }
    Py_XDECREF(code);
    Py_XDECREF(filename);
    return exitcode;
}
