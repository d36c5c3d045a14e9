/*
 * cron.c — see include/pyjobd/cron.h.
 */
#include "pyjobd/cron.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const cron_month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                               "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const cron_day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

static const struct cron_field {
    const char *name;
    int lo, hi;
    const char *const *names; /* names[k] is the value first_name + k */
    int first_name, nnames;
    const char *name_range;
} cron_fields[5] = {
    {"minute", 0, 59, NULL, 0, 0, NULL},
    {"hour", 0, 23, NULL, 0, 0, NULL},
    {"day of month", 1, 31, NULL, 0, 0, NULL},
    {"month", 1, 12, cron_month_names, 1, 12, "JAN-DEC"},
    {"day of week", 0, 7, cron_day_names, 0, 7, "SUN-SAT"},
};

#define CRON_FIELDS_HELP "minute hour day-of-month month day-of-week"

/* The first year and the last second of the year 9999 cron_next accepts. */
#define CRON_AFTER_MIN INT64_C(-62135596800)
#define CRON_AFTER_MAX INT64_C(253402300799)

struct cron_parser {
    const char *s;
    size_t i;
    int field; /* index into cron_fields, or -1 outside a field */
    char *err;
    size_t errlen;
};

/* Sets the error "field N (name) at character K: ...", K being 1-based, and returns
 * -EINVAL. */
static int cron_fail(struct cron_parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cron_fail(struct cron_parser *p, size_t at, const char *fmt, ...)
{
    if (!p->err || !p->errlen)
        return -EINVAL;
    int n = p->field < 0
                ? snprintf(p->err, p->errlen, "at character %zu: ", at + 1)
                : snprintf(p->err, p->errlen, "field %d (%s) at character %zu: ", p->field + 1,
                           cron_fields[p->field].name, at + 1);
    if (n >= 0 && (size_t)n < p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static bool cron_is_space(char c)
{
    return c == ' ' || c == '\t';
}

static bool cron_is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool cron_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* What stands at s[i] where something else was expected, for an error's text: only
 * printable ASCII is quoted, since the text goes into JSON (which wants UTF-8). */
static int cron_unexpected(struct cron_parser *p, const char *expected)
{
    char c = p->s[p->i];
    if (!c)
        return cron_fail(p, p->i, "expected %s, found the end", expected);
    if (cron_is_space(c))
        return cron_fail(p, p->i, "expected %s, found a space", expected);
    if (c > ' ' && c < 0x7f)
        return cron_fail(p, p->i, "expected %s, found '%c'", expected, c);
    return cron_fail(p, p->i, "expected %s, found a byte that is not allowed", expected);
}

/* A number or, in the month and weekday fields, a name, at s[i]; range-checked. */
static int cron_value(struct cron_parser *p, int *v)
{
    const struct cron_field *f = &cron_fields[p->field];
    size_t at = p->i, n = 0;
    if (cron_is_digit(p->s[at])) {
        /* Saturates well above every range: "99999999999" is out of range, not 0. */
        for (*v = 0; cron_is_digit(p->s[at + n]); n++)
            if (*v < 100000)
                *v = *v * 10 + (p->s[at + n] - '0');
        p->i += n;
        if (*v < f->lo || *v > f->hi)
            return cron_fail(p, at, "%.*s%s is out of range %d-%d", (int)(n > 12 ? 12 : n),
                             p->s + at, n > 12 ? "..." : "", f->lo, f->hi);
        return 0;
    }
    if (f->names && cron_is_alpha(p->s[at])) {
        for (; cron_is_alpha(p->s[at + n]); n++)
            ;
        p->i += n;
        for (int k = 0; n == 3 && k < f->nnames; k++)
            if (!strncasecmp(p->s + at, f->names[k], 3)) {
                *v = f->first_name + k;
                return 0;
            }
        return cron_fail(p, at, "unknown name \"%.*s%s\" (expected a number or %s)",
                         (int)(n > 12 ? 12 : n), p->s + at, n > 12 ? "..." : "", f->name_range);
    }
    return cron_unexpected(p, f->names ? "a number or a name" : "a number");
}

/* One field at s[i]: a comma list of items, into the bits of *bits (bit v: value v). */
static int cron_field_parse(struct cron_parser *p, uint64_t *bits)
{
    const struct cron_field *f = &cron_fields[p->field];
    *bits = 0;
    for (;;) {
        size_t at = p->i;
        int lo, hi, step = 1, rc;
        bool span = true; /* '*' or a-b: what a step may follow */
        if (p->s[p->i] == '*') {
            p->i++;
            lo = f->lo;
            hi = f->hi;
        } else {
            if ((rc = cron_value(p, &lo)))
                return rc;
            hi = lo;
            span = p->s[p->i] == '-';
            if (span) {
                p->i++;
                if ((rc = cron_value(p, &hi)))
                    return rc;
                if (hi < lo)
                    return cron_fail(p, at, "the range %.*s is backwards (%d is after %d)",
                                     (int)(p->i - at), p->s + at, lo, hi);
            }
        }
        if (p->s[p->i] == '/') {
            if (!span)
                return cron_fail(p, p->i,
                                 "a step follows '*' or a range, not a single value "
                                 "(%d-%d/n, not %d/n)",
                                 lo, f->hi, lo);
            size_t sat = ++p->i;
            if (!cron_is_digit(p->s[p->i]))
                return cron_unexpected(p, "a step (a number)");
            size_t n = 0;
            for (step = 0; cron_is_digit(p->s[p->i]); p->i++, n++)
                if (step < 100000)
                    step = step * 10 + (p->s[p->i] - '0');
            if (step < 1 || step > f->hi - f->lo + 1)
                return cron_fail(p, sat, "the step %.*s%s is out of range 1-%d",
                                 (int)(n > 12 ? 12 : n), p->s + sat, n > 12 ? "..." : "",
                                 f->hi - f->lo + 1);
        }
        for (int v = lo; v <= hi; v += step)
            *bits |= UINT64_C(1) << v;
        char c = p->s[p->i];
        if (c == ',') {
            p->i++;
            continue;
        }
        if (!c || cron_is_space(c))
            return 0;
        return cron_unexpected(p, "',', a space or the end");
    }
}

static const struct {
    const char *name, *expr;
} cron_macros[] = {
    {"yearly", "0 0 1 1 *"}, {"annually", "0 0 1 1 *"}, {"monthly", "0 0 1 * *"},
    {"weekly", "0 0 * * 0"}, {"daily", "0 0 * * *"},    {"midnight", "0 0 * * *"},
    {"hourly", "0 * * * *"},
};

/* "@name" at s[i]: the macro's expression, parsed. */
static int cron_macro(struct cron_parser *p, struct cron *out)
{
    size_t at = p->i++, n = 0;
    while (cron_is_alpha(p->s[p->i + n]))
        n++;
    for (size_t k = 0; k < sizeof(cron_macros) / sizeof(cron_macros[0]); k++) {
        if (n != strlen(cron_macros[k].name) || strncasecmp(p->s + p->i, cron_macros[k].name, n))
            continue;
        p->i += n;
        while (cron_is_space(p->s[p->i]))
            p->i++;
        if (p->s[p->i])
            return cron_fail(p, p->i, "unexpected text after @%s (a macro stands alone)",
                             cron_macros[k].name);
        return cron_parse(cron_macros[k].expr, out, NULL, 0);
    }
    if (n == 6 && !strncasecmp(p->s + p->i, "reboot", 6))
        return cron_fail(p, at, "@reboot is not supported (a schedule has no boot to follow)");
    return cron_fail(p, at,
                     "unknown macro \"@%.*s%s\" (expected @yearly, @annually, @monthly, "
                     "@weekly, @daily, @midnight or @hourly)",
                     (int)(n > 12 ? 12 : n), p->s + p->i, n > 12 ? "..." : "");
}

int cron_parse(const char *expr, struct cron *out, char *err, size_t errlen)
{
    struct cron_parser p = {.s = expr ? expr : "", .field = -1, .err = err, .errlen = errlen};
    struct cron c = {0};
    while (cron_is_space(p.s[p.i]))
        p.i++;
    if (!p.s[p.i])
        return cron_fail(&p, p.i,
                         "the expression is empty (expected 5 fields: " CRON_FIELDS_HELP
                         ", or a macro such as @daily)");
    if (p.s[p.i] == '@')
        return cron_macro(&p, out);
    uint64_t bits[5];
    for (p.field = 0; p.field < 5; p.field++) {
        if (p.field > 0) {
            while (cron_is_space(p.s[p.i]))
                p.i++;
            if (!p.s[p.i])
                return cron_fail(&p, p.i,
                                 "missing (expected 5 fields: " CRON_FIELDS_HELP ", found %d)",
                                 p.field);
        }
        /* Vixie cron's day rule keys on the field's first character (cron.h). */
        if (p.s[p.i] == '*' && (p.field == 2 || p.field == 4))
            c.flags |= p.field == 2 ? CRON_DOM_STAR : CRON_DOW_STAR;
        int rc = cron_field_parse(&p, &bits[p.field]);
        if (rc)
            return rc;
    }
    p.field = -1;
    while (cron_is_space(p.s[p.i]))
        p.i++;
    if (p.s[p.i])
        return cron_fail(&p, p.i, "too many fields (expected 5: " CRON_FIELDS_HELP ")");
    c.minutes = bits[0];
    c.hours = (uint32_t)bits[1];
    c.days = (uint32_t)bits[2];
    c.months = (uint16_t)bits[3];
    /* 7 is Sunday too. */
    c.weekdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f);
    *out = c;
    return 0;
}

static int cron_month_days(int64_t y, int m)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    return m == 2 && leap ? 29 : mdays[m - 1];
}

static bool cron_day_matches(const struct cron *c, int64_t days, int d)
{
    int wday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
    bool dom = c->days >> d & 1, dow = c->weekdays >> wday & 1;
    return c->flags & (CRON_DOM_STAR | CRON_DOW_STAR) ? dom && dow : dom || dow;
}

/* The first local minute at or after from (seconds of local time, a whole minute)
 * that c matches, if not past limit. Steps by fields: a month not in the set skips to
 * the next one that is, a day to the next day, an hour to the next matching hour, so
 * a search over years takes at most a few thousand steps, not millions of minutes. */
static int cron_match_from(const struct cron *c, int64_t from, int64_t limit, int64_t *out)
{
    int64_t days = from / 86400 - (from % 86400 < 0), y;
    int sod = (int)(from - days * 86400), m, d;
    int hour = sod / 3600, minute = sod % 3600 / 60;
    tz_civil_from_days(days, &y, &m, &d);
    for (;;) {
        days = tz_days_from_civil(y, m, d);
        if (days * 86400 + hour * 3600 + minute * 60 > limit)
            return -ERANGE;
        if (!(c->months >> m & 1)) {
            uint32_t later = c->months & ~((2u << m) - 1);
            if (later) {
                m = __builtin_ctz(later);
            } else {
                y++;
                m = __builtin_ctz(c->months);
            }
            d = 1;
            hour = minute = 0;
            continue;
        }
        if (!cron_day_matches(c, days, d))
            goto next_day;
        uint32_t hours = c->hours & ~((1u << hour) - 1);
        if (!hours)
            goto next_day;
        if (__builtin_ctz(hours) != hour) {
            hour = __builtin_ctz(hours);
            minute = 0;
        }
        uint64_t minutes = c->minutes & ~((UINT64_C(1) << minute) - 1);
        if (minutes) {
            *out = days * 86400 + hour * 3600 + __builtin_ctzll(minutes) * 60;
            return *out > limit ? -ERANGE : 0;
        }
        if (++hour < 24) {
            minute = 0;
            continue;
        }
    next_day:
        if (++d > cron_month_days(y, m)) {
            d = 1;
            if (++m > 12) {
                m = 1;
                y++;
            }
        }
        hour = minute = 0;
    }
}

int cron_next(const struct cron *cron, const struct tz *z, int64_t after, int64_t *next)
{
    /* Bits outside the fields' ranges (a struct not from cron_parse) are dropped, so
     * the search never lands on minute 61 or month 0. */
    struct cron k = *cron, *c = &k;
    k.minutes &= (UINT64_C(1) << 60) - 1;
    k.hours &= 0xffffff;
    k.days &= 0xfffffffe;
    k.months &= 0x1ffe;
    k.weekdays &= 0x7f;
    if (after < CRON_AFTER_MIN || after > CRON_AFTER_MAX || !k.minutes || !k.hours || !k.days ||
        !k.months || !k.weekdays)
        return -EINVAL;
    int64_t local = after + tz_offset_at(z, after), y;
    int64_t days = local / 86400 - (local % 86400 < 0);
    int m, d;
    tz_civil_from_days(days, &y, &m, &d);
    int64_t limit =
        tz_days_from_civil(y + CRON_HORIZON_YEARS, m, d) * 86400 + (local - days * 86400);
    /* Local minutes from after's own on: the first whose instant (tz_local_to_utc: the
     * end of a gap, the first of a fold) is after `after`. Instants grow with local
     * times, so the loop only goes round more than once for minutes at or before
     * after, which a fold's second pass can hold up to an hour of. */
    for (int64_t from = local / 60 * 60 - (local % 60 < 0) * 60;;) {
        int64_t minute, utc;
        int rc = cron_match_from(c, from, limit, &minute);
        if (rc)
            return rc;
        tz_local_to_utc(z, minute, &utc);
        if (utc > after) {
            *next = utc;
            return 0;
        }
        from = minute + 60;
    }
}
