/* SPDX-License-Identifier: MIT */
/* Private to src/run: the runners of scripts, -c, stdin and -m, as the
 * dispatch calls them. */
#ifndef APYRUN_RUN_PRIVATE_H
#define APYRUN_RUN_PRIVATE_H

#include <Python.h>

/* The runners the dispatch (run.c) picks; each returns the exit code
 * and never returns with an exception set. */

/* -c CODE (script.c). */
int apy__run_command(const PyConfig *config, int *unhandled_sigint);

/* The script file config->run_filename, program as given (script.c). */
int apy__run_file(const PyConfig *config, const char *program,
                  int *unhandled_sigint);

/* The program on stdin, which is not a terminal (script.c). */
int apy__run_stdin(const PyConfig *config, int *unhandled_sigint);

/* Runs the -m target (runpy semantics; TLA modules as the main task). */
int apy__run_module(const PyConfig *config, int *unhandled_sigint);

#endif
