/*
 * tzif.c — see include/pyjobd/tzif.h. The reader follows RFC 8536: the version 2+
 * data (64-bit times) when there is some, else the version 1 data; then the footer's
 * POSIX TZ string for the times after the last transition.
 */
#include "pyjobd/tzif.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Caps on what a file may declare, far above any real zone (the most transitions in
 * tzdata's fat files is under 400; a type index is one byte, hence 256 types). They
 * bound what a hostile file can make us allocate and scan. */
#define TZ_MAX_TRANSITIONS 2000
#define TZ_MAX_TYPES 256
#define TZ_MAX_CHARS 2048
#define TZ_MAX_LEAPS 1000
#define TZ_MAX_FILE (256 * 1024)
#define TZ_MAX_FOOTER 255

/* RFC 8536 3.2: a UT offset SHOULD be in [-89999, 93599] (-25:59:59 to +25:59:59);
 * an offset outside is refused, which also keeps every sum below from overflowing. */
#define TZ_OFF_MIN (-89999)
#define TZ_OFF_MAX 93599

/* Instants beyond about 285 million years from 1970 are clamped before the calendar
 * arithmetic of the footer's rule, which would overflow near INT64_MAX. The offset
 * that far out is the rule's anyway. */
#define TZ_T_LIMIT (INT64_C(1) << 53)

/* One footer date "Mm.w.d[/time]": the d-th weekday (0 = Sunday) of week w (5: the
 * last) of month m, at time (seconds, -167 h to +167 h in version 3) of local time. */
struct tz_date {
    int month, week, wday;
    int32_t secs;
};

/* "STD offset DST[offset],start,end": DST starts at start in standard time and ends
 * at end in daylight time (POSIX). Offsets here are seconds east of UTC. */
struct tz_rule {
    int32_t std_off, dst_off;
    struct tz_date start, end;
};

struct tz_transition {
    int64_t at;  /* UTC */
    int32_t off; /* in force from at */
};

struct tz {
    char name[TZ_NAME_MAX + 1];
    int32_t first_off; /* before the first transition: time type 0 (RFC 8536 3.2) */
    int32_t tail_off;  /* from the last transition when there is no rule */
    bool has_rule;
    struct tz_rule rule;
    uint32_t n;
    struct tz_transition trans[];
};

struct tz_header {
    unsigned char version; /* 0, or an ASCII digit */
    uint32_t isut, isstd, leap, time, type, chars;
};

static int tz_err(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int tz_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int64_t tz_floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

/* Howard Hinnant's days_from_civil and civil_from_days: exact over int64 years. */
int64_t tz_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void tz_civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int tz_month_days(int64_t y, int m)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    return m == 2 && leap ? 29 : mdays[m - 1];
}

/* --------------------------------------------------------------- zone names */

int tz_name_check(const char *name, char *err, size_t errlen)
{
    size_t n = name ? strnlen(name, TZ_NAME_MAX + 1) : 0;
    if (n == 0)
        return tz_err(err, errlen, -EINVAL, "time zone name is empty");
    if (n > TZ_NAME_MAX)
        return tz_err(err, errlen, -EINVAL, "time zone name is longer than %d characters",
                      TZ_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/') {
            if (i == 0)
                return tz_err(err, errlen, -EINVAL,
                              "time zone name must not start with '/' (it is relative, "
                              "like \"Europe/Paris\")");
            if (name[i - 1] == '/' || i == n - 1)
                return tz_err(err, errlen, -EINVAL,
                              "time zone name has an empty component at character %zu", i + 1);
            continue;
        }
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '+' || c == '-')
            continue;
        /* Only printable ASCII is quoted: the text goes into JSON, which wants UTF-8. */
        if (c > ' ' && c < 0x7f)
            return tz_err(err, errlen, -EINVAL,
                          "time zone name has '%c' at character %zu (allowed: letters, "
                          "digits, '_', '+', '-' and '/' between components)",
                          c, i + 1);
        return tz_err(err, errlen, -EINVAL,
                      "time zone name has %s at character %zu (allowed: letters, digits, '_', "
                      "'+', '-' and '/' between components)",
                      c == ' ' ? "a space" : "a byte that is not allowed", i + 1);
    }
    return 0;
}

/* ------------------------------------------------------------- the footer */

/* A zone abbreviation: 3+ letters, or <...> of 3+ of [A-Za-z0-9+-]. End, or NULL. */
static const char *tz_posix_abbr(const char *s)
{
    const char *b;
    if (*s == '<') {
        for (b = ++s; (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
                      (*s >= '0' && *s <= '9') || *s == '+' || *s == '-';
             s++)
            ;
        return *s == '>' && s - b >= 3 ? s + 1 : NULL;
    }
    for (b = s; (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'); s++)
        ;
    return s - b >= 3 ? s : NULL;
}

/* [+-]h[h[h]][:mm[:ss]] with hours up to max_hours, into *secs. End, or NULL. */
static const char *tz_posix_hms(const char *s, int max_hours, int32_t *secs)
{
    int sign = 1, h = 0, m = 0, sec = 0, k;
    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    for (k = 0; k < 3 && *s >= '0' && *s <= '9'; k++, s++)
        h = h * 10 + (*s - '0');
    if (k == 0 || h > max_hours)
        return NULL;
    for (int part = 0; part < 2 && *s == ':'; part++) {
        if (s[1] < '0' || s[1] > '5' || s[2] < '0' || s[2] > '9')
            return NULL;
        int v = (s[1] - '0') * 10 + (s[2] - '0');
        if (part == 0)
            m = v;
        else
            sec = v;
        s += 3;
    }
    *secs = sign * (h * 3600 + m * 60 + sec);
    return s;
}

/* A number of 1 or 2 digits in [lo, hi]. End, or NULL. */
static const char *tz_posix_num(const char *s, int lo, int hi, int *v)
{
    int k;
    for (*v = 0, k = 0; k < 2 && *s >= '0' && *s <= '9'; k++, s++)
        *v = *v * 10 + (*s - '0');
    return k && *v >= lo && *v <= hi ? s : NULL;
}

/* ",Mm.w.d[/time]". End, or NULL; *other set for the Julian forms "Jn" and "n". */
static const char *tz_posix_date(const char *s, struct tz_date *d, bool *other)
{
    if (*s++ != ',')
        return NULL;
    if (*s == 'J' || (*s >= '0' && *s <= '9')) {
        *other = true;
        return s;
    }
    if (*s++ != 'M' || !(s = tz_posix_num(s, 1, 12, &d->month)) || *s++ != '.' ||
        !(s = tz_posix_num(s, 1, 5, &d->week)) || *s++ != '.' ||
        !(s = tz_posix_num(s, 0, 6, &d->wday)))
        return NULL;
    d->secs = 2 * 3600; /* POSIX's default: 02:00 */
    if (*s == '/')
        s = tz_posix_hms(s + 1, 167, &d->secs);
    return s;
}

static bool tz_off_ok(int32_t off)
{
    return off >= TZ_OFF_MIN && off <= TZ_OFF_MAX;
}

enum tz_footer { TZ_FOOTER_BAD = -1, TZ_FOOTER_NONE, TZ_FOOTER_FIXED, TZ_FOOTER_RULE };

/* The footer's TZ string. NONE when it is empty or a form not implemented here: DST
 * without rules (POSIX leaves them to the implementation), or rules in the Julian
 * forms "Jn" / "n". No zone of tzdata 2025b uses those (its 95 distinct footers are
 * all fixed or M rules); the idiom that would, all-year DST ("EST5EDT4,0/0,J365/25"),
 * is the offset of the last transition anyway, which is what NONE keeps. */
static enum tz_footer tz_footer_parse(const char *s, struct tz_rule *r, int32_t *fixed)
{
    int32_t off;
    bool other = false;
    if (!*s)
        return TZ_FOOTER_NONE;
    if (!(s = tz_posix_abbr(s)) || !(s = tz_posix_hms(s, 24, &off)) || !tz_off_ok(-off))
        return TZ_FOOTER_BAD;
    r->std_off = -off; /* POSIX offsets are west of UTC */
    if (!*s) {
        *fixed = r->std_off;
        return TZ_FOOTER_FIXED;
    }
    if (!(s = tz_posix_abbr(s)))
        return TZ_FOOTER_BAD;
    r->dst_off = r->std_off + 3600;
    if (*s && *s != ',') {
        if (!(s = tz_posix_hms(s, 24, &off)))
            return TZ_FOOTER_BAD;
        r->dst_off = -off;
    }
    if (!tz_off_ok(r->dst_off))
        return TZ_FOOTER_BAD;
    if (!*s)
        return TZ_FOOTER_NONE;
    if (!(s = tz_posix_date(s, &r->start, &other)))
        return TZ_FOOTER_BAD;
    if (other)
        return TZ_FOOTER_NONE;
    if (!(s = tz_posix_date(s, &r->end, &other)))
        return TZ_FOOTER_BAD;
    if (other)
        return TZ_FOOTER_NONE;
    return *s ? TZ_FOOTER_BAD : TZ_FOOTER_RULE;
}

/* The UTC instant of date d in local year y, its time being local with offset off. */
static int64_t tz_rule_at(const struct tz_date *d, int64_t y, int32_t off)
{
    int64_t first = tz_days_from_civil(y, d->month, 1);
    int wday1 = (int)((first % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
    int day = 1 + (d->wday - wday1 + 7) % 7 + (d->week - 1) * 7;
    int mdays = tz_month_days(y, d->month);
    while (day > mdays)
        day -= 7;
    return (first + day - 1) * 86400 + d->secs - off;
}

/* The rule's offset at t. The year is t's in standard time; a rule's dates are months
 * away from New Year in every zone that has one, so that year is theirs. */
static int32_t tz_rule_offset(const struct tz_rule *r, int64_t t)
{
    int64_t y;
    int m, d;
    tz_civil_from_days(tz_floor_div(t + r->std_off, 86400), &y, &m, &d);
    int64_t start = tz_rule_at(&r->start, y, r->std_off);
    int64_t end = tz_rule_at(&r->end, y, r->dst_off);
    if (start < end) /* northern: DST inside the year */
        return t >= start && t < end ? r->dst_off : r->std_off;
    if (start > end) /* southern: DST across New Year */
        return t >= end && t < start ? r->std_off : r->dst_off;
    return r->std_off;
}

/* ------------------------------------------------------------- the file */

static uint32_t tz_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t tz_be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)tz_be32(p) << 32 | tz_be32(p + 4));
}

/* The header at p[at..len); its counts capped and consistent. */
static int tz_header_read(const unsigned char *p, size_t len, size_t at, struct tz_header *h,
                          char *why, size_t whylen)
{
    if (len - at < 44)
        return tz_err(why, whylen, -EBADMSG, "truncated header at byte %zu", at);
    if (memcmp(p + at, "TZif", 4) != 0)
        return tz_err(why, whylen, -EBADMSG, "no TZif magic at byte %zu", at);
    const unsigned char *c = p + at + 20;
    *h = (struct tz_header){.version = p[at + 4],
                            .isut = tz_be32(c),
                            .isstd = tz_be32(c + 4),
                            .leap = tz_be32(c + 8),
                            .time = tz_be32(c + 12),
                            .type = tz_be32(c + 16),
                            .chars = tz_be32(c + 20)};
    if (h->time > TZ_MAX_TRANSITIONS)
        return tz_err(why, whylen, -EBADMSG, "%" PRIu32 " transitions (at most %d)", h->time,
                      TZ_MAX_TRANSITIONS);
    if (h->type == 0 || h->type > TZ_MAX_TYPES)
        return tz_err(why, whylen, -EBADMSG, "%" PRIu32 " time types (1 to %d)", h->type,
                      TZ_MAX_TYPES);
    if (h->chars > TZ_MAX_CHARS || h->leap > TZ_MAX_LEAPS)
        return tz_err(why, whylen, -EBADMSG,
                      "%" PRIu32 " designation bytes, %" PRIu32 " leap seconds (at most %d, %d)",
                      h->chars, h->leap, TZ_MAX_CHARS, TZ_MAX_LEAPS);
    if ((h->isstd && h->isstd != h->type) || (h->isut && h->isut != h->type))
        return tz_err(why, whylen, -EBADMSG, "indicator counts differ from the type count");
    return 0;
}

/* Bytes of the data block after h, with times of timesize bytes. The caps keep it
 * far from overflowing. */
static size_t tz_block_size(const struct tz_header *h, size_t timesize)
{
    return h->time * timesize + h->time + h->type * 6 + h->chars + h->leap * (timesize + 4) +
           h->isstd + h->isut;
}

/* The data block at p[at..), known to be within the file, into a new zone. */
static int tz_block_parse(const unsigned char *p, size_t at, const struct tz_header *h,
                          size_t timesize, struct tz **out, char *why, size_t whylen)
{
    const unsigned char *times = p + at, *idx = times + h->time * timesize, *types = idx + h->time;
    if (h->leap)
        return tz_err(why, whylen, -EBADMSG,
                      "it has leap seconds (a \"right/\" zone); use the zone without them");
    int32_t offs[TZ_MAX_TYPES];
    for (uint32_t i = 0; i < h->type; i++) {
        const unsigned char *t = types + 6 * i;
        offs[i] = (int32_t)tz_be32(t);
        if (!tz_off_ok(offs[i]) || t[4] > 1 || t[5] >= h->chars)
            return tz_err(why, whylen, -EBADMSG, "time type %" PRIu32 " is malformed", i);
    }
    struct tz *z = calloc(1, sizeof(*z) + h->time * sizeof(z->trans[0]));
    if (!z)
        return tz_err(why, whylen, -ENOMEM, "out of memory");
    z->n = h->time;
    z->first_off = offs[0];
    for (uint32_t i = 0; i < h->time; i++) {
        const unsigned char *t = times + i * timesize;
        z->trans[i].at = timesize == 8 ? tz_be64(t) : (int32_t)tz_be32(t);
        if (idx[i] >= h->type || (i && z->trans[i].at <= z->trans[i - 1].at)) {
            free(z);
            return tz_err(why, whylen, -EBADMSG,
                          "transition %" PRIu32 " is out of order or has no type", i);
        }
        z->trans[i].off = offs[idx[i]];
    }
    z->tail_off = z->n ? z->trans[z->n - 1].off : z->first_off;
    *out = z;
    return 0;
}

/* A whole file, len bytes, into a new zone. */
static int tz_parse(const unsigned char *p, size_t len, struct tz **out, char *why, size_t whylen)
{
    struct tz_header h;
    int rc = tz_header_read(p, len, 0, &h, why, whylen);
    if (rc)
        return rc;
    size_t v1end = 44 + tz_block_size(&h, 4);
    if (v1end > len)
        return tz_err(why, whylen, -EBADMSG, "truncated: %zu bytes, the data needs %zu", len,
                      v1end);
    if (h.version == 0) /* version 1: 32-bit times and no footer */
        return tz_block_parse(p, 44, &h, 4, out, why, whylen);
    if (h.version < '2' || h.version > '9')
        return tz_err(why, whylen, -EBADMSG, "unknown version byte 0x%02x", h.version);
    if ((rc = tz_header_read(p, len, v1end, &h, why, whylen)))
        return rc;
    size_t v2 = v1end + 44, v2end = v2 + tz_block_size(&h, 8);
    if (v2end > len)
        return tz_err(why, whylen, -EBADMSG, "truncated: %zu bytes, the data needs %zu", len,
                      v2end);
    /* The footer: "\n" TZ string "\n", required from version 2 on; a file cut inside it
     * is as truncated as one cut in the data. */
    const unsigned char *nl =
        v2end < len && p[v2end] == '\n' ? memchr(p + v2end + 1, '\n', len - v2end - 1) : NULL;
    size_t flen = nl ? (size_t)(nl - (p + v2end + 1)) : 0;
    if (!nl || flen > TZ_MAX_FOOTER || memchr(p + v2end + 1, '\0', flen))
        return tz_err(why, whylen, -EBADMSG, "truncated or malformed footer at byte %zu", v2end);
    char footer[TZ_MAX_FOOTER + 1];
    memcpy(footer, p + v2end + 1, flen);
    footer[flen] = '\0';
    struct tz_rule rule;
    int32_t fixed = 0;
    enum tz_footer kind = tz_footer_parse(footer, &rule, &fixed);
    if (kind == TZ_FOOTER_BAD)
        return tz_err(why, whylen, -EBADMSG, "the footer's TZ string is malformed");
    struct tz *z;
    if ((rc = tz_block_parse(p, v2, &h, 8, &z, why, whylen)))
        return rc;
    if (kind == TZ_FOOTER_FIXED) {
        z->tail_off = fixed;
    } else if (kind == TZ_FOOTER_RULE) {
        z->has_rule = true;
        z->rule = rule;
    }
    *out = z;
    return 0;
}

static struct tz *tz_utc(void)
{
    return calloc(1, sizeof(struct tz));
}

int tz_load(const char *name, const char *root, struct tz **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = tz_name_check(name, err, errlen);
    if (rc)
        return rc;
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", root ? root : TZ_ROOT, name) >= sizeof(path))
        return tz_err(err, errlen, -ENAMETOOLONG, "time zone \"%s\": path too long", name);
    /* O_NONBLOCK: a FIFO where a zone should be fails the regular-file test below
     * instead of blocking the open. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct tz *z = NULL;
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT && (!strcmp(name, "UTC") || !strcmp(name, "Etc/UTC")) && (z = tz_utc()))
            goto found;
        if (e == ENOENT || e == ENOTDIR)
            return tz_err(err, errlen, -ENOENT, "unknown time zone \"%s\"", name);
        return tz_err(err, errlen, -e, "time zone \"%s\": cannot open its file: %s", name,
                      strerror_r(e, path, sizeof(path)));
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tz_err(err, errlen, -ENOENT, "unknown time zone \"%s\" (not a zone file)", name);
    }
    if (st.st_size > TZ_MAX_FILE) {
        close(fd);
        return tz_err(err, errlen, -EBADMSG, "time zone \"%s\": file larger than %d bytes", name,
                      TZ_MAX_FILE);
    }
    /* Whatever the size said, what is read is what gets parsed: a file that shrank
     * meanwhile is just shorter input. */
    size_t cap = (size_t)st.st_size, len = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf) {
        close(fd);
        return tz_err(err, errlen, -ENOMEM, "out of memory");
    }
    while (len < cap) {
        ssize_t k = read(fd, buf + len, cap - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return tz_err(err, errlen, -e, "time zone \"%s\": cannot read its file: %s", name,
                          strerror_r(e, path, sizeof(path)));
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    close(fd);
    char why[128];
    rc = tz_parse(buf, len, &z, why, sizeof(why));
    free(buf);
    if (rc)
        return tz_err(err, errlen, rc, "time zone \"%s\": not a valid TZif file: %s", name, why);
found:
    memcpy(z->name, name, strlen(name) + 1); /* checked: at most TZ_NAME_MAX */
    *out = z;
    return 0;
}

void tz_free(struct tz *z)
{
    free(z);
}

const char *tz_name(const struct tz *z)
{
    return z ? z->name : "UTC";
}

int32_t tz_offset_at(const struct tz *z, int64_t t)
{
    if (!z)
        return 0;
    if (z->n && t < z->trans[0].at)
        return z->first_off;
    if (!z->n || t >= z->trans[z->n - 1].at) {
        if (!z->has_rule)
            return z->tail_off;
        t = t > TZ_T_LIMIT ? TZ_T_LIMIT : t < -TZ_T_LIMIT ? -TZ_T_LIMIT : t;
        return tz_rule_offset(&z->rule, t);
    }
    /* The last transition at or before t: trans[lo].at <= t < trans[hi].at. */
    uint32_t lo = 0, hi = z->n - 1;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (z->trans[mid].at <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->trans[lo].off;
}

enum tz_local tz_local_to_utc(const struct tz *z, int64_t local, int64_t *utc)
{
    local = local > TZ_T_LIMIT ? TZ_T_LIMIT : local < -TZ_T_LIMIT ? -TZ_T_LIMIT : local;
    /* The instant is local - offset, and an offset is within [TZ_OFF_MIN, TZ_OFF_MAX]:
     * the offsets in force just before and just after that window are the candidates. */
    int32_t before = tz_offset_at(z, local - TZ_OFF_MAX - 1);
    int32_t after = tz_offset_at(z, local - TZ_OFF_MIN + 1);
    int64_t u1 = local - before, u2 = local - after;
    bool ok1 = tz_offset_at(z, u1) == before, ok2 = tz_offset_at(z, u2) == after;
    if (ok1 && ok2 && u1 != u2) {
        *utc = u1 < u2 ? u1 : u2;
        return TZ_LOCAL_FOLD;
    }
    if (ok1 || ok2) {
        *utc = ok1 ? u1 : u2;
        return TZ_LOCAL_UNIQUE;
    }
    /* A gap: the clocks jumped over local at the transition between the two candidates
     * (each one's offset is the other's); bisect for its instant, the first whose
     * offset differs from lo's. */
    int64_t lo = u1 < u2 ? u1 : u2, hi = u1 < u2 ? u2 : u1;
    int32_t off_lo = tz_offset_at(z, lo);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (tz_offset_at(z, mid) == off_lo)
            lo = mid;
        else
            hi = mid;
    }
    *utc = hi;
    return TZ_LOCAL_GAP;
}
