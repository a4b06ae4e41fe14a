/* SPDX-License-Identifier: MIT */
/* One item of apyrun --test in a process of its own: a notebook in a
 * child forked from the initialised interpreter (the fork server: no
 * second start-up of Python, asyncio or the loop), a script in this
 * binary run afresh; each in its own process group, its output in files
 * of its own that the batch reads once it has exited. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Captured output kept per stream: its last part, where tracebacks are. */
#define KEEP_BYTES (1024 * 1024)

/* An unnamed file for a child's output (O_TMPFILE, else a name unlinked
 * at once). Returns the fd or -1 (errno). */
static int
capture_file(const char *tmpdir)
{
    int fd = open(tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR
                    && errno != EINVAL)) {
        return fd;
    }
    char name[PATH_MAX];
    snprintf(name, sizeof(name), "%s/apyrun-test-XXXXXX", tmpdir);
    fd = mkostemp(name, O_CLOEXEC);
    if (fd >= 0) {
        unlink(name);
    }
    return fd;
}

/* The executed notebook's path under --output-dir: dir, then the item's
 * path without "/" at its start and without "." and ".." parts, so that
 * nothing lands outside dir. Malloc'ed, or NULL. */
static char *
output_path(const char *dir, const char *path)
{
    size_t n = strlen(dir) + strlen(path) + 2;
    char *out = malloc(n);
    if (out == NULL) {
        return NULL;
    }
    size_t j = (size_t)snprintf(out, n, "%s", dir);
    const char *p = path;
    while (*p != '\0') {
        while (*p == '/') {
            p++;
        }
        size_t len = strcspn(p, "/");
        int skip = (len == 1 && p[0] == '.')
                   || (len == 2 && p[0] == '.' && p[1] == '.');
        if (len > 0 && !skip) {
            out[j++] = '/';
            memcpy(out + j, p, len);
            j += len;
        }
        p += len;
    }
    out[j] = '\0';
    return out;
}

/* mkdir -p of path's parent directories. 0 or -1 (errno). */
static int
make_parents(char *path)
{
    for (char *p = strchr(path + 1, '/'); p != NULL; p = strchr(p + 1, '/')) {
        *p = '\0';
        int rc = mkdir(path, 0777);
        int e = errno;
        *p = '/';
        if (rc < 0 && e != EEXIST) {
            errno = e;
            return -1;
        }
    }
    return 0;
}

/* In the child: stdin from /dev/null, stdout and stderr to the capture
 * files, the batch's other files closed, the signal mask of a normal
 * start, a process group of its own. */
static void
child_fds(apy_batch_t *b, apy_batch_slot_t *s)
{
    setpgid(0, 0);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) {
        dup2(null, 0);
        if (null > 2) {
            close(null);
        }
    }
    if (s->out_fd >= 0) {
        dup2(s->out_fd, 1);
        dup2(s->err_fd, 2);
    }
    for (int i = 0; i < b->jobs; i++) {
        if (b->slots[i].out_fd > 2) {
            close(b->slots[i].out_fd);
        }
        if (b->slots[i].err_fd > 2) {
            close(b->slots[i].err_fd);
        }
    }
    sigprocmask(SIG_SETMASK, &b->child_mask, NULL);
}

/* Calls module.name() if module was imported; 0, or -1 (printed). */
static int
call_if_imported(const char *module, const char *name)
{
    PyObject *key = PyUnicode_FromString(module);
    PyObject *mod = key != NULL ? PyImport_GetModule(key) : NULL;
    Py_XDECREF(key);
    if (mod == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *r = PyObject_CallMethod(mod, name, NULL);
    Py_DECREF(mod);
    Py_XDECREF(r);
    return r != NULL ? 0 : -1;
}

/* The end of a child: what Py_FinalizeEx does that a program can see,
 * in its order (non-daemon threads joined, atexit callbacks, sys.stdout
 * and sys.stderr flushed), and __main__'s objects released and collected
 * (their __del__ run, files a notebook left open flushed and closed);
 * the modules the child inherited are not torn down: freeing them would
 * write to, and so copy, every page the fork shared (20 ms a notebook
 * once IPython is imported). 0, or -1 when a flush failed (python3's
 * exit status 120). */
static int
child_end(void)
{
    int rc = 0;
    if (call_if_imported("threading", "_shutdown") < 0
        || call_if_imported("atexit", "_run_exitfuncs") < 0) {
        PyErr_Print();
    }
    PyObject *main = PyImport_AddModule("__main__"); /* borrowed */
    if (main != NULL) {
        PyDict_Clear(PyModule_GetDict(main));
    }
    PyGC_Collect();
    PyErr_Clear();
    static const char *const streams[] = {"stdout", "stderr"};
    for (size_t i = 0; i < 2; i++) {
        PyObject *f = PySys_GetObject(streams[i]); /* borrowed */
        if (f == NULL || f == Py_None) {
            continue;
        }
        PyObject *r = PyObject_CallMethod(f, "flush", NULL);
        if (r == NULL) {
            PyErr_Clear();
            rc = -1;
        }
        Py_XDECREF(r);
    }
    return rc;
}

/* In a forked child: sys.argv, then the notebook as `apyrun path` runs
 * it, then the interpreter's end (child_end), as after any run. Never
 * returns. */
static void
child_notebook(apy_batch_t *b, apy_batch_slot_t *s, apy_batch_item_t *it,
               apy_nbrun_outcome_t *outcome)
{
    int exitcode = 2;
    int unhandled_sigint = 0;
    apy_options_t opts = *b->opts;
    PyConfig config = *b->config; /* shallow: never cleared here */
    char *out = NULL;
    opts.test = 0;
    opts.target_kind = APY_TARGET_FILE;
    opts.target = it->path;
    if (b->t->output_dir != NULL) {
        out = output_path(b->t->output_dir, it->path);
        if (out == NULL || make_parents(out) < 0) {
            fprintf(stderr, "apyrun: --output-dir %s: %s\n",
                    b->t->output_dir, strerror(errno));
            goto end;
        }
        opts.output = out;
    }
    config.run_filename = Py_DecodeLocale(it->path, NULL);
    PyObject *argv = Py_BuildValue("[s]", it->path);
    if (config.run_filename == NULL || argv == NULL
        || PySys_SetObject("argv", argv) < 0) {
        Py_XDECREF(argv);
        PyErr_Print();
        goto end;
    }
    Py_DECREF(argv);
    exitcode = apy_run_notebook(&config, &opts, &unhandled_sigint, outcome);
end:
    if (child_end() < 0) {
        exitcode = 120; /* as Py_RunMain when the final flush fails */
    }
    fflush(stdout);
    fflush(stderr);
    if (unhandled_sigint) {
        signal(SIGINT, SIG_DFL);
        kill(getpid(), SIGINT);
    }
    _exit(exitcode);
}

/* In a plain forked child: this binary on the script, as `apyrun path`
 * (the same --loop). Never returns. */
static void
child_script(apy_batch_t *b, apy_batch_item_t *it)
{
    const char *loop = b->opts->loop == APY_LOOP_ASYNCIO ? "asyncio"
                                                         : "apyrun";
    /* "--": a path that starts with '-' is still the script. */
    char *argv[] = {"apyrun", "--loop", (char *)loop, "--",
                    (char *)it->path, NULL};
    execv(b->self_exe, argv);
    fprintf(stderr, "apyrun: cannot run %s: %s\n", b->self_exe,
            strerror(errno));
    _exit(127);
}

int
apy__batch_start(apy_batch_t *b, apy_batch_slot_t *s, size_t item,
                 char *err, size_t errlen)
{
    apy_batch_item_t *it = &b->items[item];
    apy_nbrun_outcome_t *outcome = &b->outcomes[s - b->slots];
    memset(outcome, 0, sizeof(*outcome));
    s->out_fd = s->err_fd = -1;
    if (!b->t->capture_no) {
        s->out_fd = capture_file(b->tmpdir);
        s->err_fd = s->out_fd >= 0 ? capture_file(b->tmpdir) : -1;
        if (s->err_fd < 0) {
            snprintf(err, errlen, "cannot make a capture file in %s: %s",
                     b->tmpdir, strerror(errno));
            if (s->out_fd >= 0) {
                close(s->out_fd);
            }
            s->out_fd = -1;
            return -1;
        }
    }
    /* Nothing buffered may be written twice, by the child too. */
    fflush(stdout);
    fflush(stderr);
    pid_t pid;
    if (it->is_script) {
        pid = fork();
        if (pid == 0) {
            child_fds(b, s);
            child_script(b, it);
        }
    } else {
        PyOS_BeforeFork();
        pid = fork();
        if (pid == 0) {
            PyOS_AfterFork_Child();
            child_fds(b, s);
            child_notebook(b, s, it, outcome);
        }
        PyOS_AfterFork_Parent();
    }
    if (pid < 0) {
        snprintf(err, errlen, "cannot start a process: %s", strerror(errno));
        apy__batch_take_output(s, it);
        return -1;
    }
    /* Also here, so the group exists before the batch may signal it. */
    setpgid(pid, pid);
    s->pid = pid;
    s->item = item;
    s->timed_out = s->ended = 0;
    s->term_at = s->kill_at = 0;
    it->state = APY_ITEM_RUNNING;
    return 0;
}

/* The last KEEP_BYTES of capture file fd, NUL-terminated, in *text. */
static void
read_capture(int fd, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0) {
        return;
    }
    off_t from = size > KEEP_BYTES ? size - KEEP_BYTES : 0;
    char note[96] = "";
    if (from > 0) {
        snprintf(note, sizeof(note), "[... %lld bytes before these not "
                 "shown ...]\n", (long long)from);
    }
    size_t nlen = strlen(note);
    char *buf = malloc(nlen + (size_t)(size - from) + 1);
    if (buf == NULL) {
        return;
    }
    memcpy(buf, note, nlen);
    size_t got = 0;
    while (from + (off_t)got < size) {
        ssize_t r = pread(fd, buf + nlen + got, (size_t)(size - from) - got,
                          from + (off_t)got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    buf[nlen + got] = '\0';
    *text = buf;
    *len = nlen + got;
}

void
apy__batch_take_output(apy_batch_slot_t *s, apy_batch_item_t *it)
{
    if (s->out_fd >= 0) {
        read_capture(s->out_fd, &it->out, &it->out_len);
        close(s->out_fd);
    }
    if (s->err_fd >= 0) {
        read_capture(s->err_fd, &it->err, &it->err_len);
        close(s->err_fd);
    }
    s->out_fd = s->err_fd = -1;
}
