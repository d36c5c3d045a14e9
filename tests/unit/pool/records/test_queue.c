/*
 * test_queue.c — pool/records/queue.c: per tenant a FIFO per priority, tenants in turns.
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
        order[i] = pool__tenant_first(tn);
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

static struct job *pjob(struct job_table *t, const char *owner, int n, int priority)
{
    struct job *j = job(t, owner, n);
    j->v.priority = priority;
    return j;
}

/* Serves the queue as the dispatcher does, removing each job; returns how many. */
static int drain(struct job_table *t, struct job **order, int max)
{
    int n = 0;
    struct tenant *tn;
    while (n < max && (tn = pool__turn_first(t))) {
        order[n] = pool__tenant_first(tn);
        assert_non_null(order[n]);
        pool__turn_served(t, tn);
        pool__queue_remove(t, order[n++]);
    }
    return n;
}

static void queue__higher_priority_first_then_oldest(void **state)
{
    (void)state;
    struct job_table t;
    assert_int_equal(pool__table_init(&t, 4), 0);
    struct job *j1 = pjob(&t, "alice", 1, 0), *j2 = pjob(&t, "alice", 2, 5);
    struct job *j3 = pjob(&t, "alice", 3, -3), *j4 = pjob(&t, "alice", 4, 5);
    struct job *j5 = pjob(&t, "alice", 5, 0), *j6 = pjob(&t, "alice", 6, 100);
    struct job *all[6] = {j1, j2, j3, j4, j5, j6};
    for (int i = 0; i < 6; i++)
        assert_int_equal(pool__queue_push(&t, all[i]), 0);
    assert_ptr_equal(pool__queue_first(&t), j6);
    struct job *order[6];
    assert_int_equal(drain(&t, order, 6), 6);
    struct job *want[6] = {j6, j2, j4, j1, j5, j3};
    for (int i = 0; i < 6; i++)
        assert_ptr_equal(order[i], want[i]);
    struct tenant *alice = pool__tenant_find(&t, "alice");
    assert_true(TAILQ_EMPTY(&alice->levels)); /* empty levels leave */
    assert_int_equal(t.nqueued, 0);
    pool__table_free(&t);
}

static void queue__tenants_take_turns_before_priorities(void **state)
{
    (void)state;
    struct job_table t;
    assert_int_equal(pool__table_init(&t, 4), 0);
    /* Alice's jobs all outrank Bob's: the turns still alternate. */
    struct job *a1 = pjob(&t, "alice", 1, 50), *a2 = pjob(&t, "alice", 2, 90);
    struct job *b1 = pjob(&t, "bob", 3, -10), *b2 = pjob(&t, "bob", 4, 0);
    struct job *a3 = pjob(&t, "alice", 5, 90);
    struct job *all[5] = {a1, a2, b1, b2, a3};
    for (int i = 0; i < 5; i++)
        pool__queue_push(&t, all[i]);
    struct job *order[5];
    assert_int_equal(drain(&t, order, 5), 5);
    struct job *want[5] = {a2, b2, a3, b1, a1};
    for (int i = 0; i < 5; i++)
        assert_ptr_equal(order[i], want[i]);
    pool__table_free(&t);
}

static void queue__requeued_jobs_keep_their_priority(void **state)
{
    (void)state;
    struct job_table t;
    assert_int_equal(pool__table_init(&t, 4), 0);
    struct job *lo = pjob(&t, "alice", 1, -5), *hi = pjob(&t, "alice", 2, 7);
    struct job *mid = pjob(&t, "alice", 3, 0), *hi2 = pjob(&t, "alice", 4, 7);
    pool__queue_push(&t, hi);
    pool__queue_push(&t, mid);
    /* A retry goes to the head of its own priority, not before higher ones. */
    pool__queue_push_front(&t, lo);
    assert_ptr_equal(pool__queue_first(&t), hi);
    pool__queue_push_front(&t, hi2);
    struct job *order[4];
    assert_int_equal(drain(&t, order, 4), 4);
    struct job *want[4] = {hi2, hi, mid, lo};
    for (int i = 0; i < 4; i++)
        assert_ptr_equal(order[i], want[i]);
    /* Recovery re-queues in creation order: each keeps its priority. */
    for (int i = 0; i < 4; i++)
        pool__queue_push(&t, (struct job *[]){lo, hi, mid, hi2}[i]);
    assert_int_equal(drain(&t, order, 4), 4);
    struct job *want2[4] = {hi, hi2, mid, lo};
    for (int i = 0; i < 4; i++)
        assert_ptr_equal(order[i], want2[i]);
    pool__table_free(&t);
}

static void queue__remove_from_the_middle_of_a_level(void **state)
{
    (void)state;
    struct job_table t;
    assert_int_equal(pool__table_init(&t, 4), 0);
    struct job *a = pjob(&t, "alice", 1, 3), *b = pjob(&t, "alice", 2, 3);
    struct job *c = pjob(&t, "alice", 3, 1);
    pool__queue_push(&t, a);
    pool__queue_push(&t, b);
    pool__queue_push(&t, c);
    pool__queue_remove(&t, b); /* a cancel */
    pool__queue_remove(&t, b); /* no-op */
    pool__queue_remove(&t, a);
    assert_ptr_equal(pool__queue_first(&t), c);
    assert_int_equal(t.nqueued, 1);
    pool__table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue__tenants_take_turns_each_in_its_order),
        cmocka_unit_test(queue__retry_goes_first_in_turns_and_in_its_tenant),
        cmocka_unit_test(queue__higher_priority_first_then_oldest),
        cmocka_unit_test(queue__tenants_take_turns_before_priorities),
        cmocka_unit_test(queue__requeued_jobs_keep_their_priority),
        cmocka_unit_test(queue__remove_from_the_middle_of_a_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
