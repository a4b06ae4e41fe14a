/* SPDX-License-Identifier: MIT */
/* jupytext's percent format (`.py`, cells after `# %%` lines), read as
 * jupytext 1.19 reads it (cell_reader.py DoublePercentScriptCellReader,
 * magics.py, header.py): the commented YAML header, the markers outside
 * triple-quoted strings, blank lines trimmed, markdown and raw cells
 * uncommented, commented magics in code cells uncommented, cells in
 * another language or active in notebooks only. The markers' options
 * are percent_opts.c's. docs/user-guide.md lists what is not read. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "nb_internal.h"

/* jupytext's StringParser for Python: whether the next line starts
 * inside a string (only triple quotes span lines). */
typedef struct {
    char single, triple;
} strings_t;

static void
read_line(strings_t *p, const char *s, size_t n)
{
    size_t k = 0;
    while (k < n && isspace((unsigned char)s[k])) {
        k++;
    }
    if (p->triple == 0 && p->single == 0 && k < n && s[k] == '#') {
        return;
    }
    long triple_start = -1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (p->single == 0 && p->triple == 0 && c == '#') {
            break;
        }
        if ((c != '"' && c != '\'') || (i > 0 && s[i - 1] == '\\')) {
            continue;
        }
        if (p->single == c) {
            p->single = 0;
            continue;
        }
        if (p->single != 0) {
            continue;
        }
        if (i >= 2 && s[i - 1] == c && s[i - 2] == c
            && (long)i >= triple_start + 3) {
            if (p->triple == c) {
                p->triple = 0;
                triple_start = (long)i;
            } else if (p->triple == 0) {
                p->triple = c;
                triple_start = (long)i;
            }
            continue;
        }
        if (p->triple != 0) {
            continue;
        }
        p->single = c;
    }
    p->single = 0;
}

/* 1 if the line is a cell marker: `# %%` (any blanks around the '#', more
 * '%'s, then a blank and options) with its options in *opt; 2 for the bare
 * forms `# %%`, `# <codecell>`, `# In[3]:`; 0 if not. */
static int
marker(const char *s, size_t n, const char **opt, size_t *optlen)
{
    size_t k = 0;
    while (k < n && isspace((unsigned char)s[k])) {
        k++;
    }
    if (k == n || s[k] != '#') {
        return 0;
    }
    k++;
    while (k < n && isspace((unsigned char)s[k])) {
        k++;
    }
    const char *r = s + k;
    size_t m = n - k;
    while (m > 0 && isspace((unsigned char)r[m - 1])) {
        m--;
    }
    if ((m == 2 && memcmp(r, "%%", 2) == 0)
        || (m == 10 && memcmp(r, "<codecell>", 10) == 0)) {
        *opt = r + m;
        *optlen = 0;
        return 2;
    }
    if (m >= 4 && memcmp(r, "In[", 3) == 0) {
        size_t j = 3;
        while (j < m && (isdigit((unsigned char)r[j]) || r[j] == ' ')) {
            j++;
        }
        if (j < m && r[j] == ']' && (j + 1 == m || (j + 2 == m
                                                    && r[j + 1] == ':'))) {
            *opt = r + m;
            *optlen = 0;
            return 2;
        }
    }
    if (n - k < 3 || memcmp(s + k, "%%", 2) != 0) {
        return 0;
    }
    size_t j = k + 2;
    while (j < n && s[j] == '%') {
        j++;
    }
    if (j >= n || !isspace((unsigned char)s[j])) {
        return 0;
    }
    /* The options: what follows the first "%%" (sub-cells keep their
     * further '%'s in the title, as jupytext). */
    *opt = s + k + 2;
    *optlen = n - k - 2;
    return 1;
}

/* Skips blanks and "# " / "#" prefixes, as (# |#)* in jupytext's
 * patterns; returns the index after them. */
static size_t
skip_comments(const char *s, size_t n, size_t k)
{
    while (k < n && s[k] == '#') {
        k += k + 1 < n && s[k + 1] == ' ' ? 2 : 1;
    }
    return k;
}

static size_t
skip_blanks(const char *s, size_t n, size_t k)
{
    while (k < n && isspace((unsigned char)s[k])) {
        k++;
    }
    return k;
}

static int
has_word_at(const char *s, size_t n, size_t k, const char *w)
{
    size_t wl = strlen(w);
    return n - k >= wl && memcmp(s + k, w, wl) == 0;
}

/* 1 if a %magic follows at s[k] ("%", "%%" or "%%%", then a letter). */
static int
magic_at(const char *s, size_t n, size_t k)
{
    size_t p = 0;
    while (k + p < n && s[k + p] == '%' && p < 3) {
        p++;
    }
    return p > 0 && k + p < n && isalpha((unsigned char)s[k + p]);
}

/* jupytext's is_magic for Python code lines (magics.py): commented
 * magics, help and shell escapes, `x = %magic`, `x?`, and the file
 * commands it comments out (cat, cd, ls...). */
static int
is_magic(const char *s, size_t n)
{
    size_t k = skip_comments(s, n, skip_blanks(s, n, 0));
    if (magic_at(s, n, k)) {
        /* "# escape" / "# noescape" at the end force either way. */
        const char *h = NULL;
        for (size_t i = n; i-- > k + 1;) {
            if (s[i] == '#') {
                h = s + i;
                break;
            }
        }
        if (h != NULL) {
            size_t j = skip_blanks(s, n, (size_t)(h - s) + 1);
            if (has_word_at(s, n, j, "noescape")) {
                return 0;
            }
        }
        return 1;
    }
    size_t j = skip_blanks(s, n, k);
    if (j < n && (s[j] == '?' || s[j] == '!')) {
        j = skip_blanks(s, n, j + 1);
        if (j < n && (isalpha((unsigned char)s[j])
                      || strchr(".~$\\/{}", s[j]) != NULL)) {
            return 1;
        }
    }
    k = skip_blanks(s, n, skip_comments(s, n, 0));
    j = k;
    if (j < n && (isalpha((unsigned char)s[j]) || s[j] == '_')) {
        while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '_'
                         || s[j] == '$')) {
            j++;
        }
        j = skip_blanks(s, n, j);
        if (j < n && s[j] == '=') {
            j = skip_blanks(s, n, j + 1);
            size_t p = j;
            while (p < n && (s[p] == '%' || s[p] == '!') && p - j < 3) {
                p++;
            }
            if (p > j && p < n && isalpha((unsigned char)s[p])) {
                return 1;
            }
        }
    }
    /* x?: no blank before the '?' at the end. */
    k = skip_blanks(s, n, 0);
    while (has_word_at(s, n, k, "# ")) {
        k += 2;
    }
    j = k;
    while (j < n && !isspace((unsigned char)s[j])) {
        j++;
    }
    if (j > k && s[j - 1] == '?' && skip_blanks(s, n, j) == n) {
        return 1;
    }
    static const char *const cmds[] = {
        "cat", "cd", "cp", "mv", "rm", "rmdir", "mkdir", "copy", "ddir",
        "echo", "ls", "ldir", "ren", NULL};
    k = skip_comments(s, n, 0);
    for (const char *const *c = cmds; *c != NULL; c++) {
        size_t cl = strlen(*c);
        if (!has_word_at(s, n, k, *c)) {
            continue;
        }
        size_t e = k + cl;
        if (e == n) {
            return 1;
        }
        int after = e + 1 == n || (s[e + 1] != '=' && s[e + 1] != ',');
        if (isspace((unsigned char)s[e]) && after) {
            return 1;
        }
    }
    return 0;
}

/* Removes one "# " or "#" after the indent of a line kept in buf. */
static void
unescape(char *s, size_t *n)
{
    size_t k = 0;
    while (k < *n && isspace((unsigned char)s[k])) {
        k++;
    }
    if (k < *n && s[k] == '#') {
        size_t d = k + 1 < *n && s[k + 1] == ' ' ? 2 : 1;
        memmove(s + k, s + k + d, *n - k - d);
        *n -= d;
    }
}

/* The source of a cell of the given type from its lines, into the
 * caller's copies (a markdown or raw cell's "# " taken off; a code cell's
 * commented magics uncommented, as jupytext's comment_magics). */
static void
cell_lines(const char *type, char **s, size_t *n, size_t count)
{
    int code = strcmp(type, "code") == 0;
    strings_t p = {0, 0};
    int next = 0;
    for (size_t i = 0; i < count; i++) {
        if (!code) {
            if (n[i] >= 1 && s[i][0] == '#') {
                size_t d = n[i] >= 2 && s[i][1] == ' ' ? 2 : 1;
                memmove(s[i], s[i] + d, n[i] - d);
                n[i] -= d;
            }
            continue;
        }
        int quoted = p.triple != 0;
        read_line(&p, s[i], n[i]);
        if (next || (!quoted && is_magic(s[i], n[i]))) {
            unescape(s[i], &n[i]);
            /* A continued magic takes its next line along. */
            size_t e = n[i];
            while (e > 0 && isspace((unsigned char)s[i][e - 1])) {
                e--;
            }
            next = e > 0 && s[i][e - 1] == '\\';
        }
    }
}

/* A markdown or raw cell written as one triple-quoted string: its inside,
 * verbatim. 1 if it was one (lines[first..] replaced), else 0. */
static int
triple_quoted(char **s, size_t *n, size_t *count)
{
    if (*count == 0) {
        return 0;
    }
    size_t a = 0;
    while (a < n[0] && isspace((unsigned char)s[0][a])) {
        a++;
    }
    size_t last = *count - 1, z = n[last];
    while (z > 0 && isspace((unsigned char)s[last][z - 1])) {
        z--;
    }
    const char *head = s[0] + a;
    size_t hl = n[0] - a, pre = hl > 0 && (*head == 'r' || *head == 'R');
    static const char *const quotes[] = {"\"\"\"", "'''"};
    for (int q = 0; q < 2; q++) {
        if (hl < pre + 3 || memcmp(head + pre, quotes[q], 3) != 0 || z < 3
            || memcmp(s[last] + z - 3, quotes[q], 3) != 0
            || (last == 0 && z - a < pre + 6)) {
            continue;
        }
        /* Drop the quotes; a line left empty by one goes. */
        if (last == 0) {
            memmove(s[0], head + pre + 3, z - a - pre - 6);
            n[0] = z - a - pre - 6;
            return 1;
        }
        n[last] = z - 3;
        size_t skip = a + pre + 3;
        memmove(s[0], s[0] + skip, n[0] - skip);
        n[0] -= skip;
        return 1;
    }
    return 0;
}

/* ---- the header: a commented YAML block at the top ---- */

/* The line with its "# " or "#" taken off (the uncommented header line);
 * NULL when it does not start with '#'. */
static const char *
uncommented(const char *s, size_t n, size_t *out)
{
    if (n == 0 || s[0] != '#') {
        return NULL;
    }
    size_t d = n >= 2 && s[1] == ' ' ? 2 : 1;
    *out = n - d;
    return s + d;
}

static int
is_dashes(const char *s, size_t n)
{
    return n >= 3 && memcmp(s, "---", 3) == 0 && apy__nb_blank(s + 3, n - 3);
}

/* 1 if line is a `coding:` line as Python's PEP 263 pattern. */
static int
coding_line(const char *s, size_t n)
{
    size_t k = 0;
    while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\f')) {
        k++;
    }
    if (k == n || s[k] != '#') {
        return 0;
    }
    for (; k + 7 <= n; k++) {
        if (memcmp(s + k, "coding", 6) == 0
            && (s[k + 6] == ':' || s[k + 6] == '=')) {
            return 1;
        }
    }
    return 0;
}

/* Reads jupytext's header at the top of lines: sets *body (the first line
 * after it), *meta (its jupyter: section, or NULL) and adds the raw cell
 * of its other keys. 0 or a negative code with err. */
static int
read_header(const apy_nb_lines_t *l, apy_nb_text_t *t, size_t *body,
            cJSON **meta, char *err, size_t errlen)
{
    size_t pos = 0, open = 0, close = 0, u;
    int opened = 0, closed = 0;
    *meta = NULL;
    if (l->n > 0 && l->n_[0] >= 2 && memcmp(l->s[0], "#!", 2) == 0) {
        pos = 1;
    }
    if (pos < l->n && pos < 2 && coding_line(l->s[pos], l->n_[pos])) {
        pos++;
    }
    *body = pos;
    for (size_t j = pos; j < l->n && !closed; j++) {
        const char *s = uncommented(l->s[j], l->n_[j], &u);
        if (s == NULL) {
            break;
        }
        if (is_dashes(s, u)) {
            if (opened) {
                close = j;
                closed = 1;
            } else {
                open = j;
                opened = 1;
            }
        } else if (!opened && !apy__nb_blank(s, u)) {
            break;
        }
    }
    if (!closed) {
        return 0;
    }
    size_t n = close - open - 1, nj = 0, nr = 0;
    const char **jl = malloc((n + 1) * sizeof(*jl));
    const char **rl = malloc((n + 1) * sizeof(*rl));
    size_t *jn = malloc((n + 1) * sizeof(*jn));
    size_t *rn = malloc((n + 1) * sizeof(*rn));
    int rc = -ENOMEM, in_jupyter = 0;
    if (jl == NULL || rl == NULL || jn == NULL || rn == NULL) {
        goto done;
    }
    for (size_t j = open + 1; j < close; j++) {
        const char *s = uncommented(l->s[j], l->n_[j], &u);
        size_t k = 0;
        while (k < u && isspace((unsigned char)s[k])) {
            k++;
        }
        if (u >= 7 && memcmp(s, "jupyter", 7) == 0) {
            size_t c = skip_blanks(s, u, 7);
            in_jupyter = c < u && s[c] == ':' && skip_blanks(s, u, c + 1)
                                                     == u;
        } else if (in_jupyter && k == 0 && u > 0) {
            in_jupyter = 0;
        }
        if (in_jupyter) {
            jl[nj] = s;
            jn[nj++] = u;
        } else {
            rl[nr] = s;
            rn[nr++] = u;
        }
    }
    cJSON *doc = NULL;
    rc = apy__nb_yaml(jl, jn, nj, open + 2, &doc, err, errlen);
    if (rc < 0) {
        goto done;
    }
    cJSON *j = cJSON_IsObject(doc) ? cJSON_DetachItemFromObject(doc,
                                                                "jupyter")
                                   : NULL;
    cJSON_Delete(doc);
    if (j != NULL && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
    }
    *meta = j;
    if (nr > 0 && !(nr == 1 && rn[0] == 0)) {
        /* Keys outside jupyter: go to a first raw cell, as jupytext. */
        rl[nr] = "---";
        rn[nr] = 3;
        const char **cl = malloc((nr + 2) * sizeof(*cl));
        size_t *cn = malloc((nr + 2) * sizeof(*cn));
        if (cl == NULL || cn == NULL) {
            free(cl);
            free(cn);
            rc = -ENOMEM;
            goto done;
        }
        cl[0] = "---";
        cn[0] = 3;
        memcpy(cl + 1, rl, (nr + 1) * sizeof(*cl));
        memcpy(cn + 1, rn, (nr + 1) * sizeof(*cn));
        rc = apy__nb_text_cell(t, "raw", NULL, cl, cn, nr + 2, open + 1);
        free(cl);
        free(cn);
        if (rc < 0) {
            goto done;
        }
    }
    *body = close + 1;
    if (*body < l->n) {
        const char *s = uncommented(l->s[*body], l->n_[*body], &u);
        if (l->n_[*body] == 0 || (s != NULL && apy__nb_blank(s, u))) {
            (*body)++;
        }
    }
    rc = 0;
done:
    free(jl);
    free(rl);
    free(jn);
    free(rn);
    if (rc == -ENOMEM) {
        rc = apy__nb_fail(rc, err, errlen, "out of memory");
    }
    return rc;
}

/* ---- the cells ---- */

enum { KIND_PLAIN, KIND_RAW, KIND_UNCOMMENT };

/* Whether ext ("ipynb" or "py") is active for a cell, as jupytext's
 * is_active: run_control.frozen, an active-* tag, the active key. */
static int
is_active(const cJSON *meta, const char *ext)
{
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(meta, "run_control");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rc, "frozen"))) {
        return strcmp(ext, "ipynb") == 0;
    }
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(meta, "tags"), *t;
    const char *active = NULL, *seps = "-";
    const cJSON *list = cJSON_IsArray(tags) ? tags : NULL;
    cJSON_ArrayForEach(t, list) {
        if (cJSON_IsString(t) && strncmp(t->valuestring, "active-", 7) == 0) {
            active = t->valuestring + 7;
            break;
        }
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(meta, "active");
    if (active == NULL && cJSON_IsString(a)) {
        active = a->valuestring;
        seps = ".,";
    }
    if (active == NULL) {
        return 1;
    }
    size_t el = strlen(ext);
    for (const char *p = active; *p != '\0';) {
        size_t w = strcspn(p, seps);
        if (w == el && strncmp(p, ext, el) == 0) {
            return 1;
        }
        p += w + (p[w] != '\0');
    }
    return 0;
}

/* How a code cell's lines are read: as they are (magics uncommented),
 * as a raw cell (not active in a notebook), or each uncommented once (a
 * cell active in notebooks only, frozen, or in another language). */
static int
code_kind(const cJSON *meta)
{
    if (meta == NULL) {
        return KIND_PLAIN;
    }
    if (!is_active(meta, "ipynb")) {
        return KIND_RAW;
    }
    if (!is_active(meta, "py")
        || (cJSON_GetObjectItemCaseSensitive(meta, "active") == NULL
            && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(meta,
                                                               "language")))) {
        return KIND_UNCOMMENT;
    }
    return KIND_PLAIN;
}

static void
unescape_line(char *s, size_t *n)
{
    if (*n >= 1 && s[0] == '#') {
        size_t d = *n >= 2 && s[1] == ' ' ? 2 : 1;
        memmove(s, s + d, *n - d);
        *n -= d;
    }
}

/* A cell in another language (language="R" magic_args="-i df"): its
 * first line becomes `%%R -i df`, as jupytext writes it back. 1 if so
 * (s[0] is then the new line), 0 if not, -ENOMEM. */
static int
language_magic(cJSON *meta, char **s, size_t *n, size_t *count)
{
    const cJSON *lang = cJSON_GetObjectItemCaseSensitive(meta, "language");
    if (!cJSON_IsString(lang) || strcmp(lang->valuestring, "python") == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(meta, "language");
        return 0;
    }
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(meta, "magic_args");
    const char *a = cJSON_IsString(args) ? args->valuestring : "";
    size_t len = strlen(lang->valuestring) + strlen(a) + 4;
    char *line = malloc(len);
    if (line == NULL) {
        return -ENOMEM;
    }
    snprintf(line, len, "%%%%%s%s%s", lang->valuestring, *a ? " " : "", a);
    /* The caller's arrays have a spare slot at the end. */
    memmove(s + 1, s, *count * sizeof(*s));
    memmove(n + 1, n, *count * sizeof(*n));
    s[0] = line;
    n[0] = strlen(line);
    (*count)++;
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "language");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "magic_args");
    return 1;
}

/* Adds the cell of lines [start, end) (copies, changed as its type asks). */
static int
percent_cell(apy_nb_text_t *t, const apy_nb_lines_t *l, size_t start,
             size_t end, const char *type, cJSON *meta)
{
    size_t count = end - start;
    char **s = calloc(count + 1, sizeof(*s));
    size_t *n = calloc(count + 1, sizeof(*n));
    int rc = -ENOMEM;
    if (s == NULL || n == NULL) {
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        n[i] = l->n_[start + i];
        if ((s[i] = malloc(n[i] + 1)) == NULL) {
            goto done;
        }
        memcpy(s[i], l->s[start + i], n[i]);
    }
    size_t first = start + 1, off = 0;
    int how = strcmp(type, "code") == 0 ? code_kind(meta) : KIND_PLAIN;
    if (how == KIND_RAW) {
        type = "raw";
    } else if (how == KIND_UNCOMMENT) {
        for (size_t i = 0; i < count; i++) {
            unescape_line(s[i], &n[i]);
        }
        if ((rc = language_magic(meta, s, n, &count)) < 0) {
            goto done;
        }
        if (rc == 1) {
            first--;
        }
    } else if (strcmp(type, "code") != 0 && triple_quoted(s, n, &count)) {
        /* The lines the quotes leave empty go, as jupytext drops one
         * newline on each side. */
        if (count > 1 && n[count - 1] == 0) {
            count--;
        }
        if (count > 1 && n[0] == 0) {
            off = 1;
            first++;
        }
    } else {
        cell_lines(type, s, n, count);
    }
    rc = apy__nb_text_cell(t, type, meta, (const char *const *)s + off,
                           n + off, count - off, first);
    meta = NULL;
done:
    for (size_t i = 0; s != NULL && i < end - start + 1; i++) {
        free(s[i]);
    }
    free(s);
    free(n);
    cJSON_Delete(meta);
    return rc;
}

int
apy__nb_parse_percent(const char *data, size_t len, const char *path,
                      apy_notebook_t *nb, char *err, size_t errlen)
{
    apy_nb_lines_t l;
    apy_nb_text_t t = {0};
    cJSON *meta = NULL;
    size_t i;
    int rc;
    if ((rc = apy__nb_text_begin(data, len, nb, &l, &t, err, errlen)) < 0) {
        return rc;
    }
    rc = read_header(&l, &t, &i, &meta, err, errlen);
    while (rc == 0 && i < l.n) {
        const char *opt = NULL;
        size_t optlen = 0, next = l.n, o;
        int m = marker(l.s[i], l.n_[i], &opt, &optlen);
        strings_t p = {0, 0};
        for (size_t j = i; j < l.n; j++) {
            const char *x;
            if (j > i && p.triple == 0 && marker(l.s[j], l.n_[j], &x, &o)) {
                next = j;
                break;
            }
            read_line(&p, l.s[j], l.n_[j]);
        }
        size_t end = next, cnt = next - i;
#define BLANK(k) apy__nb_blank(l.s[k], l.n_[k])
        if (cnt >= 3 && BLANK(next - 1) && BLANK(next - 2)
            && !BLANK(next - 3)) {
            end = next - 2;
        } else if (BLANK(next - 1)) {
            end = next - 1;
        }
#undef BLANK
        size_t start = i + (m != 0);
        if (end < start) {
            end = start;
        }
        const char *type = "code";
        cJSON *cm = m == 1 ? apy__nb_percent_options(opt, optlen, &type)
                           : NULL;
        if (m == 1 && cm == NULL) {
            rc = -ENOMEM;
            break;
        }
        rc = percent_cell(&t, &l, start, end, type, cm);
        i = next;
    }
    if (rc == -ENOMEM) {
        rc = apy__nb_fail(rc, err, errlen, "out of memory");
    }
    if (rc == 0) {
        rc = apy__nb_text_finish(&t, meta, APY_NB_FORMAT_PERCENT, path, nb,
                                 err, errlen);
        meta = NULL;
    }
    cJSON_Delete(meta);
    apy__nb_text_free(&t);
    apy__nb_lines_free(&l);
    return rc;
}
