/*
 * test_idempotency.c — the map of Idempotency-Keys: a key is found with its digest and
 * job until it expires; the same key of another tenant is another entry; expired keys
 * are dropped in order and a key used again after expiry replaces the old entry; the
 * table grows past its first buckets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/records/records.h"

static const uint8_t D1[JOB_IDEM_DIGEST_BYTES] = {1}, D2[JOB_IDEM_DIGEST_BYTES] = {2};
#define ID_A "0123456789abcdef0123456789abcdef"
#define ID_B "fedcba9876543210fedcba9876543210"

static void add(struct idem_map *m, const char *owner, const char *key, const uint8_t *d,
                const char *id, int64_t expires)
{
    struct idem_entry *e = pool__idem_entry_new(owner, key, d, id, expires);
    assert_non_null(e);
    pool__idem_insert(m, e);
}

static void idem__same_key__found_with_digest_and_job(void **state)
{
    (void)state;
    struct idem_map m;
    assert_int_equal(pool__idem_init(&m), 0);
    add(&m, "alice", "k1", D1, ID_A, 1000);
    struct idem_entry *e = pool__idem_find(&m, "alice", "k1", 10);
    assert_non_null(e);
    assert_string_equal(e->id, ID_A);
    assert_memory_equal(e->digest, D1, sizeof(D1));
    assert_memory_not_equal(e->digest, D2, sizeof(D2)); /* what the pool calls a conflict */
    assert_null(pool__idem_find(&m, "alice", "k2", 10));
    pool__idem_free(&m);
}

static void idem__other_tenant__no_collision(void **state)
{
    (void)state;
    struct idem_map m;
    assert_int_equal(pool__idem_init(&m), 0);
    add(&m, "alice", "k", D1, ID_A, 1000);
    assert_null(pool__idem_find(&m, "bob", "k", 10));
    /* "a" + "bk" and "ab" + "k" are not the same pair either. */
    add(&m, "a", "bk", D1, ID_A, 1000);
    assert_null(pool__idem_find(&m, "ab", "k", 10));
    add(&m, "bob", "k", D2, ID_B, 1000);
    assert_string_equal(pool__idem_find(&m, "alice", "k", 10)->id, ID_A);
    assert_string_equal(pool__idem_find(&m, "bob", "k", 10)->id, ID_B);
    assert_int_equal(pool__idem_count(&m), 3);
    pool__idem_free(&m);
}

static void idem__expiry__dropped_in_order_and_replaced(void **state)
{
    (void)state;
    struct idem_map m;
    assert_int_equal(pool__idem_init(&m), 0);
    add(&m, "t", "late", D1, ID_A, 300);
    add(&m, "t", "early", D1, ID_A, 100); /* out of order: sorted in */
    add(&m, "t", "mid", D1, ID_A, 200);
    assert_null(pool__idem_find(&m, "t", "early", 100)); /* expired at its time */
    assert_non_null(pool__idem_find(&m, "t", "mid", 100));
    assert_int_equal(pool__idem_expire(&m, 150), 1);
    assert_int_equal(pool__idem_count(&m), 2);
    assert_int_equal(pool__idem_expire(&m, 250), 1);
    assert_non_null(pool__idem_find(&m, "t", "late", 250));
    /* Expired but not yet dropped, then used again: the new entry replaces it. */
    add(&m, "t", "late", D2, ID_B, 900);
    assert_int_equal(pool__idem_count(&m), 1);
    assert_string_equal(pool__idem_find(&m, "t", "late", 400)->id, ID_B);
    assert_int_equal(pool__idem_expire(&m, 1000), 1);
    assert_int_equal(pool__idem_count(&m), 0);
    pool__idem_free(&m);
}

static void idem__many_keys__all_found(void **state)
{
    (void)state;
    struct idem_map m;
    assert_int_equal(pool__idem_init(&m), 0);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        add(&m, "t", key, D1, ID_A, 1000 + i);
    }
    assert_true(m.nbuckets > 64);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_non_null(pool__idem_find(&m, "t", key, 0));
    }
    assert_int_equal(pool__idem_expire(&m, 1000 + 2500), 2501);
    assert_int_equal(pool__idem_count(&m), 2499);
    pool__idem_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idem__same_key__found_with_digest_and_job),
        cmocka_unit_test(idem__other_tenant__no_collision),
        cmocka_unit_test(idem__expiry__dropped_in_order_and_replaced),
        cmocka_unit_test(idem__many_keys__all_found),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
