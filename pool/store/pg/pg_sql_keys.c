/*
 * pg_sql_keys.c — the PostgreSQL store's statements about Idempotency-Keys (pg_sql.h;
 * their table is in pg_schema.c). A keyed submission is one transaction (pg_keys.c):
 * its jobs inserted (pg_sql_insert), then pg_sql_key_take, then pg_sql_key_settle.
 *
 * The keys of a submission come as arrays, one element per key, in the same order:
 * owners, keys, digests (hex), the ids of the jobs that would take them.
 */
#include "pg_sql.h"

#include <stddef.h>

#define KEYS "unnest($1::text[], $2::text[], $3::text[], $4::text[])"

/* Takes every key that is free: new, or expired (taken over). Locks are taken in key
 * order, so two submissions sharing keys cannot deadlock; a key another transaction
 * is taking waits for its end. $5 expires_us[], $6 now (µs). */
const struct pg_stmt pg_sql_key_take = {
    "pyjobd_key_take",
    "INSERT INTO idempotency_keys (owner, key, digest, job_id, expires_us)"
    " SELECT u.o, u.k, decode(u.d, 'hex'), u.j, u.e FROM unnest($1::text[], $2::text[],"
    " $3::text[], $4::text[], $5::int8[]) AS u(o, k, d, j, e) ORDER BY u.o, u.k"
    " ON CONFLICT (owner, key) DO UPDATE SET digest = EXCLUDED.digest,"
    " job_id = EXCLUDED.job_id, expires_us = EXCLUDED.expires_us"
    " WHERE idempotency_keys.expires_us <= $6::int8"};

/* After pg_sql_key_take (a statement of its own: its snapshot sees what the keys'
 * other takers committed meanwhile): every key's job, whether its digest is the
 * request's and whether its job still exists. A key naming another job with another
 * request, or with a removed job, is bad: then the keys taken and every job inserted
 * ($5 '{id,...}') are deleted again; else only the jobs whose key names another job
 * (replays). Rows: ordinal (1-based), job_id, same digest, job exists. */
const struct pg_stmt pg_sql_key_settle = {
    "pyjobd_key_settle",
    "WITH u AS (SELECT * FROM " KEYS " WITH ORDINALITY AS u(o, k, d, mine, i)),"
    " cur AS MATERIALIZED (SELECT u.i, u.o, u.k, u.mine, x.job_id,"
    " x.digest = decode(u.d, 'hex') AS same,"
    " EXISTS (SELECT 1 FROM jobs j WHERE j.id = x.job_id) AS live"
    " FROM u JOIN idempotency_keys x ON x.owner = u.o AND x.key = u.k),"
    " bad AS MATERIALIZED (SELECT EXISTS (SELECT 1 FROM cur WHERE job_id <> mine"
    " AND NOT (same AND live)) AS b),"
    " dk AS (DELETE FROM idempotency_keys x USING cur WHERE (SELECT b FROM bad)"
    " AND x.owner = cur.o AND x.key = cur.k AND x.job_id = cur.mine),"
    " dj AS (DELETE FROM jobs WHERE id = ANY($5::text[]) AND ((SELECT b FROM bad)"
    " OR id IN (SELECT mine FROM cur WHERE job_id <> mine)))"
    " SELECT i, job_id, same, live FROM cur ORDER BY i"};

/* Expired keys, a bounded number per round ($1 now µs, $2 how many); rows another
 * transaction holds (being taken over) are skipped, never waited for. → deleted. */
const struct pg_stmt pg_sql_key_expire = {
    "pyjobd_key_expire",
    "WITH d AS (DELETE FROM idempotency_keys WHERE (owner, key) IN (SELECT owner, key"
    " FROM idempotency_keys WHERE expires_us <= $1::int8 ORDER BY expires_us"
    " LIMIT $2::int FOR UPDATE SKIP LOCKED) RETURNING 1) SELECT count(*) FROM d"};

const struct pg_stmt *const pg_key_statements[] = {
    &pg_sql_key_take,
    &pg_sql_key_settle,
    &pg_sql_key_expire,
    NULL,
};
