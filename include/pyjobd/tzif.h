/*
 * tzif.h — a time zone read from the system's TZif files (RFC 8536), for schedules
 * whose wall time is local ("30 2 * * *" in Europe/Paris). The process-global
 * localtime/mktime and the TZ variable are not used: a loaded zone is an immutable
 * value, so any thread may ask it for offsets, and asking allocates nothing.
 */
#ifndef PYJOBD_TZIF_H
#define PYJOBD_TZIF_H

#include <stddef.h>
#include <stdint.h>

struct tz;

/* Where the zones are (Debian's tzdata). */
#define TZ_ROOT "/usr/share/zoneinfo"
/* The longest zone name accepted ("America/Argentina/ComodRivadavia" is 32). */
#define TZ_NAME_MAX 64

/* 0 when name is a well-formed zone name: components of [A-Za-z0-9_+-] separated by
 * '/', no empty component (so no leading or trailing '/'), no '.' at all (so no ".."),
 * at most TZ_NAME_MAX characters. Otherwise -EINVAL and err says what is wrong (it
 * never quotes a byte that is not printable ASCII, so it can go into JSON as is). */
int tz_name_check(const char *name, char *err, size_t errlen);

/* Loads the zone called name from root (NULL: TZ_ROOT) into *out, to be given to
 * tz_free. The name is checked (tz_name_check) before the filesystem is touched; the
 * file is untrusted input: every count and offset is checked against its size and
 * against caps (2000 transitions, 256 types), so a truncated or hostile file is an
 * error, never an over-read. "UTC" and "Etc/UTC" are built in when root has no such
 * file (a container without tzdata). 0, or a negative errno with err naming what is
 * wrong: -EINVAL (the name), -ENOENT (no such zone), -EBADMSG (not a TZif file the
 * reader accepts), -ENOMEM, or what open/read said. */
int tz_load(const char *name, const char *root, struct tz **out, char *err, size_t errlen);

void tz_free(struct tz *z);

/* The name the zone was loaded as. */
const char *tz_name(const struct tz *z);

/* Seconds east of UTC in force at utc_seconds (+3600 for Paris in winter). */
int32_t tz_offset_at(const struct tz *z, int64_t utc_seconds);

/* What a local wall time is in a zone (tz_local_to_utc). */
enum tz_local {
    TZ_LOCAL_UNIQUE, /* it happens once */
    TZ_LOCAL_FOLD,   /* twice (clocks went back): *utc is the first */
    TZ_LOCAL_GAP,    /* never (clocks went forward over it): *utc is the end of the gap */
};

/* The UTC instant of a local wall time given as seconds since 1970-01-01 00:00 local
 * time; z NULL is UTC. In a gap, *utc is the first instant after it (2026-03-29 02:30
 * in Paris gives 01:00Z, when the clocks show 03:00). Assumes, as every real zone
 * allows, at most one transition within 26 hours either side. */
enum tz_local tz_local_to_utc(const struct tz *z, int64_t local_seconds, int64_t *utc);

/* Proleptic Gregorian calendar helpers (the zone's rules and cron's fields need them):
 * days since 1970-01-01 of y-m-d (m 1-12; a day past the month's end runs into the
 * next), and back. */
int64_t tz_days_from_civil(int64_t y, int m, int d);
void tz_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

#endif
