/*
 * pg_keys.c — idempotent submission on the shared store (store_submit_keyed) and the
 * deletion of expired keys.
 *
 * A keyed submission is one request (R_KEYED, carried by pg_request.c) whose segment
 * is one transaction: every job of the submission inserted as the writes' round
 * inserts it (pgs__send_insert: claimed by this node, or left in the queue), then the
 * keys taken (pg_sql_key_take: new keys, expired ones taken over; a key another node
 * is taking waits for that node's commit), then settled (pg_sql_key_settle: each key's
 * job read back; the jobs whose key names another job deleted again, or everything
 * when a key came with another request or names a removed job). So a key never names
 * a job that does not exist, whoever dies when, and two nodes agree on each key's job.
 * The pool's usual store_put of these jobs then writes nothing (pgs__keyed_put): the
 * job is committed, and may be claimed and updated by another node already, whose
 * open transaction a second INSERT ... ON CONFLICT would wait for (measured: two
 * nodes' groups of writes deadlocked that way).
 *
 * The caller waits without giving up: the store's thread answers every request, at
 * the latest when it drops a connection that stalls (STALL_MS); a request given up
 * could still commit jobs claimed by this node that no one here would then run.
 */
#include "pgstore.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"
#include "pyjobd/registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS_EXPIRE_EVERY_MS 5000
#define KEYS_EXPIRE_MAX 5000 /* keys deleted per round; a full round runs again soon */
#define KEYED_WAIT_MS (STALL_MS + SYNC_WAIT_MS)

struct keyed_job {
    struct wop *w; /* the job's insert, as the writes' round sends it */
    char *key;     /* NULL: a job without a key */
    uint8_t digest[JOB_IDEM_DIGEST_BYTES];
    int64_t expires_us;
    enum store_key_outcome outcome;
    char job_id[JOB_ID_LEN + 1];
};

struct keyed {
    size_t n, nkeys;
    struct keyed_job j[];
};

static void keyed_free(struct req *q)
{
    struct keyed *k = q->keyed;
    for (size_t i = 0; k && i < k->n; i++) {
        if (k->j[i].w)
            pgs__wop_free(k->j[i].w);
        free(k->j[i].key);
    }
    free(k);
    q->keyed = NULL;
}

/* --- arrays as parameters ------------------------------------------------------------------ */

/* An array literal of n text elements, each quoted ("..." with \ and " escaped):
 * malloc'd, NULL on ENOMEM. item(k, i) is the element of k->j[i]; jobs without a key
 * are skipped when keyed_only. */
typedef const char *(*item_fn)(const struct keyed_job *e, char *buf);

static char *array_of(const struct keyed *k, item_fn item, int keyed_only)
{
    size_t cap = 3;
    char buf[JOB_IDEM_DIGEST_BYTES * 2 + 1];
    for (size_t i = 0; i < k->n; i++)
        if (!keyed_only || k->j[i].key)
            cap += 2 * strlen(item(&k->j[i], buf)) + 3;
    char *out = malloc(cap), *p = out;
    if (!out)
        return NULL;
    *p++ = '{';
    for (size_t i = 0; i < k->n; i++) {
        if (keyed_only && !k->j[i].key)
            continue;
        if (p > out + 1)
            *p++ = ',';
        *p++ = '"';
        for (const char *c = item(&k->j[i], buf); *c; c++) {
            if (*c == '"' || *c == '\\')
                *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = 0;
    return out;
}

static const char *item_owner(const struct keyed_job *e, char *buf)
{
    (void)buf;
    return e->w->v.owner;
}

static const char *item_key(const struct keyed_job *e, char *buf)
{
    (void)buf;
    return e->key;
}

static const char *item_id(const struct keyed_job *e, char *buf)
{
    (void)buf;
    return e->w->v.id;
}

static const char *item_digest(const struct keyed_job *e, char *buf)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < JOB_IDEM_DIGEST_BYTES; i++) {
        buf[2 * i] = hex[e->digest[i] >> 4];
        buf[2 * i + 1] = hex[e->digest[i] & 15];
    }
    buf[2 * JOB_IDEM_DIGEST_BYTES] = 0;
    return buf;
}

static const char *item_expires(const struct keyed_job *e, char *buf)
{
    snprintf(buf, JOB_IDEM_DIGEST_BYTES * 2 + 1, "%lld", (long long)e->expires_us);
    return buf;
}

/* --- the request (the store's thread) ---------------------------------------------------- */

static int keyed_send(struct pg_store *s, struct seg *g, struct req *q)
{
    struct keyed *k = q->keyed;
    char node[JOB_NODE_MAX];
    pthread_mutex_lock(&s->lock);
    memcpy(node, s->node_id, sizeof(node)); /* the fence of what it claims */
    pthread_mutex_unlock(&s->lock);
    int failed = 0, unclaimed = 0, count = 0;
    for (size_t i = 0; i < k->n && !failed; i++, count++) {
        memcpy(k->j[i].w->node, node, sizeof(node));
        unclaimed |= !k->j[i].w->claimed;
        failed = pgs__send_insert(s, k->j[i].w) != 0;
    }
    if (!failed && unclaimed) /* delivered at commit: the other nodes may claim them */
        failed = pgs__send_notify(s, s->chan_queued, "") != 0, count++;
    char *owners = array_of(k, item_owner, 1), *keys = array_of(k, item_key, 1);
    char *digests = array_of(k, item_digest, 1), *mine = array_of(k, item_id, 1);
    char *expires = array_of(k, item_expires, 1), *all = array_of(k, item_id, 0);
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)clock_real_us());
    const char *take[6] = {owners, keys, digests, mine, expires, now};
    const char *settle[5] = {owners, keys, digests, mine, all};
    failed = failed || !owners || !keys || !digests || !mine || !expires || !all ||
             pg_conn_send(&s->pc, &pg_sql_key_take, 6, take, NULL, NULL, 0) ||
             pg_conn_send(&s->pc, &pg_sql_key_settle, 5, settle, NULL, NULL, 0);
    free(owners), free(keys), free(digests), free(mine), free(expires), free(all);
    g->ps.n = count + 2; /* the settle's rows are the last result */
    return failed;
}

/* Lock held. */
static void note_inserted(struct pg_store *s, const char *id)
{
    if (!s->keyed_ids)
        s->keyed_ids = registry_new();
    if (s->keyed_ids) /* else (ENOMEM) its put inserts it again: a no-op */
        registry_insert(s->keyed_ids, id, s);
}

uint64_t pgs__keyed_put(struct pg_store *s, const char *id, int claimed)
{
    uint64_t t = 0;
    pthread_mutex_lock(&s->lock);
    if (s->keyed_ids && registry_remove(s->keyed_ids, id)) {
        /* Committed already: a new ticket when every earlier one is committed too,
         * else the last committed (or the last sent: a put's 0 means it failed). */
        if (s->committed == s->next_ticket)
            s->committed = t = ++s->next_ticket;
        else
            t = s->committed ? s->committed : s->next_ticket;
    }
    pthread_mutex_unlock(&s->lock);
    if (t && !claimed)
        atomic_fetch_add(&s->queue_added, 1);
    return t;
}

void pgs__keyed_ids_free(struct pg_store *s)
{
    registry_free(s->keyed_ids);
    s->keyed_ids = NULL;
}

static int keyed_result(struct pg_store *s, struct seg *g, struct req *q)
{
    struct keyed *k = q->keyed;
    PGresult *r = g->ps.res[g->ps.n - 1];
    int rows = r ? PQntuples(r) : 0;
    if (!r || (size_t)rows != k->nkeys || PQnfields(r) != 4)
        return -EIO; /* a key not read back: never presume */
    /* Ordinals count the keyed jobs, in order. */
    size_t i = 0, ord = 0;
    int bad = 0;
    for (int row = 0; row < rows; row++) {
        long long want = atoll(PQgetvalue(r, row, 0));
        while (i < k->n && (!k->j[i].key || (long long)++ord != want))
            i++;
        if (i == k->n || PQgetlength(r, row, 1) != JOB_ID_LEN)
            return -EIO;
        struct keyed_job *e = &k->j[i++];
        memcpy(e->job_id, PQgetvalue(r, row, 1), JOB_ID_LEN + 1);
        int same = PQgetvalue(r, row, 2)[0] == 't', live = PQgetvalue(r, row, 3)[0] == 't';
        if (strcmp(e->job_id, e->w->v.id) == 0)
            e->outcome = STORE_KEY_NEW;
        else
            e->outcome = !same ? STORE_KEY_OTHER : live ? STORE_KEY_SAME : STORE_KEY_GONE;
        bad |= e->outcome == STORE_KEY_OTHER || e->outcome == STORE_KEY_GONE;
    }
    pthread_mutex_lock(&s->lock);
    for (i = 0; !bad && i < k->n; i++)
        if (!k->j[i].key || k->j[i].outcome == STORE_KEY_NEW)
            note_inserted(s, k->j[i].w->v.id);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* --- the call (another thread) ----------------------------------------------------------- */

static const struct req_ops keyed_ops = {keyed_send, keyed_result, keyed_free};

static struct keyed *keyed_new(const struct store_keyed_job *jobs, size_t n)
{
    struct keyed *k = calloc(1, sizeof(*k) + n * sizeof(k->j[0]));
    if (!k)
        return NULL;
    k->n = n;
    for (size_t i = 0; i < n; i++) {
        struct keyed_job *e = &k->j[i];
        const struct job_spec *spec = jobs[i].spec;
        struct wop *w = e->w = calloc(1, sizeof(*w));
        if (!w || job_view_copy(&w->v, jobs[i].v) != 0) {
            free(w);
            e->w = NULL;
            goto fail;
        }
        w->kind = W_INSERT;
        w->claimed = jobs[i].v->node[0] != 0;
        job_spec_ref_payload(&w->spec, spec);
        if (spec->idem_key) {
            if (!(e->key = strdup(spec->idem_key)))
                goto fail;
            memcpy(e->digest, spec->idem_digest, sizeof(e->digest));
            e->expires_us = spec->idem_expires_us;
            k->nkeys++;
        }
    }
    return k;
fail:
    keyed_free(&(struct req){.keyed = k});
    return NULL;
}

int pgs__submit_keyed(struct store *base, struct store_keyed_job *jobs, size_t n)
{
    struct pg_store *s = (struct pg_store *)base;
    struct req *q = pgs__req_new(R_KEYED, &keyed_ops, NULL);
    if (!q || !(q->keyed = keyed_new(jobs, n))) {
        free(q);
        return -ENOMEM;
    }
    if (!q->keyed->nkeys) {
        pgs__req_free(q);
        return -EINVAL;
    }
    int rc = pgs__request(s, q, KEYED_WAIT_MS);
    if (rc == -ETIMEDOUT) {
        /* q is the thread's now (see the top of this file) */
        log_error("store: a keyed submission got no answer in %d ms", KEYED_WAIT_MS);
        return rc;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        jobs[i].outcome = q->keyed->j[i].outcome;
        memcpy(jobs[i].job_id, q->keyed->j[i].job_id, JOB_ID_LEN + 1);
    }
    pgs__req_free(q);
    return rc;
}

/* --- expired keys -------------------------------------------------------------------------- */

static void expire_done(struct pg_store *s, struct seg *g, int ok)
{
    s->keys_inflight = 0;
    PGresult *r = ok == 1 ? g->ps.res[0] : NULL;
    long deleted = r && PQntuples(r) == 1 ? atol(PQgetvalue(r, 0, 0)) : 0;
    if (ok == 0)
        log_warn("store: deleting expired Idempotency-Keys failed: %s", g->ps.errmsg);
    if (deleted >= KEYS_EXPIRE_MAX) /* more are due: catch up */
        s->next_keys_ms = clock_now_ms() + 100;
}

void pgs__round_keys_expire(struct pg_store *s, int64_t now)
{
    s->next_keys_ms = now + KEYS_EXPIRE_EVERY_MS;
    struct seg *g = pgs__seg_new(s, expire_done);
    if (!g)
        return;
    char now_us[24], most[16];
    snprintf(now_us, sizeof(now_us), "%lld", (long long)clock_real_us());
    snprintf(most, sizeof(most), "%d", KEYS_EXPIRE_MAX);
    const char *vals[2] = {now_us, most};
    g->ps.n = 1;
    s->keys_inflight = 1;
    pgs__send_or_lose(s, g, pg_conn_send(&s->pc, &pg_sql_key_expire, 2, vals, NULL, NULL, 0) != 0);
}
