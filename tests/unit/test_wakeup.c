/* SPDX-License-Identifier: MIT */
/* The loop's internal wakeups (src/loop/wakeup.c): a blocked uv_run must
 * return for a thread's uv_async, for a byte on the signal wakeup fd
 * (what CPython's C signal handler writes), and for the deadline timer;
 * every loop ends clean (all handles closed, uv_loop_close() == 0). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "wakeup.h"
#include "runner.h"

static uv_loop_t loop;
static apy_wakeup_t wakeup;

static void
setup(void)
{
    ASSERT_EQ(uv_loop_init(&loop), 0);
    ASSERT_EQ(apy__wakeup_init(&wakeup, &loop), 0);
}

/* libuv's MAKE_VALGRIND_HAPPY, with the check made explicit. */
static void
teardown_clean(void)
{
    int rfd = wakeup.sig_rfd, wfd = wakeup.sig_wfd;
    apy__wakeup_close(&wakeup);
    apy__wakeup_close(&wakeup); /* idempotent */
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT(apy__wakeup_closed(&wakeup));
    ASSERT_EQ(uv_loop_close(&loop), 0);
    ASSERT(fcntl(rfd, F_GETFD) == -1 && errno == EBADF);
    ASSERT(fcntl(wfd, F_GETFD) == -1 && errno == EBADF);
}

static uint64_t
now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Blocks in uv_run(ONCE) with no deadline; returns the elapsed ms. */
static uint64_t
block_once(long long timeout_ms)
{
    uint64_t t0 = now_ms();
    apy__wakeup_arm(&wakeup, timeout_ms);
    uv_run(&loop, UV_RUN_ONCE);
    apy__wakeup_disarm(&wakeup);
    return now_ms() - t0;
}

static void *
send_async_later(void *arg)
{
    sleep_ms(50);
    ASSERT_EQ(apy__wakeup_send(&wakeup), 0);
    return NULL;
}

TEST(wakeup_async_from_thread)
{
    pthread_t t;
    setup();
    ASSERT_EQ(pthread_create(&t, NULL, send_async_later, NULL), 0);
    uint64_t elapsed = block_once(-1);
    pthread_join(t, NULL);
    ASSERT(elapsed >= 40 && elapsed < 5000);
    ASSERT_EQ(apy__wakeup_take(&wakeup), APY_WAKE_ASYNC);
    ASSERT_EQ(apy__wakeup_take(&wakeup), 0);
    teardown_clean();
}

static void *
write_sigfd_later(void *arg)
{
    sleep_ms(50);
    char b = SIGINT;
    ASSERT_EQ(write(wakeup.sig_wfd, &b, 1), 1);
    return NULL;
}

TEST(wakeup_signal_fd_write)
{
    pthread_t t;
    char buf[8];
    setup();
    ASSERT_EQ(pthread_create(&t, NULL, write_sigfd_later, NULL), 0);
    uint64_t elapsed = block_once(-1);
    pthread_join(t, NULL);
    ASSERT(elapsed >= 40 && elapsed < 5000);
    ASSERT(apy__wakeup_take(&wakeup) & APY_WAKE_SIGNAL);
    /* The callback drained the pipe. */
    ASSERT(read(wakeup.sig_rfd, buf, sizeof(buf)) == -1 && errno == EAGAIN);
    teardown_clean();
}

/* What CPython's C-level handler does with a wakeup fd. */
static void
python_like_handler(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t n = write(wakeup.sig_wfd, &b, 1);
    (void)n;
    errno = saved;
}

static void *
raise_on_self_later(void *arg)
{
    sleep_ms(50);
    /* The handler runs on this thread, which is not in epoll_wait. */
    ASSERT_EQ(pthread_kill(pthread_self(), SIGUSR1), 0);
    return NULL;
}

TEST(wakeup_signal_on_other_thread)
{
    /* Only the wakeup fd can end the blocked uv_run here: the signal does
     * not interrupt the loop's thread, the Ctrl-C-with-threads case. (On
     * its own thread, libuv retries epoll_wait after EINTR, so the loop
     * relies on the fd there too.) */
    struct sigaction sa;
    pthread_t t;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = python_like_handler;
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    setup();
    ASSERT_EQ(pthread_create(&t, NULL, raise_on_self_later, NULL), 0);
    uint64_t elapsed = block_once(-1);
    pthread_join(t, NULL);
    ASSERT(elapsed >= 40 && elapsed < 5000);
    ASSERT(apy__wakeup_take(&wakeup) & APY_WAKE_SIGNAL);
    teardown_clean();
}

TEST(wakeup_timer_deadline)
{
    setup();
    uint64_t elapsed = block_once(30);
    ASSERT(elapsed >= 25 && elapsed < 5000);
    ASSERT_EQ(apy__wakeup_take(&wakeup), APY_WAKE_TIMER);
    /* Re-arming after the loop sat idle must still measure from now
     * (apy__wakeup_arm refreshes libuv's cached time). */
    sleep_ms(60);
    elapsed = block_once(30);
    ASSERT(elapsed >= 25 && elapsed < 5000);
    ASSERT_EQ(apy__wakeup_take(&wakeup), APY_WAKE_TIMER);
    teardown_clean();
}

TEST(wakeup_handles_unreferenced)
{
    /* Nothing armed: the internal handles alone never keep the loop
     * alive, so uv_run returns at once instead of blocking forever. */
    setup();
    uint64_t t0 = now_ms();
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT(uv_loop_alive(&loop) == 0);
    ASSERT(now_ms() - t0 < 1000);
    teardown_clean();
}

TEST(wakeup_send_before_block)
{
    /* A send that happens before the loop blocks is not lost. */
    setup();
    ASSERT_EQ(apy__wakeup_send(&wakeup), 0);
    uint64_t elapsed = block_once(-1);
    ASSERT(elapsed < 1000);
    ASSERT_EQ(apy__wakeup_take(&wakeup), APY_WAKE_ASYNC);
    teardown_clean();
}
