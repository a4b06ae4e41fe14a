/* SPDX-License-Identifier: MIT */
/* Running a target as __main__ (src/run/): script, -m, -c, stdin. */
#ifndef APYRUN_RUN_H
#define APYRUN_RUN_H

#include <Python.h>
#include "apyrun/cli.h"

/* Runs the target that `config` (as read by PyConfig_Read) and `opts`
 * name, in the initialised interpreter, and returns the exit code before
 * finalisation (0, 1, 2...). A SystemExit may end the process from inside
 * (as python's PyErr_Print does). Sets *unhandled_sigint when the program
 * ended with an uncaught KeyboardInterrupt, so the caller dies by SIGINT
 * after finalising. Never returns with a Python exception set. */
int apy_run_target(const PyConfig *config, const apy_options_t *opts,
                   int *unhandled_sigint);

#endif
