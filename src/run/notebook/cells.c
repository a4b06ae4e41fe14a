/* SPDX-License-Identifier: MIT */
/* Compiling and running one code cell in __main__: line numbers made the
 * notebook file's JSON lines (lines.c: the code shifted for Jupyter's
 * layout, the AST renumbered for any other), the cell's text registered with
 * linecache under the notebook's path, __future__ flags carried from cell
 * to cell, the last expression split off when it is recorded, and code
 * that awaits run as a main task on the run's one loop. Output recording
 * and reporting are other files' business. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <opcode.h>

#include <stdlib.h>
#include <string.h>

#include "apyrun/ipython.h"
#include "apyrun/tla.h"
#include "apyrun/tla_rewrite.h"
#include "internal.h"

/* How IPython parses a cell (its CachingCompiler is codeop's Compile):
 * a cell that ends inside a bracket, a string or a block is
 * "incomplete input", as in a kernel. */
#define IPYTHON_PARSE (PyCF_DONT_IMPLY_DEDENT | PyCF_ALLOW_INCOMPLETE_INPUT)

/* The file name of the injected-parameters cell, which is in no file. */
#define INJECTED_NAME "<injected-parameters>"

/* Returns a new reference to the code file name of the running cell. */
static PyObject *
cell_filename(apy_nbrun_t *run)
{
    if (run->nb.cells[run->cur].nlines == 0) {
        return PyUnicode_FromString(INJECTED_NAME);
    }
    return Py_NewRef(run->path);
}

/* Returns the 1-based number of the last line of text holding code (not
 * blank, not only a comment), and sets *semicolon if that line holds a
 * ';'. 0 when there is none. */
static long
last_code_line(const char *text, int *semicolon)
{
    long line = 1, last = 0;
    const char *p = text;
    *semicolon = 0;
    while (*p != '\0') {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        size_t lead = strspn(p, " \t\f\r");
        if (lead < n && p[lead] != '#') {
            last = line;
            *semicolon = memchr(p, ';', n) != NULL;
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
        line++;
    }
    return last;
}

/* Returns 1 if module code compiled from text may end with an expression
 * statement, whose value a recorded cell shows; 0 when it surely does
 * not, so the cell needs no AST pass. CPython 3.11 ends a module with
 * LOAD_CONST None, RETURN_VALUE; an expression statement before that
 * ends with POP_TOP (its value dropped), except a constant one, which
 * the compiler drops entirely (or makes a docstring): so the last
 * instruction must also reach the last line of code, with no ';' on it
 * and no __doc__ stored. Never fails. */
static int
may_end_with_expr(PyObject *code, const char *text)
{
    PyObject *bytes = NULL, *pos = NULL, *list = NULL;
    int r = 1;

    bytes = PyCode_GetCode((PyCodeObject *)code);
    if (bytes == NULL) {
        goto done;
    }
    pos = PyObject_CallMethod(code, "co_positions", NULL);
    if (pos == NULL) {
        goto done;
    }
    list = PySequence_List(pos);
    if (list == NULL) {
        goto done;
    }
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(bytes);
    Py_ssize_t n = PyBytes_GET_SIZE(bytes);
    r = n < 6 || b[n - 2] != RETURN_VALUE || b[n - 4] != LOAD_CONST
        || b[n - 6] == POP_TOP || b[n - 6] == RESUME;
    if (!r) {
        /* co_positions has one entry per code unit. */
        PyObject *last = PyList_GET_SIZE(list) == n / 2
                             ? PyList_GET_ITEM(list, n / 2 - 3) : NULL;
        PyObject *endline = last && PyTuple_Check(last)
                                    && PyTuple_GET_SIZE(last) >= 2
                                ? PyTuple_GET_ITEM(last, 1) : NULL;
        long reach = endline && PyLong_Check(endline)
                         ? PyLong_AsLong(endline) : -1;
        int semicolon;
        long code_line = last_code_line(text, &semicolon);
        /* A cell that is one string compiles to a docstring store. */
        int has_doc = 1;
        PyObject *doc = PyUnicode_FromString("__doc__");
        if (doc != NULL) {
            has_doc = PySequence_Contains(((PyCodeObject *)code)->co_names,
                                          doc);
            Py_DECREF(doc);
        }
        r = reach < code_line || semicolon || has_doc != 0;
    }
done:
    Py_XDECREF(list);
    Py_XDECREF(pos);
    Py_XDECREF(bytes);
    PyErr_Clear();
    return r;
}

/* builtins.compile(node, filename, mode, flags, dont_inherit=True):
 * a new code object, or NULL with an exception set. */
static PyObject *
compile_node(PyObject *node, PyObject *filename, const char *mode,
             int flags)
{
    PyObject *compile = PyDict_GetItemString(PyEval_GetBuiltins(),
                                             "compile"); /* borrowed */
    if (compile == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "builtins.compile is gone");
        return NULL;
    }
    return PyObject_CallFunction(compile, "OOsii", node, filename, mode,
                                 flags, 1);
}

/* The name a recorded last expression is assigned to while its cell
 * runs; the driver takes it out of __main__ right after. */
#define RESULT_NAME "__apyrun_last_value__"

/* Sets node's source location to that of `from`. 0 or -1. */
static int
copy_location(PyObject *node, PyObject *from)
{
    static const char *const attrs[] = {"lineno", "col_offset", "end_lineno",
                                        "end_col_offset"};
    for (size_t i = 0; i < 4; i++) {
        PyObject *v = PyObject_GetAttrString(from, attrs[i]);
        if (v == NULL) {
            return -1;
        }
        int rc = PyObject_SetAttrString(node, attrs[i], v);
        Py_DECREF(v);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* Turns a last statement that is an expression into an assignment to
 * RESULT_NAME, so that the cell stays one code object (one coroutine
 * when it awaits: code before the expression runs in the same task).
 * Returns 1 if it did, 0 if the cell does not end in an expression, -1
 * with an exception set. */
static int
assign_last_expr(PyObject *mod)
{
    PyObject *astmod = NULL, *expr_type = NULL, *body = NULL;
    PyObject *value = NULL, *store = NULL, *name = NULL, *assign = NULL;
    int rc = -1;

    astmod = PyImport_ImportModule("_ast");
    if (astmod == NULL) {
        goto done;
    }
    expr_type = PyObject_GetAttrString(astmod, "Expr");
    if (expr_type == NULL) {
        goto done;
    }
    body = PyObject_GetAttrString(mod, "body");
    if (body == NULL) {
        goto done;
    }
    Py_ssize_t n = PyList_Check(body) ? PyList_GET_SIZE(body) : 0;
    PyObject *last = n > 0 ? PyList_GET_ITEM(body, n - 1) : NULL;
    if (last == NULL
        || !PyObject_TypeCheck(last, (PyTypeObject *)expr_type)) {
        rc = 0;
        goto done;
    }
    value = PyObject_GetAttrString(last, "value");
    if (value == NULL) {
        goto done;
    }
    store = PyObject_CallMethod(astmod, "Store", NULL);
    if (store == NULL) {
        goto done;
    }
    name = PyObject_CallMethod(astmod, "Name", "sO", RESULT_NAME, store);
    Py_CLEAR(store);
    if (name == NULL) {
        goto done;
    }
    PyObject *targets = PyList_New(1);
    if (targets == NULL) {
        goto done;
    }
    PyList_SET_ITEM(targets, 0, Py_NewRef(name));
    assign = PyObject_CallMethod(astmod, "Assign", "NO", targets, value);
    if (assign == NULL) {
        goto done;
    }
    if (copy_location(name, last) < 0 || copy_location(assign, last) < 0) {
        goto done;
    }
    if (PyList_SetItem(body, n - 1, Py_NewRef(assign)) < 0) {
        goto done;
    }
    rc = 1;
done:
    Py_XDECREF(assign);
    Py_XDECREF(name);
    Py_XDECREF(store);
    Py_XDECREF(value);
    Py_XDECREF(body);
    Py_XDECREF(expr_type);
    Py_XDECREF(astmod);
    return rc;
}

/* Adds the __future__ features code was compiled with to the run's. */
static void
carry_future(apy_nbrun_t *run, PyObject *code)
{
    if (code != NULL && PyCode_Check(code)) {
        run->cf_flags |= ((PyCodeObject *)code)->co_flags & PyCF_MASK;
    }
}

/* Every cell runs in the loop, as in a kernel: the imports of tree (the
 * cell's module AST) are made to await TLA modules (the cell then awaits
 * too), and *body is compiled again from tree if any import changed.
 * 0, or -1 with an exception set (*body is kept, or NULL when the
 * compile failed). */
static int
await_imports(PyObject *tree, PyObject *filename, int flags,
              PyObject **body)
{
    Py_ssize_t n = apy_tla_rewrite_imports(tree);
    if (n < 0) {
        return -1;
    }
    if (n > 0) {
        Py_SETREF(*body, compile_node(tree, filename, "exec", flags));
    }
    return *body != NULL ? 0 : -1;
}

/* Compiles source (a cell body starting after cell line first_line) into
 * *body; *has_result is set when its last expression's value is left in
 * __main__ as RESULT_NAME to be recorded. 0, or -1 with an exception set
 * (a SyntaxError at the JSON line). */
static int
compile_cell(apy_nbrun_t *run, const char *source, size_t first_line,
             PyObject **body, int *has_result)
{
    const apy_nb_cell_t *cell = &run->nb.cells[run->cur];
    long base = apy__nbrun_consecutive_base(cell, first_line,
                                            apy__nbrun_count_lines(source));
    /* Split whenever it shows: the value is recorded with -o, and kept
     * as _, _N and Out[N] either way. */
    int split = !apy_ipy_silenced(source);
    *body = NULL;
    *has_result = 0;

    const char *text = source;
    PyObject *filename = cell_filename(run);
    if (filename == NULL) {
        return -1;
    }
    int flags = run->cf_flags | PyCF_ALLOW_TOP_LEVEL_AWAIT | IPYTHON_PARSE;
    PyCompilerFlags cf = _PyCompilerFlags_INIT;
    int rc = -1;
    if (split && base >= 0) {
        /* Most cells end with a statement, not an expression: one plain
         * compile tells, and spares them the AST pass below. */
        cf.cf_flags = flags;
        *body = Py_CompileStringObject(text, filename, Py_file_input, &cf,
                                       -1);
        if (*body == NULL) {
            PyErr_Clear(); /* the AST pass reports it */
        }
        split = *body == NULL || may_end_with_expr(*body, text);
        if (split) {
            Py_CLEAR(*body);
        }
    }
    /* A late __future__ import needs the AST (apy_ipy_late_futures). */
    int late = strstr(source, "__future__") != NULL;
    if (!split && base >= 0 && !late) {
        /* The common case needs no AST: the text compiles to the right
         * line numbers once shifted by base (done below). */
        cf.cf_flags = flags;
        if (*body == NULL) {
            *body = Py_CompileStringObject(text, filename, Py_file_input,
                                           &cf, -1);
        }
        rc = *body != NULL ? 0 : -1;
        if (rc < 0 && base > 0) {
            apy__nbrun_renumber_syntax_error(cell, first_line);
        }
        if (rc < 0) {
            apy__nbrun_fix_syntax_error_text(source, base);
        }
        if (rc == 0 && (apy_tla_is_coroutine_code(*body)
                        || strstr(source, "import") != NULL)) {
            cf.cf_flags = flags | PyCF_ONLY_AST;
            PyObject *tree = Py_CompileStringObject(text, filename,
                                                    Py_file_input, &cf, -1);
            if (tree == NULL) {
                rc = -1;
                goto done;
            }
            rc = await_imports(tree, filename, flags, body);
            Py_DECREF(tree);
        }
        goto done;
    }
    cf.cf_flags = run->cf_flags | PyCF_ONLY_AST | IPYTHON_PARSE;
    PyObject *mod = Py_CompileStringObject(text, filename, Py_file_input,
                                           &cf, -1);
    if (mod == NULL) {
        if (base != 0) {
            apy__nbrun_renumber_syntax_error(cell, first_line);
        }
        apy__nbrun_fix_syntax_error_text(source, base > 0 ? base : 0);
        goto done;
    }
    if ((base < 0 && apy__nbrun_renumber_ast(mod, cell, first_line) < 0)
        || (late && apy_ipy_late_futures(mod, filename, &flags) < 0)) {
        if (base > 0) {
            apy__nbrun_renumber_syntax_error(cell, first_line);
        }
        if (base >= 0) {
            apy__nbrun_fix_syntax_error_text(source, base);
        }
        Py_DECREF(mod);
        goto done;
    }
    int last = split ? assign_last_expr(mod) : 0;
    if (last >= 0) {
        *has_result = last;
        *body = compile_node(mod, filename, "exec", flags);
        rc = *body != NULL ? 0 : -1;
        if (rc < 0 && base > 0) {
            apy__nbrun_renumber_syntax_error(cell, first_line);
        }
        if (rc < 0 && base >= 0) {
            apy__nbrun_fix_syntax_error_text(source, base);
        }
        if (rc == 0 && (apy_tla_is_coroutine_code(*body)
                        || strstr(source, "import") != NULL)) {
            rc = await_imports(mod, filename, flags, body);
        }
    }
    Py_DECREF(mod);
done:
    Py_DECREF(filename);
    if (rc == 0 && base > 0) {
        Py_SETREF(*body, apy__nbrun_shift_code(*body, base));
        rc = *body != NULL ? 0 : -1;
    }
    if (rc < 0) {
        Py_CLEAR(*body);
        return -1;
    }
    carry_future(run, *body);
    return 0;
}

int
apy__nbrun_ensure_loop(apy_nbrun_t *run)
{
    if (run->loop != NULL) {
        return 0;
    }
    run->loop = apy_tla_open_loop();
    return run->loop != NULL ? 0 : -1;
}

/* A plain (non-coroutine) cell evaluated from a loop callback. It lives
 * on the heap, owned by the capsule that the callback holds: an interrupt
 * can stop run_until_complete before the callback ran (a signal landing
 * in asyncio's own Python code), and the callback, still in the loop's
 * queue, must then find its state alive and do nothing. */
typedef struct {
    PyObject *code;    /* borrowed while `abandoned` is 0 */
    PyObject *globals; /* borrowed while `abandoned` is 0 */
    PyObject *future;  /* strong: completed when the cell has run */
    PyObject *value;   /* strong: the cell's value, or NULL */
    PyObject *exc[3];  /* strong: the cell's exception, or NULLs */
    int ran;
    int abandoned;     /* the caller gave up: run nothing */
} plain_cell_t;

#define PLAIN_CELL_CAPSULE "apyrun.nbrun.plain_cell"

static void
plain_cell_free(PyObject *capsule)
{
    plain_cell_t *pc = PyCapsule_GetPointer(capsule, PLAIN_CELL_CAPSULE);
    if (pc == NULL) {
        PyErr_Clear();
        return;
    }
    Py_XDECREF(pc->future);
    Py_XDECREF(pc->value);
    Py_XDECREF(pc->exc[0]);
    Py_XDECREF(pc->exc[1]);
    Py_XDECREF(pc->exc[2]);
    PyMem_Free(pc);
}

/* loop.call_soon target: evaluates the cell while the loop runs, as a
 * Jupyter kernel does, so plain cells see a running loop. The outcome is
 * kept in the struct (not on the future: a future refuses StopIteration
 * and would re-raise KeyboardInterrupt from the loop); the future only
 * says "done". Returns None, or NULL with an exception set. */
static PyObject *
plain_cell_step(PyObject *capsule, PyObject *unused)
{
    plain_cell_t *pc = PyCapsule_GetPointer(capsule, PLAIN_CELL_CAPSULE);
    if (pc == NULL) {
        return NULL;
    }
    if (pc->abandoned) {
        Py_RETURN_NONE;
    }
    pc->ran = 1;
    pc->value = PyEval_EvalCode(pc->code, pc->globals, pc->globals);
    if (pc->value == NULL) {
        PyErr_Fetch(&pc->exc[0], &pc->exc[1], &pc->exc[2]);
    }
    return PyObject_CallMethod(pc->future, "set_result", "O", Py_None);
}

static PyMethodDef plain_cell_def = {
    "apyrun_cell", plain_cell_step, METH_NOARGS, NULL,
};

/* Runs plain code inside the running loop; same contract as run_code. */
static int
run_plain_in_loop(apy_nbrun_t *run, PyObject *code, PyObject **result)
{
    plain_cell_t *pc = PyMem_Calloc(1, sizeof(*pc));
    int rc = -1;
    PyObject *capsule = NULL, *step = NULL, *handle = NULL, *r = NULL;

    if (pc == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    pc->code = code;
    pc->globals = run->globals;
    capsule = PyCapsule_New(pc, PLAIN_CELL_CAPSULE, plain_cell_free);
    if (capsule == NULL) {
        PyMem_Free(pc);
        return -1;
    }
    pc->future = PyObject_CallMethod(run->loop, "create_future", NULL);
    if (pc->future == NULL) {
        goto done;
    }
    step = PyCFunction_New(&plain_cell_def, capsule);
    if (step == NULL) {
        goto done;
    }
    handle = PyObject_CallMethod(run->loop, "call_soon", "O", step);
    if (handle == NULL) {
        goto done;
    }
    r = PyObject_CallMethod(run->loop, "run_until_complete", "O",
                            pc->future);
    if (r == NULL) {
        /* The loop itself stopped (a signal handler's KeyboardInterrupt
         * while the cell ran, or before it began): that is the cell's
         * outcome, reported from the user's code on. */
        apy_tla_strip_internal_frames();
        goto done;
    }
    if (pc->exc[0] != NULL) {
        PyErr_Restore(pc->exc[0], pc->exc[1], pc->exc[2]);
        pc->exc[0] = pc->exc[1] = pc->exc[2] = NULL;
        goto done;
    }
    rc = 0;
    if (result != NULL) {
        *result = pc->value;
        pc->value = NULL;
    }
done:
    if (handle != NULL && !pc->ran) {
        /* Interrupted before the cell began: it never will. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *c = PyObject_CallMethod(handle, "cancel", NULL);
        Py_XDECREF(c);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    pc->abandoned = 1;
    Py_XDECREF(r);
    Py_XDECREF(handle);
    Py_XDECREF(step);
    Py_DECREF(capsule);
    return rc;
}

/* Runs code in __main__ on the notebook's one loop, which is running
 * while any cell runs (as in a Jupyter kernel): a coroutine's code as a
 * main task, other code from a loop callback. *result (if not NULL) gets
 * the value. 0, -1 with an exception set, -2 (reported) for a main task
 * that can never finish. */
static int
run_code(apy_nbrun_t *run, PyObject *code, PyObject **result)
{
    if (result != NULL) {
        *result = NULL;
    }
    if (apy__nbrun_ensure_loop(run) < 0) {
        return -1;
    }
    /* A signal that came while C code ran (a SIGTERM during a long save)
     * interrupts the cell here, before any code: not in asyncio's frames,
     * which the traceback would show. */
    if (PyErr_CheckSignals() < 0) {
        return -1;
    }
    /* The loop must be the current one for every cell. */
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethod(asyncio, "set_event_loop", "O",
                                      run->loop);
    Py_DECREF(asyncio);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    if (!apy_tla_is_coroutine_code(code)) {
        return run_plain_in_loop(run, code, result);
    }
    PyObject *coro = PyEval_EvalCode(code, run->globals, run->globals);
    if (coro == NULL) {
        return -1;
    }
    int rc = apy_tla_run_coro(run->loop, coro, result);
    Py_DECREF(coro);
    return rc;
}

int
apy__nbrun_run_source(apy_nbrun_t *run, const char *source,
                      size_t first_line)
{
    PyObject *body;
    int has_result;
    if (compile_cell(run, source, first_line, &body, &has_result) < 0) {
        return -1;
    }
    int rc = run_code(run, body, NULL);
    Py_DECREF(body);
    if (has_result) {
        /* Taken out whatever happened, so no cell ever sees it. */
        PyObject *value = PyDict_GetItemString(run->globals, RESULT_NAME);
        Py_XINCREF(value);
        if (value != NULL) {
            PyObject *type, *exc, *tb;
            PyErr_Fetch(&type, &exc, &tb);
            if (PyDict_DelItemString(run->globals, RESULT_NAME) < 0) {
                PyErr_Clear();
            }
            PyErr_Restore(type, exc, tb);
        }
        if (rc == 0 && value != NULL) {
            rc = apy__nbrun_record_result(run, value);
        }
        if (rc == 0 && value != NULL) {
            rc = apy_ipy_cell_result(run->magics, value);
        }
        Py_XDECREF(value);
    }
    return rc;
}

int
apy__nbrun_run_cell_magic(apy_nbrun_t *run, const char *source)
{
    PyObject *value;
    /* IPython's transform_cell ends a cell with a newline before a cell
     * magic takes its body (%%writefile writes it); a call of
     * run_cell_magic gets its body as given. */
    size_t n = strlen(source);
    char *cell = NULL;
    if (n > 0 && source[n - 1] != '\n') {
        cell = PyMem_Malloc(n + 2);
        if (cell == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(cell, source, n);
        memcpy(cell + n, "\n", 2);
        source = cell;
    }
    int rc = apy_ipy_run_cell_magic(run->magics, run->globals, source,
                                    &value);
    PyMem_Free(cell);
    if (rc == 0) {
        /* A magic IPython ran may return a value: the cell's result. */
        rc = apy__nbrun_record_result(run, value);
        Py_DECREF(value);
    }
    return rc;
}

int
apy__nbrun_run_cell(apy_nbrun_t *run)
{
    const apy_nb_cell_t *cell = &run->nb.cells[run->cur];
    int cell_magic = 0;
    const char *source = cell->source;
    char *magic = NULL;
    int automagic = apy_ipy_automagic(run->magics, run->globals, source);
    if (automagic < 0) {
        return -1;
    }
    if (automagic) {
        /* `ls dir` as a kernel runs it: %ls dir. */
        size_t n = strlen(source);
        magic = PyMem_Malloc(n + 2);
        if (magic == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        magic[0] = '%';
        memcpy(magic + 1, source, n + 1);
        source = magic;
    }
    char *text = apy_ipy_translate(source, &cell_magic);
    PyMem_Free(magic);
    if (text == NULL) {
        return -1;
    }
    int rc = cell_magic ? apy__nbrun_run_cell_magic(run, cell->source)
                        : apy__nbrun_run_source(run, text, 0);
    free(text);
    return rc;
}

/* Puts source's lines into lines (a list of str, one per JSON line) at
 * the cell's JSON lines. uses[i] counts the source lines on JSON line
 * i + 1: a line that holds several (a source written as one string) gets
 * none, since a traceback showing one of them would show the wrong one. */
static int
place_lines(PyObject *lines, const unsigned char *uses,
            const apy_nb_cell_t *cell)
{
    const char *p = cell->source;
    for (size_t k = 0; k < cell->nlines && *p != '\0'; k++) {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) + 1 : strlen(p);
        Py_ssize_t at = (Py_ssize_t)cell->line_map[k] - 1;
        if (at >= 0 && at < PyList_GET_SIZE(lines) && uses[at] == 1) {
            PyObject *s = PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "replace");
            if (s == NULL) {
                return -1;
            }
            if (nl == NULL) {
                Py_SETREF(s, PyUnicode_FromFormat("%U\n", s));
                if (s == NULL) {
                    return -1;
                }
            }
            PyList_SetItem(lines, at, s); /* steals s */
        }
        p += n;
    }
    return 0;
}

/* linecache.cache[name] = (size, None, lines, name): mtime None keeps
 * checkcache() from ever dropping it. 0 or -1. */
static int
cache_lines(PyObject *linecache_cache, PyObject *name, PyObject *lines)
{
    PyObject *entry = Py_BuildValue("(nOOO)", PyList_GET_SIZE(lines),
                                    Py_None, lines, name);
    if (entry == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(linecache_cache, name, entry);
    Py_DECREF(entry);
    return rc;
}

/* The injected cell goes into linecache under its own name, with its own
 * lines. 0 or -1. */
static int
cache_injected(PyObject *linecache_cache, const apy_nb_cell_t *cell)
{
    PyObject *text = NULL, *own = NULL, *name = NULL;
    int rc = -1;
    text = PyUnicode_FromString(cell->source);
    if (text == NULL) {
        goto done;
    }
    own = PyUnicode_Splitlines(text, 1);
    if (own == NULL) {
        goto done;
    }
    name = PyUnicode_FromString(INJECTED_NAME);
    if (name == NULL) {
        goto done;
    }
    rc = cache_lines(linecache_cache, name, own);
done:
    Py_XDECREF(name);
    Py_XDECREF(own);
    Py_XDECREF(text);
    return rc;
}

int
apy__nbrun_linecache_register(apy_nbrun_t *run)
{
    int last = 0;
    for (size_t i = 0; i < run->nb.ncells; i++) {
        const apy_nb_cell_t *cell = &run->nb.cells[i];
        for (size_t k = 0; k < cell->nlines; k++) {
            if (cell->line_map[k] > last) {
                last = cell->line_map[k];
            }
        }
    }
    unsigned char *uses = calloc(last > 0 ? (size_t)last : 1, 1);
    if (uses == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < run->nb.ncells; i++) {
        const apy_nb_cell_t *cell = &run->nb.cells[i];
        for (size_t k = 0; cell->kind == APY_NB_CODE && k < cell->nlines;
             k++) {
            int at = cell->line_map[k] - 1;
            if (at >= 0 && uses[at] < 2) {
                uses[at]++;
            }
        }
    }
    PyObject *linecache = NULL, *cache = NULL, *lines = NULL;
    int rc = -1;
    linecache = PyImport_ImportModule("linecache");
    if (linecache == NULL) {
        goto done;
    }
    cache = PyObject_GetAttrString(linecache, "cache");
    if (cache == NULL) {
        goto done;
    }
    lines = PyList_New(last);
    if (lines == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < last; i++) {
        PyObject *nl = PyUnicode_FromString("\n");
        if (nl == NULL) {
            goto done;
        }
        PyList_SET_ITEM(lines, i, nl);
    }
    for (size_t i = 0; i < run->nb.ncells; i++) {
        const apy_nb_cell_t *cell = &run->nb.cells[i];
        if (cell->kind != APY_NB_CODE) {
            continue;
        }
        if (cell->nlines > 0) {
            if (place_lines(lines, uses, cell) < 0) {
                goto done;
            }
        } else if (cache_injected(cache, cell) < 0) {
            goto done;
        }
    }
    rc = cache_lines(cache, run->path, lines);
done:
    Py_XDECREF(lines);
    Py_XDECREF(cache);
    Py_XDECREF(linecache);
    free(uses);
    return rc;
}
