/*
 * pool_schedules.c — the public calls on recurring schedules (POST, GET, DELETE
 * /v1/schedules): a schedule belongs to its tenant as a job does. The ticks are
 * fired by the supervisor (sources/schedules.c). On a shared store every call reads
 * or writes the database (any node answers for any schedule; the leader learns of
 * them there).
 */
#include "pyjobd/pool.h"
#include "sources/sources.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"
#include "pyjobd/spec_codec.h"
#include "pyjobd/store_shared.h"

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

/* --- a shared store --------------------------------------------------------------------- */

/* A row as GET shows it: its next tick computed here, after now. */
static void info_of_row(const struct store_schedule *r, struct pool_schedule_info *out)
{
    struct pool_schedule_request rq = {
        .cron = r->cron, .every = r->every, .timezone = r->timezone, .run_once = r->run_once};
    memcpy(rq.job.owner, r->owner, sizeof(rq.job.owner));
    char err[256];
    struct schedule *s = pool__schedule_new(r->id, &rq, r->created_us, err, sizeof(err));
    if (s) {
        info_of(s, out);
        pool__schedule_free(s);
    } else {
        log_warn("schedule %s: %s", r->id, err); /* shown without its next tick */
        memset(out, 0, sizeof(*out));
        memcpy(out->id, r->id, sizeof(out->id));
        memcpy(out->owner, r->owner, sizeof(out->owner));
        snprintf(out->cron, sizeof(out->cron), "%s", r->cron ? r->cron : "");
        out->every = r->every;
        snprintf(out->timezone, sizeof(out->timezone), "%s", r->timezone);
        out->run_once = r->run_once;
        out->created_us = r->created_us;
    }
    out->last_tick_us = r->last_tick_us;
    out->runs = r->runs;
    memcpy(out->last_job, r->last_job, sizeof(out->last_job));
}

static int create_shared(struct pool *p, struct schedule *s)
{
    struct store_schedule row;
    if (pool__schedule_row(s, &row) != 0)
        return -ENOMEM;
    int rc = store_schedule_create(p->cfg.store, &row, POOL_MAX_SCHEDULES_PER_TENANT,
                                   POOL_MAX_SCHEDULES);
    free((void *)row.job);
    return rc;
}

static int get_shared(struct pool *p, const char *id, const char *tenant,
                      struct pool_schedule_info **out, size_t *n)
{
    struct store_schedule *rows;
    size_t k;
    int rc = store_schedule_read(p->cfg.store, id, tenant, &rows, &k);
    if (rc != 0)
        return rc;
    *out = calloc(k ? k : 1, sizeof(**out));
    for (size_t i = 0; *out && i < k; i++)
        info_of_row(&rows[i], &(*out)[i]);
    store_schedules_free(rows, k);
    *n = *out ? k : 0;
    return *out ? 0 : -ENOMEM;
}

/* --- the calls ------------------------------------------------------------------------- */

int pool_schedule_create(struct pool *p, const struct pool_schedule_request *rq,
                         struct pool_schedule_info *out, char *err, size_t errlen)
{
    int shared = pool__shared(p);
    uint8_t raw[16];
    char id[JOB_ID_LEN + 1];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -EIO;
    for (int i = 0; i < 16; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    struct schedule *s = pool__schedule_new(id, rq, clock_real_us(), err, errlen);
    if (!s)
        return strstr(err, "out of memory") ? -ENOMEM : -EINVAL;
    if (shared) {
        int rc = create_shared(p, s);
        if (rc == 0)
            info_of(s, out);
        pool__schedule_free(s);
        return rc;
    }
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
    if (pool__shared(p)) {
        struct pool_schedule_info *one;
        size_t n;
        int rc = get_shared(p, id, tenant, &one, &n);
        if (rc == 0 && n == 1)
            *out = one[0];
        if (rc == 0)
            free(one);
        return rc == 0 && n != 1 ? -ENOENT : rc;
    }
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
    if (pool__shared(p))
        return get_shared(p, NULL, tenant, out, n);
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
    if (pool__shared(p))
        return store_schedule_delete(p->cfg.store, id, tenant); /* the leader re-reads */
    pthread_mutex_lock(&p->lock);
    struct schedule *s = find(p, id, tenant);
    if (s)
        pool__schedule_remove(p, s);
    pthread_mutex_unlock(&p->lock);
    pool__schedule_free(s);
    return s ? 0 : -ENOENT;
}
