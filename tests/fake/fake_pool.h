/*
 * fake_pool.h — a fake of every pool_* function api/ calls (include/pyjobd/pool.h),
 * over plain state that a test sets and reads back: the api unit tests
 * (tests/unit/api/) and the api fuzz harnesses (tests/fuzz/) link fake_pool.o
 * instead of the real pool, so no supervisor thread or worker is involved.
 *
 * Jobs live in fake_jobs[]; fake_id(i) is the id of slot i. What each call answers
 * is in `fake` (return codes, pool facts), and so is what the api asked (counts, the
 * last spec, the list query, recorded watches). Watches are recorded and fired later
 * by fake_fire_watches() unless the job is finished or fake.watch_calls_back says
 * to call back at once, which is how the pool answers for a finished job.
 *
 * The clock is a seam too: linked with -Wl,--wrap=clock_now_ms, every call the api
 * makes to clock_now_ms() answers fake.now_ms (FAKE_NOW_MS after fake_reset()).
 */
#ifndef PYJOBD_FAKE_POOL_H
#define PYJOBD_FAKE_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "pyjobd/pool.h"

#define FAKE_JOBS 16
#define FAKE_WATCHES 64
#define FAKE_NOW_MS 1000000

struct fake_job {
    int exists;
    int stale; /* lookups answer -ESTALE */
    enum job_status status;
    unsigned max_retries;
    double timeout;
    char *metadata;            /* malloc'd (fake_reset frees it) */
    const char *result;        /* pickle bytes when succeeded (pickle format); NULL: "foobar" */
    const char *result_json;   /* JSON text when succeeded (json format) */
    enum job_error_type err;   /* JOB_ERR_NONE: no error */
    const char *message;       /* the error's message (NULL: "") */
    const char *exc_type;      /* the error's exception type name, or NULL */
    const char *exception;     /* the error's pickled exception (bytes), or NULL */
    const char *traceback;     /* the error's traceback text, or NULL */
    int signal;                /* signal that killed its worker, 0 when none */
    long long max_rss_bytes;   /* its worker's peak RSS; 0: unknown (-1 in the view) */
    int ran;                   /* 1: started on worker 4242 (and finished, when terminal) */
    char owner[JOB_OWNER_MAX]; /* tenant that submitted it */
};

struct fake_watch {
    char id[JOB_ID_LEN + 1];
    pool_watch_cb cb;
    void *arg;
    int64_t deadline;
};

struct fake_pool {
    int any_id; /* an id of no slot in use answers as slot 0 (the fuzzers' ids are anything) */
    int submit_rc;
    int submits;
    int batch_rc;
    size_t batch_n;
    struct job_spec last; /* copy of the last submitted spec (blob refs held) */
    int cancel_rc, cancel_force, cancels;
    double interrupt_grace; /* of the last pool_interrupt */
    int delete_rc, deletes;
    struct pool_list_query list_q;
    size_t list_n; /* pool_list answers the jobs fake_id(0 .. list_n - 1), at most limit */
    uint64_t list_next;
    int watch_rc;         /* pool_watch answers this for every id */
    int watch_calls_back; /* call cb before returning */
    size_t nwatches;
    struct fake_watch watches[FAKE_WATCHES];
    uint64_t out_dropped, err_dropped; /* pool_job_output's dropped bytes */
    struct pool_info info;
    int stats_rc;
    /* pool_get_stats: worker 101 runs fake_id(0); worker 102 is idle, or with
     * worker2_job = i + 1 runs fake_id(i). Each job's owner is its slot's owner. */
    size_t worker2_job;
    int resize_rc;
    size_t tenant_queued; /* what pool_tenant_queued answers */
    unsigned resized_to;
    int64_t now_ms; /* what clock_now_ms() answers */
};

extern struct fake_job fake_jobs[FAKE_JOBS];
extern struct fake_pool fake;

/* Frees what the fake holds and sets every knob to its default: no jobs, every call
 * succeeds, a pool of 4 workers (3 ready), 7 dropped stderr bytes, FAKE_NOW_MS. */
void fake_reset(void);

/* The id of slot i (a static string per slot). */
const char *fake_id(size_t i);

/* Puts a new job of status st (its other fields zero) in the first slot that neither
 * exists nor is stale and returns the slot (aborts when the table is full). */
size_t fake_add(enum job_status st);

/* Fires the recorded watches [from, to) in order (like the supervisor would). */
void fake_fire_watches(size_t from, size_t to);

/* The fake clock_now_ms() (see -Wl,--wrap above). */
int64_t __wrap_clock_now_ms(void);

#endif
