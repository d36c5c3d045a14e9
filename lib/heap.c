/*
 * heap.c — the binary min-heap of heap.h.
 */
#include "pyjobd/heap.h"

#include <errno.h>
#include <stdlib.h>

static void heap_swap(struct heap *h, size_t a, size_t b)
{
    struct heap_node *t = h->items[a];
    h->items[a] = h->items[b];
    h->items[b] = t;
    h->items[a]->idx = a;
    h->items[b]->idx = b;
}

static void sift_up(struct heap *h, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent]->key <= h->items[i]->key)
            break;
        heap_swap(h, i, parent);
        i = parent;
    }
}

static void sift_down(struct heap *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->len && h->items[l]->key < h->items[m]->key)
            m = l;
        if (r < h->len && h->items[r]->key < h->items[m]->key)
            m = r;
        if (m == i)
            return;
        heap_swap(h, i, m);
        i = m;
    }
}

int heap_push(struct heap *h, struct heap_node *n, int64_t key)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct heap_node **items = realloc(h->items, cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        h->items = items;
        h->cap = cap;
    }
    n->key = key;
    n->idx = h->len;
    h->items[h->len++] = n;
    sift_up(h, n->idx);
    return 0;
}

void heap_remove(struct heap *h, struct heap_node *n)
{
    size_t i = n->idx;
    h->len--;
    if (i != h->len) {
        h->items[i] = h->items[h->len];
        h->items[i]->idx = i;
        sift_up(h, i);
        sift_down(h, h->items[i]->idx);
    }
}

void heap_free(struct heap *h)
{
    free(h->items);
    h->items = NULL;
    h->len = h->cap = 0;
}
