/* SPDX-License-Identifier: MIT */
/* What the runner itself says on stderr: on a terminal, "cell k of n"
 * before each cell and a summary at the end; anywhere, the one-line report
 * naming a failing cell. Colour only on a terminal and never with
 * NO_COLOR. Output goes to the real stderr, never into the notebook. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define DIM "\033[2m"
#define RED "\033[1;31m"
#define RESET "\033[0m"

double
apy__nbrun_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void
apy__nbrun_progress_init(apy_nbrun_t *run)
{
    const char *no_color = getenv("NO_COLOR");
    run->progress = isatty(STDERR_FILENO);
    run->color = run->progress && (no_color == NULL || no_color[0] == '\0');
}

/* Writes one line to the real stderr (the program's output before it is
 * flushed first, so that the order on a terminal is right). */
static void
say(apy_nbrun_t *run, const char *line)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *out = PySys_GetObject("stdout"); /* borrowed */
    if (out != NULL && out != Py_None) {
        PyObject *r = PyObject_CallMethod(out, "flush", NULL);
        Py_XDECREF(r);
        PyErr_Clear();
    }
    PyErr_Restore(type, value, tb);
    apy__nbrun_write_real(run, APY_NBRUN_STDERR, line);
}

void
apy__nbrun_progress_cell(apy_nbrun_t *run)
{
    if (!run->progress) {
        return;
    }
    char line[256];
    snprintf(line, sizeof(line),
             "%s[apyrun] cell %zu of %zu, In [%d] (%.1fs)%s\n",
             run->color ? DIM : "", run->cur + 1, run->nb.ncells,
             run->count, apy__nbrun_now() - run->t0,
             run->color ? RESET : "");
    say(run, line);
}

void
apy__nbrun_progress_done(apy_nbrun_t *run)
{
    if (!run->progress) {
        return;
    }
    char line[256];
    snprintf(line, sizeof(line), "%s[apyrun] %zu of %zu code cells run in "
             "%.2fs%s\n", run->color ? DIM : "", run->done_code, run->ncode,
             apy__nbrun_now() - run->t0, run->color ? RESET : "");
    say(run, line);
}

void
apy__nbrun_report_cell(apy_nbrun_t *run, const char *what)
{
    char line[1024];
    char count[32] = "";
    if (run->count > 0) {
        snprintf(count, sizeof(count), ", In [%d]", run->count);
    }
    snprintf(line, sizeof(line), "%sapyrun: %s in cell %zu%s of %s%s\n",
             run->color ? RED : "", what, run->cur + 1, count,
             run->shown_path, run->color ? RESET : "");
    say(run, line);
    if (run->outcome != NULL) {
        int is_error = strcmp(what, "error") == 0;
        if (!is_error
            && strncmp(run->exc_line, "KeyboardInterrupt", 17) == 0) {
            run->exc_line[0] = '\0'; /* how a timeout or Ctrl-C stops */
        }
        run->outcome->cell = (int)run->cur + 1;
        snprintf(run->outcome->message, sizeof(run->outcome->message),
                 "%s%s%s", is_error ? "" : what,
                 !is_error && run->exc_line[0] != '\0' ? ": " : "",
                 run->exc_line[0] != '\0' || !is_error ? run->exc_line
                                                        : what);
    }
}
