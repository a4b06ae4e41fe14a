/* SPDX-License-Identifier: MIT */
/* The options of a percent-format marker (`# %% Title [markdown]
 * tags=["a"] key=1`, or `# %% {"tags": [...]}`), as jupytext's
 * cell_metadata.py text_to_metadata and options_to_metadata read them:
 * values are JSON or Python literals, what reads as neither is kept as
 * incorrectly_encoded_metadata, never an error. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "nb_internal.h"

/* Takes white space off both ends of s[0..*n). */
static void
trim(const char **s, size_t *n)
{
    while (*n > 0 && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && isspace((unsigned char)(*s)[*n - 1])) {
        (*n)--;
    }
}

/* One `key=value` value, as jupytext's relax_json_loads: JSON, else a
 * Python literal (quotes of either kind, True/False/None). NULL if it
 * is neither. */
static cJSON *
relaxed_value(const char *s, size_t n)
{
    trim(&s, &n);
    if (n == 0) {
        return NULL;
    }
    cJSON *v = cJSON_ParseWithLength(s, n);
    if (v != NULL) {
        return v;
    }
    /* A Python literal turned into JSON: strings re-quoted, the three
     * names renamed; anything else is left for cJSON to refuse. */
    char *j = malloc(2 * n + 16);
    size_t m = 0;
    if (j == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '\'' || c == '"') {
            j[m++] = '"';
            for (i++; i < n && s[i] != c; i++) {
                if (s[i] == '\\' && i + 1 < n) {
                    if (s[i + 1] != '\'') {
                        j[m++] = '\\';
                    }
                    j[m++] = s[++i];
                } else {
                    if (s[i] == '"') {
                        j[m++] = '\\';
                    }
                    j[m++] = s[i];
                }
            }
            j[m++] = '"';
            i++;
            continue;
        }
        static const char *const names[3][2] = {
            {"True", "true"}, {"False", "false"}, {"None", "null"}};
        int renamed = 0;
        for (int w = 0; w < 3 && !renamed; w++) {
            size_t wl = strlen(names[w][0]);
            if (n - i >= wl && memcmp(s + i, names[w][0], wl) == 0
                && (i + wl == n || !isalnum((unsigned char)s[i + wl]))) {
                memcpy(j + m, names[w][1], strlen(names[w][1]));
                m += strlen(names[w][1]);
                i += wl;
                renamed = 1;
            }
        }
        if (!renamed) {
            j[m++] = s[i++];
        }
    }
    v = cJSON_ParseWithLength(j, m);
    free(j);
    return v;
}

static int
is_key(const char *s, size_t n, int first_alpha)
{
    if (n == 0 || (first_alpha && !isalpha((unsigned char)s[0])
                   && s[0] != '_' && s[0] != '.')) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && c != '.'
            && (first_alpha || (c != '@' && c != '/' && c != '-'))) {
            return 0;
        }
    }
    return 1;
}

static void
put(cJSON *obj, const char *key, size_t klen, cJSON *v)
{
    char *k = strndup(key, klen);
    if (k == NULL) {
        cJSON_Delete(v);
        return;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, k);
    cJSON_AddItemToObject(obj, k, v);
    free(k);
}

/* jupytext's parse_key_equal_value, into obj: from the right, a bare
 * name is {name: null}; else the rightmost '=' whose key and value both
 * read; what reads as nothing is kept as incorrectly_encoded_metadata. */
static void
key_values(cJSON *obj, const char *s, size_t n)
{
    trim(&s, &n);
    if (n == 0) {
        return;
    }
    size_t b = n;
    while (b > 0 && s[b - 1] != ' ') {
        b--;
    }
    if (is_key(s + b, n - b, 1) && !(n >= 2 && s[0] == '-' && s[1] == '-')) {
        key_values(obj, s, b);
        put(obj, s + b, n - b, cJSON_CreateNull());
        return;
    }
    for (size_t e = n; e-- > 0;) {
        if (s[e] != '=') {
            continue;
        }
        size_t kb = e;
        while (kb > 0 && s[kb - 1] != ' ') {
            kb--;
        }
        if (!is_key(s + kb, e - kb, 0)) {
            continue;
        }
        cJSON *v = relaxed_value(s + e + 1, n - e - 1);
        if (v == NULL) {
            continue;
        }
        key_values(obj, s, kb);
        put(obj, s + kb, e - kb, v);
        return;
    }
    char *t = strndup(s, n);
    if (t != NULL) {
        put(obj, "incorrectly_encoded_metadata", 28, cJSON_CreateString(t));
        free(t);
    }
}

cJSON *
apy__nb_percent_options(const char *s, size_t n, const char **type)
{
    cJSON *meta = cJSON_CreateObject();
    char title[1024];
    size_t tl = 0;
    *type = "code";
    if (meta == NULL) {
        return NULL;
    }
    trim(&s, &n);
    const char *brace = memchr(s, '{', n), *eq = memchr(s, '=', n);
    if (brace != NULL && !(eq != NULL && eq < brace)) {
        tl = (size_t)(brace - s);
        cJSON *v = relaxed_value(brace, n - tl);
        if (cJSON_IsObject(v)) {
            cJSON_Delete(meta);
            meta = v;
        } else {
            cJSON_Delete(v);
            char *t = strndup(brace, n - tl);
            if (t != NULL) {
                cJSON_AddStringToObject(meta, "incorrectly_encoded_metadata",
                                        t);
            }
            free(t);
        }
    } else {
        /* The title: the words before the first key. */
        size_t end = eq != NULL ? (size_t)(eq - s) : n;
        if (eq != NULL) {
            while (end > 0 && s[end - 1] != ' ') {
                end--;
            }
        }
        for (;;) {
            while (end > 0 && s[end - 1] == ' ') {
                end--;
            }
            size_t w = end;
            while (w > 0 && s[w - 1] != ' ') {
                w--;
            }
            if (end > 0 && s[w] == '.') {
                end = w;
                continue;
            }
            break;
        }
        tl = end;
        key_values(meta, s + tl, n - tl);
    }
    if (tl >= sizeof(title)) {
        tl = sizeof(title) - 1;
    }
    memcpy(title, s, tl);
    title[tl] = '\0';
    static const char *const kinds[3][2] = {
        {"[markdown]", "markdown"}, {"[raw]", "raw"}, {"[md]", "markdown"}};
    for (int k = 0; k < 3; k++) {
        char *at = strstr(title, kinds[k][0]);
        if (at != NULL) {
            size_t kl = strlen(kinds[k][0]);
            memmove(at, at + kl, strlen(at + kl) + 1);
            *type = kinds[k][1];
            if (k == 2) {
                cJSON_AddStringToObject(meta, "region_name", "md");
            }
            break;
        }
    }
    char *t = title;
    int depth = 0;
    while (isspace((unsigned char)*t)) {
        t++;
    }
    while (*t == '%') {
        depth++;
        t++;
    }
    while (isspace((unsigned char)*t)) {
        t++;
    }
    size_t len = strlen(t);
    while (len > 0 && isspace((unsigned char)t[len - 1])) {
        t[--len] = '\0';
    }
    if (depth > 0) {
        cJSON_AddNumberToObject(meta, "cell_depth", depth);
    }
    if (len > 0) {
        cJSON_AddStringToObject(meta, "title", t);
    }
    return meta;
}
