/* SPDX-License-Identifier: MIT */
/* The loop's two queues as plain C (no Python.h, so tests/unit exercises
 * them alone): the ready queue's FIFO ring of pointers and the timer heap
 * keyed by (when, seq). Neither owns what it points to, and neither calls
 * out while inconsistent: the loop releases references afterwards. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "queues.h"

/* --- the ready queue's ring --- */

#define RING_MIN_CAP 64

/* Contracts of the apy__ring_* and apy__theap_* functions: queues.h. */
void
apy__ring_init(apy_ring_t *r)
{
    r->buf = NULL;
    r->cap = 0;
    r->head = 0;
    r->len = 0;
}

/* Frees the buffer only; never fails. */
void
apy__ring_free(apy_ring_t *r)
{
    free(r->buf);
    apy__ring_init(r);
}

/* Reallocates to new_cap slots with the items unwrapped at index 0. */
static int
ring_resize(apy_ring_t *r, size_t new_cap)
{
    void **nbuf = malloc(new_cap * sizeof(void *));
    if (nbuf == NULL) {
        return -ENOMEM;
    }
    if (r->len > 0) {
        /* Copy in at most two runs: head..end, then 0..the wrap point. */
        size_t first = r->cap - r->head;
        if (first > r->len) {
            first = r->len;
        }
        memcpy(nbuf, r->buf + r->head, first * sizeof(void *));
        memcpy(nbuf + first, r->buf, (r->len - first) * sizeof(void *));
    }
    free(r->buf);
    r->buf = nbuf;
    r->cap = new_cap;
    r->head = 0;
    return 0;
}

/* 0, or -ENOMEM with the ring unchanged. */
int
apy__ring_push(apy_ring_t *r, void *item)
{
    if (r->len == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : RING_MIN_CAP;
        if (ncap < r->cap) {
            return -ENOMEM;
        }
        int err = ring_resize(r, ncap);
        if (err < 0) {
            return err;
        }
    }
    /* cap is a power of two, so the mask replaces a modulo. */
    r->buf[(r->head + r->len) & (r->cap - 1)] = item;
    r->len++;
    return 0;
}

/* The oldest item, or NULL when empty. */
void *
apy__ring_pop(apy_ring_t *r)
{
    if (r->len == 0) {
        return NULL;
    }
    void *item = r->buf[r->head];
    r->head = (r->head + 1) & (r->cap - 1);
    r->len--;
    if (r->len == 0) {
        /* Restart at slot 0 so a steady push/pop pattern stays in the
         * same few cache lines. */
        r->head = 0;
    }
    return item;
}

/* The i-th oldest item; i < r->len. */
void *
apy__ring_at(const apy_ring_t *r, size_t i)
{
    return r->buf[(r->head + i) & (r->cap - 1)];
}

/* 0 with the items moved out, or -ENOMEM. */
int
apy__ring_take_all(apy_ring_t *r, void ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (r->len == 0) {
        return 0;
    }
    if (r->head + r->len > r->cap) {
        /* Wrapped: unwrap in place into a fresh buffer first. */
        int err = ring_resize(r, r->cap);
        if (err < 0) {
            return err;
        }
    }
    else if (r->head != 0) {
        memmove(r->buf, r->buf + r->head, r->len * sizeof(void *));
    }
    *out = r->buf;
    *n = r->len;
    apy__ring_init(r);
    return 0;
}

/* --- the timer heap --- */

#define THEAP_MIN_CAP 64

/* An empty heap; allocates nothing. */
void
apy__theap_init(apy_theap_t *h)
{
    h->v = NULL;
    h->len = 0;
    h->cap = 0;
}

/* Frees the array only; never fails. */
void
apy__theap_free(apy_theap_t *h)
{
    free(h->v);
    apy__theap_init(h);
}

/* Strict order on (when, seq): seq is unique per loop, so two distinct
 * entries never compare equal and equal deadlines run in call order
 * (asyncio's heapq makes no such promise; this is strictly better). */
static inline int
entry_less(const apy_theap_entry_t *a, const apy_theap_entry_t *b)
{
    if (a->when != b->when) {
        return a->when < b->when;
    }
    return a->seq < b->seq;
}

static void
sift_up(apy_theap_entry_t *v, size_t i)
{
    apy_theap_entry_t item = v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!entry_less(&item, &v[parent])) {
            break;
        }
        v[i] = v[parent];
        i = parent;
    }
    v[i] = item;
}

static void
sift_down(apy_theap_entry_t *v, size_t len, size_t i)
{
    apy_theap_entry_t item = v[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= len) {
            break;
        }
        if (child + 1 < len && entry_less(&v[child + 1], &v[child])) {
            child++;
        }
        if (!entry_less(&v[child], &item)) {
            break;
        }
        v[i] = v[child];
        i = child;
    }
    v[i] = item;
}

/* 0, or -ENOMEM with the heap unchanged. */
int
apy__theap_push(apy_theap_t *h, double when, uint64_t seq, void *data)
{
    if (h->len == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : THEAP_MIN_CAP;
        apy_theap_entry_t *nv = realloc(h->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            return -ENOMEM;
        }
        h->v = nv;
        h->cap = ncap;
    }
    h->v[h->len].when = when;
    h->v[h->len].seq = seq;
    h->v[h->len].data = data;
    sift_up(h->v, h->len);
    h->len++;
    return 0;
}

/* The earliest entry (valid until the next change), or NULL. */
const apy_theap_entry_t *
apy__theap_peek(const apy_theap_t *h)
{
    return h->len ? &h->v[0] : NULL;
}

/* 1 with *out set, or 0 when empty. */
int
apy__theap_pop(apy_theap_t *h, apy_theap_entry_t *out)
{
    if (h->len == 0) {
        return 0;
    }
    *out = h->v[0];
    h->len--;
    if (h->len > 0) {
        h->v[0] = h->v[h->len];
        sift_down(h->v, h->len, 0);
    }
    return 1;
}

/* The number of entries dead() removed. */
size_t
apy__theap_remove_if(apy_theap_t *h, int (*dead)(void *, void *), void *arg)
{
    size_t keep = 0;
    for (size_t i = 0; i < h->len; i++) {
        if (!dead(h->v[i].data, arg)) {
            h->v[keep++] = h->v[i];
        }
    }
    size_t removed = h->len - keep;
    h->len = keep;
    if (removed > 0 && keep > 1) {
        /* Floyd's heapify: O(n), cheaper than re-pushing survivors. */
        for (size_t i = keep / 2; i-- > 0;) {
            sift_down(h->v, keep, i);
        }
    }
    return removed;
}
