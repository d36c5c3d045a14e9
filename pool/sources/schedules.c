/*
 * schedules.c — recurring schedules as an event source: each schedule's next tick in
 * one heap the supervisor sleeps on; at a tick, one job from the schedule's request.
 *
 * One job per tick, across restarts: a tick's job has an id derived from the schedule
 * and the tick (SHA-256), so a tick fired twice (the server stopped between the job's
 * write and the schedule's) makes no second job; and the schedule's row, saying how
 * far it fired, is written after the job in the store's one queue, so it never
 * reaches the disk without that job. A tick missed while the server was down is
 * skipped, or ("missed": "run_once") run once at start, as the tick it was.
 *
 * On a shared store (PostgreSQL) the schedules live in the database and one node at a
 * time fires them (schedules_shared.c): this node holds them only while it leads.
 * Called with the pool lock held.
 */
#include "sources.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"
#include "pyjobd/registry.h"
#include "pyjobd/sha256.h"
#include "pyjobd/spec_codec.h"
#include "pyjobd/store_shared.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct schedule *of(struct heap_node *n)
{
    return (struct schedule *)((char *)n - offsetof(struct schedule, tick));
}

/* The first tick strictly after after_us (CLOCK_REALTIME), 0 when there is none. */
static int64_t next_tick(const struct schedule *s, int64_t after_us)
{
    if (s->every > 0) {
        int64_t step = (int64_t)(s->every * 1e6);
        if (after_us < s->created_us)
            return s->created_us + step;
        return s->created_us + ((after_us - s->created_us) / step + 1) * step;
    }
    int64_t next_s = 0;
    /* Cron ticks are whole minutes: after the second that holds after_us. */
    if (cron_next(&s->cron, s->tz, after_us / 1000000, &next_s) != 0)
        return 0;
    return next_s * 1000000;
}

struct schedule *pool__schedule_new(const char *id, const struct pool_schedule_request *rq,
                                    int64_t created_us, char *err, size_t errlen)
{
    struct schedule *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(s->id, sizeof(s->id), "%s", id);
    memcpy(s->owner, rq->job.owner, sizeof(s->owner));
    s->owner[JOB_OWNER_MAX - 1] = 0;
    snprintf(s->tz_name, sizeof(s->tz_name), "%s", rq->timezone ? rq->timezone : "UTC");
    s->every = rq->every;
    s->run_once = rq->run_once;
    s->created_us = created_us;
    int ok = 1;
    if (rq->cron) {
        ok = (s->cron_text = strdup(rq->cron)) && cron_parse(rq->cron, &s->cron, err, errlen) == 0;
    } else if (!(rq->every > 0) || !isfinite(rq->every)) {
        snprintf(err, errlen, "a schedule needs a cron expression or every > 0 seconds");
        ok = 0;
    }
    if (ok && strcmp(s->tz_name, "UTC") != 0 && tz_load(s->tz_name, NULL, &s->tz, err, errlen) != 0)
        ok = 0;
    /* The job: a copy of the request (its payload shared), without its own timing. */
    if (ok) {
        job_spec_ref_payload(&s->job, &rq->job);
        s->job.timeout = rq->job.timeout;
        s->job.max_retries = rq->job.max_retries;
        memcpy(s->job.owner, s->owner, sizeof(s->job.owner));
        ok = (!rq->job.metadata || (s->job.metadata = strdup(rq->job.metadata))) &&
             job_retry_copy(&s->job.retry, &rq->job.retry) == 0;
        if (!ok)
            snprintf(err, errlen, "out of memory");
    }
    if (ok && !(s->next_us = next_tick(s, clock_real_us()))) {
        snprintf(err, errlen, "the cron expression never fires in the next five years");
        ok = 0;
    }
    if (!ok) {
        pool__schedule_free(s);
        return NULL;
    }
    return s;
}

void pool__schedule_free(struct schedule *s)
{
    if (!s)
        return;
    job_spec_release(&s->job);
    free(s->cron_text);
    tz_free(s->tz);
    free(s);
}

int pool__schedule_row(const struct schedule *s, struct store_schedule *row)
{
    uint8_t *job = NULL;
    size_t len = 0;
    if (spec_encode(&s->job, &job, &len) != 0)
        return -ENOMEM;
    *row = (struct store_schedule){.job = job,
                                   .job_len = len,
                                   .cron = s->cron_text,
                                   .every = s->every,
                                   .timezone = s->tz_name,
                                   .run_once = s->run_once,
                                   .created_us = s->created_us,
                                   .last_tick_us = s->last_tick_us,
                                   .runs = s->runs};
    memcpy(row->id, s->id, sizeof(row->id));
    memcpy(row->owner, s->owner, sizeof(row->owner));
    memcpy(row->last_job, s->last_job, sizeof(row->last_job));
    return 0;
}

/* Its row, written after everything queued so far (a shared store's rows are written
 * by each tick's transaction). */
static void persist(struct pool *p, struct schedule *s)
{
    if (!p->cfg.store || pool__shared(p))
        return;
    struct store_schedule row;
    if (pool__schedule_row(s, &row) != 0) {
        log_error("schedule %s: out of memory writing it", s->id);
        return;
    }
    store_put_schedule(p->cfg.store, &row);
    free((void *)row.job);
}

static void arm(struct pool *p, struct schedule *s)
{
    if (heap_push(&p->schedule_ticks, &s->tick, pool__real_to_mono_ms(s->next_us)) != 0)
        log_error("schedule %s: out of memory for its next tick; it will not fire", s->id);
    else
        s->armed = 1;
}

static void disarm(struct pool *p, struct schedule *s)
{
    if (s->armed)
        heap_remove(&p->schedule_ticks, &s->tick);
    s->armed = 0;
}

void pool__schedule_add(struct pool *p, struct schedule *s, int write)
{
    TAILQ_INSERT_TAIL(&p->schedules, s, link);
    p->nschedules++;
    if (s->next_us)
        arm(p, s);
    if (write)
        persist(p, s);
}

void pool__schedule_remove(struct pool *p, struct schedule *s)
{
    TAILQ_REMOVE(&p->schedules, s, link);
    p->nschedules--;
    disarm(p, s);
    if (p->cfg.store)
        store_delete_schedule(p->cfg.store, s->id);
}

/* The id of tick's job: 32 hex digits of SHA-256("pyjobd schedule <id> <tick>"). */
static void tick_job_id(const struct schedule *s, int64_t tick_us, char out[JOB_ID_LEN + 1])
{
    char text[96];
    int n = snprintf(text, sizeof(text), "pyjobd schedule %s %lld", s->id, (long long)tick_us);
    uint8_t d[SHA256_BYTES];
    sha256(text, (size_t)n, d);
    for (int i = 0; i < JOB_ID_LEN / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* A shared store: the tick's job goes to the database's queue with the schedule's
 * progress, in one transaction (runs and last_job come back through ticked). */
static void fire_shared(struct pool *p, struct schedule *s, struct job *j, int64_t tick_us,
                        size_t pending)
{
    int rc = -EAGAIN;
    if (!p->cfg.max_queue || store_queued(p->cfg.store) + pending < p->cfg.max_queue)
        rc = store_schedule_tick(p->cfg.store, s->id, tick_us, &j->v, &j->spec);
    if (rc == -EAGAIN)
        log_warn("schedule %s: the queue is full (--max-queue); this tick's job was not made",
                 s->id);
    else if (rc == -ENOMEM)
        log_error("schedule %s: out of memory for the job of a tick", s->id);
    pool__job_free(j); /* -ENOTCONN: this node does not lead any more; the leader fires */
}

/* One job for the tick; none when that tick's job exists already (fired before a
 * restart) or the queue is full (the tick is lost: said in the log). */
static void fire(struct pool *p, struct schedule *s, int64_t tick_us)
{
    struct job *j = pool__job_from_spec(&s->job, p->cfg.default_timeout);
    if (!j) {
        log_error("schedule %s: out of memory for the job of a tick", s->id);
        return;
    }
    tick_job_id(s, tick_us, j->v.id);
    memcpy(j->v.schedule, s->id, sizeof(j->v.schedule));
    size_t pending = p->lc.jobs.nqueued + p->lc.jobs.nscheduled;
    if (pool__shared(p)) {
        fire_shared(p, s, j, tick_us, pending);
        return;
    }
    struct tenant *tn = pool__tenant_of(&p->lc.jobs, j);
    int rc = 0;
    if (!tn)
        rc = -ENOMEM;
    else if (p->cfg.max_queue && pending >= p->cfg.max_queue)
        rc = -EAGAIN;
    else if (p->cfg.tenant_max_queued && tn->queued >= p->cfg.tenant_max_queued)
        rc = -EDQUOT;
    else
        rc = pool__job_admit(&p->lc, j);
    if (rc != 0) {
        /* A tick is not worth a queue past its limits: it is lost, and said. */
        if (rc == -EAGAIN || rc == -EDQUOT)
            log_warn("schedule %s: the queue is full (%s); this tick's job was not made", s->id,
                     rc == -EAGAIN ? "--max-queue" : "--tenant-max-queued");
        pool__job_free(j);
        return;
    }
    pool__job_submitted(&p->lc, j, 1);
    s->runs++;
    memcpy(s->last_job, j->v.id, sizeof(s->last_job));
    log_debug("schedule %s: job %s", s->id, s->last_job);
}

int64_t pool__schedules_fire(struct pool *p, int64_t now_ms)
{
    struct heap_node *top;
    int fired = 0;
    while ((top = heap_top(&p->schedule_ticks)) && top->key <= now_ms) {
        struct schedule *s = of(top);
        disarm(p, s);
        int64_t now = clock_real_us();
        if (now < s->next_us) { /* early by the clocks' difference */
            arm(p, s);
            continue;
        }
        fire(p, s, s->next_us);
        fired = 1;
        s->last_tick_us = s->next_us;
        /* The next tick after now: ticks the server slept through are not made up. */
        s->next_us = next_tick(s, now > s->next_us ? now : s->next_us);
        if (s->next_us)
            arm(p, s);
        persist(p, s);
    }
    if (fired)
        pool__wake(p);
    top = heap_top(&p->schedule_ticks);
    return top ? top->key : INT64_MAX;
}

/* A stored schedule back in the pool; catch_up: its last missed tick fires whatever
 * its "missed" says (a schedule that never had a leader to fire it). */
static void restore(struct pool *p, const struct store_schedule *sc, int catch_up)
{
    struct pool_schedule_request rq = {
        .cron = sc->cron, .every = sc->every, .timezone = sc->timezone, .run_once = sc->run_once};
    char err[256];
    if (spec_decode(sc->job, sc->job_len, &rq.job) != 0) {
        log_error("schedule %s: its stored job cannot be read; left out", sc->id);
        return;
    }
    struct schedule *s = pool__schedule_new(sc->id, &rq, sc->created_us, err, sizeof(err));
    job_spec_release(&rq.job);
    if (!s) {
        log_error("schedule %s: %s; left out", sc->id, err);
        return;
    }
    s->last_tick_us = sc->last_tick_us;
    s->runs = sc->runs;
    memcpy(s->last_job, sc->last_job, sizeof(s->last_job));
    /* The tick it missed last, if it did: once, as that tick (its id makes a second
     * try of it, had it fired, no job). */
    int64_t after = s->last_tick_us ? s->last_tick_us : s->created_us;
    int64_t now = clock_real_us(), last_missed = 0;
    if (s->every > 0) {
        /* The last tick at or before now, if it came after the last one fired. */
        int64_t step = (int64_t)(s->every * 1e6);
        int64_t last =
            now < s->created_us + step ? 0 : s->created_us + (now - s->created_us) / step * step;
        last_missed = last > after ? last : 0;
    } else {
        int64_t missed = next_tick(s, after);
        for (int guard = 0; missed && missed <= now && guard < 1000000; guard++) {
            last_missed = missed;
            missed = next_tick(s, missed);
        }
    }
    int once = last_missed && (s->run_once || catch_up);
    if (once) {
        fire(p, s, last_missed);
        s->last_tick_us = last_missed;
    }
    s->next_us = next_tick(s, now);
    pool__schedule_add(p, s, once);
}

static int restore_one(void *arg, const struct store_schedule *sc)
{
    restore(arg, sc, 0);
    return 0;
}

/* Takes s out of the pool (not out of the store) and frees it. */
static void drop(struct pool *p, struct schedule *s)
{
    TAILQ_REMOVE(&p->schedules, s, link);
    p->nschedules--;
    disarm(p, s);
    pool__schedule_free(s);
}

/* --- a shared store: the events of the leader's store (store_shared.h) ----------------- */

/* Lock held. An index of this node's schedules by id, or NULL (ENOMEM). */
static struct registry *index_here(struct pool *p)
{
    struct registry *r = registry_new();
    struct schedule *s;
    TAILQ_FOREACH(s, &p->schedules, link)
    if (r && registry_insert(r, s->id, s) == -ENOMEM) {
        registry_free(r);
        r = NULL;
    }
    return r;
}

static size_t on_loaded(void *arg, enum store_schedules_how how, const struct store_schedule *rows,
                        size_t n, char (*unknown)[JOB_ID_LEN + 1])
{
    struct pool *p = arg;
    size_t k = 0;
    pthread_mutex_lock(&p->lock);
    struct schedule *s, *next;
    if (how == STORE_SCHEDULES_LEAD)
        while ((s = TAILQ_FIRST(&p->schedules)))
            drop(p, s);
    struct registry *here = index_here(p), *listed = NULL;
    if (here && how == STORE_SCHEDULES_LISTING && (listed = registry_new())) {
        /* Deleted anywhere: not listed any more. */
        for (size_t i = 0; i < n; i++)
            registry_insert(listed, rows[i].id, (void *)&rows[i]);
        for (s = TAILQ_FIRST(&p->schedules); s; s = next) {
            next = TAILQ_NEXT(s, link);
            if (!registry_find(listed, s->id))
                drop(p, s);
        }
    }
    for (size_t i = 0; here && i < n; i++) {
        if (registry_find(here, rows[i].id))
            continue;
        if (how == STORE_SCHEDULES_LISTING)
            memcpy(unknown[k++], rows[i].id, JOB_ID_LEN + 1);
        else if (rows[i].job)
            restore(p, &rows[i], how == STORE_SCHEDULES_ADDED && !rows[i].last_tick_us);
    }
    registry_free(listed);
    registry_free(here);
    pthread_mutex_unlock(&p->lock);
    pool__wake(p); /* the supervisor sleeps until the next tick */
    return k;
}

static void on_lost(void *arg)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    struct schedule *s;
    while ((s = TAILQ_FIRST(&p->schedules)))
        drop(p, s);
    pthread_mutex_unlock(&p->lock);
}

static void on_ticked(void *arg, const char *id, int gone, uint64_t runs, const char *last_job)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    struct schedule *s;
    TAILQ_FOREACH(s, &p->schedules, link)
    if (strcmp(s->id, id) == 0)
        break;
    if (s && gone) {
        drop(p, s); /* deleted on another node since the last re-read */
    } else if (s) {
        s->runs = runs;
        snprintf(s->last_job, sizeof(s->last_job), "%s", last_job);
    }
    pthread_mutex_unlock(&p->lock);
}

int pool__schedules_recover(struct pool *p)
{
    if (pool__shared(p)) {
        /* Loaded when this node leads (on_loaded). */
        const struct store_schedule_events ev = {on_loaded, on_lost, on_ticked};
        store_set_schedule_events(p->cfg.store, &ev, p);
        return 0;
    }
    int rc = store_load_schedules(p->cfg.store, restore_one, p);
    if (rc == -ENOTSUP)
        return 0;
    if (rc == 0 && p->nschedules)
        log_info("recovered %zu schedules", p->nschedules);
    return rc;
}

void pool__schedules_free(struct pool *p)
{
    if (pool__shared(p))
        store_set_schedule_events(p->cfg.store, NULL, NULL); /* before the pool goes */
    struct schedule *s;
    while ((s = TAILQ_FIRST(&p->schedules))) {
        TAILQ_REMOVE(&p->schedules, s, link);
        pool__schedule_free(s);
    }
    p->nschedules = 0;
    heap_free(&p->schedule_ticks);
}
