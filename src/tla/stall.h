/* SPDX-License-Identifier: MIT */
/* Private to src/tla: the stall report. */
#ifndef APYRUN_TLA_STALL_H
#define APYRUN_TLA_STALL_H

#include <Python.h>

/* Writes "top-level await never completed" and the await chain of
 * main_task (frames, awaited tasks, the pending future) to sys.stderr.
 * Returns 0, or -1 with an exception set. */
int apy__tla_write_stall_report(PyObject *main_task);

#endif
