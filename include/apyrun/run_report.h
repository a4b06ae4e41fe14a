/* SPDX-License-Identifier: MIT */
/* What every runner of a target as __main__ shares (src/run/report/):
 * used by src/run's script and -m runners and by src/run/notebook. */
#ifndef APYRUN_RUN_REPORT_H
#define APYRUN_RUN_REPORT_H

#include <Python.h>

/* Turns the current exception into python's report and exit code 1 (a
 * SystemExit may end the process here, as in python). Sets
 * *unhandled_sigint for a KeyboardInterrupt. Returns the exit code. */
int apy_run_report_error(int *unhandled_sigint);

/* Maps apy_tla_run_main's result (0, -1 with an exception, -2 reported)
 * to an exit code, reporting the exception if any. */
int apy_run_tla_result(int rc, int *unhandled_sigint);

/* Inserts path0 at the front of sys.path unless -P / PYTHONSAFEPATH.
 * Returns 0, or -1 with an exception set. */
int apy_run_set_path0(const PyConfig *config, PyObject *path0);

/* python -i: the REPL after the target ran, when asked (-i or
 * PYTHONINSPECT set by the program) and stdin is interactive. Updates
 * *exitcode like python's pymain_repl. */
void apy_run_inspect(const PyConfig *config, int *exitcode);

#endif
