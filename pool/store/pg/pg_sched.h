/*
 * pg_sched.h — the PostgreSQL store's state for recurring schedules, shared by
 * pg_schedules.c (leading and firing, on the store's thread) and
 * pg_schedule_requests.c (other threads' reads and writes of schedules).
 */
#ifndef PYJOBD_PG_SCHED_H
#define PYJOBD_PG_SCHED_H

#include "pg_sql_schedules.h"
#include "pgstore.h"

enum sq_kind { SQ_CREATE, SQ_READ, SQ_DELETE };

/* A request of another thread, answered by the store's thread. */
struct sreq {
    enum sq_kind kind;
    char id[JOB_ID_LEN + 1]; /* SQ_READ: "" for all */
    char owner[JOB_OWNER_MAX];
    int has_owner;
    struct store_schedule row; /* SQ_CREATE: its own copies (a caller may give up) */
    size_t tenant_max, max;
    /* answer */
    int done, rc, abandoned;
    struct store_schedule *rows;
    size_t n;
    STAILQ_ENTRY(sreq) link;
};

/* A tick for the store's thread to commit. */
struct stick {
    char id[JOB_ID_LEN + 1];
    int64_t tick_us;
    struct job_view v;
    struct job_spec spec;
    STAILQ_ENTRY(stick) link;
};

STAILQ_HEAD(sreq_list, sreq);
STAILQ_HEAD(stick_list, stick);

struct pg_sched {
    pthread_mutex_t cb_lock; /* held while the events are called or changed */
    struct store_schedule_events ev;
    void *ev_arg;
    _Atomic int has_events; /* the pool registered: this node tries to lead */

    /* Under the store's lock. */
    struct sreq_list reqs;   /* other threads' requests, not sent yet */
    struct stick_list ticks; /* ticks to commit, not sent yet */
    int leading;             /* as far as other threads can know */
    int reread;              /* a schedule was created or deleted: read them again */

    /* The store thread's own. */
    struct sreq_list sent_reqs;   /* in flight, in the order of their segments */
    struct stick_list sent_ticks; /* idem */
    int leader, loaded;           /* leads; has read every schedule since */
    int lead_inflight, read_inflight;
    enum store_schedules_how read_how; /* of the read in flight */
    char *want_ids;                    /* '{id,...}' to read with their jobs */
    int64_t next_lead_ms, next_read_ms;
};

/* pg_schedule_requests.c, on the store's thread: sends the queued requests. */
void pgs__sched_send_requests(struct pg_store *s);
void pgs__stick_free(struct stick *t);

#endif
