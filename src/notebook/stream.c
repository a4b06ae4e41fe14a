/* SPDX-License-Identifier: MIT */
/* A big stream output's text, rendered as it arrives into nbformat's lines
 * (str.splitlines(True), each a JSON string in nbformat's layout), kept in
 * memory up to a few MB and beyond that in an unlinked temporary file, so
 * that a gigabyte of output costs the run a few MB and a save copies the
 * file in the kernel. Plain C; the run layer decides what comes here. */
/* O_TMPFILE, mkostemp and copy_file_range are Linux/GNU interfaces. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apyrun/buf.h"
#include "nb_internal.h"

/* Bytes copied into a target between two starts of writeback. */
#define COPY_STEP ((size_t)16 << 20)
/* Rendered text moves to the file in chunks of this size. */
#define SPILL_CHUNK (1u << 20)
/* A stream output's lines, in nbformat's layout (indent 1): the outputs
 * list at 4, an output's members at 5, the list of lines at 6. */
#define LINE_LEVEL 6
/* A display_data's or execute_result's value, split into lines: the data
 * object's members at 6, the list of lines at 7. */
#define VALUE_LINE_LEVEL 7

struct apy_nb_stream {
    int refs;
    char *dir;          /* where the spill file goes; NULL: $TMPDIR */
    int fd;             /* the spill file, or -1 */
    off_t spilled;      /* bytes of rendered text in it */
    off_t base;         /* where in it they start (apy__nb_stream_moved) */
    apy_buf_t out;   /* rendered text after what was spilled */
    apy_buf_t line;  /* the line being received, raw UTF-8 */
    size_t scan;        /* bytes of `line` known to hold no line end */
    size_t nlines;      /* lines rendered */
    int finished;
    int no_spill;       /* the file failed: memory from now on */
    int level;          /* lines: their indent; 0: one JSON string */
};

apy_nb_stream_t *
apy_nb_stream_new(const char *spill_dir)
{
    apy_nb_stream_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->refs = 1;
    s->fd = -1;
    s->level = LINE_LEVEL;
    if (spill_dir != NULL && (s->dir = strdup(spill_dir)) == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

apy_nb_stream_t *
apy_nb_value_new(const char *spill_dir, int split)
{
    apy_nb_stream_t *s = apy_nb_stream_new(spill_dir);
    if (s != NULL) {
        s->level = split ? VALUE_LINE_LEVEL : 0;
    }
    return s;
}

int
apy__nb_stream_split(const apy_nb_stream_t *s)
{
    return s->level != 0;
}

apy_nb_stream_t *
apy__nb_stream_ref(apy_nb_stream_t *s)
{
    s->refs++;
    return s;
}

void
apy_nb_stream_unref(apy_nb_stream_t *s)
{
    if (s == NULL || --s->refs > 0) {
        return;
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    apy_buf_free(&s->out);
    apy_buf_free(&s->line);
    free(s->dir);
    free(s);
}

/* An unlinked file for the rendered text: O_TMPFILE where the file system
 * has it, else a named file removed at once. -1 with errno on failure. */
static int
open_spill(const char *dir)
{
    char path[PATH_MAX];
    const char *d = dir;
    int fd;

    if (d == NULL) {
        d = getenv("TMPDIR");
        if (d == NULL || d[0] == '\0') {
            d = "/tmp";
        }
    }
    fd = open(d, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR
                    && errno != EINVAL && errno != ENOENT)) {
        return fd;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/.apyrun-output-XXXXXX", d)
        >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0) {
        unlink(path);
    }
    return fd;
}

/* Moves the rendered text to the spill file. Where no file can be had or
 * written (a full disk), the text simply stays in memory from then on. */
static void
spill(apy_nb_stream_t *s)
{
    size_t off = 0;
    ssize_t got;

    if (s->no_spill) {
        return;
    }
    if (s->fd < 0 && (s->fd = open_spill(s->dir)) < 0) {
        s->no_spill = 1;
        return;
    }
    while (off < s->out.len) {
        got = pwrite(s->fd, s->out.data + off, s->out.len - off,
                     s->base + s->spilled + (off_t)off);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            /* What reached the file stays counted; the rest moves to
             * the front of the buffer, in order. */
            s->no_spill = 1;
            break;
        }
        off += (size_t)got;
    }
    /* Beside a target, written back from now on, not all at a save's
     * fsync, should the file itself become the saved notebook
     * (apy__nb_stream_moved). */
    if (off > 0 && s->dir != NULL) {
        (void)sync_file_range(s->fd, s->base + s->spilled, (off_t)off,
                              SYNC_FILE_RANGE_WRITE);
    }
    memmove(s->out.data, s->out.data + off, s->out.len - off);
    s->out.len -= off;
    s->spilled += (off_t)off;
}

/* Renders line[0..n) as the next item of the list of lines. */
static void
put_line(apy_nb_stream_t *s, const char *line, size_t n)
{
    if (s->nlines++ > 0) {
        apy_buf_put(&s->out, ",\n", 2);
    }
    apy_buf_indent(&s->out, s->level);
    apy__nb_render_string(&s->out, line, n);
    if (s->out.len >= SPILL_CHUNK) {
        spill(s);
    }
}

/* Returns the length of the line end starting at p[0] (1-3 bytes), 0 if
 * p[0] starts none, or -1 if the bytes up to end do not tell yet (a '\r'
 * that a '\n' may follow, a UTF-8 sequence cut short). str.splitlines
 * ends lines at \n, \r, \r\n, \v, \f, \x1c-\x1e, U+0085, U+2028, U+2029. */
static int
line_end(const unsigned char *p, const unsigned char *end, int final)
{
    switch (p[0]) {
    case '\n':
    case '\v':
    case '\f':
    case 0x1c:
    case 0x1d:
    case 0x1e:
        return 1;
    case '\r':
        if (p + 1 == end) {
            return final ? 1 : -1;
        }
        return p[1] == '\n' ? 2 : 1;
    case 0xc2:
        if (p + 1 == end) {
            return final ? 0 : -1;
        }
        return p[1] == 0x85 ? 2 : 0;
    case 0xe2:
        if (p + 2 >= end) {
            return final || (p + 1 < end && p[1] != 0x80) ? 0 : -1;
        }
        return p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9) ? 3 : 0;
    default:
        return 0;
    }
}

/* Renders every complete line of s->line (all of it when final). */
static void
take_lines(apy_nb_stream_t *s, int final)
{
    if (s->line.len == 0) {
        return; /* also: no buffer yet (data NULL) */
    }
    const unsigned char *base = (const unsigned char *)s->line.data;
    const unsigned char *end = base + s->line.len;
    const unsigned char *start = base, *p = base + s->scan;
    int n;

    while (p < end) {
        /* Most bytes end nothing: skip them in bulk. */
        if (*p > 0x1e && *p != 0xc2 && *p != 0xe2) {
            p++;
            continue;
        }
        n = line_end(p, end, final);
        if (n < 0) {
            break;
        }
        if (n == 0) {
            p++;
            continue;
        }
        p += n;
        put_line(s, (const char *)start, (size_t)(p - start));
        start = p;
    }
    if (final && start < end) {
        put_line(s, (const char *)start, (size_t)(end - start));
        start = end;
        p = end;
    }
    /* Keep only the unfinished line. */
    size_t used = (size_t)(start - base);
    memmove(s->line.data, s->line.data + used, s->line.len - used);
    s->line.len -= used;
    s->scan = (size_t)(p - start);
}

int
apy_nb_stream_put(apy_nb_stream_t *s, const char *utf8, size_t len)
{
    if (s->finished) {
        return -EINVAL;
    }
    if (s->level == 0) {
        /* One string: escaped as it comes, bytes cut anywhere. */
        if (s->nlines++ == 0) {
            apy_buf_putc(&s->out, '"');
        }
        apy__nb_render_string_body(&s->out, utf8, len);
        if (s->out.len >= SPILL_CHUNK) {
            spill(s);
        }
        return s->out.failed ? -ENOMEM : 0;
    }
    apy_buf_put(&s->line, utf8, len);
    if (s->line.failed) {
        return -ENOMEM;
    }
    take_lines(s, 0);
    return s->out.failed ? -ENOMEM : 0;
}

int
apy_nb_stream_finish(apy_nb_stream_t *s)
{
    if (!s->finished && s->level == 0) {
        apy_buf_puts(&s->out, s->nlines++ == 0 ? "\"\"" : "\"");
    }
    if (!s->finished) {
        take_lines(s, 1);
        s->finished = 1;
        apy_buf_free(&s->line);
    }
    return s->out.failed ? -ENOMEM : 0;
}

size_t
apy__nb_stream_lines(const apy_nb_stream_t *s)
{
    return s->nlines;
}

int
apy__nb_stream_spill_fd(const apy_nb_stream_t *s, off_t *spilled)
{
    *spilled = s->fd >= 0 && s->base == 0 ? s->spilled : 0;
    return *spilled > 0 ? s->fd : -1;
}

void
apy__nb_stream_moved(apy_nb_stream_t *s, off_t base)
{
    s->base = base;
    if (base != 0) {
        s->no_spill = 1; /* the notebook's file now: nothing more in it */
    }
}

int
apy__nb_stream_copy_tail(const apy_nb_stream_t *s, int fd)
{
    return apy__nb_write_all(fd, s->out.data, s->out.len);
}

int
apy__nb_stream_copy(const apy_nb_stream_t *s, int fd, apy_buf_t *mem)
{
    char buf[1 << 16];
    off_t off = s->base;
    ssize_t got;

    /* In the kernel where both ends allow it (no copy through here), in
     * steps whose writeback starts at once: the fsync after a gigabyte
     * then waits for little more than the last step. */
    const off_t end = s->base + s->spilled;
    while (fd >= 0 && s->fd >= 0 && off < end) {
        size_t want = end - off < (off_t)COPY_STEP ? (size_t)(end - off)
                                                    : COPY_STEP;
        off_t at = lseek(fd, 0, SEEK_CUR);
        got = copy_file_range(s->fd, &off, fd, NULL, want, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            break; /* EXDEV, EINVAL (a pipe): the loop below */
        }
        if (at >= 0) {
            (void)sync_file_range(fd, at, got, SYNC_FILE_RANGE_WRITE);
        }
    }
    while (s->fd >= 0 && off < end) {
        size_t want = sizeof(buf);
        if ((off_t)want > end - off) {
            want = (size_t)(end - off);
        }
        got = pread(s->fd, buf, want, off);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return got < 0 ? -errno : -EIO;
        }
        if (mem != NULL) {
            apy_buf_put(mem, buf, (size_t)got);
        } else if ((got = apy__nb_write_all(fd, buf, (size_t)got)) < 0) {
            return (int)got;
        }
        off += got;
    }
    if (mem != NULL) {
        apy_buf_put(mem, s->out.data, s->out.len);
        return mem->failed ? -ENOMEM : 0;
    }
    return apy__nb_write_all(fd, s->out.data, s->out.len);
}
