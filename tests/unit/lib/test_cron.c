/*
 * test_cron.c — cron expressions (what POST /v1/schedules accepts as "cron"): every
 * form of a field, names and macros; each kind of mistake with the field and the
 * character the client is pointed to; next fire times across month and year ends,
 * leap days (2100 is not one), Vixie's day-of-month / day-of-week rule, against a
 * minute-by-minute reference; daylight saving time in Paris and New York; the
 * five-year horizon; and that a search over years is field by field, not minutes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pyjobd/clock.h"
#include "pyjobd/cron.h"
#include "pyjobd/tzif.h"

/* An RFC 3339 time in seconds since the epoch (lib/clock.c's parser, tested on its
 * own), so that instants read as dates and the offset says which side of a DST
 * transition is meant. */
static int64_t at(const char *rfc3339)
{
    int64_t us;
    if (clock_parse(rfc3339, &us, NULL))
        fail_msg("bad time in the test: %s", rfc3339);
    return us / 1000000;
}

static const char *show(int64_t t, char buf[CLOCK_TEXT_LEN])
{
    struct timespec ts = {.tv_sec = t, .tv_nsec = 0};
    if (clock_format(&ts, buf)) /* the epoch and years past 9999 */
        snprintf(buf, CLOCK_TEXT_LEN, "%lld", (long long)t);
    return buf;
}

static struct cron parse(const char *expr)
{
    struct cron c;
    char err[256] = "";
    if (cron_parse(expr, &c, err, sizeof(err)))
        fail_msg("cron_parse(\"%s\"): %s", expr, err);
    return c;
}

static struct tz *load(const char *name)
{
    struct tz *z = NULL;
    char err[256] = "";
    if (tz_load(name, NULL, &z, err, sizeof(err)))
        fail_msg("tz_load(%s): %s (is tzdata installed?)", name, err);
    return z;
}

/* The fire times of expr in z after `after`, one after the other, are want[0..n). */
static void expect_seq(const char *expr, const struct tz *z, const char *after,
                       const char *const *want, size_t n)
{
    struct cron c = parse(expr);
    int64_t t = at(after);
    for (size_t i = 0; i < n; i++) {
        int64_t next = 0;
        char a[CLOCK_TEXT_LEN], b[CLOCK_TEXT_LEN];
        int rc = cron_next(&c, z, t, &next);
        if (rc)
            fail_msg("\"%s\" in %s after %s: %d, expected %s", expr, z ? tz_name(z) : "UTC",
                     show(t, a), rc, want[i]);
        if (next != at(want[i]))
            fail_msg("\"%s\" in %s after %s: %s, expected %s", expr, z ? tz_name(z) : "UTC",
                     show(t, a), show(next, b), want[i]);
        t = next;
    }
}

#define SEQ(expr, z, after, ...)                                                                   \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__};                                          \
        expect_seq(expr, z, after, want_, sizeof(want_) / sizeof(want_[0]));                       \
    } while (0)

static uint64_t bits(const char *list)
{
    uint64_t b = 0;
    for (const char *s = list; *s;) {
        unsigned v = 0;
        while (*s >= '0' && *s <= '9')
            v = v * 10 + (unsigned)(*s++ - '0');
        b |= UINT64_C(1) << v;
        if (*s == ',')
            s++;
    }
    return b;
}

static void parse__every_form__the_values_it_matches(void **state)
{
    (void)state;
    struct cron c = parse("* * * * *");
    assert_true(c.minutes == (UINT64_C(1) << 60) - 1);
    assert_int_equal(c.hours, 0xffffff);
    assert_int_equal(c.days, 0xfffffffe);
    assert_int_equal(c.months, 0x1ffe);
    assert_int_equal(c.weekdays, 0x7f);
    assert_int_equal(c.flags, CRON_DOM_STAR | CRON_DOW_STAR);
    c = parse("5 4 3 2 1"); /* numbers */
    assert_true(c.minutes == bits("5"));
    assert_int_equal(c.hours, bits("4"));
    assert_int_equal(c.days, bits("3"));
    assert_int_equal(c.months, bits("2"));
    assert_int_equal(c.weekdays, bits("1"));
    assert_int_equal(c.flags, 0);
    c = parse("10-13 0-3 28-31 11-12 1-5"); /* ranges */
    assert_true(c.minutes == bits("10,11,12,13"));
    assert_int_equal(c.hours, bits("0,1,2,3"));
    assert_int_equal(c.days, bits("28,29,30,31"));
    assert_int_equal(c.months, bits("11,12"));
    assert_int_equal(c.weekdays, bits("1,2,3,4,5"));
    c = parse("*/15 */6 */10 */5 */3"); /* steps over '*' */
    assert_true(c.minutes == bits("0,15,30,45"));
    assert_int_equal(c.hours, bits("0,6,12,18"));
    assert_int_equal(c.days, bits("1,11,21,31"));
    assert_int_equal(c.months, bits("1,6,11"));
    assert_int_equal(c.weekdays, bits("0,3,6")); /* 0-7 by 3: 0, 3, 6 */
    assert_int_equal(c.flags, CRON_DOM_STAR | CRON_DOW_STAR);
    c = parse("10-50/20 1-23/11 2-9/7 3-12/4 1-7/2"); /* steps over ranges */
    assert_true(c.minutes == bits("10,30,50"));
    assert_int_equal(c.hours, bits("1,12,23"));
    assert_int_equal(c.days, bits("2,9"));
    assert_int_equal(c.months, bits("3,7,11"));
    assert_int_equal(c.weekdays, bits("0,1,3,5")); /* 1, 3, 5, 7 = Sunday */
    c = parse("0,30,5-7,*/20 1,2 1,15 1,6-7 0,6"); /* lists of anything */
    assert_true(c.minutes == bits("0,5,6,7,20,30,40"));
    assert_int_equal(c.hours, bits("1,2"));
    assert_int_equal(c.days, bits("1,15"));
    assert_int_equal(c.months, bits("1,6,7"));
    assert_int_equal(c.weekdays, bits("0,6"));
    c = parse("0 0 * jan,Mar-MAY,dEc MON-fri"); /* names, any case, in ranges */
    assert_int_equal(c.months, bits("1,3,4,5,12"));
    assert_int_equal(c.weekdays, bits("1,2,3,4,5"));
    assert_int_equal(c.flags, CRON_DOM_STAR);
    assert_int_equal(parse("0 0 * JAN-DEC SUN-SAT").months, 0x1ffe);
    assert_int_equal(parse("0 0 * JAN-DEC SUN-SAT").weekdays, 0x7f);
    assert_int_equal(parse("0 0 * * 5-7").weekdays, bits("0,5,6"));
    assert_int_equal(parse("0 0 * * 7").weekdays, bits("0"));
    assert_int_equal(parse("0 0 * * sun").weekdays, bits("0"));
    assert_int_equal(parse("0 0 * * */7").weekdays, bits("0")); /* 0 and 7 */
    assert_true(parse("*/60 * * * *").minutes == bits("0"));
    assert_true(parse("07 009 * * *").minutes == bits("7")); /* leading zeros */
    /* Spaces and tabs around and between the fields. */
    struct cron a = parse("  0\t0  1 1 *\t "), b = parse("0 0 1 1 *");
    assert_memory_equal(&a, &b, sizeof(a));
}

static void parse__macros__their_expressions(void **state)
{
    (void)state;
    static const struct {
        const char *macro, *expr;
    } m[] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"}, {"@DAILY", "0 0 * * *"},    {"  @Hourly \t", "0 * * * *"},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        struct cron a = parse(m[i].macro), b = parse(m[i].expr);
        if (memcmp(&a, &b, sizeof(a)))
            fail_msg("%s is not %s", m[i].macro, m[i].expr);
    }
}

static void parse__mistakes__field_and_character_named(void **state)
{
    (void)state;
    static const struct {
        const char *expr, *err;
    } bad[] = {
        /* The shape. */
        {"", "at character 1: the expression is empty (expected 5 fields: minute hour "
             "day-of-month month day-of-week, or a macro such as @daily)"},
        {"   ", "at character 4: the expression is empty (expected 5 fields: minute hour "
                "day-of-month month day-of-week, or a macro such as @daily)"},
        {"* * *", "field 4 (month) at character 6: missing (expected 5 fields: minute hour "
                  "day-of-month month day-of-week, found 3)"},
        {"*/5 * * * ", "field 5 (day of week) at character 11: missing (expected 5 fields: "
                       "minute hour day-of-month month day-of-week, found 4)"},
        {"* * * * * *",
         "at character 11: too many fields (expected 5: minute hour day-of-month month "
         "day-of-week)"},
        {"0 0 1 1 * @daily", "at character 11: too many fields (expected 5: minute hour "
                             "day-of-month month day-of-week)"},
        /* Values out of range, in each field. */
        {"60 * * * *", "field 1 (minute) at character 1: 60 is out of range 0-59"},
        {"0 24 * * *", "field 2 (hour) at character 3: 24 is out of range 0-23"},
        {"0 0 32 * *", "field 3 (day of month) at character 5: 32 is out of range 1-31"},
        {"0 0 0 * *", "field 3 (day of month) at character 5: 0 is out of range 1-31"},
        {"0 0 * 13 *", "field 4 (month) at character 7: 13 is out of range 1-12"},
        {"0 0 * 0 *", "field 4 (month) at character 7: 0 is out of range 1-12"},
        {"0 0 * * 8", "field 5 (day of week) at character 9: 8 is out of range 0-7"},
        {"0 0 1-40 * *", "field 3 (day of month) at character 7: 40 is out of range 1-31"},
        {"1,2,99999999999999 * * * *",
         "field 1 (minute) at character 5: 999999999999... is out of range 0-59"},
        /* Ranges. */
        {"5-1 * * * *", "field 1 (minute) at character 1: the range 5-1 is backwards (5 is "
                        "after 1)"},
        {"* * * * FRI-MON", "field 5 (day of week) at character 9: the range FRI-MON is "
                            "backwards (5 is after 1)"},
        {"1-* * * * *", "field 1 (minute) at character 3: expected a number, found '*'"},
        {"1- * * * *", "field 1 (minute) at character 3: expected a number, found a space"},
        /* Steps. */
        {"*/0 * * * *", "field 1 (minute) at character 3: the step 0 is out of range 1-60"},
        {"0 */25 * * *", "field 2 (hour) at character 5: the step 25 is out of range 1-24"},
        {"5/15 * * * *", "field 1 (minute) at character 2: a step follows '*' or a range, "
                         "not a single value (5-59/n, not 5/n)"},
        {"*/ * * * *",
         "field 1 (minute) at character 3: expected a step (a number), found a space"},
        {"*/x * * * *", "field 1 (minute) at character 3: expected a step (a number), found "
                        "'x'"},
        {"*/5/2 * * * *", "field 1 (minute) at character 4: expected ',', a space or the end, "
                          "found '/'"},
        /* Lists. */
        {"1,,2 * * * *", "field 1 (minute) at character 3: expected a number, found ','"},
        {"* * * * 1,", "field 5 (day of week) at character 11: expected a number or a name, "
                       "found the end"},
        /* Characters and names. */
        {"x * * * *", "field 1 (minute) at character 1: expected a number, found 'x'"},
        {"JAN * * * *", "field 1 (minute) at character 1: expected a number, found 'J'"},
        {"1x * * * *", "field 1 (minute) at character 2: expected ',', a space or the end, "
                       "found 'x'"},
        {"** * * * *", "field 1 (minute) at character 2: expected ',', a space or the end, "
                       "found '*'"},
        {"0 0 * * -1", "field 5 (day of week) at character 9: expected a number or a name, "
                       "found '-'"},
        {"* * * FOO *", "field 4 (month) at character 7: unknown name \"FOO\" (expected a "
                        "number or JAN-DEC)"},
        {"* * * * MONDAY", "field 5 (day of week) at character 9: unknown name \"MONDAY\" "
                           "(expected a number or SUN-SAT)"},
        {"* * * * JAN", "field 5 (day of week) at character 9: unknown name \"JAN\" (expected "
                        "a number or SUN-SAT)"},
        {"* * * * MON#2", "field 5 (day of week) at character 12: expected ',', a space or the "
                          "end, found '#'"},
        {"0 0 * * \xc3\xa9", "field 5 (day of week) at character 9: expected a number or a "
                             "name, found a byte that is not allowed"},
        {"0\x01 * * * *", "field 1 (minute) at character 2: expected ',', a space or the end, "
                          "found a byte that is not allowed"},
        /* Macros. */
        {"@foo", "at character 1: unknown macro \"@foo\" (expected @yearly, @annually, "
                 "@monthly, @weekly, @daily, @midnight or @hourly)"},
        {"@", "at character 1: unknown macro \"@\" (expected @yearly, @annually, @monthly, "
              "@weekly, @daily, @midnight or @hourly)"},
        {"@reboot", "at character 1: @reboot is not supported (a schedule has no boot to "
                    "follow)"},
        {"@daily 5", "at character 8: unexpected text after @daily (a macro stands alone)"},
        {"@daily5", "at character 7: unexpected text after @daily (a macro stands alone)"},
        {"  @hourly x", "at character 11: unexpected text after @hourly (a macro stands "
                        "alone)"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cron c;
        char err[256] = "";
        int rc = cron_parse(bad[i].expr, &c, err, sizeof(err));
        if (rc != -EINVAL || strcmp(err, bad[i].err))
            fail_msg("\"%s\": %d \"%s\", expected \"%s\"", bad[i].expr, rc, err, bad[i].err);
        for (const char *s = err; *s; s++)
            assert_true(*s >= ' ' && *s < 0x7f); /* goes into JSON as is */
        assert_int_equal(cron_parse(bad[i].expr, &c, NULL, 0), -EINVAL);
    }
    /* NULL is empty; a short buffer gets a terminated prefix. */
    struct cron c;
    char err[16];
    assert_int_equal(cron_parse(NULL, &c, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "at character 1:");
    assert_int_equal(cron_parse("0 0 32 * *", &c, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "field 3 (day of");
}

static void next__utc__minutes_hours_month_and_year_ends(void **state)
{
    (void)state;
    /* Strictly after: a fire time is not its own next. */
    SEQ("*/5 * * * *", NULL, "2026-03-10T10:03:20Z", "2026-03-10T10:05:00Z", "2026-03-10T10:10:00Z",
        "2026-03-10T10:15:00Z");
    SEQ("* * * * *", NULL, "2026-03-10T10:05:00Z", "2026-03-10T10:06:00Z");
    SEQ("* * * * *", NULL, "2026-03-10T10:05:59Z", "2026-03-10T10:06:00Z");
    SEQ("15,45 9-17/4 * * *", NULL, "2026-03-10T16:00:00Z", "2026-03-10T17:15:00Z",
        "2026-03-10T17:45:00Z", "2026-03-11T09:15:00Z");
    /* Month ends: the 31st skips the months without one, the 1st follows each end. */
    SEQ("0 0 31 * *", NULL, "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z",
        "2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z", "2026-10-31T00:00:00Z",
        "2026-12-31T00:00:00Z", "2027-01-31T00:00:00Z");
    SEQ("0 6 1 * *", NULL, "2026-01-31T23:59:59Z", "2026-02-01T06:00:00Z", "2026-03-01T06:00:00Z");
    SEQ("59 23 30 4,6 *", NULL, "2026-04-30T23:59:00Z", "2026-06-30T23:59:00Z",
        "2027-04-30T23:59:00Z");
    /* Year end. */
    SEQ("0 12 * * *", NULL, "2026-12-31T12:00:00Z", "2027-01-01T12:00:00Z");
    SEQ("30 23 31 DEC *", NULL, "2026-12-31T23:30:00Z", "2027-12-31T23:30:00Z");
    SEQ("0 0 * JAN,JUL *", NULL, "2026-01-31T00:00:00Z", "2026-07-01T00:00:00Z");
}

static void next__leap_days__every_four_years_not_2100(void **state)
{
    (void)state;
    SEQ("0 0 29 2 *", NULL, "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z",
        "2036-02-29T00:00:00Z");
    SEQ("0 0 29 2 *", NULL, "1999-03-01T00:00:00Z", "2000-02-29T00:00:00Z"); /* by 400 */
    /* 2100 is not a leap year: from 2099-06 the next is 2104, within 5 years. */
    SEQ("0 0 29 2 *", NULL, "2099-06-01T00:00:00Z", "2104-02-29T00:00:00Z");
    SEQ("0 0 28 2 *", NULL, "2100-02-28T00:00:00Z", "2101-02-28T00:00:00Z");
    SEQ("0 0 1 3 *", NULL, "2100-02-28T00:00:00Z", "2100-03-01T00:00:00Z");
    SEQ("0 0 * 2 *", NULL, "2100-02-28T00:00:00Z", "2101-02-01T00:00:00Z");
    SEQ("0 0 * 2 *", NULL, "2096-02-28T00:00:00Z", "2096-02-29T00:00:00Z");
}

static void next__day_of_month_and_week__vixie_rule(void **state)
{
    (void)state;
    /* Both restricted: either matches. 2026-03-01 is a Sunday. */
    SEQ("0 0 1 * MON", NULL, "2026-02-28T12:00:00Z", "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z",
        "2026-03-09T00:00:00Z", "2026-03-16T00:00:00Z", "2026-03-23T00:00:00Z",
        "2026-03-30T00:00:00Z", "2026-04-01T00:00:00Z", "2026-04-06T00:00:00Z");
    /* Friday or the 13th (2026-02-13 and 2026-03-13 are Fridays). */
    SEQ("0 0 13 * 5", NULL, "2026-02-10T00:00:00Z", "2026-02-13T00:00:00Z", "2026-02-20T00:00:00Z",
        "2026-02-27T00:00:00Z", "2026-03-06T00:00:00Z", "2026-03-13T00:00:00Z",
        "2026-03-20T00:00:00Z", "2026-03-27T00:00:00Z", "2026-04-03T00:00:00Z",
        "2026-04-10T00:00:00Z", "2026-04-13T00:00:00Z");
    /* One starts with '*': both must match, odd days that are Mondays (with either,
     * Sunday the 1st would be next). */
    SEQ("0 0 */2 * 1", NULL, "2026-03-01T00:00:00Z", "2026-03-09T00:00:00Z", "2026-03-23T00:00:00Z",
        "2026-04-13T00:00:00Z", "2026-04-27T00:00:00Z");
    SEQ("0 0 13 * */7", NULL, "2026-01-01T00:00:00Z", "2026-09-13T00:00:00Z"); /* Sunday */
    SEQ("0 0 13 * *", NULL, "2026-02-13T00:00:00Z", "2026-03-13T00:00:00Z");
    SEQ("0 0 * * 1", NULL, "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z");
}

static void next__every_sunday__0_7_and_sun_alike(void **state)
{
    (void)state;
    static const char *const exprs[] = {"0 10 * * 0",   "0 10 * * 7",   "0 10 * * SUN",
                                        "0 10 * * sun", "0 10 * * 0,7", "0 10 * * 7-7"};
    for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++)
        SEQ(exprs[i], NULL, "2026-03-04T00:00:00Z", "2026-03-08T10:00:00Z", "2026-03-15T10:00:00Z",
            "2026-03-22T10:00:00Z");
    SEQ("0 10 * * 6-7", NULL, "2026-03-04T00:00:00Z", "2026-03-07T10:00:00Z",
        "2026-03-08T10:00:00Z", "2026-03-14T10:00:00Z");
}

static void next__macros__their_times(void **state)
{
    (void)state;
    SEQ("@hourly", NULL, "2026-03-04T10:30:00Z", "2026-03-04T11:00:00Z", "2026-03-04T12:00:00Z");
    SEQ("@daily", NULL, "2026-03-04T10:30:00Z", "2026-03-05T00:00:00Z", "2026-03-06T00:00:00Z");
    SEQ("@midnight", NULL, "2026-12-31T00:00:00Z", "2027-01-01T00:00:00Z");
    SEQ("@weekly", NULL, "2026-03-04T10:30:00Z", "2026-03-08T00:00:00Z", "2026-03-15T00:00:00Z");
    SEQ("@monthly", NULL, "2026-01-31T10:30:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z");
    SEQ("@yearly", NULL, "2026-03-04T10:30:00Z", "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z");
    SEQ("@annually", NULL, "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z");
}

/* Minute by minute, for the reference: does the UTC minute t match c (gmtime_r's
 * fields, Vixie's day rule)? */
static int ref_matches(const struct cron *c, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    int dom = (int)(c->days >> tm.tm_mday & 1), dow = c->weekdays >> tm.tm_wday & 1;
    int day = c->flags ? dom && dow : dom || dow;
    return (c->minutes >> tm.tm_min & 1) && (c->hours >> tm.tm_hour & 1) &&
           (c->months >> (tm.tm_mon + 1) & 1) && day;
}

static void next__utc__agrees_with_minute_by_minute(void **state)
{
    (void)state;
    static const char *const exprs[] = {
        "*/7 * * * *",   "0 */5 * * *",   "15,45 9-17 * * 1-5", "0 0 31 * *",
        "0 12 1,15 * 5", "30 4 */10 * *", "0 0 1-7 * 1",        "0 0 */2 * 1",
        "59 23 * * 6,7", "0 0 29,30 * *", "1 2 3 * *",          "0 8-10 * 2,3 *",
    };
    static const char *const starts[] = {
        "2026-01-31T23:59:30Z", "2027-12-31T23:59:00Z", "2028-02-28T12:00:00Z",
        "2100-02-27T00:00:00Z", "1999-12-31T23:59:59Z", "2026-06-15T10:07:00Z",
    };
    for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
        struct cron c = parse(exprs[i]);
        for (size_t j = 0; j < sizeof(starts) / sizeof(starts[0]); j++) {
            int64_t after = at(starts[j]), got = 0, want = (after / 60 + 1) * 60;
            while (!ref_matches(&c, want) && want - after < 400 * 86400)
                want += 60;
            assert_int_equal(cron_next(&c, NULL, after, &got), 0);
            if (got != want) {
                char a[CLOCK_TEXT_LEN], b[CLOCK_TEXT_LEN];
                fail_msg("\"%s\" after %s: %s, expected %s", exprs[i], starts[j], show(got, a),
                         show(want, b));
            }
        }
    }
}

static void next__paris__spring_gap_and_autumn_fold(void **state)
{
    (void)state;
    struct tz *z = load("Europe/Paris");
    /* zdump -v Europe/Paris: 2026-03-29 01:00:00Z is 03:00 CEST (02:00-02:59 never
     * happens); 2026-10-25 01:00:00Z is 02:00 CET again (02:00-02:59 happens twice).
     * "30 2 * * *": the skipped 02:30 fires when the gap ends, 03:00 CEST; the double
     * 02:30 fires once, the first time (CEST). */
    SEQ("30 2 * * *", z, "2026-03-27T12:00:00Z", "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00");
    SEQ("30 2 * * *", z, "2026-10-23T12:00:00Z", "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00");
    /* Asked from inside the second pass of 02:xx: today's 02:30 has been. */
    SEQ("30 2 * * *", z, "2026-10-25T02:10:00+01:00", "2026-10-26T02:30:00+01:00");
    SEQ("30 2 * * *", z, "2026-10-25T02:30:00+01:00", "2026-10-26T02:30:00+01:00");
    /* Several skipped times fire once, at the end of the gap, as does 03:00 itself. */
    SEQ("*/15 2 * * *", z, "2026-03-29T01:59:00+01:00", "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:00:00+02:00");
    SEQ("0,30 2,3 * * *", z, "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00", "2026-03-30T02:00:00+02:00");
    /* Hourly around both: 23 fires on the short day, the repeated hour once. */
    SEQ("0 * * * *", z, "2026-03-29T00:30:00+01:00", "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00");
    SEQ("0 * * * *", z, "2026-10-25T01:30:00+02:00", "2026-10-25T02:00:00+02:00",
        "2026-10-25T03:00:00+01:00", "2026-10-25T04:00:00+01:00");
    /* Every minute across the fold: from the second 02:30, 03:00 CET is next. */
    SEQ("* * * * *", z, "2026-10-25T02:59:00+02:00", "2026-10-25T03:00:00+01:00");
    SEQ("* * * * *", z, "2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00");
    SEQ("* * * * *", z, "2026-03-29T01:59:00+01:00", "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:01:00+02:00");
    /* Times next to the transitions are ordinary. */
    SEQ("30 1 * * *", z, "2026-10-24T12:00:00Z", "2026-10-25T01:30:00+02:00");
    SEQ("30 3 * * *", z, "2026-10-24T12:00:00Z", "2026-10-25T03:30:00+01:00");
    SEQ("0 9 * * *", z, "2026-03-28T12:00:00Z", "2026-03-29T09:00:00+02:00");
    /* Far past the file's last transition (2037): the footer's rule. */
    SEQ("30 2 * * *", z, "2100-03-27T12:00:00Z", "2100-03-28T03:00:00+02:00",
        "2100-03-29T02:30:00+02:00");
    tz_free(z);
}

static void next__new_york__both_transitions(void **state)
{
    (void)state;
    struct tz *z = load("America/New_York");
    /* zdump: 2026-03-08 07:00:00Z is 03:00 EDT; 2026-11-01 06:00:00Z is 01:00 EST. */
    SEQ("30 2 * * *", z, "2026-03-07T12:00:00Z", "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00");
    SEQ("30 1 * * *", z, "2026-10-31T12:00:00Z", "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00");
    SEQ("0 9 * * MON-FRI", z, "2026-03-06T09:00:00-05:00", "2026-03-09T09:00:00-04:00",
        "2026-03-10T09:00:00-04:00");
    SEQ("0 0 1 * *", z, "2026-10-15T00:00:00Z", "2026-11-01T00:00:00-04:00",
        "2026-12-01T00:00:00-05:00");
    tz_free(z);
}

static void next__utc_zones__same_as_null(void **state)
{
    (void)state;
    static const char *const names[] = {"UTC", "Etc/UTC"};
    struct cron c = parse("30 2 * * *");
    for (size_t i = 0; i < 2; i++) {
        struct tz *z = load(names[i]);
        SEQ("30 2 * * *", z, "2026-03-28T12:00:00Z", "2026-03-29T02:30:00Z",
            "2026-03-30T02:30:00Z");
        for (int64_t t = at("2026-10-20T00:00:00Z"); t < at("2026-10-30T00:00:00Z"); t += 3917) {
            int64_t a, b;
            assert_int_equal(cron_next(&c, z, t, &a), 0);
            assert_int_equal(cron_next(&c, NULL, t, &b), 0);
            assert_true(a == b);
        }
        tz_free(z);
    }
}

static void next__nothing_within_five_years__erange(void **state)
{
    (void)state;
    int64_t next = 42;
    struct cron c = parse("0 0 30 2 *");
    assert_int_equal(cron_next(&c, NULL, at("2026-01-01T00:00:00Z"), &next), -ERANGE);
    assert_true(next == 42);
    c = parse("0 0 31 4,6,9,11 *");
    assert_int_equal(cron_next(&c, NULL, at("2026-01-01T00:00:00Z"), &next), -ERANGE);
    struct tz *z = load("Europe/Paris");
    c = parse("0 0 30 2 *");
    assert_int_equal(cron_next(&c, z, at("2026-01-01T00:00:00Z"), &next), -ERANGE);
    tz_free(z);
    /* The horizon: 2100 not being a leap year, a 29th of February is 8 years away from
     * 2096-03, past the 5. */
    c = parse("0 0 29 2 *");
    assert_int_equal(cron_next(&c, NULL, at("2096-03-01T00:00:00Z"), &next), -ERANGE);
    /* An instant out of the years 1-9999, or an expression matching nothing. */
    c = parse("* * * * *");
    assert_int_equal(cron_next(&c, NULL, at("9999-12-31T23:59:59Z"), &next), 0);
    assert_int_equal(cron_next(&c, NULL, at("9999-12-31T23:59:59Z") + 1, &next), -EINVAL);
    assert_int_equal(cron_next(&c, NULL, INT64_MIN, &next), -EINVAL);
    struct cron none = {0};
    assert_int_equal(cron_next(&none, NULL, 0, &next), -EINVAL);
    none = c;
    none.minutes = UINT64_C(1) << 61; /* only bits out of range */
    assert_int_equal(cron_next(&none, NULL, 0, &next), -EINVAL);
}

static void next__horizon__five_years_to_the_minute(void **state)
{
    (void)state;
    /* Sundays that are the 4th of March ('*' starts the day-of-week field: both must
     * match): 2029, then 2035, 5 years after 2030-03-04 10:00 to the minute. */
    SEQ("0 10 4 3 */7", NULL, "2030-03-04T10:00:00Z", "2035-03-04T10:00:00Z");
    struct cron c = parse("1 10 4 3 */7"); /* 10:01: a minute too far */
    int64_t next;
    assert_int_equal(cron_next(&c, NULL, at("2030-03-04T10:00:00Z"), &next), -ERANGE);
    assert_int_equal(cron_next(&c, NULL, at("2030-03-04T10:01:00Z"), &next), 0);
    assert_true(next == at("2035-03-04T10:01:00Z"));
}

static void next__a_search_over_years__field_by_field(void **state)
{
    (void)state;
    /* 20,000 searches over up to 5 years each. Minute by minute, one would be 2.6
     * million steps, and these would take minutes; by fields, milliseconds. The bound
     * is loose for a loaded CI machine, and checked as it goes so that a slow search
     * fails in seconds rather than hanging the run. */
    struct cron leap = parse("0 0 29 2 *"), never = parse("0 0 30 2 *");
    int64_t t0 = clock_now_ms(), next, t = at("2026-01-01T00:00:00Z");
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(cron_next(&leap, NULL, t + i * 3600, &next), 0);
        assert_int_equal(cron_next(&never, NULL, t + i * 3600, &next), -ERANGE);
        if (clock_now_ms() - t0 > 2000)
            fail_msg("only %d of 10,000 pairs of searches in 2 s", i + 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse__every_form__the_values_it_matches),
        cmocka_unit_test(parse__macros__their_expressions),
        cmocka_unit_test(parse__mistakes__field_and_character_named),
        cmocka_unit_test(next__utc__minutes_hours_month_and_year_ends),
        cmocka_unit_test(next__leap_days__every_four_years_not_2100),
        cmocka_unit_test(next__day_of_month_and_week__vixie_rule),
        cmocka_unit_test(next__every_sunday__0_7_and_sun_alike),
        cmocka_unit_test(next__macros__their_times),
        cmocka_unit_test(next__utc__agrees_with_minute_by_minute),
        cmocka_unit_test(next__paris__spring_gap_and_autumn_fold),
        cmocka_unit_test(next__new_york__both_transitions),
        cmocka_unit_test(next__utc_zones__same_as_null),
        cmocka_unit_test(next__nothing_within_five_years__erange),
        cmocka_unit_test(next__horizon__five_years_to_the_minute),
        cmocka_unit_test(next__a_search_over_years__field_by_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
