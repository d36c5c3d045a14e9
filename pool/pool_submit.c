/*
 * pool_submit.c — the pool's submission calls (include/pyjobd/pool.h): pool_submit,
 * pool_submit_batch and pool_submit_keyed. Records are built outside the pool lock;
 * under it, in one step, the Idempotency-Keys are checked (a key already seen answers
 * its job instead of making one), the queue's and the tenants' limits are checked, and
 * the new jobs are admitted, queued and their keys remembered. A 201 (and a replay's
 * 200) waits for the store's commit of the job.
 */
#include "pool_results.h"
#include "pyjobd/log.h"
#include "pyjobd/store.h"
#include "pyjobd/store_shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define IDEM_TTL_DEFAULT (24.0 * 3600)

static void new_job_id(char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (errno != EINTR)
            abort(); /* the kernel's CSPRNG is not optional: ids must be unguessable */
    }
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[JOB_ID_LEN] = 0;
}

/* Lock held. Each job's tenant record (made now, so that queueing cannot fail) and,
 * with --tenant-max-queued, room for all of them: 0, -EDQUOT, -ENOMEM. */
static int tenant_room(struct pool *p, struct job **jobs, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct tenant *tn = pool__tenant_of(&p->lc.jobs, jobs[i]);
        if (!tn)
            rc = -ENOMEM;
        else if (p->cfg.tenant_max_queued &&
                 tn->queued + ++tn->submitting > p->cfg.tenant_max_queued)
            rc = -EDQUOT;
    }
    for (size_t i = 0; i < n; i++)
        if (jobs[i]->tenant)
            jobs[i]->tenant->submitting = 0;
    return rc;
}

size_t pool_tenant_queued(struct pool *p, const char *tenant)
{
    pthread_mutex_lock(&p->lock);
    struct tenant *tn = pool__tenant_find(&p->lc.jobs, tenant);
    size_t n = tn ? tn->queued : 0;
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* What one call submits: the records of the new jobs (fresh[k], for specs[at[k]]), the
 * keys' entries to remember (keys[i] for specs[i]), and the replays found. */
struct submission {
    struct job **fresh;
    size_t *at, m;
    struct idem_entry **keys;
    int *fill; /* replays whose results must be read back (pool__results_fill) */
};

/* Lock held. Looks every key up: a spec whose key is known becomes a replay (its view
 * copied into views_out, replayed[i] = 1), the others go to fresh. 0, -EKEYREJECTED,
 * -ESTALE or -ENOMEM with *bad (replays copied so far are released). */
static int check_keys(struct pool *p, const struct job_spec *specs, size_t n, struct job **jobs,
                      struct submission *s, struct job_view *views_out, unsigned char *replayed,
                      uint64_t *ticket, size_t *bad)
{
    int64_t now_us = clock_real_us();
    pool__idem_expire(&p->idem, now_us);
    int rc = 0;
    size_t i = 0;
    for (; i < n && rc == 0; i++) {
        struct idem_entry *e =
            specs[i].idem_key ? pool__idem_find(&p->idem, specs[i].owner, specs[i].idem_key, now_us)
                              : NULL;
        replayed[i] = 0;
        if (!e) {
            s->at[s->m] = i;
            s->fresh[s->m++] = jobs[i];
            continue;
        }
        int err = 0;
        struct job *j = NULL;
        if (memcmp(e->digest, specs[i].idem_digest, JOB_IDEM_DIGEST_BYTES) != 0)
            rc = -EKEYREJECTED;
        else if (!(j = pool__table_find(&p->lc.jobs, e->id, &err)))
            rc = -ESTALE;
        else if ((rc = job_view_copy(&views_out[i], &j->v)) == 0) {
            replayed[i] = 1;
            s->fill[i] = pool__results_missing(p, j);
            *ticket = j->store_ticket > *ticket ? j->store_ticket : *ticket;
        }
        if (rc != 0)
            *bad = i;
    }
    if (rc != 0)
        for (size_t k = 0; k < n; k++)
            if (replayed[k])
                job_view_release(&views_out[k]), replayed[k] = 0;
    return rc;
}

/* Lock held; shared store. This node runs what its idle workers can take at once (it
 * inserts them as claimed by it) and leaves the rest in the database's queue, for any
 * node to claim; a scheduled job waits there too (the database's timers queue it when
 * due, pg_sql_promote). queued: the jobs waiting here already. */
static void choose_here(struct pool *p, struct job **jobs, size_t n, size_t queued)
{
    unsigned idle = pool__idle_workers(p);
    size_t room = idle > queued ? idle - queued : 0;
    for (size_t i = 0; i < n; i++) {
        jobs[i]->claim_here = room > 0 && jobs[i]->v.status != JOB_SCHEDULED;
        if (jobs[i]->claim_here) {
            room--;
            store_node_id(p->cfg.store, jobs[i]->v.node);
        }
    }
}

/* Lock held. Admits and queues s->fresh (all or none), remembers their keys. */
static int queue_fresh(struct pool *p, struct submission *s, struct job_view *views_out,
                       uint64_t *ticket)
{
    struct job **jobs = s->fresh;
    size_t n = s->m;
    int shared = pool__shared(p), rc = 0;
    /* Scheduled jobs wait too: --max-queue bounds them with the queued ones. */
    size_t queued = p->lc.jobs.nqueued + p->lc.jobs.nscheduled;
    if (n == 0)
        return 0;
    if (p->cfg.max_queue && queued + n > p->cfg.max_queue)
        rc = -EAGAIN;
    else if (shared && p->cfg.max_queue &&
             store_queued(p->cfg.store) + queued + n > p->cfg.max_queue)
        rc = -EAGAIN; /* the shared queue: every node's unclaimed jobs */
    if (rc == 0)
        rc = tenant_room(p, jobs, n);
    size_t admitted = 0;
    for (; rc == 0 && admitted < n; admitted++)
        while ((rc = pool__job_admit(&p->lc, jobs[admitted])) == -EEXIST)
            new_job_id(jobs[admitted]->v.id);
    if (rc == 0 && shared)
        choose_here(p, jobs, n, queued);
    /* The caller's copies, before anything is queued: all or none. */
    size_t copied = 0;
    for (; rc == 0 && copied < n; copied++)
        rc = job_view_copy(&views_out[s->at[copied]], &jobs[copied]->v);
    if (rc != 0) {
        for (size_t i = 0; i + 1 < copied; i++)
            job_view_release(&views_out[s->at[i]]);
        for (size_t i = 0; i < admitted; i++)
            pool__job_withdraw(&p->lc, jobs[i]);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        struct idem_entry *e = s->keys ? s->keys[s->at[i]] : NULL;
        if (e) {
            memcpy(e->id, jobs[i]->v.id, JOB_ID_LEN + 1);
            pool__idem_insert(&p->idem, e);
            s->keys[s->at[i]] = NULL;
        }
        int here = !shared || jobs[i]->claim_here;
        uint64_t t = pool__job_submitted(&p->lc, jobs[i], here); /* frees the others */
        *ticket = t > *ticket ? t : *ticket;
    }
    pool__retention_enforce(p, clock_now_ms()); /* keeps --max-jobs a bound */
    return 0;
}

/* Builds the records (and the keys' entries) outside the lock: 0 or -ENOMEM. */
static int build(struct pool *p, const struct job_spec *specs, size_t n, struct job **jobs,
                 struct submission *s, size_t nkeys)
{
    double ttl = p->cfg.idempotency_ttl > 0 ? p->cfg.idempotency_ttl : IDEM_TTL_DEFAULT;
    int64_t expires = clock_real_us() + (int64_t)(ttl * 1e6);
    s->fresh = calloc(n, sizeof(*s->fresh));
    s->at = calloc(n, sizeof(*s->at));
    s->fill = calloc(n, sizeof(*s->fill));
    s->keys = nkeys ? calloc(n, sizeof(*s->keys)) : NULL;
    if (!s->fresh || !s->at || !s->fill || (nkeys && !s->keys))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!(jobs[i] = pool__job_from_spec(&specs[i], p->cfg.default_timeout)))
            return -ENOMEM;
        new_job_id(jobs[i]->v.id);
        if (!specs[i].idem_key)
            continue;
        jobs[i]->spec.idem_expires_us = expires; /* the store keeps the key as long */
        s->keys[i] = pool__idem_entry_new(specs[i].owner, specs[i].idem_key, specs[i].idem_digest,
                                          NULL, expires);
        if (!s->keys[i])
            return -ENOMEM;
    }
    return 0;
}

/* --- a shared store: the database decides each key's job --------------------------------- */

/* Lock held. The limits for all n jobs (the replays among them included: which they are
 * is known only after the database's round), and which of them this node runs (as
 * queue_fresh chooses): 0, -EAGAIN, -EDQUOT, -ENOMEM. */
static int place(struct pool *p, struct job **jobs, size_t n)
{
    size_t queued = p->lc.jobs.nqueued + p->lc.jobs.nscheduled;
    if (p->cfg.max_queue && (queued + n > p->cfg.max_queue ||
                             store_queued(p->cfg.store) + queued + n > p->cfg.max_queue))
        return -EAGAIN;
    int rc = tenant_room(p, jobs, n);
    if (rc == 0)
        choose_here(p, jobs, n, queued);
    return rc;
}

/* Lock held. Admits and queues s->fresh, which the database has already (their limits
 * were checked by place; nothing here may refuse them any more): each runs here
 * (claim_here) or is left to the database's queue. One that this node already holds
 * (its own claim, or an adoption, was faster) is answered as it is and dropped from
 * fresh (jobs of the caller to free). 0 or -ENOMEM (nothing queued). */
static int queue_placed(struct pool *p, struct submission *s, struct job_view *views_out,
                        struct job **dropped)
{
    int rc = 0;
    size_t admitted = 0, copied = 0;
    for (size_t i = 0; rc == 0 && i < s->m; i++)
        if (!pool__tenant_of(&p->lc.jobs, s->fresh[i]))
            rc = -ENOMEM;
    for (; rc == 0 && admitted < s->m; admitted++) {
        struct job *j = s->fresh[admitted];
        dropped[admitted] = pool__table_find(&p->lc.jobs, j->v.id, &(int){0}) ? j : NULL;
        if (!dropped[admitted] && (rc = pool__job_admit(&p->lc, j)) != 0)
            break;
    }
    for (; rc == 0 && copied < s->m; copied++) {
        struct job *j = s->fresh[copied];
        if (dropped[copied]) /* the record this node holds, as it is */
            j = pool__table_find(&p->lc.jobs, j->v.id, &(int){0});
        rc = job_view_copy(&views_out[s->at[copied]], &j->v);
    }
    if (rc != 0) { /* all or none: views copied and jobs admitted so far are undone */
        for (size_t i = 0; i + 1 < copied; i++)
            job_view_release(&views_out[s->at[i]]);
        for (size_t i = 0; i < admitted; i++)
            if (!dropped[i])
                pool__job_withdraw(&p->lc, s->fresh[i]);
        memset(dropped, 0, s->m * sizeof(*dropped));
        return rc;
    }
    for (size_t i = 0; i < s->m; i++)
        if (!dropped[i]) /* its insert again: a no-op, the job is committed already */
            pool__job_submitted(&p->lc, s->fresh[i], s->fresh[i]->claim_here);
    pool__retention_enforce(p, clock_now_ms());
    return 0;
}

/* Replays: each key's job as it is now (this node's copy, else the database's). */
static int fetch_replays(struct pool *p, const struct store_keyed_job *kj, size_t n,
                         struct job_view *views_out, unsigned char *replayed, size_t *bad)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (kj[i].outcome != STORE_KEY_SAME)
            continue;
        rc = pool_job_get(p, kj[i].job_id, &views_out[i]);
        rc = rc == -ENOENT || rc == -ENOBUFS ? -ESTALE : rc; /* removed since */
        replayed[i] = rc == 0;
        if (rc != 0)
            *bad = i;
    }
    for (size_t i = 0; rc != 0 && i < n; i++)
        if (replayed[i])
            job_view_release(&views_out[i]), replayed[i] = 0;
    return rc;
}

/* pool_submit_keyed on a shared store with keys: the limits and this node's share are
 * settled under the lock, every job and key go to the database in one transaction
 * (store_submit_keyed), then the new jobs are queued under the lock as the database
 * has them. No store_sync: that transaction was the commit. jobs[i] is freed here when
 * it was not queued. */
static int submit_shared(struct pool *p, struct job **jobs, size_t n, struct submission *s,
                         struct job_view *views_out, unsigned char *replayed, size_t *bad)
{
    struct store_keyed_job *kj = calloc(n, sizeof(*kj));
    struct job **dropped = calloc(n, sizeof(*dropped));
    int rc = kj && dropped ? 0 : -ENOMEM;
    memset(replayed, 0, n);
    if (rc == 0) {
        pthread_mutex_lock(&p->lock);
        rc = p->stopping || p->draining ? -ESHUTDOWN : place(p, jobs, n);
        pthread_mutex_unlock(&p->lock);
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        kj[i].v = &jobs[i]->v, kj[i].spec = &jobs[i]->spec;
    if (rc == 0)
        rc = store_submit_keyed(p->cfg.store, kj, n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (kj[i].outcome == STORE_KEY_OTHER || kj[i].outcome == STORE_KEY_GONE) {
            rc = kj[i].outcome == STORE_KEY_OTHER ? -EKEYREJECTED : -ESTALE;
            *bad = i; /* nothing was inserted */
        }
    if (rc == 0)
        rc = fetch_replays(p, kj, n, views_out, replayed, bad);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (kj[i].outcome == STORE_KEY_NEW)
            s->fresh[s->m] = jobs[i], s->at[s->m++] = i;
    if (rc == 0 && s->m) {
        /* In the database now: queued here even if the pool began to stop meanwhile
         * (its jobs claimed here go back to the queue as it stops). */
        pthread_mutex_lock(&p->lock);
        rc = queue_placed(p, s, views_out, dropped);
        pthread_mutex_unlock(&p->lock);
        for (size_t i = 0; rc != 0 && i < n; i++)
            if (replayed[i])
                job_view_release(&views_out[i]), replayed[i] = 0;
        if (rc == 0)
            pool__wake(p);
    }
    for (size_t i = 0; i < n; i++) /* what was not queued: replays, failures, dropped */
        if (rc != 0 || kj[i].outcome != STORE_KEY_NEW)
            pool__job_free(jobs[i]);
    for (size_t k = 0; rc == 0 && k < s->m; k++)
        pool__job_free(dropped[k]);
    free(kj);
    free(dropped);
    return rc;
}

int pool_submit_keyed(struct pool *p, const struct job_spec *specs, size_t n,
                      struct job_view *views_out, unsigned char *replayed, size_t *bad_index)
{
    if (n == 0)
        return 0;
    size_t nkeys = 0;
    for (size_t i = 0; i < n; i++)
        nkeys += specs[i].idem_key != NULL;
    int shared = pool__shared(p);
    if (shared && !store_available(p->cfg.store))
        return -ENOTCONN; /* nothing could be recorded: refuse now rather than lose it */
    struct job **jobs = calloc(n, sizeof(*jobs));
    struct submission s = {0};
    int rc = jobs ? build(p, specs, n, jobs, &s, nkeys) : -ENOMEM;
    uint64_t ticket = 0;
    if (rc == 0 && shared && nkeys) { /* two nodes agree on a key through the database */
        rc = submit_shared(p, jobs, n, &s, views_out, replayed, bad_index);
        goto out;
    }
    if (rc == 0) {
        pthread_mutex_lock(&p->lock);
        if (p->stopping || p->draining)
            rc = -ESHUTDOWN;
        else if (nkeys)
            rc = check_keys(p, specs, n, jobs, &s, views_out, replayed, &ticket, bad_index);
        else
            for (s.m = 0; s.m < n; s.m++)
                s.fresh[s.m] = jobs[s.m], s.at[s.m] = s.m, replayed[s.m] = 0;
        if (rc == 0 && (rc = queue_fresh(p, &s, views_out, &ticket)) != 0)
            for (size_t i = 0; i < n; i++)
                if (replayed[i])
                    job_view_release(&views_out[i]), replayed[i] = 0;
        pthread_mutex_unlock(&p->lock);
    }
    int filled = rc == 0; /* views_out holds every job */
    if (rc == 0 && s.m)
        pool__wake(p);
    /* What was not queued is ours to free: everything on failure, replays' records. */
    for (size_t i = 0; jobs && i < n; i++)
        if (!filled || replayed[i])
            pool__job_free(jobs[i]);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (s.fill[i] && (rc = pool__results_fill(p, views_out[i].id, &views_out[i])) != 0)
            *bad_index = i;
    /* A 201 (or a replay's 200) means the jobs are on disk: wait for their commit. */
    if (rc == 0 && p->cfg.store && (s.m || ticket))
        rc = store_sync(p->cfg.store, ticket);
    if (rc != 0 && filled)
        for (size_t i = 0; i < n; i++)
            job_view_release(&views_out[i]);
out:
    for (size_t i = 0; s.keys && i < n; i++)
        free(s.keys[i]); /* NULL once remembered */
    free(jobs);
    free(s.fresh);
    free(s.at);
    free(s.fill);
    free(s.keys);
    return rc;
}

int pool_submit_batch(struct pool *p, const struct job_spec *specs, size_t n,
                      struct job_view *views_out)
{
    unsigned char *replayed = n ? calloc(n, 1) : NULL;
    size_t bad = 0;
    if (n && !replayed)
        return -ENOMEM;
    int rc = pool_submit_keyed(p, specs, n, views_out, replayed, &bad);
    free(replayed);
    return rc;
}

int pool_submit(struct pool *p, const struct job_spec *spec, struct job_view *view_out)
{
    unsigned char replayed = 0;
    size_t bad = 0;
    return pool_submit_keyed(p, spec, 1, view_out, &replayed, &bad);
}
