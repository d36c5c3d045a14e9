/*
 * test_results_limits.c — issue 16's bounds on results, with real pyjobd-worker
 * processes: --max-result-bytes (the worker refuses a larger result, JSON or pickle,
 * and leaves out a larger exception pickle; with --isolation job too), a worker that
 * declares a larger reply is killed without a byte more being read and its job fails
 * result_too_large, a result field past the limit in a frame that fits is refused too,
 * and --max-results-memory (no store: the oldest results expire and a lookup says
 * -ENOBUFS; SQLite: they leave memory and come back from the store byte for byte,
 * after a restart too).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pyjobd/pool.h"
#include "pyjobd/store.h"

#include "../pool_test_util.h"

#define LIMIT (1u << 20)

static struct pool *start_limited(enum pool_isolation isolation, unsigned max_tasks)
{
    struct pool_config cfg = {.workers = 1,
                              .max_result_bytes = LIMIT,
                              .max_frame_bytes = LIMIT + (1u << 20),
                              .isolation = isolation,
                              .max_tasks_per_worker = max_tasks};
    return start_pool_cfg(&cfg);
}

static void run(struct pool *p, const char *fn, int json, double timeout, struct job_view *v)
{
    char id[JOB_ID_LEN + 1];
    struct job_spec spec = {.callable = pickle(fn), .result_json = json, .timeout = timeout};
    assert_int_equal(submit_id(p, &spec, id), 0);
    job_spec_release(&spec);
    wait_done(p, id, v);
}

static void assert_too_large(const struct job_view *v, const char *size, const char *limit)
{
    assert_int_equal(v->status, JOB_FAILED);
    assert_int_equal(v->error.type, JOB_ERR_RESULT_TOO_LARGE);
    assert_null(v->result);
    if (!strstr(v->error.message, size) || !strstr(v->error.message, limit) ||
        !strstr(v->error.message, "--max-result-bytes"))
        fail_msg("message does not name %s and %s: %s", size, limit, v->error.message);
}

static void check_result_limit(enum pool_isolation isolation)
{
    struct pool *p = start_limited(isolation, 0);
    struct job_view v;
    run(p, "lambda: b'x' * (2 << 20)", 0, 0, &v);
    assert_too_large(&v, "2.0 MiB", "1.0 MiB");
    assert_non_null(strstr(v.error.message, "pickled"));
    job_view_release(&v);
    run(p, "lambda: 'x' * (2 << 20)", 1, 0, &v); /* result_format json */
    assert_too_large(&v, "2.0 MiB", "1.0 MiB");
    assert_non_null(strstr(v.error.message, "of JSON"));
    job_view_release(&v);
    run(p, "lambda: b'x' * 900000", 0, 0, &v); /* under the limit: as before */
    assert_int_equal(v.status, JOB_SUCCEEDED);
    assert_true(blob_len(v.result) > 900000 && blob_len(v.result) < LIMIT);
    job_view_release(&v);
    /* An exception that carries 2 MB: its pickle is left out, its text cut, and it is
     * still the job's exception. */
    run(p, "lambda: (_ for _ in ()).throw(ValueError(b'y' * (2 << 20)))", 0, 0, &v);
    assert_int_equal(v.status, JOB_FAILED);
    assert_int_equal(v.error.type, JOB_ERR_EXCEPTION);
    assert_string_equal(v.error.exc_type, "ValueError");
    assert_null(v.error.exception);
    assert_non_null(strstr(v.error.message, "--max-result-bytes"));
    assert_true(strlen(v.error.message) < 20000);
    assert_non_null(v.error.traceback);
    assert_true(strlen(v.error.traceback) < 140000);
    assert_non_null(strstr(v.error.traceback, "characters cut"));
    job_view_release(&v);
    pool_free(p);
}

static void result_limit__over__result_too_large_naming_both_sizes(void **state)
{
    (void)state;
    check_result_limit(POOL_ISOLATION_TENANT);
}

static void result_limit__isolation_job__same_in_the_forked_process(void **state)
{
    (void)state;
    check_result_limit(POOL_ISOLATION_JOB);
}

/* A RESULT header declaring ~4 GiB, written on the channel by the job's code. */
#define FORGED_HEADER "b'\\xf0\\xff\\xff\\xff\\x03\\x00\\x00\\x00'"

static void forged_header__4gib__result_too_large_and_worker_replaced(void **state)
{
    (void)state;
    struct pool *p = start_limited(POOL_ISOLATION_TENANT, 0);
    struct job_view v;
    run(p, "lambda: (os.write(3, " FORGED_HEADER "), time.sleep(30))", 0, 20, &v);
    assert_too_large(&v, "4.0 GiB", "2.0 MiB");
    assert_non_null(strstr(v.error.message, "declared"));
    pid_t first = v.worker_pid;
    job_view_release(&v);
    /* Another type declared that large is no result: a protocol violation. */
    run(p, "lambda: (os.write(3, b'\\xf0\\xff\\xff\\xff\\x09\\x00\\x00\\x00'), time.sleep(30))", 0,
        20, &v);
    assert_int_equal(v.error.type, JOB_ERR_PROTOCOL_VIOLATION);
    assert_true(v.worker_pid != first);
    job_view_release(&v);
    run(p, "lambda: 42", 0, 0, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    struct pool_stats st;
    assert_int_equal(pool_get_stats(p, &st), 0);
    assert_int_equal(st.restarts_crash, 2);
    pool_stats_release(&st);
    pool_free(p);
}

static void forged_header__isolation_job__the_worker_refuses_it(void **state)
{
    (void)state;
    struct pool *p = start_limited(POOL_ISOLATION_JOB, 0);
    struct job_view v;
    /* The forked process has no fd 3: its reply socket is the only socket it holds. */
    run(p,
        "lambda: ([os.write(int(f), " FORGED_HEADER ") for f in os.listdir('/proc/self/fd') "
        "if os.path.exists('/proc/self/fd/' + f) and "
        "os.readlink('/proc/self/fd/' + f).startswith('socket:')], time.sleep(30))",
        0, 20, &v);
    assert_too_large(&v, "4.0 GiB", "2.0 MiB");
    pid_t worker = v.worker_pid;
    job_view_release(&v);
    run(p, "lambda: 42", 0, 0, &v); /* the same worker goes on: only its fork was killed */
    assert_int_equal(v.status, JOB_SUCCEEDED);
    assert_int_equal(v.worker_pid, worker);
    job_view_release(&v);
    pool_free(p);
}

static void forged_result__field_over_limit_in_a_frame_that_fits__refused(void **state)
{
    (void)state;
    /* One job per worker: the forging job's worker is not reused. */
    struct pool *p = start_limited(POOL_ISOLATION_TENANT, 1);
    struct job_view v;
    run(p,
        "lambda: (os.write(3, (lambda n, s: s.pack('<II', 8 + n, 3) + s.pack('<II', 20, n) + "
        "b'z' * n)(1500000, __import__('struct'))), time.sleep(30))",
        0, 20, &v);
    assert_too_large(&v, "1.4 MiB", "1.0 MiB");
    assert_non_null(strstr(v.error.message, "worker sent a result"));
    job_view_release(&v);
    run(p, "lambda: 42", 0, 0, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    pool_free(p);
}

/* --- --max-results-memory ------------------------------------------------------------ */

#define NJOBS 5
#define EACH 300000 /* bytes of each result; 1 MiB holds three */

static size_t results_memory(struct pool *p)
{
    struct pool_stats st;
    assert_int_equal(pool_get_stats(p, &st), 0);
    size_t n = st.results_memory_bytes;
    pool_stats_release(&st);
    return n;
}

/* Runs NJOBS jobs one after the other, each returning EACH bytes of its index; keeps a
 * reference to each result as it was when the job had just finished (the newest results
 * never leave memory first). */
static void run_results(struct pool *p, char (*ids)[JOB_ID_LEN + 1], struct blob **orig)
{
    for (int i = 0; i < NJOBS; i++) {
        char args[32];
        snprintf(args, sizeof(args), "(%d,)", i);
        struct job_spec spec = {.callable = pickle("lambda i: bytes([i]) * 300000"),
                                .args = pickle(args)};
        assert_int_equal(submit_id(p, &spec, ids[i]), 0);
        job_spec_release(&spec);
        struct job_view v;
        wait_done(p, ids[i], &v);
        assert_int_equal(v.status, JOB_SUCCEEDED);
        assert_non_null(v.result);
        orig[i] = blob_ref(v.result);
        job_view_release(&v);
    }
    /* The bound is kept by the supervisor's next turn (and, with a store, its commit). */
    for (int k = 0; k < 500 && results_memory(p) > LIMIT; k++)
        usleep(10000);
    assert_true(results_memory(p) <= LIMIT);
    assert_true(results_memory(p) >= 3 * EACH);
}

static void results_memory__no_store__oldest_expire_and_say_why(void **state)
{
    (void)state;
    struct pool_config cfg = {.workers = 1, .max_results_memory = LIMIT};
    struct pool *p = start_pool_cfg(&cfg);
    char ids[NJOBS][JOB_ID_LEN + 1];
    struct blob *orig[NJOBS];
    run_results(p, ids, orig);
    struct job_view v;
    for (int i = 0; i < NJOBS; i++) {
        int rc = pool_job_get(p, ids[i], &v);
        if (i < 2) {
            assert_int_equal(rc, -ENOBUFS); /* expired, and why */
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(blob_len(v.result), blob_len(orig[i]));
        assert_memory_equal(blob_data(v.result), blob_data(orig[i]), blob_len(orig[i]));
        job_view_release(&v);
    }
    for (int i = 0; i < NJOBS; i++)
        blob_unref(orig[i]);
    pool_free(p);
}

static void check_all_read_back(struct pool *p, char (*ids)[JOB_ID_LEN + 1], struct blob **orig)
{
    for (int i = 0; i < NJOBS; i++) {
        struct job_view v;
        assert_int_equal(pool_job_get(p, ids[i], &v), 0);
        assert_int_equal(v.status, JOB_SUCCEEDED);
        assert_non_null(v.result);
        assert_int_equal(blob_len(v.result), blob_len(orig[i]));
        assert_memory_equal(blob_data(v.result), blob_data(orig[i]), blob_len(orig[i]));
        job_view_release(&v);
    }
    /* Many at once (what a multi-wait reads), an unknown id among them. */
    char many[NJOBS + 1][JOB_ID_LEN + 1];
    memcpy(many, ids, NJOBS * sizeof(many[0]));
    snprintf(many[NJOBS], sizeof(many[NJOBS]), "%032x", 0xdead);
    struct job_view views[NJOBS + 1];
    int rcs[NJOBS + 1];
    assert_int_equal(pool_job_get_many(p, many, NJOBS + 1, views, rcs), 0);
    assert_int_equal(rcs[NJOBS], -ENOENT);
    for (int i = 0; i < NJOBS; i++) {
        assert_int_equal(rcs[i], 0);
        assert_non_null(views[i].result);
        assert_memory_equal(blob_data(views[i].result), blob_data(orig[i]), blob_len(orig[i]));
        job_view_release(&views[i]);
    }
}

static void results_memory__sqlite__read_back_byte_for_byte_after_restart_too(void **state)
{
    (void)state;
    char dir[] = "/tmp/pyjobd-results-XXXXXX", path[128], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/jobs.db", dir);
    struct store *s = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    struct pool_config cfg = {.workers = 1, .max_results_memory = LIMIT, .store = s};
    struct pool *p = start_pool_cfg(&cfg);
    char ids[NJOBS][JOB_ID_LEN + 1];
    struct blob *orig[NJOBS];
    run_results(p, ids, orig);
    check_all_read_back(p, ids, orig);
    pool_free(p);
    store_close(s);

    /* A restart loads no result into memory, and reads every one back when asked. */
    s = store_open_sqlite(path, err, sizeof(err));
    assert_non_null(s);
    cfg.store = s;
    p = start_pool_cfg(&cfg);
    assert_int_equal(results_memory(p), 0);
    check_all_read_back(p, ids, orig);
    assert_int_equal(results_memory(p), 0);
    /* Deleted: gone from the store as from memory. */
    assert_int_equal(pool_delete(p, ids[0]), 0);
    struct job_view v;
    assert_int_equal(pool_job_get(p, ids[0], &v), -ENOENT);
    pool_free(p);
    store_close(s);
    for (int i = 0; i < NJOBS; i++)
        blob_unref(orig[i]);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(result_limit__over__result_too_large_naming_both_sizes),
        cmocka_unit_test(result_limit__isolation_job__same_in_the_forked_process),
        cmocka_unit_test(forged_header__4gib__result_too_large_and_worker_replaced),
        cmocka_unit_test(forged_header__isolation_job__the_worker_refuses_it),
        cmocka_unit_test(forged_result__field_over_limit_in_a_frame_that_fits__refused),
        cmocka_unit_test(results_memory__no_store__oldest_expire_and_say_why),
        cmocka_unit_test(results_memory__sqlite__read_back_byte_for_byte_after_restart_too),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
