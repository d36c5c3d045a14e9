/*
 * auth.c — bearer tokens and their roles (include/pyjobd/auth.h).
 *
 * Every check compares the presented token with every configured token, always to
 * the end, with a comparison whose time depends only on the lengths involved: no
 * early exit tells an attacker how many leading bytes were right or which token
 * nearly matched. The tenant and the role of the match are selected without a
 * branch.
 *
 * The token file is every tenant's secret: one that users other than its owner can
 * read (the workers' user, whose jobs run anyone's code) is refused unless the
 * operator says --allow-insecure-files. It is checked on the open file, so what is
 * checked is what is read.
 */
#include "pyjobd/auth.h"
#include "pyjobd/api.h"
#include "pyjobd/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define TOKEN_MIN 16
#define TOKEN_MAX 512
#define OPTION_SPACE " \t\v\f\r\n"

_Static_assert(AUTH_CURSOR_KEY_BYTES == API_CURSOR_KEY_BYTES, "one cursor key size");

struct token {
    char tenant[AUTH_TENANT_MAX];
    char *secret;
    size_t len;
    enum auth_role role;
    int from_file;   /* 1: a line of --token-file (the cursor key is theirs) */
    int isolate_job; /* isolation=job: each of the tenant's jobs in a process of its own */
};

struct auth {
    struct token *tokens;
    size_t n, cap;
    int has_file;
};

static int add_token(struct auth *a, const char *tenant, const char *secret, size_t len,
                     enum auth_role role, int from_file)
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
    t->role = role;
    t->from_file = from_file;
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

/*
 * The options after a line's token (opts is modified). 0 and *role, or -1 with a
 * message. An unknown option is not quoted: a token with a space in it would end up
 * there, and no secret is ever printed.
 */
static int parse_options(char *opts, enum auth_role *role, int *isolate_job, const char *path,
                         int lineno, char *err, size_t errlen)
{
    static const char accepted[] = "accepted: 'admin' (or 'role=admin') and 'role=user', the "
                                   "default, and 'isolation=job' or 'isolation=tenant'; tokens "
                                   "cannot contain spaces";
    int have_role = 0, have_isolation = 0;
    char *save = NULL;
    *role = AUTH_ROLE_USER;
    *isolate_job = 0;
    for (char *o = strtok_r(opts, OPTION_SPACE, &save); o;
         o = strtok_r(NULL, OPTION_SPACE, &save)) {
        enum auth_role r;
        if (strncmp(o, "isolation=", 10) == 0) {
            if (strcmp(o + 10, "job") && strcmp(o + 10, "tenant")) {
                snprintf(err, errlen,
                         "--token-file %s line %d: the isolation must be job or tenant; %s", path,
                         lineno, accepted);
                return -1;
            }
            if (have_isolation++) {
                snprintf(err, errlen, "--token-file %s line %d: the isolation is given twice", path,
                         lineno);
                return -1;
            }
            *isolate_job = strcmp(o + 10, "job") == 0;
            continue;
        }
        if (strcmp(o, "admin") == 0 || strcmp(o, "role=admin") == 0) {
            r = AUTH_ROLE_ADMIN;
        } else if (strcmp(o, "role=user") == 0) {
            r = AUTH_ROLE_USER;
        } else if (strncmp(o, "role=", 5) == 0) {
            snprintf(err, errlen, "--token-file %s line %d: the role must be admin or user; %s",
                     path, lineno, accepted);
            return -1;
        } else {
            snprintf(err, errlen,
                     "--token-file %s line %d: unknown option after the token (not shown, in "
                     "case it is part of a secret); %s",
                     path, lineno, accepted);
            return -1;
        }
        if (have_role) {
            snprintf(err, errlen, "--token-file %s line %d: the role is given twice", path, lineno);
            return -1;
        }
        have_role = 1;
        *role = r;
    }
    return 0;
}

/* One non-blank, non-comment line, trimmed: "[name:]token [option ...]". */
static int parse_line(struct auth *a, char *s, const char *path, int lineno, char *err,
                      size_t errlen)
{
    char *opts = s + strcspn(s, OPTION_SPACE);
    if (*opts)
        *opts++ = '\0';
    enum auth_role role;
    int isolate_job;
    if (parse_options(opts, &role, &isolate_job, path, lineno, err, errlen) != 0)
        return -1;
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
                 "without spaces (optionally 'name:' before it, and 'admin' after it)",
                 path, lineno, TOKEN_MIN, TOKEN_MAX);
        return -1;
    }
    if (add_token(a, tenant, s, strlen(s), role, 1) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->tokens[a->n - 1].isolate_job = isolate_job;
    return 0;
}

/* Refuses (or, allowed, warns about) a token file others than its owner can use. */
static int check_mode(FILE *f, const char *path, int allow_insecure, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        snprintf(err, errlen, "cannot stat --token-file %s: %s", path, strerror(errno));
        return -1;
    }
    if (!(st.st_mode & 077))
        return 0;
    unsigned mode = (unsigned)(st.st_mode & 07777);
    if (!allow_insecure) {
        snprintf(err, errlen,
                 "--token-file %s can be read or written by users other than its owner "
                 "(mode %04o), the workers' user among them, and it holds every tenant's "
                 "token: run 'chmod 600 %s' (or pass --allow-insecure-files to start anyway)",
                 path, mode, path);
        return -1;
    }
    log_warn("--token-file %s can be read or written by users other than its owner (mode "
             "%04o): any of them gets every tenant's token; fix it with 'chmod 600 %s' "
             "(starting anyway: --allow-insecure-files)",
             path, mode, path);
    return 0;
}

static int load_file(struct auth *a, const char *path, int allow_insecure, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "cannot read --token-file %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = check_mode(f, path, allow_insecure, err, errlen);
    char line[1024];
    int lineno = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
            snprintf(err, errlen, "--token-file %s line %d is longer than %zu characters", path,
                     lineno, sizeof(line) - 2);
            rc = -1;
            break;
        }
        while (len && isspace((unsigned char)line[len - 1]))
            line[--len] = 0;
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        if (*s && *s != '#')
            rc = parse_line(a, s, path, lineno, err, errlen);
    }
    explicit_bzero(line, sizeof(line));
    fclose(f);
    return rc;
}

struct auth *auth_new(const char *token_file, const char *env_token, int allow_insecure_files,
                      char *err, size_t errlen)
{
    struct auth *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (token_file && load_file(a, token_file, allow_insecure_files, err, errlen) != 0) {
        auth_free(a);
        return NULL;
    }
    if (token_file && a->n == 0) {
        snprintf(err, errlen, "--token-file %s holds no token", token_file);
        auth_free(a);
        return NULL;
    }
    a->has_file = token_file != NULL;
    if (env_token && *env_token) {
        if (!valid_secret(env_token, strlen(env_token))) {
            snprintf(err, errlen,
                     "PYJOBD_TOKEN must be %d to %d printable characters without spaces", TOKEN_MIN,
                     TOKEN_MAX);
            auth_free(a);
            return NULL;
        }
        /* The one token of the environment is the operator's own. */
        if (add_token(a, "env:PYJOBD_TOKEN", env_token, strlen(env_token), AUTH_ROLE_ADMIN, 0) !=
            0) {
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

/* The tenants of the tokens `pick` accepts, each once, in token order. */
static char **tenants_where(const struct auth *a, int (*pick)(const struct token *))
{
    char **out = calloc(a->n + 1, sizeof(*out));
    size_t n = 0;
    for (size_t i = 0; out && i < a->n; i++) {
        const struct token *t = &a->tokens[i];
        int seen = 0;
        for (size_t k = 0; k < n && !seen; k++)
            seen = strcmp(out[k], t->tenant) == 0;
        if (!pick(t) || seen)
            continue;
        if (!(out[n++] = strdup(t->tenant))) {
            auth_strings_free(out);
            return NULL;
        }
    }
    return out;
}

static int isolates_job(const struct token *t)
{
    return t->isolate_job;
}

static int any_token(const struct token *t)
{
    (void)t;
    return 1;
}

char **auth_job_isolated_tenants(const struct auth *a)
{
    return tenants_where(a, isolates_job);
}

char **auth_tenant_names(const struct auth *a)
{
    return tenants_where(a, any_token);
}

void auth_strings_free(char **list)
{
    for (size_t i = 0; list && list[i]; i++)
        free(list[i]);
    free(list);
}

size_t auth_count_admins(const struct auth *a)
{
    size_t n = 0;
    for (size_t i = 0; a && i < a->n; i++)
        n += a->tokens[i].role == AUTH_ROLE_ADMIN;
    return n;
}

size_t auth_count_tenants(const struct auth *a)
{
    size_t n = 0;
    for (size_t i = 0; a && i < a->n; i++) {
        size_t j = 0;
        while (j < i && strcmp(a->tokens[j].tenant, a->tokens[i].tenant) != 0)
            j++;
        n += j == i; /* the first token of its tenant */
    }
    return n;
}

/* 1 when equal; time depends on the lengths only. */
static int equal_ct(const char *given, size_t glen, const char *secret, size_t slen)
{
    unsigned char diff = glen != slen;
    for (size_t i = 0; i < glen; i++)
        diff |= (unsigned char)given[i] ^ (unsigned char)secret[i % slen];
    return diff == 0;
}

const char *auth_check(const struct auth *a, const char *authorization, enum auth_role *role)
{
    *role = AUTH_ROLE_USER;
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
    uintptr_t r = AUTH_ROLE_USER;
    for (size_t i = 0; i < a->n; i++) {
        int eq = equal_ct(given, glen, a->tokens[i].secret, a->tokens[i].len);
        /* Branch-free select: keep scanning all tokens whatever matched. */
        uintptr_t mask = (uintptr_t)0 - (uintptr_t)eq;
        tenant =
            (const char *)(((uintptr_t)a->tokens[i].tenant & mask) | ((uintptr_t)tenant & ~mask));
        r = ((uintptr_t)a->tokens[i].role & mask) | (r & ~mask);
    }
    *role = (enum auth_role)r;
    return tenant;
}

int auth_cursor_key(const struct auth *a, uint8_t key[AUTH_CURSOR_KEY_BYTES])
{
    if (!a || !a->has_file)
        return 0;
    /* Each token with its length in front, in file order: the same file, the same key. */
    size_t len = 0;
    for (size_t i = 0; i < a->n; i++)
        len += a->tokens[i].from_file ? 4 + a->tokens[i].len : 0;
    uint8_t *material = malloc(len);
    if (!material)
        return -ENOMEM;
    uint8_t *p = material;
    for (size_t i = 0; i < a->n; i++) {
        const struct token *t = &a->tokens[i];
        if (!t->from_file)
            continue;
        for (int b = 0; b < 4; b++)
            *p++ = (uint8_t)(t->len >> (8 * b));
        memcpy(p, t->secret, t->len);
        p += t->len;
    }
    api_cursor_key_derive(material, len, key);
    explicit_bzero(material, len);
    free(material);
    return 1;
}
