/*
 * pg_sql.h — pyjobd's tables in PostgreSQL: the schema script, the statements, and
 * the decoding of their (binary) result rows into job views and specs.
 *
 * jobs is the narrow hot table (state, ownership, fencing); payloads and results are
 * insert-once side tables. Every table lives in the configured schema (search_path).
 */
#ifndef PYJOBD_PG_SQL_H
#define PYJOBD_PG_SQL_H

#include <libpq-fe.h>
#include <stdint.h>

#include "pyjobd/job.h"

/* See pg_schema.c for what each version added. */
#define PG_SCHEMA_VERSION 3

/* The setup script for a connection: schema, tables, migration lock, version check,
 * LISTEN. schema is the bare name; NULL on ENOMEM or a name libpq cannot quote. */
char *pg_setup_sql(PGconn *conn, const char *schema, const char *const channels[3]);

/* A statement, prepared under its name on every connection by the setup script. */
struct pg_stmt {
    const char *name; /* NULL: not prepared, sent with its text (a utility statement) */
    const char *sql;
};
/* NULL-terminated lists: the jobs' (pg_sql.c), the Idempotency-Keys' (pg_sql_keys.c),
 * the schedules' (pg_sql_schedules.c); pg_statement_sets lists them, NULL-terminated. */
extern const struct pg_stmt *const pg_statements[];
extern const struct pg_stmt *const pg_key_statements[];
extern const struct pg_stmt *const pg_schedule_statements[];
extern const struct pg_stmt *const *const pg_statement_sets[];

/* Columns of a job view, in the order pg_row_view reads them. */
#define PG_VIEW_COLS                                                                               \
    "j.id, j.status, j.owner, j.node, j.created_us, j.started_us, j.finished_us, j.timeout, "      \
    "j.attempts, j.worker_pid, j.max_retries, j.metadata, j.err_type, j.err_message, "             \
    "j.err_exc_type, j.err_exit_code, j.err_signal, j.err_max_rss, j.seq, j.priority, "            \
    "j.soft_timeout, j.run_at_us, j.expires_at_us, j.next_attempt_us, j.retry_on, "                \
    "j.retry_not_on, j.retry_initial, j.retry_factor, j.retry_max, j.retry_flags, j.history, "     \
    "j.rerun_of, j.schedule"
#define PG_VIEW_NCOLS 33
/* Then, for a full view: */
#define PG_RESULT_COLS "r.result, r.result_json, r.err_exception, r.err_traceback"
/* Or, for a claim: */
#define PG_PAYLOAD_COLS                                                                            \
    "p.callable, p.args, p.kwargs, p.json_args, p.json_kwargs, j.retry_on_timeout, "               \
    "j.result_json_fmt, j.priority, j.soft_timeout"
#define PG_PAYLOAD_NCOLS 9

extern const struct pg_stmt pg_sql_insert; /* $1..$28: a new job and its payload (pg_writes.c) */
extern const struct pg_stmt pg_sql_update; /* $1..$9: a non-final transition, fenced */
extern const struct pg_stmt pg_sql_finish; /* $1..$18: the final state and results, fenced */
extern const struct pg_stmt pg_sql_delete; /* $1 */
extern const struct pg_stmt pg_sql_claim;  /* $1 limit, $2 node */
extern const struct pg_stmt pg_sql_adopt;  /* $1 node */
extern const struct pg_stmt pg_sql_fetch;  /* $1 id */
extern const struct pg_stmt pg_sql_fetch_many; /* $1 '{id,...}' */
extern const struct pg_stmt pg_sql_fetch_done; /* $1 '{id,...}': finished ones only */
extern const struct pg_stmt pg_sql_list;      /* $1 status|-1, $2 owner|NULL, $3 cursor, $4 limit */
extern const struct pg_stmt pg_sql_cancel;    /* $1 id, $2 finished_us, $3 message */
extern const struct pg_stmt pg_sql_forget;    /* $1 id */
extern const struct pg_stmt pg_sql_status;    /* $1 id → status, node */
extern const struct pg_stmt pg_sql_watch;     /* $1 '{id,...}' */
extern const struct pg_stmt pg_sql_register;  /* $1 node, $2 lease_ms */
extern const struct pg_stmt pg_sql_heartbeat; /* $1 node → one row while registered */
extern const struct pg_stmt pg_sql_reap;      /* $1 now_us, $2, $3 channels, $4 this node */
extern const struct pg_stmt pg_sql_release;   /* $1 node: unclaim its queued jobs, unregister */
extern const struct pg_stmt pg_sql_retention; /* $1 finished before (µs) → deleted count */
extern const struct pg_stmt pg_sql_count_queued; /* → unclaimed queued and scheduled jobs */
extern const struct pg_stmt pg_sql_promote; /* $1 now_us, $2, $3 channels → due, expired, - */
extern const struct pg_stmt pg_sql_request; /* $1 id → PG_PAYLOAD_COLS */
extern const struct pg_stmt pg_sql_analyze; /* fresh statistics of jobs (not prepared) */
extern const struct pg_stmt pg_sql_reruns;  /* $1..$5 (filter) → view, payload columns */
extern const struct pg_stmt pg_sql_notify;  /* $1 channel, $2 payload */
extern const struct pg_stmt pg_sql_notify_waited; /* $1 channel, $2 '{id,...}' */

/* Decodes PG_VIEW_COLS at col 0 of a binary result row (and PG_RESULT_COLS after them
 * when with_results). 0 or -ENOMEM / -EPROTO. */
int pg_row_view(const PGresult *r, int row, int with_results, struct job_view *v, uint64_t *seq);

/* Decodes PG_PAYLOAD_COLS starting at col. */
int pg_row_spec(const PGresult *r, int row, int col, struct job_spec *spec);

/* jobs.retry_flags of v's policy, as pg_row_view reads them back (1 jitter, 2 no_crash,
 * 4 no_node_lost, 8 given, 16 retry_on_timeout). */
int pg_retry_flags(const struct job_view *v);

/* The options of a claimed job's spec that its row keeps in the view's columns
 * (timeout, retries and their policy, timing, owner, metadata, rerun_of): 0 or
 * -ENOMEM (the caller releases spec). */
int pg_spec_options(struct job_spec *spec, const struct job_view *v);

/* Parameters of one statement: text, except blobs (binary). */
#define PG_MAX_PARAMS 32
struct pg_params {
    int n;
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS];
    int formats[PG_MAX_PARAMS];
    char buf[PG_MAX_PARAMS][32];
};
void pg_params_reset(struct pg_params *p);
void pg_param_text(struct pg_params *p, const char *s); /* NULL: SQL NULL */
void pg_param_i64(struct pg_params *p, int64_t v);
void pg_param_f64(struct pg_params *p, double v);
void pg_param_blob(struct pg_params *p, const struct blob *b); /* NULL: SQL NULL */
/* A job's payload (callable, args, kwargs, json_args, json_kwargs: 5 parameters) and its
 * retry policy (on, not_on, initial, factor, max, pg_retry_flags: 6), as the jobs'
 * insert and a schedule's tick write them. */
void pg_param_payload(struct pg_params *p, const struct job_spec *spec);
void pg_param_retry(struct pg_params *p, const struct job_view *v);

#endif
