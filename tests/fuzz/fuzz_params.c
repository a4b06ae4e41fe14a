/* SPDX-License-Identifier: MIT */
/* libFuzzer target for papermill's parameters: `-p NAME VALUE` and
 * `--params-file F.json` through apy_cli_parse (src/cli) into the
 * injected-parameters source (apy__nbrun_params_source,
 * src/run/notebook/params.c). An input is NUL-separated fields: the
 * params file's bytes (empty: no file), then NAME, VALUE pairs. The
 * properties (checks.params), else abort():
 *   - a refused input comes with a one-line message, and is refused
 *     exactly when the file is not a JSON object, a name is not an
 *     identifier python keeps as written, or a value nests too deeply;
 *   - otherwise the source compiles and, run, assigns exactly the given
 *     names, in order, to the values papermill gives them (-p values
 *     typed True/False/None/int/float/str; NaN and infinities too). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "apyrun/cli.h"
#include "fuzz.h"
#include "run/notebook/internal.h"

#define MAX_PARAMS 16

static int params_fd = -1; /* the --params-file, rewritten per input */
static char params_path[64];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_python_init();
    params_fd = memfd_create("params.json", 0);
    REQUIRE(params_fd >= 0);
    snprintf(params_path, sizeof(params_path), "/proc/self/fd/%d",
             params_fd);
    return 0;
}

/* Returns a new str of err (UTF-8, whatever it holds). */
static PyObject *
message(const char *err)
{
    PyObject *s = PyUnicode_DecodeUTF8(err, strlen(err), "replace");
    REQUIRE(s != NULL);
    return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *fields = malloc(size + 1);
    REQUIRE(fields != NULL);
    memcpy(fields, data, size);
    fields[size] = '\0';

    /* argv: apyrun [-p NAME VALUE]... [--params-file F] nb.ipynb */
    char *argv[4 + 3 * MAX_PARAMS];
    int argc = 0;
    argv[argc++] = "apyrun";
    const char *file = fields;
    size_t file_len = strlen(file);
    PyObject *pairs = PyList_New(0);
    REQUIRE(pairs != NULL);
    char *p = fields + file_len + 1;
    char *end = fields + size;
    while (p < end && PyList_GET_SIZE(pairs) < MAX_PARAMS) {
        char *value = p + strlen(p) + 1;
        if (value >= end + 1) {
            break;
        }
        argv[argc++] = "-p";
        argv[argc++] = p;
        argv[argc++] = value;
        PyObject *pair = Py_BuildValue("(yy)", p, value);
        REQUIRE(pair != NULL && PyList_Append(pairs, pair) == 0);
        Py_DECREF(pair);
        p = value + strlen(value) + 1;
    }
    if (file_len > 0) {
        REQUIRE(ftruncate(params_fd, 0) == 0);
        REQUIRE(pwrite(params_fd, file, file_len, 0) == (ssize_t)file_len);
        argv[argc++] = "--params-file";
        argv[argc++] = params_path;
    }
    argv[argc++] = "nb.ipynb";

    apy_options_t opts;
    char err[512];
    REQUIRE(apy_cli_parse(argc, argv, &opts, err, sizeof(err)) == 0);
    REQUIRE(opts.nparams == (size_t)PyList_GET_SIZE(pairs));
    char *source = apy__nbrun_params_source(&opts, err, sizeof(err));
    REQUIRE(!PyErr_Occurred());
    if (source != NULL || err[0] != '\0') {
        PyObject *text = source ? PyUnicode_FromString(source)
                                : Py_NewRef(Py_None);
        REQUIRE(text != NULL);
        PyObject *file_bytes = file_len > 0
                                   ? PyBytes_FromStringAndSize(file, file_len)
                                   : Py_NewRef(Py_None);
        PyObject *r = fuzz_check("params",
                                 Py_BuildValue("(NONN)", file_bytes, pairs,
                                               text, message(err)));
        Py_XDECREF(r);
    } else {
        REQUIRE(opts.nparams == 0 && file_len == 0);
    }
    free(source);
    apy_cli_free(&opts);
    Py_DECREF(pairs);
    free(fields);
    return 0;
}
