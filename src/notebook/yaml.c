/* SPDX-License-Identifier: MIT */
/* The YAML of text notebooks' headers (jupytext's commented `# ---`
 * block, MyST's front matter and a code-cell's options) into cJSON: block
 * mappings and sequences by indentation, flow sequences and mappings on
 * one line, plain, single- and double-quoted scalars, `#` comments, and
 * PyYAML's (YAML 1.1) plain scalars: null/~, true/false/yes/no/on/off,
 * ints and floats. What jupytext and MyST write, not all of YAML: anchors,
 * tags, multi-line scalars and documents are refused with a message. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "nb_internal.h"

typedef struct {
    const char *const *lines; /* the text's lines, comments included */
    const size_t *lens;
    size_t n;
    size_t i;   /* the next line */
    size_t line0; /* the file line of lines[0], for messages */
    char *err;
    size_t errlen;
} yaml_t;

static int
fail(yaml_t *y, const char *what)
{
    return apy__nb_fail(-EINVAL, y->err, y->errlen, "invalid YAML (line "
                        "%zu): %s", y->line0 + y->i, what);
}

/* The indent of a line, or -1 when it holds nothing but blanks and a
 * comment. */
static int
indent_of(const char *s, size_t n)
{
    size_t k = 0;
    while (k < n && s[k] == ' ') {
        k++;
    }
    if (k == n || s[k] == '#' || s[k] == '\r') {
        return -1;
    }
    return (int)k;
}

/* Drops a trailing comment (" #...", outside quotes) and blanks. */
static size_t
content_len(const char *s, size_t n)
{
    char q = 0;
    for (size_t k = 0; k < n; k++) {
        if (q != 0) {
            if (s[k] == '\\' && q == '"' && k + 1 < n) {
                k++;
            } else if (s[k] == q) {
                q = 0;
            }
        } else if (s[k] == '\'' || s[k] == '"') {
            q = s[k];
        } else if (s[k] == '#' && (k == 0 || s[k - 1] == ' '
                                   || s[k - 1] == '\t')) {
            n = k;
            break;
        }
    }
    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        n--;
    }
    return n;
}

static int
word_is(const char *s, size_t n, const char *const *words)
{
    for (; *words != NULL; words++) {
        if (strlen(*words) == n && strncmp(*words, s, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A plain scalar, as PyYAML's safe_load resolves it. */
static cJSON *
plain_scalar(const char *s, size_t n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL",
                                        NULL};
    static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes",
                                        "YES", "on", "On", "ON", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", "no",
                                         "No", "NO", "off", "Off", "OFF",
                                         NULL};
    if (word_is(s, n, nulls)) {
        return cJSON_CreateNull();
    }
    if (word_is(s, n, trues) || word_is(s, n, falses)) {
        return cJSON_CreateBool(word_is(s, n, trues));
    }
    char buf[64];
    if (n > 0 && n < sizeof(buf)) {
        memcpy(buf, s, n);
        buf[n] = '\0';
        char *end;
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (*end == '\0' && errno == 0 && (isdigit((unsigned char)buf[0])
                                           || buf[0] == '-'
                                           || buf[0] == '+')) {
            return cJSON_CreateNumber((double)v);
        }
        double d = strtod(buf, &end);
        if (*end == '\0' && strpbrk(buf, ".eE") != NULL
            && (isdigit((unsigned char)buf[0]) || buf[0] == '.'
                || buf[0] == '-' || buf[0] == '+')
            && strpbrk(buf, "0123456789") != NULL) {
            return cJSON_CreateNumber(d);
        }
    }
    char *t = malloc(n + 1);
    if (t == NULL) {
        return NULL;
    }
    memcpy(t, s, n);
    t[n] = '\0';
    cJSON *r = cJSON_CreateString(t);
    free(t);
    return r;
}

/* A quoted scalar at s[*k] (its quote); moves *k past it. */
static cJSON *
quoted(yaml_t *y, const char *s, size_t n, size_t *k, int *bad)
{
    char q = s[*k];
    char *t = malloc(n + 1);
    size_t m = 0;
    if (t == NULL) {
        return NULL;
    }
    for ((*k)++; *k < n; (*k)++) {
        char c = s[*k];
        if (c == q && q == '\'' && *k + 1 < n && s[*k + 1] == '\'') {
            t[m++] = '\'';
            (*k)++;
        } else if (c == q) {
            (*k)++;
            t[m] = '\0';
            cJSON *r = cJSON_CreateString(t);
            free(t);
            return r;
        } else if (c == '\\' && q == '"' && *k + 1 < n) {
            char e = s[++(*k)];
            t[m++] = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r'
                                                               : e;
        } else {
            t[m++] = c;
        }
    }
    free(t);
    *bad = fail(y, "a quoted string is not closed on its line");
    return NULL;
}

static cJSON *flow(yaml_t *y, const char *s, size_t n, size_t *k, int *bad);

/* A scalar or flow collection in s[*k..n), ending at one of `stops`
 * (outside quotes) or the end. */
static cJSON *
inline_value(yaml_t *y, const char *s, size_t n, size_t *k,
             const char *stops, int *bad)
{
    while (*k < n && s[*k] == ' ') {
        (*k)++;
    }
    if (*k < n && (s[*k] == '[' || s[*k] == '{')) {
        return flow(y, s, n, k, bad);
    }
    if (*k < n && (s[*k] == '\'' || s[*k] == '"')) {
        return quoted(y, s, n, k, bad);
    }
    if (*k < n && (s[*k] == '&' || s[*k] == '*' || s[*k] == '!'
                   || s[*k] == '|' || s[*k] == '>')) {
        *bad = fail(y, "anchors, tags and block scalars are not read");
        return NULL;
    }
    size_t b = *k;
    while (*k < n && strchr(stops, s[*k]) == NULL) {
        (*k)++;
    }
    size_t e = *k;
    while (e > b && s[e - 1] == ' ') {
        e--;
    }
    return plain_scalar(s + b, e - b);
}

/* A flow sequence [a, b] or mapping {k: v} at s[*k]. */
static cJSON *
flow(yaml_t *y, const char *s, size_t n, size_t *k, int *bad)
{
    int map = s[*k] == '{';
    char close = map ? '}' : ']';
    cJSON *r = map ? cJSON_CreateObject() : cJSON_CreateArray();
    if (r == NULL) {
        return NULL;
    }
    (*k)++;
    for (;;) {
        while (*k < n && s[*k] == ' ') {
            (*k)++;
        }
        if (*k < n && s[*k] == close) {
            (*k)++;
            return r;
        }
        cJSON *key = NULL, *v;
        if (map) {
            key = inline_value(y, s, n, k, ":,}", bad);
            if (key == NULL || *k >= n || s[*k] != ':') {
                cJSON_Delete(key);
                break;
            }
            (*k)++;
        }
        v = inline_value(y, s, n, k, map ? ",}" : ",]", bad);
        if (v == NULL) {
            cJSON_Delete(key);
            break;
        }
        if (map) {
            char *name = cJSON_PrintUnformatted(key);
            const char *kname = cJSON_IsString(key) ? key->valuestring
                                                    : name;
            cJSON_AddItemToObject(r, kname != NULL ? kname : "", v);
            free(name);
            cJSON_Delete(key);
        } else {
            cJSON_AddItemToArray(r, v);
        }
        while (*k < n && s[*k] == ' ') {
            (*k)++;
        }
        if (*k < n && s[*k] == ',') {
            (*k)++;
        } else if (*k >= n || s[*k] != close) {
            break;
        }
    }
    cJSON_Delete(r);
    if (*bad == 0) {
        *bad = fail(y, "a flow collection is not closed on its line");
    }
    return NULL;
}

static cJSON *block(yaml_t *y, int indent, int *bad);

/* The value after "key:" or "- " on the current line (rest of it in
 * s[k..n)): inline, or the block below it. */
static cJSON *
value_after(yaml_t *y, const char *s, size_t n, size_t k, int indent,
            int *bad)
{
    while (k < n && s[k] == ' ') {
        k++;
    }
    if (k >= n) {
        y->i++;
        /* A block below, deeper than this line; else null. */
        while (y->i < y->n && indent_of(y->lines[y->i], y->lens[y->i]) < 0) {
            y->i++;
        }
        if (y->i < y->n) {
            int d = indent_of(y->lines[y->i], y->lens[y->i]);
            const char *t = y->lines[y->i] + d;
            if (d > indent || (d == indent && t[0] == '-'
                               && (t[1] == ' ' || t[1] == '\0'))) {
                return block(y, d, bad);
            }
        }
        return cJSON_CreateNull();
    }
    cJSON *v = inline_value(y, s, n, &k, "", bad);
    while (v != NULL && k < n && s[k] == ' ') {
        k++;
    }
    if (v != NULL && k < n) {
        cJSON_Delete(v);
        *bad = fail(y, "text after a value");
        return NULL;
    }
    y->i++;
    return v;
}

/* A block mapping or sequence whose lines have this indent. */
static cJSON *
block(yaml_t *y, int indent, int *bad)
{
    cJSON *r = NULL;
    while (y->i < y->n) {
        const char *s = y->lines[y->i];
        size_t n = content_len(s, y->lens[y->i]);
        int d = indent_of(s, n);
        if (d < 0) {
            y->i++;
            continue;
        }
        if (d < indent) {
            break;
        }
        if (d > indent) {
            *bad = fail(y, "unexpected indentation");
            break;
        }
        int item = s[d] == '-' && (d + 1 == (int)n || s[d + 1] == ' ');
        if (r == NULL) {
            r = item ? cJSON_CreateArray() : cJSON_CreateObject();
            if (r == NULL) {
                return NULL;
            }
        }
        if (item != cJSON_IsArray(r)) {
            *bad = fail(y, "a sequence item and a key at one level");
            break;
        }
        cJSON *v;
        if (item) {
            v = value_after(y, s, n, (size_t)d + 1, indent, bad);
            if (v == NULL) {
                break;
            }
            cJSON_AddItemToArray(r, v);
            continue;
        }
        size_t k = (size_t)d;
        cJSON *key = inline_value(y, s, n, &k, ":", bad);
        if (key == NULL) {
            break;
        }
        if (k >= n || s[k] != ':' || (k + 1 < n && s[k + 1] != ' ')) {
            cJSON_Delete(key);
            *bad = fail(y, "expected 'key: value'");
            break;
        }
        v = value_after(y, s, n, k + 1, indent, bad);
        if (v == NULL) {
            cJSON_Delete(key);
            break;
        }
        char *name = cJSON_IsString(key) ? NULL : cJSON_PrintUnformatted(key);
        const char *kname = name != NULL ? name : key->valuestring;
        cJSON_DeleteItemFromObjectCaseSensitive(r, kname);
        cJSON_AddItemToObject(r, kname, v);
        free(name);
        cJSON_Delete(key);
    }
    if (*bad != 0) {
        cJSON_Delete(r);
        return NULL;
    }
    return r != NULL ? r : cJSON_CreateNull();
}

int
apy__nb_yaml(const char *const *lines, const size_t *lens, size_t n,
             size_t line0, cJSON **out, char *err, size_t errlen)
{
    yaml_t y = {.lines = lines, .lens = lens, .n = n, .line0 = line0,
                .err = err, .errlen = errlen};
    int bad = 0;
    *out = NULL;
    while (y.i < n && indent_of(lines[y.i], lens[y.i]) < 0) {
        y.i++;
    }
    if (y.i == n) {
        *out = cJSON_CreateNull();
        return *out != NULL ? 0 : apy__nb_fail(-ENOMEM, err, errlen,
                                               "out of memory");
    }
    cJSON *r = block(&y, indent_of(lines[y.i], lens[y.i]), &bad);
    if (bad != 0) {
        return bad;
    }
    if (r == NULL) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    if (y.i < n) {
        cJSON_Delete(r);
        return fail(&y, "unexpected indentation");
    }
    *out = r;
    return 0;
}
