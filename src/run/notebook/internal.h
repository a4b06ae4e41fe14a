/* SPDX-License-Identifier: MIT */
/* Private to src/run/notebook: the run context (apy_nbrun_t) its files
 * share, and the apy__nbrun_ functions between them. Nothing outside
 * src/run/notebook includes it; nothing here outlives one
 * apy_run_notebook() call. */
#ifndef APYRUN_RUN_NOTEBOOK_INTERNAL_H
#define APYRUN_RUN_NOTEBOOK_INTERNAL_H

#include <Python.h>

#include <pthread.h>
#include <signal.h>
#include <stddef.h>

#include "apyrun/cli.h"
#include "apyrun/notebook.h"
#include "apyrun/nbrun.h"

/* Cell kinds, as the runner sees them. */
enum {
    APY_NBRUN_CODE = 0,
    APY_NBRUN_MARKDOWN,
    APY_NBRUN_RAW,
};

/* Tags the runner acts on. */
enum {
    APY_NBRUN_TAG_SKIP = 1 << 0,       /* skip-execution */
    APY_NBRUN_TAG_RAISES = 1 << 1,     /* raises-exception */
    APY_NBRUN_TAG_PARAMETERS = 1 << 2, /* parameters */
    APY_NBRUN_TAG_INJECTED = 1 << 3,   /* injected-parameters */
    APY_NBRUN_TAG_CHECK = 1 << 4,      /* --check-outputs compares it */
};

/* Stream numbers for the recorder. */
enum {
    APY_NBRUN_STDOUT = 0,
    APY_NBRUN_STDERR = 1,
};

/* What the runner keeps of one cell, beside the parsed notebook's cell
 * (run->nb.cells[i] and run->cells[i] are the same cell). */
typedef struct {
    unsigned tags;        /* APY_NBRUN_TAG_* */
    int count;            /* execution count, 0 = not executed */
    PyObject *outputs;    /* list of output dicts; NULL = not executed */
    char busy[APY_NB_TIMESTAMP_SIZE];  /* nbclient's timing stamps */
    char input[APY_NB_TIMESTAMP_SIZE];
    char reply[APY_NB_TIMESTAMP_SIZE];
    char idle[APY_NB_TIMESTAMP_SIZE];
    int dirty;            /* outputs changed since the cell was rendered */
    PyObject *expected;   /* --check-outputs: the stored outputs as
                           * compared (check.c), or NULL */
    int stored_unrun;     /* the stored cell's execution_count is null */
} apy_nbrun_cell_t;

typedef struct apy_nbrun_fdcap apy_nbrun_fdcap_t;

typedef struct apy_nbrun {
    const PyConfig *config;
    const apy_options_t *opts;
    apy_notebook_t nb;      /* the parsed notebook (src/notebook) */
    apy_nbrun_cell_t *cells; /* nb.ncells entries */
    size_t ncode;          /* code cells that will run */
    size_t done_code;      /* code cells run so far */
    const char *out_path;  /* where the executed notebook goes, or NULL */
    apy_nb_target_t target; /* how it goes there, once first_save ran */
    double next_save;      /* monotonic time before which saves wait */
    int save_failed;       /* a save failed (reported): no more saves */
    int unsaved;           /* rendered changes not yet written */
    char *spill_dir;       /* where big outputs wait (the target's
                            * directory), or NULL for $TMPDIR */
    size_t *dirty;         /* cells to render at the next save, once each */
    size_t ndirty, dirty_cap;
    pthread_mutex_t save_lock; /* the rendered notebook, against
                                * the watchdog's last save */
    const char *shown_path; /* the notebook as given, for messages */
    PyObject *path;        /* str: the notebook's absolute path, the cells'
                            * code filename and __file__ */
    PyObject *globals;     /* borrowed: __main__.__dict__ */
    PyObject *loop;        /* the one event loop; NULL until a TLA cell */
    PyObject *runtime;     /* the recorder (outputs.c) */
    PyObject *magics;      /* builtins.__apyrun_nb__ (src/ipython) */
    PyTypeObject *runtime_type;
    PyTypeObject *stream_type;
    PyTypeObject *captured_type;
    int cf_flags;          /* __future__ flags carried across cells */
    int recording;         /* -o or --inplace */
    int mpl_default;       /* MPLBACKEND=Agg is apyrun's choice */
    int color;             /* colour on stderr */
    apy_nbrun_outcome_t *outcome; /* the caller's, or NULL */
    char exc_line[256];    /* the last failure's "Type: message" line */
    int progress;          /* stderr is a terminal */
    size_t cur;            /* the running cell */
    int count;             /* the last execution count given */
    double t0;             /* monotonic start of the run */
    struct apy_nbrun_watch *watch; /* the watchdog (timeouts.c) */
    struct apy_nbrun_fdcap *fdcap; /* fds 1 and 2 captured (fdcapture.c) */
    volatile int timed_out; /* set by the watchdog when a limit expired */
    int sigterm;           /* a SIGTERM arrived */
    PyObject *sigterm_handler; /* ours, while installed */
    PyObject *cell_error;  /* the running cell's exception, once reported */
    PyObject *sanitizers;  /* --sanitize: [(regex, replacement)], or NULL */
    PyObject *check_backspace; /* nbval's \b and \r patterns, compiled */
    PyObject *check_return;
    size_t check_failed;   /* cells whose outputs differ */
    size_t check_first;    /* the first of them, 1-based */
    char check_cells[128]; /* their numbers, "3, 5" */
} apy_nbrun_t;

/* ---- stdin.c ---- */

/* When stdin is not a terminal: input() and getpass.getpass() raise
 * StdinNotImplementedError as in a kernel run by nbclient. 0 or -1. */
int apy__nbrun_stdin_init(apy_nbrun_t *run);

/* ---- lines.c: a cell's lines as the notebook file's ---- */

/* The number of lines of text ("\n"-terminated ones plus a last
 * unterminated one). */
size_t apy__nbrun_count_lines(const char *text);
/* base when body line k (the body starts after cell line first_line) is
 * file line base + k for each of its n lines, else -1. */
long apy__nbrun_consecutive_base(const apy_nb_cell_t *cell, size_t first_line,
                                 size_t n);
/* Renumbers every node of tree from body lines to file lines. 0 or -1. */
int apy__nbrun_renumber_ast(PyObject *tree, const apy_nb_cell_t *cell,
                            size_t first_line);
/* Renumbers the SyntaxError being raised from body lines to file lines;
 * keeps it set. */
void apy__nbrun_renumber_syntax_error(const apy_nb_cell_t *cell,
                                      size_t first_line);
/* Puts body line k of source into the SyntaxError being raised as its
 * text (base: the line before the body); keeps it set. */
void apy__nbrun_fix_syntax_error_text(const char *source, long base);
/* A new code object with every line number `by` lines later, or NULL. */
PyObject *apy__nbrun_shift_code(PyObject *code, long by);

/* ---- check.c: --check-outputs, nbval's comparison ---- */

/* The tags check.c adds to a cell: RAISES for nbval-raises-exception;
 * with --check-outputs, SKIP for nbval-skip and CHECK for the cells it
 * compares (strict: all but nbval-ignore-output; lax: those tagged
 * nbval-check-output); nbval's comment markers count as tags. */
unsigned apy__nbrun_check_tags(const apy_options_t *opts,
                               const apy_nb_cell_t *cell);

/* Reads --sanitize and the stored outputs of the cells to compare,
 * before any cell runs or is cleared. 0, -1 with an exception set, or 2
 * (reported: a bad sanitizer file). */
int apy__nbrun_check_init(apy_nbrun_t *run);

/* After the run: the final outputs of each compared cell that ran (as
 * saved: update_display and clear_output applied) against the stored
 * ones; each difference is reported on stderr with a unified diff, makes
 * *exitcode 1 (from 0) and fills the outcome's cell and message unless an
 * error already did. */
void apy__nbrun_check_finish(apy_nbrun_t *run, int *exitcode);

/* Releases what check.c holds. */
void apy__nbrun_check_fini(apy_nbrun_t *run);

/* ---- outputs.c: the recorder, tee streams, %%capture ---- */

/* Marks cell i's outputs as changed (it ran, or update_display changed
 * one): they are rendered at the next save. 0, or -1 with MemoryError. */
int apy__nbrun_mark_dirty(apy_nbrun_t *run, size_t i);

/* Installs the tee streams as sys.stdout/sys.stderr. 0, or -1 with an
 * exception set. */
int apy__nbrun_streams_install(apy_nbrun_t *run);

/* Puts the real sys.stdout/sys.stderr back where a tee stream still is.
 * Errors are ignored (the run is ending). */
void apy__nbrun_streams_uninstall(apy_nbrun_t *run);

/* The types of the tee streams and of %%capture's object. */
extern PyType_Spec apy__nbrun_stream_spec;
extern PyType_Spec apy__nbrun_captured_spec;

/* ---- runtime.c: the recorder object ---- */

/* Creates the recorder's types and run->runtime. Returns 0, or -1 with an
 * exception set. */
int apy__nbrun_outputs_init(apy_nbrun_t *run);

/* Detaches and releases the recorder: streams restored, types released;
 * objects the program kept (display, a captured result) stay usable and
 * fall back to printing. Keeps any exception set. */
void apy__nbrun_outputs_fini(apy_nbrun_t *run);

/* Records text that fd 1 (which = APY_NBRUN_STDOUT) or fd 2 got as the
 * current cell's stream output, like sys.stdout's. 0 or -1. */
int apy__nbrun_record_fd_text(apy_nbrun_t *run, int which, PyObject *text);

/* ---- fdcapture.c: output written to fds 1 and 2 directly ---- */

/* Where text that fd 1 (which = APY_NBRUN_STDOUT) or fd 2 got goes, on
 * the main thread with the GIL: 0, or -1 with an exception set. */
typedef int (*apy_nbrun_fd_sink_t)(apy_nbrun_t *run, int which,
                                   PyObject *text);

/* While recording: makes fds 1 and 2 pipes whose reader thread shows
 * everything live and keeps it for sink (the recorder's
 * apy__nbrun_record_fd_text), and gives the runtime
 * text streams on copies of the real fds (runtime->live). Call before
 * apy__nbrun_streams_install. 0, or -1 with an exception set (then
 * apy__nbrun_fdcap_stop still undoes what was done). */
int apy__nbrun_fdcap_start(apy_nbrun_t *run, apy_nbrun_fd_sink_t sink);

/* Records what fds 1 and 2 got so far, before an output the recorder is
 * about to record; `final` at the end of a cell also flushes sys.__stdout__,
 * sys.__stderr__ and C's stdio first. Best effort; keeps any exception. */
void apy__nbrun_fdcap_sync(apy_nbrun_t *run, int final);

/* The fd that reaches the real stdout or stderr (which): a copy while
 * fds 1 and 2 are captured, else 1 or 2. Async-signal-safe to use. */
int apy__nbrun_fdcap_real_fd(apy_nbrun_t *run, int which);

/* Puts fds 1 and 2 back and stops the reader. Keeps any exception. */
void apy__nbrun_fdcap_stop(apy_nbrun_t *run);

/* Starts recording the outputs of cell run->cur into a new list. 0 or -1
 * with an exception set. */
int apy__nbrun_record_begin(apy_nbrun_t *run);

/* Ends the cell: pending stream text becomes an output. Returns a new
 * reference to the cell's output list, or NULL with an exception set. */
PyObject *apy__nbrun_record_end(apy_nbrun_t *run);

/* Records value as the cell's execute_result (None records nothing).
 * 0 or -1 with an exception set. */
int apy__nbrun_record_result(apy_nbrun_t *run, PyObject *value);

/* Shows the current exception's traceback on the real stderr (through
 * the traceback module, which reads the cells' text from linecache;
 * python's own printer if that fails), after flushing sys.stdout, and
 * records it as an error output. Clears it; returns a new reference to
 * it (NULL when none was set) and, when lines_out is not NULL, the
 * formatted lines (a new list, or NULL) in *lines_out. */
PyObject *apy__nbrun_show_exception(apy_nbrun_t *run, PyObject **lines_out);

/* An object's printer (or _repr_ method) raised while it was formatted
 * for an output (the exception is set): as ipykernel, its traceback is
 * shown on stderr and recorded as an error output in place of that
 * output, and the cell goes on. 0 (reported and cleared), or -1 for what
 * is not an Exception (KeyboardInterrupt goes on up) or with no run. */
int apy__nbrun_format_failed(apy_nbrun_t *run);

/* Records the current exception as an error output, with `lines` (a list
 * of str, as traceback.format_exception gives) as its traceback. Keeps
 * the exception set. 0 or -1 (the exception stays the original). */
int apy__nbrun_record_error(apy_nbrun_t *run, PyObject *exc,
                            PyObject *lines);

/* Starts a %%capture: stream text and displays go to a new captured
 * object instead of the terminal and the cell. Returns 0 or -1. */
int apy__nbrun_capture_begin(apy_nbrun_t *run, int out, int err,
                             int displays);

/* Ends the %%capture begun last. Returns a new reference to the captured
 * object (stdout, stderr, outputs, show()), or NULL with an exception set;
 * an exception already set stays set and wins. */
PyObject *apy__nbrun_capture_end(apy_nbrun_t *run);

/* Writes text to the real stdout (which = APY_NBRUN_STDOUT) or stderr,
 * bypassing the recorder. Never fails; errors are cleared. */
void apy__nbrun_write_real(apy_nbrun_t *run, int which, const char *text);

/* ---- outputs_json.c: outputs as nbformat's JSON ---- */

/* Returns a new reference to the JSON text (str) of a cell's output list
 * as nbformat writes it (multi-line strings as lists of lines), or NULL
 * with an exception set. A big stream output (its text a stream capsule,
 * see apy__nbrun_big_stream) is written with "text": null, and *streams is
 * set to a new list of those capsules in order (NULL when there are
 * none). */
PyObject *apy__nbrun_outputs_json(PyObject *outputs, PyObject **streams,
                                  const char *spill_dir);

/* The tag that marks a big data value's place in that JSON (see
 * apy_nb_result_t.value_tag). */
const char *apy__nbrun_value_tag(void);

/* ---- outputs.c: big outputs ---- */

/* Stream text past this many characters in one output goes to an
 * apy_nb_stream_t (rendered as it comes, spilled to a file) instead of
 * being joined, split and dumped as JSON: DESIGN 3's "an output larger
 * than a few MB is streamed into the file". Data values past it too. */
#define APY_NBRUN_BIG_TEXT (1 << 20)

/* Returns a new capsule that owns st (a big output's text or value), or
 * NULL with an exception set (st released). */
PyObject *apy__nbrun_big_capsule(apy_nb_stream_t *st);

/* Returns the apy_nb_stream_t of a big stream output's text, or NULL
 * (no exception) if obj is not one. */
apy_nb_stream_t *apy__nbrun_big_stream(PyObject *obj);

/* ---- format.c: mime bundles ---- */


/* display()'s include and exclude: lists of mime types, or NULL/None. */
typedef struct {
    PyObject *include; /* borrowed */
    PyObject *exclude; /* borrowed */
} apy_nbrun_select_t;

/* Returns a new reference to (data, metadata) for obj: its _repr_*_ and
 * _repr_mimebundle_ bundle plus text/plain (run's shell's or IPython's
 * pretty printer; run may be NULL: repr), only the types sel lets
 * through (NULL: all); None when obj displayed itself
 * (_ipython_display_); NULL with an exception. */
PyObject *apy__nbrun_format_some(apy_nbrun_t *run, PyObject *obj,
                                 const apy_nbrun_select_t *sel);

/* Calls obj._ipython_display_() if it has one (not a class): 1 (it
 * displayed itself; a failure was reported as a _repr_'s is), 0. */
int apy__nbrun_self_display(apy_nbrun_t *run, PyObject *obj);

/* apy__nbrun_format_some with every type. */
PyObject *apy__nbrun_format(apy_nbrun_t *run, PyObject *obj);

/* ---- display.c: display(), figures ---- */

/* Adds the display builtin. 0 or -1 with an exception set. */
int apy__nbrun_display_init(apy_nbrun_t *run);

/* The display path shared by display() and figures: records a
 * display_data output of obj's mime bundle, the types sel lets through
 * (NULL: all; or prints its text/plain when nothing records). Returns 0
 * or -1 with an exception set. */
int apy__nbrun_display_obj(PyObject *runtime, PyObject *obj,
                           PyObject *metadata, PyObject *display_id,
                           const apy_nbrun_select_t *sel);

/* Displays the open matplotlib figures (when something records) and
 * closes them, as the inline backend does at the end of a cell (nested:
 * of a %%capture body or plt.show(), which show the inline backend's
 * figures too; else those are its post_execute callback's). Does nothing
 * when matplotlib.pyplot was never imported. 0 or -1. */
int apy__nbrun_flush_figures(apy_nbrun_t *run, int nested);

/* Makes IPython's display()/clear_output()/update_display() ours once
 * IPython.core.display_functions is imported. 0 or -1. */
int apy__nbrun_display_hook_ipython(apy_nbrun_t *run);

/* Method table entries of the runtime type defined in display.c. */
extern PyMethodDef apy__nbrun_display_methods[];

/* ---- runtime internals shared by outputs.c, display.c, runtime.c ---- */

typedef struct {
    PyObject_HEAD
    apy_nbrun_t *run;      /* NULL once the run is over */
    PyObject *outputs;     /* the current cell's output list, or NULL */
    PyObject *parts;       /* pending stream text (list of str) */
    Py_ssize_t parts_len;  /* characters in parts */
    PyObject *big;         /* once the pending text passed a few MB: a
                            * capsule of its apy_nb_stream_t, which gets
                            * the text instead of parts; else NULL */
    int part_name;         /* stream of the pending text, -1 for none */
    int clear_pending;     /* clear_output(wait=True) awaits output */
    PyObject *capture;     /* the innermost active captured object */
    PyObject *real[2];     /* sys.stdout/stderr before the tee streams */
    PyObject *live[2];     /* text streams on the real fds while fds 1
                            * and 2 are captured (fdcapture.c), or NULL */
    PyObject *display_ids; /* dict: display_id -> list of [cell, output] */
    PyObject *ipy_handle;  /* IPython's DisplayHandle class, or NULL */
} ApyNbRuntimeObject;

/* Appends output (a dict) to the current sink (the innermost capture or
 * the cell), flushing pending stream text first. 0 or -1. */
int apy__nbrun_append_output(ApyNbRuntimeObject *rt, PyObject *output);

/* Applies a clear_output() now (or at the next output if wait). */
void apy__nbrun_clear_output(ApyNbRuntimeObject *rt, int wait);

/* Changes the data and metadata of the outputs shown so far with
 * display_id (a str) to these, as nbclient updates a display. 0 or -1. */
int apy__nbrun_update_display_id(ApyNbRuntimeObject *rt,
                                 PyObject *display_id, PyObject *data,
                                 PyObject *md);

/* Appends out (a display_data or execute_result dict) as nbclient does
 * with its display_id (NULL or None: none): the earlier outputs with it
 * updated, out shown with it from now on. 1 (recorded), 0 (nothing
 * records), -1. */
int apy__nbrun_show_output(ApyNbRuntimeObject *rt, PyObject *out,
                           PyObject *display_id);

/* ---- iopub.c: a kernel's messages ---- */

/* Records an IOPub message a program sent through get_ipython().kernel
 * (msg_type; content, a dict) as nbclient records it: display_data,
 * update_display_data, execute_result, stream, error, clear_output;
 * others (comm_*, status) change no output. 0 or -1. */
int apy__nbrun_message(apy_nbrun_t *run, const char *msg_type,
                       PyObject *content);

/* ---- cells.c: compile and run one cell ---- */

/* Runs code cell run->cur. Returns 0 on success, -1 with the cell's
 * exception set (traceback stripped of apyrun frames), -2 when a TLA
 * cell can never finish (reported). */
int apy__nbrun_run_cell(apy_nbrun_t *run);

/* Runs python source text (a %%time or %%capture body, which starts on
 * the cell's line `first_line` + 1) as part of cell run->cur: compiled
 * with the cell's line mapping, run on the loop when it awaits, its last
 * expression recorded. Same results as apy__nbrun_run_cell. */
int apy__nbrun_run_source(apy_nbrun_t *run, const char *source,
                          size_t first_line);

/* Registers every cell's text with linecache under the notebook's path,
 * at its JSON lines, so tracebacks show code. 0 or -1. */
int apy__nbrun_linecache_register(apy_nbrun_t *run);

/* Opens the run's event loop if it is not open yet. 0 or -1. */
int apy__nbrun_ensure_loop(apy_nbrun_t *run);

/* ---- host.c: what a run gives the IPython layer ---- */

/* Creates the run's builtins.__apyrun_nb__ (src/ipython), its host the
 * run's recorder. 0 or -1 with an exception set. */
int apy__nbrun_magics_init(apy_nbrun_t *run);

/* Detaches and releases what apy__nbrun_magics_init made. Keeps any
 * exception set. */
void apy__nbrun_magics_fini(apy_nbrun_t *run);

/* Runs a %%magic cell, its value recorded as the cell's execute_result.
 * Same results as apy__nbrun_run_cell. */
int apy__nbrun_run_cell_magic(apy_nbrun_t *run, const char *source);

/* ---- params.c: papermill parameters ---- */

/* Builds the injected-parameters cell's source from -p and
 * --params-file. Returns a malloc'ed string, NULL with *err set (a
 * one-line message, exit 2) or NULL with *err NULL when no parameter was
 * given. */
char *apy__nbrun_params_source(const apy_options_t *opts, char *err,
                               size_t errlen);

/* ---- timeouts.c: --timeout, --total-timeout, SIGTERM ---- */

/* Starts the watchdog thread (only if a timeout was given) and installs
 * the SIGTERM handler. 0 or -1 with an exception set. */
int apy__nbrun_timeouts_start(apy_nbrun_t *run);

/* Set (never cleared) once a SIGTERM arrived while our handler was in
 * place: a save's long copy stops for it (apy_nb_target_t.stop). */
const volatile sig_atomic_t *apy__nbrun_sigterm_seen(void);

/* Arms the watchdog for the cell starting now. */
void apy__nbrun_timeouts_arm(apy_nbrun_t *run);

/* Disarms the watchdog after a cell. */
void apy__nbrun_timeouts_disarm(apy_nbrun_t *run);

/* Stops the watchdog and restores SIGTERM's handler. Keeps any exception
 * set. */
void apy__nbrun_timeouts_stop(apy_nbrun_t *run);

/* ---- progress.c: the terminal's progress lines and reports ---- */

/* Decides progress and colour for stderr (terminal, NO_COLOR). */
void apy__nbrun_progress_init(apy_nbrun_t *run);

/* "cell k of n" before cell run->cur runs. */
void apy__nbrun_progress_cell(apy_nbrun_t *run);

/* The end-of-run summary line (terminal only). */
void apy__nbrun_progress_done(apy_nbrun_t *run);

/* Writes "apyrun: <what> in cell k, In [n] of <nb>" on stderr, red on a
 * terminal. */
void apy__nbrun_report_cell(apy_nbrun_t *run, const char *what);

/* Seconds on the monotonic clock. */
double apy__nbrun_now(void);


#endif
