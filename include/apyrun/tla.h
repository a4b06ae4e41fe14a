/* SPDX-License-Identifier: MIT */
/* Top-level await (src/tla/): compiling code that may await at module
 * level, and driving a module coroutine as the main task. */
#ifndef APYRUN_TLA_H
#define APYRUN_TLA_H

#include <Python.h>

/* Compiles `source` (bytes, NUL-terminated) as a module named by
 * `filename` with compiler flags `flags`. Plain compile first; only when
 * that fails is the TLA-flagged compile tried, and its result is kept only
 * if it yields a CO_COROUTINE code object (DESIGN 2). Returns a new code
 * object and sets *is_tla, or NULL with the plain compile's exception set
 * (so a genuine syntax error reads as python reports it). */
PyObject *apy_tla_compile(const char *source, PyObject *filename, int flags,
                          int *is_tla);

/* Returns 1 if `code` is a code object flagged CO_COROUTINE, else 0. */
int apy_tla_is_coroutine_code(PyObject *code);

/* Runs the TLA code object `code` in `globals` as the main task of a new
 * event loop (asyncio's default: apyrun's unless --loop asyncio), with
 * asyncio.run semantics: Ctrl-C cancels the main task (the second one
 * interrupts), leftover tasks are cancelled, async generators and the
 * default executor are shut down, the loop is closed.
 * Returns 0 on success. Returns -1 with the program's exception set, its
 * traceback stripped of leading asyncio/apyrun frames (KeyboardInterrupt
 * after a Ctrl-C). Returns -2 with no exception set when the program can
 * never finish: the "top-level await never completed" report has then been
 * written to stderr. */
int apy_tla_run_main(PyObject *code, PyObject *globals);

/* Strips the leading frames of the current exception's traceback that
 * belong to asyncio or apyrun (the runner, the loop), so the report starts
 * at the user's code. Call with an exception set; keeps it set. */
void apy_tla_strip_internal_frames(void);

#endif
