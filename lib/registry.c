/*
 * registry.c — in-memory job registry: an open-addressing hash table (linear probing,
 * tombstones) keyed by the 32-hex-digit job id. Ids are random, so their first 16
 * hex digits are already a well-spread hash.
 */
#include "pyjobd/registry.h"
#include "pyjobd/job.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    char id[JOB_ID_LEN + 1];
    void *rec; /* NULL: empty; TOMBSTONE: deleted */
};

static char tombstone_marker;
#define TOMBSTONE ((void *)&tombstone_marker)

struct registry {
    struct slot *slots;
    size_t cap;  /* power of two */
    size_t used; /* live records */
    size_t dead; /* tombstones */
};

static uint64_t hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 16 && id[i]; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
    return h;
}

struct registry *registry_new(void)
{
    struct registry *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cap = 1024;
    r->slots = calloc(r->cap, sizeof(*r->slots));
    if (!r->slots) {
        free(r);
        return NULL;
    }
    return r;
}

void registry_free(struct registry *r)
{
    if (!r)
        return;
    free(r->slots);
    free(r);
}

static struct slot *lookup(const struct registry *r, const char *id)
{
    size_t mask = r->cap - 1;
    for (size_t i = hash_id(id) & mask;; i = (i + 1) & mask) {
        struct slot *s = &r->slots[i];
        if (!s->rec)
            return NULL;
        if (s->rec != TOMBSTONE && strcmp(s->id, id) == 0)
            return s;
    }
}

static void place(struct slot *slots, size_t cap, const char *id, void *rec)
{
    size_t mask = cap - 1;
    size_t i = hash_id(id) & mask;
    while (slots[i].rec && slots[i].rec != TOMBSTONE)
        i = (i + 1) & mask;
    memcpy(slots[i].id, id, JOB_ID_LEN + 1);
    slots[i].rec = rec;
}

static int rehash(struct registry *r, size_t cap)
{
    struct slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < r->cap; i++) {
        if (r->slots[i].rec && r->slots[i].rec != TOMBSTONE)
            place(slots, cap, r->slots[i].id, r->slots[i].rec);
    }
    free(r->slots);
    r->slots = slots;
    r->cap = cap;
    r->dead = 0;
    return 0;
}

int registry_insert(struct registry *r, const char *id, void *rec)
{
    if (strlen(id) != JOB_ID_LEN || !rec)
        return -EINVAL;
    if (lookup(r, id))
        return -EEXIST;
    /* Keep the table at most half full, counting tombstones, so probes stay short. */
    if ((r->used + r->dead + 1) * 2 > r->cap) {
        size_t cap = (r->used + 1) * 4 > r->cap ? r->cap * 2 : r->cap;
        if (rehash(r, cap) != 0)
            return -ENOMEM;
    }
    place(r->slots, r->cap, id, rec);
    r->used++;
    return 0;
}

void *registry_find(const struct registry *r, const char *id)
{
    struct slot *s = lookup(r, id);
    return s ? s->rec : NULL;
}

void *registry_remove(struct registry *r, const char *id)
{
    struct slot *s = lookup(r, id);
    if (!s)
        return NULL;
    void *rec = s->rec;
    s->rec = TOMBSTONE;
    r->used--;
    r->dead++;
    return rec;
}

size_t registry_count(const struct registry *r)
{
    return r->used;
}

void registry_foreach(const struct registry *r, void (*fn)(void *rec, void *arg), void *arg)
{
    for (size_t i = 0; i < r->cap; i++) {
        if (r->slots[i].rec && r->slots[i].rec != TOMBSTONE)
            fn(r->slots[i].rec, arg);
    }
}
