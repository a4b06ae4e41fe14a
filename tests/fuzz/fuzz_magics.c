/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the magics' arguments: how a %%magic cell splits
 * (apy__ipy_split_cell_magic), what %%capture, %%writefile and %env make
 * of their arguments (src/ipython/magic_args.c), and IPython's $name
 * and {expr} expansion of commands (apy__ipy_expand, shell.c). Every
 * input is tried as a cell (up to a NUL), as an argument and as a
 * command; the properties (checks.py), else abort():
 *   - a %%magic cell splits into its name, its first line's rest and the
 *     body after it, with the body's line number right;
 *   - the parsers never fail (but %%writefile without a file name, a
 *     ValueError) and agree with the rules their contracts give;
 *   - expansion never fails, and gives what IPython's rules give
 *     ($$, {{ }}, $name, {expr}; unchanged when anything fails). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>

#include "fuzz.h"
#include "ipython/internal.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_python_init();
    return 0;
}

static void
fuzz_cell(PyObject *src)
{
    const char *text = PyBytes_AS_STRING(src);
    int cell_magic;
    char *out = apy_ipy_translate(text, &cell_magic);
    REQUIRE(out != NULL);
    free(out);
    if (!cell_magic) {
        return;
    }
    PyObject *name, *arg;
    const char *body;
    size_t first_line;
    REQUIRE(apy__ipy_split_cell_magic(text, &name, &arg, &body,
                                       &first_line) == 0);
    PyObject *r = fuzz_check("cell_magic",
                             Py_BuildValue("(OOOnn)", src, name, arg,
                                           (Py_ssize_t)(body - text),
                                           (Py_ssize_t)first_line));
    Py_XDECREF(r);
    Py_DECREF(name);
    Py_DECREF(arg);
}

static void
fuzz_args(PyObject *arg)
{
    int take[3], append;
    PyObject *var, *file, *name, *value;
    REQUIRE(apy__ipy_capture_options(arg, take, &var) == 0);
    if (apy__ipy_writefile_args(arg, &append, &file) < 0) {
        REQUIRE(PyErr_ExceptionMatches(PyExc_ValueError));
        PyErr_Clear();
        file = NULL;
    }
    int kind = apy__ipy_env_args(arg, &name, &value);
    REQUIRE(kind >= 0 && kind <= 2);
    PyObject *none = Py_None;
    PyObject *r = fuzz_check(
        "magic_args",
        Py_BuildValue("(O(iii)OiO(iOO))", arg, take[0], take[1], take[2],
                      var ? var : none, append, file ? file : none, kind,
                      name ? name : none, value ? value : none));
    Py_XDECREF(r);
    Py_XDECREF(var);
    Py_XDECREF(file);
    Py_XDECREF(name);
    Py_XDECREF(value);
}

static void
fuzz_expand(PyObject *cmd)
{
    PyObject *safe = fuzz_check("expand_safe", PyTuple_Pack(1, cmd));
    if (safe != Py_True) {
        Py_XDECREF(safe);
        return;
    }
    Py_DECREF(safe);
    PyObject *globals = fuzz_check("expand_globals", PyTuple_New(0));
    REQUIRE(globals != NULL && PyDict_Check(globals));
    PyObject *out = apy__ipy_expand(globals, cmd);
    REQUIRE(out != NULL && PyUnicode_Check(out) && !PyErr_Occurred());
    PyObject *r = fuzz_check("expand", PyTuple_Pack(2, cmd, out));
    Py_XDECREF(r);
    Py_DECREF(out);
    Py_DECREF(globals);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    PyObject *src = fuzz_bytes(data, size);
    fuzz_cell(src);
    /* The whole input, NULs included: a command is a str, which may
     * hold them (`__apyrun_nb__.system('{x\0}')`). */
    PyObject *arg = PyUnicode_DecodeUTF8((const char *)data,
                                         (Py_ssize_t)size, "replace");
    REQUIRE(arg != NULL);
    fuzz_args(arg);
    fuzz_expand(arg);
    Py_DECREF(arg);
    Py_DECREF(src);
    return 0;
}
