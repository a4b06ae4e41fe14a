/* SPDX-License-Identifier: MIT */
/* What a notebook run gives the IPython layer (src/ipython): the host
 * table through which %%time and %%capture run a body that may await,
 * capture into the recorder and show figures, and the run's own
 * builtins.__apyrun_nb__. The magics themselves are src/ipython's. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "apyrun/ipython.h"
#include "internal.h"

static int
host_run_source(void *ctx, const char *body, size_t first_line)
{
    return apy__nbrun_run_source(ctx, body, first_line);
}

static int
host_capture_begin(void *ctx, const int take[3])
{
    return apy__nbrun_capture_begin(ctx, take[0], take[1], take[2]);
}

static PyObject *
host_capture_end(void *ctx)
{
    return apy__nbrun_capture_end(ctx);
}

static int
host_flush_figures(void *ctx)
{
    return apy__nbrun_flush_figures(ctx, 1);
}

static int
host_shell_made(void *ctx)
{
    return apy__nbrun_display_init(ctx);
}

static PyObject *
host_globals(void *ctx)
{
    return ((apy_nbrun_t *)ctx)->globals;
}

static int
host_page(void *ctx, const char *text)
{
    apy__nbrun_write_real(ctx, APY_NBRUN_STDOUT, text);
    return 0;
}

static int
host_note(void *ctx, const char *text)
{
    apy__nbrun_write_real(ctx, APY_NBRUN_STDERR, text);
    return 0;
}

static int
host_records(void *ctx)
{
    apy_nbrun_t *run = ctx;
    return run->recording;
}

static int
host_message(void *ctx, const char *msg_type, PyObject *content)
{
    return apy__nbrun_message(ctx, msg_type, content);
}

static const apy_ipy_host_t run_host = {
    .run_source = host_run_source,
    .capture_begin = host_capture_begin,
    .capture_end = host_capture_end,
    .flush_figures = host_flush_figures,
    .shell_made = host_shell_made,
    .globals = host_globals,
    .page = host_page,
    .records = host_records,
    .note = host_note,
    .message = host_message,
};

int
apy__nbrun_magics_init(apy_nbrun_t *run)
{
    run->magics = apy_ipy_magics_new(&run_host, run);
    if (run->magics == NULL) {
        return -1;
    }
    return apy_ipy_magics_put(run->magics);
}

void
apy__nbrun_magics_fini(apy_nbrun_t *run)
{
    if (run->magics != NULL) {
        apy_ipy_magics_detach(run->magics);
    }
    Py_CLEAR(run->magics);
}
