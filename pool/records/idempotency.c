/*
 * idempotency.c — the Idempotency-Keys this node knows: (tenant, key) → the digest of
 * the request that first carried it, the job it made, and when the key expires.
 *
 * A chained hash table on (owner, key) — the owner is part of the key, so keys of two
 * tenants never meet — and a list of the same entries by expiry, soonest first, from
 * which expired keys are dropped as time passes (pool__idem_expire): the map holds at
 * most the keys of the last --idempotency-ttl. An entry is one allocation of about
 * 120 bytes plus the tenant's and the key's lengths, and one bucket pointer.
 * Entries are made outside the pool lock (pool__idem_entry_new) so that inserting,
 * under it, never fails: growing the table is best effort.
 */
#include "records.h"

#include <stdlib.h>
#include <string.h>

#define MIN_BUCKETS 64

static uint64_t hash_of(const char *owner, const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *s = owner;; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
        if (!*s)
            break;
    }
    for (const char *s = key; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static const char *key_of(const struct idem_entry *e)
{
    return e->names + e->owner_len + 1;
}

int pool__idem_init(struct idem_map *m)
{
    memset(m, 0, sizeof(*m));
    TAILQ_INIT(&m->by_age);
    m->buckets = calloc(MIN_BUCKETS, sizeof(*m->buckets));
    if (!m->buckets)
        return -ENOMEM;
    m->nbuckets = MIN_BUCKETS;
    return 0;
}

void pool__idem_free(struct idem_map *m)
{
    struct idem_entry *e;
    while ((e = TAILQ_FIRST(&m->by_age))) {
        TAILQ_REMOVE(&m->by_age, e, age_link);
        free(e);
    }
    free(m->buckets);
    memset(m, 0, sizeof(*m));
}

struct idem_entry *pool__idem_entry_new(const char *owner, const char *key,
                                        const uint8_t digest[JOB_IDEM_DIGEST_BYTES], const char *id,
                                        int64_t expires_us)
{
    size_t olen = strlen(owner), klen = strlen(key);
    struct idem_entry *e = malloc(sizeof(*e) + olen + klen + 2);
    if (!e)
        return NULL;
    memset(e, 0, sizeof(*e));
    e->hash = hash_of(owner, key);
    e->expires_us = expires_us;
    if (id)
        memcpy(e->id, id, JOB_ID_LEN + 1);
    memcpy(e->digest, digest, JOB_IDEM_DIGEST_BYTES);
    e->owner_len = olen;
    memcpy(e->names, owner, olen + 1);
    memcpy(e->names + olen + 1, key, klen + 1);
    return e;
}

static struct idem_entry **slot_of(const struct idem_map *m, uint64_t h, const char *owner,
                                   const char *key)
{
    struct idem_entry **pp = &m->buckets[h % m->nbuckets];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && strcmp((*pp)->names, owner) == 0 && strcmp(key_of(*pp), key) == 0)
            break;
    return pp;
}

static void unlink_entry(struct idem_map *m, struct idem_entry *e)
{
    struct idem_entry **pp = slot_of(m, e->hash, e->names, key_of(e));
    if (*pp == e)
        *pp = e->next;
    TAILQ_REMOVE(&m->by_age, e, age_link);
    m->n--;
}

struct idem_entry *pool__idem_find(const struct idem_map *m, const char *owner, const char *key,
                                   int64_t now_us)
{
    struct idem_entry *e = *slot_of(m, hash_of(owner, key), owner, key);
    return e && e->expires_us > now_us ? e : NULL;
}

/* Doubles the buckets when the chains grow past two on average; stays as it is when
 * memory is short (the chains are then only longer). */
static void grow(struct idem_map *m)
{
    if (m->n < 2 * m->nbuckets)
        return;
    size_t nb = 2 * m->nbuckets;
    struct idem_entry **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct idem_entry *e = m->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = b[e->hash % nb];
            b[e->hash % nb] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
}

void pool__idem_insert(struct idem_map *m, struct idem_entry *e)
{
    struct idem_entry *old = *slot_of(m, e->hash, e->names, key_of(e));
    if (old) { /* an expired key used again */
        unlink_entry(m, old);
        free(old);
    }
    grow(m);
    struct idem_entry **head = &m->buckets[e->hash % m->nbuckets];
    e->next = *head;
    *head = e;
    /* Keys mostly come in expiry order (one TTL for all): the walk is a step or two. */
    struct idem_entry *after = TAILQ_LAST(&m->by_age, idem_age);
    while (after && after->expires_us > e->expires_us)
        after = TAILQ_PREV(after, idem_age, age_link);
    if (after)
        TAILQ_INSERT_AFTER(&m->by_age, after, e, age_link);
    else
        TAILQ_INSERT_HEAD(&m->by_age, e, age_link);
    m->n++;
}

size_t pool__idem_expire(struct idem_map *m, int64_t now_us)
{
    size_t dropped = 0;
    struct idem_entry *e;
    while ((e = TAILQ_FIRST(&m->by_age)) && e->expires_us <= now_us) {
        unlink_entry(m, e);
        free(e);
        dropped++;
    }
    return dropped;
}

size_t pool__idem_count(const struct idem_map *m)
{
    return m->n;
}
