/* SPDX-License-Identifier: MIT */
/* --timeout and --total-timeout, and SIGTERM. A watchdog thread (no
 * Python, no GIL) waits for the running cell's deadline and then sends
 * SIGINT to the main thread, as Jupyter interrupts a kernel: blocking code
 * gets KeyboardInterrupt, even in a main task, and an awaiting main task
 * is cancelled (src/tla's handler); the driver reports a timeout because
 * `timed_out` is set. Code that ignores the interrupt gets it again, and
 * after that the process ends with 124: the cells before were saved
 * already. A SIGTERM
 * interrupts the cell the same way so that its partial output is saved
 * before the process dies by SIGTERM. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Seconds between the interrupts of a cell that will not stop. */
#define GRACE 2.0
/* Interrupts sent before the process gives up on the cell. */
#define MAX_INTERRUPTS 3

struct apy_nbrun_watch {
    pthread_t thread;
    pthread_t main;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    double deadline;   /* monotonic seconds; 0 when disarmed */
    int interrupts;    /* sent for the armed cell */
    int stop;
    int err_fd;        /* the real stderr (fd 2 may be captured) */
    volatile int *timed_out;
    apy_nbrun_t *run;  /* for last_save only */
};

/* From the watchdog thread, without the GIL, before the process gives up
 * on a cell that will not stop: writes the executed notebook as rendered
 * after the last cell that ended, unless the main thread is saving right
 * now. Reports a failure on the real stderr. */
static void
last_save(apy_nbrun_t *run)
{
    char err[1024];
    if (run->out_path == NULL || run->save_failed
        || pthread_mutex_trylock(&run->save_lock) != 0) {
        return;
    }
    if (apy_nb_target_save(&run->nb, &run->target, 0, err, sizeof(err))
        < 0) {
        int fd = apy__nbrun_fdcap_real_fd(run, APY_NBRUN_STDERR);
        ssize_t r = write(fd, "apyrun: ", 8);
        r = write(fd, err, strlen(err));
        r = write(fd, "\n", 1);
        (void)r;
    }
    pthread_mutex_unlock(&run->save_lock);
}

static void *
watch_main(void *arg)
{
    struct apy_nbrun_watch *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        if (w->deadline == 0) {
            pthread_cond_wait(&w->cond, &w->lock);
            continue;
        }
        double now = apy__nbrun_now();
        if (now < w->deadline) {
            /* The condition variable runs on CLOCK_MONOTONIC (see
             * apy__nbrun_timeouts_start), as apy__nbrun_now does. */
            struct timespec ts;
            double until = w->deadline;
            ts.tv_sec = (time_t)until;
            ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
            pthread_cond_timedwait(&w->cond, &w->lock, &ts);
            continue;
        }
        *w->timed_out = 1;
        if (w->interrupts >= MAX_INTERRUPTS) {
            static const char msg[] =
                "apyrun: the cell did not stop after its timeout; giving up "
                "(the notebook is saved as it was after the previous "
                "cell)\n";
            ssize_t r = write(w->err_fd, msg, sizeof(msg) - 1);
            (void)r;
            /* Saves are throttled, so the cells before may not be in the
             * file yet; they are rendered, and written now. */
            last_save(w->run);
            _exit(124);
        }
        w->interrupts++;
        pthread_kill(w->main, SIGINT);
        w->deadline = now + GRACE;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* SIGTERM handler while cells run: remembers it and interrupts the cell.
 * Returns NULL with KeyboardInterrupt set. */
static PyObject *
on_sigterm(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    apy_nbrun_t *run = PyCapsule_GetPointer(self, "apyrun.nbrun");
    if (run == NULL) {
        return NULL;
    }
    run->sigterm = 1;
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    return NULL;
}

static PyMethodDef sigterm_def = {
    "apyrun_sigterm", (PyCFunction)(void (*)(void))on_sigterm,
    METH_FASTCALL, "Interrupts the running cell so that it is saved.",
};

/* Python's own C handler for SIGTERM, which ours calls after noting the
 * signal where C code that runs long without Python (a save copying a
 * gigabyte) can see it. */
static struct sigaction python_term;
static volatile sig_atomic_t term_seen;

static void
note_sigterm(int sig)
{
    term_seen = 1;
    if (python_term.sa_handler != SIG_DFL
        && python_term.sa_handler != SIG_IGN) {
        python_term.sa_handler(sig);
    }
}

/* Puts note_sigterm before the handler Python just installed. Python
 * installs without SA_SIGINFO; if it ever did, ours stays out. A program
 * that sets its own SIGTERM handler replaces both. */
static void
chain_sigterm(void)
{
    struct sigaction ours;

    if (sigaction(SIGTERM, NULL, &python_term) < 0
        || (python_term.sa_flags & SA_SIGINFO)) {
        return;
    }
    ours = python_term;
    ours.sa_handler = note_sigterm;
    (void)sigaction(SIGTERM, &ours, NULL);
}

const volatile sig_atomic_t *
apy__nbrun_sigterm_seen(void)
{
    return &term_seen;
}

/* Installs on_sigterm if SIGTERM has its default disposition. */
static int
install_sigterm(apy_nbrun_t *run)
{
    int rc = -1;
    int is_default;
    PyObject *cur = NULL;
    PyObject *dfl = NULL;
    PyObject *capsule = NULL;
    PyObject *handler = NULL;
    PyObject *r = NULL;
    PyObject *signal_mod = PyImport_ImportModule("signal");
    if (signal_mod == NULL) {
        goto error;
    }
    cur = PyObject_CallMethod(signal_mod, "getsignal", "i", SIGTERM);
    if (cur == NULL) {
        goto error;
    }
    dfl = PyObject_GetAttrString(signal_mod, "SIG_DFL");
    if (dfl == NULL) {
        goto error;
    }
    is_default = PyObject_RichCompareBool(cur, dfl, Py_EQ);
    if (is_default <= 0) {
        rc = is_default; /* 0: the program's own handler stays */
        goto error;
    }
    capsule = PyCapsule_New(run, "apyrun.nbrun", NULL);
    if (capsule == NULL) {
        goto error;
    }
    handler = PyCFunction_New(&sigterm_def, capsule);
    if (handler == NULL) {
        goto error;
    }
    r = PyObject_CallMethod(signal_mod, "signal", "iO", SIGTERM, handler);
    if (r == NULL) {
        goto error;
    }
    Py_XSETREF(run->sigterm_handler, Py_NewRef(handler));
    chain_sigterm();
    rc = 0;
error:
    Py_XDECREF(r);
    Py_XDECREF(handler);
    Py_XDECREF(capsule);
    Py_XDECREF(dfl);
    Py_XDECREF(cur);
    Py_XDECREF(signal_mod);
    return rc;
}

int
apy__nbrun_timeouts_start(apy_nbrun_t *run)
{
    if (install_sigterm(run) < 0) {
        return -1;
    }
    if (run->opts->timeout <= 0 && run->opts->total_timeout <= 0) {
        return 0;
    }
    struct apy_nbrun_watch *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->err_fd = STDERR_FILENO;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    w->main = pthread_self();
    w->timed_out = &run->timed_out;
    w->run = run;
    /* The watchdog must never take a signal meant for Python's main
     * thread: it starts with every signal blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = pthread_create(&w->thread, NULL, watch_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    run->watch = w;
    return 0;
}

void
apy__nbrun_timeouts_arm(apy_nbrun_t *run)
{
    struct apy_nbrun_watch *w = run->watch;
    if (w == NULL) {
        return;
    }
    double now = apy__nbrun_now();
    double deadline = 0;
    if (run->opts->timeout > 0) {
        deadline = now + run->opts->timeout;
    }
    if (run->opts->total_timeout > 0) {
        double total = run->t0 + run->opts->total_timeout;
        if (deadline == 0 || total < deadline) {
            deadline = total;
        }
    }
    if (deadline <= now) {
        deadline = now + 1e-6;
    }
    pthread_mutex_lock(&w->lock);
    w->deadline = deadline;
    w->interrupts = 0;
    w->err_fd = apy__nbrun_fdcap_real_fd(run, APY_NBRUN_STDERR);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void
apy__nbrun_timeouts_disarm(apy_nbrun_t *run)
{
    struct apy_nbrun_watch *w = run->watch;
    if (w == NULL) {
        return;
    }
    pthread_mutex_lock(&w->lock);
    w->deadline = 0;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* SIGTERM back to SIG_DFL if handler is still the one in place. Leaves
 * any exception for the caller to clear. */
static void
restore_sigterm(PyObject *handler)
{
    PyObject *dfl = NULL;
    PyObject *r = NULL;
    PyObject *signal_mod = PyImport_ImportModule("signal");
    if (signal_mod == NULL) {
        return;
    }
    PyObject *cur = PyObject_CallMethod(signal_mod, "getsignal", "i",
                                        SIGTERM);
    if (cur == NULL || cur != handler) {
        goto done;
    }
    dfl = PyObject_GetAttrString(signal_mod, "SIG_DFL");
    if (dfl == NULL) {
        goto done;
    }
    r = PyObject_CallMethod(signal_mod, "signal", "iO", SIGTERM, dfl);
done:
    Py_XDECREF(r);
    Py_XDECREF(dfl);
    Py_XDECREF(cur);
    Py_DECREF(signal_mod);
}

void
apy__nbrun_timeouts_stop(apy_nbrun_t *run)
{
    struct apy_nbrun_watch *w = run->watch;
    if (w != NULL) {
        pthread_mutex_lock(&w->lock);
        w->stop = 1;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        Py_BEGIN_ALLOW_THREADS
        pthread_join(w->thread, NULL);
        Py_END_ALLOW_THREADS
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        run->watch = NULL;
    }
    if (run->sigterm_handler == NULL) {
        return;
    }
    /* Back to the default, if the program left ours in place. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    restore_sigterm(run->sigterm_handler);
    Py_CLEAR(run->sigterm_handler);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}
