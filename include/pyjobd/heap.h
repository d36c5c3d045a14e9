/*
 * heap.h — a binary min-heap of intrusive nodes, keyed by an int64 (a time): the
 * waiters' deadlines and the jobs' timers (run_at, expires_at) both live in one.
 * A node knows its index, so it leaves the heap in O(log n).
 */
#ifndef PYJOBD_HEAP_H
#define PYJOBD_HEAP_H

#include <stddef.h>
#include <stdint.h>

struct heap_node {
    int64_t key;
    size_t idx; /* its slot while in a heap */
};

struct heap {
    struct heap_node **items;
    size_t len, cap;
};

/* Adds n with key. 0 or -ENOMEM (n is then not in the heap). */
int heap_push(struct heap *h, struct heap_node *n, int64_t key);
/* Takes n (which is in h) out. */
void heap_remove(struct heap *h, struct heap_node *n);
/* The node with the smallest key, NULL when empty. */
static inline struct heap_node *heap_top(const struct heap *h)
{
    return h->len ? h->items[0] : NULL;
}
/* Frees the array (the nodes are the caller's) and empties h. */
void heap_free(struct heap *h);

#endif
