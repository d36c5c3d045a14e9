/*
 * auth.c — bearer tokens (include/pyjobd/auth.h).
 *
 * Every check compares the presented token with every configured token, always to
 * the end, with a comparison whose time depends only on the lengths involved: no
 * early exit tells an attacker how many leading bytes were right or which token
 * nearly matched.
 */
#include "pyjobd/auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOKEN_MIN 16
#define TOKEN_MAX 512

struct token {
    char tenant[AUTH_TENANT_MAX];
    char *secret;
    size_t len;
};

struct auth {
    struct token *tokens;
    size_t n, cap;
};

static int add_token(struct auth *a, const char *tenant, const char *secret, size_t len)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        struct token *t = realloc(a->tokens, cap * sizeof(*t));
        if (!t)
            return -ENOMEM;
        a->tokens = t;
        a->cap = cap;
    }
    struct token *t = &a->tokens[a->n];
    snprintf(t->tenant, sizeof(t->tenant), "%s", tenant);
    t->secret = strndup(secret, len);
    if (!t->secret)
        return -ENOMEM;
    t->len = len;
    a->n++;
    return 0;
}

static int valid_secret(const char *s, size_t len)
{
    if (len < TOKEN_MIN || len > TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isgraph((unsigned char)s[i]))
            return 0;
    return 1;
}

static int load_file(struct auth *a, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "cannot read --token-file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[1024];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        while (len && isspace((unsigned char)line[len - 1]))
            line[--len] = 0;
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        if (!*s || *s == '#')
            continue;
        char tenant[AUTH_TENANT_MAX];
        /* Unnamed: a name no "name:" prefix can spell (it has a ':'), so two tokens
         * share jobs only when the operator gives them the same name on purpose. */
        snprintf(tenant, sizeof(tenant), "line:%d", lineno);
        char *colon = strchr(s, ':');
        if (colon) {
            size_t nlen = (size_t)(colon - s);
            int ok = nlen > 0 && nlen < sizeof(tenant);
            for (size_t i = 0; ok && i < nlen; i++)
                ok = isalnum((unsigned char)s[i]) || strchr("_.-", s[i]);
            if (ok) {
                memcpy(tenant, s, nlen);
                tenant[nlen] = 0;
                s = colon + 1;
            }
        }
        if (!valid_secret(s, strlen(s))) {
            snprintf(err, errlen,
                     "--token-file %s line %d: a token must be %d to %d printable characters "
                     "without spaces (optionally prefixed by 'name:')",
                     path, lineno, TOKEN_MIN, TOKEN_MAX);
            rc = -1;
        } else if (add_token(a, tenant, s, strlen(s)) != 0) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
    }
    fclose(f);
    return rc;
}

struct auth *auth_new(const char *token_file, const char *env_token, char *err, size_t errlen)
{
    struct auth *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (token_file && load_file(a, token_file, err, errlen) != 0) {
        auth_free(a);
        return NULL;
    }
    if (token_file && a->n == 0) {
        snprintf(err, errlen, "--token-file %s holds no token", token_file);
        auth_free(a);
        return NULL;
    }
    if (env_token && *env_token) {
        if (!valid_secret(env_token, strlen(env_token))) {
            snprintf(err, errlen,
                     "PYJOBD_TOKEN must be %d to %d printable characters without spaces", TOKEN_MIN,
                     TOKEN_MAX);
            auth_free(a);
            return NULL;
        }
        if (add_token(a, "env:PYJOBD_TOKEN", env_token, strlen(env_token)) != 0) {
            snprintf(err, errlen, "out of memory");
            auth_free(a);
            return NULL;
        }
    }
    return a;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++) {
        /* Don't leave secrets in freed memory. */
        explicit_bzero(a->tokens[i].secret, a->tokens[i].len);
        free(a->tokens[i].secret);
    }
    free(a->tokens);
    free(a);
}

size_t auth_count(const struct auth *a)
{
    return a ? a->n : 0;
}

/* 1 when equal; time depends on the lengths only. */
static int equal_ct(const char *given, size_t glen, const char *secret, size_t slen)
{
    unsigned char diff = glen != slen;
    for (size_t i = 0; i < glen; i++)
        diff |= (unsigned char)given[i] ^ (unsigned char)secret[i % slen];
    return diff == 0;
}

const char *auth_check(const struct auth *a, const char *authorization)
{
    if (!a || !authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    const char *given = authorization + 7;
    while (*given == ' ')
        given++;
    size_t glen = strlen(given);
    while (glen && given[glen - 1] == ' ')
        glen--;
    if (glen == 0 || glen > TOKEN_MAX)
        return NULL;
    const char *tenant = NULL;
    for (size_t i = 0; i < a->n; i++) {
        int eq = equal_ct(given, glen, a->tokens[i].secret, a->tokens[i].len);
        /* Branch-free select: keep scanning all tokens whatever matched. */
        uintptr_t mask = (uintptr_t)0 - (uintptr_t)eq;
        tenant =
            (const char *)(((uintptr_t)a->tokens[i].tenant & mask) | ((uintptr_t)tenant & ~mask));
    }
    return tenant;
}
