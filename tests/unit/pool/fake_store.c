/*
 * fake_store.c — a shared store in memory (see fake_store.h). One lock guards
 * everything; it is never held while a pool callback runs, as with a real store.
 * Allocation failures abort: this is a test's helper.
 */
#include "fake_store.h"
#include "pool/store/store_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fake_write {
    char id[JOB_ID_LEN + 1];
    int deleted;
    unsigned flags;
    struct job_view v; /* a put's copy of the view */
};

struct fake_store {
    struct store base;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a write or a want arrived */
    struct fake_write *writes;
    size_t nwrites, capwrites;
    struct job_view *rows; /* the "database", oldest first */
    size_t nrows, caprows;
    uint64_t ticket;
    unsigned want;
    size_t fetches, watches;
    struct store_events ev;
    void *ev_arg;
    /* fake_store_hold_commits: writes after held_from are not committed yet. */
    int holding;
    uint64_t held_from;
    void (*on_commit)(void *arg);
    void *on_commit_arg;
};

static struct fake_store *fake_of(struct store *s)
{
    return (struct fake_store *)s;
}

static void *grow(void *items, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return items;
    *cap = *cap ? *cap * 2 : 16;
    items = realloc(items, *cap * size);
    if (!items)
        abort();
    return items;
}

static void copy_view(struct job_view *dst, const struct job_view *src)
{
    if (job_view_copy(dst, src) != 0)
        abort();
}

/* Lock held. */
static struct job_view *row_find(struct fake_store *f, const char *id)
{
    for (size_t i = 0; i < f->nrows; i++)
        if (strcmp(f->rows[i].id, id) == 0)
            return &f->rows[i];
    return NULL;
}

/* Lock held. */
static void row_set(struct fake_store *f, const struct job_view *v)
{
    struct job_view *row = row_find(f, v->id);
    if (row) {
        job_view_release(row);
    } else {
        f->rows = grow(f->rows, &f->caprows, f->nrows, sizeof(*f->rows));
        row = &f->rows[f->nrows++];
    }
    copy_view(row, v);
}

/* Lock held. */
static void row_remove(struct fake_store *f, const char *id)
{
    struct job_view *row = row_find(f, id);
    if (!row)
        return;
    job_view_release(row);
    size_t i = (size_t)(row - f->rows);
    memmove(&f->rows[i], &f->rows[i + 1], (f->nrows - i - 1) * sizeof(*f->rows));
    f->nrows--;
}

/* --- store.h ------------------------------------------------------------------------------ */

static void fake_close(struct store *s)
{
    struct fake_store *f = fake_of(s);
    for (size_t i = 0; i < f->nwrites; i++)
        job_view_release(&f->writes[i].v);
    for (size_t i = 0; i < f->nrows; i++)
        job_view_release(&f->rows[i]);
    free(f->writes);
    free(f->rows);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->changed);
    free(f);
}

static int fake_load(struct store *s, store_load_cb cb, void *arg, char *err, size_t errlen)
{
    (void)s, (void)cb, (void)arg, (void)err, (void)errlen;
    return 0; /* a shared store's jobs are claimed, not recovered */
}

static uint64_t record(struct fake_store *f, const char *id, const struct job_view *v,
                       unsigned flags)
{
    pthread_mutex_lock(&f->lock);
    f->writes = grow(f->writes, &f->capwrites, f->nwrites, sizeof(*f->writes));
    struct fake_write *w = &f->writes[f->nwrites++];
    memset(w, 0, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", id);
    w->flags = flags;
    w->deleted = v == NULL;
    if (v) {
        copy_view(&w->v, v);
        row_set(f, v);
    } else {
        row_remove(f, id);
    }
    uint64_t t = ++f->ticket;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
    return t;
}

static uint64_t fake_put(struct store *s, const struct job_view *v, const struct job_spec *spec,
                         uint64_t seq, unsigned flags)
{
    (void)spec, (void)seq;
    return record(fake_of(s), v->id, v, flags);
}

static uint64_t fake_delete(struct store *s, const char *id)
{
    return record(fake_of(s), id, NULL, 0);
}

static int fake_sync(struct store *s, uint64_t ticket)
{
    (void)s;
    return ticket ? 0 : -ENOMEM; /* committed as soon as written */
}

static int fake_committed(struct store *s, uint64_t ticket)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    int done = !f->holding || ticket <= f->held_from;
    pthread_mutex_unlock(&f->lock);
    return done;
}

static void fake_on_commit(struct store *s, void (*fn)(void *arg), void *arg)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    f->on_commit = fn;
    f->on_commit_arg = arg;
    pthread_mutex_unlock(&f->lock);
}

void fake_store_hold_commits(struct store *s)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    f->holding = 1;
    f->held_from = f->ticket;
    pthread_mutex_unlock(&f->lock);
}

void fake_store_commit_all(struct store *s)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    f->holding = 0;
    void (*fn)(void *) = f->on_commit;
    void *arg = f->on_commit_arg;
    pthread_mutex_unlock(&f->lock);
    if (fn)
        fn(arg);
}

static const char *fake_describe(const struct store *s)
{
    (void)s;
    return "fake shared store";
}

/* --- store_shared.h ----------------------------------------------------------------------- */

static void fake_set_events(struct store *s, const struct store_events *ev, void *arg)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    f->ev = *ev;
    f->ev_arg = arg;
    pthread_mutex_unlock(&f->lock);
}

static void fake_want(struct store *s, unsigned n)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    f->want = n;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
}

static int fake_available(struct store *s)
{
    (void)s;
    return 1;
}

static size_t fake_queued(struct store *s)
{
    (void)s;
    return 0;
}

static int fake_lease_fresh(struct store *s)
{
    (void)s;
    return 1;
}

static void fake_node_id(struct store *s, char out[JOB_NODE_MAX])
{
    (void)s;
    snprintf(out, JOB_NODE_MAX, "%s", FAKE_STORE_NODE);
}

static int fake_fetch(struct store *s, const char *id, struct job_view *out)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    f->fetches++;
    struct job_view *row = row_find(f, id);
    if (row)
        copy_view(out, row);
    pthread_mutex_unlock(&f->lock);
    return row ? 0 : -ENOENT;
}

static int fake_fetch_many(struct store *s, char (*ids)[JOB_ID_LEN + 1], size_t n,
                           struct job_view *out, int *found)
{
    for (size_t i = 0; i < n; i++)
        found[i] = fake_fetch(s, ids[i], &out[i]) == 0;
    return 0;
}

/* Newest first, filtered by status and owner; one page (next is 0). */
static int fake_list(struct store *s, const struct pool_list_query *q, struct job_view **out,
                     size_t *n, uint64_t *next)
{
    struct fake_store *f = fake_of(s);
    size_t limit = q->limit ? q->limit : 100;
    pthread_mutex_lock(&f->lock);
    struct job_view *views = calloc(f->nrows ? f->nrows : 1, sizeof(*views));
    if (!views)
        abort();
    size_t got = 0;
    for (size_t i = f->nrows; i-- > 0 && got < limit;) {
        const struct job_view *row = &f->rows[i];
        if ((q->status < 0 || (int)row->status == q->status) &&
            (!q->owner || strcmp(q->owner, row->owner) == 0))
            copy_view(&views[got++], row);
    }
    pthread_mutex_unlock(&f->lock);
    if (!got) {
        free(views);
        views = NULL;
    }
    *out = views;
    *n = got;
    *next = 0;
    return 0;
}

/* As on PostgreSQL: only a job no node has claimed is cancelled here. */
static int fake_cancel(struct store *s, const char *id, int *status, char *node)
{
    struct fake_store *f = fake_of(s);
    int rc = 0;
    pthread_mutex_lock(&f->lock);
    struct job_view *row = row_find(f, id);
    if (!row) {
        rc = -ENOENT;
    } else if (job_status_is_terminal(row->status) || row->node[0]) {
        *status = (int)row->status;
        snprintf(node, JOB_NODE_MAX, "%s", row->node);
        rc = job_status_is_terminal(row->status) ? -EALREADY : -EXDEV;
    } else {
        row->status = JOB_CANCELLED;
        clock_gettime(CLOCK_REALTIME, &row->finished_at);
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static void fake_ask_cancel(struct store *s, const char *node, const char *id, int force,
                            double grace)
{
    (void)s, (void)node, (void)id, (void)force, (void)grace;
}

static int fake_forget(struct store *s, const char *id)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    struct job_view *row = row_find(f, id);
    int rc = !row ? -ENOENT : !job_status_is_terminal(row->status) ? -EBUSY : 0;
    if (rc == 0)
        row_remove(f, id);
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static void fake_watch(struct store *s, const char *id)
{
    struct fake_store *f = fake_of(s);
    (void)id;
    pthread_mutex_lock(&f->lock);
    f->watches++;
    pthread_mutex_unlock(&f->lock);
}

static const struct store_ops fake_ops = {
    .close = fake_close,
    .load = fake_load,
    .put = fake_put,
    .del = fake_delete,
    .sync = fake_sync,
    .committed = fake_committed,
    .on_commit = fake_on_commit,
    .describe = fake_describe,
    .shared = 1,
    .set_events = fake_set_events,
    .want = fake_want,
    .available = fake_available,
    .queued = fake_queued,
    .lease_fresh = fake_lease_fresh,
    .node_id = fake_node_id,
    .fetch = fake_fetch,
    .fetch_many = fake_fetch_many,
    .list = fake_list,
    .cancel = fake_cancel,
    .ask_cancel = fake_ask_cancel,
    .forget = fake_forget,
    .watch = fake_watch,
};

struct store *fake_store_new(void)
{
    struct fake_store *f = calloc(1, sizeof(*f));
    if (!f)
        abort();
    f->base.ops = &fake_ops;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->changed, NULL);
    return &f->base;
}

/* --- the test's side ---------------------------------------------------------------------- */

size_t fake_store_writes(struct store *s)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    size_t n = f->nwrites;
    pthread_mutex_unlock(&f->lock);
    return n;
}

/* Lock held. The last put of id (in that status unless status < 0), or NULL. */
static const struct fake_write *last_put(struct fake_store *f, const char *id, int status)
{
    for (size_t i = f->nwrites; i-- > 0;) {
        const struct fake_write *w = &f->writes[i];
        if (!w->deleted && strcmp(w->id, id) == 0 && (status < 0 || (int)w->v.status == status))
            return w;
    }
    return NULL;
}

int fake_store_last_put(struct store *s, const char *id, struct job_view *v, unsigned *flags)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    const struct fake_write *w = last_put(f, id, -1);
    if (w) {
        copy_view(v, &w->v);
        if (flags)
            *flags = w->flags;
    }
    pthread_mutex_unlock(&f->lock);
    return w ? 0 : -ENOENT;
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

int fake_store_wait_put(struct store *s, const char *id, enum job_status status, int ms,
                        struct job_view *v)
{
    struct fake_store *f = fake_of(s);
    struct timespec until;
    deadline_in(&until, ms);
    pthread_mutex_lock(&f->lock);
    const struct fake_write *w;
    int timed_out = 0;
    while (!(w = last_put(f, id, (int)status)) && !timed_out)
        timed_out = pthread_cond_timedwait(&f->changed, &f->lock, &until) == ETIMEDOUT;
    if (w)
        copy_view(v, &w->v);
    pthread_mutex_unlock(&f->lock);
    return w ? 0 : -ETIMEDOUT;
}

unsigned fake_store_want(struct store *s)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    unsigned n = f->want;
    pthread_mutex_unlock(&f->lock);
    return n;
}

int fake_store_wait_want(struct store *s, unsigned n, int ms)
{
    struct fake_store *f = fake_of(s);
    struct timespec until;
    deadline_in(&until, ms);
    pthread_mutex_lock(&f->lock);
    int timed_out = 0;
    while (f->want != n && !timed_out)
        timed_out = pthread_cond_timedwait(&f->changed, &f->lock, &until) == ETIMEDOUT;
    int ok = f->want == n;
    pthread_mutex_unlock(&f->lock);
    return ok ? 0 : -ETIMEDOUT;
}

size_t fake_store_fetches(struct store *s)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    size_t n = f->fetches;
    pthread_mutex_unlock(&f->lock);
    return n;
}

size_t fake_store_watches(struct store *s)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    size_t n = f->watches;
    pthread_mutex_unlock(&f->lock);
    return n;
}

void fake_store_set_row(struct store *s, const struct job_view *v)
{
    struct fake_store *f = fake_of(s);
    pthread_mutex_lock(&f->lock);
    row_set(f, v);
    pthread_mutex_unlock(&f->lock);
}

/* The pool's callbacks, read under the lock and called without it. */
static struct store_events events(struct fake_store *f, void **arg)
{
    pthread_mutex_lock(&f->lock);
    struct store_events ev = f->ev;
    *arg = f->ev_arg;
    pthread_mutex_unlock(&f->lock);
    return ev;
}

void fake_store_claim(struct store *s, struct job_view *v, struct job_spec *spec)
{
    void *arg;
    struct store_events ev = events(fake_of(s), &arg);
    if (!ev.claimed)
        abort(); /* no pool on this store */
    ev.claimed(arg, v, spec);
}

void fake_store_commit(struct store *s, const char *id)
{
    void *arg;
    struct store_events ev = events(fake_of(s), &arg);
    char ids[1][JOB_ID_LEN + 1];
    snprintf(ids[0], sizeof(ids[0]), "%s", id);
    if (ev.committed)
        ev.committed(arg, ids, 1);
}

void fake_store_fence(struct store *s, const char *id)
{
    void *arg;
    struct store_events ev = events(fake_of(s), &arg);
    if (ev.fenced)
        ev.fenced(arg, id);
}

void fake_store_reap(struct store *s)
{
    void *arg;
    struct store_events ev = events(fake_of(s), &arg);
    if (ev.reaped)
        ev.reaped(arg);
}

void fake_store_update(struct store *s, const struct job_view *v)
{
    void *arg;
    struct store_events ev = events(fake_of(s), &arg);
    if (ev.updated)
        ev.updated(arg, v);
}

void fake_store_cancel(struct store *s, const char *id, int force)
{
    void *arg;
    struct store_events ev = events(fake_of(s), &arg);
    if (ev.cancel)
        ev.cancel(arg, id, force, 0);
}
