/*
 * pgstore.h — the PostgreSQL store's own structures, shared by its files. From the
 * bottom up; each file calls only those below it:
 *
 *   pg_schema.c       the schema and its migrations, run by every new connection
 *   pg_sql.c          the statements about jobs (pg_sql_keys.c, pg_sql_schedules.c:
 *                     about Idempotency-Keys, about schedules)
 *   pg_rows.c         decoding result rows, statement parameters
 *   pg_conn.c         one non-blocking libpq connection in pipeline mode
 *   pg_seg.c          what every round uses: segments and their handlers, NOTIFY,
 *                     id arrays, waking the thread, node ids
 *   pg_request.c      carrying other threads' requests to the thread and back (the
 *                     kinds of request are in the files above that make them)
 *   the rounds, side by side (none calls another):
 *     pg_writes.c     group-committed, fenced writes
 *     pg_claims.c     claiming queued jobs, adopting them after a reconnect, the size
 *                     of the shared queue, due times of scheduled jobs
 *     pg_membership.c registering, heartbeat, reaping, retention
 *     pg_requests.c   reads and watches for other threads, re-checks of waited jobs
 *     pg_keys.c       keyed submissions (Idempotency-Keys), expired keys
 *     pg_reruns.c     reruns: requests read back
 *     pg_schedules.c  recurring schedules: leading (an advisory lock), firing, their
 *                     requests (pg_schedule_requests.c; pg_sched.h)
 *   store_pg.c        the top: the thread and its loop, opening and closing, the
 *                     store's function table (pool/store/store_impl.h)
 *
 * Everything named pgs__ runs on the store's thread unless it says otherwise.
 */
#ifndef PYJOBD_PGSTORE_H
#define PYJOBD_PGSTORE_H

#include "../store_impl.h"
#include "pg_conn.h"
#include "pg_sql.h"
#include "pyjobd/store_shared.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/queue.h>

#define WRITES_PER_ROUND 512
#define SYNC_WAIT_MS 10000   /* store_sync gives up (503) after this */
#define REQUEST_WAIT_MS 5000 /* a read gives up (503) after this */
#define STALL_MS 15000       /* a connection that answers nothing this long is dropped */
#define RETENTION_EVERY_MS 5000
#define WAITED_MAX 512
#define NOTIFY_IDS 200         /* ids per NOTIFY payload (its limit is 8000 bytes) */
#define DUE_MAX 131072         /* due times of scheduled jobs kept to claim them on time */
#define ANALYZE_ROWS 10000     /* new jobs after which the statistics are refreshed, */
#define ANALYZE_EVERY_MS 10000 /* at most this often */

enum wkind { W_INSERT, W_UPDATE, W_FINISH, W_DELETE };

struct wop {
    enum wkind kind;
    int claimed;
    uint64_t ticket;
    struct job_view v;
    struct job_spec spec;
    char node[JOB_NODE_MAX]; /* the node id at the time of the write: its fence */
    int solo;                /* its group failed: sent again in a transaction of its own */
    STAILQ_ENTRY(wop) link;
};
STAILQ_HEAD(wop_list, wop);

/* Requests of other threads to the store's thread (carried by pg_request.c); each is
 * made with its kind's operations by the file of that kind. */
enum rkind {
    R_FETCH,
    R_FETCH_MANY,
    R_LIST,
    R_CANCEL,
    R_FORGET,
    R_WATCH,
    R_ASK_CANCEL,
    R_KEYED,   /* pg_keys.c */
    R_REQUEST, /* pg_reruns.c: a job's request */
    R_RERUNS,  /* pg_reruns.c: finished jobs' requests */
    R_NKINDS
};

struct req;
struct pg_store;
struct seg;
struct req_ops {
    /* Sends q's statements into segment g (and sets g->ps.n): 0, or nonzero when one
     * could not be sent. */
    int (*send)(struct pg_store *s, struct seg *g, struct req *q);
    /* Reads the results of g, committed, into q: the request's answer (0 or -errno). */
    int (*result)(struct pg_store *s, struct seg *g, struct req *q);
    /* Frees what the kind keeps in q (NULL: nothing of its own). */
    void (*release)(struct req *q);
};

struct req {
    enum rkind kind;
    const struct req_ops *ops;
    char id[JOB_ID_LEN + 1];
    int status;
    char owner[JOB_OWNER_MAX];
    int has_owner;
    char node[JOB_NODE_MAX]; /* R_CANCEL: where the job is; R_ASK_CANCEL: whom to ask */
    int force;
    double grace; /* R_ASK_CANCEL: > 0, an interrupt */
    uint64_t cursor;
    size_t limit;
    char *ids;                     /* R_FETCH_MANY: '{id,...}' (malloc'd) */
    char (*watch)[JOB_ID_LEN + 1]; /* R_WATCH: the ids, gathered until the thread sends it */
    struct keyed *keyed;           /* R_KEYED: its jobs (pg_keys.c) */
    int error_type;                /* R_RERUNS: the filter (with status, owner, limit) */
    int64_t since_us;
    struct job_spec *specs; /* R_REQUEST, R_RERUNS: the requests read */
    size_t nspecs;
    size_t nwatch, capwatch;
    /* answer */
    int done, rc, abandoned;
    struct job_view *views;
    size_t n;
    uint64_t next;
    STAILQ_ENTRY(req) link;
};

struct pg_store {
    struct store base;
    struct pg_conn pc;
    const char *kw[8], *vals[8];
    char *uri, *schema, *setup_sql, *describe;
    char chan_queued[96], chan_done[96], chan_cancel[96];
    char node_name[48];
    int64_t lease_ms, poll_ms, ttl_ms;
    pthread_t thread;
    int thread_started;
    int wakefd;

    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t cond;
    char node_id[JOB_NODE_MAX];
    struct wop_list writes; /* queued, oldest first */
    uint64_t next_ticket, committed, failed_upto;
    STAILQ_HEAD(req_list, req) requests; /* of other threads, for the store's thread */
    struct req *watch_req;               /* queued R_WATCH that more ids join, until sent */
    unsigned want;
    int claim_now;
    /* When the scheduled jobs queued here are due (monotonic ms), a min-heap, at most
     * DUE_MAX (beyond, the poll finds them): a claim goes then (pg_claims.c). */
    int64_t *due;
    size_t ndue, capdue;
    int recheck_now; /* re-check every waited job (reconnected, a node reaped, ...) */
    /* Finished jobs named by completion notifications, to re-check if waited here. */
    char (*done_ids)[JOB_ID_LEN + 1];
    size_t ndone, capdone;
    int ready;       /* connected and registered */
    int open_result; /* 0 waiting for the first connection, 1 up, -1 failed for good */
    int stopping;
    char last_error[256];
    struct store_events ev;
    void *ev_arg;
    /* The store's thread is calling ev (it took a copy under the lock): pg_set_events
     * waits for it to end (pgs__events_done), so that the pool the events go to can be
     * freed once they are cleared. */
    int in_events;
    void (*on_commit)(void *arg); /* store_on_commit */
    void *on_commit_arg;

    /* The store thread's own. */
    struct wop_list sent; /* writes of the segment in flight */
    int writes_inflight, claim_inflight, hb_inflight, reap_inflight, recheck_inflight;
    int ret_inflight, registered, connected_before, adopt_needed, released;
    int reg_inflight, joined; /* joined: this node has (had) a row in nodes */
    int64_t next_reg_ms;
    int64_t next_claim_ms, next_hb_ms, next_reap_ms, next_recheck_ms, next_ret_ms;
    _Atomic int64_t last_hb_ok_ms; /* read by other threads: store_lease_fresh */
    /* The database's queue of unclaimed jobs, for --max-queue: the last count plus the
     * unclaimed jobs queued here since that count was asked for. */
    _Atomic int64_t queue_counted, queue_added;
    int64_t added_at_count, next_count_ms;
    int count_inflight;
    /* Jobs put since the store started (any thread), and when the statistics of jobs
     * were last refreshed (the store's thread): see pg_sql_analyze. */
    _Atomic int64_t inserted;
    int64_t analyzed_at, next_analyze_ms;
    int keys_inflight;          /* pg_keys.c: deleting expired keys, next at next_keys_ms */
    struct registry *keyed_ids; /* lock held: inserted by keyed rounds, not yet put */
    int64_t next_keys_ms;
    struct pg_sched *sched; /* recurring schedules (pg_sched.h) */
};

/* Segments carry their context: what to do with the results. */
struct seg {
    struct pg_seg ps;
    struct pg_store *s;
    void (*handle)(struct pg_store *s, struct seg *g, int ok);
    struct req *req;
    size_t limit; /* a claim: how many it asked for */
};

/* pg_seg.c. Any thread: */
void pgs__poke(struct pg_store *s); /* wakes the store's thread */
/* The store's thread: the calls of a copy of s->ev taken with s->in_events++ (under the
 * lock) are over. */
void pgs__events_done(struct pg_store *s);
/* The store's thread (and store_open_pg, before it starts): */
void pgs__new_node_id(struct pg_store *s); /* a new random s->node_id (lock held) */
struct seg *pgs__seg_new(struct pg_store *s,
                         void (*handle)(struct pg_store *s, struct seg *g, int ok));
/* Ends and sends g, or (failed: a statement of it could not be sent) runs its handler
 * with -1; either way a failure drops the connection. */
void pgs__send_or_lose(struct pg_store *s, struct seg *g, int failed);
int pgs__send_notify(struct pg_store *s, const char *chan, const char *payload);
/* '{id,id,...}' of ids[from..to), malloc'd. */
char *pgs__id_array(char (*ids)[JOB_ID_LEN + 1], size_t from, size_t to);

/* The rounds: each sends one segment when due (see send_round in store_pg.c). */
/* pg_writes.c */
void pgs__round_writes(struct pg_store *s);
void pgs__wop_free(struct wop *w);
/* Sends w (a W_INSERT) as the writes' round does, into the segment being built: 0 or -1. */
int pgs__send_insert(struct pg_store *s, struct wop *w);
/* pg_claims.c */
void pgs__round_claim(struct pg_store *s, int64_t now);
void pgs__due_add(struct pg_store *s, int64_t ms); /* lock held */
int64_t pgs__due_next(const struct pg_store *s);   /* lock held; INT64_MAX: none */
void pgs__round_count(struct pg_store *s, int64_t now);
void pgs__round_adopt(struct pg_store *s);
/* pg_membership.c */
void pgs__send_register(struct pg_store *s);
void pgs__round_heartbeat(struct pg_store *s, int64_t now);
void pgs__round_reap(struct pg_store *s, int64_t now);
void pgs__round_retention(struct pg_store *s, int64_t now);
/* pg_request.c: a new request of kind with its operations (id copied when given; NULL
 * on ENOMEM), and its end: freed (what its kind keeps with it), answered (the thread),
 * sent (the thread's round). Any thread but the store's: queueing one (lock held; 0 or
 * -ENOTCONN); queueing one and waiting up to wait_ms for its answer: q->rc, -ENOTCONN,
 * -ETIMEDOUT (q is then the thread's to free); posting one nobody waits for. */
struct req *pgs__req_new(enum rkind kind, const struct req_ops *ops, const char *id);
void pgs__req_free(struct req *q);
void pgs__req_finish(struct pg_store *s, struct req *q, int rc);
void pgs__round_request(struct pg_store *s, struct req *q);
int pgs__req_queue_locked(struct pg_store *s, struct req *q);
int pgs__request(struct pg_store *s, struct req *q, int wait_ms);
void pgs__req_post(struct pg_store *s, struct req *q);
/* pg_requests.c */
void pgs__round_recheck(struct pg_store *s, int64_t now);
/* pg_reruns.c: reading back requests for reruns (R_REQUEST, R_RERUNS). */
int pgs__read_request(struct store *base, const char *id, struct job_spec *spec);
int pgs__finished_requests(struct store *base, const struct pool_rerun_filter *f, size_t max,
                           struct job_view **views, struct job_spec **specs, size_t *n);
/* pg_keys.c: keyed submissions (R_KEYED) and deleting expired keys (a round of its
 * own); the statements in pg_sql_keys.c. */
extern const struct pg_stmt pg_sql_key_take, pg_sql_key_settle, pg_sql_key_expire;
void pgs__round_keys_expire(struct pg_store *s, int64_t now);
/* Any thread: the store_put (STORE_NEW) of a job a keyed round inserted already is not
 * written again (a second insert of a job another node may be updating would wait for
 * that node's writes: two nodes' groups of writes could then deadlock). Its ticket (one
 * committed), or 0 for any other job. */
uint64_t pgs__keyed_put(struct pg_store *s, const char *id, int claimed);
void pgs__keyed_ids_free(struct pg_store *s);
int pgs__submit_keyed(struct store *base, struct store_keyed_job *jobs, size_t n);
/* The store's requests (entries of store_pg.c's struct store_ops; any thread but the
 * store's): see store_shared.h. */
int pgs__fetch(struct store *base, const char *id, struct job_view *out);
int pgs__fetch_many(struct store *base, char (*ids)[JOB_ID_LEN + 1], size_t n, struct job_view *out,
                    int *found);
int pgs__list(struct store *base, const struct pool_list_query *q, struct job_view **out, size_t *n,
              uint64_t *next);
int pgs__cancel(struct store *base, const char *id, int *status, char *node);
int pgs__forget(struct store *base, const char *id);
void pgs__watch(struct store *base, const char *id);
void pgs__ask_cancel(struct store *base, const char *node, const char *id, int force, double grace);

/* pg_schedules.c, pg_schedule_requests.c: recurring schedules (store_shared.h). */
int pgs__sched_new(struct pg_store *s); /* before the thread starts: 0 or -ENOMEM */
void pgs__sched_free(struct pg_store *s);
void pgs__round_schedules(struct pg_store *s, int64_t now);
int64_t pgs__sched_next_ms(struct pg_store *s);
void pgs__sched_lost(struct pg_store *s);         /* the connection was lost: not leading */
void pgs__sched_fail(struct pg_store *s, int rc); /* queued requests fail with rc */
void pgs__sched_reread(struct pg_store *s);       /* lock held: a NOTIFY said so */
void pgs__set_schedule_events(struct store *base, const struct store_schedule_events *ev,
                              void *arg);
int pgs__schedule_tick(struct store *base, const char *id, int64_t tick_us,
                       const struct job_view *v, const struct job_spec *spec);
int pgs__schedule_create(struct store *base, const struct store_schedule *sc, size_t tenant_max,
                         size_t max);
int pgs__schedule_read(struct store *base, const char *id, const char *owner,
                       struct store_schedule **rows, size_t *n);
int pgs__schedule_delete(struct store *base, const char *id, const char *owner);
/* The NOTIFY payload on the queued channel that says "schedules changed". */
#define PG_SCHEDULES_PAYLOAD "schedules"

#endif
