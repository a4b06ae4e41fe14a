/* SPDX-License-Identifier: MIT */
/* Saving the executed notebook: write.c's pre-rendered pieces joined in
 * order into memory, into a temporary file fsync()ed and renamed over a
 * regular target (always the old file or the whole new one), or into a
 * target never replaced (a device, a FIFO, stdout); the next save's
 * prefix, and a signal's save that moves no big output. See target.c. */
#define _GNU_SOURCE /* copy_file_range */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "apyrun/buf.h"
#include "nb_internal.h"

/* A save that makes a big stream's spill file the notebook (see
 * save_adopting): the stream, its file, where its lines went. */
struct adopt {
    apy_nb_stream_t *stream;
    int sfd;         /* the stream's spill file */
    off_t spilled;   /* its lines' bytes, from 0 until moved */
    off_t ins;       /* bytes put before them (a multiple of the block) */
    int head_fd;     /* where the bytes before them were written */
    int moved;       /* the lines were moved up by ins */
};

/* Where rendered text goes: a memory buffer or a file descriptor (through
 * a buffer, since a notebook is many small pieces). */
typedef struct {
    apy_buf_t *mem;
    int fd;
    int error; /* errno of the first failed write */
    size_t n;
    struct adopt *adopt; /* or NULL: see save_adopting */
    char buf[1 << 16];
} sink_t;

static void adopt_switch(sink_t *s);

static void
sink_flush(sink_t *s)
{
    int rc;

    if (s->error == 0 && (rc = apy__nb_write_all(s->fd, s->buf, s->n)) < 0) {
        s->error = -rc;
    }
    s->n = 0;
}

static void
sink_put(sink_t *s, const char *data, size_t len)
{
    size_t room;

    if (s->mem != NULL) {
        apy_buf_put(s->mem, data, len);
        return;
    }
    while (len > 0 && s->error == 0) {
        room = sizeof(s->buf) - s->n;
        if (room > len) {
            room = len;
        }
        memcpy(s->buf + s->n, data, room);
        s->n += room;
        data += room;
        len -= room;
        if (s->n == sizeof(s->buf)) {
            sink_flush(s);
        }
    }
}

/* Puts a big stream's lines: from its file straight into the target
 * where the sink is one (flushed first, so the order holds). */
static void
sink_stream(sink_t *s, const apy_nb_stream_t *stream)
{
    int rc;

    if (s->mem != NULL) {
        (void)apy__nb_stream_copy(stream, -1, s->mem);
        return;
    }
    sink_flush(s);
    if (s->adopt != NULL && s->adopt->stream == stream) {
        adopt_switch(s);
        return;
    }
    if (s->error == 0 && (rc = apy__nb_stream_copy(stream, s->fd, NULL)) < 0) {
        s->error = -rc;
    }
}

/* Puts a cell member, filling the holes its big streams left. */
static void
sink_member(sink_t *s, const apy_nb_wcell_t *w, const apy_nb_piece_t *p)
{
    size_t at = 0, h;

    if (w->nholes > 0 && strcmp(p->key, "outputs") == 0) {
        for (h = 0; h < w->nholes; h++) {
            sink_put(s, p->text + at, w->holes[h].off - at);
            sink_stream(s, w->holes[h].stream);
            at = w->holes[h].off;
        }
    }
    sink_put(s, p->text + at, p->len - at);
}

/* Puts the notebook from cell `from` on (the head too when from is 0).
 * For a file sink, sets *marked to the file offset where cell `mark`
 * starts (its separator; at `ncells`, the end of the cells), or leaves it
 * alone when the sink passes no such point. */
static void
assemble_from(const apy_notebook_t *nb, sink_t *s, size_t from, size_t mark,
              off_t *marked)
{
    const apy_nb_wdoc_t *d = nb->w;
    const apy_nb_wcell_t *w;
    size_t i, k;

    if (from == 0) {
        sink_put(s, d->head, d->headlen);
    }
    for (i = from; i <= nb->ncells; i++) {
        if (i == mark && marked != NULL && s->mem == NULL) {
            sink_flush(s);
            *marked = lseek(s->fd, 0, SEEK_CUR);
        }
        if (i == nb->ncells) {
            break;
        }
        w = nb->cells[i].w;
        sink_put(s, i ? ",\n  {" : "\n  {", i ? 5 : 4);
        for (k = 0; k < w->members.n; k++) {
            sink_put(s, k ? ",\n" : "\n", k ? 2 : 1);
            sink_member(s, w, &w->members.v[k]);
        }
        sink_put(s, "\n  }", 4);
    }
    sink_put(s, nb->ncells ? "\n ]" : "]", nb->ncells ? 3 : 1);
    sink_put(s, d->tail, d->taillen);
}

static void
assemble(const apy_notebook_t *nb, sink_t *s)
{
    assemble_from(nb, s, 0, SIZE_MAX, NULL);
}

int
apy__nb_render(const apy_notebook_t *nb, char **out, size_t *outlen, char *err,
               size_t errlen)
{
    apy_buf_t b = {0};
    sink_t *s;

    *out = NULL;
    *outlen = 0;
    if (nb->w == NULL) {
        return apy__nb_fail(-EINVAL, err, errlen, "no notebook to render");
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    s->mem = &b;
    assemble(nb, s);
    free(s);
    *out = apy_buf_take(&b, outlen);
    if (*out == NULL) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    return 0;
}

/* Writes the notebook from cell `from` on to fd (at its offset), setting
 * *marked as assemble_from does. Returns 0 or -errno. */
static int
write_from(const apy_notebook_t *nb, int fd, size_t from, size_t mark,
           off_t *marked)
{
    sink_t *s = calloc(1, sizeof(*s));
    int rc;

    if (s == NULL) {
        return -ENOMEM;
    }
    s->fd = fd;
    assemble_from(nb, s, from, mark, marked);
    sink_flush(s);
    rc = -s->error;
    free(s);
    return rc;
}

/* Writes the whole notebook to fd. Returns 0 or -errno. */
static int
write_all(const apy_notebook_t *nb, int fd)
{
    return write_from(nb, fd, 0, SIZE_MAX, NULL);
}

/* ---- the next save's prefix ----
 * With a big output in it, every save of a notebook copies that output
 * again, and the save a signal asks for could take seconds. So a save
 * also copies the cells that can no longer change (those that ran:
 * `stable`) from the file it just wrote into the next save's temporary
 * file, fsync'ed; the next save then writes only the rest into it,
 * unless a result changed one of those cells since (update_display). The
 * copy is part of the save, so the throttle counts it (saves stay under a
 * tenth of the run). A signal's save is never the one that pays: it is
 * the last (stable 0: no copy), and a signal that comes during a copy
 * stops it (t->stop) with the file just saved current. (A thread doing
 * the copy while the next cell ran was tried: a signal right after a big
 * save then waited for it, 5 s for 1 GiB.) */

/* Below this, a whole save is about as quick as the rest of one. */
#define PREFIX_MIN ((off_t)4 << 20)

/* Bytes copied between two looks at the stop flag. */
#define PREFIX_STEP ((size_t)16 << 20)

/* Copies src[lo..len) into fd at the same offsets, in the kernel where it
 * can, and syncs fd. Stops early, with -EINTR, once *stop is set. 0 or
 * -errno. */
static int
copy_prefix(int src, int fd, off_t lo, off_t len,
            const volatile sig_atomic_t *stop)
{
    char buf[1 << 16];
    off_t in = lo, out = lo;
    ssize_t got, put;
    size_t want;

    while (in < len) {
        if (stop != NULL && *stop) {
            return -EINTR;
        }
        want = len - in < (off_t)PREFIX_STEP ? (size_t)(len - in)
                                              : PREFIX_STEP;
        got = copy_file_range(src, &in, fd, &out, want, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            break; /* EXDEV, EINVAL...: the loop below */
        }
    }
    while (in < len) {
        if (stop != NULL && *stop) {
            return -EINTR;
        }
        want = (off_t)sizeof(buf) < len - in ? sizeof(buf)
                                             : (size_t)(len - in);
        got = pread(src, buf, want, in);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return got < 0 ? -errno : -EIO;
        }
        put = pwrite(fd, buf, (size_t)got, out);
        if (put != got) {
            return put < 0 ? -errno : -EIO;
        }
        in += got;
        out += got;
    }
    return fsync(fd) < 0 ? -errno : 0;
}

/* Returns 1 if prefix p still holds what the cells it covers render to
 * now, else 0. */
static int
prefix_fits(const struct apy_nb_prefix *p, const apy_notebook_t *nb)
{
    if (p->layout != nb->w->layout || p->cells > nb->ncells) {
        return 0;
    }
    for (size_t i = 0; i < p->cells; i++) {
        if (nb->cells[i].w->gen > p->gen) {
            return 0;
        }
    }
    return 1;
}

/* Returns 1 if fd is the only open file of its inode, else 0: a reader
 * that opened the target before it was replaced must keep reading what
 * it opened, so that file is not rewritten. A write lease is granted
 * only to the only opener (fcntl(2)); it is let go at once. Were the file
 * opened meanwhile (by the temporary name alone), the lease break would
 * send SIGURG, ignored by default, not SIGIO, which kills. */
static int
open_only_here(int fd)
{
    if (fcntl(fd, F_SETSIG, SIGURG) < 0
        || fcntl(fd, F_SETLEASE, F_WRLCK) < 0) {
        return 0;
    }
    (void)fcntl(fd, F_SETLEASE, F_UNLCK);
    return 1;
}

/* After a save renamed our file A over the one we saved before (B, the
 * target's old file: t->saved), this makes the next save's prefix: the
 * first `len` bytes of A (cells [0, cells)) in a temporary file. That
 * file is B where the rename exchanged the two (B then sits at tmp): B
 * holds its own prefix already, so only the bytes since are copied,
 * about what the save wrote; else a new file, copied whole. Best effort:
 * without it the next save is a whole one. Takes fd_a as the new
 * t->saved (or closes it). */
static void
prefix_make(apy_nb_target_t *t, const apy_notebook_t *nb, int fd_a,
            off_t len, size_t cells, const char *tmp, int exchanged)
{
    struct apy_nb_prefix *b = t->saved, *p = NULL, *a = NULL;
    struct stat st, bst;
    off_t lo = 0;

    t->saved = NULL;
    if (exchanged) {
        /* The old target is at tmp now: ours, unless something took its
         * place before the exchange, and only ours (one link). */
        if (b == NULL || lstat(tmp, &st) < 0 || fstat(b->fd, &bst) < 0
            || st.st_ino != bst.st_ino || st.st_dev != bst.st_dev
            || st.st_nlink != 1 || !open_only_here(b->fd)) {
            unlink(tmp);
            apy__nb_prefix_free(b);
            b = NULL;
        } else {
            strcpy(b->tmp, tmp);
        }
    } else {
        /* Its file was replaced: only the fd is left. */
        apy__nb_prefix_free(b);
        b = NULL;
    }
    if (len < PREFIX_MIN || cells == 0 || (t->stop != NULL && *t->stop)
        || (a = calloc(1, sizeof(*a))) == NULL) {
        goto done;
    }
    a->fd = fd_a;
    fd_a = -1;
    a->len = len;
    a->cells = cells;
    a->gen = nb->w->gen;
    a->layout = nb->w->layout;
    a->tmp[0] = '\0';
    if (b != NULL) {
        /* B's bytes up to the cells both cover are A's too. */
        if (prefix_fits(b, nb)) {
            lo = b->len < len ? b->len : len;
        }
        p = b;
        b = NULL;
        if (ftruncate(p->fd, lo) < 0) {
            goto done;
        }
    } else if ((p = calloc(1, sizeof(*p))) == NULL
               || (p->fd = apy__nb_temp_for(t, p->tmp, sizeof(p->tmp))) < 0) {
        goto done;
    }
    if (copy_prefix(a->fd, p->fd, lo, len, t->stop) < 0) {
        goto done;
    }
    p->len = len;
    p->cells = cells;
    p->gen = a->gen;
    p->layout = a->layout;
    t->prefix = p;
    p = NULL;
    t->saved = a;
    a = NULL;
done:
    apy__nb_prefix_free(p);
    apy__nb_prefix_free(b);
    apy__nb_prefix_free(a); /* the target: a->tmp is empty, nothing removed */
    if (fd_a >= 0) {
        close(fd_a);
    }
}

/* The atomic replace: a temporary file born with the target's mode (and,
 * for root, its owner), fsync, rename; the cells of a fitting prefix are
 * in that file already. Then makes the next save's prefix from cells
 * [0, stable). Returns 0 or -errno. */
static int
save_replace(const apy_notebook_t *nb, apy_nb_target_t *t, size_t stable)
{
    char tmp[PATH_MAX + 64];
    struct apy_nb_prefix *p = t->prefix;
    size_t from = 0;
    off_t at = 0, marked = -1, end;
    int fd = -1, rc, exchanged = 0;

    t->prefix = NULL;
    if (p != NULL) {
        if (prefix_fits(p, nb)) {
            fd = p->fd;
            p->fd = -1;
            strcpy(tmp, p->tmp);
            from = p->cells;
            at = p->len;
        }
        apy__nb_prefix_free(p);
    }
    if (fd < 0 && (fd = apy__nb_temp_for(t, tmp, sizeof(tmp))) < 0) {
        return fd;
    }
    if (lseek(fd, at, SEEK_SET) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = write_from(nb, fd, from, stable >= from ? stable : SIZE_MAX,
                    &marked);
    if (rc < 0) {
        goto fail;
    }
    /* A reused file may have held more. */
    if ((end = lseek(fd, 0, SEEK_CUR)) < 0 || ftruncate(fd, end) < 0) {
        rc = -errno;
        goto fail;
    }
    if (fsync(fd) < 0) {
        rc = -errno;
        goto fail;
    }
    if (t->saved != NULL) {
        /* Over our own last save: exchanged, so that its file can be the
         * next save's prefix without copying all of it. */
        exchanged = renameat2(AT_FDCWD, tmp, AT_FDCWD, t->path,
                              RENAME_EXCHANGE)
                    == 0;
    }
    if (!exchanged && rename(tmp, t->path) < 0) {
        rc = -errno;
        goto fail;
    }
    apy__nb_sync_dir(t->path);
    if (marked < 0 && from > 0 && stable < from) {
        marked = at; /* the prefix used still holds */
        stable = from;
    }
    prefix_make(t, nb, fd, marked, stable, tmp, exchanged);
    return 0;

fail:
    close(fd);
    unlink(tmp);
    return rc;
}

/* ---- a signal's save that moves no big output ----
 * The save a SIGTERM asks for while a cell is printing a gigabyte would
 * copy that cell's output into the new file: about a second here. So
 * that save makes the biggest stream's spill file (beside the target, an
 * O_TMPFILE) the notebook itself: the bytes before the stream's lines go
 * in front of them with fallocate(FALLOC_FL_INSERT_RANGE), which moves
 * extents, not data, but only by whole blocks, so spaces (JSON
 * whitespace) pad the front of the file up to one; the rest follows the
 * lines; the file is linked in and renamed over the target. Only then,
 * with the run ending, is a save not byte for byte nbformat's. Where the
 * file system cannot (no INSERT_RANGE, no O_TMPFILE), the save is a
 * whole one; where a prepared save (the prefix) holds the stream, that
 * is used. */

/* Streams smaller than this are copied: the copy is quick enough. */
#define ADOPT_MIN ((off_t)64 << 20)

/* Called by the sink at the stream being adopted, the bytes before it
 * written to head_fd: puts them in front of its lines, then points the
 * sink after them. */
static void
adopt_switch(sink_t *s)
{
    struct adopt *a = s->adopt;
    char pad[512];
    struct stat st;
    off_t len, blk, in = 0, out, at;
    ssize_t got;

    if (s->error != 0) {
        return;
    }
    s->adopt = NULL; /* once */
    len = lseek(a->head_fd, 0, SEEK_CUR);
    blk = fstat(a->sfd, &st) == 0 && st.st_blksize > 0 ? st.st_blksize
                                                       : 4096;
    if (len <= 0) {
        s->error = EIO;
        return;
    }
    a->ins = (len + blk - 1) / blk * blk;
    if (fallocate(a->sfd, FALLOC_FL_INSERT_RANGE, 0, a->ins) < 0) {
        s->error = errno;
        return;
    }
    a->moved = 1;
    apy__nb_stream_moved(a->stream, a->ins);
    memset(pad, ' ', sizeof(pad));
    for (at = 0; at < a->ins - len; at += got) {
        size_t want = a->ins - len - at < (off_t)sizeof(pad)
                          ? (size_t)(a->ins - len - at)
                          : sizeof(pad);
        got = pwrite(a->sfd, pad, want, at);
        if (got <= 0) {
            s->error = got < 0 ? errno : EIO;
            return;
        }
    }
    out = a->ins - len;
    while (in < len) {
        got = copy_file_range(a->head_fd, &in, a->sfd, &out,
                              (size_t)(len - in), 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            s->error = got < 0 ? errno : EIO;
            return;
        }
    }
    if (lseek(a->sfd, a->ins + a->spilled, SEEK_SET) < 0) {
        s->error = errno;
        return;
    }
    s->fd = a->sfd;
    int rc = apy__nb_stream_copy_tail(a->stream, a->sfd);
    if (rc < 0) {
        s->error = -rc;
    }
}

/* The SIGTERM save described above. Returns 0 (saved), 1 (not for this
 * save: the caller saves as usual), -ENOTRECOVERABLE (the stream's file
 * could not be put back: no save would be right), or another -errno (the
 * stream is as it was; the caller may save as usual). */
static int
save_adopting(const apy_notebook_t *nb, apy_nb_target_t *t)
{
    struct adopt a = {NULL, -1, 0, 0, -1, 0};
    char tmp[PATH_MAX + 64], proc[64];
    struct stat st;
    sink_t *s;
    off_t sp, end;
    int rc = 0;

    if (t->stop == NULL || !*t->stop) {
        return 1;
    }
    for (size_t i = 0; i < nb->ncells; i++) {
        const apy_nb_wcell_t *w = nb->cells[i].w;
        for (size_t h = 0; h < w->nholes; h++) {
            int fd = apy__nb_stream_spill_fd(w->holes[h].stream, &sp);
            if (fd >= 0 && sp > a.spilled) {
                a.stream = w->holes[h].stream;
                a.sfd = fd;
                a.spilled = sp;
            }
        }
    }
    /* A prepared save that holds the stream already writes only the rest:
     * quicker still (no gigabyte freed twice). */
    if (a.spilled < ADOPT_MIN
        || (t->prefix != NULL && t->prefix->len >= a.spilled
            && prefix_fits(t->prefix, nb))
        || (s = calloc(1, sizeof(*s))) == NULL) {
        return 1;
    }
    a.head_fd = apy__nb_temp_for(t, tmp, sizeof(tmp));
    if (a.head_fd < 0) {
        free(s);
        return a.head_fd;
    }
    s->fd = a.head_fd;
    s->adopt = &a;
    assemble(nb, s);
    sink_flush(s);
    rc = s->error ? -s->error : s->fd != a.sfd ? -EIO : 0;
    free(s);
    if (rc < 0) {
        goto drop_head;
    }
    if ((end = lseek(a.sfd, 0, SEEK_CUR)) < 0 || ftruncate(a.sfd, end) < 0) {
        rc = -errno;
        goto drop_head;
    }
    /* The mode and owner a temporary file would have had. */
    if (fstat(a.head_fd, &st) < 0
        || (st.st_uid != geteuid()
            && fchown(a.sfd, st.st_uid, st.st_gid) < 0)
        || fchmod(a.sfd, st.st_mode & 07777) < 0 || fsync(a.sfd) < 0) {
        rc = -errno;
        goto drop_head;
    }
    /* The head's name, freed, names the adopted file. */
    unlink(tmp);
    close(a.head_fd);
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", a.sfd);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) < 0) {
        rc = -errno;
        goto put_back;
    }
    if (rename(tmp, t->path) < 0) {
        rc = -errno;
        unlink(tmp);
        goto put_back;
    }
    apy__nb_sync_dir(t->path);
    apy__nb_prefix_free(t->prefix); /* the last save: none follows */
    t->prefix = NULL;
    return 0;

drop_head:
    unlink(tmp);
    close(a.head_fd);
put_back:
    if (a.moved) {
        /* Back as it was, so that a whole save can still copy it. */
        if (ftruncate(a.sfd, a.ins + a.spilled) < 0
            || fallocate(a.sfd, FALLOC_FL_COLLAPSE_RANGE, 0, a.ins) < 0) {
            return -ENOTRECOVERABLE;
        }
        apy__nb_stream_moved(a.stream, 0);
    }
    return rc;
}

/* Writes into what the target names (a device, a FIFO, a /proc link):
 * opened now, never created, never replaced. Returns 0 or -errno. */
static int
save_into(const apy_notebook_t *nb, const apy_nb_target_t *t)
{
    int fd = open(t->path, O_WRONLY | O_NOCTTY | O_CLOEXEC
                               | (t->truncate ? O_TRUNC : 0));
    int rc;

    if (fd < 0) {
        return -errno;
    }
    rc = write_all(nb, fd);
    if (close(fd) < 0 && rc == 0 && errno != EINTR) {
        rc = -errno;
    }
    return rc;
}

int
apy_nb_target_save(const apy_notebook_t *nb, apy_nb_target_t *t,
                   size_t stable, char *err, size_t errlen)
{
    int rc;

    if (nb->w == NULL) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "cannot write %s: no notebook", t->shown);
    }
    switch (t->kind) {
    case APY_NB_TARGET_REPLACE:
        rc = stable == 0 ? save_adopting(nb, t) : 1;
        if (rc != 0 && rc != -ENOTRECOVERABLE) {
            rc = save_replace(nb, t, stable);
        }
        break;
    case APY_NB_TARGET_INTO:
        rc = save_into(nb, t);
        break;
    default:
        rc = write_all(nb, t->fd);
        break;
    }
    if (rc < 0) {
        return apy__nb_fail(rc, err, errlen, "cannot write %s: %s", t->shown,
                            strerror(-rc));
    }
    return 0;
}

int
apy__nb_save(const apy_notebook_t *nb, const char *out_path, char *err,
             size_t errlen)
{
    apy_nb_target_t t;
    int rc;

    if (nb->w == NULL) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "cannot write %s: no notebook", out_path);
    }
    rc = apy_nb_target_open(out_path, &t, err, errlen);
    if (rc == 0) {
        rc = apy_nb_target_save(nb, &t, 0, err, errlen);
        apy_nb_target_close(&t);
    }
    return rc;
}

void
apy_nb_timestamp(char buf[APY_NB_TIMESTAMP_SIZE])
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    /* nbclient: strftime(date, '%Y-%m-%dT%H:%M:%S.%fZ') */
    n = strftime(buf, APY_NB_TIMESTAMP_SIZE, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, APY_NB_TIMESTAMP_SIZE - n, ".%06ldZ",
             (long)(ts.tv_nsec / 1000));
}
