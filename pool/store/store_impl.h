/*
 * store_impl.h — what a store implementation provides (pool/store.c dispatches the
 * calls of include/pyjobd/store.h through it). Each implementation embeds struct
 * store as the first member of its own structure.
 */
#ifndef PYJOBD_STORE_IMPL_H
#define PYJOBD_STORE_IMPL_H

#include "pyjobd/store.h"

struct store_ops {
    void (*close)(struct store *s);
    int (*load)(struct store *s, store_load_cb cb, void *arg, char *err, size_t errlen);
    uint64_t (*put)(struct store *s, const struct job_view *v, const struct job_spec *spec,
                    uint64_t seq, unsigned flags);
    uint64_t (*del)(struct store *s, const char *id);
    int (*sync)(struct store *s, uint64_t ticket);
    const char *(*describe)(const struct store *s);
    int shared;
};

struct store {
    const struct store_ops *ops;
};

#endif
