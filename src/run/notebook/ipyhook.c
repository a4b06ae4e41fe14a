/* SPDX-License-Identifier: MIT */
/* IPython's display functions and matplotlib's show(), routed to the
 * recorder: without a running IPython shell, IPython.display.display()
 * only print()s, and Agg's show() shows nothing. A meta-path finder
 * catches the import of IPython.core.display_functions (and of
 * matplotlib.pyplot while the Agg default is apyrun's, and of
 * IPython.core.getipython, IPython.core.interactiveshell and
 * ipykernel.kernelbase) and, once the module has run, replaces
 * display/clear_output/update_display (show; get_ipython;
 * InteractiveShell.instance; Kernel.instance()) by the recorder's (the
 * run's), so every later importer gets them: plt.show()
 * then shows the figures where it is called, as Jupyter's inline backend
 * does. None is imported here: a notebook that does not use them pays
 * nothing. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "apyrun/ipython.h"
#include "internal.h"

#define TARGET_MODULE "IPython.core.display_functions"
#define PYPLOT_MODULE "matplotlib.pyplot"
#define GETIPYTHON_MODULE "IPython.core.getipython"
#define SHELL_MODULE "IPython.core.interactiveshell"
#define KERNEL_MODULE "ipykernel.kernelbase"
#define REEXPORT_MODULE "IPython.display"

/* The finder, and the loader wrapper it puts into the spec. */
typedef struct {
    PyObject_HEAD
    PyObject *runtime;
    PyObject *real; /* the wrapped loader (NULL for the finder) */
} ApyNbHookObject;

static const char *const patched[] = {"display", "clear_output",
                                      "update_display"};

/* pyplot.show becomes functools.partial(runtime.show_figures): pyplot
 * sets show.__signature__ when the backend changes, and a partial takes
 * attributes where a builtin method does not. 0 or -1. */
static int
patch_pyplot_show(PyObject *runtime, PyObject *module)
{
    int rc = -1;
    PyObject *meth = NULL;
    PyObject *show = NULL;
    PyObject *functools = PyImport_ImportModule("functools");
    if (functools == NULL) {
        goto error;
    }
    meth = PyObject_GetAttrString(runtime, "show_figures");
    if (meth == NULL) {
        goto error;
    }
    show = PyObject_CallMethod(functools, "partial", "O", meth);
    if (show == NULL) {
        goto error;
    }
    rc = PyObject_SetAttrString(module, "show", show);
error:
    Py_XDECREF(show);
    Py_XDECREF(meth);
    Py_XDECREF(functools);
    return rc;
}

/* InteractiveShell.instance(*args, **kwargs) (self: (InteractiveShell,
 * SingletonConfigurable's instance function, the run's get_ipython);
 * args[0]: the class asked): the run's shell, made by get_ipython(),
 * when InteractiveShell itself is asked for its first instance, as
 * IPython's publish_display_data() and a program's own code do (IPython
 * would make a shell of its own, unknown to the run); else traitlets'
 * instance(). */
static PyObject *
shell_instance(PyObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *base = PyTuple_GET_ITEM(self, 0);
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "instance() needs its class");
        return NULL;
    }
    if (PyTuple_GET_ITEM(args, 0) == base) {
        PyObject *made = PyObject_GetAttrString(base, "_instance");
        if (made == NULL) {
            PyErr_Clear();
        }
        int first = made == NULL || made == Py_None;
        Py_XDECREF(made);
        if (first) {
            return PyObject_CallNoArgs(PyTuple_GET_ITEM(self, 2));
        }
    }
    return PyObject_Call(PyTuple_GET_ITEM(self, 1), args, kwargs);
}

static PyMethodDef shell_instance_def = {
    "instance", (PyCFunction)(void (*)(void))shell_instance,
    METH_VARARGS | METH_KEYWORDS,
    "The shell's one instance: in an apyrun run, the run's get_ipython().",
};

/* module.InteractiveShell.instance becomes shell_instance. 0 or -1. */
static int
patch_shell_instance(PyObject *module)
{
    PyObject *get = PyDict_GetItemString(PyEval_GetBuiltins(),
                                         "get_ipython"); /* borrowed */
    if (get == NULL) {
        return 0;
    }
    PyObject *cls = PyObject_GetAttrString(module, "InteractiveShell");
    PyObject *mro = cls != NULL ? PyObject_GetAttrString(cls, "__mro__")
                                : NULL;
    PyObject *orig = NULL, *self = NULL, *f = NULL, *cm = NULL;
    int rc = -1;
    /* The function behind traitlets' classmethod, found on the MRO. */
    for (Py_ssize_t i = 1; mro != NULL && PyTuple_Check(mro)
                           && orig == NULL && i < PyTuple_GET_SIZE(mro);
         i++) {
        PyObject *d = ((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_dict;
        PyObject *c = d != NULL ? PyDict_GetItemString(d, "instance") : NULL;
        if (c != NULL) {
            orig = PyObject_GetAttrString(c, "__func__");
        }
    }
    if (orig == NULL) {
        goto done;
    }
    self = PyTuple_Pack(3, cls, orig, get);
    f = self != NULL ? PyCFunction_New(&shell_instance_def, self) : NULL;
    cm = f != NULL ? PyClassMethod_New(f) : NULL;
    rc = cm != NULL ? PyObject_SetAttrString(cls, "instance", cm) : -1;
done:
    Py_XDECREF(cm);
    Py_XDECREF(f);
    Py_XDECREF(self);
    Py_XDECREF(orig);
    Py_XDECREF(mro);
    Py_XDECREF(cls);
    return rc;
}

/* Makes module's display functions (or pyplot's show) the recorder's.
 * 0 or -1. */
static int
patch_module(PyObject *runtime, PyObject *module)
{
    PyObject *modname = PyObject_GetAttrString(module, "__name__");
    if (modname == NULL) {
        return -1;
    }
    int pyplot = PyUnicode_Check(modname)
                 && PyUnicode_CompareWithASCIIString(modname, PYPLOT_MODULE)
                        == 0;
    int getipython = PyUnicode_Check(modname)
                     && PyUnicode_CompareWithASCIIString(modname,
                                                         GETIPYTHON_MODULE)
                            == 0;
    int shell = PyUnicode_Check(modname)
                && PyUnicode_CompareWithASCIIString(modname, SHELL_MODULE)
                       == 0;
    int kernel = PyUnicode_Check(modname)
                 && PyUnicode_CompareWithASCIIString(modname, KERNEL_MODULE)
                        == 0;
    Py_DECREF(modname);
    if (shell) {
        return patch_shell_instance(module);
    }
    if (kernel) {
        ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)runtime;
        return rt->run != NULL ? apy_ipy_kernel_module(rt->run->magics,
                                                       module)
                               : 0;
    }
    if (pyplot) {
        return patch_pyplot_show(runtime, module);
    }
    if (getipython) {
        /* IPython.get_ipython() is the run's get_ipython(): the same
         * shell, made on the first call from either. */
        PyObject *get = PyDict_GetItemString(PyEval_GetBuiltins(),
                                             "get_ipython"); /* borrowed */
        return get != NULL ? PyObject_SetAttrString(module, "get_ipython",
                                                    get)
                           : 0;
    }
    /* IPython.display star-imports them: imported already (IPython was,
     * before the run: a batch's parent), it holds the originals. */
    PyObject *key = PyUnicode_FromString(REEXPORT_MODULE);
    PyObject *again = key != NULL ? PyImport_GetModule(key) : NULL;
    Py_XDECREF(key);
    if (again == NULL && PyErr_Occurred()) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(patched) / sizeof(patched[0]); i++) {
        PyObject *f = PyObject_GetAttrString(runtime, patched[i]);
        if (f == NULL) {
            Py_XDECREF(again);
            return -1;
        }
        int rc = PyObject_SetAttrString(module, patched[i], f);
        if (rc == 0 && again != NULL) {
            rc = PyObject_SetAttrString(again, patched[i], f);
        }
        Py_DECREF(f);
        if (rc < 0) {
            Py_XDECREF(again);
            return -1;
        }
    }
    Py_XDECREF(again);
    PyObject *handle = PyObject_GetAttrString(module, "DisplayHandle");
    if (handle == NULL) {
        PyErr_Clear();
        return 0;
    }
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)runtime;
    Py_XSETREF(rt->ipy_handle, handle);
    return 0;
}

static int
hook_traverse(ApyNbHookObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->runtime);
    Py_VISIT(self->real);
    return 0;
}

static int
hook_clear(ApyNbHookObject *self)
{
    Py_CLEAR(self->runtime);
    Py_CLEAR(self->real);
    return 0;
}

static void
hook_dealloc(ApyNbHookObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    hook_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* A new, untracked instance of a fresh type made from spec; the instance
 * keeps its type alive. Its fields are NULL. */
static ApyNbHookObject *
hook_new(PyType_Spec *spec)
{
    PyTypeObject *tp = (PyTypeObject *)PyType_FromSpec(spec);
    if (tp == NULL) {
        return NULL;
    }
    ApyNbHookObject *self = PyObject_GC_New(ApyNbHookObject, tp);
    Py_DECREF(tp);
    if (self != NULL) {
        self->runtime = NULL;
        self->real = NULL;
    }
    return self;
}

/* Loader wrapper: create_module/exec_module delegate, then patch. */
static PyObject *
loader_create_module(ApyNbHookObject *self, PyObject *spec)
{
    PyObject *meth = PyObject_GetAttrString(self->real, "create_module");
    if (meth == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *r = PyObject_CallOneArg(meth, spec);
    Py_DECREF(meth);
    return r;
}

/* Runs the module with the real loader, then patches it. Returns None,
 * or NULL with the module's (or the patch's) exception. */
static PyObject *
loader_exec_module(ApyNbHookObject *self, PyObject *module)
{
    PyObject *r = PyObject_CallMethod(self->real, "exec_module", "O",
                                      module);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    if (patch_module(self->runtime, module) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Anything else a loader offers (get_source for tracebacks, is_package)
 * is the real loader's. */
static PyObject *
loader_getattro(ApyNbHookObject *self, PyObject *name)
{
    PyObject *r = PyObject_GenericGetAttr((PyObject *)self, name);
    if (r != NULL || self->real == NULL
        || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return r;
    }
    PyErr_Clear();
    return PyObject_GetAttr(self->real, name);
}

static PyMethodDef loader_methods[] = {
    {"create_module", (PyCFunction)loader_create_module, METH_O, NULL},
    {"exec_module", (PyCFunction)loader_exec_module, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot loader_slots[] = {
    {Py_tp_methods, loader_methods},
    {Py_tp_getattro, loader_getattro},
    {Py_tp_traverse, hook_traverse},
    {Py_tp_clear, hook_clear},
    {Py_tp_dealloc, hook_dealloc},
    {0, NULL},
};

static PyType_Spec loader_spec = {
    .name = "apyrun.notebook.DisplayLoader",
    .basicsize = sizeof(ApyNbHookObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = loader_slots,
};

/* Returns 1 while the Agg backend is the one apyrun chose, so plt.show()
 * is ours to handle. */
static int
agg_is_ours(ApyNbHookObject *self)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)self->runtime;
    return rt->run != NULL && rt->run->mpl_default;
}

/* find_spec(fullname, path=None, target=None): None except for the one
 * module, whose normal spec gets the wrapping loader. */
static PyObject *
finder_find_spec(ApyNbHookObject *self, PyObject *const *args,
                 Py_ssize_t nargs)
{
    if (nargs < 1 || !PyUnicode_Check(args[0])
        || (PyUnicode_CompareWithASCIIString(args[0], TARGET_MODULE) != 0
            && PyUnicode_CompareWithASCIIString(args[0], GETIPYTHON_MODULE)
                   != 0
            && PyUnicode_CompareWithASCIIString(args[0], SHELL_MODULE) != 0
            && PyUnicode_CompareWithASCIIString(args[0], KERNEL_MODULE) != 0
            && (PyUnicode_CompareWithASCIIString(args[0], PYPLOT_MODULE)
                    != 0
                || !agg_is_ours(self)))) {
        Py_RETURN_NONE;
    }
    PyObject *path = nargs > 1 ? args[1] : Py_None;
    PyObject *machinery = PyImport_ImportModule("importlib.machinery");
    PyObject *finder = machinery
                           ? PyObject_GetAttrString(machinery, "PathFinder")
                           : NULL;
    Py_XDECREF(machinery);
    PyErr_Clear();
    if (finder == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *spec = PyObject_CallMethod(finder, "find_spec", "OO", args[0],
                                         path);
    Py_DECREF(finder);
    if (spec == NULL || spec == Py_None) {
        return spec;
    }
    PyObject *real = PyObject_GetAttrString(spec, "loader");
    if (real == NULL || real == Py_None) {
        Py_XDECREF(real);
        PyErr_Clear();
        return spec;
    }
    ApyNbHookObject *loader = hook_new(&loader_spec);
    if (loader == NULL) {
        Py_DECREF(real);
        Py_DECREF(spec);
        return NULL;
    }
    loader->runtime = Py_NewRef(self->runtime);
    loader->real = real;
    PyObject_GC_Track(loader);
    int rc = PyObject_SetAttrString(spec, "loader", (PyObject *)loader);
    Py_DECREF(loader);
    if (rc < 0) {
        Py_DECREF(spec);
        return NULL;
    }
    return spec;
}

static PyMethodDef finder_methods[] = {
    {"find_spec", (PyCFunction)(void (*)(void))finder_find_spec,
     METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot finder_slots[] = {
    {Py_tp_methods, finder_methods},
    {Py_tp_traverse, hook_traverse},
    {Py_tp_clear, hook_clear},
    {Py_tp_dealloc, hook_dealloc},
    {0, NULL},
};

static PyType_Spec finder_spec = {
    .name = "apyrun.notebook.DisplayFinder",
    .basicsize = sizeof(ApyNbHookObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = finder_slots,
};

/* Patches the module called name now if it is imported already. 1 (it
 * was), 0 (it was not), -1. */
static int
patch_imported(apy_nbrun_t *run, const char *name)
{
    PyObject *key = PyUnicode_FromString(name);
    if (key == NULL) {
        return -1;
    }
    PyObject *mod = PyImport_GetModule(key);
    Py_DECREF(key);
    if (mod == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    int rc = patch_module(run->runtime, mod);
    Py_DECREF(mod);
    return rc < 0 ? -1 : 1;
}

int
apy__nbrun_display_hook_ipython(apy_nbrun_t *run)
{
    int display = patch_imported(run, TARGET_MODULE);
    int getipython = display < 0 ? -1 : patch_imported(run,
                                                       GETIPYTHON_MODULE);
    int shell = getipython < 0 ? -1 : patch_imported(run, SHELL_MODULE);
    int kernel = shell < 0 ? -1 : patch_imported(run, KERNEL_MODULE);
    if (display < 0 || getipython < 0 || shell < 0 || kernel < 0) {
        return -1;
    }
    if (display && kernel) {
        return 0; /* IPython is imported whole: nothing left to catch */
    }
    PyObject *meta_path = PySys_GetObject("meta_path"); /* borrowed */
    if (meta_path == NULL || !PyList_Check(meta_path)) {
        return 0;
    }
    ApyNbHookObject *finder = hook_new(&finder_spec);
    if (finder == NULL) {
        return -1;
    }
    finder->runtime = Py_NewRef(run->runtime);
    finder->real = NULL;
    PyObject_GC_Track(finder);
    int rc = PyList_Insert(meta_path, 0, (PyObject *)finder);
    Py_DECREF(finder);
    return rc;
}
