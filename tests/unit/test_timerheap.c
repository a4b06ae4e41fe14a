/* SPDX-License-Identifier: MIT */
/* The timer heap (src/loop/queues.c): order by (when, seq), FIFO among
 * equal deadlines, and compaction of cancelled entries. */
#include <stdint.h>

#include "queues.h"
#include "runner.h"

typedef struct {
    double when;
    int cancelled;
    int id;
} fake_timer_t;

static unsigned int rng = 12345;

static unsigned int
next_rand(void)
{
    rng = rng * 1103515245u + 12345u;
    return (rng >> 8) & 0xffff;
}

static void
check_heap_property(const apy_theap_t *h)
{
    for (size_t i = 1; i < h->len; i++) {
        const apy_theap_entry_t *p = &h->v[(i - 1) / 2], *c = &h->v[i];
        ASSERT(p->when < c->when || (p->when == c->when && p->seq < c->seq));
    }
}

TEST(theap_empty)
{
    apy_theap_t h;
    apy_theap_entry_t e;
    apy__theap_init(&h);
    ASSERT(apy__theap_peek(&h) == NULL);
    ASSERT_EQ(apy__theap_pop(&h, &e), 0);
    apy__theap_free(&h);
}

TEST(theap_orders_by_when)
{
    apy_theap_t h;
    apy_theap_entry_t e;
    static fake_timer_t timers[5000];
    apy__theap_init(&h);
    for (int i = 0; i < 5000; i++) {
        timers[i].when = (double)next_rand() / 7.0;
        timers[i].id = i;
        ASSERT_EQ(apy__theap_push(&h, timers[i].when, (uint64_t)i, &timers[i]),
                  0);
    }
    check_heap_property(&h);
    double last = -1;
    for (int i = 0; i < 5000; i++) {
        ASSERT(apy__theap_peek(&h) != NULL);
        ASSERT_EQ(apy__theap_pop(&h, &e), 1);
        ASSERT(e.when >= last);
        ASSERT(((fake_timer_t *)e.data)->when == e.when);
        last = e.when;
    }
    ASSERT_EQ(h.len, 0);
    apy__theap_free(&h);
}

TEST(theap_equal_deadlines_fifo)
{
    apy_theap_t h;
    apy_theap_entry_t e;
    static fake_timer_t timers[300];
    apy__theap_init(&h);
    /* Three deadlines, pushed interleaved: each must come out in push
     * (seq) order, which asyncio's heapq does not guarantee. */
    for (int i = 0; i < 300; i++) {
        timers[i].when = (double)(2 - i % 3);
        timers[i].id = i;
        apy__theap_push(&h, timers[i].when, (uint64_t)i, &timers[i]);
    }
    int last_id[3] = {-1, -1, -1};
    double last_when = -1;
    while (apy__theap_pop(&h, &e)) {
        fake_timer_t *t = e.data;
        int slot = (int)t->when;
        ASSERT(t->when >= last_when);
        ASSERT(t->id > last_id[slot]);
        last_id[slot] = t->id;
        last_when = t->when;
    }
    apy__theap_free(&h);
}

static int
is_cancelled(void *data, void *arg)
{
    fake_timer_t *t = data;
    if (t->cancelled) {
        (*(int *)arg)++;
        return 1;
    }
    return 0;
}

TEST(theap_compaction)
{
    apy_theap_t h;
    apy_theap_entry_t e;
    static fake_timer_t timers[1000];
    int removed_seen = 0, live = 0;
    apy__theap_init(&h);
    for (int i = 0; i < 1000; i++) {
        timers[i].when = (double)next_rand();
        timers[i].id = i;
        timers[i].cancelled = next_rand() % 3 != 0; /* about 2/3 */
        live += !timers[i].cancelled;
        apy__theap_push(&h, timers[i].when, (uint64_t)i, &timers[i]);
    }
    size_t removed = apy__theap_remove_if(&h, is_cancelled, &removed_seen);
    ASSERT_EQ(removed, 1000 - live);
    ASSERT_EQ(removed_seen, 1000 - live);
    ASSERT_EQ(h.len, live);
    check_heap_property(&h);
    double last = -1;
    int n = 0;
    while (apy__theap_pop(&h, &e)) {
        ASSERT(!((fake_timer_t *)e.data)->cancelled);
        ASSERT(e.when >= last);
        last = e.when;
        n++;
    }
    ASSERT_EQ(n, live);
    apy__theap_free(&h);
}

TEST(theap_compaction_all_and_none)
{
    apy_theap_t h;
    static fake_timer_t timers[10];
    int seen = 0;
    apy__theap_init(&h);
    for (int i = 0; i < 10; i++) {
        timers[i].when = i;
        apy__theap_push(&h, timers[i].when, (uint64_t)i, &timers[i]);
    }
    ASSERT_EQ(apy__theap_remove_if(&h, is_cancelled, &seen), 0);
    ASSERT_EQ(h.len, 10);
    for (int i = 0; i < 10; i++) {
        timers[i].cancelled = 1;
    }
    ASSERT_EQ(apy__theap_remove_if(&h, is_cancelled, &seen), 10);
    ASSERT_EQ(h.len, 0);
    ASSERT(apy__theap_peek(&h) == NULL);
    apy__theap_free(&h);
}
