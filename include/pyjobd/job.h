/*
 * job.h — what a job is, as the pool accepts it (job_spec) and as it reports it
 * (job_view). Plain data shared by api/ and pool/.
 */
#ifndef PYJOBD_JOB_H
#define PYJOBD_JOB_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "pyjobd/blob.h"

/* Job ids are 128 random bits written as 32 lowercase hex digits. */
#define JOB_ID_LEN 32
/* Longest tenant name (see auth.h), with its NUL. */
#define JOB_OWNER_MAX 64
/* Longest node id of a shared store (see store_shared.h), with its NUL. */
#define JOB_NODE_MAX 80
/* Longest Idempotency-Key (printable ASCII, no space), and its digest's size. */
#define JOB_IDEM_KEY_MAX 200
#define JOB_IDEM_DIGEST_BYTES 32

enum job_status {
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELLED,
    JOB_SCHEDULED, /* waits for its run_at, then queued (stored as a number: at the end) */
};
#define JOB_STATUS_MAX JOB_SCHEDULED

enum job_error_type {
    JOB_ERR_NONE,
    JOB_ERR_EXCEPTION,          /* the callable raised */
    JOB_ERR_TIMEOUT,            /* the supervisor killed it at its deadline */
    JOB_ERR_WORKER_CRASHED,     /* its worker died while running it */
    JOB_ERR_INVALID_PAYLOAD,    /* callable/args/kwargs could not be unpickled */
    JOB_ERR_UNPICKLABLE_RESULT, /* the return value could not be pickled */
    JOB_ERR_CANCELLED,
    JOB_ERR_INTERRUPTED,        /* the server stopped while the job was queued or running */
    JOB_ERR_UNJSONABLE_RESULT,  /* result_format "json" and the value is not JSON-encodable */
    JOB_ERR_NODE_LOST,          /* the node running it stopped heart-beating (shared store) */
    JOB_ERR_PROTOCOL_VIOLATION, /* its worker sent a frame the protocol does not allow */
    JOB_ERR_RESULT_TOO_LARGE,   /* its result (or reply) is larger than --max-result-bytes */
    JOB_ERR_EXPIRED,            /* it had not started by its expires_at */
    /* Stored as numbers in the stores' rows: new types go at the end, never renumber
     * (and JOB_ERR_MAX follows the last). */
};
#define JOB_ERR_MAX JOB_ERR_EXPIRED

/* A retry policy: a request's "retry" object (max_retries and retry_on_timeout are its
 * shorthand and hold its "max" and "on_timeout"). */
struct job_retry {
    char *on, *not_on; /* exception class names, '\n'-separated (malloc'd); NULL: none */
    double initial, factor, max_delay; /* backoff in seconds; initial 0: none */
    int jitter;                        /* full jitter: a uniform delay in [0, the delay) */
    /* "on_crash": false / "on_node_lost": false (0, the default, retries them, as
     * max_retries always did) */
    int no_crash, no_node_lost;
    int given; /* the request had a "retry" object */
};

/* One ended attempt of a job that may be retried (history). */
struct job_attempt {
    int64_t started_us, ended_us; /* CLOCK_REALTIME */
    pid_t worker_pid;
    enum job_error_type error; /* why it ended */
    char *message;             /* malloc'd, may be NULL */
    char node[JOB_NODE_MAX];   /* the node it ran on (shared store), else "" */
};
/* Most attempts a job's history keeps (its first ones beyond are dropped). */
#define JOB_HISTORY_MAX 101

/* What a client asks for. The blobs are references owned by the spec. */
struct job_spec {
    struct blob *callable;         /* required */
    struct blob *args;             /* optional (NULL: no positional arguments) */
    struct blob *kwargs;           /* optional (NULL: no keyword arguments) */
    struct blob *json_args;        /* optional JSON text of an array (instead of args) */
    struct blob *json_kwargs;      /* optional JSON text of an object (instead of kwargs) */
    int result_json;               /* 1: return the result as JSON (result_format "json") */
    char *metadata;                /* optional JSON text of an object, echoed back (malloc'd) */
    double timeout;                /* seconds; 0 means "use the server's default" */
    unsigned max_retries;          /* re-runs after a worker crash (0 = none) */
    int retry_on_timeout;          /* 1: a timeout also counts as retryable */
    struct job_retry retry;        /* the rest of the retry policy */
    char rerun_of[JOB_ID_LEN + 1]; /* POST /v1/jobs/{id}/rerun: the job it repeats; "" */
    int priority;                  /* -100..100 (default 0): higher first among a tenant's jobs */
    double soft_timeout;           /* seconds; 0: none. pyjobd.SoftTimeout raised in the job */
    /* Delayed and expiring jobs (CLOCK_REALTIME us; 0: none): scheduled until run_at,
     * failed as expired if not started by expires_at. */
    int64_t run_at_us, expires_at_us;
    char owner[JOB_OWNER_MAX]; /* tenant that submitted it ("" without authentication) */
    /* Idempotent submission: the tenant's Idempotency-Key (malloc'd, freed by
     * job_spec_release; NULL: none), the SHA-256 of the request as parsed (what "the
     * same body" means), and when the key expires (CLOCK_REALTIME us, set by the pool). */
    char *idem_key;
    uint8_t idem_digest[JOB_IDEM_DIGEST_BYTES];
    int64_t idem_expires_us;
};

struct job_error {
    enum job_error_type type;
    char *message;           /* always set when type != JOB_ERR_NONE */
    char *exc_type;          /* exception type name (exception, invalid_payload) */
    struct blob *exception;  /* pickled exception object (exception), may be NULL */
    char *traceback;         /* remote traceback text, may be NULL */
    int exit_code;           /* worker exit status (worker_crashed), -1 when none */
    int signal;              /* signal that killed the worker, 0 when none */
    long long max_rss_bytes; /* worker's peak RSS from wait4, -1 when unknown */
};

/* A snapshot of a job. Strings and blobs are owned by the view: job_view_release(). */
struct job_view {
    char id[JOB_ID_LEN + 1];
    enum job_status status;
    struct timespec created_at;  /* CLOCK_REALTIME */
    struct timespec started_at;  /* {0,0}: not started */
    struct timespec finished_at; /* {0,0}: not finished */
    double timeout;              /* effective limit in seconds; 0 = none */
    unsigned attempts;
    pid_t worker_pid; /* 0 when none */
    unsigned max_retries;
    int priority;                     /* as submitted (job_spec.priority) */
    double soft_timeout;              /* as submitted (job_spec.soft_timeout); 0: none */
    int64_t run_at_us, expires_at_us; /* as submitted (job_spec); 0: none */
    int64_t next_attempt_us;          /* a retry waiting for its backoff; 0: none */
    int retry_on_timeout;             /* as submitted (job_spec) */
    struct job_retry retry;           /* as submitted (echoed when given) */
    struct job_attempt *history;      /* earlier attempts, oldest first (malloc'd) */
    char rerun_of[JOB_ID_LEN + 1];    /* as job_spec.rerun_of; "" */
    char schedule[JOB_ID_LEN + 1];    /* the schedule whose tick submitted it; "" */
    unsigned nhistory;
    struct blob *result;       /* pickled return value (succeeded, pickle format) */
    struct blob *result_json;  /* JSON text of the return value (succeeded, json format) */
    char *metadata;            /* JSON text of the client's metadata object, or NULL */
    char owner[JOB_OWNER_MAX]; /* tenant that submitted it ("" without authentication) */
    char node[JOB_NODE_MAX];   /* node that runs or ran it (shared store), else "" */
    struct job_error error;
};

/* "queued", "running", ... */
const char *job_status_name(enum job_status s);

/* "exception", "timeout", ...; NULL for JOB_ERR_NONE. */
const char *job_error_type_name(enum job_error_type t);

/* Waiting for a worker or for its time: not started, not finished. */
static inline int job_status_is_pending(enum job_status s)
{
    return s == JOB_QUEUED || s == JOB_SCHEDULED;
}

static inline int job_status_is_terminal(enum job_status s)
{
    return s == JOB_SUCCEEDED || s == JOB_FAILED || s == JOB_CANCELLED;
}

/* A byte count for people, as messages about limits give it: "812 bytes", "3.5 KiB",
 * "300.0 MiB", "4.0 GiB". Writes buf (JOB_BYTES_TEXT bytes) and returns it. */
#define JOB_BYTES_TEXT 32
const char *job_bytes_text(uint64_t n, char *buf);

/* Frees a policy's names and zeroes it. */
void job_retry_release(struct job_retry *r);
/* Deep copy (names duplicated). 0 or -ENOMEM (dst zeroed). */
int job_retry_copy(struct job_retry *dst, const struct job_retry *src);

/* Drops the spec's references and zeroes it. */
void job_spec_release(struct job_spec *spec);

/* What a job runs, shared: dst takes new references to src's five payload blobs and
 * copies result_json and retry_on_timeout (nothing else; dst's blobs must be NULL). */
void job_spec_ref_payload(struct job_spec *dst, const struct job_spec *src);

/* Frees what a view owns and zeroes it. */
void job_view_release(struct job_view *v);

/* Frees what an error owns and resets it to "no error". */
void job_error_release(struct job_error *e);

/* Deep copy of src into *dst (strings duplicated, blobs referenced). 0 or -ENOMEM. */
int job_view_copy(struct job_view *dst, const struct job_view *src);

/* Returns 1 when s is a well-formed job id (32 lowercase hex digits). */
int job_id_is_valid(const char *s);

#endif
