/* SPDX-License-Identifier: MIT */
/* The loop's internal wakeups (src/loop/wakeup.c), plain C on libuv: a
 * uv_async for other threads, a pipe whose write end becomes Python's
 * signal wakeup fd, and one uv_timer for the nearest deadline. All three
 * are unreferenced, so they never keep uv_run alive on their own. */
#ifndef APY_LOOP_WAKEUP_H
#define APY_LOOP_WAKEUP_H

#include <uv.h>

/* Bits reported by apy__wakeup_take(). */
#define APY_WAKE_ASYNC 0x1u  /* apy__wakeup_send() was called */
#define APY_WAKE_SIGNAL 0x2u /* bytes arrived on the signal pipe */
#define APY_WAKE_TIMER 0x4u  /* the deadline timer expired */

typedef struct apy_wakeup_s {
    uv_async_t async;
    uv_poll_t sigpoll;
    uv_timer_t timer;
    int sig_rfd;        /* read end, watched by sigpoll */
    int sig_wfd;        /* write end: what signal.set_wakeup_fd() gets */
    unsigned int fired; /* APY_WAKE_* bits, written by the callbacks */
    int ninit;          /* handles initialised, in declaration order */
    int nopen;          /* handles initialised and not yet closed */
} apy_wakeup_t;

/* Creates the pipe and the three handles on loop, all unreferenced.
 * Returns 0 or a negative UV_E* code; on failure, handles already
 * initialised are being closed: run the loop until apy__wakeup_closed(). */
int apy__wakeup_init(apy_wakeup_t *w, uv_loop_t *loop);

/* Thread-safe and async-signal-safe: wakes a loop blocked in uv_run.
 * Returns 0 or a negative UV_E* code. */
int apy__wakeup_send(apy_wakeup_t *w);

/* Prepares a blocking uv_run(UV_RUN_ONCE): references the async handle
 * so the loop stays alive, and arms the timer for timeout_ms (< 0: no
 * deadline, the timer is stopped). Call apy__wakeup_disarm() after. */
void apy__wakeup_arm(apy_wakeup_t *w, long long timeout_ms);

/* Undoes apy__wakeup_arm()'s reference (the timer may stay armed: it is
 * unreferenced and re-armed before every blocking poll). */
void apy__wakeup_disarm(apy_wakeup_t *w);

/* Returns the APY_WAKE_* bits fired since the last call, and clears them. */
unsigned int apy__wakeup_take(apy_wakeup_t *w);

/* Starts closing every open handle; the pipe is closed when its poll
 * handle is. Idempotent. Run the loop until apy__wakeup_closed(). */
void apy__wakeup_close(apy_wakeup_t *w);

/* Returns 1 when every handle has finished closing. */
int apy__wakeup_closed(const apy_wakeup_t *w);

#endif
