/* SPDX-License-Identifier: MIT */
/* MyST Markdown notebooks (`.md` with ```{code-cell} blocks), read as
 * jupytext's myst.py reads them: the YAML front matter is the notebook's
 * metadata; a top-level ```{code-cell} or ```{raw-cell} fence is a cell,
 * its options given as `:key: value` lines or a `---` YAML block; the
 * Markdown between them makes markdown cells, split at `+++` lines (whose
 * JSON is the next markdown cell's metadata). Cells are then built as
 * text.c builds them. Not read as CommonMark would: a cell fence must
 * start at column 0 (jupytext writes them so; one indented under a list
 * item is not a cell, there nor here), and HTML blocks are not tracked. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "nb_internal.h"

/* A fence line: up to 3 spaces, then 3 or more '`' or '~'. Returns the
 * count (and *c, *indent, the info string) or 0. */
static size_t
fence(const char *s, size_t n, char *c, size_t *indent, const char **info,
      size_t *infolen)
{
    size_t k = 0;
    while (k < n && k < 4 && s[k] == ' ') {
        k++;
    }
    if (k > 3 || k >= n || (s[k] != '`' && s[k] != '~')) {
        return 0;
    }
    size_t j = k;
    while (j < n && s[j] == s[k]) {
        j++;
    }
    if (j - k < 3) {
        return 0;
    }
    const char *r = s + j;
    size_t m = n - j;
    while (m > 0 && isspace((unsigned char)*r)) {
        r++;
        m--;
    }
    while (m > 0 && isspace((unsigned char)r[m - 1])) {
        m--;
    }
    if (s[k] == '`' && memchr(r, '`', m) != NULL) {
        return 0;
    }
    *c = s[k];
    *indent = k;
    *info = r;
    *infolen = m;
    return j - k;
}

/* 1 if line closes a fence of count chars c. */
static int
closes(const char *s, size_t n, char c, size_t count)
{
    size_t k = 0;
    while (k < n && k < 4 && s[k] == ' ') {
        k++;
    }
    if (k > 3) {
        return 0;
    }
    size_t j = k;
    while (j < n && s[j] == c) {
        j++;
    }
    return j - k >= count && apy__nb_blank(s + j, n - j);
}

/* A `+++` block break: its content in *rest. */
static int
block_break(const char *s, size_t n, const char **rest, size_t *restlen)
{
    size_t k = 0, plus = 0;
    while (k < n && k < 4 && s[k] == ' ') {
        k++;
    }
    if (k > 3 || k >= n || s[k] != '+') {
        return 0;
    }
    while (k < n && (s[k] == '+' || s[k] == ' ')) {
        plus += s[k] == '+';
        k++;
    }
    if (plus < 3) {
        return 0;
    }
    *rest = s + k;
    *restlen = n - k;
    while (*restlen > 0 && isspace((unsigned char)(*rest)[*restlen - 1])) {
        (*restlen)--;
    }
    return 1;
}

static int
starts(const char *s, size_t n, const char *w)
{
    return n >= strlen(w) && memcmp(s, w, strlen(w)) == 0;
}

/* Markdown lines [a, b): leading empty lines and trailing blank ones
 * dropped; a cell if anything is left. */
static int
flush_markdown(apy_nb_text_t *t, const apy_nb_lines_t *l, size_t a,
               size_t b, cJSON **meta)
{
    if (a >= b) {
        return 0;
    }
    while (a < b && l->n_[a] == 0) {
        a++;
    }
    while (b > a && apy__nb_blank(l->s[b - 1], l->n_[b - 1])) {
        b--;
    }
    if (a == b) {
        return 0;
    }
    size_t *n = malloc((b - a) * sizeof(*n));
    if (n == NULL) {
        return -ENOMEM;
    }
    memcpy(n, l->n_ + a, (b - a) * sizeof(*n));
    while (n[b - a - 1] > 0
           && isspace((unsigned char)l->s[b - 1][n[b - a - 1] - 1])) {
        n[b - a - 1]--;
    }
    int rc = apy__nb_text_cell(t, "markdown", *meta, l->s + a, n, b - a,
                               a + 1);
    *meta = NULL;
    free(n);
    return rc;
}

/* A code or raw cell from the fence body [a, b) (a line after the
 * opening fence), its options read as jupytext's read_fenced_cell. */
static int
fenced_cell(apy_nb_text_t *t, const apy_nb_lines_t *l, size_t a, size_t b,
            int unclosed, const char *type, size_t no, char *err,
            size_t errlen)
{
    cJSON *opts = NULL;
    size_t body = a;
    int rc = 0;
    if (a < b && starts(l->s[a], l->n_[a], "---")) {
        size_t e = a + 1;
        while (e < b && !starts(l->s[e], l->n_[e], "---")) {
            e++;
        }
        rc = apy__nb_yaml(l->s + a + 1, l->n_ + a + 1, e - a - 1, a + 2,
                          &opts, err, errlen);
        body = e < b ? e + 1 : b;
    } else if (a < b) {
        size_t e = a;
        const char **ol = malloc((b - a) * sizeof(*ol));
        size_t *on = malloc((b - a) * sizeof(*on));
        if (ol == NULL || on == NULL) {
            free(ol);
            free(on);
            return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
        }
        for (; e < b; e++) {
            const char *s = l->s[e];
            size_t n = l->n_[e], k = 0;
            while (k < n && isspace((unsigned char)s[k])) {
                k++;
            }
            if (k == n || s[k] != ':') {
                break;
            }
            ol[e - a] = s + k + 1;
            on[e - a] = n - k - 1;
        }
        if (e > a) {
            rc = apy__nb_yaml(ol, on, e - a, a + 1, &opts, err, errlen);
        }
        body = e;
        free(ol);
        free(on);
    }
    if (rc < 0) {
        char why[200];
        snprintf(why, sizeof(why), "%s", err != NULL ? err : "");
        return apy__nb_fail(rc, err, errlen, "code cell %zu at line %zu: "
                            "%s", no, a, why);
    }
    if (cJSON_IsNull(opts)) {
        cJSON_Delete(opts);
        opts = NULL;
    }
    if (opts != NULL && !cJSON_IsObject(opts)) {
        cJSON_Delete(opts);
        return apy__nb_fail(-EINVAL, err, errlen, "code cell %zu at line "
                            "%zu: its options are not a mapping", no, a);
    }
    if (body < b && apy__nb_blank(l->s[body], l->n_[body])) {
        body++;
    }
    /* An unclosed fence runs to the end, and its body gets one more
     * empty line, as markdown-it gives it. */
    size_t count = b - body + (unclosed != 0);
    const char **s = malloc((count + 1) * sizeof(*s));
    size_t *n = malloc((count + 1) * sizeof(*n));
    if (s == NULL || n == NULL) {
        free(s);
        free(n);
        cJSON_Delete(opts);
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    for (size_t i = 0; i < b - body; i++) {
        s[i] = l->s[body + i];
        n[i] = l->n_[body + i];
    }
    if (unclosed) {
        s[count - 1] = "";
        n[count - 1] = 0;
    }
    rc = apy__nb_text_cell(t, type, opts, s, n, count, body + 1);
    free(s);
    free(n);
    return rc < 0 ? apy__nb_fail(rc, err, errlen, "out of memory") : 0;
}

/* 1 if the comma-separated filter holds "-" followed by key[0..n). */
static int
filtered_out(const char *filter, const char *key, size_t n)
{
    for (const char *p = filter; *p != '\0';) {
        size_t w = strcspn(p, ",");
        if (w == n + 1 && p[0] == '-' && strncmp(p + 1, key, n) == 0) {
            return 1;
        }
        p += w + (p[w] != '\0');
    }
    return 0;
}

/* The front matter's keys that jupytext.root_level_metadata_filter
 * leaves out ("-title,-output") are not metadata: their lines (as
 * written) make a first raw cell `---` ... `---`, as jupytext makes it.
 * Lines 1..end of l are the front matter. 0 or -ENOMEM. */
static int
root_level_cell(apy_nb_text_t *t, const apy_nb_lines_t *l, size_t end,
                cJSON *meta)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(meta, "jupytext");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(
        j, "root_level_metadata_filter");
    if (!cJSON_IsString(f)) {
        return 0;
    }
    const char **s = malloc((end + 2) * sizeof(*s));
    size_t *n = malloc((end + 2) * sizeof(*n)), count = 1;
    int taking = 0, rc = 0;
    if (s == NULL || n == NULL) {
        rc = -ENOMEM;
        goto done;
    }
    s[0] = "---";
    n[0] = 3;
    for (size_t i = 1; i < end; i++) {
        const char *x = l->s[i];
        size_t xn = l->n_[i];
        if (xn > 0 && x[0] != ' ' && x[0] != '#') {
            size_t k = strcspn(x, ":");
            taking = k < xn && filtered_out(f->valuestring, x, k);
            if (taking) {
                char *key = strndup(x, k);
                if (key == NULL) {
                    rc = -ENOMEM;
                    goto done;
                }
                cJSON_DeleteItemFromObjectCaseSensitive(meta, key);
                free(key);
            }
        }
        if (taking) {
            s[count] = x;
            n[count++] = xn;
        }
    }
    if (count > 1) {
        s[count] = "---";
        n[count++] = 3;
        rc = apy__nb_text_cell(t, "raw", NULL, s, n, count, 1);
    }
done:
    free(s);
    free(n);
    return rc;
}

/* Reads the front matter into *meta; *start is the line after it. */
static int
front_matter(apy_nb_text_t *t, const apy_nb_lines_t *l, cJSON **meta,
             size_t *start, char *err, size_t errlen)
{
    *meta = NULL;
    *start = 0;
    if (l->n == 0 || l->n_[0] < 3 || !starts(l->s[0], l->n_[0], "---")) {
        return 0;
    }
    size_t d = 0;
    while (d < l->n_[0] && l->s[0][d] == '-') {
        d++;
    }
    for (size_t j = 1; j < l->n; j++) {
        if (closes(l->s[j], l->n_[j], '-', d) && l->s[j][0] != ' ') {
            int rc = apy__nb_yaml(l->s + 1, l->n_ + 1, j - 1, 2, meta, err,
                                  errlen);
            if (rc < 0) {
                char why[200];
                snprintf(why, sizeof(why), "%s", err != NULL ? err : "");
                return apy__nb_fail(rc, err, errlen, "notebook metadata: %s",
                                    why);
            }
            if (!cJSON_IsObject(*meta)) {
                cJSON_Delete(*meta);
                *meta = NULL;
            }
            *start = j + 1;
            if (*meta != NULL && root_level_cell(t, l, j, *meta) < 0) {
                return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
            }
            return 0;
        }
    }
    return 0;
}

/* 1 if the front matter says format_name: myst. */
static int
says_myst(const cJSON *meta)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(meta, "jupytext");
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(j,
                                                       "text_representation");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(tr, "format_name");
    return cJSON_IsString(f) && strcmp(f->valuestring, "myst") == 0;
}

int
apy__nb_parse_myst(const char *data, size_t len, const char *path,
                   apy_notebook_t *nb, char *err, size_t errlen)
{
    apy_nb_lines_t l;
    apy_nb_text_t t = {0};
    cJSON *meta = NULL, *md_meta = NULL;
    size_t i, md_start, cells = 0;
    int rc;
    if ((rc = apy__nb_text_begin(data, len, nb, &l, &t, err, errlen)) < 0) {
        return rc;
    }
    rc = front_matter(&t, &l, &meta, &md_start, err, errlen);
    for (i = md_start; rc == 0 && i < l.n;) {
        const char *info, *rest;
        size_t count, indent, infolen, restlen;
        char c;
        if ((count = fence(l.s[i], l.n_[i], &c, &indent, &info, &infolen))
            != 0) {
            size_t e = i + 1;
            while (e < l.n && !closes(l.s[e], l.n_[e], c, count)) {
                e++;
            }
            int code = starts(info, infolen, "{code-cell}");
            if (indent == 0 && (code || starts(info, infolen, "{raw-cell}"))) {
                rc = flush_markdown(&t, &l, md_start, i, &md_meta);
                if (rc == 0) {
                    rc = fenced_cell(&t, &l, i + 1, e, e == l.n,
                                     code ? "code" : "raw", ++cells, err,
                                     errlen);
                }
                cJSON_Delete(md_meta);
                md_meta = NULL;
                md_start = e < l.n ? e + 1 : l.n;
            }
            i = e + 1;
            continue;
        }
        if (block_break(l.s[i], l.n_[i], &rest, &restlen)) {
            rc = flush_markdown(&t, &l, md_start, i, &md_meta);
            cJSON_Delete(md_meta);
            md_meta = NULL;
            if (rc == 0 && restlen > 0) {
                md_meta = cJSON_ParseWithLength(rest, restlen);
                if (!cJSON_IsObject(md_meta)) {
                    rc = apy__nb_fail(-EINVAL, err, errlen, "line %zu: the "
                                      "metadata after +++ is not a JSON "
                                      "object", i + 1);
                }
            }
            md_start = i + 1;
        }
        i++;
    }
    if (rc == 0) {
        rc = flush_markdown(&t, &l, md_start, l.n, &md_meta);
    }
    if (rc == 0 && cells == 0 && !says_myst(meta)) {
        rc = apy__nb_fail(-EINVAL, err, errlen, "not a MyST notebook: no "
                          "```{code-cell} block, and the front matter does "
                          "not say jupytext's format_name: myst");
    }
    if (rc == -ENOMEM) {
        rc = apy__nb_fail(rc, err, errlen, "out of memory");
    }
    if (rc == 0) {
        /* A `jupyter:` key's contents are the metadata's own. */
        cJSON *j = cJSON_DetachItemFromObjectCaseSensitive(meta, "jupyter");
        for (cJSON *m = cJSON_IsObject(j) ? j->child : NULL; m != NULL;) {
            cJSON *next = m->next;
            cJSON_DetachItemViaPointer(j, m);
            cJSON_DeleteItemFromObjectCaseSensitive(meta, m->string);
            cJSON_AddItemToObject(meta, m->string, m);
            m = next;
        }
        cJSON_Delete(j);
        rc = apy__nb_text_finish(&t, meta, APY_NB_FORMAT_MYST, path, nb, err,
                                 errlen);
        meta = NULL;
    }
    cJSON_Delete(md_meta);
    cJSON_Delete(meta);
    apy__nb_text_free(&t);
    apy__nb_lines_free(&l);
    return rc;
}
