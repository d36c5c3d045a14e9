/*
 * pg_reruns.c — reading finished jobs' requests back for reruns (POST /v1/jobs/{id}/rerun,
 * POST /v1/jobs/rerun) on the PostgreSQL store: one job's payload (store_read_request),
 * or the finished jobs a filter takes with theirs (store_finished_requests). Two kinds
 * of request of other threads (R_REQUEST, R_RERUNS), carried by pg_request.c.
 */
#include "pgstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int request_send(struct pg_store *s, struct seg *g, struct req *q)
{
    const char *one[1] = {q->id};
    g->ps.n = 1;
    return pg_conn_send(&s->pc, &pg_sql_request, 1, one, NULL, NULL, 1);
}

static int request_result(struct pg_store *s, struct seg *g, struct req *q)
{
    (void)s;
    PGresult *r = g->ps.res[0];
    if (!r || PQntuples(r) != 1)
        return -ENOENT;
    if (!(q->specs = calloc(1, sizeof(*q->specs))))
        return -ENOMEM;
    int rc = pg_row_spec(r, 0, 0, &q->specs[0]);
    if (rc == 0)
        q->nspecs = 1;
    return rc == -EPROTO ? -EIO : rc;
}

static int reruns_send(struct pg_store *s, struct seg *g, struct req *q)
{
    struct pg_params p;
    pg_params_reset(&p);
    pg_param_i64(&p, q->status);
    pg_param_text(&p, q->has_owner ? q->owner : NULL);
    pg_param_i64(&p, q->error_type);
    pg_param_i64(&p, q->since_us);
    pg_param_i64(&p, (int64_t)q->limit);
    g->ps.n = 1;
    return pg_conn_send(&s->pc, &pg_sql_reruns, p.n, p.values, p.lengths, p.formats, 1);
}

static int reruns_result(struct pg_store *s, struct seg *g, struct req *q)
{
    (void)s;
    PGresult *r = g->ps.res[0];
    int rows = r ? PQntuples(r) : 0;
    q->views = calloc(rows ? (size_t)rows : 1, sizeof(*q->views));
    q->specs = calloc(rows ? (size_t)rows : 1, sizeof(*q->specs));
    if (!q->views || !q->specs)
        return -ENOMEM;
    for (int i = 0; i < rows; i++) {
        struct job_view *v = &q->views[q->n];
        struct job_spec *sp = &q->specs[q->nspecs];
        if (pg_row_view(r, i, 0, v, NULL) != 0)
            continue; /* a row that does not decode is passed over, as a lost request */
        if (pg_row_spec(r, i, PG_VIEW_NCOLS, sp) != 0) {
            job_view_release(v);
            continue;
        }
        q->n++, q->nspecs++;
    }
    return 0;
}

static const struct req_ops request_ops = {request_send, request_result, NULL};
static const struct req_ops reruns_ops = {reruns_send, reruns_result, NULL};

int pgs__read_request(struct store *base, const char *id, struct job_spec *spec)
{
    struct pg_store *s = (struct pg_store *)base;
    struct req *q = pgs__req_new(R_REQUEST, &request_ops, id);
    if (!q)
        return -ENOMEM;
    int rc = pgs__request(s, q, REQUEST_WAIT_MS);
    if (rc == -ETIMEDOUT)
        return rc;
    if (rc == 0) {
        /* The payload and the result format: the caller's spec has the rest. */
        struct job_spec *got = &q->specs[0];
        spec->callable = got->callable;
        spec->args = got->args;
        spec->kwargs = got->kwargs;
        spec->json_args = got->json_args;
        spec->json_kwargs = got->json_kwargs;
        spec->result_json = got->result_json;
        got->callable = got->args = got->kwargs = got->json_args = got->json_kwargs = NULL;
    }
    pgs__req_free(q);
    return rc;
}

int pgs__finished_requests(struct store *base, const struct pool_rerun_filter *f, size_t max,
                           struct job_view **views, struct job_spec **specs, size_t *n)
{
    struct pg_store *s = (struct pg_store *)base;
    *n = 0;
    struct req *q = pgs__req_new(R_RERUNS, &reruns_ops, NULL);
    if (!q)
        return -ENOMEM;
    q->status = f->status;
    q->has_owner = f->tenant != NULL;
    if (f->tenant)
        snprintf(q->owner, sizeof(q->owner), "%s", f->tenant);
    q->error_type = f->error_type;
    q->since_us = f->since_us;
    q->limit = max;
    int rc = pgs__request(s, q, REQUEST_WAIT_MS);
    if (rc == -ETIMEDOUT)
        return rc;
    if (rc == 0) {
        *views = q->views;
        *specs = q->specs;
        *n = q->n;
        q->views = NULL, q->specs = NULL;
        q->n = q->nspecs = 0;
    }
    pgs__req_free(q);
    return rc;
}
