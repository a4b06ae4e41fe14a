/* SPDX-License-Identifier: MIT */
/* The notebook finder, last on sys.meta_path: a notebook is imported
 * only when python's own finders find no module of that name anywhere, so
 * a notebook never shadows a module. Exact `<name>.ipynb` first, then
 * importnb-style names; costs nothing to imports that succeed. */
#include <Python.h>

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "importer.h"

/* A `random.ipynb` beside a script must not replace the stdlib's random,
 * nor `matplotlib.ipynb` the library it imports. On the search path
 * (sys.path, or the package's __path__), the first directory holding
 * `<name>.ipynb` wins. Failing that, importnb-style names for notebooks
 * whose file names are not identifiers: in a last name part with `_`,
 * `__` matches any run of characters and `_` any one character
 * (`__11_12_async_import` finds `2022-11-12-async-import.ipynb`); the
 * first directory with a match wins, and in it the newest match. Such a
 * module is imported under the name asked for and registered under the
 * file's own name too (the spec's loader_state).
 *
 * Directory contents come from the path's FileFinder cache, which the
 * failed lookup just refreshed (stat/readdir only for entries without
 * one), so a failing import lists no directory python did not list. */

#define NB_SUFFIX ".ipynb"
#define NB_SUFFIX_LEN 6

/* Returns 1 if name (UCS4, n chars) matches the importnb pattern pat
 * (UCS4, m chars): `__` is any run (possibly empty), `_` one character.
 * Greedy matching with one backtrack point, as for a glob with `*`. */
static int
fuzzy_match(const Py_UCS4 *pat, Py_ssize_t m, const Py_UCS4 *name,
            Py_ssize_t n)
{
    Py_ssize_t p = 0, s = 0, star_p = -1, star_s = 0;
    while (s < n) {
        if (p + 1 < m && pat[p] == '_' && pat[p + 1] == '_') {
            star_p = p += 2;
            star_s = s;
            continue;
        }
        if (p < m && (pat[p] == '_' || pat[p] == name[s])) {
            p++;
            s++;
            continue;
        }
        if (star_p >= 0) {
            p = star_p;
            s = ++star_s;
            continue;
        }
        return 0;
    }
    while (p + 1 < m && pat[p] == '_' && pat[p + 1] == '_') {
        p += 2;
    }
    return p == m;
}

/* The finder python recorded for path entry `entry` in
 * sys.path_importer_cache: borrowed, Py_None when python found nothing
 * to search there, NULL (no exception) when there is none. Errors are
 * "none": the lookup only decides how to list the directory. */
static PyObject *
recorded_finder(PyObject *entry)
{
    PyObject *cache = PySys_GetObject("path_importer_cache"); /* borrowed */
    if (cache == NULL || !PyDict_Check(cache)) {
        return NULL;
    }
    PyObject *finder = PyDict_GetItemWithError(cache, entry); /* borrowed */
    PyErr_Clear();
    return finder;
}

/* Returns 1 if python has no finder recorded for entry (it was not
 * searched, or a hook other than FileFinder's handles it). */
static int
is_unknown(PyObject *entry)
{
    return recorded_finder(entry) == NULL;
}

/* The .ipynb file names readdir() gives for directory `dir` (a str): a
 * new list, Py_None when it cannot be opened, NULL with an exception. */
static PyObject *
list_notebooks(PyObject *dir)
{
    PyObject *fs = NULL, *names = NULL, *s = NULL;
    DIR *d = NULL;

    fs = PyUnicode_EncodeFSDefault(dir);
    if (fs == NULL) {
        goto error;
    }
    d = opendir(PyBytes_AS_STRING(fs));
    if (d == NULL) {
        Py_DECREF(fs);
        Py_RETURN_NONE;
    }
    names = PyList_New(0);
    if (names == NULL) {
        goto error;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len <= NB_SUFFIX_LEN
            || strcmp(de->d_name + len - NB_SUFFIX_LEN, NB_SUFFIX) != 0) {
            continue;
        }
        s = PyUnicode_DecodeFSDefault(de->d_name);
        if (s == NULL || PyList_Append(names, s) < 0) {
            goto error;
        }
        Py_CLEAR(s);
    }
    closedir(d);
    Py_DECREF(fs);
    return names;

error:
    if (d != NULL) {
        closedir(d);
    }
    Py_XDECREF(s);
    Py_XDECREF(names);
    Py_XDECREF(fs);
    return NULL;
}

/* The file names in directory `dir`: a new set (the FileFinder's) or
 * list (.ipynb files only, from readdir; only when `cached_only` is 0),
 * Py_None when there is nothing to search or (cached_only) no cached
 * listing, NULL with an exception. */
static PyObject *
dir_names(PyObject *entry, PyObject *dir, int cached_only)
{
    PyObject *finder = recorded_finder(entry); /* borrowed */
    if (finder == Py_None) {
        /* python found nothing to search there (not a directory). */
        return Py_NewRef(Py_None);
    }
    if (finder != NULL) {
        /* FileFinder's own listing, refreshed by the lookup that failed
         * just before this finder was asked. */
        PyObject *names = PyObject_GetAttrString(finder, "_path_cache");
        if (names != NULL && PyAnySet_Check(names)) {
            return names;
        }
        Py_XDECREF(names);
        /* Another kind of finder: list the directory ourselves. */
        PyErr_Clear();
    }
    if (cached_only) {
        return Py_NewRef(Py_None);
    }
    return list_notebooks(dir);
}

/* If `fn` (an entry of dir's listing) is a notebook whose stem matches
 * pat and which is newer than *best_mtime (or *best is Py_None), replaces
 * *best with a new (path, stem) and sets *best_mtime. A name that cannot
 * be decoded or stat()ed is no match. Returns 0, or -1 with an
 * exception set. */
static int
consider(PyObject *dir, PyObject *fn, PyObject *suffix, const Py_UCS4 *pat,
         Py_ssize_t m, PyObject **best, double *best_mtime)
{
    PyObject *path = NULL, *stem = NULL, *pair = NULL;
    Py_UCS4 *name = NULL;
    int rc = -1;

    Py_ssize_t len = PyUnicode_Check(fn) ? PyUnicode_GET_LENGTH(fn) : 0;
    if (len <= NB_SUFFIX_LEN) {
        return 0;
    }
    int tail = PyUnicode_Tailmatch(fn, suffix, 0, len, 1);
    if (tail != 1) {
        return tail < 0 ? -1 : 0;
    }
    name = PyUnicode_AsUCS4Copy(fn);
    if (name == NULL) {
        goto done;
    }
    if (!fuzzy_match(pat, m, name, len - NB_SUFFIX_LEN)) {
        rc = 0;
        goto done;
    }
    path = PyUnicode_FromFormat("%U/%U", dir, fn);
    if (path == NULL) {
        goto done;
    }
    apy_source_stat_t sb;
    if (apy__importer_stat(path, &sb) < 0) {
        PyErr_Clear();
        rc = 0;
        goto done;
    }
    int newer = *best == Py_None || sb.mtime_float > *best_mtime;
    if (!S_ISREG(sb.mode) || !newer) {
        rc = 0;
        goto done;
    }
    stem = PyUnicode_Substring(fn, 0, len - NB_SUFFIX_LEN);
    if (stem == NULL) {
        goto done;
    }
    pair = PyTuple_Pack(2, path, stem);
    if (pair == NULL) {
        goto done;
    }
    Py_SETREF(*best, pair);
    *best_mtime = sb.mtime_float;
    rc = 0;
done:
    Py_XDECREF(stem);
    Py_XDECREF(path);
    PyMem_Free(name);
    return rc;
}

/* The newest notebook among `names` (in dir) whose stem matches pat; a
 * new reference to (path, stem), Py_None if there is none, NULL with an
 * exception set. */
static PyObject *
search_dir(PyObject *dir, PyObject *names, const Py_UCS4 *pat, Py_ssize_t m)
{
    PyObject *suffix = NULL, *it = NULL, *best = NULL, *fn;
    double best_mtime = 0;

    suffix = PyUnicode_FromString(NB_SUFFIX);
    if (suffix == NULL) {
        goto error;
    }
    it = PyObject_GetIter(names);
    if (it == NULL) {
        goto error;
    }
    best = Py_NewRef(Py_None);
    while ((fn = PyIter_Next(it)) != NULL) {
        int rc = consider(dir, fn, suffix, pat, m, &best, &best_mtime);
        Py_DECREF(fn);
        if (rc < 0) {
            goto error;
        }
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(it);
    Py_DECREF(suffix);
    return best;

error:
    Py_XDECREF(best);
    Py_XDECREF(it);
    Py_XDECREF(suffix);
    return NULL;
}

/* `dir/name` if it is a regular file (a new str), else Py_None; names
 * is the directory's listing when known (a set), else NULL. NULL with an
 * exception set on error (a failing stat() is no file, not an error). */
static PyObject *
exact_match(PyObject *dir, PyObject *names, PyObject *file)
{
    if (names != NULL && PyAnySet_Check(names)) {
        int in = PySet_Contains(names, file);
        if (in <= 0) {
            return in < 0 ? NULL : Py_NewRef(Py_None);
        }
    }
    PyObject *path = PyUnicode_FromFormat("%U/%U", dir, file);
    if (path == NULL) {
        return NULL;
    }
    apy_source_stat_t sb;
    if (apy__importer_stat(path, &sb) == 0 && S_ISREG(sb.mode)) {
        return path;
    }
    PyErr_Clear();
    Py_DECREF(path);
    return Py_NewRef(Py_None);
}

/* One pass over one path entry: pass 0 looks for the exact file name
 * `file`, pass 1 (pat != NULL) for importnb-style names. Returns a new
 * (path, stem-or-None), Py_None when nothing matches, NULL with an
 * exception set. */
static PyObject *
search_entry(PyObject *entry, int pass, PyObject *file, const Py_UCS4 *pat,
             Py_ssize_t m)
{
    PyObject *dir = NULL, *names = NULL, *path = NULL, *found = NULL;

    if (PyUnicode_GET_LENGTH(entry) > 0) {
        dir = Py_NewRef(entry);
    } else {
        dir = PyUnicode_FromString(".");
        if (dir == NULL) {
            goto done;
        }
    }
    names = dir_names(entry, dir, pass == 0);
    if (names == NULL) {
        goto done;
    }
    if (names == Py_None && pass == 0 && is_unknown(entry)) {
        /* Not searched by python: stat() the file without a listing. */
        Py_SETREF(names, NULL);
    }
    if (names == Py_None) {
        found = Py_NewRef(Py_None);
    } else if (pass == 0) {
        path = exact_match(dir, names, file);
        if (path == NULL) {
            goto done;
        }
        found = path == Py_None ? Py_NewRef(Py_None)
                                : PyTuple_Pack(2, path, Py_None);
    } else {
        found = search_dir(dir, names, pat, m);
    }
done:
    Py_XDECREF(path);
    Py_XDECREF(names);
    Py_XDECREF(dir);
    return found;
}

/* Searches every entry: exact file names first, then (pat != NULL)
 * importnb-style names. Returns (path, stem-or-None) as a new tuple,
 * Py_None when nothing matches, NULL with an exception set. */
static PyObject *
search(PyObject *entries, PyObject *tail, const Py_UCS4 *pat, Py_ssize_t m)
{
    PyObject *file = PyUnicode_FromFormat("%U" NB_SUFFIX, tail);
    if (file == NULL) {
        return NULL;
    }
    PyObject *found = Py_NewRef(Py_None);
    for (int pass = 0; pass < (pat ? 2 : 1) && found == Py_None; pass++) {
        for (Py_ssize_t i = 0;
             found == Py_None && i < PyList_GET_SIZE(entries); i++) {
            PyObject *entry = PyList_GET_ITEM(entries, i); /* borrowed */
            if (!PyUnicode_Check(entry)) {
                continue;
            }
            Py_INCREF(entry); /* the list may change under a finder */
            Py_SETREF(found, search_entry(entry, pass, file, pat, m));
            Py_DECREF(entry);
            if (found == NULL) {
                break;
            }
        }
    }
    Py_DECREF(file);
    return found;
}

/* The name a module found under importnb-style name `fullname` (the
 * last part starting after `dot`, -1 for none) is registered under too:
 * the same parent with the file's stem. A new str, or NULL with an
 * exception set. */
static PyObject *
alias_name(PyObject *fullname, Py_ssize_t dot, PyObject *stem)
{
    if (dot < 0) {
        return Py_NewRef(stem);
    }
    PyObject *parent = PyUnicode_Substring(fullname, 0, dot);
    if (parent == NULL) {
        return NULL;
    }
    PyObject *alias = PyUnicode_FromFormat("%U.%U", parent, stem);
    Py_DECREF(parent);
    return alias;
}

/* The notebook `fullname` names, searched for on `where` (a package's
 * __path__, or sys.path for Py_None): a new (path, stem-or-None),
 * Py_None when nothing matches (nothing to search included), NULL with
 * an exception set. */
static PyObject *
find_notebook(PyObject *fullname, PyObject *tail, PyObject *where)
{
    PyObject *entries = NULL, *found = NULL;
    Py_UCS4 *pat = NULL;

    if (where == Py_None) {
        where = PySys_GetObject("path"); /* borrowed */
        if (where == NULL) {
            /* sys.path is gone (python's PathFinder would have failed
             * first): there is nothing to search. */
            Py_RETURN_NONE;
        }
    }
    entries = PySequence_List(where);
    if (entries == NULL) {
        goto done;
    }
    Py_ssize_t m = PyUnicode_GET_LENGTH(tail);
    if (PyUnicode_FindChar(tail, '_', 0, m, 1) >= 0) {
        pat = PyUnicode_AsUCS4Copy(tail);
        if (pat == NULL) {
            goto done;
        }
    }
    found = search(entries, tail, pat, m);
done:
    PyMem_Free(pat);
    Py_XDECREF(entries);
    return found;
}

/* 1 if a finder the program put after self on sys.meta_path finds
 * fullname (find_spec, or a legacy find_module), 0 if none does, -1 with
 * the exception a finder raised (python would have met it there too). A
 * program that installs its own notebook importer (IPython's "Importing
 * Notebooks" example) gets it: apyrun's notebook finder is the last
 * resort, behind every finder, not only python's. */
static int
later_finder_finds(PyObject *self, PyObject *fullname, PyObject *path,
                   PyObject *target)
{
    PyObject *meta_path = PySys_GetObject("meta_path"); /* borrowed */
    if (meta_path == NULL || !PyList_Check(meta_path)) {
        return 0;
    }
    PyObject *finders = PyList_GetSlice(meta_path, 0, PY_SSIZE_T_MAX);
    if (finders == NULL) {
        return -1;
    }
    int after = 0, rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(finders); i++) {
        PyObject *f = PyList_GET_ITEM(finders, i); /* borrowed */
        if (!after) {
            after = f == self;
            continue;
        }
        PyObject *r;
        if (PyObject_HasAttrString(f, "find_spec")) {
            r = PyObject_CallMethod(f, "find_spec", "OOO", fullname, path,
                                    target);
        } else if (PyObject_HasAttrString(f, "find_module")) {
            r = PyObject_CallMethod(f, "find_module", "OO", fullname, path);
        } else {
            continue;
        }
        rc = r == NULL ? -1 : r != Py_None;
        Py_XDECREF(r);
    }
    Py_DECREF(finders);
    return rc;
}

/* find_spec(fullname, path=None, target=None): a spec for the notebook
 * the name finds (a new reference), Py_None, or NULL with an exception
 * set. */
static PyObject *
finder_find_spec(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                 Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *tail = NULL, *found = NULL, *alias = NULL, *loader = NULL;
    PyObject *kw = NULL, *fargs = NULL, *spec = NULL;

    if (nargs < 1 || nargs > 3 || !PyUnicode_Check(args[0])
        || (kwnames && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError,
                        "find_spec(fullname, path=None, target=None)");
        return NULL;
    }
    apy_importer_state_t *st = apy__importer_state_of(cls);
    if (st->notebook_loader_type == NULL) {
        Py_RETURN_NONE; /* finalising */
    }
    PyObject *fullname = args[0];
    Py_ssize_t len = PyUnicode_GET_LENGTH(fullname);
    Py_ssize_t dot = PyUnicode_FindChar(fullname, '.', 0, len, -1);
    tail = PyUnicode_Substring(fullname, dot + 1, len);
    if (tail == NULL) {
        goto done;
    }
    found = find_notebook(fullname, tail, nargs > 1 ? args[1] : Py_None);
    if (found == NULL || found == Py_None) {
        spec = Py_XNewRef(found);
        goto done;
    }
    int later = later_finder_finds(self, fullname,
                                   nargs > 1 ? args[1] : Py_None,
                                   nargs > 2 ? args[2] : Py_None);
    if (later != 0) {
        spec = later < 0 ? NULL : Py_NewRef(Py_None);
        goto done;
    }
    PyObject *path = PyTuple_GET_ITEM(found, 0); /* borrowed */
    PyObject *stem = PyTuple_GET_ITEM(found, 1); /* borrowed */
    alias = stem == Py_None ? Py_NewRef(Py_None)
                            : alias_name(fullname, dot, stem);
    if (alias == NULL) {
        goto done;
    }
    loader = PyObject_CallFunctionObjArgs(
        (PyObject *)st->notebook_loader_type, fullname, path, NULL);
    if (loader == NULL) {
        goto done;
    }
    kw = Py_BuildValue("{s:O}", "loader", loader);
    if (kw == NULL) {
        goto done;
    }
    fargs = PyTuple_Pack(2, fullname, path);
    if (fargs == NULL) {
        goto done;
    }
    spec = PyObject_Call(st->spec_from_file_location, fargs, kw);
    if (spec == NULL) {
        goto done;
    }
    if (spec != Py_None && alias != Py_None
        && PyObject_SetAttrString(spec, "loader_state", alias) < 0) {
        Py_CLEAR(spec);
        goto done;
    }
    apy__importer_verbose("%U matches %U%s", fullname, path,
                          alias != Py_None ? " (importnb-style name)" : "");
done:
    Py_XDECREF(fargs);
    Py_XDECREF(kw);
    Py_XDECREF(loader);
    Py_XDECREF(alias);
    Py_XDECREF(found);
    Py_XDECREF(tail);
    return spec;
}

static PyObject *
finder_invalidate_caches(PyObject *self, PyObject *unused)
{
    Py_RETURN_NONE;
}

static PyMethodDef finder_methods[] = {
    {"find_spec", (PyCFunction)(void (*)(void))finder_find_spec,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("A spec for the notebook the module name finds.")},
    {"invalidate_caches", finder_invalidate_caches, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot finder_slots[] = {
    {Py_tp_methods, finder_methods},
    {Py_tp_doc, "apyrun: notebooks (.ipynb) on the search path, after "
                "every other finder; importnb-style names ('__' any run of "
                "characters, '_' one character)."},
    {0, NULL},
};

PyType_Spec apy__importer_notebook_finder_spec = {
    .name = "_apyrun_importer.NotebookFinder",
    .basicsize = sizeof(PyObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = finder_slots,
};
