/* SPDX-License-Identifier: MIT */
/* A cell's line numbers made the notebook file's lines: the body lines of
 * a cell (after a %%magic line, or all of it) to the lines of the JSON
 * (or text notebook) that hold them, for code, AST nodes and
 * SyntaxErrors, as cells.c compiles them. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "internal.h"

/* Returns the number of lines of text ("\n"-terminated ones plus a last
 * unterminated one). */
size_t
apy__nbrun_count_lines(const char *text)
{
    size_t n = 0;
    const char *p = text;
    for (; *p != '\0'; p++) {
        if (*p == '\n') {
            n++;
        }
    }
    if (p > text && p[-1] != '\n') {
        n++;
    }
    return n;
}

/* Returns the JSON line of line k (1-based) of a body that starts after
 * line first_line of the cell, or 0 when the cell is in no file. */
static long
body_line(const apy_nb_cell_t *cell, size_t first_line, long k)
{
    if (cell->nlines == 0) {
        return 0;
    }
    return apy_nb_cell_line(cell, (long)first_line + k);
}

/* Returns base when body line k is JSON line base + k for every line (so
 * that prepending base blank lines makes the numbers right), else -1. */
long
apy__nbrun_consecutive_base(const apy_nb_cell_t *cell, size_t first_line,
                            size_t n)
{
    if (cell->nlines == 0) {
        return 0;
    }
    long base = body_line(cell, first_line, 1) - 1;
    for (size_t k = 2; k <= n; k++) {
        if (body_line(cell, first_line, (long)k) != base + (long)k) {
            return -1;
        }
    }
    return base < 0 ? -1 : base;
}

/* Makes node's end_col_offset no less than its col_offset. 0 or -1. */
static int
collapse_columns(PyObject *node)
{
    PyObject *c = PyObject_GetAttrString(node, "col_offset");
    PyObject *e = c != NULL ? PyObject_GetAttrString(node, "end_col_offset")
                            : NULL;
    int rc = 0;
    if (c == NULL || e == NULL) {
        PyErr_Clear();
    } else if (PyLong_Check(c) && PyLong_Check(e)
               && PyLong_AsLong(e) < PyLong_AsLong(c)) {
        rc = PyObject_SetAttrString(node, "end_col_offset", c);
    }
    Py_XDECREF(c);
    Py_XDECREF(e);
    return rc;
}

/* Renumbers every node of tree from body lines to JSON lines. 0 or -1. */
int
apy__nbrun_renumber_ast(PyObject *tree, const apy_nb_cell_t *cell,
                        size_t first_line)
{
    static const char *const attrs[] = {"lineno", "end_lineno"};
    PyObject *ast = NULL, *nodes = NULL, *it = NULL, *node = NULL;

    ast = PyImport_ImportModule("ast");
    if (ast == NULL) {
        goto error;
    }
    nodes = PyObject_CallMethod(ast, "walk", "O", tree);
    if (nodes == NULL) {
        goto error;
    }
    it = PyObject_GetIter(nodes);
    if (it == NULL) {
        goto error;
    }
    while ((node = PyIter_Next(it)) != NULL) {
        long was[2] = {0, 0}, now[2] = {0, 0};
        for (size_t i = 0; i < 2; i++) {
            PyObject *v = PyObject_GetAttrString(node, attrs[i]);
            if (v == NULL) {
                PyErr_Clear();
                continue;
            }
            long k = PyLong_Check(v) ? PyLong_AsLong(v) : 0;
            Py_DECREF(v);
            if (k <= 0) {
                continue;
            }
            was[i] = k;
            now[i] = body_line(cell, first_line, k);
            PyObject *line = PyLong_FromLong(now[i]);
            if (line == NULL) {
                goto error;
            }
            int rc = PyObject_SetAttrString(node, attrs[i], line);
            Py_DECREF(line);
            if (rc < 0) {
                goto error;
            }
        }
        /* Lines of a source given as one JSON string share its line: a
         * node over two of them then starts and ends on one line, and
         * its columns must still make a range, as compile() checks. */
        if (was[0] > 0 && was[1] > was[0] && now[0] == now[1]
            && collapse_columns(node) < 0) {
            goto error;
        }
        Py_CLEAR(node);
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(it);
    Py_DECREF(nodes);
    Py_DECREF(ast);
    return 0;

error:
    Py_XDECREF(node);
    Py_XDECREF(it);
    Py_XDECREF(nodes);
    Py_XDECREF(ast);
    return -1;
}

/* Renumbers the SyntaxError being raised from body lines to JSON lines.
 * Keeps it set. */
void
apy__nbrun_renumber_syntax_error(const apy_nb_cell_t *cell,
                                 size_t first_line)
{
    if (!PyErr_ExceptionMatches(PyExc_SyntaxError)) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    static const char *const attrs[] = {"lineno", "end_lineno"};
    for (size_t i = 0; value != NULL && i < 2; i++) {
        PyObject *v = PyObject_GetAttrString(value, attrs[i]);
        long k = v && PyLong_Check(v) ? PyLong_AsLong(v) : 0;
        Py_XDECREF(v);
        if (k > 0) {
            PyObject *line = PyLong_FromLong(body_line(cell, first_line, k));
            if (line != NULL) {
                PyObject_SetAttrString(value, attrs[i], line);
                Py_DECREF(line);
            }
        }
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

/* Puts body line k of source into the SyntaxError being raised as its
 * text: for file input CPython reads the line back from the file named,
 * which is the notebook's JSON. Keeps the exception set. */
void
apy__nbrun_fix_syntax_error_text(const char *source, long base)
{
    if (!PyErr_ExceptionMatches(PyExc_SyntaxError)) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *v = value ? PyObject_GetAttrString(value, "lineno") : NULL;
    long k = v && PyLong_Check(v) ? PyLong_AsLong(v) - base : 0;
    Py_XDECREF(v);
    const char *p = source;
    for (long i = 1; k > 0 && i < k && p != NULL; i++) {
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    if (k > 0 && p != NULL && *p != '\0') {
        const char *nl = strchr(p, '\n');
        Py_ssize_t n = nl ? nl - p + 1 : (Py_ssize_t)strlen(p);
        PyObject *text = PyUnicode_DecodeUTF8(p, n, "replace");
        if (text != NULL) {
            PyObject_SetAttrString(value, "text", text);
            Py_DECREF(text);
        }
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

/* Returns a new reference to code with every line number (its own and
 * those of the code objects it holds: functions, classes, comprehensions)
 * `by` lines later, or NULL with an exception set. A code object's line
 * table is relative to co_firstlineno, so moving that moves them all.
 * Prepending `by` blank lines to the text would do the same, but costs
 * the tokenizer a pass over them: quadratic in the cells of a notebook. */
PyObject *
apy__nbrun_shift_code(PyObject *code, long by)
{
    PyCodeObject *co = (PyCodeObject *)code;
    PyObject *consts = PyTuple_New(PyTuple_GET_SIZE(co->co_consts));
    if (consts == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(co->co_consts); i++) {
        PyObject *c = PyTuple_GET_ITEM(co->co_consts, i); /* borrowed */
        c = PyCode_Check(c) ? apy__nbrun_shift_code(c, by) : Py_NewRef(c);
        if (c == NULL) {
            Py_DECREF(consts);
            return NULL;
        }
        PyTuple_SET_ITEM(consts, i, c);
    }
    PyObject *replace = NULL, *args = NULL, *kw = NULL, *r = NULL;
    replace = PyObject_GetAttrString(code, "replace");
    if (replace == NULL) {
        goto done;
    }
    args = PyTuple_New(0);
    if (args == NULL) {
        goto done;
    }
    kw = Py_BuildValue("{sNsO}", "co_firstlineno",
                       PyLong_FromLong(co->co_firstlineno + by),
                       "co_consts", consts);
    if (kw == NULL) {
        goto done;
    }
    r = PyObject_Call(replace, args, kw);
done:
    Py_XDECREF(kw);
    Py_XDECREF(args);
    Py_XDECREF(replace);
    Py_DECREF(consts);
    return r;
}
