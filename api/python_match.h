/*
 * python_match.h — whether a payload pickled by one Python may run on the workers'
 * Python (api-internal, pure).
 */
#ifndef PYJOBD_API_PYTHON_MATCH_H
#define PYJOBD_API_PYTHON_MATCH_H

#include <stddef.h>

enum api_python_match {
    API_PYTHON_MATCH_MINOR, /* same major.minor (pickles of one minor version load) */
    API_PYTHON_MATCH_EXACT, /* same version string */
    API_PYTHON_MATCH_NONE,  /* never check */
};

/* "minor" | "exact" | "none" → *out. 0 or -EINVAL. */
int api__python_match_parse(const char *s, enum api_python_match *out);
const char *api__python_match_name(enum api_python_match m);

/* 1 when s looks like platform.python_version(): "3.11.2", "3.13.0rc1", "3.14.0a1+". */
int api__python_version_is_valid(const char *s);

/*
 * Checks a client's version against the workers' (workers == "" or NULL: not known
 * yet, accepted). 0, or -EINVAL with a sentence naming both versions in detail.
 */
int api__python_check(enum api_python_match mode, const char *workers, const char *client,
                      char *detail, size_t detail_len);

#endif
