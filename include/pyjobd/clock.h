/*
 * clock.h — the one clock helper every layer uses: monotonic milliseconds for
 * deadlines and durations, the wall clock for timestamps, and the absolute
 * CLOCK_REALTIME deadline that pthread_cond_timedwait wants.
 */
#ifndef PYJOBD_CLOCK_H
#define PYJOBD_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in milliseconds: the clock of every deadline (pool_watch, waits). */
int64_t clock_now_ms(void);

/* CLOCK_REALTIME in microseconds since the epoch. */
int64_t clock_real_us(void);

/* Microseconds of a CLOCK_REALTIME timestamp; {0,0} (never set) gives 0. */
int64_t clock_ts_us(struct timespec t);

/* Fills *ts with CLOCK_REALTIME now + ms (for pthread_cond_timedwait); returns ms. */
int64_t clock_deadline_in(struct timespec *ts, int64_t ms);

#endif
