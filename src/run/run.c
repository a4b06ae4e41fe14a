/* SPDX-License-Identifier: MIT */
/* apy_run_target: which runner runs the target as __main__, a notebook
 * (src/run/notebook), -c, -m, a file or stdin (script.c, module.c), or
 * python's own Py_RunMain for what apyrun adds nothing to (the REPL).
 * Dispatch only. */
#include <Python.h>

#include <stdio.h>
#include <unistd.h>

#include "apyrun/cli.h"
#include "apyrun/nbrun.h"
#include "apyrun/run.h"
#include "run.h"

int
apy_run_target(const PyConfig *config, const apy_options_t *opts,
               int *unhandled_sigint)
{
    int exitcode = -3;
    /* Notebooks (src/run/notebook); notebook options need one. */
    if (apy_cli_target_is_notebook(opts)) {
        return apy_run_notebook(config, opts, unhandled_sigint, NULL);
    }
    if (apy_run_notebook_option_given(opts) != NULL) {
        fprintf(stderr, "apyrun: %s is a notebook option, and the target "
                "is not a notebook (.ipynb, .md, or --notebook)\n",
                apy_run_notebook_option_given(opts));
        return 2;
    }
    if (config->run_command != NULL) {
        exitcode = apy__run_command(config, unhandled_sigint);
    } else if (config->run_module != NULL) {
        exitcode = apy__run_module(config, unhandled_sigint);
    } else if (config->run_filename != NULL) {
        exitcode = apy__run_file(config, opts->py_argv[0], unhandled_sigint);
    } else if (!isatty(fileno(stdin)) && !config->interactive) {
        exitcode = apy__run_stdin(config, unhandled_sigint);
    }
    if (exitcode == -3) {
        /* python's own main: it also finalises and dies by SIGINT itself;
         * the caller's later Py_FinalizeEx is then a no-op. */
        exitcode = Py_RunMain();
    }
    return exitcode;
}
