/* SPDX-License-Identifier: MIT */
/* Private to src/ipython: what magics.c asks of magic_args.c (parsing a
 * magic's arguments, no side effects) and of shell.c (expansion and child
 * processes). Nothing outside this directory includes it. */
#ifndef APYRUN_IPYTHON_INTERNAL_H
#define APYRUN_IPYTHON_INTERNAL_H

#include <Python.h>

#include "apyrun/ipython.h"

/* builtins.__apyrun_nb__, the helper translated cells call (magics.c). */
typedef struct {
    PyObject_HEAD
    const apy_ipy_host_t *host; /* NULL with no run, or once detached */
    void *ctx;                  /* the host's */
    double tic[3];      /* wall, user, sys at the last %time start */
    PyObject *oldpwd;   /* the directory before the last %cd, or NULL */
    PyObject *shell;    /* get_ipython()'s shell, once made */
    int shell_kind;     /* APY_IPY_SHELL_*: what shell is */
    PyObject *cell_info; /* the running cell's ExecutionInfo, or NULL */
    const char *cell_source; /* the running cell's text (the host's) */
    long cell_count;    /* and its execution count */
    PyObject *pretty;   /* IPython.lib.pretty once imported; None when it
                         * cannot be; NULL before the first try */
    /* The history a kernel keeps, until IPython's shell keeps it: In
     * (_ih, from ['']), Out (_oh) and the last three results (_, __,
     * ___). NULL before the first cell. */
    PyObject *hist_in;
    PyObject *hist_out;
    PyObject *under[3];
    PyObject *captured; /* %%capture's class with no run, once made */
    PyObject *bg;       /* %%script --bg processes (Popen), or NULL */
    int bg_atexit;      /* their kill is registered with atexit */
    int mpl_hidden;     /* `%matplotlib agg` (or a GUI's) chosen: the
                         * end of a cell shows no figures */
    PyObject *parent;   /* the running cell's parent header, as a
                         * kernel's execute_request (kernel.c), or NULL */
    PyObject *kernel;   /* ipykernel's Kernel made for the run once the
                         * program imported ipykernel (ipykernel.c) */
} ApyIpyMagicsObject;

enum {
    APY_IPY_SHELL_NONE,    /* not made yet */
    APY_IPY_SHELL_IPYTHON, /* IPython's InteractiveShell, subclassed */
    APY_IPY_SHELL_SMALL,   /* apyrun's own: IPython is not importable */
};

/* ---- magics.c: the helper, line magics, times ---- */

/* Reads the wall clock (monotonic), user and system CPU seconds. */
void apy__ipy_times_now(double t[3]);

/* Prints %time's report for a run that started at t0 on sys.stdout. 0 or
 * -1. */
int apy__ipy_print_times(const double t0[3]);

/* Returns the namespace a magic works in (borrowed): the calling frame's
 * globals, which in a run are __main__'s; the run's when no Python frame
 * called (the driver); NULL when there is neither (nothing expands). */
PyObject *apy__ipy_caller_globals(ApyIpyMagicsObject *self);

/* The helper's line_magic(name, arg) method: %name arg, arg expanded in
 * the caller's namespace. The magic's value, or NULL. */
PyObject *apy__ipy_magics_line_magic(ApyIpyMagicsObject *self,
                                     PyObject *const *args,
                                     Py_ssize_t nargs);

/* ---- pager.c ---- */
/* Shows text through the host's pager, else on sys.stdout (a newline
 * added when it has none). 0 or -1. */
int apy__ipy_show_page(ApyIpyMagicsObject *self, PyObject *text);
/* IPython.core.page.page becomes the helper's page(): IPython's paged
 * text goes where a kernel's pager payload goes. 0 or -1. */
int apy__ipy_install_pager(ApyIpyMagicsObject *self);

/* ---- history.c: In, Out, _, _iN ---- */

/* The namespace the cells run in (borrowed): the host's globals, else
 * __main__'s. NULL with an exception set when there is none. */
PyObject *apy__ipy_main_ns(ApyIpyMagicsObject *self);

/* Cell count's input into the history apyrun keeps (In, _ih, _i, _ii,
 * _iii, _iN in ns; In and Out made on the first cell). 0 or -1. */
int apy__ipy_store_input(ApyIpyMagicsObject *self, PyObject *ns,
                         const char *source, long count);

/* IPython's shell was just made: the history kept so far becomes its
 * own. 0 or -1. */
int apy__ipy_hand_over_history(ApyIpyMagicsObject *self);

/* A new dict of ns's history names (_, __, ___, _N, _i, _ii, _iii, _iN)
 * and their values, or NULL: what the shell's __init__ resets. */
PyObject *apy__ipy_history_names(PyObject *ns);

/* ---- ipyshell.c: get_ipython()'s shell ---- */

/* The helper's get_ipython() method: a new reference to the shell, made
 * on the first call (IPython's when importable, else apyrun's small one),
 * or NULL with an exception set. */
PyObject *apy__ipy_get_ipython(ApyIpyMagicsObject *self, PyObject *unused);

/* Runs a magic apyrun does not know through IPython: kind "line" or
 * "cell" (body not NULL). Returns the magic's value, or NULL with an
 * exception that names the magic. */
PyObject *apy__ipy_ipython_magic(ApyIpyMagicsObject *self, const char *kind,
                                 PyObject *name, PyObject *arg,
                                 PyObject *body);

/* %pinfo, %pinfo2 (detail) and %psearch NAME (magic is one of them): the
 * text goes where a Jupyter kernel sends it, to the pager (the host's
 * page: shown, not recorded); "Object `x` not found." is printed (and so
 * recorded), as IPython does. Without IPython, pydoc's text for %pinfo;
 * %psearch needs IPython. None, or NULL with an exception set. */
PyObject *apy__ipy_help(ApyIpyMagicsObject *self, const char *magic,
                        PyObject *arg);




/* ---- cell_magics.c ---- */

/* The helper's run_cell_magic(text, globals) method: a %%magic cell of an
 * imported notebook, run in globals (its module's) with no host,
 * whether or not a run is going on. The magic's value (None for those
 * apyrun runs itself), or NULL with an exception set. */
PyObject *apy__ipy_magics_run_cell_magic(ApyIpyMagicsObject *self,
                                         PyObject *const *args,
                                         Py_ssize_t nargs);

/* ---- magic_args.c: the magics' arguments (pure parsing) ---- */

/* Splits a %%magic cell (source starts with blank space, then "%%"):
 * the magic's name, the rest of its first line stripped, the body (the
 * lines after the first; points into source) and the cell line the body
 * starts after. New references in *name and *arg. 0, or -1 with an
 * exception set (then neither is set). */
int apy__ipy_split_cell_magic(const char *source, PyObject **name,
                               PyObject **arg, const char **body,
                               size_t *first_line);

/* Parses %%capture's arguments: [--no-stdout] [--no-stderr]
 * [--no-display] [VAR] (the last other word is VAR). Sets take[3]
 * (stdout, stderr, displays) and *var (a new reference, or NULL without
 * VAR). 0, or -1 with an exception set. */
int apy__ipy_capture_options(PyObject *arg, int take[3], PyObject **var);

/* Parses %%writefile's arguments (already expanded): [-a|--append] FILE
 * (the first other word, quotes stripped; later ones are ignored). Sets
 * *append and *file (a new reference). 0, or -1 with an exception set
 * (ValueError without a FILE). */
int apy__ipy_writefile_args(PyObject *arg, int *append, PyObject **file);

/* Parses %env's argument: returns 0 for none (list them all), 1 for NAME
 * (read one: *name set), 2 for NAME=VALUE or NAME VALUE (set one: *name
 * and *value set, stripped), new references; -1 with an exception set. */
int apy__ipy_env_args(PyObject *arg, PyObject **name, PyObject **value);

/* ---- shell.c: commands of the magics ---- */

/* Returns a new reference to cmd with IPython's expansions done in
 * globals (the caller's namespace, a dict): {expr}, $name, $$ and {{ }}.
 * When anything fails to expand, cmd is returned unchanged (IPython does
 * the same, so `$HOME` and awk's braces reach the shell). NULL with an
 * exception only on MemoryError-like failures. globals may be NULL
 * (nothing is expanded). */
PyObject *apy__ipy_expand(PyObject *globals, PyObject *cmd);

/* Starts argv (a list, or a str with shell) with stdout piped and stderr
 * piped or merged into stdout. Returns a new reference to the
 * subprocess.Popen object, or NULL with an exception set. */
PyObject *apy__ipy_shell_start(PyObject *argv, int merge, int shell);

/* Copies the child's stdout and stderr to sys.stdout/sys.stderr as they
 * come or, for a stream i whose collect[i] is a list (collect may be
 * NULL), into that list; waits for the child (killed if the wait is
 * interrupted). Returns its exit status, or -1000 with an exception. */
int apy__ipy_shell_pump(PyObject *proc, PyObject *const collect[2]);

/* Sets globals["_exit_code"] as IPython's !cmd does (globals may be
 * NULL: nothing is set). Never fails. */
void apy__ipy_set_exit_code(PyObject *globals, int status);
/* Returns a new file object io.open(file, mode, encoding="utf-8"), or
 * NULL with an exception set. */
PyObject *apy__ipy_open_utf8(PyObject *file, const char *mode);
/* Writes str text to sys.stdout (nothing when there is none). 0 or -1. */
int apy__ipy_write_stdout(PyObject *text);
/* Returns a new reference to module.func(arg) (module may be dotted),
 * or NULL with an exception set. */
PyObject *apy__ipy_call_module(const char *module, const char *func,
                               PyObject *arg);
/* Raises IPython's UsageError (a ValueError without IPython) with the
 * message (a new reference, stolen; NULL: its MemoryError stands);
 * returns NULL. */
PyObject *apy__ipy_usage_error(PyObject *message);

/* `!cmd` through /bin/sh, expanded in globals (may be NULL), output shown
 * and, in a run, recorded (stderr merged into stdout, as in Jupyter); on
 * a pseudo-terminal as ipykernel's (apy__ipy_pty_run) when pty, else on
 * a pipe. Returns a new reference to None, or NULL. */
PyObject *apy__ipy_system(PyObject *globals, PyObject *cmd, int pty);
/* Runs argv (a list) with stdout and stderr on a new 80x24
 * pseudo-terminal, as pexpect runs ipykernel's `!cmd` ("\r\n" line ends,
 * isatty true), with the environment a kernel gives its children (TERM,
 * CLICOLOR, PAGER, GIT_PAGER) and apyrun's stdin; the output goes to
 * sys.stdout as it comes. Returns the status as IPython's pexpect
 * system() gives it (a shell's 128 + N is -N), or -1000 with an
 * exception set. */
int apy__ipy_pty_run(PyObject *argv);
/* 1 when `!cmd` should run on a pseudo-terminal: a run that records
 * outputs (the host says so), else 0. */
int apy__ipy_on_pty(ApyIpyMagicsObject *self);

/* `x = !cmd`: a new list of the output's lines, or NULL. */
PyObject *apy__ipy_getoutput(PyObject *globals, PyObject *cmd);

/* ---- mpl.c: matplotlib as a kernel sets it up ---- */
/* 1 if `%matplotlib arg` names a frontend's backend (none, inline,
 * notebook, nbagg, widget, ipympl) and IPython and matplotlib-inline are
 * importable: IPython's magic then runs it. 0 if not, -1 with an
 * exception set. */
int apy__ipy_mpl_frontend(PyObject *arg);
/* 1 if arg names a frontend's backend (none, inline, notebook, nbagg,
 * widget, ipympl), 0 if not, -1 with an exception set. */
int apy__ipy_mpl_frontend_name(PyObject *arg);
/* `%matplotlib arg` without IPython: Agg for the frontends' names (the
 * figures shown at the end of each cell), else that GUI's backend. None,
 * or NULL with an exception set. */
PyObject *apy__ipy_mpl_agg(PyObject *arg);
/* Puts matplotlib-inline's InlineBackend among the IPython shell's
 * configurables, as a kernel has it, for %config. 0 or -1. */
int apy__ipy_inline_config(PyObject *shell);

/* ---- kernel.c: what a Jupyter kernel adds to the shell ---- */
/* 1 if name is one of ipykernel's KernelMagics apyrun runs (autosave,
 * clear, connect_info, less, man, more, qtconsole), else 0. */
int apy__ipy_is_kernel_magic(const char *name);
/* Runs that magic with arg (expanded already). Its value, or NULL with
 * an exception set. */
PyObject *apy__ipy_kernel_magic(ApyIpyMagicsObject *self, const char *name,
                                PyObject *arg);
/* The shell (self->shell_kind said) was just made: it gets a kernel
 * (shell.kernel, whose session.send() gives the host's message),
 * parent_header and, IPython's, a display_pub that delivers the same
 * way, the kernel's magics and its storemagic extension. 0 or -1. */
int apy__ipy_kernel_attach(ApyIpyMagicsObject *self, PyObject *shell);
/* send(stream, msg_or_type, content=None, parent=None, ...) of a
 * kernel's session (args without the session): the message recorded
 * through the host when parent is the running cell's. The message (a
 * dict), or NULL. */
PyObject *apy__ipy_kernel_send(ApyIpyMagicsObject *m, PyObject *args,
                               PyObject *kwargs);
/* The running cell's parent header (borrowed; made when there is none),
 * or NULL with an exception set. */
PyObject *apy__ipy_kernel_parent(ApyIpyMagicsObject *self);

/* A cell begins: a new parent header (self->parent, and the shell's
 * parent_header once there is a shell), as a kernel's new
 * execute_request. 0 or -1. */
int apy__ipy_kernel_cell(ApyIpyMagicsObject *self);

/* ---- script.c: %%script and its named forms ---- */
/* 1 if name is %%script or one of IPython's named forms of it (bash, sh,
 * perl, ruby, python, python2, python3, pypy), else 0. */
int apy__ipy_is_script_magic(const char *name);
/* Runs the %%magic (one of those) cell body with line's options
 * (expanded in ns, where --out/--err/--proc set their variables): the
 * program's stdout and stderr shown and recorded apart. 0, or -1 with an
 * exception (CalledProcessError for a non-zero exit, as IPython 8). */
int apy__ipy_script(ApyIpyMagicsObject *self, PyObject *ns,
                    const char *magic, PyObject *line, const char *body);
/* Ends the --bg processes still running (SIGINT, SIGTERM, SIGKILL, as
 * IPython's kill_bg_processes). Never fails. */
void apy__ipy_kill_bg(ApyIpyMagicsObject *self);

#endif
