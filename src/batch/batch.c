/* SPDX-License-Identifier: MIT */
/* apy_batch_main: apyrun --test. Collects, shards, checks where reports
 * go, then keeps -j children running (spawn.c) and waits for them with
 * sigtimedwait on SIGCHLD, SIGINT and SIGTERM, which stay blocked here:
 * no handler runs, no thread exists, so forking is safe at any time.
 * Each child is classified when it exits; the report is report.c's. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "apyrun/batch.h"
#include "internal.h"

/* After a stop (Ctrl-C, --exitfirst) or a timeout's SIGTERM, a child
 * has this long to save its notebook before SIGKILL. */
#define GRACE_SECONDS 5.0

/* Modules every notebook run imports, imported once before the first
 * fork so that no child pays for them. */
static const char *const warm_modules[] = {
    "asyncio", "traceback", "linecache", "tokenize", "signal", "functools",
    NULL,
};

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) {
        return CPU_COUNT(&set);
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Whether files can be made in dir (made, with its parents, if need
 * be): a report that cannot be written is an error before anything
 * runs. 0, or -1 with err. */
static int
probe_dir(const char *what, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/", dir) >= (int)sizeof(path)) {
        snprintf(err, errlen, "%s %.300s: path too long", what, dir);
        return -1;
    }
    for (char *p = strchr(path + 1, '/'); p != NULL; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(path, 0777) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "%s %.300s: cannot make %.300s: %s", what,
                     dir, path, strerror(errno));
            return -1;
        }
        *p = '/';
    }
    snprintf(path, sizeof(path), "%s/.apyrun-probe-XXXXXX", dir);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s %.300s: cannot write there: %s", what,
                 dir, strerror(errno));
        return -1;
    }
    close(fd);
    unlink(path);
    return 0;
}

/* The directory of file path ("." for none), in buf. */
static const char *
dir_of(const char *path, char *buf, size_t size)
{
    snprintf(buf, size, "%s", path);
    char *slash = strrchr(buf, '/');
    if (slash == NULL) {
        return ".";
    }
    slash[slash == buf ? 1 : 0] = '\0';
    return buf;
}

/* Everything that can be said wrong before a notebook runs. 0, or an
 * exit code (reported). */
static int
prepare(apy_batch_t *b)
{
    char err[1024];
    const apy_test_options_t *t = b->t;
    if (apy__batch_collect(t, &b->items, &b->n, err, sizeof(err)) < 0) {
        fprintf(stderr, "apyrun: %s\n", err);
        return 2;
    }
    if (t->shard_n > 0) {
        if (t->durations != NULL
            && apy__batch_read_durations(t->durations, b->items, b->n, err,
                                         sizeof(err)) < 0) {
            fprintf(stderr, "apyrun: %s\n", err);
            return 2;
        }
        apy__batch_shard(b->items, &b->n, t->shard_k, t->shard_n);
    }
    if (t->list) {
        for (size_t i = 0; i < b->n; i++) {
            puts(b->items[i].path);
        }
        return -1;
    }
    char dir[PATH_MAX];
    if ((t->output_dir != NULL
         && probe_dir("--output-dir", t->output_dir, err, sizeof(err)) < 0)
        || (t->junit_xml != NULL
            && probe_dir("--junit-xml", dir_of(t->junit_xml, dir,
                                                sizeof(dir)),
                         err, sizeof(err)) < 0)) {
        fprintf(stderr, "apyrun: %s\n", err);
        return 2;
    }
    return 0;
}

/* gc.freeze(): every object the children inherit moves to the GC's
 * permanent generation, so that no collection in a child walks them
 * (which writes to each one's header, and so copies every page the
 * fork shared). Best effort: a failure costs time, not correctness. */
static void
freeze_heap(void)
{
    PyObject *gc = PyImport_ImportModule("gc");
    if (gc == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *r = PyObject_CallMethod(gc, "freeze", NULL);
    Py_XDECREF(r);
    Py_DECREF(gc);
    PyErr_Clear();
}

/* Slots, the shared outcomes, this binary's path. 0 or -1 (reported). */
static int
setup(apy_batch_t *b)
{
    b->jobs = b->t->jobs > 0 ? b->t->jobs : cpu_count();
    if ((size_t)b->jobs > b->n) {
        b->jobs = (int)b->n;
    }
    b->slots = calloc((size_t)b->jobs, sizeof(*b->slots));
    b->outcomes = mmap(NULL, (size_t)b->jobs * sizeof(*b->outcomes),
                       PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                       -1, 0);
    if (b->slots == NULL || b->outcomes == MAP_FAILED) {
        b->outcomes = NULL;
        fprintf(stderr, "apyrun: out of memory\n");
        return -1;
    }
    for (int i = 0; i < b->jobs; i++) {
        b->slots[i].out_fd = b->slots[i].err_fd = -1;
    }
    ssize_t len = readlink("/proc/self/exe", b->self_exe,
                           sizeof(b->self_exe) - 1);
    b->self_exe[len > 0 ? len : 0] = '\0';
    const char *tmp = getenv("TMPDIR");
    b->tmpdir = tmp != NULL && tmp[0] == '/' ? tmp : "/tmp";
    for (const char *const *m = warm_modules; *m != NULL; m++) {
        PyObject *mod = PyImport_ImportModule(*m);
        Py_XDECREF(mod);
        PyErr_Clear(); /* a child meets the same error, and reports it */
    }
    /* Recorded outputs take text/plain from IPython's pretty printer
     * (apy_ipy_plain_text): imported once here, not in every child. */
    if (b->t->output_dir != NULL
        || b->opts->check_outputs != APY_CHECK_NONE) {
        PyObject *mod = PyImport_ImportModule("IPython.lib.pretty");
        Py_XDECREF(mod);
        PyErr_Clear(); /* without IPython, repr() */
    }
    freeze_heap();
    return 0;
}

/* The last non-empty line of text, without "apyrun: ", in buf. */
static const char *
last_line(const char *text, size_t len, char *buf, size_t size)
{
    size_t end = len;
    while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r'
                       || text[end - 1] == ' ')) {
        end--;
    }
    size_t start = end;
    while (start > 0 && text[start - 1] != '\n') {
        start--;
    }
    if (end - start > 8 && strncmp(text + start, "apyrun: ", 8) == 0) {
        start += 8;
    }
    size_t n = end - start < size - 1 ? end - start : size - 1;
    memcpy(buf, text + start, n);
    buf[n] = '\0';
    return buf;
}

/* Why item it failed, one line, malloc'ed. */
static char *
failure_message(const apy_batch_t *b, const apy_batch_slot_t *s,
                const apy_batch_item_t *it, const apy_nbrun_outcome_t *o)
{
    char buf[1024];
    char line[600];
    if (s->timed_out) {
        snprintf(buf, sizeof(buf), "--total-timeout (%gs) expired: ended "
                 "by the batch", b->opts->total_timeout);
    } else if (o->cell > 0) {
        snprintf(buf, sizeof(buf), "cell %d: %s", o->cell, o->message);
    } else if (o->message[0] != '\0') {
        snprintf(buf, sizeof(buf), "%s", o->message);
    } else if (it->signal > 0) {
        const char *abbrev = sigabbrev_np(it->signal);
        snprintf(buf, sizeof(buf), "killed by signal %d (SIG%s)",
                 it->signal, abbrev != NULL ? abbrev : "?");
    } else if (it->err_len > 0
               && last_line(it->err, it->err_len, line, sizeof(line))[0]
                      != '\0') {
        snprintf(buf, sizeof(buf), "%s (exit status %d)", line,
                 it->exitcode);
    } else {
        snprintf(buf, sizeof(buf), "exit status %d", it->exitcode);
    }
    return strdup(buf);
}

/* Classifies slot s's child, which exited with status. */
static void
finish(apy_batch_t *b, apy_batch_slot_t *s, int status)
{
    apy_batch_item_t *it = &b->items[s->item];
    const apy_nbrun_outcome_t *o = &b->outcomes[s - b->slots];
    it->seconds = now() - s->t0;
    apy__batch_take_output(s, it);
    if (WIFEXITED(status)) {
        it->exitcode = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        it->signal = WTERMSIG(status);
    }
    if (s->ended && !s->timed_out) {
        it->state = APY_ITEM_INTERRUPTED;
        it->message = strdup("interrupted");
    } else if (o->skipped) {
        it->state = APY_ITEM_SKIPPED;
        it->message = strdup(o->message);
    } else if ((it->exitcode == 0 || (it->exitcode == 1 && o->errors_allowed))
               && it->signal == 0) {
        /* --allow-errors: a notebook whose errors were let through
         * passes, as nbclient's allow_errors. */
        it->state = APY_ITEM_PASSED;
    } else {
        it->state = APY_ITEM_FAILED;
        it->message = failure_message(b, s, it, o);
    }
    s->pid = 0;
}

/* Signals slot s's whole process group (its leftovers included). */
static void
signal_slot(apy_batch_slot_t *s, int sig)
{
    if (kill(-s->pid, sig) < 0) {
        kill(s->pid, sig);
    }
}

/* Ends every running child: sig now, SIGKILL after the grace time. */
static void
end_all(apy_batch_t *b, int sig)
{
    double t = now();
    for (int i = 0; i < b->jobs; i++) {
        apy_batch_slot_t *s = &b->slots[i];
        if (s->pid > 0 && !s->ended) {
            s->ended = 1;
            s->term_at = 0;
            s->kill_at = t + GRACE_SECONDS;
            signal_slot(s, sig);
        }
    }
}

/* Reaps every child that has exited. A child's group is killed before
 * it is reaped, while its pid cannot be reused: what it left running
 * must not outlive it. Returns how many were reaped. */
static int
reap(apy_batch_t *b, apy_batch_report_t *r, int *failed)
{
    int reaped = 0;
    for (;;) {
        siginfo_t info;
        memset(&info, 0, sizeof(info));
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0
            || info.si_pid == 0) {
            return reaped;
        }
        kill(-info.si_pid, SIGKILL);
        int status = 0;
        if (waitpid(info.si_pid, &status, 0) < 0) {
            return reaped;
        }
        for (int i = 0; i < b->jobs; i++) {
            if (b->slots[i].pid == info.si_pid) {
                finish(b, &b->slots[i], status);
                apy_batch_item_t *it = &b->items[b->slots[i].item];
                apy__batch_report_item(r, it, b->t->verbose);
                *failed |= it->state == APY_ITEM_FAILED;
                reaped++;
            }
        }
    }
}

/* Sends the signals whose time has come; returns the seconds until the
 * next one (at most 1). */
static double
deadlines(apy_batch_t *b)
{
    double t = now(), next = 1.0;
    for (int i = 0; i < b->jobs; i++) {
        apy_batch_slot_t *s = &b->slots[i];
        if (s->pid <= 0) {
            continue;
        }
        if (s->term_at > 0 && t >= s->term_at) {
            s->term_at = 0;
            s->timed_out = s->ended = 1;
            s->kill_at = t + GRACE_SECONDS;
            signal_slot(s, SIGTERM);
        }
        if (s->kill_at > 0 && t >= s->kill_at) {
            s->kill_at = 0;
            s->timed_out |= !s->ended;
            s->ended = 1;
            signal_slot(s, SIGKILL);
        }
        double due = s->term_at > 0 ? s->term_at : s->kill_at;
        if (due > 0 && due - t < next) {
            next = due - t;
        }
    }
    return next > 0.001 ? next : 0.001;
}

/* Starts the next item in a free slot; an item that cannot start fails.
 * Returns 1 if a child runs, 0 if not. */
static int
start_next(apy_batch_t *b, size_t item, apy_batch_report_t *r, int *failed)
{
    apy_batch_slot_t *s = NULL;
    for (int i = 0; i < b->jobs && s == NULL; i++) {
        s = b->slots[i].pid == 0 ? &b->slots[i] : NULL;
    }
    if (s == NULL) {
        return 0;
    }
    char err[512];
    double t0 = now();
    if (apy__batch_start(b, s, item, err, sizeof(err)) < 0) {
        apy_batch_item_t *it = &b->items[item];
        it->state = APY_ITEM_FAILED;
        it->message = strdup(err);
        apy__batch_report_item(r, it, b->t->verbose);
        *failed = 1;
        return 0;
    }
    s->t0 = t0;
    double total = b->opts->total_timeout;
    if (total > 0) {
        /* A notebook ends itself at --total-timeout (exit 124, saved);
         * the batch steps in only if it does not. */
        if (b->items[item].is_script) {
            s->term_at = t0 + total;
        } else {
            s->kill_at = t0 + total + 2 * GRACE_SECONDS;
        }
    }
    return 1;
}

/* The batch proper. Returns the signal that stopped it, or 0. */
static int
run_all(apy_batch_t *b, apy_batch_report_t *r)
{
    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, SIGCHLD);
    sigaddset(&waited, SIGINT);
    sigaddset(&waited, SIGTERM);
    sigaddset(&waited, SIGHUP);
    sigprocmask(SIG_BLOCK, &waited, &b->child_mask);
    size_t next = 0;
    int running = 0, stop = 0, failed = 0;
    for (;;) {
        while (!stop && next < b->n && running < b->jobs) {
            running += start_next(b, next++, r, &failed);
            if (failed && b->t->exitfirst) {
                break;
            }
        }
        int reaped = reap(b, r, &failed);
        running -= reaped;
        if (failed && b->t->exitfirst && !stop) {
            stop = -1;
            end_all(b, SIGTERM);
        }
        if (running == 0 && (stop || next >= b->n)) {
            break;
        }
        if (reaped > 0) {
            continue;
        }
        double wait = deadlines(b);
        struct timespec ts = {(time_t)wait,
                              (long)((wait - (double)(time_t)wait) * 1e9)};
        int sig = sigtimedwait(&waited, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
            if (stop > 0) {
                /* A second Ctrl-C: no grace. */
                for (int i = 0; i < b->jobs; i++) {
                    if (b->slots[i].pid > 0) {
                        signal_slot(&b->slots[i], SIGKILL);
                    }
                }
            } else {
                stop = sig;
                end_all(b, sig == SIGHUP ? SIGTERM : sig);
            }
        }
    }
    sigprocmask(SIG_SETMASK, &b->child_mask, NULL);
    return stop > 0 ? stop : 0;
}

int
apy_batch_main(const PyConfig *config, const apy_options_t *opts,
               int *unhandled_sigint)
{
    apy_batch_t b;
    memset(&b, 0, sizeof(b));
    b.config = config;
    b.opts = opts;
    b.t = &opts->test_opts;
    double t0 = now();
    int exitcode = prepare(&b);
    if (exitcode != 0) {
        exitcode = exitcode < 0 ? (b.n > 0 ? 0 : 5) : exitcode;
        goto done;
    }
    apy_batch_report_t r;
    apy__batch_report_init(&r, b.n, b.t->verbose);
    if (b.n == 0) {
        fprintf(stderr, "apyrun: no notebooks collected\n");
        apy__batch_report_end(&r, b.items, 0, now() - t0, 0);
        exitcode = 5;
        goto done;
    }
    if (setup(&b) < 0) {
        exitcode = 1;
        goto done;
    }
    int stopped_by = run_all(&b, &r);
    apy__batch_report_end(&r, b.items, b.n, now() - t0, b.t->verbose);
    exitcode = r.count[APY_ITEM_FAILED] > 0 ? 1 : 0;
    char err[1024];
    if (b.t->junit_xml != NULL
        && apy__batch_write_junit(b.t->junit_xml, b.items, b.n, now() - t0,
                                  err, sizeof(err)) < 0) {
        fprintf(stderr, "apyrun: %s\n", err);
        exitcode = exitcode ? exitcode : 1;
    }
    if (stopped_by == SIGINT) {
        *unhandled_sigint = 1;
        exitcode = 128 + SIGINT;
    } else if (stopped_by != 0) {
        exitcode = 128 + stopped_by;
    }
done:
    if (b.outcomes != NULL) {
        munmap(b.outcomes, (size_t)b.jobs * sizeof(*b.outcomes));
    }
    free(b.slots);
    apy__batch_free_items(b.items, b.n);
    return exitcode;
}
