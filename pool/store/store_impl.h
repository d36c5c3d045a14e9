/*
 * store_impl.h — what a store implementation provides: pool/store/store.c dispatches every
 * call of include/pyjobd/store.h and include/pyjobd/store_shared.h through this
 * table, and nothing else looks at which implementation a store is. Each
 * implementation embeds struct store as the first member of its own structure.
 */
#ifndef PYJOBD_STORE_IMPL_H
#define PYJOBD_STORE_IMPL_H

#include "pyjobd/store.h"
#include "pyjobd/store_shared.h"

struct store_ops {
    /* Every store (store.h): */
    void (*close)(struct store *s);
    int (*load)(struct store *s, store_load_cb cb, void *arg, char *err, size_t errlen);
    int (*load_keys)(struct store *s, store_key_cb cb, void *arg); /* NULL: -ENOTSUP */
    /* Schedules (store_sqlite_schedules.c); NULL: none kept (-ENOTSUP / 0). */
    uint64_t (*put_schedule)(struct store *s, const struct store_schedule *sc);
    uint64_t (*delete_schedule)(struct store *s, const char *id);
    int (*load_schedules)(struct store *s, store_schedule_cb cb, void *arg);
    uint64_t (*put)(struct store *s, const struct job_view *v, const struct job_spec *spec,
                    uint64_t seq, unsigned flags);
    uint64_t (*del)(struct store *s, const char *id);
    int (*sync)(struct store *s, uint64_t ticket);
    int (*committed)(struct store *s, uint64_t ticket); /* NULL: always committed */
    uint64_t (*started)(struct store *s, const struct job_view *v,
                        uint64_t ticket);                                 /* NULL: ticket */
    void (*on_commit)(struct store *s, void (*fn)(void *arg), void *arg); /* NULL: never */
    const char *(*describe)(const struct store *s);
    /* store_read_request, from any thread; NULL: -ENOTSUP. */
    int (*read_request)(struct store *s, const char *id, struct job_spec *spec);
    /* store_read_results, from any thread; NULL: -ENOTSUP. */
    int (*read_results)(struct store *s, const char *id, struct job_view *v);
    int shared; /* 1: several nodes share it (store_is_shared) */

    /* A shared store (store_shared.h). A single-node store leaves these NULL and
     * store.c answers for it: available, lease fresh, nothing queued, no node id,
     * nothing to claim, watch or ask. */
    void (*set_events)(struct store *s, const struct store_events *ev, void *arg);
    void (*want)(struct store *s, unsigned n);
    int (*available)(struct store *s);
    size_t (*queued)(struct store *s);
    int (*lease_fresh)(struct store *s);
    void (*node_id)(struct store *s, char out[JOB_NODE_MAX]);
    int (*fetch)(struct store *s, const char *id, struct job_view *out);
    int (*fetch_many)(struct store *s, char (*ids)[JOB_ID_LEN + 1], size_t n, struct job_view *out,
                      int *found);
    int (*list)(struct store *s, const struct pool_list_query *q, struct job_view **out, size_t *n,
                uint64_t *next);
    int (*cancel)(struct store *s, const char *id, int *status, char *node);
    void (*ask_cancel)(struct store *s, const char *node, const char *id, int force, double grace);
    int (*forget)(struct store *s, const char *id);
    void (*watch)(struct store *s, const char *id);
    int (*finished_requests)(struct store *s, const struct pool_rerun_filter *f, size_t max,
                             struct job_view **views, struct job_spec **specs,
                             size_t *n); /* NULL: -ENOTSUP */
    int (*submit_keyed)(struct store *s, struct store_keyed_job *jobs,
                        size_t n); /* NULL: -ENOTSUP */
    /* Recurring schedules on a shared store (store_shared.h); NULL: -ENOTSUP. */
    void (*set_schedule_events)(struct store *s, const struct store_schedule_events *ev, void *arg);
    int (*schedule_tick)(struct store *s, const char *id, int64_t tick_us, const struct job_view *v,
                         const struct job_spec *spec);
    int (*schedule_create)(struct store *s, const struct store_schedule *sc, size_t tenant_max,
                           size_t max);
    int (*schedule_read)(struct store *s, const char *id, const char *owner,
                         struct store_schedule **rows, size_t *n);
    int (*schedule_delete)(struct store *s, const char *id, const char *owner);
};

struct store {
    const struct store_ops *ops;
};

#endif
