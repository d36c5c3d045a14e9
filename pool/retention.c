/*
 * retention.c — how long finished jobs are kept: at most --result-ttl seconds and at
 * most --max-jobs records, oldest finished first. Finished jobs sit on a list in the
 * order they finished, so both rules only ever look at its head. Ids removed this
 * way are remembered in a bounded set so that lookups can answer "expired" (410-ish
 * detail on a 404) instead of "never existed".
 */
#include "internal.h"
#include "pyjobd/registry.h"

#include <errno.h>
#include <stdlib.h>

void pool__retention_add(struct pool *p, struct job *j)
{
    j->finished_ms = clock_now_ms();
    j->done_next = NULL;
    j->done_prev = p->done_tail;
    if (p->done_tail)
        p->done_tail->done_next = j;
    else
        p->done_head = j;
    p->done_tail = j;
}

void pool__retention_enforce(struct pool *p, int64_t now)
{
    int64_t ttl_ms = (int64_t)(p->cfg.result_ttl * 1000.0);
    while (p->done_head && ttl_ms > 0 && now - p->done_head->finished_ms >= ttl_ms)
        pool__forget_job(p, p->done_head, 1);
    while (p->done_head && p->cfg.max_jobs && registry_count(p->jobs) > p->cfg.max_jobs)
        pool__forget_job(p, p->done_head, 1);
}

int64_t pool__retention_next_ms(const struct pool *p)
{
    if (!p->done_head || p->cfg.result_ttl <= 0)
        return INT64_MAX;
    return p->done_head->finished_ms + (int64_t)(p->cfg.result_ttl * 1000.0);
}

int pool__expired_init(struct expired_ids *e, size_t cap)
{
    e->set = registry_new();
    e->ring = calloc(cap, sizeof(*e->ring));
    e->cap = cap;
    e->head = e->len = 0;
    if (!e->set || !e->ring) {
        pool__expired_free(e);
        return -ENOMEM;
    }
    return 0;
}

void pool__expired_free(struct expired_ids *e)
{
    registry_free(e->set);
    free(e->ring);
    e->set = NULL;
    e->ring = NULL;
}

int pool__expired_contains(const struct expired_ids *e, const char *id)
{
    return e->set && registry_find(e->set, id) != NULL;
}
