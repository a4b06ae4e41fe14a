/* SPDX-License-Identifier: MIT */
/* pymalloc's arenas on transparent huge pages, installed by
 * apy__embed_use_hugepage_arenas through CPython's documented
 * PyObject_SetArenaAllocator hook. Changes where arenas come from, never
 * what pymalloc does with them; APYRUN_HUGEPAGES=0 keeps CPython's own
 * allocator. */
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "embed_internal.h"

/* CPython's small-object allocator takes its memory from the OS in arenas
 * of 1 MiB (Objects/obmalloc.c: ARENA_SIZE with the radix tree), each by
 * default its own anonymous mmap, which the kernel then backs 4 KiB page by
 * page, one page fault each. Starting the interpreter and importing asyncio
 * fills about five arenas: some 1,300 of the 2,800 page faults of a 3-cell
 * notebook run, a fifth of its time spent in the kernel.
 *
 * Here arenas are carved, two by two, from 2 MiB-aligned regions marked
 * MADV_HUGEPAGE, so that a kernel with transparent huge pages ("always" or
 * "madvise" in /sys/kernel/mm/transparent_hugepage/enabled) backs each
 * region with one huge page: one fault instead of 512. Where THP is off or
 * absent the madvise fails or does nothing, and the arenas are ordinary
 * pages, as before. The hook is CPython's documented one
 * (PyObject_SetArenaAllocator, "Customize pymalloc Arena Allocator" in the
 * C API's memory management page); pymalloc calls it with the GIL held, so
 * the carving cursor needs no lock.
 *
 * The price: a region is resident as a whole once touched, so up to one
 * region (2 MiB) of arena memory not yet handed out by pymalloc is counted
 * in RSS. APYRUN_HUGEPAGES=0 keeps CPython's own allocator. */

#define REGION_SIZE ((size_t)2 << 20) /* one x86-64 / arm64 huge page */

/* The region arenas are being carved from: [cursor, end). */
static char *cursor;
static char *end;

/* Maps one REGION_SIZE-aligned region of REGION_SIZE bytes: maps twice the
 * size and unmaps the unaligned head and tail. NULL if out of memory. */
static char *
map_region(void)
{
    size_t span = 2 * REGION_SIZE;
    char *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    uintptr_t start = ((uintptr_t)p + REGION_SIZE - 1)
                      & ~(uintptr_t)(REGION_SIZE - 1);
    char *region = (char *)start;
    size_t head = (size_t)(region - p);
    if (head > 0) {
        munmap(p, head);
    }
    size_t tail = span - head - REGION_SIZE;
    if (tail > 0) {
        munmap(region + REGION_SIZE, tail);
    }
#ifdef MADV_HUGEPAGE
    /* Advice only: EINVAL (no THP in this kernel) changes nothing. */
    (void)madvise(region, REGION_SIZE, MADV_HUGEPAGE);
#endif
    return region;
}

static void *
arena_alloc(void *ctx, size_t size)
{
    (void)ctx;
    if (size == 0 || size > REGION_SIZE || REGION_SIZE % size != 0) {
        /* Not an arena size this scheme was made for: do as CPython. */
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    if (cursor == NULL || (size_t)(end - cursor) < size) {
        char *region = map_region();
        if (region == NULL) {
            return NULL;
        }
        cursor = region;
        end = region + REGION_SIZE;
    }
    void *arena = cursor;
    cursor += size;
    return arena;
}

/* An arena is returned on its own, whichever region it came from (the
 * kernel splits a huge page that is partly unmapped). */
static void
arena_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    munmap(ptr, size);
}

void
apy__embed_use_hugepage_arenas(void)
{
    const char *env = getenv("APYRUN_HUGEPAGES");
    if (env != NULL && strcmp(env, "0") == 0) {
        return;
    }
    PyObjectArenaAllocator allocator = {NULL, arena_alloc, arena_free};
    PyObject_SetArenaAllocator(&allocator);
}
