/* SPDX-License-Identifier: MIT */
/* Internal wakeups of the loop: uv_async (other threads), the signal pipe
 * (Python's wakeup fd: the loop never installs uv_signal handlers for
 * signals Python owns) and the deadline timer. Plain C on libuv: the
 * callbacks here only set bits and drain the pipe, so they are safe to run
 * while the loop thread has released the GIL. */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "wakeup.h"

#define WAKEUP_OF(handle, field)                                           \
    ((apy_wakeup_t *)((char *)(handle)-offsetof(apy_wakeup_t, field)))

static void
on_async(uv_async_t *handle)
{
    WAKEUP_OF(handle, async)->fired |= APY_WAKE_ASYNC;
}

static void
on_timer(uv_timer_t *handle)
{
    WAKEUP_OF(handle, timer)->fired |= APY_WAKE_TIMER;
    /* uv_run(UV_RUN_ONCE) runs due timers before it computes the poll
     * timeout (libuv 1.44, src/unix/core.c): a deadline already due when
     * uv_run starts fires here, leaves no timer, and the poll would then
     * block forever. Stopping makes that poll non-blocking. */
    uv_stop(handle->loop);
}

static void
on_sigpipe(uv_poll_t *handle, int status, int events)
{
    apy_wakeup_t *w = WAKEUP_OF(handle, sigpoll);
    char buf[256];

    /* The bytes are signal numbers written by CPython's C-level handler.
     * They only mean "a signal arrived": the Python-level handlers run
     * from PyErr_CheckSignals() once the loop holds the GIL again, so
     * draining is all that is needed here. */
    for (;;) {
        ssize_t n = read(w->sig_rfd, buf, sizeof(buf));
        if (n > 0) {
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        break;
    }
    w->fired |= APY_WAKE_SIGNAL;
}

static void
on_closed(uv_handle_t *handle)
{
    apy_wakeup_t *w = handle->data;
    if (handle == (uv_handle_t *)&w->sigpoll) {
        /* libuv is done with the fd only now. */
        close(w->sig_rfd);
        close(w->sig_wfd);
        w->sig_rfd = w->sig_wfd = -1;
    }
    w->nopen--;
}

/* 0 or a negative UV_E* code (contracts: wakeup.h). */
int
apy__wakeup_init(apy_wakeup_t *w, uv_loop_t *loop)
{
    int fds[2];
    int err;

    w->fired = 0;
    w->ninit = 0;
    w->nopen = 0;
    w->sig_rfd = w->sig_wfd = -1;
    /* CPython requires a non-blocking wakeup fd; a full pipe then drops
     * bytes, which is fine since any byte means "wake up". */
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        return -errno;
    }
    w->sig_rfd = fds[0];
    w->sig_wfd = fds[1];

    err = uv_async_init(loop, &w->async, on_async);
    if (err < 0) {
        goto fail_pipe;
    }
    w->async.data = w;
    w->ninit++;
    w->nopen++;
    uv_unref((uv_handle_t *)&w->async);

    err = uv_timer_init(loop, &w->timer);
    if (err < 0) {
        goto fail_handles;
    }
    w->timer.data = w;
    w->ninit++;
    w->nopen++;
    uv_unref((uv_handle_t *)&w->timer);

    err = uv_poll_init(loop, &w->sigpoll, w->sig_rfd);
    if (err < 0) {
        goto fail_handles;
    }
    w->sigpoll.data = w;
    w->ninit++;
    w->nopen++;
    uv_unref((uv_handle_t *)&w->sigpoll);
    err = uv_poll_start(&w->sigpoll, UV_READABLE, on_sigpipe);
    if (err < 0) {
        goto fail_handles;
    }
    return 0;

fail_handles:
    /* The pipe is closed by sigpoll's close callback if it got that far. */
    if (w->ninit == 3) {
        apy__wakeup_close(w);
        return err;
    }
    apy__wakeup_close(w);
fail_pipe:
    close(w->sig_rfd);
    close(w->sig_wfd);
    w->sig_rfd = w->sig_wfd = -1;
    return err;
}

/* 0 or a negative UV_E* code; thread- and signal-safe. */
int
apy__wakeup_send(apy_wakeup_t *w)
{
    return uv_async_send(&w->async);
}

/* References the async handle and arms the deadline. */
void
apy__wakeup_arm(apy_wakeup_t *w, long long timeout_ms)
{
    uv_ref((uv_handle_t *)&w->async);
    if (timeout_ms < 0) {
        uv_timer_stop(&w->timer);
        return;
    }
    /* libuv measures the timeout from its cached loop time, which may be
     * stale after many iterations that never entered uv_run: refresh it
     * or the timer would fire at once and the poll would then sleep with
     * no deadline at all. */
    uv_update_time(w->timer.loop);
    uv_timer_start(&w->timer, on_timer, (uint64_t)timeout_ms, 0);
}

/* Drops apy__wakeup_arm()'s reference. */
void
apy__wakeup_disarm(apy_wakeup_t *w)
{
    uv_unref((uv_handle_t *)&w->async);
}

/* The APY_WAKE_* bits since the last call. */
unsigned int
apy__wakeup_take(apy_wakeup_t *w)
{
    unsigned int fired = w->fired;
    w->fired = 0;
    return fired;
}

static void
close_one(uv_handle_t *handle)
{
    if (!uv_is_closing(handle)) {
        uv_close(handle, on_closed);
    }
}

/* Starts closing the handles; idempotent. */
void
apy__wakeup_close(apy_wakeup_t *w)
{
    /* ninit tells how far apy__wakeup_init() got, in order. */
    int n = w->ninit;
    if (n >= 1) {
        close_one((uv_handle_t *)&w->async);
    }
    if (n >= 2) {
        close_one((uv_handle_t *)&w->timer);
    }
    if (n >= 3) {
        close_one((uv_handle_t *)&w->sigpoll);
    }
}

/* 1 once every handle has closed. */
int
apy__wakeup_closed(const apy_wakeup_t *w)
{
    return w->nopen == 0;
}
