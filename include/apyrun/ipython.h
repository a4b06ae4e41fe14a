/* SPDX-License-Identifier: MIT */
/* The IPython layer (src/ipython/): IPython's syntax and magics without
 * IPython, for the notebook runner (src/run/notebook) and the importer
 * alike. Translated cells call builtins.__apyrun_nb__, a helper object
 * this layer makes; what a magic needs from whoever runs the cell (run a
 * body that may await, capture outputs, show figures) it asks through a
 * host table, as redis's ae.c asks its one aeApi backend. With no host
 * (an imported notebook) bodies are exec()ed and nothing is recorded.
 * Everything here follows CPython's error convention. */
#ifndef APYRUN_IPYTHON_H
#define APYRUN_IPYTHON_H

#include <Python.h>

/* What a notebook run provides to the magics; ctx is the run. */
typedef struct {
    /* Runs body, the text of a %%magic cell after its first line (the
     * cell's line first_line), as the cell's own code: it may await and
     * its last expression is the cell's result. 0, -1 with an exception
     * set, or -2 when the cell can never finish (already reported). */
    int (*run_source)(void *ctx, const char *body, size_t first_line);
    /* %%capture: stdout, stderr and displays (take[0..2]) go to a new
     * captured object instead of the cell. 0 or -1. */
    int (*capture_begin)(void *ctx, const int take[3]);
    /* Ends the capture begun last, also one whose begin failed. Returns
     * a new reference to the captured object (stdout, stderr, outputs,
     * show()) or NULL; an exception already set stays set and wins. */
    PyObject *(*capture_end)(void *ctx);
    /* Shows the open matplotlib figures, as the end of a cell does. 0 or
     * -1. */
    int (*flush_figures)(void *ctx);
    /* IPython's shell was made and replaced display(): put the run's
     * back. 0 or -1. */
    int (*shell_made)(void *ctx);
    /* The namespace magics expand in when no Python frame called them
     * (borrowed; the run's __main__ globals). */
    PyObject *(*globals)(void *ctx);
    /* Shows text as a pager would (help: obj?): on the terminal, not in
     * the cell's outputs, as a kernel's pager payload is. NULL: printed
     * on sys.stdout. 0 or -1. */
    int (*page)(void *ctx, const char *text);
    /* 1 when the run records outputs (writes or checks the executed
     * notebook): `!cmd` then runs on a pseudo-terminal, as in a kernel.
     * NULL: never. */
    int (*records)(void *ctx);
    /* A note for the user, not for the cell's outputs: on apyrun's real
     * stderr. NULL: on sys.stderr. 0 or -1. */
    int (*note)(void *ctx, const char *text);
    /* An IOPub message a kernel would send (msg_type; content, a dict):
     * what get_ipython().kernel.session.send and the shell's
     * display_pub publish. Recorded as nbclient records it. NULL: the
     * text/plain of display data and stream text are printed. 0 or
     * -1. */
    int (*message)(void *ctx, const char *msg_type, PyObject *content);
} apy_ipy_host_t;

/* A fresh id (a new str of 32 hex digits from the OS's random bytes),
 * as a kernel's message ids and IPython's display ids (display_id=True)
 * are. NULL with an exception set. */
PyObject *apy_ipy_new_id(void);

/* Translates IPython syntax in source: returns a new malloc'ed string
 * (NUL-terminated) with line magics and !commands replaced by calls of
 * __apyrun_nb__, line for line; *cell_magic is set to 1 when the cell is
 * a %%magic cell (then source is left to apy_ipy_run_cell_magic).
 * Returns NULL with an exception set (MemoryError only). */
char *apy_ipy_translate(const char *source, int *cell_magic);

/* IPython takes `from __future__ import ...` anywhere at a cell's top
 * level: each one in mod (a cell's ast.Module) after its first
 * statements is compiled alone (errors at its place, in filename), the
 * features it turns on added to *flags, and replaced by a `pass`. 0, or
 * -1 with an exception set. */
int apy_ipy_late_futures(PyObject *mod, PyObject *filename, int *flags);

/* 1 if a cell's result is silenced, as IPython decides: the last token
 * of its last line of code, before any comment, is ';'. Else 0. */
int apy_ipy_silenced(const char *text);

/* Returns a new helper object whose magics use host (not NULL) and ctx,
 * or NULL with an exception set. The caller puts it into builtins and
 * calls apy_ipy_magics_detach() when ctx goes away. */
PyObject *apy_ipy_magics_new(const apy_ipy_host_t *host, void *ctx);

/* Puts the helper into builtins as __apyrun_nb__, and its get_ipython
 * method as get_ipython (the shell is made on the first call). 0, or -1
 * with an exception set. */
int apy_ipy_magics_put(PyObject *magics);

/* Around each cell the host runs (source its text, count its execution
 * count). When get_ipython()'s shell exists, it takes the cell's count
 * and (IPython's) its input history (In, _ih, _i, _ii, _iN), and its
 * events fire as in IPython's run_cell: pre_execute and
 * pre_run_cell(info) at the begin, post_execute and post_run_cell(result)
 * at the end, result.error_in_exec being error (borrowed; NULL when the
 * cell succeeded). Without a shell nothing is imported or made. A
 * callback's exception is printed and the others run, as in IPython.
 * 0, or -1 with an exception set. */
int apy_ipy_cell_begin(PyObject *magics, const char *source, long count);
int apy_ipy_cell_end(PyObject *magics, PyObject *error);

/* The running cell's result (its last expression, not silenced), kept as
 * a kernel keeps it: _, __, ___, _N and Out[N] (IPython's displayhook
 * once its shell exists; the same names without it; In, _ih, _i, _ii,
 * _iii and _iN are apy_ipy_cell_begin's). None keeps nothing. 0, or -1
 * with an exception set. */
int apy_ipy_cell_result(PyObject *magics, PyObject *value);

/* obj's text/plain as a Jupyter kernel records it: IPython's pretty
 * printer at 79 columns, with the shell formatter's printers once
 * get_ipython()'s IPython shell exists (for_type registrations apply);
 * IPython.lib.pretty is imported on the first call; without IPython,
 * repr(). magics may be NULL (repr). A new str, or NULL with the
 * printer's exception set (the caller reports it as ipykernel does). */
PyObject *apy_ipy_plain_text(PyObject *magics, PyObject *obj);

/* A matplotlib figure's (data, metadata) as a kernel's inline backend
 * formats it: the IPython shell's formatters, once select_figure_formats
 * registered the figure's (%matplotlib inline, %config InlineBackend),
 * with display()'s include and exclude (NULL or None: all). A new
 * tuple; None when there is no such formatter (the caller makes its own
 * PNG); NULL with an exception set. */
PyObject *apy_ipy_figure_format(PyObject *magics, PyObject *fig,
                                PyObject *include, PyObject *exclude);

/* Adds to data (and md) obj's representations from printers registered
 * with for_type on the IPython shell's formatters, as a kernel's
 * DisplayFormatter finds them (sympy's text/latex and image/png after
 * init_printing), for the mime types not in data yet that include and
 * exclude let through. Nothing without IPython's shell. 0, or -1 with
 * the printer's exception set. */
int apy_ipy_shell_formats(PyObject *magics, PyObject *obj, PyObject *data,
                          PyObject *md, PyObject *include, PyObject *exclude);

/* 0 once `%matplotlib agg` (or a GUI's name) chose a backend that shows
 * no figures at a cell's end, as in a kernel; else 1 (magics may be
 * NULL). */
int apy_ipy_shows_figures(PyObject *magics);

/* 1 when IPython's shell has matplotlib-inline's flush_figures among its
 * post_execute callbacks (the inline backend, as a kernel sets it up):
 * the figures then show from there, after the callbacks before it and
 * with IPython's handling of their errors. Else 0 (magics may be NULL).
 * Never fails. */
int apy_ipy_inline_flushes(PyObject *magics);

/* The program imported ipykernel.kernelbase (module): unless a kernel
 * runs, Kernel.instance() becomes one whose session records through the
 * host as get_ipython().kernel's does, with ipykernel's CommManager, so
 * ipykernel.comm.Comm() works; it becomes get_ipython().kernel. 0, or -1
 * with an exception set. */
int apy_ipy_kernel_module(PyObject *magics, PyObject *kernelbase);

/* 1 when a cell of one line is IPython's automagic, as a kernel runs it:
 * its first word names a line magic or alias (`ls dir`, `pwd`, `cd ..`)
 * that nothing in ns, the builtins or the keywords shadows, and the line
 * is no assignment; the caller then runs it as `%` + line. 0 if not, -1
 * with an exception set. */
int apy_ipy_automagic(PyObject *magics, PyObject *ns, const char *line);

/* Forgets the helper's host: later calls work as with no run. */
void apy_ipy_magics_detach(PyObject *magics);

/* Makes sure builtins.__apyrun_nb__ exists: a run's helper is kept as it
 * is; otherwise one with no host is installed (apy_ipy_magics_put),
 * process-wide, for imported notebooks. Returns 0, or -1 with an
 * exception set. */
int apy_ipy_magics_install(void);

/* Runs the %%magic cell source with the helper's host, in globals.
 * Returns 0 with *value a new reference to the magic's value (None for
 * those apyrun runs itself), -1 with an exception set, -2 as the host's
 * run_source. */
int apy_ipy_run_cell_magic(PyObject *magics, PyObject *globals,
                           const char *source, PyObject **value);

#endif
