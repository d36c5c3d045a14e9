/*
 * clock.c — see include/pyjobd/clock.h.
 */
#include "pyjobd/clock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int64_t clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_ts_us(struct timespec t)
{
    return t.tv_sec || t.tv_nsec ? (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000 : 0;
}

int64_t clock_real_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return clock_ts_us(ts);
}

int64_t clock_deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
    return ms;
}

int clock_format(const struct timespec *ts, char buf[CLOCK_TEXT_LEN])
{
    struct tm tm;
    if ((ts->tv_sec == 0 && ts->tv_nsec == 0) || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L ||
        !gmtime_r(&ts->tv_sec, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
        return -EINVAL;
    /* The modulos are no-ops after the range check; they let the compiler see it. */
    snprintf(buf, CLOCK_TEXT_LEN, "%04u-%02u-%02uT%02u:%02u:%02u.%06luZ",
             (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
             (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
             (unsigned)tm.tm_sec % 100u, (unsigned long)(ts->tv_nsec / 1000) % 1000000ul);
    return 0;
}

struct timespec clock_us_ts(int64_t us)
{
    struct timespec ts = {.tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000};
    return ts;
}

/* n decimal digits at s[*i] in [lo, hi], advanced past them; -1 when one is not a
 * digit (*i at it) or the value is out of range (*i back at the field's start). */
static int clock_digits(const char *s, size_t *i, int n, int lo, int hi)
{
    size_t start = *i;
    int v = 0;
    for (int k = 0; k < n; k++, (*i)++) {
        if (s[*i] < '0' || s[*i] > '9')
            return -1;
        v = v * 10 + (s[*i] - '0');
    }
    if (v < lo || v > hi) {
        *i = start;
        return -1;
    }
    return v;
}

static int clock_expect(const char *s, size_t *i, const char *one_of)
{
    if (!s[*i] || !strchr(one_of, s[*i]))
        return -1;
    (*i)++;
    return 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's formula). */
static int64_t clock_days(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int clock_parse(const char *s, int64_t *us, size_t *pos)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t i = 0;
    int y = clock_digits(s, &i, 4, 0, 9999), mo, d, h, mi, sec;
    if (y < 0 || clock_expect(s, &i, "-") || (mo = clock_digits(s, &i, 2, 1, 12)) < 0 ||
        clock_expect(s, &i, "-"))
        goto bad;
    int leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    if ((d = clock_digits(s, &i, 2, 1, mo == 2 && !leap ? 28 : mdays[mo - 1])) < 0)
        goto bad;
    if (clock_expect(s, &i, "Tt ") || (h = clock_digits(s, &i, 2, 0, 23)) < 0 ||
        clock_expect(s, &i, ":") || (mi = clock_digits(s, &i, 2, 0, 59)) < 0 ||
        clock_expect(s, &i, ":") || (sec = clock_digits(s, &i, 2, 0, 60)) < 0)
        goto bad;
    int64_t frac = 0;
    if (s[i] == '.') {
        i++;
        int n = 0;
        for (; s[i] >= '0' && s[i] <= '9'; i++, n++)
            if (n < 6)
                frac = frac * 10 + (s[i] - '0');
        if (n == 0 || n > 9)
            goto bad;
        for (; n < 6; n++)
            frac *= 10;
    }
    int64_t offset = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int sign = s[i++] == '-' ? -1 : 1, oh, om;
        if ((oh = clock_digits(s, &i, 2, 0, 23)) < 0 || clock_expect(s, &i, ":") ||
            (om = clock_digits(s, &i, 2, 0, 59)) < 0)
            goto bad;
        offset = sign * ((int64_t)oh * 3600 + om * 60);
    } else {
        goto bad;
    }
    if (s[i])
        goto bad;
    if (sec == 60)
        sec = 59; /* a leap second: its last representable instant */
    int64_t t = clock_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    *us = t * 1000000 + frac;
    return 0;
bad:
    if (pos)
        *pos = i;
    return -EINVAL;
}
