/*
 * json_check.h — checks that bytes are exactly one JSON value, without allocating.
 */
#ifndef PYJOBD_API_JSON_CHECK_H
#define PYJOBD_API_JSON_CHECK_H

#include <stddef.h>

/* 1 when text[0..len) is one JSON value (surrounding whitespace allowed; strings are
 * valid UTF-8; at most 1024 levels of nesting), else 0. */
int api__json_check(const char *text, size_t len);

#endif
