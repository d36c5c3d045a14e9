/*
 * test_registry.c — the in-memory job registry: insert/find/remove, duplicates,
 * growth past many records, tombstone reuse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "pyjobd/job.h"
#include "pyjobd/registry.h"

static void make_id(char *id, unsigned n)
{
    snprintf(id, JOB_ID_LEN + 1, "%08x%024x", n * 2654435761u, n);
}

static void registry__insert_find_remove__round_trip(void **state)
{
    (void)state;
    struct registry *r = registry_new();
    int a, b;
    assert_int_equal(registry_insert(r, "0123456789abcdef0123456789abcdef", &a), 0);
    assert_int_equal(registry_insert(r, "fedcba9876543210fedcba9876543210", &b), 0);
    assert_int_equal(registry_insert(r, "0123456789abcdef0123456789abcdef", &b), -EEXIST);
    assert_int_equal(registry_insert(r, "short", &b), -EINVAL);
    assert_ptr_equal(registry_find(r, "0123456789abcdef0123456789abcdef"), &a);
    assert_ptr_equal(registry_find(r, "fedcba9876543210fedcba9876543210"), &b);
    assert_null(registry_find(r, "00000000000000000000000000000000"));
    assert_int_equal(registry_count(r), 2);
    assert_ptr_equal(registry_remove(r, "0123456789abcdef0123456789abcdef"), &a);
    assert_null(registry_find(r, "0123456789abcdef0123456789abcdef"));
    assert_null(registry_remove(r, "0123456789abcdef0123456789abcdef"));
    assert_int_equal(registry_count(r), 1);
    registry_free(r);
}

static void count_cb(void *rec, void *arg)
{
    (void)rec;
    (*(size_t *)arg)++;
}

static void registry__many_records_with_churn__all_found(void **state)
{
    (void)state;
    struct registry *r = registry_new();
    enum { N = 50000 };
    static int recs[N];
    char id[JOB_ID_LEN + 1];
    for (unsigned i = 0; i < N; i++) {
        make_id(id, i);
        assert_int_equal(registry_insert(r, id, &recs[i]), 0);
    }
    /* Remove every other one, then insert them again: tombstones must not break probes. */
    for (unsigned i = 0; i < N; i += 2) {
        make_id(id, i);
        assert_ptr_equal(registry_remove(r, id), &recs[i]);
    }
    assert_int_equal(registry_count(r), N / 2);
    for (unsigned i = 0; i < N; i++) {
        make_id(id, i);
        if (i % 2 == 0)
            assert_null(registry_find(r, id));
        else
            assert_ptr_equal(registry_find(r, id), &recs[i]);
    }
    for (unsigned i = 0; i < N; i += 2) {
        make_id(id, i);
        assert_int_equal(registry_insert(r, id, &recs[i]), 0);
    }
    size_t seen = 0;
    registry_foreach(r, count_cb, &seen);
    assert_int_equal(seen, N);
    registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(registry__insert_find_remove__round_trip),
        cmocka_unit_test(registry__many_records_with_churn__all_found),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
