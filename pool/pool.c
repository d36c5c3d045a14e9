/*
 * pool.c — the pool's public face (include/pyjobd/pool.h): construction, stopping and
 * teardown, and the facts for /v1/info. Job traffic is in pool_jobs.c, administrative
 * calls in pool_admin.c. What the calls stand on is below, one folder a layer:
 * supervisor/ (the thread), sources/ (what drives jobs), lifecycle/ (every
 * transition), records/ (the data structures).
 */
#include "supervisor/supervisor.h"
#include "pyjobd/log.h"
#include "pyjobd/store_shared.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

/* Ids of expired jobs remembered at most (33 bytes each, touched only when used). */
#define EXPIRED_IDS_MAX 100000

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
    /* Absolute, because workers may start in another directory (--worker-cwd). */
    p->worker_path = realpath(cfg->worker_path, NULL);
    if (p->worker_path)
        p->cfg.worker_path = p->worker_path;
    if (!p->cfg.max_output_bytes)
        p->cfg.max_output_bytes = 1u << 20;
    if (!p->cfg.min_workers && p->cfg.idle_timeout <= 0)
        p->cfg.min_workers = 1; /* 0 (scale to zero) means something only with a timeout */
    p->epfd = p->wakefd = p->zygote_sock = -1;
    pthread_mutex_init(&p->lock, NULL);
    p->workers = calloc(cfg->workers, sizeof(*p->workers));
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    TAILQ_INIT(&p->schedules);
    /* A zygote handed over is ours from here on, whatever happens next. */
    if (cfg->zygote.pid > 0 && pool__zygote_adopt(p, &cfg->zygote) != 0)
        goto err;
    size_t expired_cap =
        cfg->max_jobs && cfg->max_jobs < EXPIRED_IDS_MAX ? cfg->max_jobs : EXPIRED_IDS_MAX;
    if (pool__lifecycle_init(&p->lc, cfg->store, expired_cap) != 0 ||
        pool__idem_init(&p->idem) != 0 || !p->workers || p->epfd < 0 || p->wakefd < 0 ||
        pool__worker_env_init(p) != 0)
        goto err;
    for (unsigned i = 0; i < cfg->workers; i++) {
        if (!(p->workers[i] = pool__worker_new(i)))
            goto err;
        p->nslots++;
    }
    p->target = cfg->workers;
    if (cfg->store && (pool__recover(p) != 0 || pool__schedules_recover(p) != 0))
        goto err;
    pool__cluster_init(p);
    if (cfg->store)
        store_on_commit(cfg->store, pool__wake_on_commit, p);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = pool__ev_key(EV_WAKE, 0)};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev) != 0)
        goto err;

    int rc = pthread_create(&p->thread, NULL, pool__supervisor_main, p);
    if (rc != 0) {
        errno = rc;
        goto err;
    }
    p->thread_started = 1;
    return p;
err : {
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

void pool_drain(struct pool *p, double grace)
{
    pthread_mutex_lock(&p->lock);
    if (!p->draining && !p->stopping) {
        p->draining = 1;
        p->drain_deadline_ms = clock_now_ms() + (int64_t)(grace * 1000.0);
    }
    pthread_mutex_unlock(&p->lock);
    pool__wake(p);
}

int pool_drained(struct pool *p)
{
    pthread_mutex_lock(&p->lock);
    int done = p->stopping || p->lc.running == 0 || clock_now_ms() >= p->drain_deadline_ms;
    pthread_mutex_unlock(&p->lock);
    return done;
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    pool_stop(p);
    /* The store's thread calls no more into this pool (and finished any call) before
     * it goes: the store outlives it (store_close comes after). */
    pool__cluster_stop(p);
    if (p->cfg.store)
        store_on_commit(p->cfg.store, NULL, NULL);
    pool__schedules_free(p);
    pool__lifecycle_free(&p->lc);
    pool__idem_free(&p->idem);
    pool__zygote_stop(p);
    pool__worker_env_free(p);
    free(p->worker_path);
    for (unsigned i = 0; i < p->nslots; i++)
        pool__worker_free(p->workers[i]);
    free(p->workers);
    free(p->orphans);
    free(p->uid_extra);
    if (p->epfd >= 0)
        close(p->epfd);
    if (p->wakefd >= 0)
        close(p->wakefd);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

const char *pool_isolation_of(const struct pool *p, const char *tenant)
{
    if (pool__tenant_isolated(p, tenant))
        return "job";
    return p->cfg.isolation == POOL_ISOLATION_NONE ? "none" : "tenant";
}

int pool_zygote_start(const struct pool_config *cfg, struct pool_zygote *z, char *err,
                      size_t errlen)
{
    z->pid = 0;
    z->sock = -1;
    struct pool *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->cfg = *cfg;
    p->epfd = p->wakefd = p->zygote_sock = -1;
    p->worker_path = realpath(cfg->worker_path, NULL);
    if (p->worker_path)
        p->cfg.worker_path = p->worker_path;
    int rc = pool__worker_env_init(p);
    if (rc == 0)
        rc = pool__zygote_spawn_ready(p, 30000);
    if (rc == 0) {
        z->pid = p->zygote_pid;
        z->sock = p->zygote_sock;
    } else {
        snprintf(err, errlen,
                 "cannot start the worker zygote (%s --zygote): %s; its own message, if any, "
                 "is above",
                 p->cfg.worker_path,
                 rc == -ECHILD ? "it exited or did not say it was ready" : strerror(-rc));
    }
    pool__worker_env_free(p);
    free(p->worker_path);
    free(p);
    return rc == 0 ? 0 : -1;
}

void pool_zygote_discard(struct pool_zygote *z)
{
    if (z->pid <= 0)
        return;
    close(z->sock);
    kill(z->pid, SIGKILL);
    while (waitpid(z->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    z->pid = 0;
    z->sock = -1;
}

void pool_get_info(struct pool *p, struct pool_info *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->lock);
    out->workers = p->target;
    out->workers_ready = p->workers_ready;
    snprintf(out->python_version, sizeof(out->python_version), "%s", p->python_version);
    snprintf(out->cloudpickle_version, sizeof(out->cloudpickle_version), "%s",
             p->cloudpickle_version);
    snprintf(out->boot_error, sizeof(out->boot_error), "%s", p->boot_error);
    out->queued = p->lc.jobs.nqueued;
    out->running = p->lc.running;
    out->stopping = p->stopping || p->draining;
    out->isolation = pool_isolation_of(p, NULL);
    out->scales_to_zero = p->cfg.min_workers == 0;
    pthread_mutex_unlock(&p->lock);
    if (pool__shared(p)) {
        store_node_id(p->cfg.store, out->node);
        out->store_down = !store_available(p->cfg.store);
    }
}
