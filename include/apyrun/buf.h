/* SPDX-License-Identifier: MIT */
/* The byte buffer of src/common: the one helper every layer may use. */
#ifndef APYRUN_BUF_H
#define APYRUN_BUF_H

#include <stddef.h>

/* A growable byte buffer (src/common/buf.c), used by every layer to build
 * text.
 * `failed` latches the first allocation failure, so a sequence of appends
 * is checked once at the end; the contents are kept NUL-terminated. Start
 * from {0}. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} apy_buf_t;

void apy_buf_put(apy_buf_t *b, const char *s, size_t n);
void apy_buf_puts(apy_buf_t *b, const char *s);
void apy_buf_putc(apy_buf_t *b, char c);
void apy_buf_indent(apy_buf_t *b, int level);
/* Moves the contents out as a NUL-terminated malloc()ed string (never
 * NULL unless the buffer failed, in which case it is freed) and resets
 * the buffer. */
char *apy_buf_take(apy_buf_t *b, size_t *len);
void apy_buf_free(apy_buf_t *b);

#endif
