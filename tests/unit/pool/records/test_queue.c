/*
 * test_queue.c — pool/records/queue.c: one FIFO per tenant, tenants in turns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "pool/records/records.h"

static struct job *job(struct job_table *t, const char *owner, int n)
{
    char id[JOB_ID_LEN + 1];
    snprintf(id, sizeof(id), "%032x", n);
    struct job *j = pool__job_new(id);
    assert_non_null(j);
    snprintf(j->v.owner, sizeof(j->v.owner), "%s", owner);
    assert_int_equal(pool__table_insert(t, j), 0);
    return j;
}

static void queue__tenants_take_turns_each_in_its_order(void **state)
{
    (void)state;
    struct job_table t;
    assert_int_equal(pool__table_init(&t, 4), 0);
    struct job *a1 = job(&t, "alice", 1), *a2 = job(&t, "alice", 2), *a3 = job(&t, "alice", 3);
    struct job *b1 = job(&t, "bob", 4), *b2 = job(&t, "bob", 5);
    pool__queue_push(&t, a1);
    pool__queue_push(&t, a2);
    pool__queue_push(&t, a3);
    pool__queue_push(&t, b1);
    pool__queue_push(&t, b2);
    assert_int_equal(t.nqueued, 5);
    /* Serve the turns as the dispatcher does: head of the first tenant, then it goes
     * to the back. */
    struct job *order[5];
    for (int i = 0; i < 5; i++) {
        struct tenant *tn = pool__turn_first(&t);
        assert_non_null(tn);
        order[i] = TAILQ_FIRST(&tn->queue);
        pool__turn_served(&t, tn);
        pool__queue_remove(&t, order[i]);
    }
    struct job *want[5] = {a1, b1, a2, b2, a3};
    for (int i = 0; i < 5; i++)
        assert_ptr_equal(order[i], want[i]);
    assert_null(pool__queue_first(&t));
    assert_null(pool__turn_first(&t));
    assert_int_equal(t.nqueued, 0);
    struct tenant *alice = pool__tenant_find(&t, "alice");
    assert_non_null(alice);
    assert_int_equal(alice->queued, 0);
    assert_false(alice->in_turn);
    pool__table_free(&t);
}

static void queue__retry_goes_first_in_turns_and_in_its_tenant(void **state)
{
    (void)state;
    struct job_table t;
    assert_int_equal(pool__table_init(&t, 4), 0);
    struct job *a1 = job(&t, "alice", 1), *b1 = job(&t, "bob", 2), *b2 = job(&t, "bob", 3);
    pool__queue_push(&t, a1);
    pool__queue_push(&t, b1);
    pool__queue_push_front(&t, b2); /* bob's retried job: bob already in turn, b2 first */
    assert_ptr_equal(pool__queue_first(&t), a1);
    pool__queue_remove(&t, a1);
    assert_ptr_equal(pool__queue_first(&t), b2);
    struct job *c1 = job(&t, "carol", 4);
    pool__queue_push_front(&t, c1); /* a new tenant's retried job takes the first turn */
    assert_ptr_equal(pool__queue_first(&t), c1);
    assert_ptr_equal(c1->tenant, pool__tenant_find(&t, "carol"));
    pool__table_free(&t); /* frees queued records too */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue__tenants_take_turns_each_in_its_order),
        cmocka_unit_test(queue__retry_goes_first_in_turns_and_in_its_tenant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
