/*
 * pg_seg.c — what every round of the PostgreSQL store builds on: segments that carry
 * their result handler, sending one (or losing the connection), NOTIFY statements,
 * '{id,...}' arrays, waking the store's thread, and this node's id.
 *
 * It sits below the rounds (pg_writes.c, pg_claims.c, pg_membership.c, pg_requests.c)
 * and above the connection (pg_conn.c): the rounds call down into it, it calls no
 * round and nothing of store_pg.c.
 */
#include "pgstore.h"
#include "pyjobd/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

void pgs__poke(struct pg_store *s)
{
    uint64_t one = 1;
    ssize_t r = write(s->wakefd, &one, sizeof(one));
    (void)r;
}

void pgs__events_done(struct pg_store *s)
{
    pthread_mutex_lock(&s->lock);
    s->in_events--;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void pgs__new_node_id(struct pg_store *s)
{
    unsigned char raw[4];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        memset(raw, 0, sizeof(raw));
    snprintf(s->node_id, sizeof(s->node_id), "%s-%02x%02x%02x%02x", s->node_name, raw[0], raw[1],
             raw[2], raw[3]);
}

/* --- segments ------------------------------------------------------------------------------ */

static void seg_done(void *ctx, struct pg_seg *ps, int ok)
{
    struct seg *g = ctx;
    (void)ps;
    g->handle(g->s, g, ok);
    pg_seg_clear(&g->ps);
    free(g);
}

struct seg *pgs__seg_new(struct pg_store *s, void (*handle)(struct pg_store *, struct seg *, int))
{
    struct seg *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->s = s;
    g->handle = handle;
    g->ps.done = seg_done;
    g->ps.ctx = g;
    return g;
}

void pgs__send_or_lose(struct pg_store *s, struct seg *g, int failed)
{
    if (failed || pg_conn_sync(&s->pc, &g->ps) != 0) {
        if (failed) { /* never queued: report it directly */
            g->handle(s, g, -1);
            pg_seg_clear(&g->ps);
            free(g);
        }
        pg_conn_lost(&s->pc, NULL, clock_now_ms());
    }
}

/* --- statements every round uses ----------------------------------------------------------- */

int pgs__send_notify(struct pg_store *s, const char *chan, const char *payload)
{
    const char *vals[2] = {chan, payload};
    return pg_conn_send(&s->pc, &pg_sql_notify, 2, vals, NULL, NULL, 0);
}

char *pgs__id_array(char (*ids)[JOB_ID_LEN + 1], size_t from, size_t to)
{
    char *a = malloc((to - from) * (JOB_ID_LEN + 1) + 3);
    if (!a)
        return NULL;
    char *p = a;
    *p++ = '{';
    for (size_t i = from; i < to; i++) {
        if (i > from)
            *p++ = ',';
        memcpy(p, ids[i], JOB_ID_LEN);
        p += JOB_ID_LEN;
    }
    *p++ = '}';
    *p = 0;
    return a;
}
