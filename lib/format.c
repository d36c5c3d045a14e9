/*
 * format.c — see include/pyjobd/format.h.
 */
#include "pyjobd/format.h"

#include <stdarg.h>
#include <stdio.h>

char *str_format(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}
