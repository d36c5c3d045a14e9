/*
 * pool.c — the pool's public face (include/pyjobd/pool.h): construction and teardown,
 * and the calls HTTP threads make (submit, get, watch, info). Each takes the pool
 * lock briefly and pokes the supervisor thread (supervisor.c) through an eventfd;
 * none of them waits for a worker.
 */
#include "internal.h"
#include "pyjobd/log.h"
#include "pyjobd/registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

int64_t pool_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pool__job_free(struct job *j)
{
    if (!j)
        return;
    job_spec_release(&j->spec);
    job_view_release(&j->v);
    free(j);
}

static void free_job_cb(void *rec, void *arg)
{
    (void)arg;
    pool__job_free(rec);
}

struct pool *pool_new(const struct pool_config *cfg)
{
    if (!cfg->worker_path || cfg->workers == 0) {
        errno = EINVAL;
        return NULL;
    }
    struct pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->cfg = *cfg;
    p->epfd = p->wakefd = -1;
    pthread_mutex_init(&p->lock, NULL);
    p->jobs = registry_new();
    p->workers = calloc(cfg->workers, sizeof(*p->workers));
    p->nworkers = cfg->workers;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!p->jobs || !p->workers || p->epfd < 0 || p->wakefd < 0)
        goto err;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev) != 0)
        goto err;
    for (unsigned i = 0; i < p->nworkers; i++) {
        struct worker *w = &p->workers[i];
        w->slot = i;
        w->state = WORKER_EMPTY;
        w->pid = 0;
        w->pidfd = w->sock = -1;
        w->respawn_at_ms = 0; /* the supervisor starts every slot on its first turn */
    }
    int rc = pthread_create(&p->thread, NULL, pool__supervisor_main, p);
    if (rc != 0) {
        errno = rc;
        goto err;
    }
    p->thread_started = 1;
    return p;
err: {
    int saved = errno ? errno : ENOMEM;
    pool_free(p);
    errno = saved;
    return NULL;
}
}

void pool_stop(struct pool *p)
{
    if (!p || !p->thread_started || p->stopped)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_mutex_unlock(&p->lock);
    pool__wake(p);
    pthread_join(p->thread, NULL);
    p->stopped = 1;
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    pool_stop(p);
    if (p->jobs) {
        registry_foreach(p->jobs, free_job_cb, NULL);
        registry_free(p->jobs);
    }
    if (p->workers) {
        for (unsigned i = 0; i < p->nworkers; i++) {
            free(p->workers[i].in);
            free(p->workers[i].out);
        }
        free(p->workers);
    }
    free(p->waiters.items);
    if (p->epfd >= 0)
        close(p->epfd);
    if (p->wakefd >= 0)
        close(p->wakefd);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static void new_job_id(char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (errno != EINTR)
            abort(); /* the kernel's CSPRNG is not optional: ids must be unguessable */
    }
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[JOB_ID_LEN] = 0;
}

int pool_submit(struct pool *p, const struct job_spec *spec, char *id_out)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->v.status = JOB_QUEUED;
    clock_gettime(CLOCK_REALTIME, &j->v.created_at);
    j->v.timeout = spec->timeout > 0 ? spec->timeout : p->cfg.default_timeout;
    j->v.error.exit_code = -1;
    j->v.error.max_rss_bytes = -1;
    j->spec.callable = blob_ref(spec->callable);
    j->spec.args = blob_ref(spec->args);
    j->spec.kwargs = blob_ref(spec->kwargs);
    j->spec.timeout = j->v.timeout;

    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        pool__job_free(j);
        return -ESHUTDOWN;
    }
    int rc;
    do {
        new_job_id(j->v.id);
        rc = registry_insert(p->jobs, j->v.id, j);
    } while (rc == -EEXIST);
    if (rc != 0) {
        pthread_mutex_unlock(&p->lock);
        pool__job_free(j);
        return rc;
    }
    if (p->queue_tail)
        p->queue_tail->next = j;
    else
        p->queue_head = j;
    p->queue_tail = j;
    p->queued++;
    memcpy(id_out, j->v.id, JOB_ID_LEN + 1);
    pthread_mutex_unlock(&p->lock);
    pool__wake(p);
    return 0;
}

int pool_job_get(struct pool *p, const char *id, struct job_view *out)
{
    pthread_mutex_lock(&p->lock);
    struct job *j = registry_find(p->jobs, id);
    int rc = j ? job_view_copy(out, &j->v) : -ENOENT;
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int pool_watch(struct pool *p, const char *id, int64_t deadline_ms, pool_watch_cb cb, void *arg)
{
    pthread_mutex_lock(&p->lock);
    struct job *j = registry_find(p->jobs, id);
    if (!j) {
        pthread_mutex_unlock(&p->lock);
        return -ENOENT;
    }
    if (job_status_is_terminal(j->v.status) || p->stopping || deadline_ms <= pool_now_ms()) {
        pthread_mutex_unlock(&p->lock);
        cb(arg);
        return 0;
    }
    struct waiter *w = calloc(1, sizeof(*w));
    if (w) {
        w->cb = cb;
        w->arg = arg;
        w->deadline_ms = deadline_ms;
        w->job = j;
    }
    if (!w || pool__waiter_heap_push(&p->waiters, w) != 0) {
        pthread_mutex_unlock(&p->lock);
        free(w);
        return -ENOMEM;
    }
    w->next = j->waiters;
    if (j->waiters)
        j->waiters->prev = w;
    j->waiters = w;
    int earliest = pool__waiter_heap_top(&p->waiters) == w;
    pthread_mutex_unlock(&p->lock);
    if (earliest)
        pool__wake(p); /* the supervisor must shorten its sleep */
    return 0;
}

void pool_get_info(struct pool *p, struct pool_info *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->lock);
    out->workers = p->nworkers;
    out->workers_ready = p->workers_ready;
    snprintf(out->python_version, sizeof(out->python_version), "%s", p->python_version);
    snprintf(out->cloudpickle_version, sizeof(out->cloudpickle_version), "%s",
             p->cloudpickle_version);
    out->queued = p->queued;
    out->running = p->running;
    pthread_mutex_unlock(&p->lock);
}
