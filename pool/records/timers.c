/*
 * timers.c — the jobs waiting for a time: a scheduled job for its run_at, a pending
 * one for its expires_at. One timer per job at most (a heap node in the record), in
 * one min-heap on CLOCK_MONOTONIC ms that the supervisor sleeps on (lib/heap.c): a
 * hundred thousand scheduled jobs cost it O(log n) each, nothing per tick.
 */
#include "records.h"
#include "pyjobd/clock.h"

#include <stddef.h>

static struct job *job_of(struct heap_node *n)
{
    return (struct job *)((char *)n - offsetof(struct job, timer));
}

int64_t pool__real_to_mono_ms(int64_t real_us)
{
    int64_t in_us = real_us - clock_real_us();
    /* Rounded up, + 1 because clock_now_ms() truncates: a timer never fires before its
     * time (pool__job_due checks the wall clock besides). */
    return clock_now_ms() + (in_us > 0 ? (in_us + 999) / 1000 + 1 : 0);
}

int pool__timer_set(struct job_table *t, struct job *j, int64_t real_us)
{
    pool__timer_clear(t, j);
    if (heap_push(&t->timers, &j->timer, pool__real_to_mono_ms(real_us)) != 0)
        return -ENOMEM;
    j->timed = 1;
    return 0;
}

void pool__timer_clear(struct job_table *t, struct job *j)
{
    if (!j->timed)
        return;
    heap_remove(&t->timers, &j->timer);
    j->timed = 0;
}

struct job *pool__timer_due(const struct job_table *t, int64_t now_ms)
{
    struct heap_node *top = heap_top(&t->timers);
    return top && top->key <= now_ms ? job_of(top) : NULL;
}

int64_t pool__timer_next_ms(const struct job_table *t)
{
    struct heap_node *top = heap_top(&t->timers);
    return top ? top->key : INT64_MAX;
}
