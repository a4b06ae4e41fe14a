/* SPDX-License-Identifier: MIT */
/* The .ipynb loader: a notebook's code cells become one module body, each
 * line at its line in the JSON file, so every line number python reports
 * is the notebook file's own. IPython syntax is src/ipython's; code and
 * texts are cached together (cache.c); runs through exec.c like any
 * module. */
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "apyrun/importer.h"
#include "apyrun/ipython.h"
#include "apyrun/notebook.h"
#include "importer.h"

/* Python text of a %% cell magic in an imported notebook: a call that
 * runs it where the notebook runner's helper can (see
 * apy_importer_cell_magic), on the cell's first line, the rest of the
 * cell kept as blank lines so numbering goes on. */
static void
put_cell_magic(apy_buf_t *b, const char *cell)
{
    apy_buf_puts(b, "__import__('" APY_IMPORTER_MODULE_NAME "')._cell_magic(");
    /* The cell as a Python string literal: hex escapes for anything but
     * plain printable ASCII. */
    apy_buf_put(b, "'", 1);
    for (const unsigned char *p = (const unsigned char *)cell; *p; p++) {
        char esc[8];
        if (*p >= 0x20 && *p < 0x7f && *p != '\'' && *p != '\\') {
            apy_buf_put(b, (const char *)p, 1);
        } else {
            snprintf(esc, sizeof(esc), "\\x%02x", *p);
            apy_buf_put(b, esc, 4);
        }
    }
    apy_buf_puts(b, "'.encode('latin-1').decode('utf-8'), globals())");
}

/* Appends the code cells of nb, each line at its JSON line, to py (the
 * Python text: IPython syntax translated) and to shown (the cells as
 * written, what tracebacks and inspect show). 0 or -1 with an error. */
static int
build_source(const apy_notebook_t *nb, apy_buf_t *py, apy_buf_t *shown)
{
    long last = 0; /* the JSON line the text so far ends on */
    for (size_t i = 0; i < nb->ncells; i++) {
        const apy_nb_cell_t *cell = &nb->cells[i];
        if (cell->kind != APY_NB_CODE || cell->nlines == 0) {
            continue;
        }
        int magic = 0;
        char *text = apy_ipy_translate(cell->source, &magic);
        if (text == NULL) {
            return -1;
        }
        const char *p = text, *q = cell->source;
        for (size_t k = 0; k < cell->nlines && *q != '\0'; k++) {
            /* Jupyter's layout maps lines to consecutive JSON lines; any
             * other layout gets the nearest increasing numbers. */
            long at = cell->line_map[k] > last ? cell->line_map[k]
                                               : last + 1;
            for (; last + 1 < at; last++) {
                apy_buf_put(py, "\n", 1);
                apy_buf_put(shown, "\n", 1);
            }
            last = at;
            /* translate.c keeps lines where they are: line k of text is
             * line k of the cell. */
            const char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            const char *qnl = strchr(q, '\n');
            size_t qn = qnl ? (size_t)(qnl - q) : strlen(q);
            if (magic && k == 0) {
                put_cell_magic(py, cell->source);
            } else if (!magic) {
                apy_buf_put(py, p, n);
            }
            apy_buf_put(py, "\n", 1);
            apy_buf_put(shown, q, qn);
            apy_buf_put(shown, "\n", 1);
            p += n + (nl ? 1 : 0);
            q += qn + (qnl ? 1 : 0);
        }
        free(text);
    }
    if (py->failed || shown->failed) {
        PyErr_NoMemory();
        return -1;
    }
    apy_buf_put(py, "", 0);
    apy_buf_put(shown, "", 0);
    return 0;
}

/* Reads notebook `path` into its module's Python text (*py) and the
 * cells' own text at the same lines (*shown, Py_None when it is the
 * same): new references, 0; or -1 with ImportError naming the file and
 * what is wrong with it. */
static int
notebook_source(PyObject *path, PyObject **py, PyObject **shown)
{
    *py = *shown = NULL;
    PyObject *fs = PyUnicode_EncodeFSDefault(path);
    if (fs == NULL) {
        return -1;
    }
    apy_notebook_t nb;
    char err[512];
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = apy_nb_load(PyBytes_AS_STRING(fs), &nb, err, sizeof(err));
    Py_END_ALLOW_THREADS
    Py_DECREF(fs);
    if (rc < 0) {
        PyObject *msg = PyUnicode_FromFormat("%U: %s", path, err);
        if (msg != NULL) {
            PyErr_SetImportError(msg, NULL, path);
            Py_DECREF(msg);
        }
        return -1;
    }
    apy_buf_t b = {0}, t = {0};
    if (build_source(&nb, &b, &t) == 0) {
        *py = PyUnicode_DecodeUTF8(b.data, (Py_ssize_t)b.len, "strict");
        /* An empty notebook leaves both buffers unallocated. */
        int same = b.len == t.len
                   && (b.len == 0 || memcmp(b.data, t.data, b.len) == 0);
        *shown = *py == NULL ? NULL
                 : same      ? Py_NewRef(Py_None)
                             : PyUnicode_DecodeUTF8(t.data, (Py_ssize_t)t.len,
                                                    "strict");
    }
    free(b.data);
    free(t.data);
    apy_nb_free(&nb);
    if (*shown == NULL) {
        Py_CLEAR(*py);
        return -1;
    }
    return 0;
}

/* What a notebook module is made of: the code, its Python text and the
 * cells' own text (Py_None when the same), all new references. */
typedef struct {
    PyObject *code;
    PyObject *source;
    PyObject *shown;
} nb_parts_t;

static void
parts_clear(nb_parts_t *parts)
{
    Py_CLEAR(parts->code);
    Py_CLEAR(parts->source);
    Py_CLEAR(parts->shown);
}

/* The notebook's parts, from the cache when fresh, else built, compiled
 * and cached as the tuple (code, source, shown). Fills *src with the
 * notebook's stat. Returns 0, or -1 with an exception set. */
static int
load(apy_importer_state_t *st, PyObject *path, nb_parts_t *parts,
     apy_source_stat_t *src)
{
    parts->code = parts->source = parts->shown = NULL;
    if (apy__importer_stat(path, src) < 0) {
        return -1;
    }
    PyObject *cache = apy__importer_cache_path(st, path,
                                               APY_CACHE_TAG_NOTEBOOK);
    if (cache == NULL) {
        return -1;
    }
    if (cache != Py_None) {
        PyObject *hit = apy__importer_cache_read(cache, src);
        if (hit == NULL) {
            Py_DECREF(cache);
            return -1;
        }
        if (PyTuple_Check(hit) && PyTuple_GET_SIZE(hit) == 3
            && PyCode_Check(PyTuple_GET_ITEM(hit, 0))
            && PyUnicode_Check(PyTuple_GET_ITEM(hit, 1))) {
            PyObject *code = PyTuple_GET_ITEM(hit, 0);
            PyObject *r = PyObject_CallFunctionObjArgs(st->fix_co_filename,
                                                       code, path, NULL);
            if (r == NULL) {
                Py_DECREF(hit);
                Py_DECREF(cache);
                return -1;
            }
            Py_DECREF(r);
            apy__importer_verbose("%U matches %U", cache, path);
            parts->code = Py_NewRef(code);
            parts->source = Py_NewRef(PyTuple_GET_ITEM(hit, 1));
            parts->shown = Py_NewRef(PyTuple_GET_ITEM(hit, 2));
            Py_DECREF(hit);
            Py_DECREF(cache);
            return 0;
        }
        Py_DECREF(hit);
    }
    int is_tla = 0;
    if (notebook_source(path, &parts->source, &parts->shown) < 0
        || (parts->code = apy__importer_compile(parts->source, path, 0,
                                                &is_tla)) == NULL) {
        parts_clear(parts);
        Py_DECREF(cache);
        return -1;
    }
    apy__importer_verbose("code object from %U", path);
    if (cache != Py_None) {
        PyObject *payload = PyTuple_Pack(3, parts->code, parts->source,
                                         parts->shown);
        int rc = -1;
        if (payload != NULL) {
            rc = apy__importer_cache_write(cache, src, payload);
            Py_DECREF(payload);
        }
        if (rc < 0) {
            parts_clear(parts);
            Py_DECREF(cache);
            return -1;
        }
    }
    Py_DECREF(cache);
    return 0;
}

/* The loader's file path (FileLoader.path). New reference or NULL. */
static PyObject *
loader_path(PyObject *self)
{
    PyObject *path = PyObject_GetAttrString(self, "path");
    if (path != NULL && !PyUnicode_Check(path)) {
        PyErr_SetString(PyExc_TypeError, "notebook loader path is not str");
        Py_CLEAR(path);
    }
    return path;
}

static int
no_kwargs(const char *fn, Py_ssize_t nargs, Py_ssize_t want,
          PyObject *kwnames)
{
    if (nargs != want || (kwnames && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd argument%s", fn,
                     want, want == 1 ? "" : "s");
        return -1;
    }
    return 0;
}

/* The notebook's compiled code (want_code) or its Python text, loaded
 * (from the cache when valid) for get_code/get_source. New reference or
 * NULL with an exception set. */
static PyObject *
load_part(PyObject *self, PyTypeObject *cls, const char *method,
          Py_ssize_t nargs, PyObject *kwnames, int want_code)
{
    if (no_kwargs(method, nargs, 1, kwnames) < 0) {
        return NULL;
    }
    PyObject *path = loader_path(self);
    if (path == NULL) {
        return NULL;
    }
    nb_parts_t parts;
    apy_source_stat_t src;
    int rc = load(apy__importer_state_of(cls), path, &parts, &src);
    Py_DECREF(path);
    if (rc < 0) {
        return NULL;
    }
    PyObject *part = Py_NewRef(want_code ? parts.code : parts.source);
    parts_clear(&parts);
    return part;
}

/* get_code(fullname): the module's code object. New reference or NULL. */
static PyObject *
nbloader_get_code(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                  Py_ssize_t nargs, PyObject *kwnames)
{
    return load_part(self, cls, "get_code", nargs, kwnames, 1);
}

/* get_source(fullname): the Python text the module runs (IPython syntax
 * translated), each line at its line in the notebook file. New reference
 * or NULL. */
static PyObject *
nbloader_get_source(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                    Py_ssize_t nargs, PyObject *kwnames)
{
    return load_part(self, cls, "get_source", nargs, kwnames, 0);
}

/* exec_module(module): runs the notebook's body (exec.c), with its text
 * served by linecache. Returns None or NULL. */
static PyObject *
nbloader_exec_module(PyObject *self, PyTypeObject *cls,
                     PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames)
{
    if (no_kwargs("exec_module", nargs, 1, kwnames) < 0) {
        return NULL;
    }
    apy_importer_state_t *st = apy__importer_state_of(cls);
    PyObject *module = args[0];
    PyObject *path = loader_path(self);
    if (path == NULL) {
        return NULL;
    }
    PyObject *alias = NULL;
    nb_parts_t parts;
    apy_source_stat_t src;
    if (load(st, path, &parts, &src) < 0) {
        Py_DECREF(path);
        return NULL;
    }
    int rc = apy__importer_register_lines(
        st, path, &src, parts.shown != Py_None ? parts.shown : parts.source);
    Py_DECREF(path);
    /* An importnb-style name: the finder put the file's own name here. */
    PyObject *spec = rc == 0 ? PyObject_GetAttrString(module, "__spec__")
                             : NULL;
    if (spec != NULL && spec != Py_None) {
        alias = PyObject_GetAttrString(spec, "loader_state");
        if (alias != NULL && !PyUnicode_Check(alias)) {
            Py_CLEAR(alias);
        }
        PyErr_Clear();
    }
    Py_XDECREF(spec);
    /* The translated body calls builtins.__apyrun_nb__ for `!cmd` and the
     * magics: outside a notebook run there is none until this. */
    if (rc == 0) {
        rc = apy_ipy_magics_install();
    }
    if (rc == 0) {
        rc = apy__importer_exec_code(st, module, parts.code, alias);
    }
    Py_XDECREF(alias);
    parts_clear(&parts);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

#define NB_METH(name, func, doc)                                           \
    {                                                                      \
        name, (PyCFunction)(void (*)(void))func,                           \
            METH_METHOD | METH_FASTCALL | METH_KEYWORDS, PyDoc_STR(doc)    \
    }

static PyMethodDef nbloader_methods[] = {
    NB_METH("get_code", nbloader_get_code,
            "The notebook's code cells compiled as one module."),
    NB_METH("get_source", nbloader_get_source,
            "The module's Python text, each line at its notebook line."),
    NB_METH("exec_module", nbloader_exec_module,
            "Execute the notebook as a module."),
    {NULL, NULL, 0, NULL},
};

static PyType_Slot nbloader_slots[] = {
    {Py_tp_methods, nbloader_methods},
    {Py_tp_doc, "apyrun's loader for Jupyter notebooks (.ipynb)."},
    {0, NULL},
};

/* Created with importlib's FileLoader and _LoaderBasics as bases
 * (module.c): get_filename, get_data, get_resource_reader, is_package
 * and load_module are theirs. */
PyType_Spec apy__importer_notebook_loader_spec = {
    .name = "_apyrun_importer.NotebookLoader",
    .basicsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = nbloader_slots,
};
