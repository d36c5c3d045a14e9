/*
 * arenas.c — pymalloc's arenas on transparent huge pages, so that a fork is cheap.
 *
 * A fork copies one page-table entry per 4 KiB page the parent has written, and the
 * child's exit removes them again: for a worker's 6.6 MiB of objects about 0.6 ms on
 * this 2-core VM (a C fork+exit of an 8 MiB process: 690 us; the same memory on huge
 * pages: 230 us). With --isolation job that is paid per job. So pymalloc's arenas
 * (where nearly all of a worker's objects are) are carved out of 2 MiB-aligned chunks
 * marked MADV_HUGEPAGE: the fork copies one entry per 2 MiB.
 *
 * A huge page stays one only while no other process shares it when it is written:
 * a worker forked from the zygote splits every one it writes, so a worker that forks
 * horses collapses its chunks back into huge pages of its own once, before its first
 * horse (worker_arenas_collapse), and writes no Python object while a horse lives
 * (horse.c). Where the kernel has THP off, or MADV_COLLAPSE is missing (before 6.1),
 * this is ordinary memory and everything works as before.
 *
 * Arenas of any other size than a divisor of the chunk go to mmap as pymalloc's
 * default allocator does. A freed arena's memory is given back (MADV_DONTNEED) and
 * its slot reused; a chunk with no arena left is unmapped.
 */
#include <Python.h>

#include "arenas.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define ARENAS_CHUNK ((size_t)2 << 20)
#define ARENAS_MAX_SLOTS 64

struct arenas_chunk {
    char *base;
    uint64_t used; /* a bit per arena slot */
};

static struct {
    struct arenas_chunk *chunks;
    size_t n, cap;
    size_t arena_size; /* the size pymalloc asks for; 0 until its first request */
} arenas;

static void *arenas_mmap(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* A new 2 MiB-aligned chunk marked for huge pages, or NULL. */
static char *arenas_new_chunk(void)
{
    char *raw = arenas_mmap(2 * ARENAS_CHUNK);
    if (!raw)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + ARENAS_CHUNK - 1) & ~(uintptr_t)(ARENAS_CHUNK - 1);
    char *base = (char *)start;
    if (base > raw)
        munmap(raw, (size_t)(base - raw));
    char *end = raw + 2 * ARENAS_CHUNK;
    if (end > base + ARENAS_CHUNK)
        munmap(base + ARENAS_CHUNK, (size_t)(end - (base + ARENAS_CHUNK)));
    madvise(base, ARENAS_CHUNK, MADV_HUGEPAGE); /* advice: THP off is not an error */
    return base;
}

static void *arenas_alloc(void *ctx, size_t size)
{
    (void)ctx;
    if (!arenas.arena_size && size && ARENAS_CHUNK % size == 0 &&
        ARENAS_CHUNK / size <= ARENAS_MAX_SLOTS)
        arenas.arena_size = size;
    if (size != arenas.arena_size || !size)
        return arenas_mmap(size);
    size_t slots = ARENAS_CHUNK / size;
    uint64_t full = slots == 64 ? UINT64_MAX : ((uint64_t)1 << slots) - 1;
    for (size_t i = 0; i < arenas.n; i++) {
        struct arenas_chunk *c = &arenas.chunks[i];
        if (c->used == full)
            continue;
        int slot = __builtin_ctzll(~c->used);
        c->used |= (uint64_t)1 << slot;
        return c->base + (size_t)slot * size;
    }
    if (arenas.n == arenas.cap) {
        size_t cap = arenas.cap ? 2 * arenas.cap : 16;
        struct arenas_chunk *grown = realloc(arenas.chunks, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        arenas.chunks = grown;
        arenas.cap = cap;
    }
    char *base = arenas_new_chunk();
    if (!base)
        return arenas_mmap(size); /* a chunk takes 4 MiB for a moment: near a limit, less */
    arenas.chunks[arenas.n++] = (struct arenas_chunk){base, 1};
    return base;
}

static void arenas_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (size == arenas.arena_size && size) {
        for (size_t i = 0; i < arenas.n; i++) {
            struct arenas_chunk *c = &arenas.chunks[i];
            char *p = ptr;
            if (p < c->base || p >= c->base + ARENAS_CHUNK)
                continue;
            c->used &= ~((uint64_t)1 << ((size_t)(p - c->base) / size));
            if (c->used == 0) {
                munmap(c->base, ARENAS_CHUNK);
                arenas.chunks[i] = arenas.chunks[--arenas.n];
            } else {
                madvise(p, size, MADV_DONTNEED);
            }
            return;
        }
    }
    munmap(ptr, size);
}

void worker_arenas_install(void)
{
    PyObjectArenaAllocator a = {NULL, arenas_alloc, arenas_free};
    PyObject_SetArenaAllocator(&a);
}

void worker_arenas_collapse(void)
{
    for (size_t i = 0; i < arenas.n; i++)
        madvise(arenas.chunks[i].base, ARENAS_CHUNK, MADV_COLLAPSE); /* best effort */
}
