/*
 * tls.h — checks of the server's TLS settings before anything starts (server/tls.c).
 */
#ifndef PYJOBD_TLS_H
#define PYJOBD_TLS_H

#include <stddef.h>

/*
 * Checks a GnuTLS priority string (--tls-priorities; NULL: the built-in
 * HTTP_TLS_PRIORITIES) with the GnuTLS the HTTP server uses. 0 when GnuTLS accepts it
 * (it then also leaves at least one TLS version, cipher and MAC); else -1 with a
 * message in err that names --tls-priorities and the place where GnuTLS stopped
 * reading.
 */
int tls_priorities_check(const char *prio, char *err, size_t errlen);

#endif
