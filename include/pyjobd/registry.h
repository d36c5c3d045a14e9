/*
 * registry.h — the job registry: ids → job records.
 *
 * This is the seam where a durable store (SQLite) or a shared one (PostgreSQL) will
 * take the place of the in-memory table. The records themselves are the pool's
 * (opaque here); the registry only indexes them. Not thread-safe: the pool calls it
 * under its own lock.
 */
#ifndef PYJOBD_REGISTRY_H
#define PYJOBD_REGISTRY_H

#include <stddef.h>

struct registry;

struct registry *registry_new(void);

/* Frees the table (not the records). Accepts NULL. */
void registry_free(struct registry *r);

/* Indexes rec under id (JOB_ID_LEN hex digits, copied). 0, -EEXIST, or -ENOMEM. */
int registry_insert(struct registry *r, const char *id, void *rec);

/* The record for id (borrowed), or NULL. */
void *registry_find(const struct registry *r, const char *id);

/* Removes id and returns its record (now the caller's), or NULL. */
void *registry_remove(struct registry *r, const char *id);

size_t registry_count(const struct registry *r);

/* Calls fn(rec, arg) for every record, in no particular order. fn must not modify
 * the registry. */
void registry_foreach(const struct registry *r, void (*fn)(void *rec, void *arg), void *arg);

#endif
