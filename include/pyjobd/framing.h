/*
 * framing.h — one framing per request, strictly: the header checks that keep a proxy
 * in front of the server and the server itself from disagreeing on where a request
 * ends (request smuggling) or on who sends it. Pure functions over the request's
 * header fields, so that they can be tested without a connection.
 */
#ifndef PYJOBD_FRAMING_H
#define PYJOBD_FRAMING_H

#include <stddef.h>

struct framing_header {
    const char *name, *value;
    size_t value_len;
};

/*
 * 0 when the request is framed one way only, else the status to answer with the
 * connection closed, and a detail in why:
 *  400 — both Content-Length and Transfer-Encoding; two Content-Lengths that differ;
 *        a Content-Length that is not a plain decimal number; a second Authorization
 *        or Idempotency-Key;
 *  501 — a Transfer-Encoding other than a single "chunked" (e.g. gzip, "gzip,
 *        chunked", or two Transfer-Encoding fields).
 */
int framing_check(const struct framing_header *h, size_t n, char *why, size_t whylen);

#endif
