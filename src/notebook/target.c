/* SPDX-License-Identifier: MIT */
/* Where the executed notebook goes (apy_nb_target_open/close): a regular
 * file replaced atomically, something written into, or stdout; decided
 * once, following symlinks only as the kernel would. Also the files a
 * save makes beside a regular target (temporary files, the prefix) and
 * their cleanup. Never writes a notebook itself: that is save.c. */
#define _GNU_SOURCE /* F_DUPFD_CLOEXEC, fdopendir */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nb_internal.h"

/* Temporary files are named .NAME.apyrun-PID-RANDOM beside NAME. */
#define TEMP_TAG ".apyrun-"

/* Opens a new temporary file beside `target` (in its directory, so that
 * rename() is atomic), born with `mode` (the final file's, minus the
 * umask: never wider than the notebook it replaces), and names it in tmp.
 * The name carries our pid so that a later run can tell a temporary file
 * left by a killed run from one a live run is writing. */
static int
open_temp(const char *target, mode_t mode, char *tmp, size_t tmplen)
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
                             "%s/.%.*s" TEMP_TAG "%ld-%02x%02x%02x%02x%02x"
                             "%02x",
                             d, (int)blen, bn, (long)getpid(), rnd[0],
                             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5])
            >= tmplen) {
            return -ENAMETOOLONG;
        }
        /* Read too: the file, once saved, is the next save's prefix. */
        fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  mode);
        if (fd >= 0) {
            return fd;
        }
        if (errno != EEXIST) {
            return -errno;
        }
    }
    return -EEXIST;
}

void
apy__nb_sync_dir(const char *target)
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

/* Removes what killed runs of ours left beside `target`: regular files
 * named .NAME.apyrun-PID-RANDOM, owned by this user, whose PID no longer
 * runs. Another user's file, a link, or a live run's file is never
 * touched. Best effort: nothing here can fail the save. */
static void
remove_stale_temps(const char *target)
{
    char dir[PATH_MAX], base[PATH_MAX], prefix[NAME_MAX + 16];
    struct dirent *e;
    struct stat st;
    DIR *dp;
    int dfd;

    if (strlen(target) >= sizeof(dir)) {
        return;
    }
    strcpy(dir, target);
    strcpy(base, target);
    snprintf(prefix, sizeof(prefix), ".%.200s" TEMP_TAG, basename(base));
    dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || (dp = fdopendir(dfd)) == NULL) {
        if (dfd >= 0) {
            close(dfd);
        }
        return;
    }
    size_t plen = strlen(prefix);
    while ((e = readdir(dp)) != NULL) {
        char *end;
        if (strncmp(e->d_name, prefix, plen) != 0) {
            continue;
        }
        errno = 0;
        long pid = strtol(e->d_name + plen, &end, 10);
        if (errno != 0 || end == e->d_name + plen || *end != '-' || pid <= 0
            || pid == (long)getpid()) {
            continue;
        }
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0
            || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
            continue;
        }
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
            (void)unlinkat(dfd, e->d_name, 0);
        }
    }
    closedir(dp);
}

/* The kernel's rule for following a symlink with fs.protected_symlinks=1
 * (Debian's default; Documentation/admin-guide/sysctl/fs.rst): a link in a
 * sticky world-writable directory is followed only by its owner, or when
 * the directory's owner owns the link too. apyrun applies it whatever the
 * sysctl says, since it replaces what the link names rather than writing
 * through it, which the kernel cannot check for us. Returns 0 or -EACCES
 * (message written). */
static int
check_link_rule(const char *link, const struct stat *lst, const char *shown,
                char *err, size_t errlen)
{
    char dir[PATH_MAX];
    struct stat dst;

    strcpy(dir, link);
    if (stat(dirname(dir), &dst) < 0) {
        return apy__nb_fail(-errno, err, errlen, "cannot write %s: %s", shown,
                            strerror(errno));
    }
    if ((dst.st_mode & S_ISVTX) && (dst.st_mode & S_IWOTH)
        && lst->st_uid != geteuid() && lst->st_uid != dst.st_uid) {
        return apy__nb_fail(-EACCES, err, errlen,
                            "cannot write %s: it is a symlink owned by "
                            "another user in a sticky world-writable "
                            "directory (the kernel's protected_symlinks "
                            "rule)",
                            shown);
    }
    return 0;
}

/* Follows the final component of `path` one link at a time, checking each
 * link with check_link_rule (the kernel checks the links among the
 * directories itself), into `final`. Sets *magic when a link leads into
 * /proc (/dev/stdout, /dev/fd/N): such a name is opened, never replaced.
 * Returns 0 (final exists or not: *st_ok says which, *st its stat), or a
 * negative errno with the message written. */
static int
follow_links(const char *path, const char *shown, char *final,
             struct stat *st, int *st_ok, int *magic, char *err,
             size_t errlen)
{
    char next[PATH_MAX], dir[PATH_MAX], rdir[PATH_MAX];
    struct stat lst;
    ssize_t n;
    int hops, rc;

    *magic = 0;
    *st_ok = 0;
    if (strlen(path) >= PATH_MAX) {
        return apy__nb_fail(-ENAMETOOLONG, err, errlen, "cannot write %s: %s",
                            shown, strerror(ENAMETOOLONG));
    }
    strcpy(final, path);
    for (hops = 0;; hops++) {
        if (lstat(final, &lst) < 0) {
            if (errno == ENOENT) {
                return 0;
            }
            return apy__nb_fail(-errno, err, errlen, "cannot write %s: %s",
                                shown, strerror(errno));
        }
        strcpy(dir, final);
        dirname(dir);
        if (realpath(dir, rdir) != NULL
            && strncmp(rdir, "/proc/", 6) == 0) {
            *magic = 1;
        }
        if (!S_ISLNK(lst.st_mode) || *magic) {
            break;
        }
        if (hops >= 40) {
            return apy__nb_fail(-ELOOP, err, errlen, "cannot write %s: %s",
                                shown, strerror(ELOOP));
        }
        if ((rc = check_link_rule(final, &lst, shown, err, errlen)) < 0) {
            return rc;
        }
        n = readlink(final, next, sizeof(next) - 1);
        if (n < 0) {
            return apy__nb_fail(-errno, err, errlen, "cannot write %s: %s",
                                shown, strerror(errno));
        }
        next[n] = '\0';
        if (next[0] == '/') {
            strcpy(final, next);
        } else if ((size_t)snprintf(final, PATH_MAX, "%s/%s", dir, next)
                   >= PATH_MAX) {
            return apy__nb_fail(-ENAMETOOLONG, err, errlen,
                                "cannot write %s: %s", shown,
                                strerror(ENAMETOOLONG));
        }
    }
    if (stat(final, st) == 0) {
        *st_ok = 1;
    } else if (errno != ENOENT) {
        return apy__nb_fail(-errno, err, errlen, "cannot write %s: %s", shown,
                            strerror(errno));
    }
    return 0;
}

int
apy_nb_target_open(const char *out_path, apy_nb_target_t *t, char *err,
                   size_t errlen)
{
    char final[PATH_MAX];
    struct stat st, out;
    int st_ok, magic, rc;

    memset(t, 0, sizeof(*t));
    t->fd = -1;
    if (strcmp(out_path, "-") == 0) {
        t->kind = APY_NB_TARGET_STDOUT;
    } else {
        rc = follow_links(out_path, out_path, final, &st, &st_ok, &magic,
                          err, errlen);
        if (rc < 0) {
            return rc;
        }
        if (st_ok && S_ISDIR(st.st_mode)) {
            return apy__nb_fail(-EISDIR, err, errlen,
                                "cannot write %s: is a directory", out_path);
        }
        if (st_ok && fstat(STDOUT_FILENO, &out) == 0
            && out.st_dev == st.st_dev && out.st_ino == st.st_ino) {
            /* Our own stdout by another name (/dev/stdout, or the file
             * the shell redirected it to): as "-o -". */
            t->kind = APY_NB_TARGET_STDOUT;
        } else if (magic || (st_ok && !S_ISREG(st.st_mode))) {
            t->kind = APY_NB_TARGET_INTO;
            t->truncate = st_ok && S_ISREG(st.st_mode);
        } else {
            t->kind = APY_NB_TARGET_REPLACE;
            if (st_ok) {
                t->have_stat = 1;
                t->mode = st.st_mode & 07777;
                t->uid = st.st_uid;
                t->gid = st.st_gid;
            }
        }
        t->path = strdup(t->kind == APY_NB_TARGET_REPLACE ? final
                                                          : out_path);
    }
    t->shown = strdup(out_path);
    if (t->shown == NULL || (t->kind != APY_NB_TARGET_STDOUT
                             && t->path == NULL)) {
        apy_nb_target_close(t);
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    if (t->kind == APY_NB_TARGET_STDOUT) {
        /* The notebook gets the real stdout; fd 1 (what the cells print)
         * becomes a copy of stderr, so that stdout holds the notebook
         * alone. */
        t->fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
        if (t->fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
            rc = -errno;
            apy_nb_target_close(t);
            return apy__nb_fail(rc, err, errlen, "cannot write %s: %s",
                                out_path, strerror(-rc));
        }
    }
    if (t->kind == APY_NB_TARGET_REPLACE) {
        remove_stale_temps(t->path);
    }
    return 0;
}

void
apy_nb_target_close(apy_nb_target_t *t)
{
    apy__nb_prefix_free(t->prefix);
    apy__nb_prefix_free(t->saved); /* the target itself: no name, kept */
    if (t->kind == APY_NB_TARGET_STDOUT && t->fd >= 0) {
        close(t->fd);
    }
    free(t->path);
    free(t->shown);
    memset(t, 0, sizeof(*t));
    t->fd = -1;
}

/* A new temporary file for target t, born with its mode and, for root,
 * its owner. Returns the fd (path in tmp) or -errno. */
int
apy__nb_temp_for(const apy_nb_target_t *t, char *tmp, size_t tmplen)
{
    mode_t mode = t->have_stat ? t->mode : 0666;
    int fd = open_temp(t->path, mode & 0777, tmp, tmplen);

    if (fd >= 0 && t->have_stat) {
        /* Root rewriting a user's notebook leaves it the user's; anyone
         * else keeps the group where allowed. Owner first: chown clears
         * the set-id bits that fchmod then puts back. */
        if (fchown(fd, geteuid() == 0 ? t->uid : (uid_t)-1, t->gid) < 0) {
            errno = 0; /* not ours to give: the file stays ours */
        }
        (void)fchmod(fd, t->mode);
    }
    return fd;
}

/* Frees the prefix; its file is removed unless the caller took the fd
 * (p->fd == -1) or it has no name here (tmp empty: the target). */
void
apy__nb_prefix_free(struct apy_nb_prefix *p)
{
    if (p == NULL) {
        return;
    }
    if (p->fd >= 0) {
        close(p->fd);
        if (p->tmp[0] != '\0') {
            unlink(p->tmp);
        }
    }
    free(p);
}
