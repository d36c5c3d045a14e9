/*
 * pool_test_util.h — shared by the pool's unit tests: payloads made with Debian's
 * /usr/bin/python3 + cloudpickle (the interpreter the worker embeds), results read
 * back the same way, a pool on real workers ($PYJOBD_WORKER), and polling helpers.
 * Header-only (static inline functions) because each test file is its own program.
 */
#ifndef PYJOBD_POOL_TEST_UTIL_H
#define PYJOBD_POOL_TEST_UTIL_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pyjobd/pool.h"

#define PY "/usr/bin/python3"

/* Runs python with the given program, feeding `in` on stdin; returns stdout as a blob. */
static inline struct blob *run_python(const char *prog, const char *arg, const struct blob *in)
{
    int to[2], from[2];
    assert_int_equal(pipe(to), 0);
    assert_int_equal(pipe(from), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[1]);
        close(from[0]);
        execl(PY, PY, "-c", prog, arg, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    if (in) {
        size_t off = 0;
        while (off < blob_len(in)) {
            ssize_t n = write(to[1], blob_data(in) + off, blob_len(in) - off);
            assert_true(n > 0);
            off += (size_t)n;
        }
    }
    close(to[1]);
    char buf[65536];
    size_t len = 0;
    ssize_t n;
    while ((n = read(from[0], buf + len, sizeof(buf) - len)) > 0)
        len += (size_t)n;
    close(from[0]);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return blob_new_copy(buf, len);
}

/* cloudpickle.dumps(eval(expr)) */
static inline struct blob *pickle(const char *expr)
{
    return run_python("import cloudpickle, sys, os, time, signal, functools\n"
                      "sys.stdout.buffer.write(cloudpickle.dumps(eval(sys.argv[1])))",
                      expr, NULL);
}

/* repr(pickle.loads(bytes)) as a NUL-terminated string the caller frees. */
static inline char *unpickle_repr(const struct blob *b)
{
    struct blob *out = run_python("import pickle, sys\n"
                                  "sys.stdout.write(repr(pickle.loads(sys.stdin.buffer.read())))",
                                  "", b);
    char *s = strndup((const char *)blob_data(out), blob_len(out));
    blob_unref(out);
    return s;
}

static inline struct pool *start_pool_cfg(struct pool_config *cfg)
{
    const char *worker = getenv("PYJOBD_WORKER");
    cfg->worker_path = worker ? worker : "build/pyjobd-worker";
    if (!cfg->max_frame_bytes)
        cfg->max_frame_bytes = 1u << 30;
    struct pool *p = pool_new(cfg);
    assert_non_null(p);
    return p;
}

static inline struct pool *start_pool(unsigned workers)
{
    struct pool_config cfg = {.workers = workers};
    return start_pool_cfg(&cfg);
}

/* pool_submit / pool_submit_batch keeping only the ids of what was queued. */
static inline int submit_ids(struct pool *p, const struct job_spec *specs, size_t n,
                             char (*ids)[JOB_ID_LEN + 1])
{
    struct job_view *views = calloc(n, sizeof(*views));
    assert_non_null(views);
    int rc = pool_submit_batch(p, specs, n, views);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        assert_int_equal(views[i].status, JOB_QUEUED);
        memcpy(ids[i], views[i].id, JOB_ID_LEN + 1);
        job_view_release(&views[i]);
    }
    free(views);
    return rc;
}

static inline int submit_id(struct pool *p, const struct job_spec *spec, char *id)
{
    return submit_ids(p, spec, 1, (char(*)[JOB_ID_LEN + 1]) id);
}

static inline void submit(struct pool *p, const char *fn, const char *args, double timeout,
                          char *id)
{
    struct job_spec spec = {
        .callable = pickle(fn), .args = args ? pickle(args) : NULL, .timeout = timeout};
    assert_int_equal(submit_id(p, &spec, id), 0);
    job_spec_release(&spec);
}

/* Polls until the job is terminal (at most 20 s) and returns its view. */
static inline void wait_done(struct pool *p, const char *id, struct job_view *v)
{
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(pool_job_get(p, id, v), 0);
        if (job_status_is_terminal(v->status))
            return;
        job_view_release(v);
        usleep(10000);
    }
    fail_msg("job %s did not finish in 20 s", id);
}

struct wake {
    pthread_mutex_t m;
    pthread_cond_t c;
    int fired;
};

static inline void wake_cb(void *arg)
{
    struct wake *w = arg;
    pthread_mutex_lock(&w->m);
    w->fired++;
    pthread_cond_signal(&w->c);
    pthread_mutex_unlock(&w->m);
}

static inline int64_t wait_fired(struct wake *w)
{
    int64_t start = clock_now_ms();
    pthread_mutex_lock(&w->m);
    while (!w->fired)
        pthread_cond_wait(&w->c, &w->m);
    pthread_mutex_unlock(&w->m);
    return clock_now_ms() - start;
}

#endif
