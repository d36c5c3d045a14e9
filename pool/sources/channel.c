/*
 * channel.c — the frames on a worker's channel (the socketpair the supervisor talks
 * to it on): a job going out, and what comes back read and decoded: a hello here, a
 * result or an error handed to outcome.c. Nothing a worker sends is trusted: a frame
 * is buffered only once its header says it fits --max-result-bytes (plus the frame's
 * slack), and a buffer grows only with the bytes that arrive.
 * A malformed or unexpected frame ends the worker: the protocol has no recovery.
 * Called on the supervisor thread with the pool lock held.
 */
#include "sources.h"
#include "pyjobd/clock.h"
#include "pyjobd/format.h"
#include "pyjobd/frame.h"
#include "pyjobd/log.h"
#include "pyjobd/store.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024)
/* At most this much is read from one worker per turn of the supervisor's loop (epoll is
 * level-triggered: the rest is read on the next turn), so that a worker streaming a
 * large reply shares the loop with the others. */
#define READ_BUDGET ((size_t)16 << 20)

static char *dup_field(const struct frame *f, uint32_t tag)
{
    struct frame_field fld;
    if (frame_find_field(f, tag, &fld) != 1)
        return NULL;
    return strndup((const char *)fld.data, fld.len);
}

int pool__tenant_isolated(const struct pool *p, const char *tenant)
{
    if (p->cfg.isolation == POOL_ISOLATION_JOB)
        return 1;
    for (const char *const *t = p->cfg.job_isolated_tenants; tenant && t && *t; t++)
        if (strcmp(*t, tenant) == 0)
            return 1;
    return 0;
}

int pool__job_isolated(const struct pool *p, const struct job *j)
{
    return pool__tenant_isolated(p, j->v.owner);
}

long long pool__job_uid(struct pool *p, const struct job *j)
{
    unsigned long first = p->cfg.worker_uid_first;
    if (!first)
        return 0;
    size_t i = 0, span = p->cfg.worker_uid_last - first + 1;
    for (const char *const *t = p->cfg.tenant_names; t && *t; t++, i++)
        if (strcmp(*t, j->v.owner) == 0)
            return (long long)(first + i);
    for (size_t k = 0; k < p->nuid_extra; k++)
        if (strcmp(p->uid_extra[k], j->v.owner) == 0)
            return (long long)(first + i + k);
    if (i + p->nuid_extra >= span)
        return -ERANGE;
    char(*more)[JOB_OWNER_MAX] = realloc(p->uid_extra, (p->nuid_extra + 1) * sizeof(*more));
    if (!more)
        return -ENOMEM;
    p->uid_extra = more;
    memcpy(p->uid_extra[p->nuid_extra++], j->v.owner, JOB_OWNER_MAX);
    return (long long)(first + i + p->nuid_extra - 1);
}

/* At most once: the job frame goes to the worker only once its start is on record
 * (store_started: logged at once by SQLite, else once the store committed the job's
 * "running"). A server killed before that finds the job queued, and it runs once,
 * after the restart; killed after, finds it running, and re-runs it only if it has
 * retries left. (A commit that failed releases the frame too: the store said so in
 * the log, and the job is not held forever.) */
static void release(struct pool *p, struct worker *w)
{
    pool__gate_clear(p, w);
    if (w->job)
        pool__job_arm_deadline(w->job); /* its timeout counts from here */
    pool__worker_thaw(w); /* stopped while it was idle: it reads the frame once continued */
    pool__flush_channel(p, w);
}

void pool__release_gated(struct pool *p)
{
    for (unsigned i = 0; __atomic_load_n(&p->gated, __ATOMIC_SEQ_CST) && i < p->nslots; i++) {
        struct worker *w = p->workers[i];
        if (w->gate && store_committed(p->cfg.store, w->gate))
            release(p, w);
    }
}

/* Sends j to the idle worker w: the job is running, and its frame goes out (or starts
 * to, the rest on EPOLLOUT) once that is on record (see release). 0, or -ENOMEM
 * (nothing changed). */
int pool__send_job(struct pool *p, struct worker *w, struct job *j)
{
    struct frame_builder b;
    frame_builder_init(&b, FRAME_JOB);
    frame_builder_add(&b, FRAME_TAG_CALLABLE, blob_data(j->spec.callable),
                      blob_len(j->spec.callable));
    if (j->spec.args)
        frame_builder_add(&b, FRAME_TAG_ARGS, blob_data(j->spec.args), blob_len(j->spec.args));
    if (j->spec.kwargs)
        frame_builder_add(&b, FRAME_TAG_KWARGS, blob_data(j->spec.kwargs),
                          blob_len(j->spec.kwargs));
    if (j->spec.json_args)
        frame_builder_add(&b, FRAME_TAG_JSON_ARGS, blob_data(j->spec.json_args),
                          blob_len(j->spec.json_args));
    if (j->spec.json_kwargs)
        frame_builder_add(&b, FRAME_TAG_JSON_KWARGS, blob_data(j->spec.json_kwargs),
                          blob_len(j->spec.json_kwargs));
    if (j->spec.result_json)
        frame_builder_add_str(&b, FRAME_TAG_RESULT_FORMAT, "json");
    int isolated = pool__job_isolated(p, j);
    if (isolated)
        frame_builder_add(&b, FRAME_TAG_ISOLATE, "", 0);
    long long uid = pool__job_uid(p, j);
    if (uid < 0) {
        frame_builder_reset(&b);
        return (int)uid;
    }
    if (uid > 0) {
        uint8_t le[4] = {(uint8_t)uid, (uint8_t)(uid >> 8), (uint8_t)(uid >> 16),
                         (uint8_t)(uid >> 24)};
        frame_builder_add(&b, FRAME_TAG_UID, le, sizeof(le));
    }
    if (j->v.soft_timeout > 0) {
        double ms = j->v.soft_timeout * 1000.0 + 0.999; /* never early */
        uint32_t n = ms >= 4294967295.0 ? UINT32_MAX : ms < 1 ? 1 : (uint32_t)ms;
        uint8_t le[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
        frame_builder_add(&b, FRAME_TAG_SOFT_TIMEOUT, le, sizeof(le));
    }
    if (j->spec.retry.on)
        frame_builder_add_str(&b, FRAME_TAG_RETRY_ON, j->spec.retry.on);
    if (j->spec.retry.not_on)
        frame_builder_add_str(&b, FRAME_TAG_RETRY_NOT_ON, j->spec.retry.not_on);
    int rc = frame_builder_finish(&b, &w->out, &w->out_len);
    if (rc != 0)
        return rc;
    w->out_off = 0;
    w->jobs_sent++;
    j->interrupt_ms = 0;
    if (isolated) {
        w->isolated = 1;
    } else if (!w->bound) {
        w->bound = 1;
        memcpy(w->tenant, j->v.owner, sizeof(w->tenant));
    }
    w->job = j;
    w->state = WORKER_BUSY;
    j->worker = w;
    pool__output_new_job(p, w);
    pool__job_start(&p->lc, j, w->pid);
    uint64_t gate = p->cfg.store ? store_started(p->cfg.store, &j->v, j->store_ticket) : 0;
    if (gate && !store_committed(p->cfg.store, gate)) {
        /* Counted first, then checked again: a commit in between either is seen
         * here or sees the count and wakes the supervisor (pool__wake_on_commit). */
        w->gate = gate;
        j->deadline_ms = 0; /* armed when the frame goes (release) */
        __atomic_add_fetch(&p->gated, 1, __ATOMIC_SEQ_CST);
        if (!store_committed(p->cfg.store, w->gate))
            return 0;
    }
    release(p, w);
    return 0;
}

static void handle_hello(struct pool *p, struct worker *w, const struct frame *f)
{
    if (w->state != WORKER_STARTING) {
        pool__protocol_violation(p, w, "a second hello frame");
        return;
    }
    char *py = dup_field(f, FRAME_TAG_PYTHON_VERSION);
    char *cp = dup_field(f, FRAME_TAG_CLOUDPICKLE_VERSION);
    if (py && !p->python_version[0]) {
        snprintf(p->python_version, sizeof(p->python_version), "%s", py);
        snprintf(p->cloudpickle_version, sizeof(p->cloudpickle_version), "%s", cp ? cp : "");
    }
    log_info("worker %d ready in %lld ms (Python %s, cloudpickle %s)", (int)w->pid,
             (long long)(clock_now_ms() - w->spawned_ms), py ? py : "?", cp ? cp : "?");
    free(py);
    free(cp);
    w->state = WORKER_IDLE;
    w->ready = 1;
    w->idle_since_ms = clock_now_ms();
    pool__idle_begin(w, w->idle_since_ms);
    w->boot_failures = 0;
    p->boot_error[0] = 0;
    p->no_worker_since_ms = 0;
    p->workers_ready++;
}

static void handle_frame(struct pool *p, struct worker *w, const struct frame *f)
{
    switch (f->type) {
    case FRAME_HELLO:
        handle_hello(p, w, f);
        break;
    case FRAME_RESULT:
    case FRAME_ERROR:
        pool__handle_outcome(p, w, f);
        break;
    default: {
        char what[64];
        snprintf(what, sizeof(what), "a frame of unknown type %u", f->type);
        pool__protocol_violation(p, w, what);
    }
    }
}

/* Decodes the whole frames at the head of w->in and hands each on. A frame not complete
 * yet is looked at as soon as its header is in: one declared larger than the server
 * accepts ends the worker before a byte more of it is read. Returns the bytes the
 * buffer needs to hold that frame (0: not known yet), or -1 once the channel is closed. */
static long decode_frames(struct pool *p, struct worker *w)
{
    size_t off = 0;
    long need = 0;
    while (w->sock >= 0) {
        struct frame f;
        long used = frame_decode(w->in + off, w->in_len - off, p->cfg.max_frame_bytes, &f);
        if (used == -EAGAIN) {
            need = f.len ? (long)(FRAME_HEADER_SIZE + f.len) : 0;
            break;
        }
        if (used == -EMSGSIZE) {
            pool__reply_too_large(p, w, &f);
            break;
        }
        if (used < 0) {
            char what[96];
            snprintf(what, sizeof(what), "a malformed frame (%s)", strerror((int)-used));
            pool__protocol_violation(p, w, what);
            break;
        }
        handle_frame(p, w, &f);
        off += (size_t)used;
    }
    if (w->sock < 0)
        return -1;
    if (off) {
        memmove(w->in, w->in + off, w->in_len - off);
        w->in_len -= off;
    }
    return need;
}

void pool__read_channel(struct pool *p, struct worker *w)
{
    size_t budget = READ_BUDGET;
    long need = 0;
    while (budget) {
        /* Room for a chunk, or at once for the whole frame whose header is in. */
        size_t want = w->in_len + READ_CHUNK;
        if (need > 0 && (size_t)need > want)
            want = (size_t)need;
        if (w->in_cap < want) {
            uint8_t *in = realloc(w->in, want);
            if (!in) {
                log_error("worker %d: out of memory reading its reply", (int)w->pid);
                pool__kill_worker(w, SIGKILL);
                pool__close_channel(p, w);
                return;
            }
            w->in = in;
            w->in_cap = want;
        }
        size_t room = w->in_cap - w->in_len;
        ssize_t n = read(w->sock, w->in + w->in_len, room < budget ? room : budget);
        if (n > 0) {
            w->in_len += (size_t)n;
            budget -= (size_t)n;
            if ((need = decode_frames(p, w)) < 0)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        /* EOF or error: the worker is ending; its pidfd will say how. */
        pool__close_channel(p, w);
        return;
    }
    /* Don't keep a large buffer around after a large result. */
    if (w->in_len == 0 && w->in_cap > 4 * READ_CHUNK) {
        free(w->in);
        w->in = NULL;
        w->in_cap = 0;
    }
}
