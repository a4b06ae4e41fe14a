/* SPDX-License-Identifier: MIT */
/* The notebook finder, last on sys.meta_path: a notebook is imported
 * only when python's own finders find no module of that name anywhere, so
 * a notebook never shadows a module (a `random.ipynb` beside a script
 * must not replace the stdlib's random, nor `matplotlib.ipynb` the
 * library it imports). On the search path (sys.path, or the package's
 * __path__), the first directory holding `<name>.ipynb` wins. Failing
 * that, importnb-style names for notebooks whose file names are not
 * identifiers: in a last name part with `_`, `__` matches any run of
 * characters and `_` any one character (`__11_12_async_import` finds
 * `2022-11-12-async-import.ipynb`); the first directory with a match
 * wins, and in it the newest match. Such a module is imported under the
 * name asked for and registered under the file's own name too (the
 * spec's loader_state).
 *
 * Costs nothing to imports that succeed. Directory contents come from
 * the path's FileFinder cache, which the failed lookup just refreshed
 * (stat/readdir only for entries without one), so a failing import lists
 * no directory python did not list. */
#include <Python.h>

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "importer.h"

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

/* Returns 1 if python has no finder recorded for entry (it was not
 * searched, or a hook other than FileFinder's handles it). */
static int
is_unknown(PyObject *entry)
{
    PyObject *cache = PySys_GetObject("path_importer_cache"); /* borrowed */
    PyObject *finder = cache && PyDict_Check(cache)
                           ? PyDict_GetItemWithError(cache, entry)
                           : NULL; /* borrowed */
    PyErr_Clear();
    return finder == NULL;
}

/* The file names in directory `dir`: a new set (the FileFinder's) or
 * list (.ipynb files only, from readdir; only when `cached_only` is 0),
 * Py_None when there is nothing to search or (cached_only) no cached
 * listing, NULL with an exception. */
static PyObject *
dir_names(PyObject *entry, PyObject *dir, int cached_only)
{
    PyObject *cache = PySys_GetObject("path_importer_cache"); /* borrowed */
    PyObject *finder = cache && PyDict_Check(cache)
                           ? PyDict_GetItemWithError(cache, entry)
                           : NULL; /* borrowed */
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
    }
    PyErr_Clear();
    if (cached_only) {
        return Py_NewRef(Py_None);
    }
    PyObject *fs = PyUnicode_EncodeFSDefault(dir);
    if (fs == NULL) {
        return NULL;
    }
    PyObject *names = PyList_New(0);
    DIR *d = names ? opendir(PyBytes_AS_STRING(fs)) : NULL;
    Py_DECREF(fs);
    if (d == NULL) {
        Py_XDECREF(names);
        return names == NULL ? NULL : Py_NewRef(Py_None);
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len <= NB_SUFFIX_LEN
            || strcmp(de->d_name + len - NB_SUFFIX_LEN, NB_SUFFIX) != 0) {
            continue;
        }
        PyObject *s = PyUnicode_DecodeFSDefault(de->d_name);
        if (s == NULL || PyList_Append(names, s) < 0) {
            Py_XDECREF(s);
            closedir(d);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(s);
    }
    closedir(d);
    return names;
}

/* The newest notebook among `names` (in dir) whose stem matches pat; a
 * new reference to (path, stem), Py_None if there is none, NULL on
 * error. */
static PyObject *
search_dir(PyObject *dir, PyObject *names, const Py_UCS4 *pat, Py_ssize_t m)
{
    PyObject *suffix = PyUnicode_FromString(NB_SUFFIX);
    PyObject *it = suffix ? PyObject_GetIter(names) : NULL;
    if (it == NULL) {
        Py_XDECREF(suffix);
        return NULL;
    }
    PyObject *best = Py_NewRef(Py_None), *fn;
    double best_mtime = 0;
    while ((fn = PyIter_Next(it)) != NULL) {
        Py_ssize_t len = PyUnicode_Check(fn) ? PyUnicode_GET_LENGTH(fn) : 0;
        if (len <= NB_SUFFIX_LEN
            || PyUnicode_Tailmatch(fn, suffix, 0, len, 1) != 1) {
            PyErr_Clear();
            Py_DECREF(fn);
            continue;
        }
        Py_UCS4 *name = PyUnicode_AsUCS4Copy(fn);
        int match = name && fuzzy_match(pat, m, name, len - NB_SUFFIX_LEN);
        PyMem_Free(name);
        PyObject *path = match ? PyUnicode_FromFormat("%U/%U", dir, fn)
                               : NULL;
        apy_source_stat_t sb;
        int newer = path != NULL && apy_importer_stat(path, &sb) == 0
                    && S_ISREG(sb.mode)
                    && (best == Py_None || sb.mtime_float > best_mtime);
        /* A name that cannot be decoded or stat()ed is no match. */
        PyErr_Clear();
        if (newer) {
            PyObject *stem = PyUnicode_Substring(fn, 0, len - NB_SUFFIX_LEN);
            Py_SETREF(best, stem ? PyTuple_Pack(2, path, stem) : NULL);
            Py_XDECREF(stem);
            best_mtime = sb.mtime_float;
        }
        Py_XDECREF(path);
        Py_DECREF(fn);
        if (best == NULL) {
            break;
        }
    }
    Py_DECREF(it);
    Py_DECREF(suffix);
    if (PyErr_Occurred()) {
        Py_XDECREF(best);
        return NULL;
    }
    return best;
}

/* `dir/name` if it is a regular file (a new str), else Py_None; names
 * is the directory's listing when known (a set), else NULL. */
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
    apy_source_stat_t sb;
    if (path != NULL && apy_importer_stat(path, &sb) == 0
        && S_ISREG(sb.mode)) {
        return path;
    }
    PyErr_Clear();
    Py_XDECREF(path);
    return Py_NewRef(Py_None);
}

/* Searches every entry: exact file names first, then (pat != NULL)
 * importnb-style names. Returns (path, stem-or-None) as a new tuple,
 * Py_None when nothing matches, NULL on error. */
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
            PyObject *dir = PyUnicode_GET_LENGTH(entry) > 0
                                ? Py_NewRef(entry)
                                : PyUnicode_FromString(".");
            PyObject *names = dir ? dir_names(entry, dir, pass == 0) : NULL;
            if (names == NULL) {
                Py_XDECREF(dir);
                Py_CLEAR(found);
                break;
            }
            if (names == Py_None && pass == 0 && is_unknown(entry)) {
                Py_SETREF(names, NULL);
            }
            if (pass == 0 && names != Py_None) {
                PyObject *path = exact_match(dir, names, file);
                Py_SETREF(found, path == NULL || path == Py_None
                                     ? path
                                     : PyTuple_Pack(2, path, Py_None));
                if (path != NULL && path != Py_None) {
                    Py_DECREF(path);
                }
            } else if (pass == 1 && names != Py_None) {
                Py_SETREF(found, search_dir(dir, names, pat, m));
            }
            Py_XDECREF(names);
            Py_DECREF(dir);
            if (found == NULL) {
                break;
            }
        }
    }
    Py_DECREF(file);
    return found;
}

/* find_spec(fullname, path=None, target=None): a spec for the notebook
 * the name finds, or None. */
static PyObject *
finder_find_spec(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                 Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs < 1 || nargs > 3 || !PyUnicode_Check(args[0])
        || (kwnames && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError,
                        "find_spec(fullname, path=None, target=None)");
        return NULL;
    }
    apy_importer_state_t *st = apy_importer_state_of(cls);
    if (st->notebook_loader_type == NULL) {
        Py_RETURN_NONE; /* finalising */
    }
    PyObject *fullname = args[0];
    PyObject *where = nargs > 1 ? args[1] : Py_None;
    Py_ssize_t len = PyUnicode_GET_LENGTH(fullname);
    Py_ssize_t dot = PyUnicode_FindChar(fullname, '.', 0, len, -1);
    PyObject *tail = PyUnicode_Substring(fullname, dot + 1, len);
    if (tail == NULL) {
        return NULL;
    }
    if (where == Py_None) {
        where = PySys_GetObject("path"); /* borrowed */
    }
    PyObject *entries = where ? PySequence_List(where) : NULL;
    Py_ssize_t m = PyUnicode_GET_LENGTH(tail);
    Py_UCS4 *pat = NULL;
    if (entries != NULL
        && PyUnicode_FindChar(tail, '_', 0, m, 1) >= 0) {
        pat = PyUnicode_AsUCS4Copy(tail);
        if (pat == NULL) {
            Py_CLEAR(entries);
        }
    }
    PyObject *found = entries ? search(entries, tail, pat, m) : NULL;
    PyMem_Free(pat);
    Py_XDECREF(entries);
    Py_DECREF(tail);
    if (found == NULL || found == Py_None) {
        return found;
    }
    PyObject *path = PyTuple_GET_ITEM(found, 0);
    PyObject *stem = PyTuple_GET_ITEM(found, 1);
    PyObject *alias = Py_NewRef(Py_None);
    if (stem != Py_None) {
        PyObject *parent = dot >= 0 ? PyUnicode_Substring(fullname, 0, dot)
                                    : NULL;
        Py_SETREF(alias, parent ? PyUnicode_FromFormat("%U.%U", parent,
                                                       stem)
                                : (dot >= 0 ? NULL : Py_NewRef(stem)));
        Py_XDECREF(parent);
    }
    PyObject *loader = alias ? PyObject_CallFunctionObjArgs(
                                   (PyObject *)st->notebook_loader_type,
                                   fullname, path, NULL)
                             : NULL;
    PyObject *spec = NULL;
    if (loader != NULL) {
        PyObject *kw = Py_BuildValue("{s:O}", "loader", loader);
        PyObject *fargs = kw ? PyTuple_Pack(2, fullname, path) : NULL;
        spec = fargs ? PyObject_Call(st->spec_from_file_location, fargs, kw)
                     : NULL;
        Py_XDECREF(fargs);
        Py_XDECREF(kw);
    }
    if (spec != NULL && spec != Py_None && alias != Py_None
        && PyObject_SetAttrString(spec, "loader_state", alias) < 0) {
        Py_CLEAR(spec);
    }
    if (spec != NULL) {
        apy_importer_verbose("%U matches %U%s", fullname, path,
                             alias != Py_None ? " (importnb-style name)"
                                              : "");
    }
    Py_XDECREF(loader);
    Py_XDECREF(alias);
    Py_DECREF(found);
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

PyType_Spec apy_importer_notebook_finder_spec = {
    .name = "_apyrun_importer.NotebookFinder",
    .basicsize = sizeof(PyObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = finder_slots,
};
