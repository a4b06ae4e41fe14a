/* SPDX-License-Identifier: MIT */
/* Small pieces every file of the notebook layer uses: the one-line error
 * message into the caller's buffer, quoting for messages, and the number
 * and string helpers of reading and rendering. No global state: errors
 * never go anywhere but `err`. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nb_internal.h"

int
apy__nb_fail(int code, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

void
apy__nb_quote(char *out, size_t outlen, const char *s, size_t len)
{
    size_t o = 0, i;
    const size_t limit = 40;

    /* Messages are one line: control characters are shown escaped, and a
     * long value is cut at a character boundary with "...". */
    for (i = 0; i < len && o + 8 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= limit && (c & 0xC0) != 0x80) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7F) {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o < outlen ? o : outlen - 1] = '\0';
}


size_t
apy__nb_plain_prefix(const char *s, size_t len, int ascii_only)
{
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;
    const unsigned char *u = (const unsigned char *)s;
    uint64_t x, q, b, bad;
    size_t i = 0;

    /* The classic "has a byte less than n / equal to c" tests: exact about
     * whether a word holds such a byte (not about which one), which is all
     * this needs: a word that is not all plain goes byte by byte. */
    while (i + 8 <= len) {
        memcpy(&x, u + i, 8);
        q = x ^ (ones * '"');
        b = x ^ (ones * '\\');
        bad = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b);
        if (ascii_only) {
            bad |= x;
        }
        if ((bad & highs) != 0) {
            break;
        }
        i += 8;
    }
    while (i < len && u[i] >= 0x20 && u[i] != '"' && u[i] != '\\' &&
           (!ascii_only || u[i] < 0x80)) {
        i++;
    }
    return i;
}

int
apy__nb_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    ssize_t got;

    while (len > 0) {
        got = write(fd, p, len);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += got;
        len -= (size_t)got;
    }
    return 0;
}
