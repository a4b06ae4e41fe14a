/* SPDX-License-Identifier: MIT */
/* Running a notebook as __main__ (src/run/notebook/): cells in order on one
 * event loop, outputs recorded into the executed notebook (DESIGN 3). */
#ifndef APYRUN_NBRUN_H
#define APYRUN_NBRUN_H

#include <Python.h>
#include "apyrun/cli.h"

/* How a notebook run ended, beyond its exit code, for apyrun --test
 * (src/batch): plain data of a fixed size, so that a forked child can
 * leave it in memory it shares with its parent. */
typedef struct {
    int skipped;       /* 1: not run, its kernel language is not Python */
    int cell;          /* 1-based number of the cell that failed, or 0 */
    int errors_allowed; /* 1: exit 1 came only from cell errors that
                         * --allow-errors let the run go on after */
    char message[512]; /* one line: why it failed or was skipped, or "" */
} apy_nbrun_outcome_t;

/* Runs the notebook that config->run_filename names, in the initialised
 * interpreter, with the notebook options of opts. Returns the exit code
 * (DESIGN 6): 0, 1 for a cell error, 2 for bad input or a usage error,
 * 124 when --timeout/--total-timeout expired, SystemExit's code after
 * sys.exit(). Sets *unhandled_sigint when a Ctrl-C ended the run, so the
 * caller dies by SIGINT after finalising; a SIGTERM during the run ends
 * the process by SIGTERM once the executed notebook is saved. Fills
 * *outcome when outcome is not NULL. Never returns with a Python
 * exception set. */
int apy_run_notebook(const PyConfig *config, const apy_options_t *opts,
                     int *unhandled_sigint, apy_nbrun_outcome_t *outcome);

/* Returns the name of the first notebook-only option given in opts
 * ("-o/--output", "--inplace", ...), or NULL if none was: the launcher
 * rejects them with a non-notebook target (usage error, exit 2). */
const char *apy_run_notebook_option_given(const apy_options_t *opts);

#endif
