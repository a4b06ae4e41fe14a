/* SPDX-License-Identifier: MIT */
/* The `_apyrun_importer` built-in module (multi-phase init): its state's
 * life (heap types, the importlib pieces the loaders call), its
 * functions, and installing the importer into the running interpreter.
 * The top of the importer: it builds every type, so no other file of it
 * calls here. */
#include <Python.h>

#include <string.h>

#include "apyrun/importer.h"
#include "apyrun/ipython.h"
#include "apyrun/tla_rewrite.h"
#include "importer.h"

/* Installing: the FileFinder path hook gets apyrun's .py loader, the
 * notebook finder goes last on sys.meta_path, importlib's
 * _lock_unlock_module is replaced (lock_unlock.c). */

/* _cell_magic(text, globals): a %% cell of an imported notebook, run by
 * the notebook runtime's helper (builtins.__apyrun_nb__, installed by
 * the notebook loader) as when the notebook runs. Returns its result or
 * NULL with an exception set. */
static PyObject *
module_cell_magic(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "_cell_magic(text, globals)");
        return NULL;
    }
    if (apy_ipy_magics_install() < 0) {
        return NULL;
    }
    PyObject *helper = PyDict_GetItemString(PyEval_GetBuiltins(),
                                            "__apyrun_nb__"); /* borrowed */
    if (helper == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "apyrun: the notebook magics helper is missing");
        return NULL;
    }
    return PyObject_CallMethod(helper, "run_cell_magic", "OO", args[0],
                               args[1]);
}

static PyMethodDef module_methods[] = {
    {APY_TLA_IMPORT_FUNC,
     (PyCFunction)(void (*)(void))apy__importer_await_import, METH_FASTCALL,
     PyDoc_STR("_await_import(name, fromlist, level): awaited before a "
               "module-level import statement of top-level-await code.")},
    {"import_module", (PyCFunction)(void (*)(void))apy__importer_import_module,
     METH_VARARGS | METH_KEYWORDS,
     PyDoc_STR("import_module(name, package=None)\n--\n\n"
               "Import a module, awaiting its top-level await if it has "
               "any: `module = await apyrun.import_module(name)`. Concurrent "
               "imports of one module share its execution.")},
    {"_run_sync", (PyCFunction)(void (*)(void))apy__importer_run_sync,
     METH_FASTCALL, NULL},
    {"_close_loop", apy__importer_close_loop, METH_NOARGS, NULL},
    {"_lock_unlock_module", apy__importer_lock_unlock, METH_O, NULL},
    {"_cell_magic", (PyCFunction)(void (*)(void))module_cell_magic,
     METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

/* Every PyObject* field of the state, for exec, traverse and clear. */
#define STATE_OBJECTS(X)                                                   \
    X(source_loader_type)                                                  \
    X(notebook_loader_type)                                                \
    X(notebook_finder_type)                                                \
    X(awaiter_type)                                                        \
    X(exec_type)                                                           \
    X(async_import_error)                                                  \
    X(deferred)                                                            \
    X(call_with_frames_removed)                                            \
    X(cache_from_source)                                                   \
    X(spec_from_file_location)                                             \
    X(fix_co_filename)                                                     \
    X(builtin_exec)                                                        \
    X(orig_lock_unlock)                                                    \
    X(current_task)                                                        \
    X(loop)                                                                \
    X(records)                                                             \
    X(waits)                                                               \
    X(lines)

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    apy_importer_state_t *st = PyModule_GetState(module);
#define VISIT(f) Py_VISIT(st->f);
    STATE_OBJECTS(VISIT)
#undef VISIT
    return 0;
}

static int
module_clear(PyObject *module)
{
    apy_importer_state_t *st = PyModule_GetState(module);
#define CLEAR(f) Py_CLEAR(st->f);
    STATE_OBJECTS(CLEAR)
#undef CLEAR
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

/* getattr(module named `modname`, attr): new reference or NULL. */
static PyObject *
import_attr(const char *modname, const char *attr)
{
    PyObject *mod = PyImport_ImportModule(modname);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *v = PyObject_GetAttrString(mod, attr);
    Py_DECREF(mod);
    return v;
}

/* A heap type from spec with the given bases (NULL: object), added to the
 * module when `public`. New reference or NULL. */
static PyTypeObject *
make_type(PyObject *module, PyType_Spec *spec, PyObject *bases, int public)
{
    PyObject *tp = PyType_FromModuleAndSpec(module, spec, bases);
    if (tp == NULL) {
        return NULL;
    }
    if (public && PyModule_AddType(module, (PyTypeObject *)tp) < 0) {
        Py_DECREF(tp);
        return NULL;
    }
    return (PyTypeObject *)tp;
}

static int
module_exec(PyObject *module)
{
    apy_importer_state_t *st = PyModule_GetState(module);
    const char *ext = "_frozen_importlib_external";
    PyObject *source_base = NULL, *nb_bases = NULL;
    int rc = -1;

    st->call_with_frames_removed = import_attr("_frozen_importlib",
                                               "_call_with_frames_removed");
    st->cache_from_source = import_attr(ext, "cache_from_source");
    st->spec_from_file_location = import_attr(ext, "spec_from_file_location");
    st->fix_co_filename = import_attr("_imp", "_fix_co_filename");
    st->builtin_exec = import_attr("builtins", "exec");
    source_base = import_attr(ext, "SourceFileLoader");
    PyObject *file_loader = import_attr(ext, "FileLoader");
    PyObject *basics = import_attr(ext, "_LoaderBasics");
    if (file_loader != NULL && basics != NULL) {
        nb_bases = PyTuple_Pack(2, file_loader, basics);
    }
    Py_XDECREF(file_loader);
    Py_XDECREF(basics);
    if (!st->call_with_frames_removed || !st->cache_from_source
        || !st->spec_from_file_location || !st->fix_co_filename
        || !st->builtin_exec || !source_base || !nb_bases) {
        goto done;
    }
    const struct {
        PyTypeObject **slot;
        PyType_Spec *spec;
        PyObject *bases;
        int public;
    } types[] = {
        {&st->source_loader_type, &apy__importer_source_loader_spec,
         source_base, 1},
        {&st->notebook_loader_type, &apy__importer_notebook_loader_spec,
         nb_bases, 1},
        {&st->notebook_finder_type, &apy__importer_notebook_finder_spec,
         NULL, 1},
        {&st->awaiter_type, &apy__importer_awaiter_spec, NULL, 0},
        {&st->exec_type, &apy__importer_exec_spec, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        *types[i].slot = make_type(module, types[i].spec, types[i].bases,
                                   types[i].public);
        if (*types[i].slot == NULL) {
            goto done;
        }
    }
    st->async_import_error = PyErr_NewExceptionWithDoc(
        "apyrun.AsyncImportError",
        "A module with top-level await was imported synchronously while an "
        "event loop runs in this thread; import it with\n"
        "`await apyrun.import_module(name)` or at the module level of "
        "top-level-await code.",
        PyExc_ImportError, NULL);
    /* Never seen by user code: it carries a TLA body from exec_module
     * back to the awaiter whose import reached it (BaseException so that
     * no `except Exception` between them can swallow it). */
    st->deferred = PyErr_NewException("_apyrun_importer._Deferred",
                                      PyExc_BaseException, NULL);
    st->records = PyDict_New();
    st->waits = PyDict_New();
    st->lines = PyDict_New();
    if (!st->async_import_error || !st->deferred || !st->records
        || !st->waits || !st->lines
        || PyModule_AddObjectRef(module, "AsyncImportError",
                                 st->async_import_error) < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(source_base);
    Py_XDECREF(nb_bases);
    return rc;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef importer_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = APY_IMPORTER_MODULE_NAME,
    .m_doc = "apyrun's import machinery: notebooks and modules with "
             "top-level await.",
    .m_size = sizeof(apy_importer_state_t),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

/* PyInit of `_apyrun_importer`: its module definition (multi-phase
 * init); never fails. */
PyMODINIT_FUNC
apy_importer_module_init(void)
{
    return PyModuleDef_Init(&importer_def);
}

/* --- installing ------------------------------------------------------ */

/* The FileFinder loader details with apyrun's .py loader in place of
 * python's SourceFileLoader. New list of (loader, suffixes) or NULL. */
static PyObject *
loader_details(apy_importer_state_t *st, PyObject *source_base)
{
    PyObject *get = import_attr("_frozen_importlib_external",
                                "_get_supported_file_loaders");
    if (get == NULL) {
        return NULL;
    }
    PyObject *details = PyObject_CallNoArgs(get);
    Py_DECREF(get);
    if (details == NULL) {
        return NULL;
    }
    if (!PyList_Check(details)) {
        PyErr_SetString(PyExc_TypeError,
                        "_get_supported_file_loaders() is not a list");
        Py_DECREF(details);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(details); i++) {
        PyObject *pair = PyList_GET_ITEM(details, i);
        if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2
            && PyTuple_GET_ITEM(pair, 0) == source_base) {
            PyObject *mine = PyTuple_Pack(2, st->source_loader_type,
                                          PyTuple_GET_ITEM(pair, 1));
            if (mine == NULL || PyList_SetItem(details, i, mine) < 0) {
                Py_DECREF(details);
                return NULL;
            }
        }
    }
    return details;
}

/* Gives a FileFinder made before install (the stdlib's, site-packages')
 * the same .py loader, in its private _loaders list of (suffix, loader):
 * 3.11 keeps the loaders there and nowhere else. */
static int
patch_finder(apy_importer_state_t *st, PyObject *finder,
             PyObject *source_base)
{
    PyObject *loaders = PyObject_GetAttrString(finder, "_loaders");
    if (loaders == NULL || !PyList_Check(loaders)) {
        Py_XDECREF(loaders);
        PyErr_Clear();
        return 0;
    }
    int rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(loaders); i++) {
        PyObject *pair = PyList_GET_ITEM(loaders, i);
        if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2
            && PyTuple_GET_ITEM(pair, 1) == source_base) {
            PyObject *mine = PyTuple_Pack(2, PyTuple_GET_ITEM(pair, 0),
                                          st->source_loader_type);
            rc = -1;
            if (mine != NULL) {
                rc = PyList_SetItem(loaders, i, mine); /* steals mine */
            }
        }
    }
    Py_DECREF(loaders);
    return rc;
}

/* FileFinder.path_hook(*details) with apyrun's .py loader in the
 * details: a new reference to the hook, or NULL with an exception set. */
static PyObject *
make_path_hook(apy_importer_state_t *st, PyObject *source_base,
               PyObject *finder_cls)
{
    PyObject *details = NULL, *args = NULL, *make = NULL, *hook = NULL;

    details = loader_details(st, source_base);
    if (details == NULL) {
        goto done;
    }
    args = PyList_AsTuple(details);
    if (args == NULL) {
        goto done;
    }
    make = PyObject_GetAttrString(finder_cls, "path_hook");
    if (make == NULL) {
        goto done;
    }
    hook = PyObject_Call(make, args, NULL);
done:
    Py_XDECREF(make);
    Py_XDECREF(args);
    Py_XDECREF(details);
    return hook;
}

/* Puts hook in the place of FileFinder's on sys.path_hooks (or at its
 * end when there is none; nothing when sys.path_hooks is not a list).
 * 0 or -1. */
static int
replace_path_hook(PyObject *hook)
{
    PyObject *hooks = PySys_GetObject("path_hooks"); /* borrowed */
    if (hooks == NULL || !PyList_Check(hooks)) {
        return 0;
    }
    Py_ssize_t at = -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(hooks); i++) {
        /* FileFinder.path_hook's closure is the one to replace. */
        PyObject *qn = PyObject_GetAttrString(PyList_GET_ITEM(hooks, i),
                                              "__qualname__");
        const char *s = NULL;
        if (qn != NULL && PyUnicode_Check(qn)) {
            s = PyUnicode_AsUTF8(qn);
        }
        if (s != NULL && strncmp(s, "FileFinder.", 11) == 0) {
            at = i;
        }
        Py_XDECREF(qn);
        PyErr_Clear();
    }
    if (at >= 0) {
        return PyList_SetItem(hooks, at, Py_NewRef(hook));
    }
    return PyList_Append(hooks, hook);
}

/* Replaces the FileFinder hook on sys.path_hooks, and patches the
 * FileFinders already in sys.path_importer_cache. 0 or -1. */
static int
install_path_hook(apy_importer_state_t *st)
{
    const char *ext = "_frozen_importlib_external";
    PyObject *source_base = NULL, *finder_cls = NULL, *hook = NULL;
    int rc = -1;

    source_base = import_attr(ext, "SourceFileLoader");
    if (source_base == NULL) {
        goto done;
    }
    finder_cls = import_attr(ext, "FileFinder");
    if (finder_cls == NULL) {
        goto done;
    }
    hook = make_path_hook(st, source_base, finder_cls);
    if (hook == NULL || replace_path_hook(hook) < 0) {
        goto done;
    }
    PyObject *cache = PySys_GetObject("path_importer_cache"); /* borrowed */
    Py_ssize_t pos = 0;
    PyObject *key, *finder;
    rc = 0;
    while (rc == 0 && cache && PyDict_Check(cache)
           && PyDict_Next(cache, &pos, &key, &finder)) {
        int is_ff = PyObject_IsInstance(finder, finder_cls);
        if (is_ff < 0) {
            rc = -1;
        } else if (is_ff) {
            rc = patch_finder(st, finder, source_base);
        }
    }
done:
    Py_XDECREF(hook);
    Py_XDECREF(finder_cls);
    Py_XDECREF(source_base);
    return rc;
}

/* Puts our _lock_unlock_module in importlib's place (see its contract in
 * importer.h): python calls it only for a module found in sys.modules
 * while still initialising, so other imports never see it. 0 or -1. */
static int
install_lock_hook(apy_importer_state_t *st)
{
    PyObject *mine = NULL, *bootstrap = NULL, *func = NULL, *orig = NULL;
    int rc = -1;

    mine = PyImport_ImportModule(APY_IMPORTER_MODULE_NAME);
    if (mine == NULL) {
        goto done;
    }
    bootstrap = PyImport_ImportModule("_frozen_importlib");
    if (bootstrap == NULL) {
        goto done;
    }
    func = PyObject_GetAttrString(mine, "_lock_unlock_module");
    if (func == NULL) {
        goto done;
    }
    orig = PyObject_GetAttrString(bootstrap, "_lock_unlock_module");
    if (orig == NULL) {
        goto done;
    }
    rc = 0;
    if (orig != func) {
        /* Not installed yet (install may run twice). */
        Py_XSETREF(st->orig_lock_unlock, Py_NewRef(orig));
        rc = PyObject_SetAttrString(bootstrap, "_lock_unlock_module", func);
    }
done:
    Py_XDECREF(orig);
    Py_XDECREF(func);
    Py_XDECREF(bootstrap);
    Py_XDECREF(mine);
    return rc;
}

/* Installs the importer (apyrun/importer.h). 0, or -1 with an exception
 * set. */
int
apy_importer_install(void)
{
    apy_importer_state_t *st = apy__importer_find_state();
    if (st == NULL || install_path_hook(st) < 0
        || install_lock_hook(st) < 0) {
        return -1;
    }
    PyObject *finder = PyObject_CallNoArgs(
        (PyObject *)st->notebook_finder_type);
    if (finder == NULL) {
        return -1;
    }
    int rc = -1;
    PyObject *meta_path = PySys_GetObject("meta_path"); /* borrowed */
    if (meta_path != NULL && PyList_Check(meta_path)) {
        rc = PyList_Append(meta_path, finder);
    } else {
        PyErr_SetString(PyExc_RuntimeError, "sys.meta_path is not a list");
    }
    Py_DECREF(finder);
    return rc;
}

/* Adds import_module and AsyncImportError to `module`. 0, or -1 with an
 * exception set. */
int
apy_importer_add_to_module(PyObject *module)
{
    PyObject *mine = PyImport_ImportModule(APY_IMPORTER_MODULE_NAME);
    if (mine == NULL) {
        return -1;
    }
    PyObject *import_module = NULL, *error = NULL;
    int rc = -1;

    import_module = PyObject_GetAttrString(mine, "import_module");
    if (import_module == NULL) {
        goto done;
    }
    error = PyObject_GetAttrString(mine, "AsyncImportError");
    if (error == NULL
        || PyModule_AddObjectRef(module, "import_module", import_module) < 0
        || PyModule_AddObjectRef(module, "AsyncImportError", error) < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(error);
    Py_XDECREF(import_module);
    Py_DECREF(mine);
    return rc;
}
