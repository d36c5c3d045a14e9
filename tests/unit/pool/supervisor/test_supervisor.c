/*
 * test_supervisor.c — the supervisor and the worker sources (pool/supervisor/,
 * pool/sources/) through the pool's calls, with real workers: what a loky user relies
 * on and loky lacks: output capture (print, os.write to fd 1, a subprocess),
 * output bounded to its tail, the idle timeout and restart on demand, recycling
 * after N jobs and past an RSS limit, the worker environment and working
 * directory, crash-loop protection, and a graceful drain.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "../pool_test_util.h"

static struct job_view run(struct pool *p, const char *fn)
{
    char id[JOB_ID_LEN + 1];
    submit(p, fn, NULL, 0, id);
    struct job_view v;
    wait_done(p, id, &v);
    return v;
}

static char *result_repr(struct pool *p, const char *fn)
{
    struct job_view v = run(p, fn);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    char *r = unpickle_repr(v.result);
    job_view_release(&v);
    return r;
}

static void output__print_fd_write_and_subprocess__captured_per_job(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char id[JOB_ID_LEN + 1];
    submit(p,
           "lambda: (print('hello from print'), os.write(1, b'raw fd write\\n'), "
           "os.write(2, b'to stderr\\n'), __import__('subprocess').run(['echo', 'from a "
           "child']), 7)[-1]",
           NULL, 0, id);
    struct job_view v;
    wait_done(p, id, &v);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    struct job_output o;
    assert_int_equal(pool_job_output(p, id, &o), 0);
    const char *out = (const char *)blob_data(o.out);
    assert_non_null(strstr(out, "hello from print\n"));
    assert_non_null(strstr(out, "raw fd write\n"));
    assert_non_null(strstr(out, "from a child\n"));
    assert_string_equal((const char *)blob_data(o.err), "to stderr\n");
    assert_int_equal(o.out_dropped, 0);
    job_output_release(&o);
    /* The next job on the same worker starts with empty output. */
    char id2[JOB_ID_LEN + 1];
    submit(p, "lambda: print('second')", NULL, 0, id2);
    wait_done(p, id2, &v);
    job_view_release(&v);
    assert_int_equal(pool_job_output(p, id2, &o), 0);
    assert_string_equal((const char *)blob_data(o.out), "second\n");
    assert_int_equal(blob_len(o.err), 0);
    job_output_release(&o);
    pool_free(p);
}

static void output__over_limit__keeps_the_tail(void **state)
{
    (void)state;
    struct pool_config cfg = {.workers = 1, .max_output_bytes = 1000};
    struct pool *p = start_pool_cfg(&cfg);
    char id[JOB_ID_LEN + 1];
    submit(p, "lambda: [print('line %05d' % i) for i in range(1000)] and None", NULL, 0, id);
    struct job_view v;
    wait_done(p, id, &v);
    job_view_release(&v);
    struct job_output o;
    assert_int_equal(pool_job_output(p, id, &o), 0);
    assert_int_equal(blob_len(o.out), 1000);
    assert_int_equal(o.out_dropped, 11000 - 1000);
    const char *out = (const char *)blob_data(o.out);
    assert_string_equal(out + 1000 - 11, "line 00999\n");
    job_output_release(&o);
    pool_free(p);
}

static void output__crash__last_words_kept(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    struct job_view v = run(p, "lambda: (print('about to crash', flush=True), "
                               "os.kill(os.getpid(), signal.SIGSEGV))");
    assert_int_equal(v.error.type, JOB_ERR_WORKER_CRASHED);
    struct job_output o;
    assert_int_equal(pool_job_output(p, v.id, &o), 0);
    assert_non_null(strstr((const char *)blob_data(o.out), "about to crash"));
    /* faulthandler's report of the crash belongs to the job too. */
    assert_non_null(strstr((const char *)blob_data(o.err), "Segmentation fault"));
    job_output_release(&o);
    job_view_release(&v);
    pool_free(p);
}

static void recycle__max_tasks__new_pid_after_n_jobs(void **state)
{
    (void)state;
    struct pool_config cfg = {.workers = 1, .max_tasks_per_worker = 2};
    struct pool *p = start_pool_cfg(&cfg);
    char *a = result_repr(p, "lambda: os.getpid()");
    char *b = result_repr(p, "lambda: os.getpid()");
    char *c = result_repr(p, "lambda: os.getpid()");
    assert_string_equal(a, b);
    assert_string_not_equal(b, c);
    free(a);
    free(b);
    free(c);
    struct pool_stats st;
    assert_int_equal(pool_get_stats(p, &st), 0);
    assert_true(st.restarts_recycle >= 1);
    pool_stats_release(&st);
    pool_free(p);
}

static void recycle__rss_over_limit__replaced_after_the_job(void **state)
{
    (void)state;
    struct pool_config cfg = {.workers = 1, .worker_max_rss = 150ll << 20};
    struct pool *p = start_pool_cfg(&cfg);
    char *a = result_repr(p, "lambda: (__import__('builtins').__dict__.setdefault('leak', "
                             "[]).append(bytearray(200 * 2**20)), os.getpid())[1]");
    char *b = result_repr(p, "lambda: os.getpid()");
    assert_string_not_equal(a, b); /* the leaky worker did not take another job */
    char *c = result_repr(p, "lambda: os.getpid()");
    assert_string_equal(b, c); /* a small worker is kept */
    free(a);
    free(b);
    free(c);
    pool_free(p);
}

static unsigned live_workers(struct pool *p)
{
    struct pool_stats st;
    assert_int_equal(pool_get_stats(p, &st), 0);
    unsigned live = 0;
    for (size_t i = 0; i < st.nworkers; i++)
        live +=
            strcmp(st.workers[i].state, "idle") == 0 || strcmp(st.workers[i].state, "busy") == 0;
    pool_stats_release(&st);
    return live;
}

static void idle_timeout__extra_workers_exit_then_come_back(void **state)
{
    (void)state;
    struct pool_config cfg = {.workers = 2, .min_workers = 1, .idle_timeout = 0.3};
    struct pool *p = start_pool_cfg(&cfg);
    int seen2 = 0, seen1 = 0;
    for (int i = 0; i < 300 && !seen2; i++, usleep(2000))
        seen2 = live_workers(p) == 2;
    assert_true(seen2);
    for (int i = 0; i < 300 && !seen1; i++, usleep(10000))
        seen1 = live_workers(p) == 1;
    assert_true(seen1); /* one went after 0.3 s idle; min_workers keeps the other */
    usleep(400000);
    assert_int_equal(live_workers(p), 1);
    /* Two jobs at once: the parked slot starts again on demand. */
    char a[JOB_ID_LEN + 1], b[JOB_ID_LEN + 1];
    submit(p, "lambda: (time.sleep(0.5), os.getpid())[1]", NULL, 0, a);
    submit(p, "lambda: (time.sleep(0.5), os.getpid())[1]", NULL, 0, b);
    struct job_view va, vb;
    wait_done(p, a, &va);
    wait_done(p, b, &vb);
    assert_int_equal(va.status, JOB_SUCCEEDED);
    assert_int_equal(vb.status, JOB_SUCCEEDED);
    assert_true(va.worker_pid != vb.worker_pid); /* they ran side by side */
    job_view_release(&va);
    job_view_release(&vb);
    pool_free(p);
}

static void environment__worker_env_and_cwd(void **state)
{
    (void)state;
    const char *env[] = {"PYJOBD_TEST_VAR=hello", NULL};
    setenv("PYJOBD_SECRET_OF_THE_SERVER", "leak", 1);
    struct pool_config cfg = {.workers = 1, .worker_env = env, .worker_cwd = "/tmp"};
    struct pool *p = start_pool_cfg(&cfg);
    char *r = result_repr(p, "lambda: (os.environ.get('PYJOBD_TEST_VAR'), os.getcwd(), "
                             "os.environ.get('PYJOBD_SECRET_OF_THE_SERVER'))");
    assert_string_equal(r, "('hello', '/tmp', None)");
    free(r);
    pool_free(p);
    unsetenv("PYJOBD_SECRET_OF_THE_SERVER");
}

static void boot_failure__backs_off_reports_and_fails_queued_jobs_late(void **state)
{
    (void)state;
    /* /bin/false "boots" and exits 1 before any hello: a broken worker. */
    struct pool_config cfg = {.workers = 1, .boot_failure_timeout = 1.0};
    cfg.worker_path = "/bin/false";
    cfg.max_frame_bytes = 1 << 20;
    struct pool *p = pool_new(&cfg);
    assert_non_null(p);
    char id[JOB_ID_LEN + 1];
    struct job_spec spec = {.callable = pickle("lambda: 1")};
    assert_int_equal(submit_id(p, &spec, id), 0);
    job_spec_release(&spec);
    usleep(500000);
    struct job_view v;
    assert_int_equal(pool_job_get(p, id, &v), 0);
    assert_int_equal(v.status, JOB_QUEUED); /* not failed because of a boot problem */
    job_view_release(&v);
    struct pool_info info;
    pool_get_info(p, &info);
    assert_int_equal(info.workers_ready, 0);
    assert_non_null(strstr(info.boot_error, "exited with code 1 before it was ready"));
    struct pool_stats st;
    assert_int_equal(pool_get_stats(p, &st), 0);
    /* Backoff: 100, 200, 400 ms... so only a handful of attempts in 0.5 s. */
    assert_true(st.boot_failures >= 2 && st.boot_failures <= 4);
    pool_stats_release(&st);
    wait_done(p, id, &v);
    assert_int_equal(v.status, JOB_FAILED);
    assert_int_equal(v.error.type, JOB_ERR_WORKER_CRASHED);
    assert_non_null(strstr(v.error.message, "No worker could start for 1 s"));
    job_view_release(&v);
    pool_free(p);
}

static void boot_failure__exit_code_3__retried_once_then_only_slowly(void **state)
{
    (void)state;
    /* A real worker whose --worker-init cannot be imported exits 3 (boot failed:
     * respawning will not help). The pool tries once more, then waits the longest
     * backoff (30 s) instead of 100, 200, 400, 800 ms... */
    struct pool_config cfg = {.workers = 1, .worker_init = "nosuchmodule_pyjobd:f"};
    struct pool *p = start_pool_cfg(&cfg);
    usleep(2000000);
    struct pool_stats st;
    assert_int_equal(pool_get_stats(p, &st), 0);
    assert_int_equal(st.boot_failures, 2);
    assert_non_null(strstr(st.boot_error, "exited with code 3 before it was ready"));
    assert_non_null(strstr(st.boot_error, "respawning will not help"));
    pool_stats_release(&st);
    pool_free(p);
}

static void drain__running_finishes_queued_interrupted_new_refused(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char running[JOB_ID_LEN + 1], queued[JOB_ID_LEN + 1];
    submit(p, "lambda: (time.sleep(0.5), 'done')[1]", NULL, 0, running);
    submit(p, "lambda: 'never'", NULL, 0, queued);
    struct job_view v;
    for (int i = 0; i < 500; i++, usleep(5000)) {
        assert_int_equal(pool_job_get(p, running, &v), 0);
        enum job_status s = v.status;
        job_view_release(&v);
        if (s == JOB_RUNNING)
            break;
    }
    pool_drain(p, 10);
    struct job_spec spec = {.callable = pickle("lambda: 1")};
    char id[JOB_ID_LEN + 1];
    assert_int_equal(submit_id(p, &spec, id), -ESHUTDOWN);
    job_spec_release(&spec);
    wait_done(p, queued, &v);
    assert_int_equal(v.error.type, JOB_ERR_INTERRUPTED);
    job_view_release(&v);
    int drained = 0;
    for (int i = 0; i < 300 && !(drained = pool_drained(p)); i++)
        usleep(10000);
    assert_true(drained);
    assert_int_equal(pool_job_get(p, running, &v), 0);
    assert_int_equal(v.status, JOB_SUCCEEDED);
    job_view_release(&v);
    pool_free(p);
}

static void drain__grace_over__running_job_interrupted(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    char running[JOB_ID_LEN + 1];
    submit(p, "lambda: time.sleep(30)", NULL, 0, running);
    struct job_view v;
    for (int i = 0; i < 500; i++, usleep(5000)) {
        assert_int_equal(pool_job_get(p, running, &v), 0);
        enum job_status s = v.status;
        job_view_release(&v);
        if (s == JOB_RUNNING)
            break;
    }
    int64_t t0 = clock_now_ms();
    pool_drain(p, 0.3);
    while (!pool_drained(p))
        usleep(10000);
    assert_true(clock_now_ms() - t0 >= 290 && clock_now_ms() - t0 < 1000);
    pool_stop(p);
    assert_int_equal(pool_job_get(p, running, &v), 0);
    assert_int_equal(v.error.type, JOB_ERR_INTERRUPTED);
    job_view_release(&v);
    pool_free(p);
}

static void crash__children_of_the_job_die_with_the_worker(void **state)
{
    (void)state;
    struct pool *p = start_pool(1);
    /* The job starts a long sleep in the background, prints its pid, then crashes. */
    struct job_view v = run(p, "lambda: (print(__import__('subprocess').Popen(['sleep', "
                               "'300']).pid, flush=True), os.kill(os.getpid(), "
                               "signal.SIGKILL))");
    assert_int_equal(v.error.type, JOB_ERR_WORKER_CRASHED);
    struct job_output o;
    assert_int_equal(pool_job_output(p, v.id, &o), 0);
    int child = atoi((const char *)blob_data(o.out));
    assert_true(child > 0);
    job_output_release(&o);
    job_view_release(&v);
    int gone = 0;
    for (int i = 0; i < 200 && !gone; i++, usleep(10000)) {
        char path[64], st = 0;
        snprintf(path, sizeof(path), "/proc/%d/stat", child);
        FILE *f = fopen(path, "r");
        /* Gone, or a zombie waiting for its (dead) parent's reaper. */
        gone = !f || (fscanf(f, "%*d %*s %c", &st) == 1 && st == 'Z');
        if (f)
            fclose(f);
    }
    assert_true(gone);
    pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(output__print_fd_write_and_subprocess__captured_per_job),
        cmocka_unit_test(output__over_limit__keeps_the_tail),
        cmocka_unit_test(output__crash__last_words_kept),
        cmocka_unit_test(recycle__max_tasks__new_pid_after_n_jobs),
        cmocka_unit_test(recycle__rss_over_limit__replaced_after_the_job),
        cmocka_unit_test(idle_timeout__extra_workers_exit_then_come_back),
        cmocka_unit_test(environment__worker_env_and_cwd),
        cmocka_unit_test(boot_failure__backs_off_reports_and_fails_queued_jobs_late),
        cmocka_unit_test(boot_failure__exit_code_3__retried_once_then_only_slowly),
        cmocka_unit_test(drain__running_finishes_queued_interrupted_new_refused),
        cmocka_unit_test(drain__grace_over__running_job_interrupted),
        cmocka_unit_test(crash__children_of_the_job_die_with_the_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
