/* SPDX-License-Identifier: MIT */
/* The command line: apyrun's own options are taken out of argv (before
 * the target, and after a notebook up to "--"), the rest (python options,
 * the target and the program's arguments) is left for CPython's own
 * parser. Plain C: no Python.h here. */
#ifndef APYRUN_CLI_H
#define APYRUN_CLI_H

#include <stddef.h>

/* Which event loop asyncio gets by default. */
typedef enum {
    APY_LOOP_APYRUN = 0, /* apyrun.Loop (the default) */
    APY_LOOP_ASYNCIO,    /* the stdlib's selector loop */
} apy_loop_kind_t;

/* What the target is, as far as argv alone tells. */
typedef enum {
    APY_TARGET_NONE = 0, /* no target: the REPL, or a script on stdin */
    APY_TARGET_FILE,     /* a path (script, directory, zip, notebook) */
    APY_TARGET_COMMAND,  /* -c CODE */
    APY_TARGET_MODULE,   /* -m MOD */
    APY_TARGET_STDIN,    /* - */
} apy_target_kind_t;

/* A notebook parameter given as -p NAME VALUE (issue 3). */
typedef struct {
    const char *name;
    const char *value;
} apy_param_t;

/* --check-outputs: which code cells' outputs are compared with the ones
 * stored in the notebook (nbval's modes, DESIGN 6). */
typedef enum {
    APY_CHECK_NONE = 0, /* no comparison (the default) */
    APY_CHECK_STRICT,   /* every code cell, but for nbval-ignore-output */
    APY_CHECK_LAX,      /* only cells tagged nbval-check-output */
} apy_check_mode_t;

/* apyrun --test (DESIGN 6): what to collect and how to run and report it.
 * The run options of each notebook (--timeout, -p, ...) stay in
 * apy_options_t, as for one notebook. */
typedef struct {
    const char **paths;      /* PATH arguments, in order; none means "." */
    size_t npaths;
    const char **keywords;   /* -k SUBSTR: keep paths holding any of them */
    size_t nkeywords;
    int jobs;                /* -j/--jobs N; 0 = the number of CPUs */
    int list;                /* --list */
    int shard_k;             /* --shard K/N: 1 <= K <= N; N = 0 for none */
    int shard_n;
    const char *durations;   /* --durations FILE (a JUnit file) */
    const char *junit_xml;   /* --junit-xml FILE */
    const char *output_dir;  /* --output-dir DIR, -o DIR */
    int exitfirst;           /* --exitfirst */
    int verbose;             /* --verbose */
    int capture_no;          /* --capture=no */
} apy_test_options_t;

typedef struct {
    int show_help;         /* -h, --help, -? */
    int show_version;      /* -V, --version */
    int ignore_env;        /* -E or -I seen: PYTHON* variables are ignored */
    apy_loop_kind_t loop;  /* --loop, else APYRUN_LOOP */
    apy_target_kind_t target_kind;
    const char *target;    /* FILE, CODE or MOD; NULL otherwise */

    /* Notebook options (DESIGN 3); accepted here, used by src/run. */
    const char *output;      /* -o, --output */
    int inplace;             /* --inplace */
    int as_notebook;         /* --notebook: the target is one, whatever
                              * its name (jupytext's percent .py) */
    const char *cwd;         /* --cwd */
    double timeout;          /* --timeout, seconds; 0 = none */
    double total_timeout;    /* --total-timeout, seconds; 0 = none */
    int allow_errors;        /* --allow-errors */
    const char *params_file; /* --params-file */
    apy_param_t *params;     /* -p NAME VALUE, in order */
    size_t nparams;
    apy_check_mode_t check_outputs; /* --check-outputs[=strict|lax] */
    int check_images;        /* --check-images: images compared by bytes */
    const char *sanitize;    /* --sanitize FILE (nbval's sanitizer file) */

    int test;                /* --test: the rest of argv is test_opts' */
    apy_test_options_t test_opts;

    /* argv for CPython: argv[0], python options, target, program args
     * (for a notebook: its words and what follows "--", nothing of
     * apyrun's), so that CPython's sys.argv is the program's. */
    int py_argc;
    char **py_argv;
} apy_options_t;

/* Parses argv into opts (argv strings are borrowed, not copied). After
 * a script, -c, -m or -: python's rule, every argument is the program's.
 * After a notebook: apyrun's run options are taken up to "--", other
 * words and all after "--" are the notebook's, an unknown option is a
 * usage error. "--test" before the target makes every later argument
 * test_opts' (options, then PATHs; python's options are not taken there).
 * Returns 0, or -1 with a one-line message in err (usage
 * error: exit 2), or -ENOMEM (-12, as libuv's UV_ENOMEM) when out of
 * memory. opts must be freed with apy_cli_free() whatever the result. */
int apy_cli_parse(int argc, char **argv, apy_options_t *opts, char *err,
                  size_t errlen);

/* Returns 1 if opts' target runs as a notebook and takes apyrun's options
 * after it: a notebook's name, --notebook, or a ".py" that opens with
 * jupytext's header naming the percent format (its first 8 KiB are
 * read); else 0. */
int apy_cli_target_is_notebook(const apy_options_t *opts);

/* Frees what apy_cli_parse allocated (not the borrowed strings). */
void apy_cli_free(apy_options_t *opts);

/* Writes the usage of apyrun --test to stream-like sink `out`. */
void apy_cli_print_test_help(void *out, const char *prog);

/* Writes apyrun's own usage and options to stream-like sink `out`
 * (a FILE *, kept void * so the header needs no stdio.h). */
void apy_cli_print_help(void *out, const char *prog);

#endif
