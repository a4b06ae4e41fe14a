/* SPDX-License-Identifier: MIT */
/* IPython's automagic, which a kernel applies to a cell of one line
 * (InteractiveShell.run_cell's prefilter): `ls nbpackage`, `pwd`,
 * `cd ..` run as %ls, %pwd, %cd when the first word names a line magic
 * (or alias) that nothing in the namespace, the builtins or the keywords
 * shadows, and the line is no assignment to it (prefilter.py's
 * AssignmentChecker and AutoMagicChecker). Asking IPython which magics
 * exist imports it: only for a first word that is shadowed by nothing,
 * a line Python would refuse or fail on anyway. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "apyrun/ipython.h"
#include "internal.h"

/* The line magics apyrun runs itself (magics.c; and a kernel's,
 * kernel.c), found without IPython. */
static const char *const own[] = {
    "cd", "env", "set_env", "pip", "matplotlib", "config", "time",
    "killbgscripts", "pinfo", "pinfo2", "psearch", NULL,
};

/* 1 if name is shadowed as IPython's is_shadowed says: in ns, in the
 * builtins, or a keyword. -1 with an exception set. */
static int
shadowed(PyObject *ns, PyObject *name)
{
    int in = PyDict_Contains(ns, name);
    if (in != 0) {
        return in;
    }
    in = PyDict_Contains(PyEval_GetBuiltins(), name);
    if (in != 0) {
        return in;
    }
    /* keyword.kwlist of Python 3.11, without importing keyword. */
    static const char *const keywords[] = {
        "False", "None", "True", "and", "as", "assert", "async", "await",
        "break", "class", "continue", "def", "del", "elif", "else",
        "except", "finally", "for", "from", "global", "if", "import", "in",
        "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return",
        "try", "while", "with", "yield", NULL,
    };
    for (const char *const *k = keywords; *k != NULL; k++) {
        if (PyUnicode_CompareWithASCIIString(name, *k) == 0) {
            return 1;
        }
    }
    return 0;
}

/* 1 if IPython's shell has a line magic name (find_magic), 0 if not or
 * there is no IPython, -1 with an exception set. */
static int
ipython_has(ApyIpyMagicsObject *self, PyObject *name)
{
    PyObject *shell = apy__ipy_get_ipython(self, NULL);
    if (shell == NULL) {
        return -1;
    }
    int have = 0;
    if (self->shell_kind == APY_IPY_SHELL_IPYTHON) {
        PyObject *m = PyObject_CallMethod(shell, "find_magic", "(O)", name);
        have = m == NULL ? -1 : m != Py_None;
        Py_XDECREF(m);
    }
    Py_DECREF(shell);
    return have;
}

int
apy_ipy_automagic(PyObject *magics, PyObject *ns, const char *line)
{
    ApyIpyMagicsObject *self = (ApyIpyMagicsObject *)magics;
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'
                     || line[n - 1] == ' ' || line[n - 1] == '\t')) {
        n--;
    }
    if (self == NULL || ns == NULL || n == 0 || memchr(line, '\n', n)
        || line[0] == ' ' || line[0] == '\t') {
        return 0;
    }
    /* The first word: a name, as IPython's split_user_input takes it
     * (its head before a '.' is what may be shadowed). */
    size_t w = 0;
    while (w < n && (Py_ISALNUM(line[w]) || line[w] == '_')) {
        w++;
    }
    if (w == 0 || Py_ISDIGIT(line[0]) || (w < n && line[w] == '.')) {
        return 0;
    }
    const char *rest = line + w;
    while (*rest == ' ' || *rest == '\t') {
        rest++;
    }
    /* `ls = 3`, `cd, x`: an assignment or a tuple, Python's. A '(' makes
     * a call, which IPython's autocall (off) would not change either. */
    if ((rest[0] == '=' && rest[1] != '=') || rest[0] == ','
        || rest[0] == '(' || rest[0] == '[' || rest[0] == '.') {
        return 0;
    }
    PyObject *name = PyUnicode_DecodeUTF8(line, (Py_ssize_t)w, "strict");
    if (name == NULL) {
        PyErr_Clear();
        return 0;
    }
    int rc = shadowed(ns, name);
    if (rc == 0) {
        rc = 0;
        for (const char *const *o = own; *o != NULL && rc == 0; o++) {
            rc = PyUnicode_CompareWithASCIIString(name, *o) == 0;
        }
        const char *utf8 = rc == 0 ? PyUnicode_AsUTF8(name) : NULL;
        if (utf8 != NULL && apy__ipy_is_kernel_magic(utf8)) {
            rc = 1;
        }
        PyErr_Clear(); /* a name with no UTF-8: not a magic's */
        if (rc == 0) {
            rc = ipython_has(self, name);
        }
    } else if (rc > 0) {
        rc = 0;
    }
    Py_DECREF(name);
    return rc;
}
