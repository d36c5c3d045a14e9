/*
 * auth.h — bearer tokens. Each token belongs to a tenant (a name); jobs are visible
 * only to the tenant that created them. Tokens come from --token-file (one per line,
 * "name:token" or just "token", whose tenant is then "line:N") and from PYJOBD_TOKEN
 * (tenant "env:PYJOBD_TOKEN"); generated names contain ':' so no file name can
 * collide with them.
 */
#ifndef PYJOBD_AUTH_H
#define PYJOBD_AUTH_H

#include <stddef.h>

#define AUTH_TENANT_MAX 64

struct auth;

/*
 * Loads the tokens. token_file and env_token may be NULL. Returns NULL with a message
 * in err when the file cannot be read or holds a malformed line (the line number is
 * named; tokens themselves are never printed).
 */
struct auth *auth_new(const char *token_file, const char *env_token, char *err, size_t errlen);
void auth_free(struct auth *a);

/* Number of tokens loaded; 0 means authentication is off. */
size_t auth_count(const struct auth *a);

/*
 * Checks the value of an Authorization header ("Bearer <token>"). Returns the tenant
 * (borrowed, valid while a lives) or NULL. The comparison takes the same time
 * whichever token matches, or none.
 */
const char *auth_check(const struct auth *a, const char *authorization);

#endif
