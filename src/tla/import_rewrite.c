/* SPDX-License-Identifier: MIT */
/* The awaited-imports rewrite of TLA code's AST: each import statement at
 * the module level gets an awaited import in front, so that a TLA module
 * it names runs on the running loop before the statement binds it. Only
 * the AST changes; compiling, the TLA rule and running the code belong
 * elsewhere. */
#include <Python.h>

#include "apyrun/tla_rewrite.h"

/* The statement in front, at the import's own position:
 *     await __import__('_apyrun_importer')._await_import(name, from, level)
 *
 * Rejected alternatives: rewriting the statement itself into a call (every
 * form of import, `as` and star binding would have to be re-implemented,
 * with their error messages); rewriting bytecode (no stable format). With
 * a call in front, the statement keeps python's exact semantics and finds
 * the module already in sys.modules. */

/* The _ast node types the rewrite reads or builds (borrowed from _ast's
 * module dict while `ast_mod` is held). */
typedef struct {
    PyObject *ast_mod;
    PyObject *Import, *ImportFrom, *Expr, *Await, *Call, *Attribute, *Name;
    PyObject *Constant, *Load;
    PyObject *If, *For, *AsyncFor, *While, *With, *AsyncWith, *Try;
    PyObject *TryStar, *Match;
} ast_types_t;

static int
ast_types_init(ast_types_t *t)
{
    static const char *const names[] = {
        "Import", "ImportFrom", "Expr", "Await", "Call", "Attribute",
        "Name", "Constant", "Load", "If", "For", "AsyncFor", "While",
        "With", "AsyncWith", "Try", "TryStar", "Match",
    };
    PyObject **slots[] = {
        &t->Import, &t->ImportFrom, &t->Expr, &t->Await, &t->Call,
        &t->Attribute, &t->Name, &t->Constant, &t->Load, &t->If, &t->For,
        &t->AsyncFor, &t->While, &t->With, &t->AsyncWith, &t->Try,
        &t->TryStar, &t->Match,
    };
    t->ast_mod = PyImport_ImportModule("_ast");
    if (t->ast_mod == NULL) {
        return -1;
    }
    PyObject *dict = PyModule_GetDict(t->ast_mod); /* borrowed */
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *slots[i] = PyDict_GetItemString(dict, names[i]); /* borrowed */
        if (*slots[i] == NULL) {
            PyErr_Format(PyExc_SystemError, "_ast.%s is missing", names[i]);
            Py_CLEAR(t->ast_mod);
            return -1;
        }
    }
    return 0;
}

/* Calls node type `type` with keyword fields `fields` (a dict, consumed)
 * plus the four location attributes copied from `where`. Returns a new
 * node, or NULL with an exception set. */
static PyObject *
make_node(PyObject *type, PyObject *fields, PyObject *where)
{
    static const char *const attrs[] = {"lineno", "col_offset",
                                        "end_lineno", "end_col_offset"};
    if (fields == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < 4; i++) {
        PyObject *v = PyObject_GetAttrString(where, attrs[i]);
        if (v == NULL || PyDict_SetItemString(fields, attrs[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(fields);
            return NULL;
        }
        Py_DECREF(v);
    }
    PyObject *node = NULL;
    PyObject *empty = PyTuple_New(0);
    if (empty != NULL) {
        node = PyObject_Call(type, empty, fields);
        Py_DECREF(empty);
    }
    Py_DECREF(fields);
    return node;
}

/* Builds the statement
 *     await __import__('_apyrun_importer')._await_import(name, from, lvl)
 * located where `stmt` is. Returns a new node or NULL with an exception. */
static PyObject *
make_await_import(ast_types_t *t, PyObject *stmt, PyObject *name,
                  PyObject *fromlist, PyObject *level)
{
    PyObject *load = NULL, *n_import = NULL, *c_mod = NULL, *c_call = NULL;
    PyObject *attr = NULL, *c_name = NULL, *c_from = NULL, *c_level = NULL;
    PyObject *call = NULL, *await = NULL, *expr = NULL;

    load = PyObject_CallNoArgs(t->Load);
    if (load == NULL) {
        goto done;
    }
    n_import = make_node(t->Name, Py_BuildValue("{s:s,s:O}", "id",
                                                "__import__", "ctx", load),
                         stmt);
    if (n_import == NULL) {
        goto done;
    }
    c_mod = make_node(t->Constant,
                      Py_BuildValue("{s:s}", "value", APY_TLA_IMPORT_MODULE),
                      stmt);
    if (c_mod == NULL) {
        goto done;
    }
    c_call = make_node(t->Call,
                       Py_BuildValue("{s:O,s:[O],s:[]}", "func", n_import,
                                     "args", c_mod, "keywords"),
                       stmt);
    if (c_call == NULL) {
        goto done;
    }
    attr = make_node(t->Attribute,
                     Py_BuildValue("{s:O,s:s,s:O}", "value", c_call, "attr",
                                   APY_TLA_IMPORT_FUNC, "ctx", load),
                     stmt);
    if (attr == NULL) {
        goto done;
    }
    c_name = make_node(t->Constant, Py_BuildValue("{s:O}", "value", name),
                       stmt);
    if (c_name == NULL) {
        goto done;
    }
    c_from = make_node(t->Constant,
                       Py_BuildValue("{s:O}", "value", fromlist), stmt);
    if (c_from == NULL) {
        goto done;
    }
    c_level = make_node(t->Constant, Py_BuildValue("{s:O}", "value", level),
                        stmt);
    if (c_level == NULL) {
        goto done;
    }
    call = make_node(t->Call,
                     Py_BuildValue("{s:O,s:[OOO],s:[]}", "func", attr,
                                   "args", c_name, c_from, c_level,
                                   "keywords"),
                     stmt);
    if (call == NULL) {
        goto done;
    }
    await = make_node(t->Await, Py_BuildValue("{s:O}", "value", call), stmt);
    if (await == NULL) {
        goto done;
    }
    expr = make_node(t->Expr, Py_BuildValue("{s:O}", "value", await), stmt);
done:
    Py_XDECREF(load);
    Py_XDECREF(n_import);
    Py_XDECREF(c_mod);
    Py_XDECREF(c_call);
    Py_XDECREF(attr);
    Py_XDECREF(c_name);
    Py_XDECREF(c_from);
    Py_XDECREF(c_level);
    Py_XDECREF(call);
    Py_XDECREF(await);
    return expr;
}

/* Appends to `out` one awaited import per name of `import a, b` (names:
 * the statement's alias list). Returns 0, or -1 with an exception set. */
static int
awaits_for_import(ast_types_t *t, PyObject *stmt, PyObject *names,
                  PyObject *out)
{
    PyObject *zero = NULL, *name = NULL, *node = NULL;
    int rc = -1;

    zero = PyLong_FromLong(0);
    if (zero == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(names); i++) {
        PyObject *alias = PyList_GET_ITEM(names, i); /* borrowed */
        name = PyObject_GetAttrString(alias, "name");
        if (name == NULL) {
            goto done;
        }
        node = make_await_import(t, stmt, name, Py_None, zero);
        if (node == NULL || PyList_Append(out, node) < 0) {
            goto done;
        }
        Py_CLEAR(name);
        Py_CLEAR(node);
    }
    rc = 0;
done:
    Py_XDECREF(node);
    Py_XDECREF(name);
    Py_XDECREF(zero);
    return rc;
}

/* Appends to `out` the awaited import for `from module import names`
 * (none for `from __future__`; `from . import x` has module None,
 * imported as ''). Returns 0, or -1 with an exception set. */
static int
awaits_for_from(ast_types_t *t, PyObject *stmt, PyObject *names,
                PyObject *out)
{
    PyObject *module = NULL, *level = NULL, *from = NULL, *node = NULL;
    int rc = -1;

    module = PyObject_GetAttrString(stmt, "module");
    if (module == NULL) {
        goto done;
    }
    level = PyObject_GetAttrString(stmt, "level");
    if (level == NULL) {
        goto done;
    }
    if (module != Py_None && PyUnicode_Check(module)
        && PyUnicode_CompareWithASCIIString(module, "__future__") == 0) {
        rc = 0;
        goto done;
    }
    if (module == Py_None) {
        Py_SETREF(module, PyUnicode_FromString(""));
        if (module == NULL) {
            goto done;
        }
    }
    if (level == Py_None) {
        Py_SETREF(level, PyLong_FromLong(0));
        if (level == NULL) {
            goto done;
        }
    }
    from = PyTuple_New(PyList_GET_SIZE(names));
    if (from == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(names); i++) {
        PyObject *n = PyObject_GetAttrString(PyList_GET_ITEM(names, i),
                                             "name");
        if (n == NULL) {
            goto done;
        }
        PyTuple_SET_ITEM(from, i, n);
    }
    node = make_await_import(t, stmt, module, from, level);
    if (node == NULL || PyList_Append(out, node) < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(node);
    Py_XDECREF(from);
    Py_XDECREF(level);
    Py_XDECREF(module);
    return rc;
}

/* Returns a new list of the awaited-import statements that must precede
 * import statement `stmt` (one per name of `import a, b`; one for a
 * `from` import; none for `from __future__`), or NULL with an error. */
static PyObject *
awaits_for(ast_types_t *t, PyObject *stmt)
{
    PyObject *out = NULL, *names = NULL;
    int rc;

    out = PyList_New(0);
    if (out == NULL) {
        goto error;
    }
    names = PyObject_GetAttrString(stmt, "names");
    if (names == NULL) {
        goto error;
    }
    if (!PyList_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "import names is not a list");
        goto error;
    }
    if (Py_IS_TYPE(stmt, (PyTypeObject *)t->Import)) {
        rc = awaits_for_import(t, stmt, names, out);
    } else {
        rc = awaits_for_from(t, stmt, names, out);
    }
    if (rc < 0) {
        goto error;
    }
    Py_DECREF(names);
    return out;

error:
    Py_XDECREF(names);
    Py_XDECREF(out);
    return NULL;
}

static Py_ssize_t rewrite_body(ast_types_t *t, PyObject *body);

/* Rewrites the statement list in attribute `attr` of `node`. */
static Py_ssize_t
rewrite_attr(ast_types_t *t, PyObject *node, const char *attr)
{
    PyObject *body = PyObject_GetAttrString(node, attr);
    if (body == NULL) {
        return -1;
    }
    Py_ssize_t n = PyList_Check(body) ? rewrite_body(t, body) : 0;
    Py_DECREF(body);
    return n;
}

/* Rewrites the `body` of every item of list attribute `attr` of `node`
 * (a Try's handlers, a Match's cases). */
static Py_ssize_t
rewrite_items(ast_types_t *t, PyObject *node, const char *attr)
{
    PyObject *items = PyObject_GetAttrString(node, attr);
    if (items == NULL) {
        return -1;
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; PyList_Check(items) && i < PyList_GET_SIZE(items);
         i++) {
        Py_ssize_t n = rewrite_attr(t, PyList_GET_ITEM(items, i), "body");
        if (n < 0) {
            total = -1;
            break;
        }
        total += n;
    }
    Py_DECREF(items);
    return total;
}

/* Rewrites the statements nested in compound statement `stmt` that run
 * in the same frame. Returns the number of awaits inserted or -1. */
static Py_ssize_t
rewrite_compound(ast_types_t *t, PyObject *stmt)
{
    static const char *const loops[] = {"body", "orelse", NULL};
    static const char *const tries[] = {"body", "orelse", "finalbody", NULL};
    static const char *const withs[] = {"body", NULL};
    PyTypeObject *tp = Py_TYPE(stmt);
    const char *const *attrs = NULL;
    Py_ssize_t total = 0;

    if (tp == (PyTypeObject *)t->If || tp == (PyTypeObject *)t->For
        || tp == (PyTypeObject *)t->AsyncFor
        || tp == (PyTypeObject *)t->While) {
        attrs = loops;
    } else if (tp == (PyTypeObject *)t->With
               || tp == (PyTypeObject *)t->AsyncWith) {
        attrs = withs;
    } else if (tp == (PyTypeObject *)t->Try
               || tp == (PyTypeObject *)t->TryStar) {
        attrs = tries;
        total = rewrite_items(t, stmt, "handlers");
    } else if (tp == (PyTypeObject *)t->Match) {
        return rewrite_items(t, stmt, "cases");
    } else {
        /* def, class, lambda bodies run in frames of their own; simple
         * statements hold no statements. */
        return 0;
    }
    for (size_t i = 0; total >= 0 && attrs[i] != NULL; i++) {
        Py_ssize_t n = rewrite_attr(t, stmt, attrs[i]);
        total = n < 0 ? -1 : total + n;
    }
    return total;
}

/* Inserts the awaited imports into statement list `body` (in place) and
 * recurses into compound statements. Returns how many were inserted, or
 * -1 with an exception set. */
static Py_ssize_t
rewrite_body(ast_types_t *t, PyObject *body)
{
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(body); i++) {
        PyObject *stmt = PyList_GET_ITEM(body, i); /* borrowed */
        if (Py_IS_TYPE(stmt, (PyTypeObject *)t->Import)
            || Py_IS_TYPE(stmt, (PyTypeObject *)t->ImportFrom)) {
            PyObject *awaits = awaits_for(t, stmt);
            if (awaits == NULL) {
                return -1;
            }
            Py_ssize_t n = PyList_GET_SIZE(awaits);
            if (PyList_SetSlice(body, i, i, awaits) < 0) {
                Py_DECREF(awaits);
                return -1;
            }
            Py_DECREF(awaits);
            i += n; /* now at the import statement itself */
            total += n;
            continue;
        }
        Py_ssize_t n = rewrite_compound(t, stmt);
        if (n < 0) {
            return -1;
        }
        total += n;
    }
    return total;
}

/* Inserts the awaited imports into `tree`: their number, or -1 with an
 * exception set. */
Py_ssize_t
apy_tla_rewrite_imports(PyObject *tree)
{
    ast_types_t types;
    if (ast_types_init(&types) < 0) {
        return -1;
    }
    PyObject *body = PyObject_GetAttrString(tree, "body");
    Py_ssize_t n = -1;
    if (body != NULL && PyList_Check(body)) {
        n = rewrite_body(&types, body);
    } else if (body != NULL) {
        PyErr_SetString(PyExc_TypeError, "module body is not a list");
    }
    Py_XDECREF(body);
    Py_DECREF(types.ast_mod);
    return n;
}
