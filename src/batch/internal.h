/* SPDX-License-Identifier: MIT */
/* Private to src/batch (apyrun --test): the collected items, their
 * results, and the functions the batch's files share. */
#ifndef APYRUN_BATCH_INTERNAL_H
#define APYRUN_BATCH_INTERNAL_H

#include <Python.h>

#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

#include "apyrun/cli.h"
#include "apyrun/nbrun.h"

/* Where an item stands. */
typedef enum {
    APY_ITEM_PENDING = 0, /* not started (yet, or never: --exitfirst) */
    APY_ITEM_RUNNING,
    APY_ITEM_PASSED,
    APY_ITEM_FAILED,
    APY_ITEM_SKIPPED,     /* not run: its kernel language is not Python */
    APY_ITEM_INTERRUPTED, /* ended by the batch (Ctrl-C, --exitfirst) */
} apy_item_state_t;

/* One collected file and, once run, its result. */
typedef struct {
    char *path;        /* as collected, e.g. "docs/nb.ipynb"; owned */
    int is_script;     /* a .py file named on the command line */
    long long size;    /* bytes, at collection */
    double weight;     /* --shard's balance: seconds or bytes */

    apy_item_state_t state;
    int exitcode;      /* the child's exit status, or -1 */
    int signal;        /* the signal that killed the child, or 0 */
    double seconds;    /* wall time of the run */
    int cell;          /* 1-based number of the failing cell, or 0 */
    char *message;     /* one line: why it failed or was skipped; owned */
    char *out;         /* captured stdout (NUL-terminated), or NULL */
    size_t out_len;
    char *err;         /* captured stderr (NUL-terminated), or NULL */
    size_t err_len;
} apy_batch_item_t;

/* A running child and what the batch knows of it. */
typedef struct {
    pid_t pid;          /* 0: the slot is free */
    size_t item;        /* index into the batch's items */
    int out_fd;         /* its stdout and stderr capture files, or -1 */
    int err_fd;
    double t0;          /* monotonic seconds at the start */
    double term_at;     /* when to send SIGTERM (0: never) */
    double kill_at;     /* when to send SIGKILL (0: never) */
    int timed_out;      /* ended by the batch for --total-timeout */
    int ended;          /* ended by the batch (Ctrl-C, --exitfirst) */
} apy_batch_slot_t;

/* One apyrun --test run. */
typedef struct {
    const PyConfig *config;     /* the interpreter's, as initialised */
    const apy_options_t *opts;  /* the run options for each notebook */
    const apy_test_options_t *t;
    apy_batch_item_t *items;
    size_t n;
    apy_batch_slot_t *slots;
    int jobs;
    apy_nbrun_outcome_t *outcomes; /* one a slot, shared with children */
    sigset_t child_mask;        /* the signal mask children start with */
    char self_exe[PATH_MAX];    /* this binary, for scripts */
    const char *tmpdir;         /* where capture files live */
} apy_batch_t;

/* report.c's state: what has been shown and counted. */
typedef struct {
    int color;        /* ANSI colours (a terminal, no NO_COLOR) */
    int progress;     /* a progress line (a terminal, no --verbose) */
    int shown;        /* the progress line is on the screen */
    size_t total;     /* items to run */
    size_t done;      /* items finished */
    size_t count[APY_ITEM_INTERRUPTED + 1]; /* finished, by state */
} apy_batch_report_t;

/* report.c: sets up r for total items. */
void apy__batch_report_init(apy_batch_report_t *r, size_t total,
                            int verbose);

/* report.c: counts finished item it; prints its line with --verbose,
 * else updates the progress line. */
void apy__batch_report_item(apy_batch_report_t *r, const apy_batch_item_t *it,
                            int verbose);

/* report.c: the failures (message, captured stdout and stderr), the
 * skipped ones when verbose_skips, then the summary line alone and the
 * wall time on the next one. */
void apy__batch_report_end(apy_batch_report_t *r,
                           const apy_batch_item_t *items, size_t n,
                           double wall, int verbose_skips);

/* spawn.c: starts items[item] in free slot s: a forked child of this
 * interpreter for a notebook, this binary run on it for a script, with
 * its output captured (or not: --capture=no). 0, or -1 with a one-line
 * message in err (the item is then failed by the caller). */
int apy__batch_start(apy_batch_t *b, apy_batch_slot_t *s, size_t item,
                     char *err, size_t errlen);

/* spawn.c: takes what slot s's child wrote (it has exited) into its
 * item's out and err, and closes the capture files. */
void apy__batch_take_output(apy_batch_slot_t *s, apy_batch_item_t *it);

/* collect.c: the files under opts' PATHs (directories walked, hidden
 * ones and .ipynb_checkpoints skipped, symlinked directories not
 * followed), filtered by -k, sorted by path, duplicates dropped. Returns
 * 0 with *items (free with apy__batch_free_items) and *n, or -1 with a
 * one-line message in err (a PATH that does not exist, an unreadable
 * directory, out of memory): a usage error, exit 2. */
int apy__batch_collect(const apy_test_options_t *t, apy_batch_item_t **items,
                       size_t *n, char *err, size_t errlen);

/* collect.c: keeps in items[0..*n) the shard k of n_shards (1-based),
 * in sorted order: items are dealt, heaviest first (ties: by path), to
 * the shard with the least weight so far (ties: the lowest number).
 * The partition depends only on the paths and weights. */
void apy__batch_shard(apy_batch_item_t *items, size_t *n, int k,
                      int n_shards);

/* collect.c: frees the items and the array. */
void apy__batch_free_items(apy_batch_item_t *items, size_t n);

/* junit.c: the JUnit names of an item: classname is its directory with
 * '/' as '.' ("docs.sub"; "" at the top), name its file name. Both
 * malloc'ed; 0 or -1 (out of memory). */
int apy__batch_junit_names(const char *path, char **classname, char **name);

/* junit.c: writes the report of items[0..n) (those not PENDING) as
 * pytest's --junitxml does, to path, through a temporary file renamed
 * over it. wall is the batch's wall time in seconds. 0, or -1 with a
 * one-line message in err. */
int apy__batch_write_junit(const char *path, const apy_batch_item_t *items,
                           size_t n, double wall, char *err, size_t errlen);

/* durations.c: reads the testcase times of the JUnit file path and sets
 * the weight of each item it names (by classname and name, as
 * apy__batch_junit_names gives them); the others get the mean of the
 * times found (1.0 if none). Needs the interpreter. 0, or -1 with a
 * one-line message in err (unreadable, not XML). */
int apy__batch_read_durations(const char *path, apy_batch_item_t *items,
                              size_t n, char *err, size_t errlen);

#endif
