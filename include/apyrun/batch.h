/* SPDX-License-Identifier: MIT */
/* apyrun --test (src/batch/, DESIGN 6): many notebooks, each in a process
 * of its own forked from this interpreter, N at a time, with pytest's
 * report, exit codes, JUnit XML and shards. */
#ifndef APYRUN_BATCH_H
#define APYRUN_BATCH_H

#include <Python.h>
#include "apyrun/cli.h"

/* Runs the batch opts->test_opts describes, with opts' run options for
 * each notebook, in the initialised interpreter (config as read). No
 * thread may be running. Returns the exit code: 0 all passed, 1 some
 * failed, 2 usage error, 5 nothing collected, 128+N stopped by signal
 * N; sets *unhandled_sigint after a Ctrl-C, so the caller dies by
 * SIGINT after finalising. Never returns with a Python exception set. */
int apy_batch_main(const PyConfig *config, const apy_options_t *opts,
                   int *unhandled_sigint);

#endif
