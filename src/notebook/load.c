/* SPDX-License-Identifier: MIT */
/* apy_nb_load: a notebook file read safely (a FIFO that no one writes to,
 * /dev/zero, a file over the limit) and handed to its format's reader:
 * nbformat JSON (read.c), jupytext's percent format (percent.c) or MyST
 * Markdown (myst.c), by the file's name. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apyrun/notebook.h"
#include "nb_internal.h"

/* How much a non-regular input (a device, FIFO or pipe) is read at first,
 * and the step it grows by doubling: small, so that /dev/zero costs one
 * chunk, not the limit. */
#define STREAM_CHUNK (64 * 1024)

/* Opens path for apy_nb_load. O_NONBLOCK makes opening a FIFO that no one
 * writes to return at once instead of waiting for a writer forever (it is
 * cleared before reading, so reads block as usual and a FIFO without a
 * writer reads as empty); O_NOCTTY keeps a terminal named as the notebook
 * from becoming the controlling one. Returns the descriptor, or -errno. */
static int
open_input(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 && errno == EWOULDBLOCK) {
        /* Only a file lease held by a writer refuses a non-blocking open:
         * wait for it to be broken, as a plain open does. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    }
    if (fd < 0) {
        return -errno;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* Returns 1 if data[0..n) holds a byte that JSON allows nowhere (a control
 * character other than tab, LF and CR, NUL included): text holding one is
 * not a notebook, whatever follows it. */
static int
has_control_byte(const char *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            return 1;
        }
    }
    return 0;
}

/* Reads what fd (described by st) holds, never more than
 * APY_NB_MAX_FILE_SIZE + 1 bytes. A regular file's size was checked
 * before any read; its buffer is its size (it is still read to EOF, so a
 * file that grows meanwhile is read whole or refused). A stream starts at
 * STREAM_CHUNK and doubles, so the memory held follows what was read, and
 * reading stops at the first chunk with a byte JSON forbids: the parser
 * then reports the first error of what was read, and /dev/zero is refused
 * after one chunk. Rejected: a smaller limit for streams (a notebook
 * piped in would get another limit than the same file) and trusting the
 * limit alone (1 GiB of /dev/zero took 2 GiB of memory and seconds).
 * Returns 0 with *data (malloc'ed, caller frees) and *len, or -EFBIG,
 * -ENOMEM, -errno with one line in err. */
static int
read_input(int fd, const struct stat *st, char **data, size_t *len,
           char *err, size_t errlen)
{
    const size_t limit = (size_t)APY_NB_MAX_FILE_SIZE;
    int stream = !S_ISREG(st->st_mode);
    /* A regular file's buffer has one byte of slack, so that the read
     * that sees EOF needs no growth; /proc files say size 0. */
    size_t cap = stream || (size_t)st->st_size < STREAM_CHUNK
                     ? STREAM_CHUNK : (size_t)st->st_size + 1;
    size_t n = 0;
    char *buf = malloc(cap);

    if (buf == NULL) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    for (;;) {
        if (n == cap) {
            /* n <= limit here (checked after each read), so limit + 1
             * is the most ever held. */
            size_t grown = cap > limit / 2 ? limit + 1 : cap * 2;
            char *p = realloc(buf, grown);
            if (p == NULL) {
                free(buf);
                return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
            }
            buf = p;
            cap = grown;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            free(buf);
            return apy__nb_fail(-e, err, errlen, "cannot read: %s",
                                strerror(e));
        }
        if (got == 0) {
            break;
        }
        int stop = stream && has_control_byte(buf + n, (size_t)got);
        n += (size_t)got;
        if (n > limit) {
            free(buf);
            return apy__nb_fail(-EFBIG, err, errlen,
                                "too large (the limit is 1 GiB)");
        }
        if (stop) {
            break;
        }
    }
    *data = buf;
    *len = n;
    return 0;
}

static int
ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n > t && strcmp(s + n - t, tail) == 0;
}

/* The format a notebook's name tells: .md (and .myst, .mystnb, .mnb)
 * MyST, .py jupytext's percent format, any other name nbformat JSON. */
static apy_nb_format_t
format_of(const char *path)
{
    static const char *const myst[] = {".md", ".myst", ".mystnb", ".mnb",
                                       NULL};
    if (path == NULL) {
        return APY_NB_FORMAT_IPYNB;
    }
    for (const char *const *e = myst; *e != NULL; e++) {
        if (ends_with(path, *e)) {
            return APY_NB_FORMAT_MYST;
        }
    }
    return ends_with(path, ".py") ? APY_NB_FORMAT_PERCENT
                                  : APY_NB_FORMAT_IPYNB;
}

int
apy_nb_load(const char *path, apy_notebook_t *nb, char *err, size_t errlen)
{
    struct stat st;
    char *data = NULL;
    size_t len = 0;
    int fd, rc, e;

    memset(nb, 0, sizeof(*nb));
    fd = open_input(path);
    if (fd < 0) {
        return apy__nb_fail(fd, err, errlen, "cannot open: %s",
                            strerror(-fd));
    }
    if (fstat(fd, &st) < 0) {
        e = errno;
        close(fd);
        return apy__nb_fail(-e, err, errlen, "cannot read: %s", strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return apy__nb_fail(-EISDIR, err, errlen, "is a directory");
    }
    if (S_ISREG(st.st_mode) && st.st_size > APY_NB_MAX_FILE_SIZE) {
        close(fd);
        return apy__nb_fail(-EFBIG, err, errlen,
                            "too large (%lld bytes; the limit is 1 GiB)",
                            (long long)st.st_size);
    }
    rc = read_input(fd, &st, &data, &len, err, errlen);
    close(fd);
    if (rc < 0) {
        return rc;
    }
    if (len == 0 && S_ISFIFO(st.st_mode)) {
        free(data);
        return apy__nb_fail(-EINVAL, err, errlen, "the notebook is empty "
                            "(nothing was written to the FIFO)");
    }
    switch (format_of(path)) {
    case APY_NB_FORMAT_MYST:
        rc = apy__nb_parse_myst(data, len, path, nb, err, errlen);
        break;
    case APY_NB_FORMAT_PERCENT:
        rc = apy__nb_parse_percent(data, len, path, nb, err, errlen);
        break;
    default:
        rc = apy__nb_parse(data, len, path, nb, err, errlen);
    }
    free(data);
    return rc;
}
