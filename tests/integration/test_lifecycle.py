"""Server process lifecycle: configuration, keep-alive connections, shutdown with work
in flight."""

import http.client
import json
import subprocess
import threading
import time

import pytest

from conftest import (SHUTDOWN_TIMEOUT, _pid_alive, decode_result, make_payload,
                      pyjobd_bin, start_server)


def test_env_configuration_and_flags_win(make_server):
    s = make_server(name="env", env={"PYJOBD_WORKERS": "3", "PYJOBD_DEFAULT_TIMEOUT": "0.5"})
    info = s.wait_ready()
    assert info["workers"] == 3, info
    job = s.run(lambda: time.sleep(5))
    assert job["status"] == "failed" and job["error"]["type"] == "timeout", job
    # a flag overrides its environment variable
    s2 = make_server("--workers", "1", name="env-flag", env={"PYJOBD_WORKERS": "3"})
    assert s2.wait_ready()["workers"] == 1


@pytest.mark.parametrize("args", [["--workers", "0"], ["--workers", "many"], ["--no-such-flag"],
                                  ["--default-timeout", "-5"], ["--log-level", "loud"]])
def test_bad_flags_exit_with_error(args):
    cmd = [pyjobd_bin(), "--port", "0", "--listen", "127.0.0.1"] + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    assert r.returncode != 0, f"{args}: accepted a bad flag: {r}"
    assert r.stdout == "", f"{args}: printed to stdout: {r.stdout!r}"
    assert r.stderr.strip(), f"{args}: no error message on stderr"


def test_keep_alive_connection(server):
    # Several requests on one HTTP/1.1 connection, as requests.Session or curl would do.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        payload = json.dumps(make_payload(lambda x: x + 1, 41))
        conn.request("POST", "/v1/jobs?wait=10", body=payload, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        job = json.loads(r.read())
        assert r.status == 201, job
        conn.request("GET", f"/v1/jobs/{job['id']}")
        r = conn.getresponse()
        again = json.loads(r.read())
        assert r.status == 200 and decode_result(again) == 42
        conn.request("GET", "/v1/jobs/xyz")  # an error does not poison the connection
        r = conn.getresponse()
        r.read()
        assert r.status == 404
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        assert r.status == 200
    finally:
        conn.close()


def test_sigterm_with_jobs_in_flight():
    # The running job gets --shutdown-grace (default 30 s) to finish; 1 s here, then it
    # is killed and reported interrupted.
    s = start_server("shutdown", "--workers", "1", "--shutdown-grace", "1")
    try:
        s.wait_ready()
        running = s.submit(lambda: time.sleep(30))
        queued = s.submit(lambda: "never runs")
        deadline = time.monotonic() + 5
        while s.get(running["id"])["status"] != "running":
            assert time.monotonic() < deadline, "job never started"
            time.sleep(0.02)
        worker = s.get(running["id"])["worker_pid"]
        outcome = {}

        def long_poll():
            try:
                r = s.request("GET", f"/v1/jobs/{queued['id']}?wait=30", timeout=30)
                outcome["response"] = r
            except (OSError, http.client.HTTPException) as e:
                outcome["error"] = e

        t = threading.Thread(target=long_poll)
        t.start()
        time.sleep(0.2)  # the long-poll is suspended in the server
    except BaseException:
        s.kill()
        raise
    t0 = time.monotonic()
    problems = s.stop()  # SIGTERM; checks exit code 0, workers gone, <= 10 s
    elapsed = time.monotonic() - t0
    t.join(timeout=5)
    assert not problems, problems
    assert elapsed < SHUTDOWN_TIMEOUT
    assert not _pid_alive(worker), f"worker {worker} running a 30 s job outlived the server"
    assert not t.is_alive(), "a long-poll was left hanging after the server stopped"
    # The waiter is answered: the job is reported interrupted, or the connection is closed.
    r = outcome.get("response")
    if r is not None:
        assert r.status == 200, r
        job = r.json()
        assert job["status"] in ("failed", "cancelled"), job
        assert job["error"]["type"] == "interrupted", job


def _start_long_poll(s, job_id):
    """GET ?wait=30 on a thread; returns (thread, outcome dict)."""
    outcome = {}

    def long_poll():
        try:
            outcome["response"] = s.request("GET", f"/v1/jobs/{job_id}?wait=30", timeout=30)
        except (OSError, http.client.HTTPException) as e:
            outcome["error"] = e

    t = threading.Thread(target=long_poll)
    t.start()
    time.sleep(0.2)  # let the request reach the server and be suspended
    return t, outcome


def _wait_running(s, job_id):
    deadline = time.monotonic() + 5
    while True:
        job = s.get(job_id)
        if job["status"] == "running":
            return job
        assert time.monotonic() < deadline, f"job never started: {job}"
        time.sleep(0.02)


def test_sigterm_lets_a_short_running_job_finish():
    # --shutdown-grace: running jobs may finish; the waiter gets the real result.
    s = start_server("drain", "--workers", "1", "--shutdown-grace", "5")
    try:
        s.wait_ready()
        job = s.submit(lambda: time.sleep(0.7) or "finished during drain")
        _wait_running(s, job["id"])
        t, outcome = _start_long_poll(s, job["id"])
    except BaseException:
        s.kill()
        raise
    t0 = time.monotonic()
    problems = s.stop()
    elapsed = time.monotonic() - t0
    t.join(timeout=5)
    assert not problems, problems
    assert elapsed < 4.0, f"server took {elapsed:.2f}s to stop after a 0.7 s job"
    r = outcome.get("response")
    assert r is not None, f"the long-poll on the draining job got no answer: {outcome}"
    assert r.status == 200, r
    assert decode_result(r.json()) == "finished during drain"


def test_sigterm_grace_expires_and_running_job_is_interrupted():
    s = start_server("grace", "--workers", "1", "--shutdown-grace", "0.5")
    try:
        s.wait_ready()
        job = s.submit(lambda: time.sleep(30))
        worker = _wait_running(s, job["id"])["worker_pid"]
        t, outcome = _start_long_poll(s, job["id"])
    except BaseException:
        s.kill()
        raise
    t0 = time.monotonic()
    problems = s.stop()
    elapsed = time.monotonic() - t0
    t.join(timeout=5)
    assert not problems, problems
    assert elapsed < 3.0, f"--shutdown-grace 0.5 but the server took {elapsed:.2f}s to stop"
    assert not _pid_alive(worker), f"worker {worker} outlived the server"
    assert not t.is_alive(), "a long-poll was left hanging after the server stopped"
    r = outcome.get("response")
    if r is not None:  # answered (or the connection was closed): never left hanging
        assert r.status == 200, r
        assert r.json()["error"]["type"] == "interrupted", r


def test_second_sigterm_stops_at_once():
    s = start_server("twice", "--workers", "1")  # default grace
    try:
        s.wait_ready()
        job = s.submit(lambda: time.sleep(30))
        worker = _wait_running(s, job["id"])["worker_pid"]
    except BaseException:
        s.kill()
        raise
    t0 = time.monotonic()
    problems = s.stop(second_sigterm_after=0.3)
    elapsed = time.monotonic() - t0
    assert not problems, problems
    assert elapsed < 3.0, f"a second SIGTERM should stop at once; took {elapsed:.2f}s"
    assert not _pid_alive(worker), f"worker {worker} outlived the server"
