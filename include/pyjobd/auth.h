/*
 * auth.h — bearer tokens and their roles. Each token belongs to a tenant (a name) and
 * has a role; jobs are visible only to the tenant that created them, and only an
 * admin administers the shared service (resizes the pool, reads /metrics, sees every
 * worker). Tokens come from --token-file, one per line:
 *
 *     [name:]token [option ...]
 *
 * Options follow the token, separated by whitespace (a token never holds any, while
 * it may hold ':'): "admin" or "role=admin", and "role=user", the default. An
 * unnamed token's tenant is "line:N". PYJOBD_TOKEN is one admin token, tenant
 * "env:PYJOBD_TOKEN". Generated names contain ':' so no file name can collide with
 * them.
 */
#ifndef PYJOBD_AUTH_H
#define PYJOBD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_TENANT_MAX 64
#define AUTH_CURSOR_KEY_BYTES 16

enum auth_role { AUTH_ROLE_USER = 0, AUTH_ROLE_ADMIN = 1 };

struct auth;

/*
 * Loads the tokens. token_file and env_token may be NULL. Returns NULL with a message
 * in err when the file cannot be read, holds a malformed line (the line number is
 * named; tokens themselves are never printed), or can be read or written by users
 * other than its owner (mode & 077): then the message names the chmod that fixes it,
 * unless allow_insecure_files, which only logs a warning.
 */
struct auth *auth_new(const char *token_file, const char *env_token, int allow_insecure_files,
                      char *err, size_t errlen);
void auth_free(struct auth *a);

/* Number of tokens loaded; 0 means authentication is off. */
size_t auth_count(const struct auth *a);

/* The tenants a token-file line gave isolation=job (each once), NULL-terminated and
 * owned by the caller (auth_strings_free); NULL when out of memory. A tenant named on
 * several lines is job-isolated if any of them says so. */
char **auth_job_isolated_tenants(const struct auth *a);
void auth_strings_free(char **list);

/* Every tenant once, in the order of their first token (the token file's lines, then
 * PYJOBD_TOKEN's), NULL-terminated; owned by the caller (auth_strings_free), NULL when
 * out of memory. */
char **auth_tenant_names(const struct auth *a);

/* Number of tokens with the role admin. */
size_t auth_count_admins(const struct auth *a);

/* Number of distinct tenants among the tokens (several tokens may share a name). */
size_t auth_count_tenants(const struct auth *a);

/*
 * Checks the value of an Authorization header ("Bearer <token>"). Returns the tenant
 * (borrowed, valid while a lives) and sets *role, or returns NULL (*role is then
 * AUTH_ROLE_USER). The comparison takes the same time whichever token matches, or
 * none.
 */
const char *auth_check(const struct auth *a, const char *authorization, enum auth_role *role);

/*
 * The key of list cursors: a hash of the token file's tokens, so that every node
 * given the same file agrees (see api_cursor_key_derive). 1 with key filled, 0
 * without a token file (one user: cursors stay plain), or -ENOMEM.
 */
int auth_cursor_key(const struct auth *a, uint8_t key[AUTH_CURSOR_KEY_BYTES]);

#endif
