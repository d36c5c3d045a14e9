/*
 * tombstones.c — the ids of jobs that retention removed, the last `cap` of them (a
 * ring, and a set to look them up), so that a lookup can answer "expired" rather
 * than "never existed". 33 bytes an id, touched only when used.
 */
#include "records.h"
#include "pyjobd/registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int pool__tombstones_init(struct tombstones *t, size_t cap)
{
    t->set = registry_new();
    t->ring = calloc(cap ? cap : 1, sizeof(*t->ring));
    t->cap = cap;
    t->head = t->len = 0;
    if (!t->set || !t->ring) {
        pool__tombstones_free(t);
        return -ENOMEM;
    }
    return 0;
}

void pool__tombstones_free(struct tombstones *t)
{
    registry_free(t->set);
    free(t->ring);
    t->set = NULL;
    t->ring = NULL;
}

void pool__tombstones_add(struct tombstones *t, const char *id)
{
    if (!t->set || !t->cap)
        return;
    if (t->len == t->cap) {
        registry_remove(t->set, t->ring[t->head]);
        t->head = (t->head + 1) % t->cap;
        t->len--;
    }
    char *slot = t->ring[(t->head + t->len) % t->cap];
    memcpy(slot, id, JOB_ID_LEN + 1);
    if (registry_insert(t->set, slot, slot) == 0)
        t->len++;
}

int pool__tombstones_contains(const struct tombstones *t, const char *id)
{
    return t->set && registry_find(t->set, id) != NULL;
}
