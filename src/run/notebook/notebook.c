/* SPDX-License-Identifier: MIT */
/* apy_run_notebook: the notebook as __main__ (DESIGN 3). Loads it (src/
 * notebook), injects parameters, sets up __main__, the working directory
 * and the recorder, runs the code cells in order, reports a failing cell
 * by name, and saves the executed notebook (throttled: see save). Each
 * phase is one function below; how a cell compiles and runs is cells.c's. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apyrun/ipython.h"
#include "apyrun/nbrun.h"
#include "apyrun/tla.h"
#include "apyrun/run_report.h"
#include "internal.h"

/* How a cell ended, for the driver. */
enum {
    CELL_OK = 0,
    CELL_ERROR,       /* an exception, reported */
    CELL_EXPECTED,    /* an error in a raises-exception cell */
    CELL_EXIT,        /* SystemExit: stop with its code */
    CELL_INTERRUPT,   /* Ctrl-C */
    CELL_TIMEOUT,
    CELL_SIGTERM,
};

const char *
apy_run_notebook_option_given(const apy_options_t *opts)
{
    if (opts->output != NULL) {
        return "-o/--output";
    }
    if (opts->inplace) {
        return "--inplace";
    }
    if (opts->cwd != NULL) {
        return "--cwd";
    }
    if (opts->timeout > 0) {
        return "--timeout";
    }
    if (opts->total_timeout > 0) {
        return "--total-timeout";
    }
    if (opts->allow_errors) {
        return "--allow-errors";
    }
    if (opts->params_file != NULL) {
        return "--params-file";
    }
    if (opts->nparams > 0) {
        return "-p";
    }
    if (opts->check_outputs != APY_CHECK_NONE) {
        return "--check-outputs";
    }
    if (opts->check_images) {
        return "--check-images";
    }
    if (opts->sanitize != NULL) {
        return "--sanitize";
    }
    return NULL;
}

/* Returns a malloc'ed absolute version of path (relative to the current
 * directory, which the run is about to leave), or NULL. */
static char *
absolute(const char *path)
{
    if (path[0] == '/') {
        return strdup(path);
    }
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        return NULL;
    }
    size_t n = strlen(cwd) + strlen(path) + 2;
    char *abs = malloc(n);
    if (abs != NULL) {
        snprintf(abs, n, "%s/%s", cwd, path);
    }
    return abs;
}

/* Returns 1 if the cell is tagged `tag`. */
static unsigned
cell_tags(const apy_nb_cell_t *cell)
{
    unsigned tags = 0;
    if (apy_nb_cell_has_tag(cell, "skip-execution")) {
        tags |= APY_NBRUN_TAG_SKIP;
    }
    if (apy_nb_cell_has_tag(cell, "raises-exception")) {
        tags |= APY_NBRUN_TAG_RAISES;
    }
    if (apy_nb_cell_has_tag(cell, "parameters")) {
        tags |= APY_NBRUN_TAG_PARAMETERS;
    }
    if (apy_nb_cell_has_tag(cell, "injected-parameters")) {
        tags |= APY_NBRUN_TAG_INJECTED;
    }
    return tags;
}

/* Returns 1 if code cell i runs: not tagged skip-execution and not
 * blank (nbclient gives a blank cell no execution count either). */
static int
will_run(apy_nbrun_t *run, size_t i)
{
    const apy_nb_cell_t *cell = &run->nb.cells[i];
    if (cell->kind != APY_NB_CODE
        || (run->cells[i].tags & APY_NBRUN_TAG_SKIP)) {
        return 0;
    }
    return strspn(cell->source, " \t\r\n\f\v") < cell->source_len;
}

/* Papermill's placement: an old injected-parameters cell goes, the new
 * one comes after the first parameters-tagged cell, or first. Returns 0,
 * or 2 with the message written (bad parameters). */
static int
inject_parameters(apy_nbrun_t *run)
{
    char err[512];
    char *source = apy__nbrun_params_source(run->opts, err, sizeof(err));
    if (source == NULL) {
        if (err[0] == '\0') {
            return 0;
        }
        fprintf(stderr, "apyrun: %s\n", err);
        return 2;
    }
    for (size_t i = 0; i < run->nb.ncells; i++) {
        if (apy_nb_cell_has_tag(&run->nb.cells[i], "injected-parameters")) {
            apy_nb_remove_cell(&run->nb, i);
            break;
        }
    }
    size_t pos = 0;
    for (size_t i = 0; i < run->nb.ncells; i++) {
        if (apy_nb_cell_has_tag(&run->nb.cells[i], "parameters")) {
            pos = i + 1;
            break;
        }
    }
    static const char *const tags[] = {"injected-parameters"};
    int rc = apy_nb_insert_code_cell(&run->nb, pos, source, strlen(source),
                                     tags, 1, err, sizeof(err));
    free(source);
    if (rc < 0) {
        fprintf(stderr, "apyrun: %s: %s\n", run->shown_path, err);
        return 2;
    }
    return 0;
}

/* __main__ is the notebook: __file__, sys.path[0] its directory, the
 * working directory its directory or --cwd. Returns 0, -1 with an
 * exception set, or 2 (reported) for a --cwd that does not exist. */
static int
setup_main(apy_nbrun_t *run, const char *abs_path)
{
    PyObject *main_mod = PyImport_AddModule("__main__"); /* borrowed */
    if (main_mod == NULL) {
        return -1;
    }
    run->globals = PyModule_GetDict(main_mod); /* borrowed */
    if (PyDict_SetItemString(run->globals, "__file__", run->path) < 0
        || PyDict_SetItemString(run->globals, "__cached__", Py_None) < 0) {
        return -1;
    }
    char *dir = strdup(abs_path);
    if (dir == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    char *slash = strrchr(dir, '/');
    slash[slash == dir ? 1 : 0] = '\0';
    char *real = realpath(dir, NULL);
    int rc = -1;
    PyObject *path0 = PyUnicode_DecodeFSDefault(real ? real : dir);
    free(real);
    if (path0 == NULL) {
        goto done;
    }
    rc = apy_run_set_path0(run->config, path0);
    Py_DECREF(path0);
    if (rc != 0) {
        goto done;
    }
    const char *cwd = run->opts->cwd != NULL ? run->opts->cwd : dir;
    if (chdir(cwd) < 0) {
        fprintf(stderr, "apyrun: --cwd %s: %s\n", cwd, strerror(errno));
        rc = 2;
    }
done:
    free(dir);
    return rc;
}

/* Hands cell i's result to the writer. 0, or -1 with a message. */
static int
set_result(apy_nbrun_t *run, size_t i, char *err, size_t errlen)
{
    apy_nbrun_cell_t *c = &run->cells[i];
    int has_outputs = c->outputs != NULL && PyList_GET_SIZE(c->outputs) > 0;
    PyObject *streams = NULL, *json = NULL;
    const char *text = NULL;
    apy_nb_stream_t **big = NULL;
    Py_ssize_t len = 0, n = 0;
    int rc = -1;
    /* No outputs (most cells) need no JSON: NULL is "[]". */
    if (has_outputs) {
        json = apy__nbrun_outputs_json(c->outputs, &streams,
                                       run->spill_dir);
        if (json == NULL) {
            goto unrecorded;
        }
        text = PyUnicode_AsUTF8AndSize(json, &len);
        if (text == NULL) {
            goto unrecorded;
        }
        n = streams != NULL ? PyList_GET_SIZE(streams) : 0;
    }
    if (n > 0) {
        big = PyMem_Calloc((size_t)n, sizeof(*big));
        if (big == NULL) {
            goto unrecorded;
        }
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        big[k] = apy__nbrun_big_stream(PyList_GET_ITEM(streams, k));
    }
    apy_nb_result_t res = {
        .cell = i,
        .execution_count = c->count > 0 ? c->count : APY_NB_NO_COUNT,
        .outputs = text,
        .outputs_len = (size_t)len,
        .streams = big,
        .nstreams = (size_t)n,
        .value_tag = n > 0 ? apy__nbrun_value_tag() : NULL,
        .busy = c->busy[0] ? c->busy : NULL,
        .execute_input = c->input[0] ? c->input : NULL,
        .execute_reply = c->reply[0] ? c->reply : NULL,
        .idle = c->idle[0] ? c->idle : NULL,
    };
    rc = apy_nb_set_result(&run->nb, &res, err, errlen) < 0 ? -1 : 0;
    c->dirty = 0;
    goto done;

unrecorded:
    PyErr_Clear();
    snprintf(err, errlen, "cannot record the outputs of cell %zu", i + 1);
done:
    PyMem_Free(big);
    Py_XDECREF(streams);
    Py_XDECREF(json);
    return rc;
}

/* Saves at most once a second, and never more than a tenth of the run:
 * after a save that took d seconds the next waits max(1 s, 9 d). */
#define SAVE_INTERVAL 1.0
#define SAVE_SHARE 0.1

/* Saves the executed notebook. The cells run or changed (update_display)
 * since the last call are rendered now, whatever the throttle says, so
 * that the pieces are always current (apy_nbrun_last_save writes them
 * from another thread). The file is written only when `force` (the end
 * of the run, an error, a timeout, a signal) or once the throttle allows;
 * a target written once (a device, a FIFO, stdout) waits for the end: so
 * a run of many short cells costs about what it costs without -o.
 * `last`: no save follows (the run ends), so none is prepared for.
 * Returns 0, or -1 with the message written. */
static int
save(apy_nbrun_t *run, int force, int last)
{
    if (run->out_path == NULL || run->save_failed) {
        return 0; /* a failure is reported once */
    }
    char err[1024];
    int rc = 0;
    pthread_mutex_lock(&run->save_lock);
    for (size_t k = 0; k < run->ndirty && rc == 0; k++) {
        rc = set_result(run, run->dirty[k], err, sizeof(err));
        run->unsaved = 1;
    }
    run->ndirty = 0;
    int now = force || (run->target.kind == APY_NB_TARGET_REPLACE
                        && apy__nbrun_now() >= run->next_save);
    /* Nothing new since the last write (the end right after an error's
     * save): a gigabyte of output is not copied twice. */
    if (rc == 0 && now && run->unsaved) {
        run->unsaved = 0;
        double t0 = apy__nbrun_now();
        /* The cells up to the one that ran will not get another result
         * (update_display aside, which the writer notices). The last
         * save asks for no prefix: copying a gigabyte for a save that
         * never comes would delay a signal's exit by seconds. */
        size_t stable = last                     ? 0
                        : run->cur < run->nb.ncells ? run->cur + 1
                                                    : run->nb.ncells;
        rc = apy_nb_target_save(&run->nb, &run->target, stable, err,
                                sizeof(err));
        double t1 = apy__nbrun_now();
        double wait = (1.0 - SAVE_SHARE) / SAVE_SHARE * (t1 - t0);
        run->next_save = t1 + (wait > SAVE_INTERVAL ? wait : SAVE_INTERVAL);
    }
    pthread_mutex_unlock(&run->save_lock);
    if (rc < 0) {
        fprintf(stderr, "apyrun: %s\n", err);
        run->save_failed = 1;
        return -1;
    }
    return 0;
}

/* Decides how the output is written (apy_nb_target_open), clears the
 * outputs and counts of every code cell that will run, so the output
 * never shows stale results, and checks a new output is writable by
 * saving it once. Returns 0, or 2 (reported). */
static int
first_save(apy_nbrun_t *run)
{
    if (run->out_path == NULL) {
        return 0;
    }
    char err[1024];
    if (apy_nb_target_open(run->out_path, &run->target, err, sizeof(err))
        < 0) {
        fprintf(stderr, "apyrun: %s\n", err);
        return 2;
    }
    run->target.stop = apy__nbrun_sigterm_seen();
    if (run->target.kind == APY_NB_TARGET_REPLACE) {
        /* Big outputs wait beside the target: a file system we may write
         * to, and where the save can copy them without reading them. */
        run->spill_dir = strdup(run->target.path);
        char *slash = run->spill_dir ? strrchr(run->spill_dir, '/') : NULL;
        if (slash != NULL) {
            slash[slash == run->spill_dir ? 1 : 0] = '\0';
        } else {
            free(run->spill_dir);
            run->spill_dir = NULL;
        }
    }
    /* A blank cell, as one tagged skip-execution, keeps what it stored:
     * nbclient skips both before clearing anything. */
    for (size_t i = 0; i < run->nb.ncells; i++) {
        if (will_run(run, i) && set_result(run, i, err, sizeof(err)) < 0) {
            fprintf(stderr, "apyrun: %s\n", err);
            return 2;
        }
    }
    /* The cleared cells are to be written, now or at the end. */
    run->unsaved = 1;
    if (run->opts->inplace || run->target.kind != APY_NB_TARGET_REPLACE) {
        return 0;
    }
    return save(run, 1, 0) < 0 ? 2 : 0;
}

/* SystemExit's exit code, as python computes it (a non-integer code is
 * printed on stderr and gives 1). Clears the exception. */
static int
system_exit_code(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *code = value ? PyObject_GetAttrString(value, "code") : NULL;
    int exitcode = 0;
    if (code != NULL && code != Py_None) {
        if (PyLong_Check(code)) {
            exitcode = (int)PyLong_AsLong(code);
        } else {
            PyObject *err = PySys_GetObject("stderr"); /* borrowed */
            if (err != NULL && err != Py_None
                && PyFile_WriteObject(code, err, Py_PRINT_RAW) == 0) {
                PyFile_WriteString("\n", err);
            }
            exitcode = 1;
        }
    }
    Py_XDECREF(code);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
    return exitcode;
}

/* Keeps the last of traceback lines (format_exception's "Type: message")
 * as run->exc_line, on one line. Keeps no exception. */
static void
keep_exc_line(apy_nbrun_t *run, PyObject *lines)
{
    run->exc_line[0] = '\0';
    Py_ssize_t n = PyList_Check(lines) ? PyList_GET_SIZE(lines) : 0;
    const char *last = n > 0 ? PyUnicode_AsUTF8(PyList_GET_ITEM(lines, n - 1))
                             : NULL;
    if (last == NULL) {
        PyErr_Clear();
        return;
    }
    size_t len = strcspn(last, "\n");
    if (len >= sizeof(run->exc_line)) {
        len = sizeof(run->exc_line) - 1;
    }
    memcpy(run->exc_line, last, len);
    run->exc_line[len] = '\0';
}

/* The cell's exception: shown and recorded (apy__nbrun_show_exception),
 * its last line kept for the report, the exception kept for the shell's
 * post_run_cell. Clears it. */
static void
report_exception(apy_nbrun_t *run)
{
    PyObject *lines = NULL;
    PyObject *value = apy__nbrun_show_exception(run, &lines);
    if (lines != NULL) {
        keep_exc_line(run, lines);
        Py_DECREF(lines);
    }
    if (value != NULL) {
        Py_XSETREF(run->cell_error, value); /* for the shell's events */
    }
    PyErr_Clear();
}

/* Records a RuntimeError "top-level await never completed" as the error
 * output of cell run->cur. Keeps no exception. */
static void
record_never_completed(apy_nbrun_t *run)
{
    PyObject *exc = NULL, *lines = NULL;
    exc = PyObject_CallFunction(PyExc_RuntimeError, "s",
                                "top-level await never completed");
    if (exc == NULL) {
        goto error;
    }
    lines = Py_BuildValue("[s]", "RuntimeError: top-level await never "
                                 "completed\n");
    if (lines == NULL || apy__nbrun_record_error(run, exc, lines) < 0) {
        goto error;
    }
    goto done;

error:
    /* Whatever failed, the cell is reported as failed all the same. */
    PyErr_Clear();
done:
    Py_XDECREF(lines);
    Py_XDECREF(exc);
}

/* Classifies and reports how cell run->cur failed (rc from the cell
 * runner, exception set when rc == -1). Sets *exitcode for CELL_EXIT. */
static int
cell_failed(apy_nbrun_t *run, int rc, int *exitcode)
{
    if (rc == -2) {
        /* Reported on stderr already; the notebook gets an error too. */
        record_never_completed(run);
        apy__nbrun_report_cell(run, "top-level await never completed");
        return CELL_ERROR;
    }
    /* SystemExit ends the run with its code, unless errors may go on:
     * then it is recorded as Jupyter records it and the next cell runs. */
    if (PyErr_ExceptionMatches(PyExc_SystemExit)
        && !run->opts->allow_errors
        && !(run->cells[run->cur].tags & APY_NBRUN_TAG_RAISES)) {
        *exitcode = system_exit_code();
        return CELL_EXIT;
    }
    int interrupt = PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)
                    || run->timed_out || run->sigterm;
    report_exception(run);
    if (run->timed_out) {
        char what[128];
        double limit = run->opts->timeout > 0 ? run->opts->timeout
                                              : run->opts->total_timeout;
        int total = run->opts->total_timeout > 0
                    && (run->opts->timeout <= 0
                        || apy__nbrun_now() - run->t0
                               >= run->opts->total_timeout - 0.001);
        snprintf(what, sizeof(what), "%s (%gs) expired",
                 total ? "--total-timeout" : "--timeout",
                 total ? run->opts->total_timeout : limit);
        apy__nbrun_report_cell(run, what);
        return CELL_TIMEOUT;
    }
    if (run->sigterm) {
        apy__nbrun_report_cell(run, "terminated (SIGTERM)");
        return CELL_SIGTERM;
    }
    if (interrupt) {
        apy__nbrun_report_cell(run, "interrupted");
        return CELL_INTERRUPT;
    }
    if (run->cells[run->cur].tags & APY_NBRUN_TAG_RAISES) {
        return CELL_EXPECTED;
    }
    apy__nbrun_report_cell(run, "error");
    return CELL_ERROR;
}

/* The shell's post_execute and post_run_cell events once the cell ran
 * (apy_ipy_cell_end) and its error, if any, was recorded, as ipykernel
 * orders them; not after an interrupt, a timeout or a SIGTERM, which end
 * the run. Returns how the cell ended. */
static int
shell_events_end(apy_nbrun_t *run, int how)
{
    if (how == CELL_OK || how == CELL_ERROR || how == CELL_EXPECTED) {
        PyObject *error = how == CELL_OK ? NULL : run->cell_error;
        if (apy_ipy_cell_end(run->magics, error) < 0) {
            PyErr_Print();
            how = how == CELL_OK ? CELL_ERROR : how;
        }
    }
    Py_CLEAR(run->cell_error);
    return how;
}

/* Runs code cell run->cur with its recording. Returns a CELL_* value. */
static int
run_one(apy_nbrun_t *run, int *exitcode)
{
    apy_nbrun_cell_t *c = &run->cells[run->cur];
    c->count = ++run->count;
    apy__nbrun_progress_cell(run);
    apy_nb_timestamp(c->busy);
    if (apy__nbrun_record_begin(run) < 0) {
        return cell_failed(run, -1, exitcode);
    }
    apy_nb_timestamp(c->input);
    apy__nbrun_timeouts_arm(run);
    int rc = apy_ipy_cell_begin(run->magics, run->nb.cells[run->cur].source,
                                c->count);
    if (rc == 0) {
        rc = apy__nbrun_run_cell(run);
    }
    if (rc == 0 && apy__nbrun_flush_figures(run, 0) < 0) {
        rc = -1;
    }
    apy__nbrun_timeouts_disarm(run);
    int how = rc == 0 ? CELL_OK : cell_failed(run, rc, exitcode);
    if ((how == CELL_ERROR || how == CELL_EXPECTED)
        && apy__nbrun_flush_figures(run, 0) < 0) {
        /* The figures drawn before the error still show, after it, as
         * the inline backend's post_execute shows them. */
        PyErr_Print();
    }
    how = shell_events_end(run, how);
    apy_nb_timestamp(c->reply);
    Py_XSETREF(c->outputs, apy__nbrun_record_end(run));
    if (c->outputs == NULL) {
        PyErr_Print();
        how = how == CELL_OK ? CELL_ERROR : how;
    }
    apy_nb_timestamp(c->idle);
    if (apy__nbrun_mark_dirty(run, run->cur) < 0) {
        PyErr_Print();
        how = how == CELL_OK ? CELL_ERROR : how;
    }
    run->done_code++;
    return how;
}

/* Runs the cells in order. Returns the exit code; sets
 * *unhandled_sigint after a Ctrl-C. */
static int
run_cells(apy_nbrun_t *run, int *unhandled_sigint)
{
    int exitcode = 0, failed = 0;
    for (run->cur = 0; run->cur < run->nb.ncells; run->cur++) {
        if (!will_run(run, run->cur)) {
            continue;
        }
        int how = run_one(run, &exitcode);
        int fine = how == CELL_OK || how == CELL_EXPECTED
                   || (how == CELL_ERROR && run->opts->allow_errors);
        if (save(run, how != CELL_OK && how != CELL_EXPECTED,
                 !fine || run->cur + 1 == run->nb.ncells)
            < 0) {
            return 1;
        }
        switch (how) {
        case CELL_OK:
        case CELL_EXPECTED:
            continue;
        case CELL_ERROR:
            failed = 1;
            if (run->opts->allow_errors) {
                continue;
            }
            return 1;
        case CELL_EXIT:
            return exitcode;
        case CELL_TIMEOUT:
            return 124;
        case CELL_SIGTERM:
            return 128 + SIGTERM;
        default:
            *unhandled_sigint = 1;
            return 1;
        }
    }
    if (failed && run->outcome != NULL) {
        run->outcome->errors_allowed = 1;
    }
    return failed ? 1 : 0;
}

/* Closes the loop after the last cell, as asyncio.run ends. Returns 0 or
 * 1 (reported). */
static int
close_loop(apy_nbrun_t *run)
{
    if (run->loop == NULL) {
        return 0;
    }
    int rc = apy_tla_close_loop(run->loop);
    Py_CLEAR(run->loop);
    if (rc == -1) {
        PyErr_Print();
    }
    return rc == 0 ? 0 : 1;
}

/* os.environ["MPLBACKEND"] = "Agg", since os.environ does not see a
 * setenv() made after it was read. 0, or -1 with an exception set. */
static int
set_environ_agg(void)
{
    PyObject *os = NULL, *environ = NULL, *v = NULL;
    int rc = -1;
    os = PyImport_ImportModule("os");
    if (os == NULL) {
        goto done;
    }
    environ = PyObject_GetAttrString(os, "environ");
    if (environ == NULL) {
        goto done;
    }
    v = PyUnicode_FromString("Agg");
    if (v == NULL) {
        goto done;
    }
    rc = PyMapping_SetItemString(environ, "MPLBACKEND", v);
done:
    Py_XDECREF(v);
    Py_XDECREF(environ);
    Py_XDECREF(os);
    return rc;
}

/* Everything before the first cell. Returns 0, or an exit code. */
static int
prepare(apy_nbrun_t *run, const char *abs_path)
{
    int rc = inject_parameters(run);
    if (rc != 0) {
        return rc;
    }
    run->cells = calloc(run->nb.ncells ? run->nb.ncells : 1,
                        sizeof(*run->cells));
    if (run->cells == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < run->nb.ncells; i++) {
        run->cells[i].tags = cell_tags(&run->nb.cells[i])
                             | apy__nbrun_check_tags(run->opts,
                                                     &run->nb.cells[i]);
        run->ncode += will_run(run, i);
    }
    /* The stored outputs are read before the first save clears them. */
    rc = apy__nbrun_check_init(run);
    if (rc != 0) {
        return rc;
    }
    rc = first_save(run);
    if (rc != 0) {
        return rc;
    }
    rc = setup_main(run, abs_path);
    if (rc != 0) {
        return rc;
    }
    /* Agg unless the user chose a backend: figures become outputs at the
     * end of each cell, and no window ever opens. */
    if (getenv("MPLBACKEND") == NULL) {
        run->mpl_default = 1;
        setenv("MPLBACKEND", "Agg", 0);
        if (set_environ_agg() < 0) {
            return -1;
        }
    }
    if (apy__nbrun_outputs_init(run) < 0 || apy__nbrun_display_init(run) < 0
        || apy__nbrun_magics_init(run) < 0
        || apy__nbrun_display_hook_ipython(run) < 0
        || apy__nbrun_linecache_register(run) < 0
        || apy__nbrun_stdin_init(run) < 0
        || apy__nbrun_timeouts_start(run) < 0) {
        return -1;
    }
    if (run->recording
        && (apy__nbrun_fdcap_start(run, apy__nbrun_record_fd_text) < 0
            || apy__nbrun_streams_install(run) < 0)) {
        return -1;
    }
    return 0;
}

/* A text notebook (jupytext's percent .py, MyST .md) holds no outputs
 * and is not JSON: --inplace, and -o naming the text itself, would
 * replace it with the executed .ipynb; --check-outputs has nothing to
 * compare. 0, or 2 (reported). */
static int
text_notebook_checks(apy_nbrun_t *run)
{
    struct stat in, out;
    const char *o = run->opts->output;
    if (run->opts->inplace) {
        fprintf(stderr, "apyrun: %s is a text notebook: --inplace would "
                "write the executed .ipynb over it; give -o OUT.ipynb\n",
                run->shown_path);
        return 2;
    }
    if (o != NULL && strcmp(o, "-") != 0 && stat(o, &out) == 0
        && stat(run->nb.path, &in) == 0 && in.st_dev == out.st_dev
        && in.st_ino == out.st_ino) {
        fprintf(stderr, "apyrun: -o %s would write the executed .ipynb over "
                "the text notebook %s; give another OUT.ipynb\n", o,
                run->shown_path);
        return 2;
    }
    if (run->opts->check_outputs != APY_CHECK_NONE) {
        fprintf(stderr, "apyrun: %s is a text notebook: it stores no "
                "outputs for --check-outputs to compare\n", run->shown_path);
        return 2;
    }
    return 0;
}

/* Loads the notebook named by config->run_filename. Returns 0 or 2
 * (reported). */
static int
load(apy_nbrun_t *run, char **abs_path, PyObject **fsname)
{
    PyObject *name = PyUnicode_FromWideChar(run->config->run_filename, -1);
    *fsname = NULL;
    if (name != NULL) {
        *fsname = PyUnicode_EncodeFSDefault(name);
        Py_DECREF(name);
    }
    if (*fsname == NULL) {
        PyErr_Print();
        return 2;
    }
    /* CPython made run_filename absolute; messages name the notebook as
     * the user gave it. */
    run->shown_path = run->opts->target != NULL ? run->opts->target
                                                : PyBytes_AS_STRING(*fsname);
    char err[1024];
    int rc = apy_nb_load(PyBytes_AS_STRING(*fsname), &run->nb, err,
                         sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "apyrun: %s: %s\n", run->shown_path, err);
        if (run->outcome != NULL) {
            run->outcome->skipped = rc == -ENOEXEC;
            snprintf(run->outcome->message, sizeof(run->outcome->message),
                     "%.500s", err);
        }
        return 2;
    }
    *abs_path = absolute(PyBytes_AS_STRING(*fsname));
    if (*abs_path == NULL) {
        fprintf(stderr, "apyrun: %s: %s\n", run->shown_path,
                strerror(errno));
        return 2;
    }
    run->path = PyUnicode_DecodeFSDefault(*abs_path);
    if (run->path == NULL) {
        PyErr_Print();
        return 2;
    }
    if (run->nb.format != APY_NB_FORMAT_IPYNB
        && (rc = text_notebook_checks(run)) != 0) {
        return rc;
    }
    const char *out = run->opts->inplace ? run->shown_path
                                         : run->opts->output;
    if (out != NULL) {
        run->out_path = strcmp(out, "-") == 0 ? strdup(out) : absolute(out);
        if (run->out_path == NULL) {
            fprintf(stderr, "apyrun: %s: %s\n", out, strerror(errno));
            return 2;
        }
    }
    /* --check-outputs needs the outputs, saved or not. */
    run->recording = run->out_path != NULL
                     || run->opts->check_outputs != APY_CHECK_NONE;
    return 0;
}

/* Releases everything the run holds. Keeps no exception. */
static void
cleanup(apy_nbrun_t *run)
{
    apy__nbrun_timeouts_stop(run);
    apy__nbrun_fdcap_stop(run);
    apy__nbrun_magics_fini(run);
    apy__nbrun_outputs_fini(run);
    apy__nbrun_check_fini(run);
    Py_CLEAR(run->cell_error);
    Py_CLEAR(run->loop);
    if (run->cells != NULL) {
        for (size_t i = 0; i < run->nb.ncells; i++) {
            Py_CLEAR(run->cells[i].outputs);
        }
    }
    free(run->cells);
    free(run->dirty);
    free(run->spill_dir);
    apy_nb_target_close(&run->target);
    free((char *)run->out_path);
    Py_CLEAR(run->path);
    apy_nb_free(&run->nb);
    PyErr_Clear();
}

int
apy_run_notebook(const PyConfig *config, const apy_options_t *opts,
                 int *unhandled_sigint, apy_nbrun_outcome_t *outcome)
{
    apy_nbrun_t run;
    memset(&run, 0, sizeof(run));
    if (outcome != NULL) {
        memset(outcome, 0, sizeof(*outcome));
        run.outcome = outcome;
    }
    run.target.fd = -1;
    pthread_mutex_init(&run.save_lock, NULL);
    run.config = config;
    run.opts = opts;
    run.t0 = apy__nbrun_now();
    run.next_save = run.t0 + SAVE_INTERVAL;
    apy__nbrun_progress_init(&run);

    char *abs_path = NULL;
    PyObject *fsname = NULL;
    int exitcode = load(&run, &abs_path, &fsname);
    if (exitcode == 0) {
        exitcode = prepare(&run, abs_path);
        if (exitcode < 0) {
            PyErr_Print();
            exitcode = 1;
        }
    }
    if (exitcode == 0) {
        exitcode = run_cells(&run, unhandled_sigint);
        /* Always saved at the end, whatever the throttle held back. */
        int saved = save(&run, 1, 1);
        if (saved < 0 && exitcode == 0) {
            exitcode = 1;
        }
        int closed = close_loop(&run);
        if (exitcode == 0) {
            exitcode = closed;
        }
        if ((saved < 0 || closed != 0) && outcome != NULL) {
            outcome->errors_allowed = 0; /* a failure of its own */
        }
        if (exitcode == 0 || exitcode == 1) {
            apy__nbrun_check_finish(&run, &exitcode);
        }
        apy__nbrun_progress_done(&run);
    }
    int sigterm = run.sigterm;
    cleanup(&run);
    pthread_mutex_destroy(&run.save_lock);
    free(abs_path);
    Py_XDECREF(fsname);
    if (sigterm) {
        /* Saved: now die as the signal asked. */
        fflush(stdout);
        fflush(stderr);
        signal(SIGTERM, SIG_DFL);
        kill(getpid(), SIGTERM);
    }
    return exitcode;
}
