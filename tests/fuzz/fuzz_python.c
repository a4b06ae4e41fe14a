/* SPDX-License-Identifier: MIT */
/* The embedded interpreter of the fuzz targets that need Python: made once
 * in fuzz_python_init (from each target's LLVMFuzzerInitialize) and kept
 * for the whole run, with checks.py imported from FUZZ_DIR. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "fuzz.h"

static PyObject *checks; /* the checks module, for the whole run */

static void
die_status(PyStatus status)
{
    fprintf(stderr, "fuzz: Python does not start: %s\n",
            status.err_msg ? status.err_msg : "?");
    abort();
}

void
fuzz_python_init(void)
{
    PyPreConfig pre;
    PyPreConfig_InitIsolatedConfig(&pre);
    /* pymalloc's arenas hide heap errors from ASan, and the objects in
     * them from LSan, as PYTHONMALLOC=malloc does for the suite. */
    pre.allocator = PYMEM_ALLOCATOR_MALLOC;
    /* What apyrun has in a UTF-8 locale, or the C one (PEP 540): argv
     * and file names decode as UTF-8, whatever this process's locale. */
    pre.utf8_mode = 1;
    PyStatus status = Py_PreInitialize(&pre);
    if (PyStatus_Exception(status)) {
        die_status(status);
    }
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.install_signal_handlers = 0;
    config.site_import = 0;
    config.write_bytecode = 0;
    status = PyConfig_SetBytesString(&config, &config.home,
                                     FUZZ_PYTHON_HOME);
    if (!PyStatus_Exception(status)) {
        status = Py_InitializeFromConfig(&config);
    }
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        die_status(status);
    }
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    PyObject *dir = PyUnicode_FromString(FUZZ_DIR);
    if (path == NULL || dir == NULL || PyList_Insert(path, 0, dir) < 0) {
        PyErr_Print();
        abort();
    }
    Py_DECREF(dir);
    checks = PyImport_ImportModule("checks");
    if (checks == NULL) {
        PyErr_Print();
        abort();
    }
}

PyObject *
fuzz_check(const char *name, PyObject *args)
{
    REQUIRE(args != NULL);
    PyObject *func = PyObject_GetAttrString(checks, name);
    REQUIRE(func != NULL);
    PyObject *r = PyObject_Call(func, args, NULL);
    Py_DECREF(func);
    Py_DECREF(args);
    if (r != NULL) {
        return r;
    }
    if (PyErr_ExceptionMatches(PyExc_RecursionError)
        || PyErr_ExceptionMatches(PyExc_MemoryError)) {
        PyErr_Clear();
        return NULL;
    }
    fprintf(stderr, "fuzz: checks.%s failed:\n", name);
    PyErr_Print();
    abort();
}

PyObject *
fuzz_bytes(const uint8_t *data, size_t size)
{
    const void *nul = memchr(data, '\0', size);
    if (nul != NULL) {
        size = (size_t)((const uint8_t *)nul - data);
    }
    PyObject *b = PyBytes_FromStringAndSize((const char *)data,
                                            (Py_ssize_t)size);
    REQUIRE(b != NULL);
    return b;
}
