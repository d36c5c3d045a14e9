/*
 * queue.c — the jobs waiting for a worker: per tenant a FIFO per priority present, and
 * the tenants that have queued jobs in the order of their turns, so that one tenant's
 * 10,000 queued jobs do not stand before another tenant's next one; priority only
 * orders a tenant's own jobs. A tenant's levels are kept highest first and exist only
 * while they hold jobs: since most jobs share a priority, a push finds its level in a
 * step or two and the next job is the first level's head, without sorting anything.
 * A tenant record stays once made (there are as many as names in the token file); it
 * also counts its running jobs, for --tenant-max-running. Lookups by name are linear
 * in the number of tenants.
 */
#include "records.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void pool__queue_init(struct job_queue *q)
{
    TAILQ_INIT(&q->tenants);
    TAILQ_INIT(&q->turns);
    q->n = 0;
}

void pool__queue_free(struct job_queue *q)
{
    struct tenant *tn;
    while ((tn = TAILQ_FIRST(&q->tenants))) {
        TAILQ_REMOVE(&q->tenants, tn, link);
        struct prio_level *l;
        while ((l = TAILQ_FIRST(&tn->levels))) {
            TAILQ_REMOVE(&tn->levels, l, link);
            free(l);
        }
        free(tn);
    }
    TAILQ_INIT(&q->turns);
}

struct tenant *pool__tenant_find(const struct job_table *t, const char *name)
{
    struct tenant *tn;
    TAILQ_FOREACH(tn, &t->q.tenants, link)
    if (strcmp(tn->name, name) == 0)
        return tn;
    return NULL;
}

struct tenant *pool__tenant_of(struct job_table *t, struct job *j)
{
    if (j->tenant)
        return j->tenant;
    struct tenant *tn = pool__tenant_find(t, j->v.owner);
    if (!tn && (tn = calloc(1, sizeof(*tn)))) {
        memcpy(tn->name, j->v.owner, sizeof(tn->name));
        tn->name[sizeof(tn->name) - 1] = 0;
        TAILQ_INIT(&tn->levels);
        TAILQ_INSERT_TAIL(&t->q.tenants, tn, link);
    }
    return j->tenant = tn;
}

/* tn's level of priority, made (in order) when absent; NULL on ENOMEM. */
static struct prio_level *level_of(struct tenant *tn, int priority)
{
    struct prio_level *l;
    TAILQ_FOREACH(l, &tn->levels, link)
    {
        if (l->priority == priority)
            return l;
        if (l->priority < priority)
            break;
    }
    struct prio_level *nl = malloc(sizeof(*nl));
    if (!nl)
        return NULL;
    nl->priority = priority;
    TAILQ_INIT(&nl->jobs);
    if (l)
        TAILQ_INSERT_BEFORE(l, nl, link);
    else
        TAILQ_INSERT_TAIL(&tn->levels, nl, link);
    return nl;
}

static int push(struct job_table *t, struct job *j, int front)
{
    struct tenant *tn = pool__tenant_of(t, j);
    struct prio_level *l = tn ? level_of(tn, j->v.priority) : NULL;
    if (!l)
        return -ENOMEM; /* not queued (pool__queue_first never sees it) */
    if (front)
        TAILQ_INSERT_HEAD(&l->jobs, j, queue_link);
    else
        TAILQ_INSERT_TAIL(&l->jobs, j, queue_link);
    j->level = l;
    tn->queued++;
    if (!tn->in_turn) {
        /* A retried job goes first, in its tenant's turn and in the turns. */
        if (front)
            TAILQ_INSERT_HEAD(&t->q.turns, tn, turn_link);
        else
            TAILQ_INSERT_TAIL(&t->q.turns, tn, turn_link);
        tn->in_turn = 1;
    }
    j->queued = 1;
    t->q.n++;
    t->nqueued++;
    return 0;
}

int pool__queue_push(struct job_table *t, struct job *j)
{
    return push(t, j, 0);
}

int pool__queue_push_front(struct job_table *t, struct job *j)
{
    return push(t, j, 1);
}

void pool__queue_remove(struct job_table *t, struct job *j)
{
    if (!j->queued)
        return;
    struct tenant *tn = j->tenant;
    struct prio_level *l = j->level;
    TAILQ_REMOVE(&l->jobs, j, queue_link);
    if (TAILQ_EMPTY(&l->jobs)) {
        TAILQ_REMOVE(&tn->levels, l, link);
        free(l);
    }
    j->level = NULL;
    tn->queued--;
    if (!tn->queued && tn->in_turn) {
        TAILQ_REMOVE(&t->q.turns, tn, turn_link);
        tn->in_turn = 0;
    }
    j->queued = 0;
    t->q.n--;
    t->nqueued--;
}

struct job *pool__tenant_first(const struct tenant *tn)
{
    const struct prio_level *l = TAILQ_FIRST(&tn->levels);
    return l ? TAILQ_FIRST(&l->jobs) : NULL;
}

struct job *pool__queue_first(const struct job_table *t)
{
    struct tenant *tn = TAILQ_FIRST(&t->q.turns);
    return tn ? pool__tenant_first(tn) : NULL;
}

struct tenant *pool__turn_first(const struct job_table *t)
{
    return TAILQ_FIRST(&t->q.turns);
}

void pool__turn_served(struct job_table *t, struct tenant *tn)
{
    if (!tn->in_turn)
        return;
    TAILQ_REMOVE(&t->q.turns, tn, turn_link);
    TAILQ_INSERT_TAIL(&t->q.turns, tn, turn_link);
}
