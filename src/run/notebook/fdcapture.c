/* SPDX-License-Identifier: MIT */
/* What a recorded notebook writes to file descriptors 1 and 2 without
 * going through sys.stdout/sys.stderr: os.system, subprocesses that
 * inherit the fds, C code's printf. A Jupyter kernel records it
 * (ipykernel's OutStream watches the fds since 6.0), so apyrun does too.
 *
 * While the run records, fds 1 and 2 are pipes. A reader thread (no Python
 * in it) writes whatever arrives on to copies of the real fds at once, so
 * it still streams live, and keeps it, in arrival order, for the recorder.
 * The tee streams (outputs.c) write to text streams on those copies and are
 * recorded as before; before each output it records and at the end of each
 * cell the recorder takes what the fds got first (apy__nbrun_fdcap_sync), so
 * that `print(1); os.system("echo 2"); print(3)` is recorded 1, 2, 3.
 *
 * As in ipykernel, sys.stdout.fileno() is then the copy of the real fd, so
 * what is written there directly (subprocess.run(..., stdout=sys.stdout))
 * shows but is not recorded; and what a process left running writes after
 * the run ends goes nowhere. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define READ_SIZE 16384

/* Bytes one fd got, in arrival order with the other fd's. */
typedef struct {
    int which;
    size_t len;
    char *data;
} chunk_t;

struct apy_nbrun_fdcap {
    int real[2];         /* copies of the original fds 1 and 2, or -1 */
    int rd[2];           /* read ends of the pipes now on fds 1 and 2 */
    int eof[2];
    int wake[2];         /* a byte here stops the reader */
    pid_t owner;         /* a forked child must not take the chunks */
    pthread_t thread;
    pthread_mutex_t lock; /* chunks, and every read of rd */
    chunk_t *chunks;
    size_t nchunks;
    size_t cap;
    char tail[2][4];     /* an incomplete UTF-8 sequence per stream */
    Py_ssize_t ntail[2];
    apy_nbrun_fd_sink_t sink; /* where the text goes (the recorder) */
};

/* Writes all of buf to fd; gives up quietly (a closed terminal must not
 * stop the recording). */
static void
write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Keeps len bytes of fd `which`, merged into the last chunk when that is
 * the same fd's. 0 or -1 (out of memory: the bytes were shown, not kept). */
static int
keep(apy_nbrun_fdcap_t *cap, int which, const char *buf, size_t len)
{
    chunk_t *last = cap->nchunks > 0 ? &cap->chunks[cap->nchunks - 1] : NULL;
    if (last != NULL && last->which == which) {
        char *data = realloc(last->data, last->len + len);
        if (data == NULL) {
            return -1;
        }
        memcpy(data + last->len, buf, len);
        last->data = data;
        last->len += len;
        return 0;
    }
    if (cap->nchunks == cap->cap) {
        size_t ncap = cap->cap ? 2 * cap->cap : 8;
        chunk_t *chunks = realloc(cap->chunks, ncap * sizeof(*chunks));
        if (chunks == NULL) {
            return -1;
        }
        cap->chunks = chunks;
        cap->cap = ncap;
    }
    char *data = malloc(len);
    if (data == NULL) {
        return -1;
    }
    memcpy(data, buf, len);
    cap->chunks[cap->nchunks++] = (chunk_t){which, len, data};
    return 0;
}

/* Reads what fd `which` has now (rd is non-blocking), shows it and keeps
 * it. Called with cap->lock held. */
static void
drain_locked(apy_nbrun_fdcap_t *cap, int which)
{
    char buf[READ_SIZE];
    while (cap->rd[which] >= 0 && !cap->eof[which]) {
        ssize_t n = read(cap->rd[which], buf, sizeof(buf));
        if (n > 0) {
            write_all(cap->real[which], buf, (size_t)n);
            (void)keep(cap, which, buf, (size_t)n);
        } else if (n == 0) {
            cap->eof[which] = 1;
        } else if (errno != EINTR) {
            return; /* EAGAIN: nothing more now */
        }
    }
}

/* Drains the fds poll() says are readable, without waiting. Called with
 * cap->lock held. */
static void
poll_drain_locked(apy_nbrun_fdcap_t *cap)
{
    struct pollfd p[2];
    for (int i = 0; i < 2; i++) {
        p[i].fd = cap->eof[i] ? -1 : cap->rd[i];
        p[i].events = POLLIN;
        p[i].revents = 0;
    }
    if (poll(p, 2, 0) <= 0) {
        return;
    }
    for (int i = 0; i < 2; i++) {
        if (p[i].revents != 0) {
            drain_locked(cap, i);
        }
    }
}

static void *
reader_main(void *arg)
{
    apy_nbrun_fdcap_t *cap = arg;
    for (;;) {
        struct pollfd p[3];
        for (int i = 0; i < 2; i++) {
            p[i].fd = cap->eof[i] ? -1 : cap->rd[i];
            p[i].events = POLLIN;
        }
        p[2].fd = cap->wake[0];
        p[2].events = POLLIN;
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return NULL;
        }
        if (p[2].revents != 0) {
            return NULL;
        }
        pthread_mutex_lock(&cap->lock);
        for (int i = 0; i < 2; i++) {
            if (p[i].revents != 0) {
                drain_locked(cap, i);
            }
        }
        pthread_mutex_unlock(&cap->lock);
    }
}

/* A text stream on fd, written like `like` (sys.stdout or sys.stderr):
 * same encoding, errors, buffering. New reference, or NULL. */
static PyObject *
live_stream(int fd, PyObject *like)
{
    PyObject *result = NULL;
    PyObject *buffer = NULL;
    PyObject *raw_type = NULL;
    PyObject *encoding = NULL;
    PyObject *errors = NULL;
    PyObject *line_buffering = NULL;
    PyObject *write_through = NULL;
    PyObject *binary = NULL;
    int unbuffered;
    PyObject *io = PyImport_ImportModule("io");
    if (io == NULL) {
        goto error;
    }
    buffer = PyObject_GetAttrString(like, "buffer");
    raw_type = PyObject_GetAttrString(io, "FileIO");
    if (buffer == NULL || raw_type == NULL) {
        goto error;
    }
    unbuffered = PyObject_IsInstance(buffer, raw_type);
    if (unbuffered < 0) {
        goto error;
    }
    encoding = PyObject_GetAttrString(like, "encoding");
    if (encoding == NULL) {
        goto error;
    }
    errors = PyObject_GetAttrString(like, "errors");
    if (errors == NULL) {
        goto error;
    }
    line_buffering = PyObject_GetAttrString(like, "line_buffering");
    if (line_buffering == NULL) {
        goto error;
    }
    write_through = PyObject_GetAttrString(like, "write_through");
    if (write_through == NULL) {
        goto error;
    }
    /* closefd=False: fd stays the caller's. */
    binary = PyObject_CallMethod(io, "open", "isiOOOO", fd, "wb",
                                 unbuffered ? 0 : -1, Py_None, Py_None,
                                 Py_None, Py_False);
    if (binary == NULL) {
        goto error;
    }
    result = PyObject_CallMethod(io, "TextIOWrapper", "OOOsOO", binary,
                                 encoding, errors, "\n", line_buffering,
                                 write_through);
error:
    Py_XDECREF(binary);
    Py_XDECREF(write_through);
    Py_XDECREF(line_buffering);
    Py_XDECREF(errors);
    Py_XDECREF(encoding);
    Py_XDECREF(raw_type);
    Py_XDECREF(buffer);
    Py_XDECREF(io);
    return result;
}

/* Flushes sys.stdout/sys.stderr as they were before the tee streams and
 * C's stdio, so that what they hold reaches the pipes. */
static void
flush_writers(apy_nbrun_t *run)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    for (int i = 0; rt != NULL && i < 2; i++) {
        if (rt->real[i] != NULL && rt->real[i] != Py_None) {
            PyObject *r = PyObject_CallMethod(rt->real[i], "flush", NULL);
            Py_XDECREF(r);
            PyErr_Clear();
        }
    }
    fflush(stdout);
    fflush(stderr);
}

/* Undoes a partial start: fds 1 and 2 back, everything closed. */
static void
undo(apy_nbrun_fdcap_t *cap)
{
    for (int i = 0; i < 2; i++) {
        if (cap->real[i] >= 0) {
            if (cap->rd[i] >= 0) {
                dup2(cap->real[i], i + 1);
            }
            close(cap->real[i]);
        }
        if (cap->rd[i] >= 0) {
            close(cap->rd[i]);
        }
    }
    for (int i = 0; i < 2; i++) {
        if (cap->wake[i] >= 0) {
            close(cap->wake[i]);
        }
    }
    free(cap);
}

int
apy__nbrun_fdcap_start(apy_nbrun_t *run, apy_nbrun_fd_sink_t sink)
{
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    apy_nbrun_fdcap_t *cap = calloc(1, sizeof(*cap));
    if (cap == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    cap->real[0] = cap->real[1] = cap->rd[0] = cap->rd[1] = -1;
    cap->wake[0] = cap->wake[1] = -1;
    cap->owner = getpid();
    cap->sink = sink;
    PyObject *live[2] = {NULL, NULL};

    /* First the text streams on copies of the real fds; an fd is captured
     * only with one (a closed fd 1, a sys.stdout that is None or not a
     * file stays as it is). */
    int capturing = 0;
    for (int i = 0; i < 2; i++) {
        PyObject *cur = PySys_GetObject(i == 0 ? "stdout"
                                               : "stderr"); /* borrowed */
        if (cur == NULL || cur == Py_None) {
            continue;
        }
        PyObject *r = PyObject_CallMethod(cur, "flush", NULL);
        Py_XDECREF(r);
        PyErr_Clear();
        cap->real[i] = fcntl(i + 1, F_DUPFD_CLOEXEC, 3);
        if (cap->real[i] < 0) {
            continue;
        }
        live[i] = live_stream(cap->real[i], cur);
        if (live[i] == NULL) {
            PyErr_Clear();
            close(cap->real[i]);
            cap->real[i] = -1;
            continue;
        }
        capturing = 1;
    }
    if (!capturing) {
        free(cap);
        return 0;
    }
    fflush(stdout);
    fflush(stderr);
    for (int i = 0; i < 2; i++) {
        if (live[i] == NULL) {
            continue;
        }
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
            goto os_error;
        }
        if (fcntl(p[0], F_SETFL, O_NONBLOCK) < 0 || dup2(p[1], i + 1) < 0) {
            int saved = errno;
            close(p[0]);
            close(p[1]);
            errno = saved;
            goto os_error;
        }
        close(p[1]);
        cap->rd[i] = p[0];
    }
    if (pipe2(cap->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        goto os_error;
    }
    pthread_mutex_init(&cap->lock, NULL);
    /* The reader takes no signal: they are the main thread's. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = pthread_create(&cap->thread, NULL, reader_main, cap);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        pthread_mutex_destroy(&cap->lock);
        errno = err;
        goto os_error;
    }
    run->fdcap = cap;
    for (int i = 0; i < 2; i++) {
        Py_XSETREF(rt->live[i], live[i]);
    }
    return 0;

os_error:
    PyErr_SetFromErrno(PyExc_OSError);
    Py_XDECREF(live[0]);
    Py_XDECREF(live[1]);
    undo(cap);
    return -1;
}

/* Records one chunk as stream text: UTF-8, undecodable bytes replaced, a
 * sequence cut at the chunk's end kept for the next one. 0 or -1. */
static int
record_chunk(apy_nbrun_t *run, apy_nbrun_fdcap_t *cap, chunk_t *c)
{
    int w = c->which;
    size_t len = (size_t)cap->ntail[w] + c->len;
    char *bytes = malloc(len ? len : 1);
    if (bytes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(bytes, cap->tail[w], (size_t)cap->ntail[w]);
    memcpy(bytes + cap->ntail[w], c->data, c->len);
    Py_ssize_t used = (Py_ssize_t)len;
    PyObject *text = PyUnicode_DecodeUTF8Stateful(bytes, (Py_ssize_t)len,
                                                  "replace", &used);
    if (text != NULL) {
        cap->ntail[w] = (Py_ssize_t)len - used;
        memcpy(cap->tail[w], bytes + used, (size_t)cap->ntail[w]);
    }
    free(bytes);
    if (text == NULL) {
        return -1;
    }
    int rc = cap->sink(run, w, text);
    Py_DECREF(text);
    return rc;
}

void
apy__nbrun_fdcap_sync(apy_nbrun_t *run, int final)
{
    apy_nbrun_fdcap_t *cap = run->fdcap;
    if (cap == NULL || getpid() != cap->owner) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (final) {
        flush_writers(run);
    }
    pthread_mutex_lock(&cap->lock);
    poll_drain_locked(cap);
    chunk_t *chunks = cap->chunks;
    size_t n = cap->nchunks;
    cap->chunks = NULL;
    cap->nchunks = cap->cap = 0;
    pthread_mutex_unlock(&cap->lock);

    /* Best effort: text that cannot be recorded (out of memory) was
     * shown all the same. */
    for (size_t i = 0; i < n; i++) {
        if (record_chunk(run, cap, &chunks[i]) < 0) {
            PyErr_Clear();
        }
        free(chunks[i].data);
    }
    free(chunks);
    PyErr_Restore(type, value, tb);
}

int
apy__nbrun_fdcap_real_fd(apy_nbrun_t *run, int which)
{
    apy_nbrun_fdcap_t *cap = run->fdcap;
    return cap != NULL && cap->real[which] >= 0 ? cap->real[which]
                                                : which + 1;
}

void
apy__nbrun_fdcap_stop(apy_nbrun_t *run)
{
    apy_nbrun_fdcap_t *cap = run->fdcap;
    if (cap == NULL || getpid() != cap->owner) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    ApyNbRuntimeObject *rt = (ApyNbRuntimeObject *)run->runtime;
    flush_writers(run);
    for (int i = 0; i < 2; i++) {
        if (rt != NULL && rt->live[i] != NULL) {
            PyObject *r = PyObject_CallMethod(rt->live[i], "flush", NULL);
            Py_XDECREF(r);
            PyErr_Clear();
        }
        if (cap->rd[i] >= 0) {
            dup2(cap->real[i], i + 1);
        }
    }
    write_all(cap->wake[1], "x", 1);
    pthread_join(cap->thread, NULL);
    /* What came after the reader's last look still shows; the run's
     * recording is over, so it is not kept. */
    pthread_mutex_lock(&cap->lock);
    for (int i = 0; i < 2; i++) {
        drain_locked(cap, i);
    }
    pthread_mutex_unlock(&cap->lock);
    pthread_mutex_destroy(&cap->lock);
    for (size_t i = 0; i < cap->nchunks; i++) {
        free(cap->chunks[i].data);
    }
    free(cap->chunks);
    for (int i = 0; i < 2; i++) {
        if (cap->rd[i] >= 0) {
            close(cap->rd[i]);
        }
        close(cap->wake[i]);
        /* cap->real[i] stays open: a stream the program kept (an old
         * sys.stdout in a variable) still writes to it. */
        if (rt != NULL) {
            Py_CLEAR(rt->live[i]);
        }
    }
    free(cap);
    run->fdcap = NULL;
    PyErr_Restore(type, value, tb);
}
