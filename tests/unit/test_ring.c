/* SPDX-License-Identifier: MIT */
/* The ready queue's ring (src/loop/queues.c): FIFO order across growth and
 * wrap-around, and take_all's unwrapping. */
#include <stdint.h>

#include "queues.h"
#include "runner.h"

#define ITEM(i) ((void *)(uintptr_t)((i) + 1))

TEST(ring_empty)
{
    apy_ring_t r;
    apy__ring_init(&r);
    ASSERT(apy__ring_pop(&r) == NULL);
    ASSERT_EQ(r.len, 0);
    apy__ring_free(&r);
}

TEST(ring_fifo_across_growth)
{
    apy_ring_t r;
    apy__ring_init(&r);
    for (int i = 0; i < 1000; i++) {
        ASSERT_EQ(apy__ring_push(&r, ITEM(i)), 0);
    }
    ASSERT_EQ(r.len, 1000);
    ASSERT(r.cap >= 1000 && (r.cap & (r.cap - 1)) == 0);
    for (int i = 0; i < 1000; i++) {
        ASSERT(apy__ring_at(&r, 0) == ITEM(i));
        ASSERT(apy__ring_pop(&r) == ITEM(i));
    }
    ASSERT(apy__ring_pop(&r) == NULL);
    apy__ring_free(&r);
}

TEST(ring_grows_while_wrapped)
{
    /* Interleave so head moves, then force growth with the items split
     * across the end of the buffer: order must survive the unwrap. */
    apy_ring_t r;
    int next_in = 0, next_out = 0;
    apy__ring_init(&r);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 7 + round; i++) {
            ASSERT_EQ(apy__ring_push(&r, ITEM(next_in)), 0);
            next_in++;
        }
        for (int i = 0; i < 5; i++) {
            ASSERT(apy__ring_pop(&r) == ITEM(next_out));
            next_out++;
        }
    }
    for (size_t i = 0; i < r.len; i++) {
        ASSERT(apy__ring_at(&r, i) == ITEM(next_out + (int)i));
    }
    while (r.len > 0) {
        ASSERT(apy__ring_pop(&r) == ITEM(next_out));
        next_out++;
    }
    ASSERT_EQ(next_in, next_out);
    apy__ring_free(&r);
}

TEST(ring_take_all_wrapped)
{
    apy_ring_t r;
    void **items;
    size_t n;
    apy__ring_init(&r);
    for (int i = 0; i < 64; i++) {
        apy__ring_push(&r, ITEM(i));
    }
    for (int i = 0; i < 40; i++) {
        apy__ring_pop(&r);
    }
    for (int i = 64; i < 100; i++) { /* wraps: capacity is still 64 */
        apy__ring_push(&r, ITEM(i));
    }
    ASSERT_EQ(r.cap, 64);
    ASSERT_EQ(apy__ring_take_all(&r, &items, &n), 0);
    ASSERT_EQ(n, 60);
    for (size_t i = 0; i < n; i++) {
        ASSERT(items[i] == ITEM(40 + (int)i));
    }
    free(items);
    /* The ring is empty and usable again. */
    ASSERT_EQ(r.len, 0);
    ASSERT(r.buf == NULL);
    ASSERT_EQ(apy__ring_push(&r, ITEM(7)), 0);
    ASSERT(apy__ring_pop(&r) == ITEM(7));
    apy__ring_free(&r);
}

TEST(ring_take_all_empty)
{
    apy_ring_t r;
    void **items = (void **)&r;
    size_t n = 99;
    apy__ring_init(&r);
    ASSERT_EQ(apy__ring_take_all(&r, &items, &n), 0);
    ASSERT(items == NULL);
    ASSERT_EQ(n, 0);
}
