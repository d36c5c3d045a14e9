/*
 * job_json.c — renders a job_view as the job object of the v1 wire contract.
 *
 * Shape (keys always present, in this order, unless noted):
 *   id, status, created_at, started_at, finished_at (RFC 3339 UTC µs, or null),
 *   timeout (seconds, null = no limit), attempts, worker_pid (null when none),
 *   max_retries, priority (integer), soft_timeout (seconds, null = none), run_at and
 *   expires_at (RFC 3339, null = none),
 *   result (base64; only present when succeeded in pickle format),
 *   result_json (any JSON value; only present when succeeded in json format),
 *   metadata (object; only present when the job was submitted with metadata),
 *   node (string; only present with a shared store, once a node has claimed the job),
 *   error (null, or an object with type, message, exc_type, exception (base64),
 *   traceback, exit_code, signal, max_rss_bytes — each null when unknown).
 */
#include "job_json.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyjobd/base64.h"
#include "pyjobd/clock.h"

int api__format_timestamp(const struct timespec *ts, char buf[API_TIMESTAMP_LEN])
{
    return clock_format(ts, buf);
}

const char *api__signal_name(int sig, char *buf, size_t len)
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(buf, len, "SIG%s", abbrev);
    else if (sig >= SIGRTMIN && sig <= SIGRTMAX)
        snprintf(buf, len, "SIGRTMIN+%d", sig - SIGRTMIN);
    else
        snprintf(buf, len, "SIG%d", sig);
    return buf;
}

static json_t *timestamp_or_null(const struct timespec *ts)
{
    char buf[API_TIMESTAMP_LEN];
    if (api__format_timestamp(ts, buf) < 0)
        return json_null();
    return json_string(buf);
}

/* Base64 is ASCII: skip jansson's UTF-8 check. */
static json_t *blob_base64(const struct blob *b)
{
    size_t len;
    if (!b)
        return json_null();
    char *text = base64_encode_alloc(blob_data(b), blob_len(b), &len);
    if (!text)
        return NULL;
    json_t *s = json_stringn_nocheck(text, len);
    free(text);
    return s;
}

/* Parses JSON text the server made or a worker produced (any value). A text that is
 * not JSON (it should never happen) renders as null rather than losing the job. */
static json_t *json_text_n(const char *text, size_t len)
{
    json_error_t err;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!j && json_error_code(&err) == json_error_out_of_memory)
        return NULL;
    return j ? j : json_null();
}

static json_t *string_or_null(const char *s)
{
    if (!s)
        return json_null();
    json_t *j = json_string(s);
    /* Python text should be UTF-8, but a crash report must never be lost to it. */
    if (!j) {
        char *copy = strdup(s);
        if (!copy)
            return NULL;
        for (unsigned char *p = (unsigned char *)copy; *p; p++)
            if (*p >= 0x80)
                *p = '?';
        j = json_string(copy);
        free(copy);
    }
    return j;
}

static json_t *error_to_json(const struct job_error *e)
{
    char sig[32];
    if (e->type == JOB_ERR_NONE)
        return json_null();
    return json_pack(
        "{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "type", job_error_type_name(e->type), "message",
        string_or_null(e->message ? e->message : ""), "exc_type", string_or_null(e->exc_type),
        "exception", blob_base64(e->exception), "traceback", string_or_null(e->traceback),
        "exit_code", e->exit_code < 0 ? json_null() : json_integer(e->exit_code), "signal",
        e->signal ? json_string(api__signal_name(e->signal, sig, sizeof(sig))) : json_null(),
        "max_rss_bytes", e->max_rss_bytes < 0 ? json_null() : json_integer(e->max_rss_bytes));
}

static json_t *time_us_or_null(int64_t us)
{
    struct timespec ts = clock_us_ts(us);
    return us > 0 ? timestamp_or_null(&ts) : json_null();
}

/* The keys before the result ... */
static json_t *head_of(const struct job_view *v)
{
    json_t *obj = json_pack(
        "{s:s, s:s, s:o, s:o, s:o, s:o, s:I, s:o, s:I, s:i, s:o, s:o, s:o}", "id", v->id, "status",
        job_status_name(v->status), "created_at", timestamp_or_null(&v->created_at), "started_at",
        timestamp_or_null(&v->started_at), "finished_at", timestamp_or_null(&v->finished_at),
        "timeout", v->timeout > 0 ? json_real(v->timeout) : json_null(), "attempts",
        (json_int_t)v->attempts, "worker_pid",
        v->worker_pid > 0 ? json_integer(v->worker_pid) : json_null(), "max_retries",
        (json_int_t)v->max_retries, "priority", v->priority, "soft_timeout",
        v->soft_timeout > 0 ? json_real(v->soft_timeout) : json_null(), "run_at",
        time_us_or_null(v->run_at_us), "expires_at", time_us_or_null(v->expires_at_us));
    return obj;
}

/* '\n'-separated names as a JSON array (null for none). */
static json_t *names_json(const char *names)
{
    if (!names)
        return json_null();
    json_t *a = json_array();
    for (const char *s = names; a && *s;) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        json_array_append_new(a, json_stringn(s, n));
        s += n + (e != NULL);
    }
    return a;
}

/* The retry policy as the request gave it (defaults filled in). */
static json_t *retry_json(const struct job_view *v)
{
    const struct job_retry *r = &v->retry;
    json_t *backoff = r->initial > 0
                          ? json_pack("{s:f, s:f, s:f, s:b}", "initial", r->initial, "factor",
                                      r->factor, "max", r->max_delay, "jitter", r->jitter)
                          : json_null();
    return json_pack("{s:I, s:o, s:o, s:o, s:b, s:b, s:b}", "max", (json_int_t)v->max_retries, "on",
                     names_json(r->on), "not_on", names_json(r->not_on), "backoff", backoff,
                     "on_crash", !r->no_crash, "on_timeout", v->retry_on_timeout, "on_node_lost",
                     !r->no_node_lost);
}

/* One attempt: when, where (its worker, and its node on a shared store), how it ended
 * (error null: it succeeded or runs). */
static json_t *attempt_json(unsigned n, int64_t started, int64_t ended, pid_t pid, const char *node,
                            enum job_error_type type, const char *message)
{
    json_t *err = type == JOB_ERR_NONE ? json_null()
                                       : json_pack("{s:s, s:o}", "type", job_error_type_name(type),
                                                   "message", string_or_null(message));
    json_t *a = json_pack("{s:I, s:o, s:o, s:o, s:o}", "attempt", (json_int_t)n, "started_at",
                          time_us_or_null(started), "finished_at", time_us_or_null(ended),
                          "worker_pid", pid > 0 ? json_integer(pid) : json_null(), "error", err);
    if (a && node && node[0] && json_object_set_new(a, "node", json_string(node)) < 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

/* Every attempt: the ended ones kept, then the current or last one from the view. */
static json_t *history_json(const struct job_view *v)
{
    json_t *a = json_array();
    for (unsigned i = 0; a && i < v->nhistory; i++) {
        const struct job_attempt *h = &v->history[i];
        json_array_append_new(a, attempt_json(i + 1, h->started_us, h->ended_us, h->worker_pid,
                                              h->node, h->error, h->message));
    }
    if (a && v->attempts > v->nhistory && v->started_at.tv_sec) {
        int last = v->status != JOB_RUNNING && !job_status_is_pending(v->status);
        json_array_append_new(a, attempt_json(v->attempts, clock_ts_us(v->started_at),
                                              last ? clock_ts_us(v->finished_at) : 0, v->worker_pid,
                                              v->node, last ? v->error.type : JOB_ERR_NONE,
                                              last ? v->error.message : NULL));
    }
    return a;
}

/* ... and after it. */
static json_t *tail_of(const struct job_view *v)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    if (v->next_attempt_us &&
        json_object_set_new(obj, "next_attempt_at", time_us_or_null(v->next_attempt_us)) < 0)
        goto fail;
    if (v->retry.given && json_object_set_new(obj, "retry", retry_json(v)) < 0)
        goto fail;
    if (v->rerun_of[0] && json_object_set_new(obj, "rerun_of", json_string(v->rerun_of)) < 0)
        goto fail;
    if (v->schedule[0] && json_object_set_new(obj, "schedule", json_string(v->schedule)) < 0)
        goto fail;
    if ((v->max_retries > 0 || v->nhistory) &&
        json_object_set_new(obj, "history", history_json(v)) < 0)
        goto fail;
    if (v->metadata &&
        json_object_set_new(obj, "metadata", json_text_n(v->metadata, strlen(v->metadata))) < 0)
        goto fail;
    if (v->node[0] && json_object_set_new(obj, "node", json_string(v->node)) < 0)
        goto fail;
    if (json_object_set_new(obj, "error", error_to_json(&v->error)) < 0)
        goto fail;
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

int api__job_json_halves(const struct job_view *v, json_t **head, json_t **tail)
{
    *head = head_of(v);
    *tail = tail_of(v);
    if (*head && *tail)
        return 0;
    json_decref(*head);
    json_decref(*tail);
    *head = *tail = NULL;
    return -ENOMEM;
}

json_t *api__job_to_json(const struct job_view *v)
{
    json_t *obj, *tail;
    if (api__job_json_halves(v, &obj, &tail) != 0)
        return NULL;
    if (v->status == JOB_SUCCEEDED && v->result &&
        json_object_set_new(obj, "result", blob_base64(v->result)) < 0)
        goto fail;
    if (v->status == JOB_SUCCEEDED && v->result_json &&
        json_object_set_new(
            obj, "result_json",
            json_text_n((const char *)blob_data(v->result_json), blob_len(v->result_json))) < 0)
        goto fail;
    if (json_object_update(obj, tail) < 0)
        goto fail;
    json_decref(tail);
    return obj;
fail:
    json_decref(obj);
    json_decref(tail);
    return NULL;
}
