/*
 * store_history.c — a job's attempt history as the SQLite store keeps it: one line
 * per attempt, "started_us ended_us worker_pid error_type message", the message with
 * '\\', '\n' and '\r' escaped (so a line is an attempt whatever a job wrote in its
 * exception). Pure functions, shared by the writer and the loader.
 */
#include "store_sqlite.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *sqls__history_encode(const struct job_attempt *h, unsigned n)
{
    size_t cap = 1;
    for (unsigned i = 0; i < n; i++)
        cap += 80 + 2 * (h[i].message ? strlen(h[i].message) : 0);
    char *out = malloc(cap), *p = out;
    if (!out)
        return NULL;
    for (unsigned i = 0; i < n; i++) {
        p += sprintf(p, "%" PRId64 " %" PRId64 " %d %d ", h[i].started_us, h[i].ended_us,
                     (int)h[i].worker_pid, (int)h[i].error);
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
        h[k++] = (struct job_attempt){
            a, b, pid,
            type >= 0 && type <= JOB_ERR_MAX ? (enum job_error_type)type : JOB_ERR_EXCEPTION, m};
        s += len + (end != NULL);
    }
    *out = h;
    *n = k;
    return 0;
}
