/*
 * waiters.c — long-poll waiters: a min-heap on deadline (lib/heap.c) plus a list per job.
 * A waiter is fired exactly once — when its job ends, when its deadline passes, or
 * when the pool stops — and freed right after its callback returns.
 */
#include "records.h"

#include <errno.h>
#include <stdlib.h>

int pool__waiter_add(struct waiter_heap *h, struct job *j, int64_t deadline_ms, pool_watch_cb cb,
                     void *arg, int *earliest)
{
    struct waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->cb = cb;
    w->arg = arg;
    w->job = j;
    if (heap_push(&h->heap, &w->node, deadline_ms) != 0) {
        free(w);
        return -ENOMEM;
    }
    LIST_INSERT_HEAD(&j->waiters, w, link);
    *earliest = heap_top(&h->heap) == &w->node;
    return 0;
}

/* Unlinks w from its job and the heap, runs its callback, frees it. */
static void fire(struct waiter_heap *h, struct waiter *w)
{
    LIST_REMOVE(w, link);
    heap_remove(&h->heap, &w->node);
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
    struct heap_node *top = heap_top(&h->heap);
    if (!top || top->key > now)
        return NULL;
    struct job *j = pool__waiter_of(top)->job;
    fire(h, pool__waiter_of(top));
    return j;
}

void pool__waiters_fire_all(struct waiter_heap *h)
{
    while (heap_top(&h->heap))
        fire(h, pool__waiter_of(heap_top(&h->heap)));
}

int64_t pool__waiters_next_deadline(const struct waiter_heap *h)
{
    struct heap_node *top = heap_top(&h->heap);
    return top ? top->key : INT64_MAX;
}

void pool__waiters_free(struct waiter_heap *h)
{
    heap_free(&h->heap);
}
