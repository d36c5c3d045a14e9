/*
 * store.c — the calls of include/pyjobd/store.h and include/pyjobd/store_shared.h,
 * dispatched through the store's function table (store_impl.h) to its
 * implementation: SQLite, PostgreSQL, or a test's fake.
 *
 * A single-node store has no shared entries, and a pool without a store passes NULL
 * to the shared calls: both get the single-node answers here (the database is always
 * available, the lease always fresh, nothing is queued elsewhere, there is no node
 * id, and claiming, watching, asking and event callbacks are no-ops).
 */
#include "store_impl.h"

#include <errno.h>
#include <stdlib.h>

void store_close(struct store *s)
{
    if (s)
        s->ops->close(s);
}

int store_load(struct store *s, store_load_cb cb, void *arg, char *err, size_t errlen)
{
    return s->ops->load(s, cb, arg, err, errlen);
}

uint64_t store_put_schedule(struct store *s, const struct store_schedule *sc)
{
    return s && s->ops->put_schedule ? s->ops->put_schedule(s, sc) : 0;
}

uint64_t store_delete_schedule(struct store *s, const char *id)
{
    return s && s->ops->delete_schedule ? s->ops->delete_schedule(s, id) : 0;
}

int store_load_schedules(struct store *s, store_schedule_cb cb, void *arg)
{
    return s && s->ops->load_schedules ? s->ops->load_schedules(s, cb, arg) : -ENOTSUP;
}

int store_load_keys(struct store *s, store_key_cb cb, void *arg)
{
    return s->ops->load_keys ? s->ops->load_keys(s, cb, arg) : -ENOTSUP;
}

uint64_t store_put(struct store *s, const struct job_view *v, const struct job_spec *spec,
                   uint64_t seq, unsigned flags)
{
    return s->ops->put(s, v, spec, seq, flags);
}

uint64_t store_delete(struct store *s, const char *id)
{
    return s->ops->del(s, id);
}

int store_sync(struct store *s, uint64_t ticket)
{
    return s->ops->sync(s, ticket);
}

int store_committed(struct store *s, uint64_t ticket)
{
    return !ticket || !s->ops->committed || s->ops->committed(s, ticket);
}

uint64_t store_started(struct store *s, const struct job_view *v, uint64_t ticket)
{
    return s->ops->started ? s->ops->started(s, v, ticket) : ticket;
}

void store_on_commit(struct store *s, void (*fn)(void *arg), void *arg)
{
    if (s->ops->on_commit)
        s->ops->on_commit(s, fn, arg);
}

int store_read_request(struct store *s, const char *id, struct job_spec *spec)
{
    return s && s->ops->read_request ? s->ops->read_request(s, id, spec) : -ENOTSUP;
}

int store_read_results(struct store *s, const char *id, struct job_view *v)
{
    return s && s->ops->read_results ? s->ops->read_results(s, id, v) : -ENOTSUP;
}

const char *store_describe(const struct store *s)
{
    return s->ops->describe(s);
}

int store_is_shared(const struct store *s)
{
    return s && s->ops->shared;
}

/* --- shared-store calls ------------------------------------------------------------------ */

void store_set_events(struct store *s, const struct store_events *ev, void *arg)
{
    if (s && s->ops->set_events)
        s->ops->set_events(s, ev, arg);
}

void store_want(struct store *s, unsigned n)
{
    if (s && s->ops->want)
        s->ops->want(s, n);
}

int store_available(struct store *s)
{
    return s && s->ops->available ? s->ops->available(s) : 1;
}

size_t store_queued(struct store *s)
{
    return s && s->ops->queued ? s->ops->queued(s) : 0;
}

int store_lease_fresh(struct store *s)
{
    return s && s->ops->lease_fresh ? s->ops->lease_fresh(s) : 1;
}

void store_node_id(struct store *s, char out[JOB_NODE_MAX])
{
    out[0] = 0;
    if (s && s->ops->node_id)
        s->ops->node_id(s, out);
}

/* The pool reads other nodes' jobs only from a shared store (pool__elsewhere); what a
 * single-node store answers below is what these calls always answered without one. */

int store_finished_requests(struct store *s, const struct pool_rerun_filter *f, size_t max,
                            struct job_view **views, struct job_spec **specs, size_t *n)
{
    *n = 0;
    return s && s->ops->finished_requests ? s->ops->finished_requests(s, f, max, views, specs, n)
                                          : -ENOTSUP;
}

int store_fetch(struct store *s, const char *id, struct job_view *out)
{
    return s && s->ops->fetch ? s->ops->fetch(s, id, out) : -ENOENT;
}

int store_fetch_many(struct store *s, char (*ids)[JOB_ID_LEN + 1], size_t n, struct job_view *out,
                     int *found)
{
    return s && s->ops->fetch_many ? s->ops->fetch_many(s, ids, n, out, found) : -ENOMEM;
}

int store_list(struct store *s, const struct pool_list_query *q, struct job_view **out, size_t *n,
               uint64_t *next)
{
    return s && s->ops->list ? s->ops->list(s, q, out, n, next) : -ENOMEM;
}

int store_cancel(struct store *s, const char *id, int *status, char *node)
{
    return s && s->ops->cancel ? s->ops->cancel(s, id, status, node) : -ENOMEM;
}

void store_ask_cancel(struct store *s, const char *node, const char *id, int force, double grace)
{
    if (s && s->ops->ask_cancel)
        s->ops->ask_cancel(s, node, id, force, grace);
}

int store_forget(struct store *s, const char *id)
{
    return s && s->ops->forget ? s->ops->forget(s, id) : -ENOMEM;
}

void store_watch(struct store *s, const char *id)
{
    if (s && s->ops->watch)
        s->ops->watch(s, id);
}

/* --- recurring schedules on a shared store ------------------------------------------------ */

void store_set_schedule_events(struct store *s, const struct store_schedule_events *ev, void *arg)
{
    if (s && s->ops->set_schedule_events)
        s->ops->set_schedule_events(s, ev, arg);
}

int store_schedule_tick(struct store *s, const char *id, int64_t tick_us, const struct job_view *v,
                        const struct job_spec *spec)
{
    return s && s->ops->schedule_tick ? s->ops->schedule_tick(s, id, tick_us, v, spec) : -ENOTSUP;
}

int store_schedule_create(struct store *s, const struct store_schedule *sc, size_t tenant_max,
                          size_t max)
{
    return s && s->ops->schedule_create ? s->ops->schedule_create(s, sc, tenant_max, max)
                                        : -ENOTSUP;
}

int store_schedule_read(struct store *s, const char *id, const char *owner,
                        struct store_schedule **rows, size_t *n)
{
    *rows = NULL;
    *n = 0;
    return s && s->ops->schedule_read ? s->ops->schedule_read(s, id, owner, rows, n) : -ENOTSUP;
}

int store_schedule_delete(struct store *s, const char *id, const char *owner)
{
    return s && s->ops->schedule_delete ? s->ops->schedule_delete(s, id, owner) : -ENOTSUP;
}

/* Rows a store read for its caller: their strings and bytes are the caller's. */
void store_schedules_free(struct store_schedule *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++) {
        free((void *)rows[i].job);
        free((void *)rows[i].cron);
        free((void *)rows[i].timezone);
    }
    free(rows);
}

int store_submit_keyed(struct store *s, struct store_keyed_job *jobs, size_t n)
{
    return s && s->ops->submit_keyed ? s->ops->submit_keyed(s, jobs, n) : -ENOTSUP;
}
