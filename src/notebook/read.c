/* SPDX-License-Identifier: MIT */
/* .ipynb file -> apy_notebook_t: reading the file, checking the notebook's
 * shape and kernel language, and converting cells to owned structs with
 * their line maps. The cJSON tree is built, handed to the writer to
 * pre-render, and deleted here, at the one exit of apy__nb_parse. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nb_internal.h"

static const char *
type_name(const cJSON *v)
{
    switch (v->type & 0xFF) {
    case cJSON_Array:
        return "a list";
    case cJSON_Object:
        return "an object";
    case cJSON_String:
        return "a string";
    case cJSON_Number:
        return "a number";
    case cJSON_True:
    case cJSON_False:
        return "a boolean";
    case cJSON_NULL:
        return "null";
    default:
        return "something else";
    }
}

/* Returns 1 if string node v holds no NUL, so its C string is all of it. */
static int
no_nul(const cJSON *v)
{
    return strlen(v->valuestring) == apy__nb_strlen(v);
}

/* Checks that v is a string that is all of a C string. Returns 0, or
 * -EINVAL with "cell NO: 'NAME' must be WHAT" (no "cell NO: " when no is
 * 0) or, for a string holding a NUL, "... 'NAME' contains a NUL character
 * (\u0000)" in err. */
static int
check_string(const cJSON *v, size_t no, const char *name, const char *what,
             char *err, size_t errlen)
{
    char cell[32] = "";

    if (cJSON_IsString(v) && no_nul(v)) {
        return 0;
    }
    if (no > 0) {
        snprintf(cell, sizeof(cell), "cell %zu: ", no);
    }
    if (cJSON_IsString(v)) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "%s'%s' contains a NUL character (\\u0000)", cell,
                            name);
    }
    return apy__nb_fail(-EINVAL, err, errlen, "%s'%s' must be %s", cell, name,
                        what);
}

/* Copies string node v (checked by the caller) into *out. */
static int
copy_string(const cJSON *v, char **out)
{
    *out = strdup(v->valuestring);
    return *out == NULL ? -ENOMEM : 0;
}

/* Reads an integral JSON number (nbformat, nbformat_minor) into *out. */
static int
get_int(const cJSON *v, int *out)
{
    double d;

    if (!cJSON_IsNumber(v)) {
        return -1;
    }
    d = v->valuedouble;
    /* Python's nbformat compares with ints, so 4.0 reads as 4 there too. */
    if (!(d >= 0 && d <= 1e9) || d != floor(d)) {
        return -1;
    }
    *out = (int)d;
    return 0;
}

/* Returns 1 if a kernel language names Python: "python", "python3",
 * "Python 3", "ipython" and the like, in any case. */
int
apy__nb_is_python(const char *lang)
{
    const char *p = lang;

    if (strncasecmp(p, "ipython", 7) == 0) {
        p += 7;
    } else if (strncasecmp(p, "python", 6) == 0) {
        p += 6;
    } else {
        return 0;
    }
    for (; *p != '\0'; p++) {
        if (!(*p >= '0' && *p <= '9') && *p != '.' && *p != ' ') {
            return 0;
        }
    }
    return 1;
}

/* Reads optional string member `key` of `obj` into *out (NULL if absent).
 * `where` names obj in messages ("metadata.kernelspec"). */
static int
get_opt_string(const cJSON *obj, const char *key, const char *where,
               char **out, char *err, size_t errlen)
{
    const cJSON *v = apy__nb_get(obj, key);
    char name[64];
    int rc;

    *out = NULL;
    if (v == NULL) {
        return 0;
    }
    snprintf(name, sizeof(name), "%s.%s", where, key);
    if ((rc = check_string(v, 0, name, "a string", err, errlen)) < 0) {
        return rc;
    }
    if (copy_string(v, out) < 0) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    return 0;
}

static int
read_kernel(apy_notebook_t *nb, const cJSON *meta, char *err, size_t errlen)
{
    const cJSON *ks = apy__nb_get(meta, "kernelspec");
    const cJSON *li = apy__nb_get(meta, "language_info");
    const char *lang;
    char q[64];
    int rc;

    if (ks != NULL && !cJSON_IsObject(ks)) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "'metadata.kernelspec' must be an object");
    }
    if (li != NULL && !cJSON_IsObject(li)) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "'metadata.language_info' must be an object");
    }
    if ((rc = get_opt_string(ks, "name", "metadata.kernelspec",
                             &nb->kernel_name, err, errlen)) < 0 ||
        (rc = get_opt_string(ks, "language", "metadata.kernelspec",
                             &nb->kernel_language, err, errlen)) < 0 ||
        (rc = get_opt_string(li, "name", "metadata.language_info",
                             &nb->language_info_name, err, errlen)) < 0) {
        return rc;
    }
    /* The kernelspec says what the notebook is written in; language_info
     * is what the last kernel reported. No language at all: Python. */
    lang = nb->kernel_language ? nb->kernel_language : nb->language_info_name;
    if (lang != NULL && !apy__nb_is_python(lang)) {
        apy__nb_quote(q, sizeof(q), lang, strlen(lang));
        return apy__nb_fail(-ENOEXEC, err, errlen,
                            "kernel language is '%s', not Python", q);
    }
    return 0;
}

/* A piece of a source: where it is in the joined text and the JSON line
 * of the string that holds it. */
typedef struct {
    size_t off;
    size_t len;
    int line;
} seg_t;

/* Fills cell->line_map and nlines for the joined source s[0..len) made
 * from node `src` (a string or a list of strings). Python's lines end at
 * "\n", "\r\n" or a lone "\r" (universal newlines); a line maps to the
 * string holding its first character. */
static int
build_line_map(apy_nb_cell_t *cell, const cJSON *src, const char *s,
               size_t len)
{
    seg_t one, *segs = &one;
    size_t nsegs = 1, k = 0, i, n = 0, start;
    const cJSON *c;

    cell->nlines = 0;
    cell->line_map = NULL;
    if (len == 0) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (s[i] == '\n' ||
            (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n'))) {
            n++;
        }
    }
    if (s[len - 1] != '\n' && s[len - 1] != '\r') {
        n++; /* a last line without a line end */
    }
    cell->line_map = malloc(n * sizeof(int));
    if (cell->line_map == NULL) {
        return -ENOMEM;
    }
    if (cJSON_IsArray(src)) {
        nsegs = (size_t)cJSON_GetArraySize(src);
        segs = malloc(nsegs * sizeof(*segs));
        if (segs == NULL) {
            return -ENOMEM;
        }
        for (c = src->child, i = 0, start = 0; c != NULL; c = c->next, i++) {
            segs[i].off = start;
            segs[i].len = apy__nb_strlen(c);
            segs[i].line = APY_NB_LINE(c);
            start += segs[i].len;
        }
    } else {
        one.off = 0;
        one.len = len;
        one.line = APY_NB_LINE(src);
    }
    start = 0;
    for (i = 0; i < n; i++) {
        while (k + 1 < nsegs && segs[k].off + segs[k].len <= start) {
            k++;
        }
        cell->line_map[i] = segs[k].line;
        /* Move to the start of the next line. */
        while (start < len && s[start] != '\n' && s[start] != '\r') {
            start++;
        }
        if (start < len && s[start] == '\r' && start + 1 < len &&
            s[start + 1] == '\n') {
            start++;
        }
        start++;
    }
    cell->nlines = n;
    if (segs != &one) {
        free(segs);
    }
    return 0;
}

/* Copies s[0..len) with "\r\n" and lone "\r" made "\n". */
static char *
normalize_newlines(const char *s, size_t len, size_t *outlen)
{
    char *out = malloc(len + 1);
    size_t i, o = 0;

    if (out == NULL) {
        return NULL;
    }
    for (i = 0; i < len; i++) {
        if (s[i] == '\r') {
            out[o++] = '\n';
            if (i + 1 < len && s[i + 1] == '\n') {
                i++;
            }
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

static int
read_tags(apy_nb_cell_t *cell, size_t no, const cJSON *meta, char *err,
          size_t errlen)
{
    const cJSON *tags = apy__nb_get(meta, "tags"), *t;
    size_t n = 0;
    int rc;

    if (tags == NULL) {
        return 0;
    }
    if (!cJSON_IsArray(tags)) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "cell %zu: 'metadata.tags' must be a list of "
                            "strings",
                            no);
    }
    for (t = tags->child; t != NULL; t = t->next) {
        if ((rc = check_string(t, no, "metadata.tags", "a list of strings",
                               err, errlen)) < 0) {
            return rc;
        }
        n++;
    }
    if (n == 0) {
        return 0;
    }
    cell->tags = calloc(n, sizeof(char *));
    if (cell->tags == NULL) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    for (t = tags->child; t != NULL; t = t->next) {
        if (copy_string(t, &cell->tags[cell->ntags]) < 0) {
            return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
        }
        cell->ntags++;
    }
    return 0;
}

/* Converts cell object `obj` (nbformat 4 shape), cell number `no` (from 1)
 * for messages, into *cell. */
static int
read_cell(apy_nb_cell_t *cell, size_t no, const cJSON *obj, char *err,
          size_t errlen)
{
    const cJSON *type, *src, *meta, *id;
    char *joined = NULL;
    size_t len = 0;
    int rc;

    if (!cJSON_IsObject(obj)) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "cell %zu is %s, not an object", no,
                            type_name(obj));
    }
    cell->json_line = APY_NB_LINE(obj);
    type = apy__nb_get(obj, "cell_type");
    if (type == NULL) {
        return apy__nb_fail(-EINVAL, err, errlen, "cell %zu: no 'cell_type'",
                            no);
    }
    if ((rc = check_string(type, no, "cell_type", "a string", err, errlen)) <
        0) {
        return rc;
    }
    if (strcmp(type->valuestring, "code") == 0) {
        cell->kind = APY_NB_CODE;
    } else if (strcmp(type->valuestring, "markdown") == 0) {
        cell->kind = APY_NB_MARKDOWN;
    } else if (strcmp(type->valuestring, "raw") == 0) {
        cell->kind = APY_NB_RAW;
    } else {
        /* nbformat's schema has "unrecognized_cell" for these (a newer
         * Jupyter's cell type): kept, never run. */
        cell->kind = APY_NB_OTHER;
    }

    src = apy__nb_get(obj, "source");
    if (src != NULL) {
        rc = apy__nb_join_source(src, &joined, &len);
        if (rc < 0) {
            return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
        }
        if (rc > 0) {
            return apy__nb_fail(-EINVAL, err, errlen,
                                "cell %zu: 'source' must be a string or a "
                                "list of strings",
                                no);
        }
        if (memchr(joined, '\0', len) != NULL) {
            free(joined);
            /* Python refuses source code with NUL bytes anyway; reject it
             * here, where the message can name the cell. */
            return apy__nb_fail(-EINVAL, err, errlen,
                                "cell %zu: the source contains a NUL "
                                "character (\\u0000)",
                                no);
        }
        if (build_line_map(cell, src, joined, len) < 0) {
            free(joined);
            return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
        }
        cell->source = normalize_newlines(joined, len, &cell->source_len);
        free(joined);
    } else {
        cell->source = strdup("");
    }
    if (cell->source == NULL) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }

    meta = apy__nb_get(obj, "metadata");
    if (meta != NULL && !cJSON_IsObject(meta)) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "cell %zu: 'metadata' must be an object", no);
    }
    if ((rc = read_tags(cell, no, meta, err, errlen)) < 0) {
        return rc;
    }
    id = apy__nb_get(obj, "id");
    if (id != NULL) {
        if ((rc = check_string(id, no, "id", "a string", err, errlen)) < 0) {
            return rc;
        }
        if (copy_string(id, &cell->id) < 0) {
            return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
        }
    }
    return 0;
}

/* Reads nbformat and nbformat_minor. */
static int
read_version(apy_notebook_t *nb, const cJSON *root, char *err, size_t errlen)
{
    const cJSON *major = apy__nb_get(root, "nbformat");
    const cJSON *minor = apy__nb_get(root, "nbformat_minor");

    if (major == NULL) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "not a notebook: no 'nbformat' version");
    }
    if (get_int(major, &nb->nbformat) < 0) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "'nbformat' must be a non-negative integer");
    }
    if (nb->nbformat < 2 || nb->nbformat > 4) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "nbformat %d is not supported (apyrun reads "
                            "nbformat 2, 3 and 4)",
                            nb->nbformat);
    }
    /* As nbformat's get_version: a missing minor is 0. */
    nb->nbformat_minor = 0;
    if (minor != NULL && get_int(minor, &nb->nbformat_minor) < 0) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "'nbformat_minor' must be a non-negative "
                            "integer");
    }
    /* nbformat 2 and 3 are written as 4.5, as nbformat's own upgrade
     * does (from 2, through 3: a relabelling, its lines joined). */
    nb->out_nbformat = 4;
    nb->out_nbformat_minor = nb->nbformat < 4 ? 5 : nb->nbformat_minor;
    return 0;
}

static int
is_blank(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
            return 0;
        }
    }
    return 1;
}

int
apy__nb_parse(const char *data, size_t len, const char *path,
              apy_notebook_t *nb, char *err, size_t errlen)
{
    cJSON *root = NULL, *cells, *c, *meta;
    size_t i, n;
    int rc;

    memset(nb, 0, sizeof(*nb));
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (len > (size_t)APY_NB_MAX_FILE_SIZE) {
        return apy__nb_fail(-EFBIG, err, errlen,
                            "too large (%zu bytes; the limit is 1 GiB)", len);
    }
    if (is_blank(data, len)) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "the notebook is empty (no JSON at all)");
    }
    rc = apy__nb_json_parse(data, len, "not valid JSON", &root, err, errlen);
    if (rc < 0) {
        return rc;
    }
    if (!cJSON_IsObject(root)) {
        rc = apy__nb_fail(-EINVAL, err, errlen,
                          "not a notebook: the JSON is %s, not an object",
                          type_name(root));
        goto done;
    }
    if (path != NULL && (nb->path = strdup(path)) == NULL) {
        rc = apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
        goto done;
    }
    if ((rc = read_version(nb, root, err, errlen)) < 0) {
        goto done;
    }
    meta = apy__nb_get(root, "metadata");
    if (meta != NULL && !cJSON_IsObject(meta)) {
        rc = apy__nb_fail(-EINVAL, err, errlen,
                          "'metadata' must be an object");
        goto done;
    }
    if ((rc = read_kernel(nb, meta, err, errlen)) < 0) {
        goto done;
    }
    if (nb->nbformat < 4
        && (rc = apy__nb_upgrade_v3(root, nb->nbformat == 2, err, errlen))
               < 0) {
        goto done;
    }
    cells = apy__nb_get(root, "cells");
    if (cells == NULL) {
        rc = apy__nb_fail(-EINVAL, err, errlen,
                          "not a notebook: no 'cells' list");
        goto done;
    }
    if (!cJSON_IsArray(cells)) {
        rc = apy__nb_fail(-EINVAL, err, errlen,
                          "'cells' must be a list, not %s", type_name(cells));
        goto done;
    }
    n = 0;
    for (c = cells->child; c != NULL; c = c->next) {
        n++;
    }
    if (n > 0 && (nb->cells = calloc(n, sizeof(apy_nb_cell_t))) == NULL) {
        rc = apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
        goto done;
    }
    for (c = cells->child, i = 0; c != NULL; c = c->next, i++) {
        /* Counted as they are filled, so that apy_nb_free frees exactly
         * the cells that hold something. */
        nb->ncells = i + 1;
        if ((rc = read_cell(&nb->cells[i], i + 1, c, err, errlen)) < 0) {
            goto done;
        }
        if ((rc = apy__nb_wcell_build(nb, i, c)) < 0) {
            rc = apy__nb_fail(rc, err, errlen, "out of memory");
            goto done;
        }
    }
    cJSON_Delete(apy__nb_detach(root, "cells"));
    if ((rc = apy__nb_wdoc_build(nb, root)) < 0 ||
        (rc = apy__nb_assign_ids(nb)) < 0) {
        rc = apy__nb_fail(rc, err, errlen, "out of memory");
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc < 0) {
        apy_nb_free(nb);
    }
    return rc;
}

void
apy__nb_cell_free(apy_nb_cell_t *cell)
{
    size_t i;

    free(cell->source);
    free(cell->line_map);
    for (i = 0; i < cell->ntags; i++) {
        free(cell->tags[i]);
    }
    free(cell->tags);
    free(cell->id);
    apy__nb_wcell_free(cell->w);
    memset(cell, 0, sizeof(*cell));
}

void
apy_nb_free(apy_notebook_t *nb)
{
    size_t i;

    if (nb == NULL) {
        return;
    }
    for (i = 0; i < nb->ncells; i++) {
        apy__nb_cell_free(&nb->cells[i]);
    }
    free(nb->cells);
    free(nb->path);
    free(nb->kernel_name);
    free(nb->kernel_language);
    free(nb->language_info_name);
    apy__nb_wdoc_free(nb->w);
    memset(nb, 0, sizeof(*nb));
}

int
apy_nb_cell_line(const apy_nb_cell_t *cell, long lineno)
{
    if (cell->nlines == 0) {
        return cell->json_line;
    }
    if (lineno < 1) {
        return cell->line_map[0];
    }
    if ((size_t)lineno > cell->nlines) {
        return cell->line_map[cell->nlines - 1];
    }
    return cell->line_map[lineno - 1];
}

int
apy_nb_cell_has_tag(const apy_nb_cell_t *cell, const char *tag)
{
    size_t i;

    for (i = 0; i < cell->ntags; i++) {
        if (strcmp(cell->tags[i], tag) == 0) {
            return 1;
        }
    }
    return 0;
}
