/*
 * test_pg_sql.c — decoding the PostgreSQL store's binary result rows (pool/store/pg/
 * pg_sql.c) without a server: rows are built with libpq's PQmakeEmptyPGresult /
 * PQsetResultAttrs / PQsetvalue in the binary formats the server sends (network
 * order integers of 2, 4 and 8 bytes, IEEE doubles, raw text and bytea).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "pool/store/pg/pg_sql.h"

#define NCOLS (PG_VIEW_NCOLS + 4)

static PGresult *empty_result(int ncols)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[NCOLS + 7];
    memset(attrs, 0, sizeof(attrs));
    static char names[NCOLS + 7][16];
    for (int i = 0; i < ncols; i++) {
        snprintf(names[i], sizeof(names[i]), "c%u", (unsigned)i % 1000u);
        attrs[i].name = names[i];
        attrs[i].format = 1;
    }
    assert_int_equal(PQsetResultAttrs(r, ncols, attrs), 1);
    return r;
}

static void set_int(PGresult *r, int col, int64_t v, int len)
{
    unsigned char b[8];
    uint64_t u = (uint64_t)v;
    for (int i = len - 1; i >= 0; i--, u >>= 8)
        b[i] = (unsigned char)(u & 0xff);
    assert_int_equal(PQsetvalue(r, 0, col, (char *)b, len), 1);
}

static void set_text(PGresult *r, int col, const char *s)
{
    assert_int_equal(PQsetvalue(r, 0, col, (char *)s, (int)strlen(s)), 1);
}

static void set_null(PGresult *r, int col)
{
    assert_int_equal(PQsetvalue(r, 0, col, NULL, -1), 1);
}

static void set_f64(PGresult *r, int col, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, 8);
    bits = htobe64(bits);
    assert_int_equal(PQsetvalue(r, 0, col, (char *)&bits, 8), 1);
}

/* A failed job as the database has it: negative integers must come back negative. */
static PGresult *failed_job_row(void)
{
    PGresult *r = empty_result(NCOLS);
    set_text(r, 0, "0123456789abcdef0123456789abcdef");
    set_int(r, 1, JOB_FAILED, 2);
    set_text(r, 2, "alice");
    set_text(r, 3, "host-1a2b3c4d");
    set_int(r, 4, 1764000000123456LL, 8);
    set_int(r, 5, 1764000001000000LL, 8);
    set_int(r, 6, 1764000002500000LL, 8);
    set_f64(r, 7, 2.5);
    set_int(r, 8, 2, 4);
    set_int(r, 9, 4242, 4);
    set_int(r, 10, 1, 4);
    set_null(r, 11);
    set_int(r, 12, JOB_ERR_NODE_LOST, 2);
    set_text(r, 13, "presumed dead");
    set_null(r, 14);
    set_int(r, 15, -1, 4);
    set_int(r, 16, 0, 4);
    set_int(r, 17, -1, 8);
    set_int(r, 18, 77, 8);
    set_int(r, 19, -5, 2);                 /* priority: a smallint */
    set_f64(r, 20, 0.75);                  /* soft_timeout */
    set_int(r, 21, 1764000000500000LL, 8); /* run_at_us */
    set_int(r, 22, 0, 8);                  /* expires_at_us */
    set_int(r, 23, 0, 8);                  /* next_attempt_us */
    set_text(r, 24, "ConnectionError\nmymod.Transient");
    set_null(r, 25);
    set_f64(r, 26, 1.0);
    set_f64(r, 27, 2.0);
    set_f64(r, 28, 300.0);
    set_int(r, 29, 1 | 4 | 8, 4); /* jitter, no_node_lost, given */
    set_text(r, 30, "1764000000600000 1764000000900000 4241 1 ConnectionError: down\n");
    set_text(r, 31, "fedcba9876543210fedcba9876543210"); /* rerun_of */
    set_text(r, 32, "not an id");                        /* schedule: refused */
    set_null(r, PG_VIEW_NCOLS);
    set_null(r, PG_VIEW_NCOLS + 1);
    set_text(r, PG_VIEW_NCOLS + 2, "\x80\x04pickled");
    set_text(r, PG_VIEW_NCOLS + 3, "Traceback ...");
    return r;
}

static void row_view__failed_job__every_field(void **state)
{
    (void)state;
    PGresult *r = failed_job_row();
    struct job_view v;
    uint64_t seq = 0;
    assert_int_equal(pg_row_view(r, 0, 1, &v, &seq), 0);
    assert_string_equal(v.id, "0123456789abcdef0123456789abcdef");
    assert_int_equal(v.status, JOB_FAILED);
    assert_string_equal(v.owner, "alice");
    assert_string_equal(v.node, "host-1a2b3c4d");
    assert_int_equal(v.created_at.tv_sec, 1764000000);
    assert_int_equal(v.created_at.tv_nsec, 123456000);
    assert_int_equal(v.finished_at.tv_nsec, 500000000);
    assert_true(v.timeout == 2.5);
    assert_int_equal(v.attempts, 2);
    assert_int_equal(v.worker_pid, 4242);
    assert_int_equal(v.max_retries, 1);
    assert_null(v.metadata);
    assert_int_equal(v.error.type, JOB_ERR_NODE_LOST);
    assert_string_equal(v.error.message, "presumed dead");
    assert_null(v.error.exc_type);
    assert_int_equal(v.error.exit_code, -1);
    assert_int_equal(v.error.max_rss_bytes, -1);
    assert_int_equal(seq, 77);
    assert_int_equal(v.priority, -5);
    assert_true(v.soft_timeout == 0.75);
    assert_int_equal(v.run_at_us, 1764000000500000LL);
    assert_int_equal(v.expires_at_us, 0);
    assert_string_equal(v.retry.on, "ConnectionError\nmymod.Transient");
    assert_null(v.retry.not_on);
    assert_true(v.retry.initial == 1.0 && v.retry.factor == 2.0 && v.retry.max_delay == 300.0);
    assert_true(v.retry.jitter && !v.retry.no_crash && v.retry.no_node_lost && v.retry.given);
    assert_false(v.retry_on_timeout);
    assert_int_equal(v.nhistory, 1);
    assert_int_equal(v.history[0].worker_pid, 4241);
    assert_int_equal(v.history[0].error, JOB_ERR_EXCEPTION);
    assert_string_equal(v.history[0].message, "ConnectionError: down");
    assert_string_equal(v.rerun_of, "fedcba9876543210fedcba9876543210");
    assert_string_equal(v.schedule, "");
    assert_null(v.result);
    assert_non_null(v.error.exception);
    assert_int_equal(blob_len(v.error.exception), 9);
    assert_string_equal(v.error.traceback, "Traceback ...");
    job_view_release(&v);
    PQclear(r);
}

static void row_view__bad_id_or_out_of_range_enums__safe(void **state)
{
    (void)state;
    PGresult *r = failed_job_row();
    set_int(r, 1, 99, 2);  /* unknown status: a failure, never an out-of-range enum */
    set_int(r, 12, -3, 2); /* unknown error type */
    struct job_view v;
    assert_int_equal(pg_row_view(r, 0, 1, &v, NULL), 0);
    assert_int_equal(v.status, JOB_FAILED);
    assert_int_equal(v.error.type, JOB_ERR_EXCEPTION);
    job_view_release(&v);
    set_text(r, 0, "short");
    assert_int_equal(pg_row_view(r, 0, 1, &v, NULL), -EPROTO);
    PQclear(r);
    /* A result without the result columns cannot be read as a full view. */
    r = empty_result(PG_VIEW_NCOLS);
    assert_int_equal(pg_row_view(r, 0, 1, &v, NULL), -EPROTO);
    PQclear(r);
}

static void row_spec__payload__blobs_and_flags(void **state)
{
    (void)state;
    PGresult *r = empty_result(PG_PAYLOAD_NCOLS);
    set_text(r, 0, "callable-bytes");
    set_null(r, 1);
    set_text(r, 2, "kw");
    set_null(r, 3);
    set_text(r, 4, "{\"a\": 1}");
    set_int(r, 5, 1, 1);
    set_int(r, 6, 0, 1);
    set_int(r, 7, 100, 2);
    set_f64(r, 8, 12.5);
    struct job_spec spec;
    assert_int_equal(pg_row_spec(r, 0, 0, &spec), 0);
    assert_int_equal(blob_len(spec.callable), 14);
    assert_null(spec.args);
    assert_memory_equal(blob_data(spec.kwargs), "kw", 2);
    assert_null(spec.json_args);
    assert_int_equal(blob_len(spec.json_kwargs), 8);
    assert_int_equal(spec.retry_on_timeout, 1);
    assert_int_equal(spec.result_json, 0);
    assert_int_equal(spec.priority, 100);
    assert_true(spec.soft_timeout == 12.5);
    job_spec_release(&spec);
    PQclear(r);
    r = empty_result(PG_PAYLOAD_NCOLS - 2); /* a row without the options: refused */
    set_text(r, 0, "callable-bytes");
    assert_int_equal(pg_row_spec(r, 0, 0, &spec), -EPROTO);
    PQclear(r);
    r = empty_result(PG_PAYLOAD_NCOLS);
    set_null(r, 0); /* no callable: refused */
    assert_int_equal(pg_row_spec(r, 0, 0, &spec), -EPROTO);
    PQclear(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(row_view__failed_job__every_field),
        cmocka_unit_test(row_view__bad_id_or_out_of_range_enums__safe),
        cmocka_unit_test(row_spec__payload__blobs_and_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
