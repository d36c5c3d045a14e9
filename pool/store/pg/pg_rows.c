/*
 * pg_rows.c — the PostgreSQL store's binary result rows decoded into job views and
 * specs, and the parameters of its statements (pg_sql.h).
 */
#include "pg_sql.h"
#include "../store_history.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t get_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    uint64_t v = 0; /* network order, two's complement */
    if (len == 1)
        return p[0];
    for (int i = 0; i < len && i < 8; i++)
        v = (v << 8) | p[i];
    if (len == 2)
        return (int16_t)(uint16_t)v;
    if (len == 4)
        return (int32_t)(uint32_t)v;
    return (int64_t)v;
}

static double get_f64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return 0;
    uint64_t bits;
    memcpy(&bits, PQgetvalue(r, row, col), 8);
    bits = be64toh(bits);
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

static int get_str(const PGresult *r, int row, int col, char **out)
{
    *out = NULL;
    if (PQgetisnull(r, row, col))
        return 0;
    *out = strndup(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
    return *out ? 0 : -ENOMEM;
}

static void get_fixed(const PGresult *r, int row, int col, char *out, size_t size)
{
    size_t len = PQgetisnull(r, row, col) ? 0 : (size_t)PQgetlength(r, row, col);
    if (len >= size)
        len = size - 1;
    memcpy(out, PQgetvalue(r, row, col), len);
    out[len] = 0;
}

static int get_blob(const PGresult *r, int row, int col, struct blob **out)
{
    *out = NULL;
    if (PQgetisnull(r, row, col))
        return 0;
    *out = blob_new_copy(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
    return *out ? 0 : -ENOMEM;
}

static struct timespec us_ts(int64_t us)
{
    return (struct timespec){.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
}

int pg_row_view(const PGresult *r, int row, int with_results, struct job_view *v, uint64_t *seq)
{
    memset(v, 0, sizeof(*v));
    if (PQnfields(r) < PG_VIEW_NCOLS + (with_results ? 4 : 0) ||
        PQgetlength(r, row, 0) != JOB_ID_LEN)
        return -EPROTO;
    get_fixed(r, row, 0, v->id, sizeof(v->id));
    int64_t st = get_int(r, row, 1);
    v->status = st >= JOB_QUEUED && st <= JOB_STATUS_MAX ? (enum job_status)st : JOB_FAILED;
    get_fixed(r, row, 2, v->owner, sizeof(v->owner));
    get_fixed(r, row, 3, v->node, sizeof(v->node));
    v->created_at = us_ts(get_int(r, row, 4));
    v->started_at = us_ts(get_int(r, row, 5));
    v->finished_at = us_ts(get_int(r, row, 6));
    v->timeout = get_f64(r, row, 7);
    v->attempts = (unsigned)get_int(r, row, 8);
    v->worker_pid = (pid_t)get_int(r, row, 9);
    v->max_retries = (unsigned)get_int(r, row, 10);
    int64_t et = get_int(r, row, 12);
    v->error.type =
        et >= JOB_ERR_NONE && et <= JOB_ERR_MAX ? (enum job_error_type)et : JOB_ERR_EXCEPTION;
    v->error.exit_code = (int)get_int(r, row, 15);
    v->error.signal = (int)get_int(r, row, 16);
    v->error.max_rss_bytes = get_int(r, row, 17);
    if (seq)
        *seq = (uint64_t)get_int(r, row, 18);
    v->priority = (int)get_int(r, row, 19);
    v->soft_timeout = get_f64(r, row, 20);
    v->run_at_us = get_int(r, row, 21);
    v->expires_at_us = get_int(r, row, 22);
    v->next_attempt_us = get_int(r, row, 23);
    v->retry.initial = get_f64(r, row, 26);
    v->retry.factor = get_f64(r, row, 27);
    v->retry.max_delay = get_f64(r, row, 28);
    int64_t flags = get_int(r, row, 29);
    v->retry.jitter = (flags & 1) != 0;
    v->retry.no_crash = (flags & 2) != 0;
    v->retry.no_node_lost = (flags & 4) != 0;
    v->retry.given = (flags & 8) != 0;
    v->retry_on_timeout = (flags & 16) != 0;
    get_fixed(r, row, 31, v->rerun_of, sizeof(v->rerun_of));
    get_fixed(r, row, 32, v->schedule, sizeof(v->schedule));
    if (v->rerun_of[0] && !job_id_is_valid(v->rerun_of))
        v->rerun_of[0] = 0;
    if (v->schedule[0] && !job_id_is_valid(v->schedule))
        v->schedule[0] = 0;
    int rc = get_str(r, row, 11, &v->metadata);
    rc = rc ? rc : get_str(r, row, 13, &v->error.message);
    rc = rc ? rc : get_str(r, row, 14, &v->error.exc_type);
    rc = rc ? rc : get_str(r, row, 24, &v->retry.on);
    rc = rc ? rc : get_str(r, row, 25, &v->retry.not_on);
    if (rc == 0 && !PQgetisnull(r, row, 30)) {
        char *text = NULL;
        rc = get_str(r, row, 30, &text);
        rc = rc ? rc : sqls__history_decode(text, &v->history, &v->nhistory);
        free(text);
    }
    if (with_results) {
        int c = PG_VIEW_NCOLS;
        rc = rc ? rc : get_blob(r, row, c, &v->result);
        rc = rc ? rc : get_blob(r, row, c + 1, &v->result_json);
        rc = rc ? rc : get_blob(r, row, c + 2, &v->error.exception);
        rc = rc ? rc : get_str(r, row, c + 3, &v->error.traceback);
    }
    if (rc)
        job_view_release(v);
    return rc;
}

int pg_row_spec(const PGresult *r, int row, int col, struct job_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    if (PQnfields(r) < col + PG_PAYLOAD_NCOLS || PQgetisnull(r, row, col))
        return -EPROTO;
    int rc = get_blob(r, row, col, &spec->callable);
    rc = rc ? rc : get_blob(r, row, col + 1, &spec->args);
    rc = rc ? rc : get_blob(r, row, col + 2, &spec->kwargs);
    rc = rc ? rc : get_blob(r, row, col + 3, &spec->json_args);
    rc = rc ? rc : get_blob(r, row, col + 4, &spec->json_kwargs);
    spec->retry_on_timeout = get_int(r, row, col + 5) != 0;
    spec->result_json = get_int(r, row, col + 6) != 0;
    spec->priority = (int)get_int(r, row, col + 7);
    spec->soft_timeout = get_f64(r, row, col + 8);
    if (rc)
        job_spec_release(spec);
    return rc;
}

int pg_retry_flags(const struct job_view *v)
{
    return (v->retry.jitter ? 1 : 0) | (v->retry.no_crash ? 2 : 0) |
           (v->retry.no_node_lost ? 4 : 0) | (v->retry.given ? 8 : 0) |
           (v->retry_on_timeout ? 16 : 0);
}

void pg_param_payload(struct pg_params *p, const struct job_spec *spec)
{
    pg_param_blob(p, spec->callable);
    pg_param_blob(p, spec->args);
    pg_param_blob(p, spec->kwargs);
    pg_param_blob(p, spec->json_args);
    pg_param_blob(p, spec->json_kwargs);
}

void pg_param_retry(struct pg_params *p, const struct job_view *v)
{
    pg_param_text(p, v->retry.on);
    pg_param_text(p, v->retry.not_on);
    pg_param_f64(p, v->retry.initial);
    pg_param_f64(p, v->retry.factor);
    pg_param_f64(p, v->retry.max_delay);
    pg_param_i64(p, pg_retry_flags(v));
}

int pg_spec_options(struct job_spec *spec, const struct job_view *v)
{
    spec->timeout = v->timeout;
    spec->max_retries = v->max_retries;
    spec->run_at_us = v->run_at_us;
    spec->expires_at_us = v->expires_at_us;
    memcpy(spec->owner, v->owner, sizeof(spec->owner));
    memcpy(spec->rerun_of, v->rerun_of, sizeof(spec->rerun_of));
    if (v->metadata && !(spec->metadata = strdup(v->metadata)))
        return -ENOMEM;
    return job_retry_copy(&spec->retry, &v->retry);
}

/* --- parameters ----------------------------------------------------------------------- */

void pg_params_reset(struct pg_params *p)
{
    p->n = 0;
}

static int slot(struct pg_params *p)
{
    int i = p->n < PG_MAX_PARAMS ? p->n++ : PG_MAX_PARAMS - 1;
    p->formats[i] = 0;
    p->lengths[i] = 0;
    return i;
}

void pg_param_text(struct pg_params *p, const char *s)
{
    p->values[slot(p)] = s;
}

void pg_param_i64(struct pg_params *p, int64_t v)
{
    int i = slot(p);
    snprintf(p->buf[i], sizeof(p->buf[i]), "%lld", (long long)v);
    p->values[i] = p->buf[i];
}

void pg_param_f64(struct pg_params *p, double v)
{
    int i = slot(p);
    snprintf(p->buf[i], sizeof(p->buf[i]), "%.17g", v);
    p->values[i] = p->buf[i];
}

void pg_param_blob(struct pg_params *p, const struct blob *b)
{
    int i = slot(p);
    p->values[i] = b ? (const char *)blob_data(b) : NULL;
    p->lengths[i] = b ? (int)blob_len(b) : 0;
    p->formats[i] = 1;
}
