/*
 * store_sqlite_keys.c — the SQLite store's Idempotency-Keys: a key, the digest of the
 * request and when it expires are written in its job's row (schema 8), when the row is
 * inserted, so a restart finds both or neither. When the job is deleted before its key
 * expires, the key moves to the idempotency table (one row per owner and key, naming
 * the job), in the same transaction: the key keeps answering "that job is gone". The
 * table's expired rows are deleted by the writer, inside a group commit, at most once a
 * minute; the keys still valid, of both, are loaded at start.
 */
#include "store_sqlite.h"
#include "pyjobd/clock.h"
#include "pyjobd/log.h"

#include <errno.h>
#include <string.h>

#define EXPIRE_EVERY_MS 60000

/* The table is made by schema 3 (store_sqlite_schema.c). */
int sqls__keys_prepare(struct sqlite_store *s)
{
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO idempotency (owner, key, digest, job_id,"
                           " expires_us) VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &s->key_put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO idempotency (owner, key, digest, job_id,"
                           " expires_us) SELECT owner, idem_key, idem_digest, id, idem_expires_us"
                           " FROM jobs WHERE id = ?1 AND idem_key IS NOT NULL AND"
                           " idem_expires_us > ?2",
                           -1, &s->key_keep, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM idempotency WHERE expires_us <= ?1", -1,
                           &s->key_expire, NULL) != SQLITE_OK)
        return -1;
    return 0;
}

void sqls__keys_finalize(struct sqlite_store *s)
{
    sqlite3_finalize(s->key_put);
    sqlite3_finalize(s->key_expire);
    sqlite3_finalize(s->key_keep);
    s->key_put = s->key_expire = s->key_keep = NULL;
}

int sqls__key_put(struct sqlite_store *s, const struct op *op)
{
    sqlite3_stmt *st = s->key_put;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    sqlite3_bind_text(st, 1, op->v.owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->spec.idem_key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, op->spec.idem_digest, JOB_IDEM_DIGEST_BYTES, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, op->v.id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, op->spec.idem_expires_us);
    int rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? 0 : rc;
}

int sqls__key_keep(struct sqlite_store *s, const char *id)
{
    sqlite3_stmt *st = s->key_keep;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, clock_real_us());
    int rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? 0 : rc;
}

int sqls__keys_expire(struct sqlite_store *s)
{
    int64_t now = clock_now_ms();
    if (s->keys_expired_ms && now - s->keys_expired_ms < EXPIRE_EVERY_MS)
        return SQLITE_OK;
    s->keys_expired_ms = now;
    sqlite3_reset(s->key_expire);
    sqlite3_bind_int64(s->key_expire, 1, clock_real_us());
    int rc = sqlite3_step(s->key_expire);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int sqls__load_keys(struct store *base, store_key_cb cb, void *arg)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT owner, idem_key, idem_digest, id, idem_expires_us FROM jobs"
                           " WHERE idem_key IS NOT NULL AND idem_expires_us > ?1 UNION ALL"
                           " SELECT owner, key, digest, job_id, expires_us FROM idempotency"
                           " WHERE expires_us > ?1 ORDER BY 5",
                           -1, &st, NULL) != SQLITE_OK) {
        log_error("store: cannot read the idempotency keys: %s", sqlite3_errmsg(s->db));
        return -EIO;
    }
    sqlite3_bind_int64(st, 1, clock_real_us());
    int rc, out = 0;
    while (out == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *owner = (const char *)sqlite3_column_text(st, 0);
        const char *key = (const char *)sqlite3_column_text(st, 1);
        const void *digest = sqlite3_column_blob(st, 2);
        const char *id = (const char *)sqlite3_column_text(st, 3);
        if (!owner || !key || !id || !digest ||
            sqlite3_column_bytes(st, 2) != JOB_IDEM_DIGEST_BYTES || strlen(id) != JOB_ID_LEN)
            continue; /* not a row this schema writes: skipped, never trusted */
        out = cb(arg, owner, key, digest, id, sqlite3_column_int64(st, 4));
    }
    if (out == 0 && rc != SQLITE_DONE) {
        log_error("store: cannot read the idempotency keys: %s", sqlite3_errmsg(s->db));
        out = -EIO;
    }
    sqlite3_finalize(st);
    return out;
}
