/* SPDX-License-Identifier: MIT */
/* --check-outputs: each code cell's new outputs against those stored in
 * the notebook, by nbval's rules (nbval/plugin.py: coalesce_streams,
 * transform_streams_for_comparison, compare_outputs, sanitize), and a
 * unified diff on stderr for a cell that differs. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* How nbval makes outputs comparable. Streams of one name merge into the
 * first of them, then lose what \b and \r erase (its backspace and
 * carriage-return patterns); a stream becomes {name: text}; every key but
 * these is compared, the mime types of "data" one by one; the values of
 * one key are compared as an ordered list, whatever other keys lie
 * between them. Images: present or not, unless --check-images. */
static const char *const skipped_keys[] = {
    "metadata", "traceback", "prompt_number", "output_type", "name",
    "execution_count", "transient",
    "application/vnd.jupyter.widget-view+json", /* random model ids */
    NULL,
};
#define BACKSPACE_PATTERN "[^\\n]\\x08"
#define RETURN_PATTERN "(?m)^.*\\r(?=[^\\n])"
#define SANITIZE_PATTERN "(?m)^regex: (.*)$\\n^replace: (.*)$"

/* A line "# MARKER" of source: nbval's comment markers. */
static int
has_marker(const char *source, const char *marker)
{
    size_t mlen = strlen(marker);
    const char *line = source;
    while (*line != '\0') {
        const char *p = line + strspn(line, " \t");
        if (*p == '#') {
            p += strspn(p, "# \t");
            size_t n = strcspn(p, "\r\n");
            while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
                n--;
            }
            if (n == mlen && memcmp(p, marker, mlen) == 0) {
                return 1;
            }
        }
        const char *nl = strchr(line, '\n');
        if (nl == NULL) {
            break;
        }
        line = nl + 1;
    }
    return 0;
}

static int
tagged(const apy_nb_cell_t *cell, const char *tag, const char *marker)
{
    return apy_nb_cell_has_tag(cell, tag) || has_marker(cell->source, marker);
}

unsigned
apy__nbrun_check_tags(const apy_options_t *opts, const apy_nb_cell_t *cell)
{
    unsigned tags = 0;
    if (tagged(cell, "nbval-raises-exception", "NBVAL_RAISES_EXCEPTION")) {
        tags |= APY_NBRUN_TAG_RAISES;
    }
    if (opts->check_outputs == APY_CHECK_NONE) {
        return tags;
    }
    if (tagged(cell, "nbval-skip", "NBVAL_SKIP")) {
        tags |= APY_NBRUN_TAG_SKIP;
    }
    int ignore = tagged(cell, "nbval-ignore-output", "NBVAL_IGNORE_OUTPUT")
                 || has_marker(cell->source, "PYTEST_VALIDATE_IGNORE_OUTPUT");
    int check = tagged(cell, "nbval-check-output", "NBVAL_CHECK_OUTPUT");
    if (opts->check_outputs == APY_CHECK_STRICT ? !ignore : check) {
        tags |= APY_NBRUN_TAG_CHECK;
    }
    return tags;
}

/* The current exception's text, one line, in buf; clears it. */
static const char *
exception_text(char *buf, size_t size)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    snprintf(buf, size, "unknown error");
    PyObject *text = value != NULL ? PyObject_Str(value) : NULL;
    if (text != NULL && PyUnicode_Check(text)) {
        const char *utf8 = PyUnicode_AsUTF8(text);
        if (utf8 != NULL) {
            snprintf(buf, size, "%s", utf8);
        }
    }
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

/* [(compiled regex, replacement), ...] from the text of a sanitizer file:
 * a new list, or NULL with an exception set. */
static PyObject *
sanitizers_from(PyObject *re, PyObject *text)
{
    PyObject *list = NULL;
    PyObject *pairs = PyObject_CallMethod(re, "findall", "sO",
                                          SANITIZE_PATTERN, text);
    if (pairs == NULL) {
        return NULL;
    }
    list = PyList_New(0);
    if (list == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pairs); i++) {
        PyObject *pair = PyList_GET_ITEM(pairs, i); /* borrowed */
        PyObject *pattern = PyObject_CallMethod(re, "compile", "O",
                                                PyTuple_GET_ITEM(pair, 0));
        if (pattern == NULL) {
            goto error;
        }
        PyObject *entry = PyTuple_Pack(2, pattern, PyTuple_GET_ITEM(pair, 1));
        Py_DECREF(pattern);
        if (entry == NULL || PyList_Append(list, entry) < 0) {
            Py_XDECREF(entry);
            goto error;
        }
        Py_DECREF(entry);
    }
    Py_DECREF(pairs);
    return list;
error:
    Py_XDECREF(list);
    Py_DECREF(pairs);
    return NULL;
}

/* --sanitize FILE into run->sanitizers. 0, or 2 (reported: a usage
 * error, before any cell runs). */
static int
load_sanitizers(apy_nbrun_t *run, PyObject *re)
{
    const char *path = run->opts->sanitize;
    char buf[65536], why[512];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "apyrun: --sanitize %s: %s\n", path, strerror(errno));
        return 2;
    }
    size_t n = fread(buf, 1, sizeof(buf), f);
    int big = n == sizeof(buf) && fgetc(f) != EOF;
    fclose(f);
    if (big) {
        fprintf(stderr, "apyrun: --sanitize %s: over 64 KiB\n", path);
        return 2;
    }
    PyObject *text = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)n, "strict");
    PyObject *list = NULL;
    if (text != NULL) {
        list = sanitizers_from(re, text);
        Py_DECREF(text);
    }
    if (list == NULL) {
        fprintf(stderr, "apyrun: --sanitize %s: %s\n", path,
                exception_text(why, sizeof(why)));
        return 2;
    }
    if (PyList_GET_SIZE(list) == 0) {
        fprintf(stderr, "apyrun: --sanitize %s: no 'regex:' line followed "
                "by a 'replace:' line\n", path);
        Py_DECREF(list);
        return 2;
    }
    run->sanitizers = list;
    return 0;
}

/* value as compared: a list of strings joined (nbformat's multi-line
 * form), then each sanitizer applied to a string. New reference. */
static PyObject *
normalised(apy_nbrun_t *run, PyObject *value)
{
    PyObject *v;
    if (PyList_Check(value) && PyList_GET_SIZE(value) > 0
        && PyUnicode_Check(PyList_GET_ITEM(value, 0))) {
        PyObject *empty = PyUnicode_FromString("");
        if (empty == NULL) {
            return NULL;
        }
        v = PyUnicode_Join(empty, value);
        Py_DECREF(empty);
    } else {
        v = Py_NewRef(value);
    }
    if (v == NULL || !PyUnicode_Check(v) || run->sanitizers == NULL) {
        return v;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(run->sanitizers); i++) {
        PyObject *entry = PyList_GET_ITEM(run->sanitizers, i); /* borrowed */
        PyObject *next = PyObject_CallMethod(PyTuple_GET_ITEM(entry, 0),
                                             "sub", "OO",
                                             PyTuple_GET_ITEM(entry, 1), v);
        Py_DECREF(v);
        if (next == NULL) {
            return NULL;
        }
        v = next;
    }
    return v;
}

static int
is_skipped_key(PyObject *key)
{
    for (const char *const *k = skipped_keys; *k != NULL; k++) {
        if (PyUnicode_CompareWithASCIIString(key, *k) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Appends value (normalised) to flat[key]. 0 or -1. */
static int
put_flat(apy_nbrun_t *run, PyObject *flat, PyObject *key, PyObject *value)
{
    PyObject *v;
    const char *k = PyUnicode_AsUTF8(key);
    if (k == NULL) {
        return -1;
    }
    if (strncmp(k, "image/", 6) == 0 && !run->opts->check_images) {
        v = PyUnicode_FromString("<image>"); /* present: that is all */
    } else {
        v = normalised(run, value);
    }
    if (v == NULL) {
        return -1;
    }
    PyObject *list = PyDict_GetItemWithError(flat, key); /* borrowed */
    int rc = -1;
    if (list == NULL && !PyErr_Occurred()) {
        PyObject *fresh = PyList_New(0);
        if (fresh != NULL && PyDict_SetItem(flat, key, fresh) == 0) {
            list = fresh;
        }
        Py_XDECREF(fresh); /* the dict holds it */
    }
    if (list != NULL) {
        rc = PyList_Append(list, v);
    }
    Py_DECREF(v);
    return rc;
}

/* Adds one output (a dict, streams already {name: text}) to flat. */
static int
flatten_one(apy_nbrun_t *run, PyObject *flat, PyObject *out)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(out, &pos, &key, &value)) {
        if (!PyUnicode_Check(key) || is_skipped_key(key)) {
            continue;
        }
        if (PyUnicode_CompareWithASCIIString(key, "data") != 0
            || !PyDict_Check(value)) {
            if (put_flat(run, flat, key, value) < 0) {
                return -1;
            }
            continue;
        }
        PyObject *mime, *data;
        Py_ssize_t dpos = 0;
        while (PyDict_Next(value, &dpos, &mime, &data)) {
            if (PyUnicode_Check(mime) && !is_skipped_key(mime)
                && put_flat(run, flat, mime, data) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* What \b and \r leave of a merged stream's text (nbval's loop). */
static PyObject *
erase_controls(apy_nbrun_t *run, PyObject *text)
{
    PyObject *t = Py_NewRef(text);
    for (;;) {
        PyObject *next = PyObject_CallMethod(run->check_backspace, "sub",
                                             "sO", "", t);
        if (next == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        int shorter = PyUnicode_GET_LENGTH(next) < PyUnicode_GET_LENGTH(t);
        Py_DECREF(t);
        t = next;
        if (!shorter) {
            break;
        }
    }
    PyObject *done = PyObject_CallMethod(run->check_return, "sub", "sO", "",
                                         t);
    Py_DECREF(t);
    return done;
}

/* The streams of outputs: {name: merged text}, in order of first
 * appearance (a new dict), text not yet erased. */
static PyObject *
merged_streams(apy_nbrun_t *run, PyObject *outputs)
{
    PyObject *streams = PyDict_New();
    if (streams == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(outputs); i++) {
        PyObject *out = PyList_GET_ITEM(outputs, i); /* borrowed */
        if (!PyDict_Check(out)) {
            continue;
        }
        PyObject *type = PyDict_GetItemString(out, "output_type");
        if (type == NULL || !PyUnicode_Check(type)
            || PyUnicode_CompareWithASCIIString(type, "stream") != 0) {
            continue;
        }
        PyObject *name = PyDict_GetItemString(out, "name"); /* borrowed */
        PyObject *text = PyDict_GetItemString(out, "text"); /* borrowed */
        if (name == NULL || text == NULL) {
            continue;
        }
        PyObject *t = normalised(run, text);
        if (t == NULL) {
            Py_DECREF(streams);
            return NULL;
        }
        PyObject *prev = PyDict_GetItemWithError(streams, name); /* borrowed */
        PyObject *joined = NULL;
        if (prev != NULL && PyUnicode_Check(prev) && PyUnicode_Check(t)) {
            joined = PyUnicode_Concat(prev, t);
        } else if (prev != NULL) {
            joined = Py_NewRef(prev); /* not text: the first one stands */
        } else if (!PyErr_Occurred()) {
            joined = Py_NewRef(t);
        }
        Py_DECREF(t);
        if (joined == NULL || PyDict_SetItem(streams, name, joined) < 0) {
            Py_XDECREF(joined);
            Py_DECREF(streams);
            return NULL;
        }
        Py_DECREF(joined);
    }
    return streams;
}

/* outputs (a list of nbformat output dicts) as nbval compares them:
 * {key: [values in order]}. A new dict, or NULL with an exception. */
static PyObject *
comparable(apy_nbrun_t *run, PyObject *outputs)
{
    PyObject *flat = PyDict_New();
    PyObject *streams = NULL;
    if (flat == NULL) {
        return NULL;
    }
    if (!PyList_Check(outputs)) {
        return flat;
    }
    streams = merged_streams(run, outputs);
    if (streams == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(outputs); i++) {
        PyObject *out = PyList_GET_ITEM(outputs, i); /* borrowed */
        if (!PyDict_Check(out)) {
            continue;
        }
        PyObject *type = PyDict_GetItemString(out, "output_type");
        int stream = type != NULL && PyUnicode_Check(type)
                     && PyUnicode_CompareWithASCIIString(type, "stream") == 0;
        if (!stream) {
            if (flatten_one(run, flat, out) < 0) {
                goto error;
            }
            continue;
        }
        /* A stream counts once, where its name first appears. */
        PyObject *name = PyDict_GetItemString(out, "name"); /* borrowed */
        if (name == NULL) {
            continue;
        }
        PyObject *text = PyDict_GetItemWithError(streams, name); /* borrowed */
        if (text == NULL) {
            if (PyErr_Occurred()) {
                goto error;
            }
            continue;
        }
        Py_INCREF(text);
        if (PyDict_DelItem(streams, name) < 0) {
            Py_DECREF(text);
            goto error;
        }
        PyObject *erased = PyUnicode_Check(text) ? erase_controls(run, text)
                                                 : Py_NewRef(text);
        Py_DECREF(text);
        if (erased == NULL) {
            goto error;
        }
        int rc = put_flat(run, flat, name, erased);
        Py_DECREF(erased);
        if (rc < 0) {
            goto error;
        }
    }
    Py_DECREF(streams);
    return flat;
error:
    Py_XDECREF(streams);
    Py_DECREF(flat);
    return NULL;
}

/* The stored outputs of code cell i as nbval compares them, in
 * run->cells[i].expected; a cell the stored notebook never ran (count
 * null) is compared only if it holds outputs, which nbval calls an
 * error: it is reported so. 0 or -1. */
static int
load_expected(apy_nbrun_t *run, PyObject *json, size_t i)
{
    const char *text, *count;
    size_t len, count_len;
    apy_nbrun_cell_t *c = &run->cells[i];
    if (apy_nb_cell_member(&run->nb.cells[i], "outputs", &text, &len) < 0) {
        text = "[]";
        len = 2;
    }
    PyObject *outputs = PyObject_CallMethod(json, "loads", "s#", text,
                                            (Py_ssize_t)len);
    if (outputs == NULL) {
        return -1;
    }
    c->stored_unrun =
        apy_nb_cell_member(&run->nb.cells[i], "execution_count", &count,
                           &count_len) < 0
        || (count_len >= 4 && memcmp(count, "null", 4) == 0);
    if (c->stored_unrun && PyList_Check(outputs)
        && PyList_GET_SIZE(outputs) == 0) {
        c->tags &= ~APY_NBRUN_TAG_CHECK; /* nothing to compare with */
    }
    c->expected = comparable(run, outputs);
    Py_DECREF(outputs);
    return c->expected != NULL ? 0 : -1;
}

int
apy__nbrun_check_init(apy_nbrun_t *run)
{
    if (run->opts->check_outputs == APY_CHECK_NONE) {
        return 0;
    }
    int rc = -1;
    PyObject *json = NULL;
    PyObject *re = PyImport_ImportModule("re");
    if (re == NULL) {
        goto done;
    }
    if (run->opts->sanitize != NULL && (rc = load_sanitizers(run, re)) != 0) {
        goto done;
    }
    rc = -1;
    run->check_backspace = PyObject_CallMethod(re, "compile", "s",
                                               BACKSPACE_PATTERN);
    run->check_return = PyObject_CallMethod(re, "compile", "s",
                                            RETURN_PATTERN);
    json = PyImport_ImportModule("json");
    if (run->check_backspace == NULL || run->check_return == NULL
        || json == NULL) {
        goto done;
    }
    for (size_t i = 0; i < run->nb.ncells; i++) {
        if ((run->cells[i].tags & APY_NBRUN_TAG_CHECK)
            && load_expected(run, json, i) < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    Py_XDECREF(json);
    Py_XDECREF(re);
    return rc;
}

/* The lines a side of the diff shows: each key, sorted, then its values
 * (text as its lines, anything else as JSON). A new list. */
static PyObject *
diff_lines(PyObject *flat)
{
    PyObject *lines = PyList_New(0);
    PyObject *keys = PyDict_Keys(flat);
    PyObject *json = PyImport_ImportModule("json");
    if (lines == NULL || keys == NULL || json == NULL
        || PyList_Sort(keys) < 0) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);            /* borrowed */
        PyObject *values = PyDict_GetItem(flat, key);        /* borrowed */
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(values); j++) {
            PyObject *v = PyList_GET_ITEM(values, j);        /* borrowed */
            PyObject *head = PyUnicode_FromFormat("[%U]", key);
            PyObject *text = PyUnicode_Check(v)
                                 ? Py_NewRef(v)
                                 : PyObject_CallMethod(json, "dumps", "O", v);
            PyObject *split = NULL;
            if (text != NULL) {
                split = PyUnicode_Splitlines(text, 0);
            }
            int rc = -1;
            if (head != NULL && split != NULL
                && PyList_Append(lines, head) == 0) {
                rc = PyList_SetSlice(lines, PyList_GET_SIZE(lines),
                                     PyList_GET_SIZE(lines), split);
            }
            Py_XDECREF(split);
            Py_XDECREF(text);
            Py_XDECREF(head);
            if (rc < 0) {
                goto error;
            }
        }
    }
    Py_DECREF(json);
    Py_DECREF(keys);
    return lines;
error:
    Py_XDECREF(json);
    Py_XDECREF(keys);
    Py_XDECREF(lines);
    return NULL;
}

/* The unified diff of expected and actual, one str. */
static PyObject *
unified_diff(PyObject *expected, PyObject *actual)
{
    PyObject *a = NULL, *b = NULL, *gen = NULL, *nl = NULL, *text = NULL;
    PyObject *difflib = PyImport_ImportModule("difflib");
    if (difflib == NULL) {
        return NULL;
    }
    a = diff_lines(expected);
    b = diff_lines(actual);
    if (a == NULL || b == NULL) {
        goto done;
    }
    PyObject *func = PyObject_GetAttrString(difflib, "unified_diff");
    PyObject *args = Py_BuildValue("(OO)", a, b);
    PyObject *kwargs = Py_BuildValue("{ssssss}", "fromfile", "expected",
                                     "tofile", "actual", "lineterm", "");
    if (func != NULL && args != NULL && kwargs != NULL) {
        gen = PyObject_Call(func, args, kwargs);
    }
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_XDECREF(func);
    nl = PyUnicode_FromString("\n");
    if (gen != NULL && nl != NULL) {
        PyObject *list = PySequence_List(gen);
        if (list != NULL) {
            text = PyUnicode_Join(nl, list);
            Py_DECREF(list);
        }
    }
done:
    Py_XDECREF(nl);
    Py_XDECREF(gen);
    Py_XDECREF(b);
    Py_XDECREF(a);
    Py_DECREF(difflib);
    return text;
}

/* Reports cell i's difference: a header naming it, the diff. */
static void
report_difference(apy_nbrun_t *run, size_t i, PyObject *actual)
{
    char head[1024];
    snprintf(head, sizeof(head), "apyrun: outputs differ in cell %zu of %s%s"
             "\n", i + 1, run->shown_path,
             run->cells[i].stored_unrun
                 ? " (the stored cell was never run, yet has outputs)" : "");
    apy__nbrun_write_real(run, APY_NBRUN_STDERR, head);
    PyObject *diff = unified_diff(run->cells[i].expected, actual);
    const char *utf8 = diff != NULL ? PyUnicode_AsUTF8(diff) : NULL;
    if (utf8 != NULL) {
        apy__nbrun_write_real(run, APY_NBRUN_STDERR, utf8);
        apy__nbrun_write_real(run, APY_NBRUN_STDERR, "\n");
    }
    Py_XDECREF(diff);
    PyErr_Clear(); /* the header says enough without the diff */
    size_t used = strlen(run->check_cells);
    snprintf(run->check_cells + used, sizeof(run->check_cells) - used,
             "%s%zu", run->check_failed ? ", " : "", i + 1);
    if (run->check_failed++ == 0) {
        run->check_first = i + 1;
    }
}

/* Compares cell i's final outputs with the stored ones: 0 (same, or
 * not compared), 1 (they differ: reported), -1 with an exception set. */
static int
compare_cell(apy_nbrun_t *run, size_t i)
{
    apy_nbrun_cell_t *c = &run->cells[i];
    if (!(c->tags & APY_NBRUN_TAG_CHECK) || c->expected == NULL
        || c->count == 0 || c->outputs == NULL) {
        return 0;
    }
    PyObject *actual = comparable(run, c->outputs);
    if (actual == NULL) {
        return -1;
    }
    int same = c->stored_unrun
                   ? 0
                   : PyObject_RichCompareBool(c->expected, actual, Py_EQ);
    if (same == 0) {
        report_difference(run, i, actual);
    }
    Py_DECREF(actual);
    return same < 0 ? -1 : !same;
}

void
apy__nbrun_check_finish(apy_nbrun_t *run, int *exitcode)
{
    if (run->opts->check_outputs == APY_CHECK_NONE) {
        return;
    }
    int broken = 0;
    for (size_t i = 0; i < run->nb.ncells; i++) {
        if (compare_cell(run, i) < 0) {
            PyErr_Print(); /* the comparison itself failed */
            broken = 1;
        }
    }
    if (run->check_failed == 0 && !broken) {
        return;
    }
    if (*exitcode == 0) {
        *exitcode = 1;
    }
    if (run->outcome != NULL) {
        run->outcome->errors_allowed = 0;
        if (run->outcome->cell == 0 && run->check_failed > 0) {
            run->outcome->cell = (int)run->check_first;
            snprintf(run->outcome->message, sizeof(run->outcome->message),
                     "outputs differ from the stored ones (cell%s %s)",
                     run->check_failed > 1 ? "s" : "", run->check_cells);
        }
    }
}

void
apy__nbrun_check_fini(apy_nbrun_t *run)
{
    for (size_t i = 0; run->cells != NULL && i < run->nb.ncells; i++) {
        Py_CLEAR(run->cells[i].expected);
    }
    Py_CLEAR(run->sanitizers);
    Py_CLEAR(run->check_backspace);
    Py_CLEAR(run->check_return);
}
