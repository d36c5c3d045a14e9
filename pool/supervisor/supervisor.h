/*
 * supervisor.h — the pool's thread (supervisor.c): started by pool_new, stopped by
 * pool_stop (p->stopping and a wake), it runs the event sources of ../sources/.
 */
#ifndef PYJOBD_POOL_SUPERVISOR_H
#define PYJOBD_POOL_SUPERVISOR_H

#include "../sources/sources.h"

/* The thread's body (pthread_create): arg is the struct pool. */
void *pool__supervisor_main(void *arg);

#endif
