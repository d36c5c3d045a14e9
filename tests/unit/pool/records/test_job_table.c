/*
 * test_job_table.c — pool/records/job_table.c and tombstones.c: the done list's held
 * list counts the bytes of results finished records hold (result, result_json, the
 * exception pickle), oldest first, and forgets them when a record leaves it or drops
 * its results; a tombstone remembers why its job went, and a lookup says so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pool/records/records.h"

static struct job *job(struct job_table *t, int n)
{
    char id[JOB_ID_LEN + 1];
    snprintf(id, sizeof(id), "%032x", n);
    struct job *j = pool__job_new(id);
    assert_non_null(j);
    assert_int_equal(pool__table_insert(t, j), 0);
    return j;
}

static struct blob *bytes(size_t n)
{
    struct blob *b = blob_new(n);
    assert_non_null(b);
    memset(blob_mutable_data(b), 'r', n);
    return b;
}

static void held__counts_every_kind_of_result_oldest_first(void **state)
{
    (void)state;
    struct job_table t;
    assert_int_equal(pool__table_init(&t, 4), 0);
    struct job *a = job(&t, 1), *b = job(&t, 2), *c = job(&t, 3), *none = job(&t, 4);
    a->v.result = bytes(100);
    b->v.result_json = bytes(20);
    c->v.error.exception = bytes(7);
    pool__done_add(&t, a, 1);
    pool__done_add(&t, none, 2); /* no results: on the done list, not the held one */
    pool__done_add(&t, b, 3);
    pool__done_add(&t, c, 4);
    assert_int_equal(t.results_bytes, 127);
    assert_ptr_equal(pool__held_first(&t), a);
    assert_ptr_equal(TAILQ_NEXT(a, held_link), b);
    assert_ptr_equal(TAILQ_NEXT(b, held_link), c);
    assert_null(TAILQ_NEXT(c, held_link));
    assert_ptr_equal(pool__done_first(&t), a);

    /* Dropping results: the record stays done, its bytes say what left memory. */
    pool__held_drop(&t, a);
    assert_null(a->v.result);
    assert_int_equal(a->results_out, 100);
    assert_int_equal(a->held_bytes, 0);
    assert_int_equal(t.results_bytes, 27);
    assert_ptr_equal(pool__held_first(&t), b);
    assert_ptr_equal(pool__done_first(&t), a);

    /* Leaving the table (or the done list) takes what it held off the count. */
    pool__table_remove(&t, b, JOB_GONE_FORGOTTEN);
    pool__job_free(b);
    assert_int_equal(t.results_bytes, 7);
    pool__done_remove(&t, c);
    assert_int_equal(t.results_bytes, 0);
    assert_null(pool__held_first(&t));
    /* Joining it again counts again (a record is on it at most once). */
    pool__done_add(&t, c, 5);
    pool__done_add(&t, c, 6);
    assert_int_equal(t.results_bytes, 7);
    pool__table_free(&t);
}

static void tombstones__remember_why__lookup_says_so(void **state)
{
    (void)state;
    struct job_table t;
    assert_int_equal(pool__table_init(&t, 2), 0);
    struct job *a = job(&t, 1), *b = job(&t, 2), *c = job(&t, 3), *d = job(&t, 4);
    char ida[JOB_ID_LEN + 1], idb[JOB_ID_LEN + 1], idc[JOB_ID_LEN + 1], idd[JOB_ID_LEN + 1];
    memcpy(ida, a->v.id, sizeof(ida));
    memcpy(idb, b->v.id, sizeof(idb));
    memcpy(idc, c->v.id, sizeof(idc));
    memcpy(idd, d->v.id, sizeof(idd));
    pool__table_remove(&t, a, JOB_GONE_EXPIRED);
    pool__table_remove(&t, b, JOB_GONE_RESULTS);
    pool__table_remove(&t, c, JOB_GONE_FORGOTTEN);
    pool__job_free(a);
    pool__job_free(b);
    pool__job_free(c);
    int err = 0;
    assert_null(pool__table_find(&t, ida, &err));
    assert_int_equal(err, -ESTALE);
    assert_null(pool__table_find(&t, idb, &err));
    assert_int_equal(err, -ENOBUFS);
    assert_null(pool__table_find(&t, idc, &err));
    assert_int_equal(err, -ENOENT);
    /* The ring holds 2: the oldest goes, the others keep their own reasons. */
    pool__table_remove(&t, d, JOB_GONE_EXPIRED);
    pool__job_free(d);
    assert_null(pool__table_find(&t, ida, &err));
    assert_int_equal(err, -ENOENT);
    assert_int_equal(pool__tombstones_find(&t.expired, idb), JOB_GONE_RESULTS);
    assert_int_equal(pool__tombstones_find(&t.expired, idd), JOB_GONE_EXPIRED);
    pool__table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(held__counts_every_kind_of_result_oldest_first),
        cmocka_unit_test(tombstones__remember_why__lookup_says_so),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
