/*
 * store.c — the calls of include/pyjobd/store.h, dispatched to the store's
 * implementation (SQLite or PostgreSQL).
 */
#include "store_impl.h"

void store_close(struct store *s)
{
    if (s)
        s->ops->close(s);
}

int store_load(struct store *s, store_load_cb cb, void *arg, char *err, size_t errlen)
{
    return s->ops->load(s, cb, arg, err, errlen);
}

uint64_t store_put(struct store *s, const struct job_view *v, const struct job_spec *spec,
                   uint64_t seq, unsigned flags)
{
    return s->ops->put(s, v, spec, seq, flags);
}

uint64_t store_delete(struct store *s, const char *id)
{
    return s->ops->del(s, id);
}

int store_sync(struct store *s, uint64_t ticket)
{
    return s->ops->sync(s, ticket);
}

const char *store_describe(const struct store *s)
{
    return s->ops->describe(s);
}

int store_is_shared(const struct store *s)
{
    return s && s->ops->shared;
}
