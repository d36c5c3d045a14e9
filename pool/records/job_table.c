/*
 * job_table.c — the records this node holds: by id (the registry), every one in
 * creation order (listing, newest first), the queue (queue.c), and the done list
 * (finished jobs in the order they finished, so retention only looks at its head), and
 * the held list (those of them holding results in memory, with the bytes they hold, so
 * that --max-results-memory only looks at its head).
 * Membership flags say which lists a record is on; removal takes it off all of them.
 */
#include "records.h"
#include "pyjobd/registry.h"

#include <errno.h>
#include <stdlib.h>

int pool__table_init(struct job_table *t, size_t tombstones)
{
    TAILQ_INIT(&t->all);
    pool__queue_init(&t->q);
    TAILQ_INIT(&t->done);
    TAILQ_INIT(&t->held);
    t->results_bytes = 0;
    t->nqueued = 0;
    t->nscheduled = 0;
    t->timers = (struct heap){0};
    t->next_seq = 0;
    t->by_id = registry_new();
    if (!t->by_id || pool__tombstones_init(&t->expired, tombstones) != 0) {
        registry_free(t->by_id);
        t->by_id = NULL;
        return -ENOMEM;
    }
    return 0;
}

void pool__table_free(struct job_table *t)
{
    struct job *j;
    while ((j = TAILQ_FIRST(&t->all))) {
        pool__table_remove(t, j, 0);
        pool__job_free(j);
    }
    registry_free(t->by_id);
    t->by_id = NULL;
    pool__tombstones_free(&t->expired);
    pool__queue_free(&t->q);
    heap_free(&t->timers);
}

int pool__table_insert(struct job_table *t, struct job *j)
{
    int rc = registry_insert(t->by_id, j->v.id, j);
    if (rc != 0)
        return rc;
    if (!j->seq)
        j->seq = ++t->next_seq;
    else if (j->seq > t->next_seq)
        t->next_seq = j->seq;
    TAILQ_INSERT_TAIL(&t->all, j, all_link);
    j->in_table = 1;
    return 0;
}

struct job *pool__table_find(const struct job_table *t, const char *id, int *err)
{
    struct job *j = registry_find(t->by_id, id);
    if (!j) {
        enum job_gone why = pool__tombstones_find(&t->expired, id);
        *err = why == JOB_GONE_RESULTS ? -ENOBUFS : why ? -ESTALE : -ENOENT;
    }
    return j;
}

void pool__table_remove(struct job_table *t, struct job *j, enum job_gone gone)
{
    if (!j->in_table)
        return;
    registry_remove(t->by_id, j->v.id);
    TAILQ_REMOVE(&t->all, j, all_link);
    j->in_table = 0;
    pool__queue_remove(t, j);
    pool__done_remove(t, j);
    pool__timer_clear(t, j);
    pool__scheduled_uncount(t, j);
    if (gone != JOB_GONE_FORGOTTEN)
        pool__tombstones_add(&t->expired, j->v.id, gone);
}

void pool__scheduled_uncount(struct job_table *t, struct job *j)
{
    if (j->counted_scheduled)
        t->nscheduled--;
    j->counted_scheduled = 0;
}

size_t pool__table_count(const struct job_table *t)
{
    return registry_count(t->by_id);
}

static void held_remove(struct job_table *t, struct job *j)
{
    if (!j->held_bytes)
        return;
    TAILQ_REMOVE(&t->held, j, held_link);
    t->results_bytes -= j->held_bytes;
    j->held_bytes = 0;
}

void pool__done_add(struct job_table *t, struct job *j, int64_t finished_ms)
{
    pool__done_remove(t, j);
    j->finished_ms = finished_ms;
    TAILQ_INSERT_TAIL(&t->done, j, done_link);
    j->done = 1;
    if ((j->held_bytes = pool__job_result_bytes(j))) {
        TAILQ_INSERT_TAIL(&t->held, j, held_link);
        t->results_bytes += j->held_bytes;
    }
}

void pool__done_remove(struct job_table *t, struct job *j)
{
    if (!j->done)
        return;
    held_remove(t, j);
    TAILQ_REMOVE(&t->done, j, done_link);
    j->done = 0;
}

struct job *pool__done_first(const struct job_table *t)
{
    return TAILQ_FIRST(&t->done);
}

struct job *pool__held_first(const struct job_table *t)
{
    return TAILQ_FIRST(&t->held);
}

void pool__held_drop(struct job_table *t, struct job *j)
{
    held_remove(t, j);
    pool__job_drop_results(j);
}
