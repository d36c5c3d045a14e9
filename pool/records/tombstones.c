/*
 * tombstones.c — the ids of jobs that retention removed, the last `cap` of them (a
 * ring, and a set to look them up), each with why (enum job_gone), so that a lookup
 * can answer "expired" (and by which limit) rather than "never existed". 34 bytes an
 * id, touched only when used.
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
    t->why = calloc(cap ? cap : 1, sizeof(*t->why));
    t->cap = cap;
    t->head = t->len = 0;
    if (!t->set || !t->ring || !t->why) {
        pool__tombstones_free(t);
        return -ENOMEM;
    }
    return 0;
}

void pool__tombstones_free(struct tombstones *t)
{
    registry_free(t->set);
    free(t->ring);
    free(t->why);
    t->set = NULL;
    t->ring = NULL;
    t->why = NULL;
}

void pool__tombstones_add(struct tombstones *t, const char *id, enum job_gone why)
{
    if (!t->set || !t->cap)
        return;
    if (t->len == t->cap) {
        registry_remove(t->set, t->ring[t->head]);
        t->head = (t->head + 1) % t->cap;
        t->len--;
    }
    size_t i = (t->head + t->len) % t->cap;
    char *slot = t->ring[i];
    memcpy(slot, id, JOB_ID_LEN + 1);
    t->why[i] = (unsigned char)why;
    if (registry_insert(t->set, slot, slot) == 0)
        t->len++;
}

enum job_gone pool__tombstones_find(const struct tombstones *t, const char *id)
{
    const char *slot = t->set ? registry_find(t->set, id) : NULL;
    if (!slot)
        return JOB_GONE_FORGOTTEN;
    return (enum job_gone)t->why[(size_t)(slot - t->ring[0]) / sizeof(t->ring[0])];
}
