/* SPDX-License-Identifier: MIT */
/* Saving the executed notebook: the pre-rendered pieces of write.c joined
 * in order, into memory or into a temporary file beside the target that is
 * fsync()ed and renamed over it, so that the target is always either the
 * old file or the whole new one. Never writes the input unless asked to. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nb_internal.h"

/* Where rendered text goes: a memory buffer or a file descriptor (through
 * a buffer, since a notebook is many small pieces). */
typedef struct {
    apy_nb_buf_t *mem;
    int fd;
    int error; /* errno of the first failed write */
    size_t n;
    char buf[1 << 16];
} sink_t;

static void
sink_flush(sink_t *s)
{
    size_t off = 0;
    ssize_t got;

    while (off < s->n && s->error == 0) {
        got = write(s->fd, s->buf + off, s->n - off);
        if (got < 0) {
            if (errno != EINTR) {
                s->error = errno;
            }
            continue;
        }
        off += (size_t)got;
    }
    s->n = 0;
}

static void
sink_put(sink_t *s, const char *data, size_t len)
{
    size_t room;

    if (s->mem != NULL) {
        apy_nb_buf_put(s->mem, data, len);
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

static void
assemble(const apy_notebook_t *nb, sink_t *s)
{
    const apy_nb_wdoc_t *d = nb->w;
    const apy_nb_pieces_t *m;
    size_t i, k;

    sink_put(s, d->head, d->headlen);
    for (i = 0; i < nb->ncells; i++) {
        m = &nb->cells[i].w->members;
        sink_put(s, i ? ",\n  {" : "\n  {", i ? 5 : 4);
        for (k = 0; k < m->n; k++) {
            sink_put(s, k ? ",\n" : "\n", k ? 2 : 1);
            sink_put(s, m->v[k].text, m->v[k].len);
        }
        sink_put(s, "\n  }", 4);
    }
    sink_put(s, nb->ncells ? "\n ]" : "]", nb->ncells ? 3 : 1);
    sink_put(s, d->tail, d->taillen);
}

int
apy_nb_render(const apy_notebook_t *nb, char **out, size_t *outlen, char *err,
              size_t errlen)
{
    apy_nb_buf_t b = {0};
    sink_t *s;

    *out = NULL;
    *outlen = 0;
    if (nb->w == NULL) {
        return apy_nb_fail(-EINVAL, err, errlen, "no notebook to render");
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return apy_nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    s->mem = &b;
    assemble(nb, s);
    free(s);
    *out = apy_nb_buf_take(&b, outlen);
    if (*out == NULL) {
        return apy_nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    return 0;
}

/* Opens a new temporary file beside `target` (in its directory, so that
 * rename() is atomic), mode 0666 minus the umask, and names it in tmp. */
static int
open_temp(const char *target, char *tmp, size_t tmplen)
{
    char dir[PATH_MAX], base[PATH_MAX];
    const char *d, *bn;
    unsigned char rnd[6];
    struct timespec ts;
    int fd, tries, i;
    size_t blen;

    if (strlen(target) >= sizeof(dir)) {
        return -ENAMETOOLONG;
    }
    strcpy(dir, target);
    strcpy(base, target);
    /* dirname/basename may modify their argument: each gets its own. */
    d = dirname(dir);
    bn = basename(base);
    blen = strlen(bn);
    if (blen > 200) {
        blen = 200; /* leave room for the suffix within NAME_MAX */
    }
    for (tries = 0; tries < 100; tries++) {
        if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) !=
            (ssize_t)sizeof(rnd)) {
            clock_gettime(CLOCK_REALTIME, &ts);
            for (i = 0; i < 6; i++) {
                rnd[i] = (unsigned char)((ts.tv_nsec >> (5 * i)) ^
                                         (getpid() >> i) ^ tries);
            }
        }
        if ((size_t)snprintf(tmp, tmplen,
                             "%s/.%.*s.apyrun-%02x%02x%02x%02x%02x%02x", d,
                             (int)blen, bn, rnd[0], rnd[1], rnd[2], rnd[3],
                             rnd[4], rnd[5]) >= tmplen) {
            return -ENAMETOOLONG;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            return fd;
        }
        if (errno != EEXIST) {
            return -errno;
        }
    }
    return -EEXIST;
}

static void
sync_dir(const char *target)
{
    char dir[PATH_MAX];
    int fd;

    /* Makes the rename itself durable; a failure here loses nothing the
     * rename did not already publish, so it is not reported. */
    if (strlen(target) >= sizeof(dir)) {
        return;
    }
    strcpy(dir, target);
    fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int
apy_nb_save(const apy_notebook_t *nb, const char *out_path, char *err,
            size_t errlen)
{
    char resolved[PATH_MAX], tmp[PATH_MAX + 64];
    const char *target = out_path;
    struct stat st;
    sink_t *s;
    int fd, rc, have_mode = 0;
    mode_t mode = 0;

    if (nb->w == NULL) {
        return apy_nb_fail(-EINVAL, err, errlen,
                           "cannot write %s: no "
                           "notebook",
                           out_path);
    }
    /* Writing through a symlink keeps the link (and edits what it points
     * at), as an editor saving the file would. */
    if (lstat(out_path, &st) == 0 && S_ISLNK(st.st_mode) &&
        realpath(out_path, resolved) != NULL) {
        target = resolved;
    }
    if (stat(target, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            return apy_nb_fail(-EISDIR, err, errlen,
                               "cannot write %s: is a directory", out_path);
        }
        mode = st.st_mode & 07777;
        have_mode = 1;
    }
    s = malloc(sizeof(*s));
    if (s == NULL) {
        return apy_nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    fd = open_temp(target, tmp, sizeof(tmp));
    if (fd < 0) {
        free(s);
        return apy_nb_fail(fd, err, errlen, "cannot write %s: %s", out_path,
                           strerror(-fd));
    }
    if (have_mode) {
        /* --inplace keeps the notebook's permissions. */
        (void)fchmod(fd, mode);
    }
    s->mem = NULL;
    s->fd = fd;
    s->error = 0;
    s->n = 0;
    assemble(nb, s);
    sink_flush(s);
    rc = -s->error;
    free(s);
    if (rc == 0 && fsync(fd) < 0) {
        rc = -errno;
    }
    if (close(fd) < 0 && rc == 0) {
        rc = -errno;
    }
    if (rc == 0 && rename(tmp, target) < 0) {
        rc = -errno;
    }
    if (rc < 0) {
        unlink(tmp);
        return apy_nb_fail(rc, err, errlen, "cannot write %s: %s", out_path,
                           strerror(-rc));
    }
    sync_dir(target);
    return 0;
}

int
apy_nb_write(apy_notebook_t *nb, const apy_nb_result_t *results,
             size_t nresults, const char *out_path, char *err, size_t errlen)
{
    size_t i;
    int rc;

    for (i = 0; i < nresults; i++) {
        if ((rc = apy_nb_set_result(nb, &results[i], err, errlen)) < 0) {
            return rc;
        }
    }
    return apy_nb_save(nb, out_path, err, errlen);
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
