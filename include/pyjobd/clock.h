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

/* A CLOCK_REALTIME timestamp as RFC 3339 in UTC with microseconds
 * ("2026-12-01T17:30:43.662423Z"). 0, or -EINVAL for {0,0} or a year beyond 9999. */
#define CLOCK_TEXT_LEN 32
int clock_format(const struct timespec *ts, char buf[CLOCK_TEXT_LEN]);

/* Parses an RFC 3339 date-time ("2026-12-01T17:30:43Z", "...43.5+01:00"; 'T' or 't'
 * or a space, 'Z' or 'z' or an offset; up to 9 fraction digits, kept to the
 * microsecond) into microseconds since the epoch. 0, or -EINVAL with *pos the offset
 * of the first character that is wrong. */
int clock_parse(const char *s, int64_t *us, size_t *pos);

/* The timespec of microseconds since the epoch. */
struct timespec clock_us_ts(int64_t us);

#endif
