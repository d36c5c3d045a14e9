/*
 * outcome.c — a job's reply from its worker (FRAME_RESULT, FRAME_ERROR), turned into
 * the job's end (lifecycle) and into what becomes of the worker: it goes on, is
 * recycled, or retires. What the reply holds is untrusted (a job's code can write to
 * its worker's channel): the result is held to --max-result-bytes, the texts are cut
 * to bounded lengths, and a reply declared larger than the server reads is refused
 * from its header alone (pool__reply_too_large).
 * Called on the supervisor thread with the pool lock held.
 */
#include "sources.h"
#include "pyjobd/clock.h"
#include "pyjobd/format.h"
#include "pyjobd/frame.h"
#include "pyjobd/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest texts kept from a reply, in bytes (a genuine worker sends less: see
 * pool/worker/reply.h). */
#define MAX_MESSAGE (64u << 10)
#define MAX_TRACEBACK (1u << 20)
#define MAX_EXC_TYPE 1024u

/* The worker broke the protocol (what says how): it is killed, and the job it runs,
 * if any, fails as protocol_violation. A job's code can write to its worker's channel,
 * so this is what a job forging frames gets. */
void pool__protocol_violation(struct pool *p, struct worker *w, const char *what)
{
    log_warn("worker %d sent %s; replacing it", (int)w->pid, what);
    struct job *j = pool__take_job(w);
    pool__end_worker(p, w, END_CRASH);
    if (j)
        pool__job_fail(&p->lc, j, JOB_ERR_PROTOCOL_VIOLATION,
                       str_format("The worker running this job sent the server %s, which the "
                                  "protocol between them does not allow: the job's code wrote "
                                  "to its worker's channel (fd 3), or the worker is broken. The "
                                  "worker was killed and replaced; other jobs are not affected.",
                                  what));
}

/* The field as a string of at most max bytes (cut at a UTF-8 character boundary), or
 * NULL when absent (or out of memory). */
static char *dup_text(const struct frame *f, uint32_t tag, size_t max)
{
    struct frame_field fld;
    if (frame_find_field(f, tag, &fld) != 1)
        return NULL;
    size_t len = fld.len;
    if (len > max) {
        len = max;
        while (len > 0 && (fld.data[len] & 0xc0) == 0x80)
            len--; /* fld.data[len] starts the first character left out */
    }
    return strndup((const char *)fld.data, len);
}

static enum job_error_type error_type_from_name(const char *name)
{
    static const enum job_error_type types[] = {JOB_ERR_INVALID_PAYLOAD, JOB_ERR_UNPICKLABLE_RESULT,
                                                JOB_ERR_UNJSONABLE_RESULT,
                                                JOB_ERR_RESULT_TOO_LARGE};
    for (size_t i = 0; name && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(name, job_error_type_name(types[i])) == 0)
            return types[i];
    return JOB_ERR_EXCEPTION;
}

/* A result field of len bytes, more than --max-result-bytes: a worker that checks the
 * limit never sends one. */
static char *result_too_large(const struct pool *p, size_t len)
{
    char size[JOB_BYTES_TEXT], limit[JOB_BYTES_TEXT];
    return str_format("The worker sent a result of %s (%zu bytes), larger than the server's "
                      "limit of %s (%zu bytes: --max-result-bytes); it was not kept. Return less "
                      "(write large outputs to shared storage and return their path) or ask the "
                      "operator to raise the limit. (A worker checks the limit itself: this "
                      "reply was written by the job's code on its worker's channel, fd 3.)",
                      job_bytes_text(len, size), len,
                      job_bytes_text(p->cfg.max_result_bytes, limit), p->cfg.max_result_bytes);
}

static void record_outcome(struct pool *p, struct job *j, const struct frame *f)
{
    struct frame_field fld;
    size_t max = p->cfg.max_result_bytes;
    job_error_release(&j->v.error);
    if (f->type == FRAME_RESULT) {
        int json = frame_find_field(f, FRAME_TAG_RESULT_JSON, &fld) == 1;
        if ((json || frame_find_field(f, FRAME_TAG_RESULT, &fld) == 1)) {
            if (max && fld.len > max) {
                pool__job_fail(&p->lc, j, JOB_ERR_RESULT_TOO_LARGE, result_too_large(p, fld.len));
                return;
            }
            struct blob *b = blob_new_copy(fld.data, fld.len);
            if (b) {
                *(json ? &j->v.result_json : &j->v.result) = b;
                pool__job_finish(&p->lc, j, JOB_SUCCEEDED);
                return;
            }
        }
        pool__job_fail(&p->lc, j, JOB_ERR_UNPICKLABLE_RESULT,
                       strdup("The worker sent no result bytes (or the server ran out of memory "
                              "storing them)."));
        return;
    }
    char *type = dup_text(f, FRAME_TAG_ERROR_TYPE, MAX_EXC_TYPE);
    enum job_error_type et = error_type_from_name(type);
    free(type);
    j->v.error.type = et;
    j->v.error.exc_type = dup_text(f, FRAME_TAG_EXC_TYPE, MAX_EXC_TYPE);
    j->v.error.traceback = dup_text(f, FRAME_TAG_TRACEBACK, MAX_TRACEBACK);
    if (frame_find_field(f, FRAME_TAG_EXCEPTION, &fld) == 1) {
        if (max && fld.len > max)
            log_warn("job %s: its exception pickle (%u bytes) is larger than --max-result-bytes; "
                     "dropped (only its text is kept)",
                     j->v.id, fld.len);
        else
            j->v.error.exception = blob_new_copy(fld.data, fld.len);
    }
    j->v.error.message = dup_text(f, FRAME_TAG_MESSAGE, MAX_MESSAGE);
    if (!j->v.error.message)
        j->v.error.message = strdup(job_error_type_name(et));
    /* The worker matched the exception's MRO against the policy's "on" / "not_on"
     * (the server never unpickles it): a job can claim this, which only spends the
     * retries its submitter gave it. */
    int retryable = et == JOB_ERR_EXCEPTION &&
                    frame_find_field(f, FRAME_TAG_RETRYABLE, &fld) == 1 && fld.len == 1 &&
                    fld.data[0] == '1';
    if (retryable && !p->stopping && !p->draining && pool__job_retry(&p->lc, j, 1))
        return;
    pool__job_finish(&p->lc, j, JOB_FAILED);
}

/* Recycling: --max-tasks-per-worker, --worker-max-rss (loky's memory-leak guard,
 * read from /proc rather than psutil), and after a MemoryError under
 * --worker-memory-limit, whose heap may be left fragmented. */
static int needs_recycling(struct pool *p, struct worker *w, int out_of_memory)
{
    const char *why = NULL;
    long long rss = 0;
    if (out_of_memory && p->cfg.worker_memory_limit > 0)
        why = "its job ran out of memory";
    else if (p->cfg.max_tasks_per_worker && w->jobs_done >= p->cfg.max_tasks_per_worker)
        why = "it ran --max-tasks-per-worker jobs";
    else if (p->cfg.worker_max_rss > 0 && (rss = pool__worker_rss(w->pid)) > p->cfg.worker_max_rss)
        why = "its memory grew past --worker-max-rss";
    if (why)
        log_info("recycling worker %d after %u jobs: %s", (int)w->pid, w->jobs_done, why);
    return why != NULL;
}

void pool__handle_outcome(struct pool *p, struct worker *w, const struct frame *f)
{
    struct job *j = w->job;
    if (w->state != WORKER_BUSY || !j) {
        pool__protocol_violation(p, w,
                                 "a result while it ran no job (a duplicate or forged frame)");
        return;
    }
    /* Everything the job printed before replying is in the pipes by now. */
    pool__output_drain(p, w);
    struct frame_field fld;
    int out_of_memory = frame_find_field(f, FRAME_TAG_EXC_TYPE, &fld) == 1 && fld.len == 11 &&
                        memcmp(fld.data, "MemoryError", 11) == 0;
    pool__take_job(w);
    w->state = WORKER_IDLE;
    w->idle_since_ms = clock_now_ms();
    pool__idle_begin(w, w->idle_since_ms);
    w->jobs_done++;
    if (j->interrupt_ms)
        pool__interrupt_finish(p, j, f->type == FRAME_RESULT ? "it returned" : "it ended raising");
    else
        record_outcome(p, j, f);
    /* A worker retired by a shrink finishes its job first, then goes. */
    if (!w->active)
        pool__end_worker(p, w, END_RETIRE);
    else if (needs_recycling(p, w, out_of_memory))
        pool__end_worker(p, w, END_RECYCLE);
}

void pool__reply_too_large(struct pool *p, struct worker *w, const struct frame *head)
{
    char size[JOB_BYTES_TEXT], limit[JOB_BYTES_TEXT], result[JOB_BYTES_TEXT];
    size_t max = p->cfg.max_frame_bytes;
    int reply = head->type == FRAME_RESULT || head->type == FRAME_ERROR;
    if (!reply || w->state != WORKER_BUSY || !w->job) {
        /* Nothing else is ever large: that is no result, but a broken or forged frame. */
        char what[160];
        snprintf(what, sizeof(what),
                 "a frame of type %u declared as %u bytes (more than the %zu "
                 "it accepts) while it %s",
                 head->type, head->len, max, w->state == WORKER_BUSY ? "ran a job" : "ran no job");
        pool__protocol_violation(p, w, what);
        return;
    }
    log_warn("worker %d declared a reply of %u bytes, more than the %zu accepted; replacing it "
             "without reading it",
             (int)w->pid, head->len, max);
    pool__output_drain(p, w);
    struct job *j = pool__take_job(w);
    pool__end_worker(p, w, END_CRASH);
    char why[160] = "";
    if (p->cfg.max_result_bytes)
        snprintf(why, sizeof(why),
                 ", the result limit of %s (--max-result-bytes) plus 1 MiB for the rest of "
                 "the reply",
                 job_bytes_text(p->cfg.max_result_bytes, result));
    pool__job_fail(&p->lc, j, JOB_ERR_RESULT_TOO_LARGE,
                   str_format("The worker running this job sent the server a reply of %s (%u "
                              "bytes declared), more than the server accepts: %s%s. None of it "
                              "was read: the worker was killed and replaced, other jobs are not "
                              "affected. Return less (write large outputs to shared storage and "
                              "return their path) or ask the operator to raise the limit; a "
                              "job's code that writes to its worker's channel (fd 3) gets this "
                              "too.",
                              job_bytes_text(head->len, size), head->len,
                              job_bytes_text(max, limit), why));
}
