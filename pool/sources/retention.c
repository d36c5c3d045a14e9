/*
 * retention.c — how long finished jobs are kept: at most --result-ttl seconds and at
 * most --max-jobs records, oldest finished first. The done list (records) holds
 * finished jobs in the order they finished, so both rules only ever look at its head;
 * what they remove is forgotten through the lifecycle, which leaves a tombstone so
 * that lookups can answer "expired" instead of "never existed". Idempotency-Keys past
 * their TTL go at the same time.
 */
#include "sources.h"

void pool__retention_enforce(struct pool *p, int64_t now)
{
    struct job_table *t = &p->lc.jobs;
    int64_t ttl_ms = (int64_t)(p->cfg.result_ttl * 1000.0);
    struct job *j;
    while ((j = pool__done_first(t)) && ttl_ms > 0 && now - j->finished_ms >= ttl_ms)
        pool__job_forget(&p->lc, j, JOB_GONE_EXPIRED);
    while ((j = pool__done_first(t)) && p->cfg.max_jobs && pool__table_count(t) > p->cfg.max_jobs)
        pool__job_forget(&p->lc, j, JOB_GONE_EXPIRED);
    pool__idem_expire(&p->idem, clock_real_us()); /* keys past --idempotency-ttl */
}

int64_t pool__retention_next_ms(const struct pool *p)
{
    struct job *j = pool__done_first(&p->lc.jobs);
    if (!j || p->cfg.result_ttl <= 0)
        return INT64_MAX;
    return j->finished_ms + (int64_t)(p->cfg.result_ttl * 1000.0);
}
