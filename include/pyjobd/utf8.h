/*
 * utf8.h — checking text that came from a worker (Python may hand over strings that
 * are not valid UTF-8, e.g. with surrogate escapes) before it goes where UTF-8 is
 * required: JSON, PostgreSQL's text columns.
 */
#ifndef PYJOBD_UTF8_H
#define PYJOBD_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one. */
size_t utf8_seq(const unsigned char *s, size_t n);

/* Replaces, in place, every byte of s that is not part of a valid UTF-8 sequence by
 * '?'. Accepts NULL. */
void utf8_scrub(char *s);

#endif
