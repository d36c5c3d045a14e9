/*
 * test_tzif.c — time zones from TZif files: offsets of real zones (tzdata's) around
 * their 2026 transitions and far past their last one (the footer's rule, north and
 * south, negative rule times, fixed offsets), local times that are skipped or
 * repeated, zone names refused before the filesystem is touched, and files that are
 * truncated, hostile or of forms the reader leaves alone, written into a temporary
 * directory given as the zone root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pyjobd/clock.h"
#include "pyjobd/tzif.h"

static char dir[] = "/tmp/test_tzif.XXXXXX";

/* An RFC 3339 time in seconds since the epoch, by lib/clock.c's parser (tested on its
 * own), so that expected instants read as dates. */
static int64_t at(const char *rfc3339)
{
    int64_t us;
    if (clock_parse(rfc3339, &us, NULL))
        fail_msg("bad time in the test: %s", rfc3339);
    return us / 1000000;
}

static struct tz *load(const char *name)
{
    struct tz *z = NULL;
    char err[256] = "";
    if (tz_load(name, NULL, &z, err, sizeof(err)))
        fail_msg("tz_load(%s): %s (is tzdata installed?)", name, err);
    assert_string_equal(tz_name(z), name);
    return z;
}

/* The bytes of a real zone file. */
static unsigned char *slurp(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", TZ_ROOT, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s: %s (is tzdata installed?)", path, strerror(errno));
    unsigned char *buf = malloc(1 << 16);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

static void put(const char *name, const void *bytes, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* tz_load of a file in the temporary root: its return code, the error in err. */
static int load_from_dir(const char *name, struct tz **z, char *err, size_t errlen)
{
    *z = NULL;
    err[0] = '\0';
    int rc = tz_load(name, dir, z, err, errlen);
    if (rc == 0)
        assert_non_null(*z);
    else
        assert_null(*z);
    return rc;
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void be64(unsigned char *p, int64_t v)
{
    be32(p, (uint32_t)((uint64_t)v >> 32));
    be32(p + 4, (uint32_t)v);
}

/* A version-2 file of n transitions (times[i], to type idx[i]) between ntypes types
 * of UT offsets offs, and the footer; its v1 block is a minimal one, as zic -b slim
 * writes. Returns its length. */
static size_t build(unsigned char *buf, int n, const int64_t *times, const unsigned char *idx,
                    int ntypes, const int32_t *offs, const char *footer)
{
    size_t len = 0;
    for (int v = 1; v <= 2; v++) {
        unsigned char *h = buf + len;
        memset(h, 0, 44);
        memcpy(h, "TZif2", 5);
        be32(h + 32, v == 1 ? 0 : (uint32_t)n);
        be32(h + 36, v == 1 ? 1 : (uint32_t)ntypes);
        be32(h + 40, 4); /* designations: "ABC\0" */
        len += 44;
        for (int i = 0; v == 2 && i < n; i++, len += 8)
            be64(buf + len, times[i]);
        for (int i = 0; v == 2 && i < n; i++)
            buf[len++] = idx[i];
        for (int i = 0; i < (v == 1 ? 1 : ntypes); i++, len += 6) {
            be32(buf + len, (uint32_t)offs[i]);
            buf[len + 4] = 0;
            buf[len + 5] = 0;
        }
        memcpy(buf + len, "ABC", 4);
        len += 4;
    }
    len += (size_t)sprintf((char *)buf + len, "\n%s\n", footer);
    return len;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void utc__both_names__offset_zero(void **state)
{
    (void)state;
    static const char *const names[] = {"UTC", "Etc/UTC"};
    for (size_t i = 0; i < 2; i++) {
        struct tz *z = load(names[i]);
        assert_int_equal(tz_offset_at(z, 0), 0);
        assert_int_equal(tz_offset_at(z, at("2026-07-01T00:00:00Z")), 0);
        assert_int_equal(tz_offset_at(z, INT64_MIN), 0);
        assert_int_equal(tz_offset_at(z, INT64_MAX), 0);
        tz_free(z);
    }
    assert_int_equal(tz_offset_at(NULL, at("2026-07-01T00:00:00Z")), 0); /* NULL is UTC */
    assert_string_equal(tz_name(NULL), "UTC");
}

static void paris__2026_transitions__offsets_of_zdump(void **state)
{
    (void)state;
    /* zdump -v Europe/Paris: 2026-03-29 01:00:00Z 03:00 CEST, 2026-10-25 01:00:00Z
     * 02:00 CET. */
    struct tz *z = load("Europe/Paris");
    int64_t spring = at("2026-03-29T01:00:00Z"), autumn = at("2026-10-25T01:00:00Z");
    assert_int_equal(tz_offset_at(z, spring - 1), 3600);
    assert_int_equal(tz_offset_at(z, spring), 7200);
    assert_int_equal(tz_offset_at(z, autumn - 1), 7200);
    assert_int_equal(tz_offset_at(z, autumn), 3600);
    assert_int_equal(tz_offset_at(z, at("2026-01-15T12:00:00Z")), 3600);
    assert_int_equal(tz_offset_at(z, at("2026-07-15T12:00:00Z")), 7200);
    /* Before its first transition, type 0: Paris Mean Time, +0:09:21. */
    assert_int_equal(tz_offset_at(z, at("1850-01-01T00:00:00Z")), 561);
    assert_int_equal(tz_offset_at(z, INT64_MIN), 561);
    tz_free(z);
}

static void footer_rules__past_the_last_transition__offsets_of_zdump(void **state)
{
    (void)state;
    /* The fat files end in 2037; 2100 comes from the footers (zdump -c 2100,2101). */
    struct tz *z = load("Europe/Paris"); /* CET-1CEST,M3.5.0,M10.5.0/3 */
    assert_int_equal(tz_offset_at(z, at("2100-03-28T00:59:59Z")), 3600);
    assert_int_equal(tz_offset_at(z, at("2100-03-28T01:00:00Z")), 7200);
    assert_int_equal(tz_offset_at(z, at("2100-10-31T00:59:59Z")), 7200);
    assert_int_equal(tz_offset_at(z, at("2100-10-31T01:00:00Z")), 3600);
    assert_int_equal(tz_offset_at(z, INT64_MAX), 3600); /* clamped, no overflow */
    tz_free(z);
    z = load("America/New_York"); /* EST5EDT,M3.2.0,M11.1.0 */
    assert_int_equal(tz_offset_at(z, at("2100-03-14T06:59:59Z")), -18000);
    assert_int_equal(tz_offset_at(z, at("2100-03-14T07:00:00Z")), -14400);
    assert_int_equal(tz_offset_at(z, at("2100-11-07T05:59:59Z")), -14400);
    assert_int_equal(tz_offset_at(z, at("2100-11-07T06:00:00Z")), -18000);
    tz_free(z);
    z = load("Australia/Sydney"); /* AEST-10AEDT,M10.1.0,M4.1.0/3: DST over New Year */
    assert_int_equal(tz_offset_at(z, at("2100-01-15T00:00:00Z")), 39600);
    assert_int_equal(tz_offset_at(z, at("2100-04-03T15:59:59Z")), 39600);
    assert_int_equal(tz_offset_at(z, at("2100-04-03T16:00:00Z")), 36000);
    assert_int_equal(tz_offset_at(z, at("2100-10-02T15:59:59Z")), 36000);
    assert_int_equal(tz_offset_at(z, at("2100-10-02T16:00:00Z")), 39600);
    tz_free(z);
    z = load("America/Nuuk"); /* <-02>2<-01>,M3.5.0/-1,M10.5.0/0: a negative time */
    assert_int_equal(tz_offset_at(z, at("2100-03-28T00:59:59Z")), -7200);
    assert_int_equal(tz_offset_at(z, at("2100-03-28T01:00:00Z")), -3600);
    assert_int_equal(tz_offset_at(z, at("2100-10-31T00:59:59Z")), -3600);
    assert_int_equal(tz_offset_at(z, at("2100-10-31T01:00:00Z")), -7200);
    tz_free(z);
    z = load("America/Sao_Paulo"); /* <-03>3: fixed */
    assert_int_equal(tz_offset_at(z, at("2100-01-15T00:00:00Z")), -10800);
    tz_free(z);
    z = load("Asia/Tehran"); /* <+0330>-3:30 */
    assert_int_equal(tz_offset_at(z, at("2100-01-15T00:00:00Z")), 12600);
    tz_free(z);
}

static void local_to_utc__gap_fold_unique__as_documented(void **state)
{
    (void)state;
    struct tz *z = load("Europe/Paris");
    int64_t utc = 0;
    /* Local wall times as seconds: the instant the wall time is in UTC's terms. */
    int64_t gap = at("2026-03-29T02:30:00Z"), fold = at("2026-10-25T02:30:00Z");
    assert_int_equal(tz_local_to_utc(z, gap, &utc), TZ_LOCAL_GAP);
    assert_true(utc == at("2026-03-29T03:00:00+02:00")); /* the end of the gap */
    assert_int_equal(tz_local_to_utc(z, at("2026-03-29T02:00:00Z"), &utc), TZ_LOCAL_GAP);
    assert_true(utc == at("2026-03-29T01:00:00Z"));
    assert_int_equal(tz_local_to_utc(z, at("2026-03-29T03:00:00Z"), &utc), TZ_LOCAL_UNIQUE);
    assert_true(utc == at("2026-03-29T03:00:00+02:00"));
    assert_int_equal(tz_local_to_utc(z, at("2026-03-29T01:59:00Z"), &utc), TZ_LOCAL_UNIQUE);
    assert_true(utc == at("2026-03-29T01:59:00+01:00"));
    assert_int_equal(tz_local_to_utc(z, fold, &utc), TZ_LOCAL_FOLD);
    assert_true(utc == at("2026-10-25T02:30:00+02:00")); /* the first of the two */
    assert_int_equal(tz_local_to_utc(z, at("2026-10-25T03:00:00Z"), &utc), TZ_LOCAL_UNIQUE);
    assert_true(utc == at("2026-10-25T03:00:00+01:00"));
    assert_int_equal(tz_local_to_utc(z, at("2026-07-01T12:00:00Z"), &utc), TZ_LOCAL_UNIQUE);
    assert_true(utc == at("2026-07-01T12:00:00+02:00"));
    tz_free(z);
    assert_int_equal(tz_local_to_utc(NULL, gap, &utc), TZ_LOCAL_UNIQUE);
    assert_true(utc == gap);
}

static void names__malformed__refused_naming_the_problem(void **state)
{
    (void)state;
    static const struct {
        const char *name, *err;
    } bad[] = {
        {"../etc/passwd", "time zone name has '.' at character 1"},
        {"Europe/../../etc/passwd", "time zone name has '.' at character 8"},
        {"/etc/passwd", "time zone name must not start with '/'"},
        {"Europe/ Paris", "time zone name has a space at character 8"},
        {"Europe//Paris", "time zone name has an empty component at character 8"},
        {"Europe/", "time zone name has an empty component at character 7"},
        {"Europe/Par\xc3\xads", "time zone name has a byte that is not allowed at character 11"},
        {"Europe/Paris\n", "time zone name has a byte that is not allowed at character 13"},
        {"Europe\\Paris", "time zone name has '\\' at character 7"},
        {"", "time zone name is empty"},
        {"A/BCDEFGHIJKLMNOPQRSTUVWXYZ/abcdefghijklmnopqrstuvwxyz/0123456789_",
         "time zone name is longer than 64 characters"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tz *z = (struct tz *)&z; /* not NULL: tz_load must clear it */
        char err[256];
        assert_int_equal(tz_load(bad[i].name, NULL, &z, err, sizeof(err)), -EINVAL);
        assert_null(z);
        if (strncmp(err, bad[i].err, strlen(bad[i].err)))
            fail_msg("%s: \"%s\", expected \"%s...\"", bad[i].name, err, bad[i].err);
        for (const char *c = err; *c; c++)
            assert_true(*c >= ' ' && *c < 0x7f); /* goes into JSON as is */
        assert_int_equal(tz_name_check(bad[i].name, NULL, 0), -EINVAL);
    }
    assert_int_equal(tz_name_check(NULL, NULL, 0), -EINVAL);
    /* Well-formed names that are no zone. */
    assert_int_equal(tz_name_check("Etc/GMT+5", NULL, 0), 0);
    struct tz *z;
    char err[256];
    assert_int_equal(tz_load("Nope/Nowhere", NULL, &z, err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "unknown time zone \"Nope/Nowhere\"");
    assert_int_equal(tz_load("Europe", NULL, &z, err, sizeof(err)), -ENOENT); /* a dir */
    assert_int_equal(tz_load("Europe/Paris/x", NULL, &z, err, sizeof(err)), -ENOENT);
    assert_null(z);
}

/* Where the parts of a real version-2 file are, from its own headers (so that tzdata
 * updates move them without breaking the tests). */
struct layout {
    size_t v1end, v2, times, idx, types, footer;
    uint32_t n, ntypes, nchars;
};

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t get64(const unsigned char *p)
{
    return (int64_t)((uint64_t)get32(p) << 32 | get32(p + 4));
}

static struct layout layout_of(const unsigned char *f, size_t len)
{
    struct layout l;
    const unsigned char *c = f + 20;
    l.v1end = 44 + get32(c + 12) * 5 + get32(c + 16) * 6 + get32(c + 20) + get32(c + 8) * 8 +
              get32(c + 4) + get32(c);
    l.v2 = l.v1end;
    assert_memory_equal(f + l.v2, "TZif", 4);
    c = f + l.v2 + 20;
    l.n = get32(c + 12);
    l.ntypes = get32(c + 16);
    l.nchars = get32(c + 20);
    assert_true(l.n > 100 && get32(c + 8) == 0);
    l.times = l.v2 + 44;
    l.idx = l.times + l.n * 8;
    l.types = l.idx + l.n;
    l.footer = len - 28; /* "\nCET-1CEST,M3.5.0,M10.5.0/3\n" */
    assert_memory_equal(f + l.footer, "\nCET-1CEST,M3.5.0,M10.5.0/3\n", 28);
    return l;
}

static void files__truncated_anywhere__an_error(void **state)
{
    (void)state;
    size_t len;
    unsigned char *paris = slurp("Europe/Paris", &len);
    struct layout l = layout_of(paris, len);
    struct tz *z;
    char err[256], want[256];
    put("Whole", paris, len);
    assert_int_equal(load_from_dir("Whole", &z, err, sizeof(err)), 0);
    assert_int_equal(tz_offset_at(z, at("2026-07-01T00:00:00Z")), 7200);
    tz_free(z);
    /* Every cut, from nothing to all but the footer's last newline. */
    for (size_t cut = 0; cut < len; cut++) {
        put("Cut", paris, cut);
        int rc = load_from_dir("Cut", &z, err, sizeof(err));
        if (rc != -EBADMSG)
            fail_msg("cut at %zu of %zu: %d (%s)", cut, len, rc, err);
    }
    put("Cut", paris, l.v1end - 1);
    load_from_dir("Cut", &z, err, sizeof(err));
    snprintf(want, sizeof(want),
             "time zone \"Cut\": not a valid TZif file: truncated: %zu bytes, the data needs %zu",
             l.v1end - 1, l.v1end);
    assert_string_equal(err, want);
    put("Cut", paris, l.footer + 10);
    load_from_dir("Cut", &z, err, sizeof(err));
    assert_non_null(strstr(err, "truncated or malformed footer"));
    free(paris);
}

static void files__hostile_counts_and_data__an_error(void **state)
{
    (void)state;
    size_t len;
    unsigned char *paris = slurp("Europe/Paris", &len), *copy = malloc(len);
    assert_non_null(copy);
    struct layout l = layout_of(paris, len);
    const size_t v2 = l.v2;
    static char chars_msg[64];
    snprintf(chars_msg, sizeof(chars_msg), "%u designation bytes, 5000 leap seconds", l.nchars);
    static char last_msg[64];
    snprintf(last_msg, sizeof(last_msg), "transition %u is out of order", l.n - 1);
    const struct {
        size_t off; /* a header field: 20 isut 24 isstd 28 leap 32 time 36 type 40 chars */
        uint32_t value;
        const char *err;
    } bad[] = {
        {32, 0xffffffffu, "4294967295 transitions (at most 2000)"}, /* the v1 header's */
        {32, 2001, "2001 transitions (at most 2000)"},
        {v2 + 32, 2001, "2001 transitions (at most 2000)"},
        {v2 + 32, 1999, "truncated: "}, /* under the cap, beyond the file */
        {v2 + 36, 0, "0 time types (1 to 256)"},
        {v2 + 36, 257, "257 time types (1 to 256)"},
        {v2 + 40, 100000, "100000 designation bytes"},
        {v2 + 28, 5000, chars_msg},
        {v2 + 20, 1, "indicator counts differ from the type count"},
        {v2 + 24, 0xffffffffu, "indicator counts differ from the type count"},
    };
    struct tz *z;
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(copy, paris, len);
        be32(copy + bad[i].off, bad[i].value);
        put("Hostile", copy, len);
        assert_int_equal(load_from_dir("Hostile", &z, err, sizeof(err)), -EBADMSG);
        if (!strstr(err, bad[i].err))
            fail_msg("case %zu: \"%s\", expected \"%s\"", i, err, bad[i].err);
    }
    const struct {
        size_t off;
        int64_t value; /* 8 bytes at off when wide, else one byte */
        int wide;
        const char *err;
    } data[] = {
        {l.times + 8 * 10, get64(paris + l.times + 8 * 9), 1, "transition 10 is out of order"},
        {l.times + 8 * 11, INT64_MIN, 1, "transition 11 is out of order"},
        {l.times + 8 * (l.n - 1), get64(paris + l.times + 8 * (l.n - 2)) - 1, 1, last_msg},
        {l.idx + 5, l.ntypes, 0, "transition 5 is out of order or has no type"},
        {l.idx + 5, 255, 0, "transition 5 is out of order or has no type"},
        {l.types + 6 * 2 + 4, 2, 0, "time type 2 is malformed"},        /* isdst 2 */
        {l.types + 6 * 3 + 5, l.nchars, 0, "time type 3 is malformed"}, /* designation */
        {0, 0, 0, "no TZif magic at byte 0"},                           /* "\0Zif" */
        {v2, 0, 0, "no TZif magic at byte"},                            /* v2's magic */
        {4, '1', 0, "unknown version byte 0x31"},                       /* no version 1 */
        {len - 2, '\n', 0, "the footer's TZ string is malformed"},      /* "...M10.5.0/\n\n" */
        {len - 1, 'x', 0, "truncated or malformed footer"},             /* no last newline */
        {l.footer + 1, '\0', 0, "truncated or malformed footer"},       /* a NUL in it */
        {l.footer, ' ', 0, "truncated or malformed footer"},            /* no first newline */
    };
    for (size_t i = 0; i < sizeof(data) / sizeof(data[0]); i++) {
        memcpy(copy, paris, len);
        if (data[i].wide)
            be64(copy + data[i].off, data[i].value);
        else
            copy[data[i].off] = (unsigned char)data[i].value;
        put("Hostile", copy, len);
        assert_int_equal(load_from_dir("Hostile", &z, err, sizeof(err)), -EBADMSG);
        if (!strstr(err, data[i].err))
            fail_msg("data case %zu: \"%s\", expected \"%s\"", i, err, data[i].err);
    }
    /* A UT offset out of [-89999, 93599]. */
    memcpy(copy, paris, len);
    be32(copy + l.types + 6 * 4, 93600);
    put("Hostile", copy, len);
    assert_int_equal(load_from_dir("Hostile", &z, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "time type 4 is malformed"));
    memcpy(copy, paris, len);
    be32(copy + l.types + 6 * 4, (uint32_t)INT32_MIN);
    put("Hostile", copy, len);
    assert_int_equal(load_from_dir("Hostile", &z, err, sizeof(err)), -EBADMSG);
    /* A zone with leap seconds (tzdata's right/ tree). */
    size_t rlen;
    unsigned char *right = slurp("right/Europe/Paris", &rlen);
    put("Right", right, rlen);
    assert_int_equal(load_from_dir("Right", &z, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "it has leap seconds"));
    free(right);
    /* Larger than the cap (a sparse file). */
    char path[256];
    snprintf(path, sizeof(path), "%s/Huge", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 1 << 20), 0);
    fclose(f);
    assert_int_equal(load_from_dir("Huge", &z, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "larger than"));
    /* Not a regular file: a FIFO must not block the open. */
    snprintf(path, sizeof(path), "%s/Fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(load_from_dir("Fifo", &z, err, sizeof(err)), -ENOENT);
    free(copy);
    free(paris);
}

static void files__other_forms__read_or_fall_back(void **state)
{
    (void)state;
    struct tz *z;
    char err[256];
    unsigned char buf[4096];
    /* Version 1 only: Paris's v1 block (32-bit times to 2037) with the version byte 0. */
    size_t len;
    unsigned char *paris = slurp("Europe/Paris", &len);
    struct layout l = layout_of(paris, len);
    paris[4] = 0;
    put("V1", paris, l.v1end);
    assert_int_equal(load_from_dir("V1", &z, err, sizeof(err)), 0);
    assert_int_equal(tz_offset_at(z, at("2026-03-29T00:59:59Z")), 3600);
    assert_int_equal(tz_offset_at(z, at("2026-03-29T01:00:00Z")), 7200);
    assert_int_equal(tz_offset_at(z, at("2037-07-01T00:00:00Z")), 7200);
    /* Past its last transition (2037-10-25), the last offset: v1 has no footer. */
    assert_int_equal(tz_offset_at(z, at("2100-07-01T00:00:00Z")), 3600);
    tz_free(z);
    free(paris);
    /* No transitions at all: the footer's rule for every time (a slim file's tail). */
    const int32_t cet[] = {3600};
    len = build(buf, 0, NULL, NULL, 1, cet, "CET-1CEST,M3.5.0,M10.5.0/3");
    put("Rule", buf, len);
    assert_int_equal(load_from_dir("Rule", &z, err, sizeof(err)), 0);
    assert_int_equal(tz_offset_at(z, at("2026-03-29T00:59:59Z")), 3600);
    assert_int_equal(tz_offset_at(z, at("2026-03-29T01:00:00Z")), 7200);
    assert_int_equal(tz_offset_at(z, at("2026-10-25T00:59:59Z")), 7200);
    assert_int_equal(tz_offset_at(z, at("2026-10-25T01:00:00Z")), 3600);
    assert_int_equal(tz_offset_at(z, at("1990-03-25T01:00:00Z")), 7200); /* last Sunday */
    tz_free(z);
    /* Forms not implemented keep the last transition's offset: Julian days, and DST
     * without rules. The table before it still counts. */
    const int64_t times[] = {at("2000-01-01T00:00:00Z"), at("2010-01-01T00:00:00Z")};
    const unsigned char idx[] = {1, 2};
    const int32_t offs[] = {-18000, -14400, 3600};
    static const char *const kept[] = {"EST5EDT4,0/0,J365/25", "EST5EDT", "EST5EDT,J60,J300", ""};
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        len = build(buf, 2, times, idx, 3, offs, kept[i]);
        put("Kept", buf, len);
        assert_int_equal(load_from_dir("Kept", &z, err, sizeof(err)), 0);
        assert_int_equal(tz_offset_at(z, at("1999-01-01T00:00:00Z")), -18000);
        assert_int_equal(tz_offset_at(z, at("2005-01-01T00:00:00Z")), -14400);
        assert_int_equal(tz_offset_at(z, at("2010-01-01T00:00:00Z")), 3600);
        assert_int_equal(tz_offset_at(z, at("2100-07-01T00:00:00Z")), 3600);
        tz_free(z);
    }
    /* A fixed footer wins over the last transition (as RFC 8536 has it). */
    len = build(buf, 2, times, idx, 3, offs, "<+0545>-5:45");
    put("Fixed", buf, len);
    assert_int_equal(load_from_dir("Fixed", &z, err, sizeof(err)), 0);
    assert_int_equal(tz_offset_at(z, at("2100-07-01T00:00:00Z")), 20700);
    tz_free(z);
    /* Malformed footers are errors. */
    static const char *const bad[] = {"CE-1",
                                      "CET",
                                      "CET-1CEST,M3.5.0",
                                      "CET-25",
                                      "<+05-5",
                                      "CET-1CEST,M13.5.0,M10.5.0",
                                      "CET-1x",
                                      "CET-1CEST,M3.6.0,M10.5.0",
                                      "CET-1CEST,M3.5.7,M10.5.0",
                                      "CET-1CEST,M3.5.0/168,M10.5.0",
                                      "CET-1CEST,M3.5.0,M10.5.0junk"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        len = build(buf, 2, times, idx, 3, offs, bad[i]);
        put("Bad", buf, len);
        if (load_from_dir("Bad", &z, err, sizeof(err)) != -EBADMSG)
            fail_msg("footer \"%s\" was accepted", bad[i]);
        assert_non_null(strstr(err, "footer"));
    }
}

static void utc__no_file__built_in(void **state)
{
    (void)state;
    /* The temporary root has no UTC: a container without tzdata still has UTC. */
    struct tz *z;
    char err[256];
    assert_int_equal(load_from_dir("UTC", &z, err, sizeof(err)), 0);
    assert_string_equal(tz_name(z), "UTC");
    assert_int_equal(tz_offset_at(z, at("2026-07-01T00:00:00Z")), 0);
    tz_free(z);
    assert_int_equal(load_from_dir("Etc/UTC", &z, err, sizeof(err)), 0);
    tz_free(z);
    assert_int_equal(load_from_dir("Europe/Paris", &z, err, sizeof(err)), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(utc__both_names__offset_zero),
        cmocka_unit_test(paris__2026_transitions__offsets_of_zdump),
        cmocka_unit_test(footer_rules__past_the_last_transition__offsets_of_zdump),
        cmocka_unit_test(local_to_utc__gap_fold_unique__as_documented),
        cmocka_unit_test(names__malformed__refused_naming_the_problem),
        cmocka_unit_test(files__truncated_anywhere__an_error),
        cmocka_unit_test(files__hostile_counts_and_data__an_error),
        cmocka_unit_test(files__other_forms__read_or_fall_back),
        cmocka_unit_test(utc__no_file__built_in),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
