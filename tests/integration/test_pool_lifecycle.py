"""Pool lifecycle (issue 5): resize at runtime, idle exit, recycling (tasks and RSS),
the hard memory limit, retries on crash, output capture, boot failures, the workers'
environment, graceful shutdown, and the crash -> replacement time."""

import http.client
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import tempfile
import textwrap
import threading
import time

import pytest

from conftest import (SHUTDOWN_TIMEOUT, _pid_alive, check_created, check_problem,
                      decode_result, make_payload, parse_ts, pyjobd_bin, start_server)


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def worker_dir():
    """A temporary directory the workers can use whatever user they run as
    (--worker-user nobody cannot enter pytest's 0700 tmp_path)."""
    d = tempfile.mkdtemp(prefix="pyjobd-test-")
    os.chmod(d, 0o777)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def get_pool(s):
    r = s.request("GET", "/v1/pool")
    assert r.status == 200, f"GET /v1/pool: {r!r}"
    pool = r.json()
    for key in ("workers_target", "workers", "queued", "running", "restarts", "boot_failures",
                "boot_error"):
        assert key in pool, f"/v1/pool lacks {key!r}: {pool}"
    return pool


def resize(s, n):
    r = s.request("PATCH", "/v1/pool", body={"workers": n})
    assert r.status == 200, f"PATCH /v1/pool {{workers: {n}}}: {r!r}"
    pool = r.json()
    assert pool["workers_target"] == n, f"PATCH /v1/pool answered target {pool['workers_target']}, want {n}: {pool}"
    return pool


def wait_for(what, pred, timeout, interval=0.05):
    """Polls pred() (returning a truthy value when done) for at most timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    last = pred()
    assert last, f"{what}: not true after {timeout}s"
    return last


def wait_status(s, job_id, status, timeout=10.0):
    def check():
        job = s.get(job_id)
        return job if job["status"] == status else None
    return wait_for(f"job {job_id} reaches {status!r} (now {s.get(job_id)['status']})", check, timeout, 0.02)


def post(s, fn, *args, wait=None, **fields):
    """POSTs fn(*args) with extra request fields (max_retries, ...); returns the job."""
    payload = make_payload(fn, *args)
    payload.update(fields)
    return check_created(s.post_job(payload, wait=wait))


def live_pids(pool):
    return {w["pid"] for w in pool["workers"] if w["state"] != "exiting"}


def get_output(s, job_id):
    r = s.request("GET", f"/v1/jobs/{job_id}/output")
    assert r.status == 200, f"GET /v1/jobs/{job_id}/output: {r!r}"
    out = r.json()
    for key in ("stdout", "stderr", "stdout_dropped_bytes", "stderr_dropped_bytes"):
        assert key in out, f"output lacks {key!r}: {out}"
    return out


# --------------------------------------------------------------------------- resize


def test_resize_grows_at_once_and_shrinks_without_killing_running_jobs(make_server):
    s = make_server("--workers", "1", name="resize")
    for bad in ({"workers": 0}, {"workers": 1025}, {"workers": "2"}, {}):
        check_problem(s.request("PATCH", "/v1/pool", body=bad), 400)
    assert get_pool(s)["workers_target"] == 1
    long_job = s.submit(lambda: (time.sleep(4), os.getpid())[1])
    long_pid = wait_status(s, long_job["id"], "running")["worker_pid"]

    # Grow while the only worker is busy: new workers start at once and take jobs at
    # once, without waiting for the running job.
    t0 = time.monotonic()
    resize(s, 3)
    wait_for("3 workers after PATCH {workers: 3}",
             lambda: len([w for w in get_pool(s)["workers"] if w["state"] in ("idle", "busy")]) == 3, 3.0)
    quick = [s.run(lambda: os.getpid()) for _ in range(2)]
    for q in quick:
        assert q["status"] == "succeeded", q
        assert decode_result(q) != long_pid, f"quick job ran on the busy worker: {q}"
    assert time.monotonic() - t0 < 3.0, "quick jobs waited for the long one (grow was not immediate)"
    assert s.get(long_job["id"])["status"] == "running", "long job no longer running after the grow"

    # Shrink while the long job runs: the idle workers go, the busy one stays and its
    # job finishes normally.
    pool = resize(s, 1)
    assert pool["workers_target"] == 1
    pool = wait_for("idle workers leave after PATCH {workers: 1}",
                    lambda: (lambda p: p if {w["pid"] for w in p["workers"]} == {long_pid} else None)(get_pool(s)), 3.0)
    assert pool["workers_target"] == 1, pool
    assert s.get(long_job["id"])["status"] == "running", "shrink disturbed the running job"
    done = s.wait_done(long_job["id"], timeout=10)
    assert done["status"] == "succeeded", f"running job did not survive the shrink: {done}"
    assert decode_result(done) == long_pid
    after = s.run(lambda: "after")
    assert decode_result(after) == "after"
    pool = get_pool(s)
    assert pool["workers_target"] == 1 and len(pool["workers"]) == 1, pool


def test_shrink_retires_busy_workers_after_their_job(make_server):
    s = make_server("--workers", "2", name="shrink-busy")
    jobs = [s.submit(lambda: (time.sleep(1.5), os.getpid())[1]) for _ in range(2)]
    for j in jobs:
        wait_status(s, j["id"], "running")
    pool = resize(s, 1)
    # Both workers are busy: one is marked retiring, none is killed.
    pool = wait_for("a busy worker is marked retiring",
                    lambda: (lambda p: p if sum(w["retiring"] for w in p["workers"]) == 1 else None)(get_pool(s)), 1.0)
    assert len(pool["workers"]) == 2, f"a busy worker was removed before its job ended: {pool}"
    results = [s.wait_done(j["id"], timeout=10) for j in jobs]
    for r in results:
        assert r["status"] == "succeeded", f"job on a retiring worker did not finish: {r}"
    wait_for("pool settles at 1 worker", lambda: len(get_pool(s)["workers"]) == 1, 3.0)
    assert get_pool(s)["workers_target"] == 1


# --------------------------------------------------------------------------- idle exit


def test_idle_workers_exit_and_come_back_on_demand(make_server):
    s = make_server("--workers", "2", "--min-workers", "1", "--idle-timeout", "0.5", name="idle")
    wait_for("2 workers at start", lambda: len(get_pool(s)["workers"]) == 2, 5.0)
    pool = wait_for("an idle worker beyond --min-workers exits",
                    lambda: (lambda p: p if len(p["workers"]) == 1 else None)(get_pool(s)), 5.0)
    assert pool["workers_target"] == 2, f"idle exit must not change the target: {pool}"
    time.sleep(1.0)  # --min-workers 1: the last one stays
    assert len(get_pool(s)["workers"]) == 1, get_pool(s)

    def span():
        t = time.time()
        time.sleep(1.0)
        return os.getpid(), t, time.time()
    a = s.submit(span)
    b = s.submit(span)
    ra, rb = (decode_result(s.wait_done(j["id"], timeout=15)) for j in (a, b))
    assert ra[0] != rb[0], f"both jobs ran on worker {ra[0]}: no worker was started on demand"
    assert ra[1] < rb[2] and rb[1] < ra[2], f"the two jobs did not run concurrently: {ra} {rb}"


def test_scale_to_zero_idle_workers_all_exit_then_a_job_starts_one(make_server):
    s = make_server("--workers", "2", "--min-workers", "0", "--idle-timeout", "0.3", name="zero")
    wait_for("every idle worker exits (--min-workers 0)",
             lambda: (lambda p: p if len(p["workers"]) == 0 else None)(get_pool(s)), 5.0)
    time.sleep(0.5)  # nothing comes back while nothing waits
    pool = get_pool(s)
    assert pool["workers"] == [] and pool["workers_target"] == 2, pool
    r = s.request("GET", "/readyz")
    assert r.status == 200, f"/readyz must stay ready when scaled to zero on purpose: {r!r}"
    latencies = []
    for _ in range(3):
        wait_for("scaled to zero again", lambda: len(get_pool(s)["workers"]) == 0, 5.0)
        t = time.monotonic()
        job = check_created(s.post_job(make_payload(lambda: os.getpid()), wait=10))
        latencies.append(time.monotonic() - t)
        assert job["status"] == "succeeded", job
    print(f"\nfirst job after scale to zero (POST ?wait, round trip): "
          f"{', '.join(f'{x * 1000:.1f} ms' for x in latencies)}")
    assert max(latencies) < 5.0, latencies


def test_min_workers_zero_needs_an_idle_timeout():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYJOBD_")}
    env["PYJOBD_ALLOW_ROOT_WORKERS"] = "1"
    r = subprocess.run([pyjobd_bin(), "--port", "0", "--listen", "127.0.0.1", "--min-workers", "0"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=15, env=env)
    assert r.returncode == 2, f"exit {r.returncode}: {r.stdout!r} {r.stderr!r}"
    assert b"--idle-timeout" in r.stderr and b"--min-workers 0" in r.stderr, r.stderr


# --------------------------------------------------------------------------- recycling


def test_recycle_after_max_tasks(make_server):
    s = make_server("--workers", "1", "--max-tasks-per-worker", "3", name="recycle")
    pids = [decode_result(s.run(lambda: os.getpid())) for _ in range(7)]
    assert pids[0] == pids[1] == pids[2], f"worker replaced before 3 jobs: {pids}"
    assert pids[3] == pids[4] == pids[5], f"second worker replaced before 3 jobs: {pids}"
    assert pids[3] != pids[2] and pids[6] != pids[5], f"no replacement after 3 jobs: {pids}"
    assert get_pool(s)["restarts"]["recycle"] >= 2, get_pool(s)
    # /v1/pool tells the truth about the worker: 1 job done since pids[6], then busy.
    pool = wait_for("the new worker is idle", lambda: (lambda p: p if [w["state"] for w in p["workers"]] == ["idle"]
                                                          else None)(get_pool(s)), 3.0)
    w = pool["workers"][0]
    assert w["pid"] == pids[6] and w["jobs_done"] == 1 and w["job_id"] is None, pool
    assert isinstance(w["rss_bytes"], int) and w["rss_bytes"] > 1 << 20, pool
    job = s.submit(lambda: time.sleep(1))
    wait_status(s, job["id"], "running")
    pool = get_pool(s)
    w = pool["workers"][0]
    assert (w["state"], w["job_id"], pool["running"], pool["queued"]) == ("busy", job["id"], 1, 0), pool


def test_recycle_when_rss_exceeds_limit(make_server):
    s = make_server("--workers", "1", "--worker-max-rss", "150M", name="rss")

    def leak():
        import builtins
        builtins.pyjobd_leak = b"x" * (200 << 20)  # a module global: stays after the job
        return os.getpid()

    small = decode_result(s.run(lambda: os.getpid()))
    small2 = decode_result(s.run(lambda: os.getpid()))
    assert small == small2, "worker replaced although its RSS is small"
    leaked = s.run(leak)
    assert leaked["status"] == "succeeded", leaked
    assert decode_result(leaked) == small
    nxt = decode_result(s.run(lambda: os.getpid()))
    assert nxt != small, f"worker {small} kept after its RSS grew past --worker-max-rss 150M"
    assert get_pool(s)["restarts"]["recycle"] >= 1, get_pool(s)


@pytest.mark.skipif(os.environ.get("PYJOBD_TEST_SANITIZERS") == "1", reason=(
    "an AddressSanitizer worker reserves terabytes of address space for its shadow memory, "
    "so no RLIMIT_AS can apply to it; make test runs this test on the normal build"))
def test_memory_limit_gives_memory_error_naming_the_limit(make_server):
    s = make_server("--workers", "1", "--worker-memory-limit", "300M", name="memlimit")
    job = s.run(lambda: len(bytearray(1 << 30)))
    assert job["status"] == "failed", f"1 GiB allocation under a 300M limit: {job}"
    err = job["error"]
    assert err["type"] == "exception" and err["exc_type"] in ("MemoryError", "builtins.MemoryError"), err
    msg = err["message"]
    assert any(t in msg for t in ("300M", "300 M", "314572800", "300 MiB", "300.0 MiB")), \
        f"MemoryError message does not name the limit: {msg!r}"
    assert "memory" in msg.lower(), msg
    ok = s.run(lambda: sum(range(1000)))
    assert decode_result(ok) == 499500
    assert ok["worker_pid"] != job["worker_pid"], "the worker that ran out of memory was not replaced"


# --------------------------------------------------------------------------- retries


def test_retry_after_crash_on_first_attempt(make_server, worker_dir):
    s = make_server("--workers", "1", name="retry")

    def crash_once(marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(7)
        return "second attempt"

    job = post(s, crash_once, str(worker_dir / "m1"), wait=30, max_retries=1)
    job = s.wait_done(job["id"]) if job["status"] not in ("succeeded", "failed") else job
    assert job["status"] == "succeeded", f"job with max_retries 1 that crashes once: {job}"
    assert decode_result(job) == "second attempt"
    assert job["attempts"] == 2, job

    job = s.run(crash_once, str(worker_dir / "m2"))  # no max_retries: default 0
    assert job["status"] == "failed", job
    assert job["error"]["type"] == "worker_crashed", job
    assert job["error"]["exit_code"] == 7, job
    assert job["attempts"] == 1, job

    # Exceptions are never retried.
    job = post(s, lambda: 1 / 0, wait=30, max_retries=3)
    job = s.wait_done(job["id"])
    assert job["status"] == "failed" and job["error"]["type"] == "exception" and job["attempts"] == 1, job


def test_retries_exhausted_keep_the_last_crash(make_server, worker_dir):
    s = make_server("--workers", "1", name="retry-all")

    def crash_with_attempt_number(counter):
        fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, b"x")
        os.close(fd)
        os._exit(10 + os.path.getsize(counter))  # 11, 12, 13
    job = post(s, crash_with_attempt_number, str(worker_dir / "n"), wait=30, max_retries=2)
    job = s.wait_done(job["id"])
    assert job["status"] == "failed" and job["error"]["type"] == "worker_crashed", job
    assert job["attempts"] == 3, job
    assert job["error"]["exit_code"] == 13, f"the error is not the last crash's: {job['error']}"
    assert (worker_dir / "n").stat().st_size == 3
    r = s.post_job(dict(make_payload(lambda: 1), max_retries=4))  # > --max-retries-limit 3
    check_problem(r, 400)


def test_retry_on_timeout_only_when_asked(make_server, worker_dir):
    s = make_server("--workers", "1", name="retry-timeout")

    def slow_first_time(marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(30)
        return "fast"
    job = post(s, slow_first_time, str(worker_dir / "t1"), max_retries=1, retry_on_timeout=True,
               timeout=0.5)
    job = s.wait_done(job["id"], timeout=15)
    assert job["status"] == "succeeded" and decode_result(job) == "fast" and job["attempts"] == 2, job
    job = post(s, slow_first_time, str(worker_dir / "t2"), max_retries=1, timeout=0.5)
    job = s.wait_done(job["id"], timeout=15)
    assert job["status"] == "failed" and job["error"]["type"] == "timeout" and job["attempts"] == 1, \
        f"a timeout was retried without retry_on_timeout: {job}"


# --------------------------------------------------------------------------- output


def test_output_capture_from_python_fds_and_subprocesses(make_server):
    s = make_server("--workers", "1", name="output")

    def noisy():
        import subprocess
        import sys
        print("from-print")
        sys.stdout.flush()
        os.write(1, b"from-fd1\n")
        os.write(2, b"from-fd2\n")
        print("from-sys-stderr", file=sys.stderr)
        sys.stderr.flush()
        subprocess.run(["echo", "from-subprocess"], check=True)
        subprocess.run(["sh", "-c", "echo sub-err >&2"], check=True)
        return 1

    job = s.run(noisy)
    assert decode_result(job) == 1
    out = get_output(s, job["id"])
    lines = out["stdout"].splitlines()
    assert lines == ["from-print", "from-fd1", "from-subprocess"], f"stdout: {out}"
    assert out["stderr"].splitlines() == ["from-fd2", "from-sys-stderr", "sub-err"], f"stderr: {out}"
    assert out["stdout_dropped_bytes"] == 0 and out["stderr_dropped_bytes"] == 0, out

    # Attribution: the next job's output holds only its own.
    job2 = s.run(lambda: print("second-job"))
    out2 = get_output(s, job2["id"])
    assert out2["stdout"] == "second-job\n" and out2["stderr"] == "", out2


def test_output_truncation_keeps_the_tail(make_server):
    s = make_server("--workers", "1", "--max-output-bytes", "1000", name="truncate")

    def chatty():
        for i in range(500):
            print(f"line-{i:04d}")  # 10 bytes each: 5000 in all
        os.write(2, b"E" * 3000 + b"END\n")
    job = s.run(chatty)
    assert job["status"] == "succeeded", job
    out = get_output(s, job["id"])
    so, se = out["stdout"], out["stderr"]
    assert 0 < len(so) <= 1000, f"stdout kept {len(so)} bytes with --max-output-bytes 1000"
    assert so.endswith("line-0499\n"), f"the tail was not kept: ...{so[-60:]!r}"
    assert "line-0000" not in so, "the head was kept instead of the tail"
    assert out["stdout_dropped_bytes"] == 5000 - len(so), out | {"stdout": "...", "stderr": "..."}
    assert 0 < len(se) <= 1000 and se.endswith("EEEEEND\n"), se[-40:]
    assert out["stderr_dropped_bytes"] == 3004 - len(se), out | {"stdout": "...", "stderr": "..."}


# --------------------------------------------------------------------------- boot / init / env


def test_boot_failure_reported_and_queued_job_fails_after_timeout(make_server):
    s = make_server("--workers", "1", "--worker-init", "nosuchmodule:f", "--boot-failure-timeout", "2",
                    name="bootfail", ready=False)
    job = s.submit(lambda: "never")
    t0 = time.monotonic()
    r = wait_for("/readyz answers 503", lambda: (lambda r: r if r.status == 503 else None)(
        s.request("GET", "/readyz")), 3.0)
    check_problem(r, 503)
    pool = wait_for("/v1/pool reports a boot error",
                    lambda: (lambda p: p if p["boot_error"] and p["boot_failures"] >= 2 else None)(get_pool(s)), 3.0)
    # Queued jobs are not failed because of a boot problem before --boot-failure-timeout.
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    assert s.get(job["id"])["status"] == "queued", "a boot problem failed the job before --boot-failure-timeout"
    done = s.wait_done(job["id"], timeout=10)
    elapsed = time.monotonic() - t0
    assert done["status"] == "failed" and done["error"]["type"] == "worker_crashed", done
    assert "No worker could start" in done["error"]["message"], done["error"]
    assert elapsed < 8, f"queued job failed only after {elapsed:.1f}s (--boot-failure-timeout 2)"
    # The reason (the bogus module) is reported where an operator looks.
    r = s.request("GET", "/readyz")
    readyz = check_problem(r, 503)["detail"]
    pool = get_pool(s)
    missing = [f"{where}: {text!r}" for where, text in (
        ("GET /readyz detail", readyz), ("GET /v1/pool boot_error", pool["boot_error"]),
        ("job error.message", done["error"]["message"])) if "nosuchmodule" not in (text or "")]
    assert not missing, "the boot failure reason (--worker-init nosuchmodule:f) is not named in:\n" + "\n".join(missing)


def test_worker_init_and_cwd(make_server, worker_dir):
    (worker_dir / "pyjobd_test_init.py").write_text(textwrap.dedent("""\
        import os
        CALLS = 0
        STATE = None

        def setup():
            global CALLS, STATE
            CALLS += 1
            STATE = "initialized in %d" % os.getpid()
        """))
    s = make_server("--workers", "1", "--worker-cwd", str(worker_dir),
                    "--worker-init", "pyjobd_test_init:setup", name="init")

    def read():
        import pyjobd_test_init as m
        return m.STATE, m.CALLS, os.getpid(), os.getcwd()
    for _ in range(2):
        state, calls, pid, cwd = decode_result(s.run(read))
        assert state == f"initialized in {pid}", state
        assert calls == 1, f"--worker-init ran {calls} times in one worker"
        assert os.path.realpath(cwd) == os.path.realpath(str(worker_dir)), cwd


def test_worker_env_is_passed_and_server_env_is_not(make_server):
    s = make_server("--workers", "1", "--worker-env", "JOB_VAR=hello", "--worker-env", "JOB_EQ=a=b",
                    "--worker-env", "JOB_EMPTY=", name="env",
                    env={"PYJOBD_TEST_SECRET": "s3cret", "SERVER_ONLY_SECRET": "t0psecret"})
    env = decode_result(s.run(lambda: dict(os.environ)))
    assert env.get("JOB_VAR") == "hello", env
    assert env.get("JOB_EQ") == "a=b", env
    assert env.get("JOB_EMPTY") == "", env
    assert "PYJOBD_TEST_SECRET" not in env, "the server's PYJOBD_TEST_SECRET leaked into the worker"
    assert "SERVER_ONLY_SECRET" not in env, "the server's environment leaked into the worker"
    assert "s3cret" not in repr(env) and "t0psecret" not in repr(env)


# --------------------------------------------------------------------------- shutdown


def test_graceful_shutdown_running_finishes_queued_interrupted():
    s = start_server("graceful", "--workers", "1", "--shutdown-grace", "5")
    outcomes = {}
    threads = []
    try:
        s.wait_ready()
        running = s.submit(lambda: (time.sleep(1.5), "finished")[1])
        queued = s.submit(lambda: "never runs")
        worker = wait_status(s, running["id"], "running")["worker_pid"]

        def poll(key, job_id):
            try:
                outcomes[key] = s.request("GET", f"/v1/jobs/{job_id}?wait=30", timeout=30)
            except (OSError, http.client.HTTPException) as e:
                outcomes[key] = e
            outcomes[key + "_at"] = time.monotonic()
        for key, j in (("running", running), ("queued", queued)):
            t = threading.Thread(target=poll, args=(key, j["id"]))
            t.start()
            threads.append(t)
        time.sleep(0.2)
        children = s._child_pids()
        t_term = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        r = s.post_job(make_payload(lambda: "too late"))
        check_problem(r, 503)
        rc = s.proc.wait(timeout=SHUTDOWN_TIMEOUT)
    except BaseException:
        s.kill()
        raise
    finally:
        for t in threads:
            t.join(timeout=10)
    assert rc == 0, f"exit code {rc} after SIGTERM\n{s.log_tail()}"
    for p in children:
        wait_for(f"worker {p} exits after the server", lambda: not _pid_alive(p), 2.0)
    assert not _pid_alive(worker)
    r = outcomes.get("running")
    assert getattr(r, "status", None) == 200, f"running job's waiter: {r!r}"
    job = r.json()
    assert job["status"] == "succeeded", f"running job did not finish within the grace: {job}"
    assert decode_result(job) == "finished"
    r = outcomes.get("queued")
    assert getattr(r, "status", None) == 200, f"queued job's waiter: {r!r}"
    job = r.json()
    assert job["status"] == "failed" and job["error"]["type"] == "interrupted", job
    assert outcomes["queued_at"] - t_term < 1.0, \
        f"the queued job's waiter was answered {outcomes['queued_at'] - t_term:.1f}s after SIGTERM, not at once"


# --------------------------------------------------------------------------- replacement time


def test_crash_replacement_time(make_server):
    s = make_server("--workers", "1", name="replace")

    def crash():
        time.sleep(0.05)  # the next job is queued before the crash
        os._exit(1)
    gaps = []
    for i in range(20):
        c = s.submit(crash)
        n = s.submit(lambda: os.getpid())
        n = s.wait_done(n["id"], timeout=15)
        c = s.get(c["id"])
        assert c["status"] == "failed" and c["error"]["type"] == "worker_crashed", c
        assert n["status"] == "succeeded", f"job after crash {i}: {n}"
        assert n["worker_pid"] != c["worker_pid"], (c, n)
        gaps.append(parse_ts(n["started_at"]) - parse_ts(c["finished_at"]))
    med = statistics.median(gaps)
    print(f"\nreplacement time crash -> next job start over {len(gaps)} crashes: median "
          f"{med * 1000:.1f} ms, min {min(gaps) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms")
    assert all(g >= -0.001 for g in gaps), f"next job started before the crash was recorded: {gaps}"
    assert med < 1.0, f"median replacement time {med:.3f}s"
    assert get_pool(s)["restarts"]["crash"] >= 20, get_pool(s)
