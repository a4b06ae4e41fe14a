/* SPDX-License-Identifier: MIT */
/* Plain C data structures under the loop (src/loop/queues.c):
 * the ready queue (a ring of pointers) and the timer heap keyed by
 * (when, seq). No Python.h here: they hold opaque pointers and never own
 * what they point to; the loop decides what a pointer means. */
#ifndef APY_LOOP_QUEUES_H
#define APY_LOOP_QUEUES_H

#include <stddef.h>
#include <stdint.h>

/* A FIFO of pointers in a power-of-two ring that grows by doubling. */
typedef struct apy_ring_s {
    void **buf;
    size_t cap;  /* 0 or a power of two */
    size_t head; /* index of the oldest item */
    size_t len;
} apy_ring_t;

/* Initialises an empty ring; allocates nothing. */
void apy__ring_init(apy_ring_t *r);

/* Frees the buffer (not the items) and leaves an empty ring. */
void apy__ring_free(apy_ring_t *r);

/* Appends item at the tail. Returns 0, or -ENOMEM when the ring cannot
 * grow; the ring is unchanged then. */
int apy__ring_push(apy_ring_t *r, void *item);

/* Removes and returns the oldest item; NULL when empty. */
void *apy__ring_pop(apy_ring_t *r);

/* Returns the i-th oldest item (0 = head) without removing it; i must be
 * below r->len. */
void *apy__ring_at(const apy_ring_t *r, size_t i);

/* Moves every item out: *out receives the old buffer laid out oldest
 * first (caller frees it with free()), *n its count; the ring becomes
 * empty. Used to release items after the ring is consistent again, since
 * releasing can run code that pushes. Returns 0 or -ENOMEM. */
int apy__ring_take_all(apy_ring_t *r, void ***out, size_t *n);

/* One timer: ordered by when, then by seq (FIFO among equal deadlines). */
typedef struct apy_theap_entry_s {
    double when;
    uint64_t seq;
    void *data;
} apy_theap_entry_t;

/* A binary min-heap of timer entries. */
typedef struct apy_theap_s {
    apy_theap_entry_t *v;
    size_t len;
    size_t cap;
} apy_theap_t;

/* Initialises an empty heap; allocates nothing. */
void apy__theap_init(apy_theap_t *h);

/* Frees the array (not the data pointers) and leaves an empty heap. */
void apy__theap_free(apy_theap_t *h);

/* Inserts an entry. Returns 0 or -ENOMEM, heap unchanged then. */
int apy__theap_push(apy_theap_t *h, double when, uint64_t seq, void *data);

/* Returns the earliest entry, or NULL when empty; valid until the next
 * change to the heap. */
const apy_theap_entry_t *apy__theap_peek(const apy_theap_t *h);

/* Removes the earliest entry into *out. Returns 1, or 0 when empty. */
int apy__theap_pop(apy_theap_t *h, apy_theap_entry_t *out);

/* Removes every entry for which dead(data, arg) returns non-zero, then
 * restores the heap property in O(n). dead() must not touch the heap;
 * it typically records the pointer so the caller can release it after
 * this returns. Returns the number of entries removed. */
size_t apy__theap_remove_if(apy_theap_t *h, int (*dead)(void *, void *),
                           void *arg);

#endif
