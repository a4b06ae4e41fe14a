/* SPDX-License-Identifier: MIT */
/* What every runner of a target as __main__ shares (src/run's scripts
 * and -m, src/run/notebook): python's report of an uncaught exception and
 * its exit code, sys.path[0], and -i's REPL afterwards. Below the runners
 * and the dispatch; calls nothing of theirs. */
#include <Python.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "apyrun/run_report.h"

int
apy_run_report_error(int *unhandled_sigint)
{
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        *unhandled_sigint = 1;
    }
    PyErr_Print();
    return 1;
}

int
apy_run_tla_result(int rc, int *unhandled_sigint)
{
    if (rc == 0) {
        return 0;
    }
    if (rc == -2) {
        return 1;
    }
    return apy_run_report_error(unhandled_sigint);
}

int
apy_run_set_path0(const PyConfig *config, PyObject *path0)
{
    if (config->safe_path) {
        return 0;
    }
    PyObject *sys_path = PySys_GetObject("path"); /* borrowed */
    if (sys_path == NULL || !PyList_Check(sys_path)) {
        PyErr_SetString(PyExc_RuntimeError, "sys.path is not a list");
        return -1;
    }
    return PyList_Insert(sys_path, 0, path0);
}

void
apy_run_inspect(const PyConfig *config, int *exitcode)
{
    int inspect = config->inspect;
    if (!inspect && config->use_environment) {
        const char *env = getenv("PYTHONINSPECT");
        inspect = env != NULL && env[0] != '\0';
    }
    if (!inspect || !(isatty(fileno(stdin)) || config->interactive)) {
        return;
    }
    /* From here on exit() must exit: python clears inspect the same way
     * (pymain_set_inspect) in the interpreter's own config. */
    PyConfig *live = (PyConfig *)_PyInterpreterState_GetConfig(
        PyInterpreterState_Get());
    live->inspect = 0;
    if (!config->isolated) {
        PyObject *readline = PyImport_ImportModule("readline");
        if (readline == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(readline);
    }
    PyObject *hook = PySys_GetObject("__interactivehook__"); /* borrowed */
    if (hook != NULL) {
        PyObject *r = PyObject_CallNoArgs(hook);
        if (r == NULL) {
            PyErr_Print();
        }
        Py_XDECREF(r);
    }
    PyCompilerFlags cf = _PyCompilerFlags_INIT;
    *exitcode = PyRun_AnyFileFlags(stdin, "<stdin>", &cf) != 0;
}
