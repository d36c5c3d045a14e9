/*
 * waiters.c — long-poll waiters: a min-heap on deadline plus a list per job.
 * A waiter is fired exactly once — when its job ends, when its deadline passes, or
 * when the pool stops — and freed right after its callback returns.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

static void heap_swap(struct waiter_heap *h, size_t a, size_t b)
{
    struct waiter *t = h->items[a];
    h->items[a] = h->items[b];
    h->items[b] = t;
    h->items[a]->heap_idx = a;
    h->items[b]->heap_idx = b;
}

static void sift_up(struct waiter_heap *h, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent]->deadline_ms <= h->items[i]->deadline_ms)
            break;
        heap_swap(h, i, parent);
        i = parent;
    }
}

static void sift_down(struct waiter_heap *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->len && h->items[l]->deadline_ms < h->items[m]->deadline_ms)
            m = l;
        if (r < h->len && h->items[r]->deadline_ms < h->items[m]->deadline_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(h, i, m);
        i = m;
    }
}

int pool__waiter_heap_push(struct waiter_heap *h, struct waiter *w)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct waiter **items = realloc(h->items, cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        h->items = items;
        h->cap = cap;
    }
    w->heap_idx = h->len;
    h->items[h->len++] = w;
    sift_up(h, w->heap_idx);
    return 0;
}

void pool__waiter_heap_remove(struct waiter_heap *h, struct waiter *w)
{
    size_t i = w->heap_idx;
    h->len--;
    if (i != h->len) {
        h->items[i] = h->items[h->len];
        h->items[i]->heap_idx = i;
        sift_up(h, i);
        sift_down(h, h->items[i]->heap_idx);
    }
}

struct waiter *pool__waiter_heap_top(const struct waiter_heap *h)
{
    return h->len ? h->items[0] : NULL;
}

/* Unlinks w from its job and the heap, runs its callback, frees it. */
static void fire(struct pool *p, struct waiter *w)
{
    struct job *j = w->job;
    if (w->prev)
        w->prev->next = w->next;
    else
        j->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pool__waiter_heap_remove(&p->waiters, w);
    w->cb(w->arg);
    free(w);
}

void pool__waiters_fire_job(struct pool *p, struct job *j)
{
    while (j->waiters)
        fire(p, j->waiters);
}

void pool__waiters_expire(struct pool *p, int64_t now)
{
    struct waiter *w;
    while ((w = pool__waiter_heap_top(&p->waiters)) && w->deadline_ms <= now) {
        struct job *j = w->job;
        fire(p, w);
        pool__mirror_release(p, j);
    }
}

void pool__waiters_fire_all(struct pool *p)
{
    struct waiter *w;
    while ((w = pool__waiter_heap_top(&p->waiters)))
        fire(p, w);
}
