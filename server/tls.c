/*
 * tls.c — the server's TLS settings, checked before anything starts
 * (include/pyjobd/tls.h).
 *
 * libmicrohttpd hands --tls-priorities to gnutls_priority_init only when it starts its
 * daemon and then reports no more than "failed to start". GnuTLS tells where a priority
 * string stops making sense (err_pos), so the string is parsed here first, with the
 * same library, and a mistake is reported against the flag.
 */
#include "pyjobd/tls.h"

#include "pyjobd/http.h"

#include <gnutls/gnutls.h>
#include <stdio.h>
#include <string.h>

int tls_priorities_check(const char *prio, char *err, size_t errlen)
{
    const char *s = prio ? prio : HTTP_TLS_PRIORITIES;
    const char *what = prio ? "--tls-priorities" : "the built-in TLS priorities";
    gnutls_priority_t p;
    const char *err_pos = NULL;
    int rc = gnutls_priority_init(&p, s, &err_pos);
    if (rc != GNUTLS_E_SUCCESS) {
        if (rc == GNUTLS_E_INVALID_REQUEST && err_pos && err_pos >= s && err_pos <= s + strlen(s)) {
            size_t at = (size_t)(err_pos - s);
            snprintf(err, errlen,
                     "%s: GnuTLS cannot read the priority string at character %zu: "
                     "'%.40s%s' (in '%s'); see `gnutls-cli --priority STRING --list`",
                     what, at + 1, err_pos, strlen(err_pos) > 40 ? "..." : "", s);
        } else {
            /* GNUTLS_E_NO_PRIORITIES_WERE_SET: no version, cipher or MAC is left. */
            snprintf(err, errlen, "%s: GnuTLS refuses the priority string '%s': %s", what, s,
                     gnutls_strerror(rc));
        }
        return -1;
    }
    gnutls_priority_deinit(p);
    return 0;
}
