/* SPDX-License-Identifier: MIT */
/* The byte buffer of src/common: the one helper every layer may use. */
#ifndef APYRUN_BUF_H
#define APYRUN_BUF_H

#include <stddef.h>

/* A growable byte buffer (src/common/buf.c), used by every layer to build
 * text. `failed` latches the first allocation failure, so a sequence of
 * appends is checked once at the end; the contents are kept
 * NUL-terminated. Start from {0}. The appends never fail loudly: after a
 * failure they do nothing. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} apy_buf_t;

/* Appends s[0..n) (may hold NULs). */
void apy_buf_put(apy_buf_t *b, const char *s, size_t n);

/* Appends the NUL-terminated string s. */
void apy_buf_puts(apy_buf_t *b, const char *s);

/* Appends one byte. */
void apy_buf_putc(apy_buf_t *b, char c);

/* Appends `level` spaces (nbformat's indent; nothing for level <= 0). */
void apy_buf_indent(apy_buf_t *b, int level);

/* Moves the contents out as a NUL-terminated malloc()ed string (never
 * NULL unless the buffer failed, in which case it is freed) and resets
 * the buffer. */
char *apy_buf_take(apy_buf_t *b, size_t *len);

/* Frees the contents and resets the buffer to {0}, `failed` included. */
void apy_buf_free(apy_buf_t *b);

#endif
