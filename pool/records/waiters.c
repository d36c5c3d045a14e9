/*
 * waiters.c — long-poll waiters: a min-heap on deadline plus a list per job.
 * A waiter is fired exactly once — when its job ends, when its deadline passes, or
 * when the pool stops — and freed right after its callback returns.
 */
#include "records.h"

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

static int heap_push(struct waiter_heap *h, struct waiter *w)
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

static void heap_remove(struct waiter_heap *h, struct waiter *w)
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

int pool__waiter_add(struct waiter_heap *h, struct job *j, int64_t deadline_ms, pool_watch_cb cb,
                     void *arg, int *earliest)
{
    struct waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->cb = cb;
    w->arg = arg;
    w->deadline_ms = deadline_ms;
    w->job = j;
    if (heap_push(h, w) != 0) {
        free(w);
        return -ENOMEM;
    }
    LIST_INSERT_HEAD(&j->waiters, w, link);
    *earliest = h->items[0] == w;
    return 0;
}

/* Unlinks w from its job and the heap, runs its callback, frees it. */
static void fire(struct waiter_heap *h, struct waiter *w)
{
    LIST_REMOVE(w, link);
    heap_remove(h, w);
    w->cb(w->arg);
    free(w);
}

void pool__waiters_fire_job(struct waiter_heap *h, struct job *j)
{
    while (!LIST_EMPTY(&j->waiters))
        fire(h, LIST_FIRST(&j->waiters));
}

struct job *pool__waiters_expire_one(struct waiter_heap *h, int64_t now)
{
    if (!h->len || h->items[0]->deadline_ms > now)
        return NULL;
    struct job *j = h->items[0]->job;
    fire(h, h->items[0]);
    return j;
}

void pool__waiters_fire_all(struct waiter_heap *h)
{
    while (h->len)
        fire(h, h->items[0]);
}

int64_t pool__waiters_next_deadline(const struct waiter_heap *h)
{
    return h->len ? h->items[0]->deadline_ms : INT64_MAX;
}

void pool__waiters_free(struct waiter_heap *h)
{
    free(h->items);
    h->items = NULL;
    h->len = h->cap = 0;
}
