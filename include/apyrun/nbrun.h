/* SPDX-License-Identifier: MIT */
/* Running a notebook as __main__ (src/run/notebook/): cells in order on one
 * event loop, outputs recorded into the executed notebook (DESIGN 3). */
#ifndef APYRUN_NBRUN_H
#define APYRUN_NBRUN_H

#include <Python.h>
#include "apyrun/cli.h"

/* Runs the notebook that config->run_filename names, in the initialised
 * interpreter, with the notebook options of opts. Returns the exit code
 * (DESIGN 6): 0, 1 for a cell error, 2 for bad input or a usage error,
 * 124 when --timeout/--total-timeout expired, SystemExit's code after
 * sys.exit(). Sets *unhandled_sigint when a Ctrl-C ended the run, so the
 * caller dies by SIGINT after finalising; a SIGTERM during the run ends
 * the process by SIGTERM once the executed notebook is saved. Never
 * returns with a Python exception set. */
int apy_run_notebook(const PyConfig *config, const apy_options_t *opts,
                     int *unhandled_sigint);

/* Returns the name of the first notebook-only option given in opts
 * ("-o/--output", "--inplace", ...), or NULL if none was: the launcher
 * rejects them with a non-notebook target (usage error, exit 2). */
const char *apy_run_notebook_option_given(const apy_options_t *opts);

#endif
