/*
 * cron.h — 5-field cron expressions for recurring schedules (the "cron" of
 * POST /v1/schedules): parsing, with errors a client can act on, and the next
 * fire time in a zone's local wall time. A parsed expression is a plain value (no
 * allocation, no global state), so any thread may use it.
 *
 * Syntax, per field (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or
 * JAN-DEC, day of week 0-7 or SUN-SAT, 0 and 7 both Sunday; names in any case):
 * '*', n, a-b, '*' or a-b followed by /step (every 5 minutes: '*' '/' '5'), and
 * comma lists of those. Fields are separated by spaces or tabs. Macros: @yearly
 * (@annually) "0 0 1 1 *", @monthly "0 0 1 * *", @weekly "0 0 * * 0", @daily
 * (@midnight) "0 0 * * *", @hourly "0 * * * *".
 *
 * Days (Vixie cron's rule): when the day-of-month or the day-of-week field starts
 * with '*' (a step over '*' too), a day must match both; when neither does, either.
 * "0 0 1,15 * MON" runs on the 1st, the 15th and every Monday.
 */
#ifndef PYJOBD_CRON_H
#define PYJOBD_CRON_H

#include <stdint.h>
#include <stddef.h>

#include "pyjobd/tzif.h"

/* cron_next looks this far ahead (from after, in local time) before giving up. So
 * "0 0 29 2 *" asked after any time from 2096-02-29 to 2099-02-28 gets -ERANGE, 2100
 * not being a leap year (8 years would cover every leap day). */
#define CRON_HORIZON_YEARS 5

/* The sets of values each field matches, one bit per value. */
struct cron {
    uint64_t minutes; /* bit m: minute m, 0-59 */
    uint32_t hours;   /* bit h: hour h, 0-23 */
    uint32_t days;    /* bit d: day of month d, 1-31 */
    uint16_t months;  /* bit m: month m, 1-12 */
    uint8_t weekdays; /* bit d: weekday d, 0 (Sunday)-6 */
    uint8_t flags;    /* CRON_DOM_STAR, CRON_DOW_STAR: the field started with '*' */
};
#define CRON_DOM_STAR 1
#define CRON_DOW_STAR 2

/* Parses expr into *out. 0, or -EINVAL with err naming the field and the 1-based
 * character of the problem ("field 3 (day of month) at character 5: 32 is out of
 * range 1-31"); the text quotes only printable ASCII, so it can go to a client as is. */
int cron_parse(const char *expr, struct cron *out, char *err, size_t errlen);

/* The first instant strictly after after_utc_seconds whose wall time in z (NULL: UTC)
 * matches c, at second 0 of its minute, into *next_utc_seconds. 0; -ERANGE when there
 * is none within CRON_HORIZON_YEARS ("0 0 30 2 *"); -EINVAL when after is outside the
 * years 1-9999 or c matches nothing; *next_utc_seconds is left alone on an error. No
 * allocation; steps by months, days and hours (a few thousand at most), not minutes.
 *
 * Daylight saving time: a wall time the clocks skip (Paris, 2026-03-29 02:00-02:59)
 * fires at the first instant after the gap (03:00 CEST, 01:00Z), as cronie runs the
 * jobs of the skipped hour right after it; several skipped times fire once there. A
 * wall time that occurs twice (2026-10-25 02:00-02:59) fires once, at its first
 * occurrence (CEST). So an hourly "0 * * * *" fires 23 times on the spring day and 24
 * times over the 25 hours of the autumn one; a fixed interval is "every", not cron. */
int cron_next(const struct cron *c, const struct tz *z, int64_t after_utc_seconds,
              int64_t *next_utc_seconds);

#endif
