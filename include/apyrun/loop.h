/* SPDX-License-Identifier: MIT */
/* The loop as other layers see it (src/tla, src/run, src/embed,
 * src/module): apyrun's event loop is a Python object (apyrun.Loop); these
 * are the few C-level controls that Python code cannot reach, and the
 * opaque state the `apyrun` module keeps the loop's types in. This is the
 * loop layer's whole public interface. */
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

/* The loop's part of the `apyrun` module state: its heap types and the
 * Python objects the loop calls. Opaque outside src/loop. The module
 * layer keeps one per module object, and the pointer to it must be the
 * FIRST member of the module's state: the loop finds it from its types
 * (PyType_GetModuleState) through that pointer. */
typedef struct apy_loop_state_s apy_loop_state_t;

/* Returns a new, empty state (no types yet), to be stored in the module
 * state before apy_loop_state_init() runs; free it with
 * apy_loop_state_free(). NULL with MemoryError. */
apy_loop_state_t *apy_loop_state_new(void);

/* Fills st: imports the asyncio pieces the loop calls, creates the heap
 * types and adds Loop, EventLoopPolicy, NeverCompletedError, Handle,
 * TimerHandle, _LoopCore, TCPTransport and UnixTransport to module.
 * Returns 0, or -1 with an exception set (the module's m_clear then
 * clears st). */
int apy_loop_state_init(PyObject *module, apy_loop_state_t *st);

/* GC traverse of every object st holds (st may be NULL). Returns what
 * visit returned, or 0. */
int apy_loop_state_traverse(apy_loop_state_t *st, visitproc visit,
                            void *arg);

/* Drops every reference st holds and its freelists; st stays allocated
 * (objects of the module's types may still die and look at it). NULL is
 * allowed. Never fails. */
void apy_loop_state_clear(apy_loop_state_t *st);

/* Clears st and frees it, for the module's m_free. NULL is allowed. */
void apy_loop_state_free(apy_loop_state_t *st);

/* apyrun.Loop and apyrun.EventLoopPolicy of st: borrowed references, NULL
 * until apy_loop_state_init() built them (or once cleared); never sets an
 * exception. */
PyObject *apy_loop_state_loop_type(const apy_loop_state_t *st);
PyObject *apy_loop_state_policy_type(const apy_loop_state_t *st);

#endif
