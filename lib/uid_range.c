/*
 * uid_range.c — a range of uids, "FIRST-LAST" (include/pyjobd/uid_range.h).
 */
#include "pyjobd/uid_range.h"

#include <errno.h>
#include <stdlib.h>

/* Digits at *s (at least one): the number, *s moved past them; -1 on none or overflow. */
static long long digits(const char **s)
{
    if (**s < '0' || **s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(*s, &end, 10);
    *s = end;
    return errno || v >= 0x7fffffffULL ? -1 : (long long)v;
}

int uid_range_parse(const char *text, unsigned long *first, unsigned long *last)
{
    *first = *last = 0;
    const char *s = text;
    long long a = digits(&s);
    if (a <= 0 || *s++ != '-')
        return -1;
    long long b = digits(&s);
    if (b < a || *s)
        return -1;
    *first = (unsigned long)a;
    *last = (unsigned long)b;
    return 0;
}
