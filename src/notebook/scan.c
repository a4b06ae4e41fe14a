/* SPDX-License-Identifier: MIT */
/* JSON text -> annotated cJSON tree. cJSON builds the tree; this file walks
 * the raw text in the same order to do what cJSON does not: strict RFC 8259
 * checks with exact positions, line numbers, string lengths, exact number
 * texts, and the tokens Python's json accepts but cJSON does not. No
 * Python, no global state: cJSON's global error pointer is never read. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nb_internal.h"

/* What cJSON 1.7.15 gets wrong, and how: it accepts raw control
 * characters, bad UTF-8, "01", "1." and "\uZZZZ" as a NUL; a "\u0000" ends
 * its C string (so lengths are kept here); it keeps a double for a number
 * (so the text is kept); NaN, Infinity, -Infinity and numbers over 63
 * characters (which its parse_number cuts short) reach it as same-length
 * strings. The walk is iterative (nesting costs heap frames, never C
 * stack) and refuses more than APY_NB_MAX_DEPTH levels, so the renderer
 * recurses no deeper; cJSON's parser and cJSON_Delete recurse at most to
 * cJSON's own limit of 1000 levels: less than 128 KiB of stack
 * (measured). */

/* cJSON's parse_number copies at most 63 characters. */
#define CJSON_NUMBER_MAX 63

typedef struct {
    unsigned char kind; /* '[' or '{' */
    cJSON *next;        /* annotating: the tree node the next value is */
} frame_t;

/* A token cJSON cannot parse, replaced in a copy of the text by a string
 * of the same length before cJSON sees it. */
typedef struct {
    size_t pos;
    size_t len;
} patch_t;

typedef struct {
    const unsigned char *s;
    size_t len;
    size_t pos;
    int line;          /* 1-based line at pos */
    size_t line_start; /* offset where that line starts */
    const char *what;
    char *err;
    size_t errlen;
    frame_t *frames; /* APY_NB_MAX_DEPTH of them */
    patch_t *patches;
    size_t npatches;
    size_t cappatches;
} scanner_t;

static int
scan_error(scanner_t *sc, size_t at, const char *fmt, const char *detail)
{
    char msg[160];
    size_t i, col = 1;

    /* Columns count characters, as Python's json does: UTF-8 continuation
     * bytes do not start a character. `at` is always on the current line
     * (strings cannot span lines and whitespace moves the line on). */
    for (i = sc->line_start; i < at && i < sc->len; i++) {
        if ((sc->s[i] & 0xC0) != 0x80) {
            col++;
        }
    }
    snprintf(msg, sizeof(msg), fmt, detail);
    return apy__nb_fail(-EINVAL, sc->err, sc->errlen,
                        "%s: %s (line %d, column %zu)", sc->what, msg,
                        sc->line, col);
}

static void
skip_ws(scanner_t *sc)
{
    const unsigned char *s = sc->s;
    size_t pos = sc->pos, len = sc->len;

    /* Lines end as Python's universal newlines (and linecache, which shows
     * traceback lines) see them: "\n", "\r\n" and a lone "\r". */
    while (pos < len) {
        unsigned char c = s[pos];
        if (c == ' ' || c == '\t') {
            pos++;
        } else if (c == '\n' || c == '\r') {
            pos++;
            if (c == '\r' && pos < len && s[pos] == '\n') {
                pos++;
            }
            sc->line++;
            sc->line_start = pos;
        } else {
            break;
        }
    }
    sc->pos = pos;
}

/* Returns the length of the UTF-8 sequence at s (at most n bytes), or 0
 * if it is not valid: overlong forms, surrogates and code points past
 * U+10FFFF are rejected, as Python's UTF-8 decoder rejects them. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = (c == 0xE0) ? 0xA0 : 0x80;
        unsigned char hi = (c == 0xED) ? 0x9F : 0xBF;
        if (n < 3 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80) {
            return 0;
        }
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = (c == 0xF0) ? 0x90 : 0x80;
        unsigned char hi = (c == 0xF4) ? 0x8F : 0xBF;
        if (n < 4 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 ||
            (s[3] & 0xC0) != 0x80) {
            return 0;
        }
        return 4;
    }
    return 0;
}

int
apy__nb_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, n;

    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        n = utf8_seq(u + i, len - i);
        if (n == 0) {
            return 0;
        }
        i += n;
    }
    return 1;
}

/* Returns the value of the 4 hex digits at s, or -1. */
static long
hex4(const unsigned char *s)
{
    long v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        unsigned char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= c - '0';
        } else if (c >= 'a' && c <= 'f') {
            v |= c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            v |= c - 'A' + 10;
        } else {
            return -1;
        }
    }
    return v;
}

/* Scans the string literal at sc->pos (a '"'). Sets *dlen to its decoded
 * length in bytes and *has_nul if it decodes to a NUL. Returns 0 or
 * -EINVAL. */
static int
scan_string(scanner_t *sc, size_t *dlen, int *has_nul)
{
    const unsigned char *s = sc->s;
    size_t len = sc->len, start = sc->pos, pos = sc->pos + 1, p, n;
    size_t d = 0;
    char detail[24];

    *has_nul = 0;
    for (;;) {
        /* Plain ASCII runs are most of a notebook (base64 images are
         * megabytes of them): one tight loop. */
        p = pos + apy__nb_plain_prefix((const char *)s + pos, len - pos, 1);
        d += p - pos;
        pos = p;
        if (pos >= len) {
            return scan_error(sc, start, "%sunterminated string", "");
        }
        if (s[pos] == '"') {
            pos++;
            break;
        }
        if (s[pos] == '\\') {
            long cp, lo;
            if (pos + 1 >= len) {
                return scan_error(sc, start, "%sunterminated string", "");
            }
            switch (s[pos + 1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                d += 1;
                pos += 2;
                continue;
            case 'u':
                break;
            default:
                detail[0] = (char)s[pos + 1];
                detail[1] = '\0';
                if (s[pos + 1] < 0x20 || s[pos + 1] >= 0x7F) {
                    return scan_error(sc, pos, "%sinvalid escape", "");
                }
                return scan_error(sc, pos, "invalid escape '\\%s'", detail);
            }
            cp = (pos + 6 <= len) ? hex4(s + pos + 2) : -1;
            if (cp < 0) {
                return scan_error(sc, pos, "%sinvalid \\u escape", "");
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                lo = (pos + 12 <= len && s[pos + 6] == '\\' &&
                      s[pos + 7] == 'u')
                         ? hex4(s + pos + 8)
                         : -1;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    snprintf(detail, sizeof(detail), "%04lx", cp);
                    return scan_error(
                        sc, pos, "lone surrogate \\u%s in a string", detail);
                }
                d += 4;
                pos += 12;
                continue;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                snprintf(detail, sizeof(detail), "%04lx", cp);
                return scan_error(sc, pos, "lone surrogate \\u%s in a string",
                                  detail);
            }
            if (cp == 0) {
                *has_nul = 1;
            }
            d += (cp < 0x80) ? 1 : (cp < 0x800) ? 2 : 3;
            pos += 6;
            continue;
        }
        if (s[pos] < 0x20) {
            snprintf(detail, sizeof(detail), "%02X", s[pos]);
            return scan_error(sc, pos,
                              "unescaped control character U+00%s in a "
                              "string",
                              detail);
        }
        n = utf8_seq(s + pos, len - pos);
        if (n == 0) {
            return scan_error(sc, pos, "%sinvalid UTF-8 in a string", "");
        }
        d += n;
        pos += n;
    }
    sc->pos = pos;
    *dlen = d;
    return 0;
}

static int
add_patch(scanner_t *sc, size_t pos, size_t len)
{
    if (sc->npatches == sc->cappatches) {
        size_t cap = sc->cappatches ? 2 * sc->cappatches : 16;
        patch_t *p = realloc(sc->patches, cap * sizeof(*p));
        if (p == NULL) {
            return apy__nb_fail(-ENOMEM, sc->err, sc->errlen, "out of memory");
        }
        sc->patches = p;
        sc->cappatches = cap;
    }
    sc->patches[sc->npatches].pos = pos;
    sc->patches[sc->npatches].len = len;
    sc->npatches++;
    return 0;
}

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Scans a number (or NaN, Infinity, -Infinity) at sc->pos; sets *patched
 * when cJSON cannot parse the token. Returns 0 or -EINVAL. */
static int
scan_number(scanner_t *sc, int *patched)
{
    const unsigned char *s = sc->s;
    size_t len = sc->len, start = sc->pos, pos = sc->pos;

    *patched = 0;
    if (pos < len && s[pos] == '-') {
        pos++;
    }
    if (pos + 8 <= len && memcmp(s + pos, "Infinity", 8) == 0) {
        pos += 8;
        *patched = 1;
    } else if (pos == start && pos + 3 <= len &&
               memcmp(s + pos, "NaN", 3) == 0) {
        pos += 3;
        *patched = 1;
    } else {
        if (pos >= len || !is_digit(s[pos])) {
            char detail[4] = {(char)s[start], '\0'};
            if (s[start] == '-') {
                return scan_error(sc, start, "%sinvalid number", "");
            }
            return scan_error(sc, start, "unexpected character '%s'", detail);
        }
        if (s[pos] == '0') {
            pos++;
        } else {
            while (pos < len && is_digit(s[pos])) {
                pos++;
            }
        }
        if (pos < len && s[pos] == '.') {
            pos++;
            if (pos >= len || !is_digit(s[pos])) {
                return scan_error(sc, start, "%sinvalid number", "");
            }
            while (pos < len && is_digit(s[pos])) {
                pos++;
            }
        }
        if (pos < len && (s[pos] == 'e' || s[pos] == 'E')) {
            pos++;
            if (pos < len && (s[pos] == '+' || s[pos] == '-')) {
                pos++;
            }
            if (pos >= len || !is_digit(s[pos])) {
                return scan_error(sc, start, "%sinvalid number", "");
            }
            while (pos < len && is_digit(s[pos])) {
                pos++;
            }
        }
        *patched = (pos - start > CJSON_NUMBER_MAX);
    }
    sc->pos = pos;
    return 0;
}

/* Stores the number text [start, sc->pos) into `node`, turning a patched
 * string node back into a number. Returns 0 or -ENOMEM. */
static int
annotate_number(scanner_t *sc, cJSON *node, size_t start)
{
    size_t n = sc->pos - start;
    char *text = cJSON_malloc(n + 1);

    if (text == NULL) {
        return apy__nb_fail(-ENOMEM, sc->err, sc->errlen, "out of memory");
    }
    memcpy(text, sc->s + start, n);
    text[n] = '\0';
    if (cJSON_IsString(node)) {
        node->valuedouble = apy__nb_strtod(text, n);
        node->valueint = 0;
    }
    if (node->valuestring != NULL) {
        cJSON_free(node->valuestring);
    }
    node->valuestring = text;
    node->type = (node->type & ~0xFF) | cJSON_Number;
    return 0;
}

static int
mismatch(scanner_t *sc)
{
    /* Both parsers accepted the text, so they must agree on its shape; if
     * they ever do not, say so instead of guessing. */
    return scan_error(sc, sc->pos,
                      "%sinternal error: cJSON and the scanner disagree", "");
}

/* Scans the scalar value that starts with c at sc->pos (a string, a
 * number, true, false or null). With a tree, checks that `node` is of
 * that type and annotates it; without, collects the number patches.
 * Returns 0, -EINVAL or -ENOMEM. */
static int
scan_scalar(scanner_t *sc, cJSON *tree, cJSON *node, unsigned char c)
{
    const unsigned char *s = sc->s;
    size_t start = sc->pos, dlen;
    int rc, flag;

    switch (c) {
    case '"':
        if (tree != NULL && !cJSON_IsString(node)) {
            return mismatch(sc);
        }
        if (tree != NULL) {
            APY_NB_LINE(node) = sc->line;
        }
        rc = scan_string(sc, &dlen, &flag);
        if (rc < 0) {
            return rc;
        }
        if (tree != NULL) {
            node->valuedouble = (double)dlen;
        }
        break;
    case 't':
    case 'f':
    case 'n': {
        const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t wl = strlen(word);
        int type = c == 't' ? cJSON_True : c == 'f' ? cJSON_False : cJSON_NULL;
        if (sc->len - sc->pos < wl || memcmp(s + sc->pos, word, wl) != 0) {
            return scan_error(sc, start, "%sunexpected character", "");
        }
        if (tree != NULL && (node->type & 0xFF) != type) {
            return mismatch(sc);
        }
        sc->pos += wl;
        break;
    }
    default:
        if (c != '-' && c != 'N' && c != 'I' && !is_digit(c)) {
            char detail[8];
            if (c >= 0x20 && c < 0x7F) {
                detail[0] = (char)c;
                detail[1] = '\0';
                return scan_error(sc, start, "unexpected character '%s'",
                                  detail);
            }
            if (c < 0x20 || c == 0x7F) {
                /* Named, so that a NUL (a device such as /dev/zero, a
                 * binary file) says what it is. */
                snprintf(detail, sizeof(detail), "U+%04X", (unsigned)c);
                return scan_error(sc, start, "unexpected character %s",
                                  detail);
            }
            return scan_error(sc, start, "%sunexpected character", "");
        }
        rc = scan_number(sc, &flag);
        if (rc < 0) {
            return rc;
        }
        if (tree == NULL) {
            if (flag && (rc = add_patch(sc, start, sc->pos - start)) < 0) {
                return rc;
            }
        } else {
            if (!cJSON_IsNumber(node) && !cJSON_IsString(node)) {
                return mismatch(sc);
            }
            if ((rc = annotate_number(sc, node, start)) < 0) {
                return rc;
            }
        }
        break;
    }
    return 0;
}

/* Scans an object member's key and the ':' after it, from sc->pos (white
 * space first). Keys are not annotated: cJSON has no field for them.
 * Returns 0, -EINVAL or -ENOMEM. */
static int
scan_key(scanner_t *sc)
{
    const unsigned char *s = sc->s;
    size_t start, dlen;
    int rc, flag;

    skip_ws(sc);
    if (sc->pos >= sc->len || s[sc->pos] != '"') {
        if (sc->pos >= sc->len) {
            return scan_error(sc, sc->pos, "%sunexpected end of the text", "");
        }
        return scan_error(sc, sc->pos, "%sexpected a key in double quotes",
                          "");
    }
    start = sc->pos;
    rc = scan_string(sc, &dlen, &flag);
    if (rc < 0) {
        return rc;
    }
    if (flag) {
        /* cJSON keeps keys as C strings and has no spare field for their
         * length: a key with a NUL cannot be kept, so it is refused. */
        return scan_error(sc, start, "%sa key contains \\u0000", "");
    }
    skip_ws(sc);
    if (sc->pos >= sc->len || s[sc->pos] != ':') {
        return scan_error(sc, sc->pos, "%sexpected ':' after a key", "");
    }
    sc->pos++;
    return 0;
}

/* Walks the whole text. With tree == NULL it only validates (and collects
 * patches); with a tree it also annotates it. Returns 0, -EINVAL or
 * -ENOMEM. */
static int
walk(scanner_t *sc, cJSON *tree)
{
    const unsigned char *s = sc->s;
    size_t depth = 0, start;
    cJSON *node = tree;
    frame_t *top = NULL;
    int rc;
    unsigned char c;

value:
    skip_ws(sc);
    if (sc->pos >= sc->len) {
        if (top == NULL) {
            return apy__nb_fail(-EINVAL, sc->err, sc->errlen,
                                "%s: the text is empty", sc->what);
        }
        return scan_error(sc, sc->pos, "%sunexpected end of the text", "");
    }
    if (tree != NULL && node == NULL) {
        return mismatch(sc);
    }
    c = s[sc->pos];
    start = sc->pos;
    switch (c) {
    case '{':
    case '[':
        if (tree != NULL &&
            !(c == '{' ? cJSON_IsObject(node) : cJSON_IsArray(node))) {
            return mismatch(sc);
        }
        if (depth == APY_NB_MAX_DEPTH) {
            char detail[16];
            snprintf(detail, sizeof(detail), "%d", APY_NB_MAX_DEPTH);
            return scan_error(sc, start, "nested deeper than %s levels",
                              detail);
        }
        if (tree != NULL) {
            APY_NB_LINE(node) = sc->line;
        }
        top = &sc->frames[depth++];
        top->kind = c;
        top->next = (tree != NULL) ? node->child : NULL;
        sc->pos++;
        skip_ws(sc);
        if (sc->pos < sc->len && s[sc->pos] == (c == '{' ? '}' : ']')) {
            sc->pos++;
            goto close;
        }
        if (c == '{') {
            goto member;
        }
        node = top->next;
        if (tree != NULL) {
            top->next = node ? node->next : NULL;
        }
        goto value;
    default:
        rc = scan_scalar(sc, tree, node, c);
        if (rc < 0) {
            return rc;
        }
        break;
    }

after:
    /* A value ended: what may follow depends on the container. */
    skip_ws(sc);
    if (top == NULL) {
        if (sc->pos < sc->len) {
            return scan_error(sc, sc->pos, "%sextra data after the JSON value",
                              "");
        }
        return 0;
    }
    if (sc->pos >= sc->len) {
        return scan_error(sc, sc->pos, "%sunexpected end of the text", "");
    }
    c = s[sc->pos];
    if (c == ',') {
        sc->pos++;
        if (top->kind == '{') {
            goto member;
        }
        node = top->next;
        if (tree != NULL) {
            top->next = node ? node->next : NULL;
        }
        goto value;
    }
    if (c == (top->kind == '{' ? '}' : ']')) {
        sc->pos++;
        goto close;
    }
    return scan_error(sc, sc->pos,
                      top->kind == '{' ? "expected ',' or '}'%s"
                                       : "expected ',' or ']'%s",
                      "");

close:
    if (tree != NULL && top->next != NULL) {
        return mismatch(sc);
    }
    depth--;
    top = depth ? &sc->frames[depth - 1] : NULL;
    goto after;

member:
    rc = scan_key(sc);
    if (rc < 0) {
        return rc;
    }
    node = top->next;
    if (tree != NULL) {
        top->next = node ? node->next : NULL;
    }
    goto value;
}

int
apy__nb_json_parse(const char *text, size_t len, const char *what, cJSON **out,
                   char *err, size_t errlen)
{
    scanner_t sc;
    cJSON *tree;
    char *copy;
    size_t i;
    int rc;

    *out = NULL;
    /* Python's json refuses a BOM, but editors on Windows write one and
     * Python source files may start with one: skip it. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    memset(&sc, 0, sizeof(sc));
    sc.s = (const unsigned char *)text;
    sc.len = len;
    sc.line = 1;
    sc.what = what;
    sc.err = err;
    sc.errlen = errlen;
    sc.frames = malloc(APY_NB_MAX_DEPTH * sizeof(frame_t));
    if (sc.frames == NULL) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }

    /* Not NUL-terminated mode: cJSON stops after the value and the walk
     * checks what follows, with a position. */
    tree = cJSON_ParseWithLengthOpts(text, len, NULL, 0);
    if (tree == NULL) {
        /* Find out why, with a position; or which tokens only cJSON
         * refuses, and give cJSON a copy with those made into strings. */
        rc = walk(&sc, NULL);
        if (rc < 0) {
            goto done;
        }
        if (sc.npatches == 0) {
            /* A valid text cJSON refused: its allocations failed. */
            rc = apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
            goto done;
        }
        copy = malloc(len ? len : 1);
        if (copy == NULL) {
            rc = apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
            goto done;
        }
        memcpy(copy, text, len);
        for (i = 0; i < sc.npatches; i++) {
            char *p = copy + sc.patches[i].pos;
            size_t n = sc.patches[i].len; /* >= 3 ("NaN") */
            p[0] = '"';
            memset(p + 1, 'x', n - 2);
            p[n - 1] = '"';
        }
        tree = cJSON_ParseWithLengthOpts(copy, len, NULL, 0);
        free(copy);
        if (tree == NULL) {
            rc = apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
            goto done;
        }
        sc.pos = 0;
        sc.line = 1;
        sc.line_start = 0;
    }
    rc = walk(&sc, tree);
    if (rc < 0) {
        cJSON_Delete(tree);
        goto done;
    }
    *out = tree;
done:
    free(sc.frames);
    free(sc.patches);
    return rc;
}

cJSON *
apy__nb_new_string(const char *s, size_t len, int line)
{
    cJSON *node = cJSON_CreateString("");
    char *copy;

    if (node == NULL) {
        return NULL;
    }
    copy = cJSON_malloc(len + 1);
    if (copy == NULL) {
        cJSON_Delete(node);
        return NULL;
    }
    if (len > 0) {
        memcpy(copy, s, len);
    }
    copy[len] = '\0';
    cJSON_free(node->valuestring);
    node->valuestring = copy;
    node->valuedouble = (double)len;
    APY_NB_LINE(node) = line;
    return node;
}

cJSON *
apy__nb_new_int(long v)
{
    cJSON *node = cJSON_CreateNumber((double)v);
    char text[32];
    size_t n;

    if (node == NULL) {
        return NULL;
    }
    n = (size_t)snprintf(text, sizeof(text), "%ld", v);
    node->valuestring = cJSON_malloc(n + 1);
    if (node->valuestring == NULL) {
        cJSON_Delete(node);
        return NULL;
    }
    memcpy(node->valuestring, text, n + 1);
    return node;
}
