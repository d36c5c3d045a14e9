/*
 * bench/store_writer.c — the SQLite store's writer, driven alone: N jobs in rounds of
 * 1,000, each job put new (with an Idempotency-Key), then running (its start logged),
 * then finished, in successive rounds as a map does, a store_sync per round. Run under
 * callgrind with --toggle-collect=store_main at two sizes, the writer's instructions per
 * job are (Ir(n2) - Ir(n1)) / (n2 - n1) (bench/RESULTS.md, run 11):
 *
 *   cc -O2 -g -std=gnu11 -Iinclude -D_GNU_SOURCE -o build/store_writer bench/store_writer.c \
 *      build/libpool_store.a build/liblib.a $(pkg-config --libs sqlite3 jansson) -lpthread
 *   valgrind --tool=callgrind --toggle-collect=store_main build/store_writer /tmp/w/jobs.db 12000
 *
 * WB_NOKEY=1 puts no key, WB_NOFIN=1 no end; without WB_RUN=1 there is no running put.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "pyjobd/store.h"

static void make(struct job_view *v, struct job_spec *sp, int i, struct blob *callable)
{
    memset(v, 0, sizeof(*v));
    memset(sp, 0, sizeof(*sp));
    /* random-looking ids, like the pool's */
    uint64_t h = (uint64_t)i * 0x9E3779B97F4A7C15ull, g = h ^ (h >> 29) * 0xBF58476D1CE4E5B9ull;
    snprintf(v->id, sizeof(v->id), "%016llx%016llx", (unsigned long long)h, (unsigned long long)g);
    snprintf(v->owner, sizeof(v->owner), "anonymous");
    v->status = JOB_QUEUED;
    clock_gettime(CLOCK_REALTIME, &v->created_at);
    v->timeout = 300;
    v->error.exit_code = -1;
    v->error.max_rss_bytes = -1;
    sp->callable = callable;
    sp->args = blob_new_copy("\x80\x05\x95\x06\x00\x00\x00\x00\x00\x00\x00K\x01\x85\x94.", 17);
}

int main(int argc, char **argv)
{
    int n = argc > 2 ? atoi(argv[2]) : 20000, b = 1000;
    char err[256];
    struct store *s = store_open_sqlite(argv[1], err, sizeof(err));
    if (!s) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    char cbytes[600];
    memset(cbytes, 'c', sizeof(cbytes));
    struct blob *callable = blob_new_copy(cbytes, sizeof(cbytes));
    struct job_view *v = calloc((size_t)n, sizeof(*v));
    struct job_spec *sp = calloc((size_t)n, sizeof(*sp));
    char key[64];
    for (int i = 0; i < n; i++) {
        make(&v[i], &sp[i], i, callable);
        snprintf(key, sizeof(key), "%08x-1111-4222-8333-%012x", i * 7919, i);
        if (!getenv("WB_NOKEY"))
            sp[i].idem_key = strdup(key);
        sp[i].idem_expires_us = 1900000000000000ll + i;
    }
    /* phase k of batch j: batch j new, batch j-1 running, batch j-2 finished */
    int nb = n / b;
    for (int j = 0; j < nb + 2; j++) {
        uint64_t t = 0;
        for (int i = j * b; j < nb && i < (j + 1) * b; i++)
            t = store_put(s, &v[i], &sp[i], (uint64_t)i + 1, STORE_NEW);
        for (int i = (j - 1) * b; getenv("WB_RUN") && j >= 1 && j - 1 < nb && i < j * b; i++) {
            v[i].status = JOB_RUNNING;
            v[i].attempts = 1;
            v[i].worker_pid = 1234;
            clock_gettime(CLOCK_REALTIME, &v[i].started_at);
            t = store_put(s, &v[i], &sp[i], (uint64_t)i + 1, 0);
            store_started(s, &v[i], t);
        }
        for (int i = (j - 2) * b; !getenv("WB_NOFIN") && j >= 2 && i < (j - 1) * b; i++) {
            v[i].status = JOB_SUCCEEDED;
            clock_gettime(CLOCK_REALTIME, &v[i].finished_at);
            if (!v[i].result)
                v[i].result = blob_new_copy("\x80\x05K\x02.", 5);
            t = store_put(s, &v[i], &sp[i], (uint64_t)i + 1, 0);
        }
        store_sync(s, t);
    }
    store_close(s);
    printf("ok %d jobs\n", n);
    return 0;
}
