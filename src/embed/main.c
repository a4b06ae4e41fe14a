/* SPDX-License-Identifier: MIT */
/* apyrun_main: the phases of a run, as CPython's Modules/main.c shows
 * them: parse argv, configure, initialise, run the target, finalise and
 * turn the outcome into an exit code (DESIGN.md section 6). */
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "apyrun/batch.h"
#include "apyrun/cli.h"
#include "apyrun/embed.h"
#include "apyrun/importer.h"
#include "apyrun/module.h"
#include "apyrun/run.h"
#include "apyrun_config.h"
#include "embed_internal.h"

/* The -V line: every version a bug report needs. */
static void
print_version(void)
{
    /* Py_GetVersion() reads static data and is safe before init. */
    char pyver[64];
    snprintf(pyver, sizeof(pyver), "%s", Py_GetVersion());
    pyver[strcspn(pyver, " ")] = '\0';
    printf("apyrun %s (Python %s, libuv %s, cJSON %s)\n", APYRUN_VERSION,
           pyver, uv_version_string(), cJSON_Version());
}

/* Options -> PyConfig. CPython parses its own options (parse_argv); the
 * stdlib is pinned to libpython's prefix so that a copied or symlinked
 * binary still finds it. A virtualenv needs no help here: site.py sees
 * pyvenv.cfg beside sys.executable, as it does for the venv's python. */
static PyStatus
configure(PyConfig *config, const apy_options_t *opts)
{
    PyStatus status;

    PyConfig_InitPythonConfig(config);
    status = PyConfig_SetBytesArgv(config, opts->py_argc, opts->py_argv);
    if (PyStatus_Exception(status)) {
        return status;
    }
    const char *env_home = getenv("PYTHONHOME");
    if (opts->ignore_env || env_home == NULL || env_home[0] == '\0') {
        status = PyConfig_SetBytesString(config, &config->home,
                                         APYRUN_PYTHON_HOME);
        if (PyStatus_Exception(status)) {
            return status;
        }
    }
    return PyConfig_Read(config);
}

/* Dies by SIGINT, as python does after an unhandled KeyboardInterrupt, so
 * that a calling shell sees the signal (bpo-1054041). Returns only if that
 * failed, with the conventional code. */
static int
exit_sigint(void)
{
    fflush(stdout);
    fflush(stderr);
    signal(SIGINT, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    kill(getpid(), SIGINT);
    return 128 + SIGINT;
}

/* Opens /dev/null on each of fds 0, 1 and 2 that is closed, before
 * anything else can take one of those numbers: libuv aborts when it is
 * handed one of its own descriptors there (uv__close asserts fd > 2), and
 * a notebook's outputs must still be recorded when stdout was closed.
 * Returns 0, or -1 if /dev/null cannot be opened (nothing can be said
 * then: stderr may be what is missing). */
static int
open_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) {
            continue;
        }
        /* open() gives the lowest free number, which is fd: every lower
         * one is open by now. */
        int got = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
        if (got != fd) {
            if (got >= 0) {
                close(got);
            }
            return -1;
        }
    }
    return 0;
}

int
apyrun_main(int argc, char **argv)
{
    apy_options_t opts;
    char err[512];
    PyConfig config;
    int exitcode;
    int unhandled_sigint = 0;

    if (open_std_fds() < 0) {
        return 2;
    }
    if (apy_cli_parse(argc, argv, &opts, err, sizeof(err)) < 0) {
        fprintf(stderr, "apyrun: %s\n", err);
        apy_cli_free(&opts);
        return 2;
    }
    if (opts.show_version) {
        print_version();
        apy_cli_free(&opts);
        return 0;
    }
    if (opts.test && opts.show_help) {
        apy_cli_print_test_help(stdout, argc > 0 ? argv[0] : "apyrun");
        apy_cli_free(&opts);
        return 0;
    }
    if (opts.show_help) {
        /* Ours first; CPython then prints its own options and exits 0
         * from PyConfig_Read below. */
        apy_cli_print_help(stdout, argc > 0 ? argv[0] : "apyrun");
        fflush(stdout);
    }

    apy__embed_use_hugepage_arenas();
    if (PyImport_AppendInittab("apyrun", apy_module_init) < 0
        || PyImport_AppendInittab(APY_IMPORTER_MODULE_NAME,
                                  apy_importer_module_init) < 0) {
        fprintf(stderr, "apyrun: cannot register the apyrun module\n");
        apy_cli_free(&opts);
        return 1;
    }
    PyStatus status = configure(&config, &opts);
    if (PyStatus_Exception(status)) {
        goto fail;
    }
    status = Py_InitializeFromConfig(&config);
    if (PyStatus_Exception(status)) {
        goto fail;
    }
    if ((opts.loop == APY_LOOP_APYRUN && apy_importer_install_loop_hook() < 0)
        || apy_importer_install() < 0) {
        PyErr_Print();
        exitcode = 1;
    } else if (opts.test) {
        exitcode = apy_batch_main(&config, &opts, &unhandled_sigint);
    } else {
        exitcode = apy_run_target(&config, &opts, &unhandled_sigint);
    }
    PyConfig_Clear(&config);
    apy_cli_free(&opts);

    if (Py_FinalizeEx() < 0) {
        exitcode = 120;
    }
    if (unhandled_sigint) {
        exitcode = exit_sigint();
    }
    return exitcode;

fail:
    PyConfig_Clear(&config);
    apy_cli_free(&opts);
    if (PyStatus_IsExit(status)) {
        return status.exitcode;
    }
    Py_ExitStatusException(status);
}
