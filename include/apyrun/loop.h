/* SPDX-License-Identifier: MIT */
/* The loop as other layers see it (src/tla, src/run, src/embed): apyrun's
 * event loop is a Python object (apyrun.Loop); these are the few C-level
 * controls that Python code cannot reach. */
#ifndef APYRUN_LOOP_H
#define APYRUN_LOOP_H

#include <Python.h>

/* Turns stall detection on (on != 0) or off for loop. While on,
 * loop.run_until_complete(fut) raises apyrun.NeverCompletedError (a
 * RuntimeError subclass, with the future as its `future` attribute)
 * instead of blocking forever when fut is pending and nothing can make
 * progress: no ready callbacks, no live timers, no active user libuv
 * handles, no add_signal_handler() handlers, and no Python thread alive
 * other than idle workers of the loop's default executor (while other
 * threads live it re-checks every 100 ms). Returns 1 if loop is an
 * apyrun Loop (flag updated), 0 if it is not one; never sets an
 * exception. Needs the GIL. */
int apy_loop_set_stall_check(PyObject *loop, int on);

/* Tells whether loop is running its ready callbacks (task steps,
 * call_soon and I/O callbacks: user code, which may block) rather than
 * waiting for events or doing its own work between callbacks. A SIGINT
 * handler uses it to choose between interrupting the code that runs and
 * cancelling the main task that awaits. Returns 1 if loop is an apyrun
 * Loop (*in_callback set to 1 or 0), 0 if it is not one (*in_callback
 * untouched); never sets an exception. Needs the GIL. */
int apy_loop_in_callback(PyObject *loop, int *in_callback);

#endif
