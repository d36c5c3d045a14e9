/*
 * format.h — printf into a new string.
 */
#ifndef PYJOBD_FORMAT_H
#define PYJOBD_FORMAT_H

/* A malloc'd string (the caller frees it), or NULL when out of memory. */
char *str_format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
