/*
 * wake.c — poking the supervisor's loop (an eventfd in its epoll set) from any thread:
 * something it must act on changed (a job queued, a waiter with a nearer deadline, a
 * resize, a stop).
 */
#include "sources.h"

#include <unistd.h>

void pool__wake(struct pool *p)
{
    uint64_t one = 1;
    ssize_t n = write(p->wakefd, &one, sizeof(one));
    (void)n; /* EAGAIN means a wake-up is already pending, which is all we need */
}

void pool__wake_on_commit(void *pool)
{
    struct pool *p = pool;
    if (__atomic_load_n(&p->gated, __ATOMIC_SEQ_CST) ||
        __atomic_load_n(&p->results_waiting, __ATOMIC_SEQ_CST))
        pool__wake(p);
}
