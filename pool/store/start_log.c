/*
 * start_log.c — a job's start on record with one write(2) (start_log.h).
 *
 * A line per start, "<id> <attempts> <started_us> <pid>\n", appended to
 * "<database>-starts" (mode 0600), under the store's lock. What reaches the kernel
 * survives a crash of this process, as a commit with synchronous=NORMAL does; a power
 * cut may lose the last ones, as it may lose the last commits. Lines that do not parse
 * (a torn tail after a power cut) are skipped.
 */
#include "start_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct start_log {
    int fd;
    off_t size;
    char *path;
};

struct start_log *start_log_open(const char *db_path, char *err, size_t errlen)
{
    struct start_log *l = calloc(1, sizeof(*l));
    if (!l || asprintf(&l->path, "%s-starts", db_path) < 0) {
        free(l);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->fd = open(l->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    struct stat st;
    if (l->fd < 0 || fstat(l->fd, &st) != 0) {
        snprintf(err, errlen, "cannot open the store's start log %s: %s", l->path, strerror(errno));
        start_log_close(l);
        return NULL;
    }
    l->size = st.st_size;
    return l;
}

void start_log_close(struct start_log *l)
{
    if (!l)
        return;
    if (l->fd >= 0)
        close(l->fd);
    free(l->path);
    free(l);
}

int start_log_append(struct start_log *l, const struct job_view *v)
{
    char line[JOB_ID_LEN + 64];
    int64_t us = (int64_t)v->started_at.tv_sec * 1000000 + v->started_at.tv_nsec / 1000;
    int n = snprintf(line, sizeof(line), "%s %u %" PRId64 " %d\n", v->id, v->attempts, us,
                     (int)v->worker_pid);
    ssize_t w = write(l->fd, line, (size_t)n);
    if (w != n) {
        if (w > 0) /* a part: cut it off again, so that the next line starts clean */
            if (ftruncate(l->fd, l->size) != 0)
                return -EIO;
        return w < 0 ? -errno : -EIO;
    }
    l->size += n;
    return 0;
}

int start_log_empty(const struct start_log *l)
{
    return l->size == 0;
}

void start_log_truncate(struct start_log *l)
{
    if (l->size && ftruncate(l->fd, 0) == 0)
        l->size = 0;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const struct start_entry *)a)->id, ((const struct start_entry *)b)->id);
}

int start_log_read(struct start_log *l, struct start_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int fd = open(l->path, O_RDONLY | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    struct start_entry *items = NULL;
    size_t count = 0, cap = 0;
    char line[256];
    int rc = 0;
    while (fgets(line, sizeof(line), f)) {
        struct start_entry e;
        char id[JOB_ID_LEN + 2];
        int64_t us;
        int pid;
        char nl;
        if (sscanf(line, "%33s %u %" SCNd64 " %d%c", id, &e.attempts, &us, &pid, &nl) != 5 ||
            nl != '\n' || strlen(id) != JOB_ID_LEN)
            continue;
        memcpy(e.id, id, JOB_ID_LEN + 1);
        e.started_at = (struct timespec){.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
        e.worker_pid = pid;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct start_entry *more = realloc(items, ncap * sizeof(*more));
            if (!more) {
                rc = -ENOMEM;
                break;
            }
            items = more;
            cap = ncap;
        }
        items[count++] = e;
    }
    fclose(f);
    if (rc != 0) {
        free(items);
        return rc;
    }
    /* Sorted by id, one entry per job: its latest attempt. */
    if (count)
        qsort(items, count, sizeof(*items), by_id);
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        if (kept && strcmp(items[kept - 1].id, items[i].id) == 0) {
            if (items[i].attempts > items[kept - 1].attempts)
                items[kept - 1] = items[i];
        } else {
            items[kept++] = items[i];
        }
    }
    *out = items;
    *n = kept;
    return 0;
}

const struct start_entry *start_log_find(const struct start_entry *items, size_t n, const char *id)
{
    struct start_entry key;
    snprintf(key.id, sizeof(key.id), "%s", id);
    return n ? bsearch(&key, items, n, sizeof(*items), by_id) : NULL;
}
