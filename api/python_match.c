/*
 * python_match.c — the --python-match rule. Pickles made by cloudpickle carry code
 * objects, whose format changes with every minor Python version, so by default a
 * client's major.minor must equal the workers'. The check runs before the pool sees
 * the job: nothing is unpickled to find out.
 */
#include "python_match.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int api__python_match_parse(const char *s, enum api_python_match *out)
{
    if (!s || strcmp(s, "minor") == 0)
        *out = API_PYTHON_MATCH_MINOR;
    else if (strcmp(s, "exact") == 0)
        *out = API_PYTHON_MATCH_EXACT;
    else if (strcmp(s, "none") == 0)
        *out = API_PYTHON_MATCH_NONE;
    else
        return -EINVAL;
    return 0;
}

const char *api__python_match_name(enum api_python_match m)
{
    switch (m) {
    case API_PYTHON_MATCH_MINOR:
        return "minor";
    case API_PYTHON_MATCH_EXACT:
        return "exact";
    case API_PYTHON_MATCH_NONE:
        return "none";
    }
    return "minor";
}

/* Length of the "major.minor" prefix of a version, 0 when it has none. */
static size_t minor_prefix_len(const char *s)
{
    const char *p = s;
    size_t digits = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        digits++;
    if (digits == 0 || digits > 4 || *p != '.')
        return 0;
    digits = 0;
    for (p++; *p >= '0' && *p <= '9'; p++)
        digits++;
    if (digits == 0 || digits > 4)
        return 0;
    return (size_t)(p - s);
}

int api__python_version_is_valid(const char *s)
{
    size_t n = minor_prefix_len(s);
    if (n == 0 || strlen(s) > 31)
        return 0;
    /* The rest: ".micro" and a release tag made of letters, digits, '.' and '+'. */
    for (const char *p = s + n; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || *p == '.' || *p == '+'))
            return 0;
    return 1;
}

int api__python_check(enum api_python_match mode, const char *workers, const char *client,
                      char *detail, size_t detail_len)
{
    if (mode == API_PYTHON_MATCH_NONE || !workers || !workers[0] || !client)
        return 0;
    if (mode == API_PYTHON_MATCH_EXACT) {
        if (strcmp(workers, client) == 0)
            return 0;
        snprintf(detail, detail_len,
                 "this server's workers run Python %s; the payload was made with %s: this "
                 "server requires the exact same version (--python-match=exact); use a %s "
                 "client or set --python-match",
                 workers, client, workers);
        return -EINVAL;
    }
    size_t nw = minor_prefix_len(workers), nc = minor_prefix_len(client);
    if (nw && nw == nc && memcmp(workers, client, nw) == 0)
        return 0;
    if (nw == 0) /* the workers reported something odd: do not block on it */
        return 0;
    snprintf(detail, detail_len,
             "this server's workers run Python %s; the payload was made with %s: pickles are "
             "not portable across minor versions; use a %.*s client or set --python-match",
             workers, client, (int)nw, workers);
    return -EINVAL;
}
