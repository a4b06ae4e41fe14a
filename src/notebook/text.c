/* SPDX-License-Identifier: MIT */
/* Notebooks stored as text: what the percent format (percent.c) and MyST
 * Markdown (myst.c) readers share. Each text is turned into nbformat 4.5
 * JSON and read by apy__nb_parse, so running and writing (-o) are those
 * of an .ipynb; then each cell's line map is pointed at the text file's
 * own lines, so that tracebacks name them. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "nb_internal.h"

/* ---- lines ---- */

int
apy__nb_text_check(const char **data, size_t *len, char *err, size_t errlen)
{
    if (*len >= 3 && memcmp(*data, "\xEF\xBB\xBF", 3) == 0) {
        *data += 3;
        *len -= 3;
    }
    const char *nul = memchr(*data, '\0', *len);
    size_t bad = nul != NULL ? (size_t)(nul - *data) : *len;
    if (nul == NULL && apy__nb_utf8_valid(*data, *len)) {
        return 0;
    }
    if (nul == NULL) {
        /* The first line that is not UTF-8, for the message. */
        for (size_t a = 0; a < *len;) {
            const char *e = memchr(*data + a, '\n', *len - a);
            size_t b = e != NULL ? (size_t)(e - *data) + 1 : *len;
            if (!apy__nb_utf8_valid(*data + a, b - a)) {
                bad = a;
                break;
            }
            a = b;
        }
    }
    size_t line = 1;
    for (size_t k = 0; k < bad; k++) {
        line += (*data)[k] == '\n';
    }
    return apy__nb_fail(-EINVAL, err, errlen, "line %zu: %s", line,
                        nul != NULL ? "a NUL byte, in a text notebook"
                                    : "not UTF-8 text");
}

int
apy__nb_split_lines(const char *data, size_t len, apy_nb_lines_t *l)
{
    size_t cap = 16;
    memset(l, 0, sizeof(*l));
    l->s = malloc(cap * sizeof(*l->s));
    l->n_ = malloc(cap * sizeof(*l->n_));
    if (l->s == NULL || l->n_ == NULL) {
        goto nomem;
    }
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && data[e] != '\n' && data[e] != '\r') {
            e++;
        }
        if (l->n == cap) {
            cap *= 2;
            const char **s = realloc(l->s, cap * sizeof(*l->s));
            if (s != NULL) {
                l->s = s;
            }
            size_t *n = realloc(l->n_, cap * sizeof(*l->n_));
            if (n != NULL) {
                l->n_ = n;
            }
            if (s == NULL || n == NULL) {
                goto nomem;
            }
        }
        l->s[l->n] = data + i;
        l->n_[l->n] = e - i;
        l->n++;
        i = e + (e < len && data[e] == '\r' && e + 1 < len
                 && data[e + 1] == '\n') + (e < len);
    }
    return 0;
nomem:
    apy__nb_lines_free(l);
    return -ENOMEM;
}

void
apy__nb_lines_free(apy_nb_lines_t *l)
{
    free(l->s);
    free(l->n_);
    memset(l, 0, sizeof(*l));
}

int
apy__nb_blank(const char *s, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (!isspace((unsigned char)s[k])) {
            return 0;
        }
    }
    return 1;
}

/* ---- building the notebook ---- */

int
apy__nb_text_begin(const char *data, size_t len, apy_notebook_t *nb,
                   apy_nb_lines_t *l, apy_nb_text_t *t, char *err,
                   size_t errlen)
{
    int rc;
    memset(nb, 0, sizeof(*nb));
    memset(l, 0, sizeof(*l));
    memset(t, 0, sizeof(*t));
    if ((rc = apy__nb_text_check(&data, &len, err, errlen)) < 0) {
        return rc;
    }
    if (apy__nb_split_lines(data, len, l) < 0
        || (t->cells = cJSON_CreateArray()) == NULL) {
        apy__nb_lines_free(l);
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    return 0;
}

int
apy__nb_text_cell(apy_nb_text_t *t, const char *type, cJSON *meta,
                  const char *const *lines, const size_t *lens, size_t n,
                  size_t first_line)
{
    cJSON *c = cJSON_CreateObject(), *src = cJSON_CreateArray();
    if (meta == NULL) {
        meta = cJSON_CreateObject();
    }
    if (c == NULL || src == NULL || meta == NULL) {
        goto nomem;
    }
    for (size_t i = 0; i < n; i++) {
        char *s = malloc(lens[i] + 2);
        if (s == NULL) {
            goto nomem;
        }
        memcpy(s, lines[i], lens[i]);
        /* nbformat's lines: each but the last ends with "\n". */
        s[lens[i]] = '\n';
        s[lens[i] + (i + 1 < n)] = '\0';
        cJSON *v = cJSON_CreateString(s);
        free(s);
        if (v == NULL) {
            goto nomem;
        }
        cJSON_AddItemToArray(src, v);
    }
    cJSON_AddStringToObject(c, "cell_type", type);
    cJSON_AddItemToObject(c, "metadata", meta);
    meta = NULL;
    cJSON_AddItemToObject(c, "source", src);
    src = NULL;
    if (strcmp(type, "code") == 0) {
        cJSON_AddNullToObject(c, "execution_count");
        cJSON_AddItemToObject(c, "outputs", cJSON_CreateArray());
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        size_t *f = realloc(t->first, cap * sizeof(*f));
        if (f == NULL) {
            goto nomem;
        }
        t->first = f;
        t->cap = cap;
    }
    t->first[t->n++] = first_line;
    cJSON_AddItemToArray(t->cells, c);
    return 0;
nomem:
    cJSON_Delete(c);
    cJSON_Delete(src);
    cJSON_Delete(meta);
    return -ENOMEM;
}

int
apy__nb_text_finish(apy_nb_text_t *t, cJSON *meta, apy_nb_format_t format,
                    const char *path, apy_notebook_t *nb, char *err,
                    size_t errlen)
{
    cJSON *root = cJSON_CreateObject();
    char *json = NULL;
    int rc;
    if (root == NULL) {
        cJSON_Delete(meta);
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    cJSON_AddItemToObject(root, "cells", t->cells);
    t->cells = NULL;
    cJSON_AddItemToObject(root, "metadata",
                          meta != NULL ? meta : cJSON_CreateObject());
    cJSON_AddNumberToObject(root, "nbformat", 4);
    cJSON_AddNumberToObject(root, "nbformat_minor", 5);
    json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (json == NULL) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    rc = apy__nb_parse(json, strlen(json), path, nb, err, errlen);
    free(json);
    if (rc < 0) {
        return rc;
    }
    nb->format = format;
    /* Source line i of a cell is the text's line first + i. */
    for (size_t c = 0; c < nb->ncells && c < t->n; c++) {
        apy_nb_cell_t *cell = &nb->cells[c];
        cell->json_line = (int)t->first[c];
        for (size_t i = 0; i < cell->nlines; i++) {
            cell->line_map[i] = (int)(t->first[c] + i);
        }
    }
    return 0;
}

void
apy__nb_text_free(apy_nb_text_t *t)
{
    cJSON_Delete(t->cells);
    free(t->first);
    memset(t, 0, sizeof(*t));
}
