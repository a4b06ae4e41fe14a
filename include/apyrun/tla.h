/* SPDX-License-Identifier: MIT */
/* Top-level await (src/tla/): compiling code that may await at module
 * level, and driving a module coroutine as the main task. */
#ifndef APYRUN_TLA_H
#define APYRUN_TLA_H

#include <Python.h>

/* Compiles `source` (bytes, NUL-terminated) as a module named by
 * `filename` with compiler flags `flags`. Plain compile first; only when
 * that fails is the TLA-flagged compile tried, and its result is kept only
 * if it yields a CO_COROUTINE code object (DESIGN 2). TLA code then gets
 * the awaited imports (apyrun/tla_rewrite.h): every import statement
 * that runs in the module's own frame (not inside a def, class or
 * lambda; `from __future__` excepted) is preceded by an awaited call
 * that imports the same names first, so a TLA module imported there is
 * awaited; the statement itself then binds names exactly as python does.
 * Returns a new code object and sets *is_tla, or NULL with the plain
 * compile's exception set (so a genuine syntax error reads as python
 * reports it; a failing rewrite sets its own). */
PyObject *apy_tla_compile(const char *source, PyObject *filename, int flags,
                          int *is_tla);

/* Returns 1 if `code` is a code object flagged CO_COROUTINE, else 0. */
int apy_tla_is_coroutine_code(PyObject *code);

/* Runs the TLA code object `code` in `globals` as the main task of a new
 * event loop (asyncio's default: apyrun's unless --loop asyncio), with
 * asyncio.run semantics: Ctrl-C cancels the main task while it awaits
 * (but interrupts user code that runs, and any Ctrl-C after the cancel
 * interrupts), leftover tasks are cancelled, async generators and the
 * default executor are shut down, the loop is closed.
 * Returns 0 on success. Returns -1 with the program's exception set, its
 * traceback stripped of leading asyncio/apyrun frames (KeyboardInterrupt
 * after a Ctrl-C). Returns -2 with no exception set when the program can
 * never finish: the "top-level await never completed" report has then been
 * written to stderr. */
int apy_tla_run_main(PyObject *code, PyObject *globals);

/* A new event loop for main tasks: asyncio.new_event_loop() (apyrun's
 * unless --loop asyncio), with stall detection when it is apyrun's (a
 * task that can never finish is reported, not waited for); not made
 * current. Returns a new reference, or NULL with an exception set. The
 * importer runs loop-less imports of TLA modules on one such loop. */
PyObject *apy_tla_new_loop(void);

/* Opens an event loop for main tasks: asyncio.new_event_loop() (apyrun's
 * unless --loop asyncio), set as the current loop, with stall detection
 * when it is apyrun's. Returns a new reference, or NULL with an exception
 * set. Notebooks run every cell on one such loop. */
PyObject *apy_tla_open_loop(void);

/* Runs coro as a main task on loop (opened by apy_tla_open_loop) until it
 * is done, with apy_tla_run_main's Ctrl-C semantics. Returns 0 and, if result
 * is not NULL, a new reference to the coroutine's value in *result;
 * -1 with the exception set (leading asyncio/apyrun frames stripped;
 * KeyboardInterrupt after a Ctrl-C); -2 with no exception when it can
 * never finish (the report is written to stderr). */
int apy_tla_run_coro(PyObject *loop, PyObject *coro, PyObject **result);

/* Closes a loop from apy_tla_open_loop as asyncio.Runner.close does:
 * cancels leftover tasks, shuts down async generators and the default
 * executor, unsets and closes it. An exception already set wins and stays
 * set (returns -1). Returns 0, -1 with an exception set, or -2 (reported)
 * when cancelled tasks never finish. */
int apy_tla_close_loop(PyObject *loop);

/* Strips the leading frames of the current exception's traceback that
 * belong to asyncio or apyrun (the runner, the loop), so the report starts
 * at the user's code. Call with an exception set; keeps it set. */
void apy_tla_strip_internal_frames(void);

#endif
