/* SPDX-License-Identifier: MIT */
/* The event loop (src/loop/): what other layers may call in C. */
#ifndef APYRUN_LOOP_H
#define APYRUN_LOOP_H

#include <Python.h>

/* Turns stall detection on or off for run_until_complete on `loop`.
 * Returns 1 if loop is an apyrun Loop (flag updated), 0 if it is not one
 * (nothing done, no exception). While on, run_until_complete raises
 * apyrun.NeverCompletedError instead of waiting forever when nothing
 * could ever complete its future. */
int apy_loop_set_stall_check(PyObject *loop, int on);

#endif
