/*
 * pool_schedules.c — the public calls on recurring schedules (POST, GET, DELETE
 * /v1/schedules): a schedule belongs to its tenant as a job does. The ticks are
 * fired by the supervisor (sources/schedules.c). One node's schedules only: not yet
 * on a shared store.
 */
#include "pyjobd/pool.h"
#include "sources/sources.h"
#include "pyjobd/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static void info_of(const struct schedule *s, struct pool_schedule_info *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->id, s->id, sizeof(out->id));
    memcpy(out->owner, s->owner, sizeof(out->owner));
    snprintf(out->cron, sizeof(out->cron), "%s", s->cron_text ? s->cron_text : "");
    out->every = s->every;
    snprintf(out->timezone, sizeof(out->timezone), "%s", s->tz_name);
    out->run_once = s->run_once;
    out->created_us = s->created_us;
    out->next_us = s->next_us;
    out->last_tick_us = s->last_tick_us;
    out->runs = s->runs;
    memcpy(out->last_job, s->last_job, sizeof(out->last_job));
}

static struct schedule *find(struct pool *p, const char *id, const char *tenant)
{
    struct schedule *s;
    TAILQ_FOREACH(s, &p->schedules, link)
    if (strcmp(s->id, id) == 0)
        return !tenant || strcmp(s->owner, tenant) == 0 ? s : NULL;
    return NULL;
}

int pool_schedule_create(struct pool *p, const struct pool_schedule_request *rq,
                         struct pool_schedule_info *out, char *err, size_t errlen)
{
    if (pool__shared(p))
        return -EOPNOTSUPP;
    uint8_t raw[16];
    char id[JOB_ID_LEN + 1];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -EIO;
    for (int i = 0; i < 16; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    struct schedule *s = pool__schedule_new(id, rq, clock_real_us(), err, errlen);
    if (!s)
        return strstr(err, "out of memory") ? -ENOMEM : -EINVAL;
    pthread_mutex_lock(&p->lock);
    size_t mine = 0;
    struct schedule *o;
    TAILQ_FOREACH(o, &p->schedules, link)
    mine += strcmp(o->owner, s->owner) == 0;
    int rc = 0;
    if (p->nschedules >= POOL_MAX_SCHEDULES)
        rc = -EAGAIN;
    else if (mine >= POOL_MAX_SCHEDULES_PER_TENANT)
        rc = -EDQUOT;
    if (rc == 0) {
        pool__schedule_add(p, s, 1);
        info_of(s, out);
    }
    pthread_mutex_unlock(&p->lock);
    if (rc != 0)
        pool__schedule_free(s);
    else
        pool__wake(p); /* its first tick may come before the supervisor's next wake */
    return rc;
}

int pool_schedule_get(struct pool *p, const char *id, const char *tenant,
                      struct pool_schedule_info *out)
{
    pthread_mutex_lock(&p->lock);
    struct schedule *s = find(p, id, tenant);
    if (s)
        info_of(s, out);
    pthread_mutex_unlock(&p->lock);
    return s ? 0 : -ENOENT;
}

int pool_schedule_list(struct pool *p, const char *tenant, struct pool_schedule_info **out,
                       size_t *n)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&p->lock);
    struct pool_schedule_info *all = calloc(p->nschedules ? p->nschedules : 1, sizeof(*all));
    struct schedule *s;
    size_t k = 0;
    if (all)
        TAILQ_FOREACH(s, &p->schedules, link)
    if (!tenant || strcmp(s->owner, tenant) == 0)
        info_of(s, &all[k++]);
    pthread_mutex_unlock(&p->lock);
    if (!all)
        return -ENOMEM;
    *out = all;
    *n = k;
    return 0;
}

int pool_schedule_delete(struct pool *p, const char *id, const char *tenant)
{
    pthread_mutex_lock(&p->lock);
    struct schedule *s = find(p, id, tenant);
    if (s)
        pool__schedule_remove(p, s);
    pthread_mutex_unlock(&p->lock);
    pool__schedule_free(s);
    return s ? 0 : -ENOENT;
}
