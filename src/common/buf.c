/* SPDX-License-Identifier: MIT */
/* The growable byte buffer every layer builds text in (as curl's dynbuf.c):
 * plain C, no Python, no cJSON. It owns nothing but its bytes and reports
 * failure once, through `failed`, never by aborting. */
#include <stdlib.h>
#include <string.h>

#include "apyrun/buf.h"

static int
buf_reserve(apy_buf_t *b, size_t n)
{
    size_t cap;
    char *data;

    if (b->failed) {
        return -1;
    }
    if (n < b->cap - b->len) {
        return 0; /* room for n bytes and the terminating NUL */
    }
    if (n > ((size_t)-1) / 2 - b->len) {
        b->failed = 1;
        return -1;
    }
    cap = b->cap ? b->cap : 256;
    while (cap - b->len < n + 1) {
        cap *= 2;
    }
    data = realloc(b->data, cap);
    if (data == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

void
apy_buf_put(apy_buf_t *b, const char *s, size_t n)
{
    if (n == 0 || buf_reserve(b, n) < 0) {
        return;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void
apy_buf_puts(apy_buf_t *b, const char *s)
{
    apy_buf_put(b, s, strlen(s));
}

void
apy_buf_putc(apy_buf_t *b, char c)
{
    if (buf_reserve(b, 1) < 0) {
        return;
    }
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void
apy_buf_indent(apy_buf_t *b, int level)
{
    /* nbformat indents by one space per level. */
    if (level <= 0 || buf_reserve(b, (size_t)level) < 0) {
        return;
    }
    memset(b->data + b->len, ' ', (size_t)level);
    b->len += (size_t)level;
    b->data[b->len] = '\0';
}

char *
apy_buf_take(apy_buf_t *b, size_t *len)
{
    char *data;

    if (buf_reserve(b, 1) < 0) {
        apy_buf_free(b);
        return NULL;
    }
    b->data[b->len] = '\0';
    data = b->data;
    if (len != NULL) {
        *len = b->len;
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return data;
}

void
apy_buf_free(apy_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}
