/* SPDX-License-Identifier: MIT */
/* What apyrun --test runs: the notebooks under each PATH and the files
 * named, filtered by -k, sorted, and split into shards. Plain C. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

/* Deeper than this, a tree is taken for a loop or an attack. */
#define MAX_DEPTH 128

typedef struct {
    apy_batch_item_t *items;
    size_t n;
    size_t cap;
    const apy_test_options_t *t;
    char *err;
    size_t errlen;
} collector_t;

static int
ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

/* path without its leading "./" and with runs of '/' as one: the form
 * items are shown, sorted and deduplicated in. Malloc'ed, or NULL. */
static char *
tidy_path(const char *path)
{
    while (path[0] == '.' && path[1] == '/') {
        path += 2;
        while (*path == '/') {
            path++;
        }
    }
    char *out = malloc(strlen(path) + 1);
    if (out == NULL) {
        return NULL;
    }
    size_t j = 0;
    for (size_t i = 0; path[i] != '\0'; i++) {
        if (path[i] == '/' && j > 0 && out[j - 1] == '/') {
            continue;
        }
        out[j++] = path[i];
    }
    while (j > 1 && out[j - 1] == '/') {
        j--;
    }
    out[j] = '\0';
    return out;
}

static int
keep(const collector_t *c, const char *path)
{
    if (c->t->nkeywords == 0) {
        return 1;
    }
    for (size_t i = 0; i < c->t->nkeywords; i++) {
        if (strstr(path, c->t->keywords[i]) != NULL) {
            return 1;
        }
    }
    return 0;
}

static int
fail(collector_t *c, const char *fmt, const char *path, int e)
{
    snprintf(c->err, c->errlen, fmt, path, strerror(e));
    return -1;
}

/* Adds path (taken over) as an item of the given size. 0 or -1. */
static int
add_item(collector_t *c, char *path, long long size)
{
    if (!keep(c, path)) {
        free(path);
        return 0;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        apy_batch_item_t *grown = realloc(c->items, cap * sizeof(*grown));
        if (grown == NULL) {
            free(path);
            return fail(c, "%s%s", "", ENOMEM);
        }
        c->items = grown;
        c->cap = cap;
    }
    apy_batch_item_t *it = &c->items[c->n++];
    memset(it, 0, sizeof(*it));
    it->path = path;
    it->is_script = ends_with(path, ".py");
    it->size = size;
    it->weight = (double)size;
    it->exitcode = -1;
    return 0;
}

/* dir joined with name, without a leading "./". Malloc'ed, or NULL. */
static char *
join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p == NULL) {
        return NULL;
    }
    if (strcmp(dir, ".") == 0) {
        snprintf(p, n, "%s", name);
    } else {
        snprintf(p, n, "%s%s%s", dir, ends_with(dir, "/") ? "" : "/", name);
    }
    return p;
}

/* Whether a directory entry named *.ipynb (lstat'ed in *st) is an item:
 * a file, or a symlink to anything but a directory. A dangling one is
 * an item too, size 0: it fails with its reason, as an unreadable
 * notebook does, instead of vanishing from the report. */
static int
is_notebook_entry(int dir_fd, const char *name, struct stat *st)
{
    if (S_ISREG(st->st_mode)) {
        return 1;
    }
    if (!S_ISLNK(st->st_mode)) {
        return 0;
    }
    if (fstatat(dir_fd, name, st, 0) < 0) {
        st->st_size = 0;
        return 1;
    }
    return !S_ISDIR(st->st_mode);
}

/* Collects the notebooks under directory dir (its path as shown). Hidden
 * entries are skipped (.ipynb_checkpoints among them); a symlink to a
 * notebook counts, a symlink to a directory is not followed, so that no
 * loop can form. 0 or -1. */
static int
walk(collector_t *c, const char *dir, int depth)
{
    if (depth > MAX_DEPTH) {
        snprintf(c->err, c->errlen, "%s: directories nested deeper than %d",
                 dir, MAX_DEPTH);
        return -1;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        return fail(c, "cannot read directory %s: %s", dir, errno);
    }
    int rc = 0;
    struct dirent *e;
    errno = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char *path = join(dir, e->d_name);
        struct stat st;
        if (path == NULL) {
            rc = fail(c, "%s%s", "", ENOMEM);
            break;
        }
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = fail(c, "cannot read %s: %s", path, errno);
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk(c, path, depth + 1);
        } else if (ends_with(e->d_name, ".ipynb") && is_notebook_entry(
                       dirfd(d), e->d_name, &st)) {
            rc = add_item(c, path, (long long)st.st_size);
            path = NULL; /* the item's now, or freed */
        }
        free(path);
        errno = 0;
    }
    if (rc == 0 && errno != 0) {
        rc = fail(c, "cannot read directory %s: %s", dir, errno);
    }
    closedir(d);
    return rc;
}

/* One PATH argument: a directory to walk, or a notebook or script. */
static int
collect_arg(collector_t *c, const char *arg)
{
    struct stat st;
    if (stat(arg, &st) < 0) {
        return fail(c, "%s: %s", arg, errno);
    }
    char *path = tidy_path(arg);
    if (path == NULL) {
        return fail(c, "%s%s", "", ENOMEM);
    }
    if (S_ISDIR(st.st_mode)) {
        int rc = walk(c, path, 0);
        free(path);
        return rc;
    }
    /* Named, a MyST notebook is one too; a walk takes .ipynb only (a
     * repository's README.md is no notebook). */
    int myst = ends_with(path, ".md") || ends_with(path, ".myst")
               || ends_with(path, ".mystnb") || ends_with(path, ".mnb");
    if (!S_ISREG(st.st_mode)
        || (!ends_with(path, ".ipynb") && !ends_with(path, ".py") && !myst)) {
        snprintf(c->err, c->errlen, "%s: not a directory, a notebook "
                 "(.ipynb, .md) or a script (.py)", arg);
        free(path);
        return -1;
    }
    /* -k filters files named too, as pytest's -k does. */
    return add_item(c, path, (long long)st.st_size);
}

static int
by_path(const void *a, const void *b)
{
    return strcmp(((const apy_batch_item_t *)a)->path,
                  ((const apy_batch_item_t *)b)->path);
}

int
apy__batch_collect(const apy_test_options_t *t, apy_batch_item_t **items,
                   size_t *n, char *err, size_t errlen)
{
    collector_t c = {.t = t, .err = err, .errlen = errlen};
    static const char *const dot[] = {"."};
    const char *const *paths = t->npaths > 0 ? t->paths : dot;
    size_t npaths = t->npaths > 0 ? t->npaths : 1;
    *items = NULL;
    *n = 0;
    for (size_t i = 0; i < npaths; i++) {
        if (collect_arg(&c, paths[i]) < 0) {
            apy__batch_free_items(c.items, c.n);
            return -1;
        }
    }
    if (c.n > 1) {
        qsort(c.items, c.n, sizeof(*c.items), by_path);
    }
    /* A file under two PATHs given (a directory and a file in it) runs
     * once. */
    size_t kept = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (kept > 0 && strcmp(c.items[kept - 1].path, c.items[i].path) == 0) {
            free(c.items[i].path);
            continue;
        }
        c.items[kept++] = c.items[i];
    }
    *items = c.items;
    *n = kept;
    return 0;
}

/* Heaviest first; equal weights by path, so the deal is deterministic. */
static int
by_weight(const void *a, const void *b)
{
    const apy_batch_item_t *x = *(apy_batch_item_t *const *)a;
    const apy_batch_item_t *y = *(apy_batch_item_t *const *)b;
    if (x->weight != y->weight) {
        return x->weight > y->weight ? -1 : 1;
    }
    return strcmp(x->path, y->path);
}

void
apy__batch_shard(apy_batch_item_t *items, size_t *n, int k, int n_shards)
{
    size_t count = *n;
    apy_batch_item_t **order = malloc((count ? count : 1) * sizeof(*order));
    double *load = calloc((size_t)n_shards, sizeof(*load));
    int *shard_of = malloc((count ? count : 1) * sizeof(*shard_of));
    if (order != NULL && load != NULL && shard_of != NULL) {
        for (size_t i = 0; i < count; i++) {
            order[i] = &items[i];
        }
        qsort(order, count, sizeof(*order), by_weight);
        for (size_t i = 0; i < count; i++) {
            int best = 0;
            for (int s = 1; s < n_shards; s++) {
                if (load[s] < load[best]) {
                    best = s;
                }
            }
            load[best] += order[i]->weight > 0 ? order[i]->weight : 0;
            shard_of[order[i] - items] = best;
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        /* Without memory to balance, dealt in turn: still a partition. */
        int s = order != NULL && load != NULL && shard_of != NULL
                    ? shard_of[i] : (int)(i % (size_t)n_shards);
        if (s == k - 1) {
            items[kept++] = items[i];
        } else {
            free(items[i].path);
        }
    }
    *n = kept;
    free(shard_of);
    free(load);
    free(order);
}

void
apy__batch_free_items(apy_batch_item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].path);
        free(items[i].message);
        free(items[i].out);
        free(items[i].err);
    }
    free(items);
}
