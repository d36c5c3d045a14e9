/*
 * store_history.c — a job's attempt history as both durable stores keep it
 * (store_history.h): one line per attempt, "started_us ended_us worker_pid error_type
 * [@node ]message", the message with '\\', '\n' and '\r' escaped (so a line is an
 * attempt whatever a job wrote in its exception), the node (a shared store's; blanks
 * in it written '_') only when there is one. A message never starts with '@' (it is
 * pyjobd's or "ExceptionType: ..."), so lines written before the node was kept read
 * the same. The PostgreSQL store's reap appends such a line in SQL (pg_sql.c).
 * Pure functions, shared by the writers and the loaders.
 */
#include "store_history.h"

#include <ctype.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *sqls__history_encode(const struct job_attempt *h, unsigned n)
{
    size_t cap = 1;
    for (unsigned i = 0; i < n; i++)
        cap += 80 + JOB_NODE_MAX + 2 * (h[i].message ? strlen(h[i].message) : 0);
    char *out = malloc(cap), *p = out;
    if (!out)
        return NULL;
    for (unsigned i = 0; i < n; i++) {
        p += sprintf(p, "%" PRId64 " %" PRId64 " %d %d ", h[i].started_us, h[i].ended_us,
                     (int)h[i].worker_pid, (int)h[i].error);
        if (h[i].node[0]) {
            *p++ = '@';
            for (const char *c = h[i].node; *c && c < h[i].node + sizeof(h[i].node); c++)
                *p++ = isspace((unsigned char)*c) ? '_' : *c;
            *p++ = ' ';
        }
        for (const char *m = h[i].message ? h[i].message : ""; *m; m++) {
            if (*m == '\\' || *m == '\n' || *m == '\r') {
                *p++ = '\\';
                *p++ = *m == '\\' ? '\\' : *m == '\n' ? 'n' : 'r';
            } else {
                *p++ = *m;
            }
        }
        *p++ = '\n';
    }
    *p = 0;
    return out;
}

int sqls__history_decode(const char *text, struct job_attempt **out, unsigned *n)
{
    *out = NULL;
    *n = 0;
    if (!text || !*text)
        return 0;
    unsigned lines = 0;
    for (const char *s = text; *s; s++)
        lines += *s == '\n';
    if (lines > JOB_HISTORY_MAX)
        lines = JOB_HISTORY_MAX;
    struct job_attempt *h = calloc(lines ? lines : 1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    const char *s = text;
    unsigned k = 0;
    while (k < lines && *s) {
        int pid, type, used = 0;
        int64_t a, b;
        if (sscanf(s, "%" SCNd64 " %" SCNd64 " %d %d %n", &a, &b, &pid, &type, &used) < 4 ||
            used == 0)
            break; /* damaged: what was read so far stays */
        s += used;
        char node[JOB_NODE_MAX] = "";
        if (*s == '@') {
            size_t w = strcspn(s + 1, " \n");
            snprintf(node, sizeof(node), "%.*s", (int)(w < sizeof(node) ? w : sizeof(node) - 1),
                     s + 1);
            s += 1 + w + (s[1 + w] == ' ');
        }
        const char *end = strchr(s, '\n');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        char *m = len ? malloc(len + 1) : NULL, *q = m;
        if (len && !m)
            break;
        for (size_t i = 0; i < len; i++) {
            if (s[i] == '\\' && i + 1 < len) {
                char c = s[++i];
                *q++ = c == 'n' ? '\n' : c == 'r' ? '\r' : c;
            } else {
                *q++ = s[i];
            }
        }
        if (q)
            *q = 0;
        h[k].started_us = a;
        h[k].ended_us = b;
        h[k].worker_pid = pid;
        h[k].error =
            type >= 0 && type <= JOB_ERR_MAX ? (enum job_error_type)type : JOB_ERR_EXCEPTION;
        h[k].message = m;
        memcpy(h[k++].node, node, sizeof(node));
        s += len + (end != NULL);
    }
    *out = h;
    *n = k;
    return 0;
}
