"""Soft timeouts and graceful cancel (issue 17 item 6): pyjobd.SoftTimeout raised in a job
at its soft_timeout, pyjobd.Cancelled at POST .../cancel?interrupt=S, so that finally blocks
run; the hard timeout and the interrupt's grace still end a job that ignores them. Each test
runs with a job in the worker itself and in a process forked for it (--isolation job)."""

import os
import pathlib
import shutil
import tempfile
import time

import pytest

from conftest import check_created, check_problem, make_payload, parse_ts


@pytest.fixture
def marker_dir():
    d = tempfile.mkdtemp(prefix="pyjobd-soft-")
    os.chmod(d, 0o777)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["shared", "job"])
def srv(request, make_server):
    args = ["--workers", "1"]
    if request.param == "job":
        args += ["--isolation", "job"]
    return make_server(*args, name=f"soft-{request.param}")


def post(s, fn, *args, **fields):
    payload = make_payload(fn, *args)
    payload.update(fields)
    return check_created(s.post_job(payload))


def ran_for(job):
    return (parse_ts(job["finished_at"]) - parse_ts(job["started_at"]))


def wait_running(s, job_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = s.get(job_id)
        if job["status"] == "running":
            return job
        time.sleep(0.02)
    pytest.fail(f"job {job_id} not running after {timeout}s: {s.get(job_id)}")


def wait_file(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.01)
    assert path.exists(), f"{path} not written within {timeout}s"


def cancel(s, job_id, query):
    return s.request("POST", f"/v1/jobs/{job_id}/cancel?{query}")


# --------------------------------------------------------------------------- soft timeout


def test_soft_timeout_raises_in_the_job_and_finally_runs(srv, marker_dir):
    marker = marker_dir / "finally"

    def job(path):
        import time
        try:
            time.sleep(10)
        finally:
            open(path, "w").write("ran")

    j = post(srv, job, str(marker), soft_timeout=0.3, timeout=5)
    done = srv.wait_done(j["id"], timeout=10)
    assert marker.exists(), f"the job's finally block did not run: {done}"
    assert done["status"] == "failed" and done["error"]["type"] == "exception", done
    assert done["error"]["exc_type"].endswith("SoftTimeout"), done["error"]
    assert "soft_timeout of 0.3 s" in done["error"]["message"], done["error"]
    took = ran_for(done)
    assert 0.29 <= took < 1.0, f"SoftTimeout after {took:.3f} s, want 0.3 s (+ a little)"


def test_soft_timeout_is_a_timeout_error_from_the_builtin_module(srv):
    def job():
        import time
        import pyjobd
        from pyjobd import Cancelled, SoftTimeout
        try:
            while True:  # pure Python, no sleep: raised between bytecodes
                sum(range(1000))
        except TimeoutError as e:
            return (type(e) is SoftTimeout, issubclass(Cancelled, BaseException),
                    issubclass(Cancelled, Exception), pyjobd.__file__ if hasattr(pyjobd, "__file__") else None)

    j = post(srv, job, soft_timeout=0.2, timeout=5)
    done = srv.wait_done(j["id"], timeout=10)
    import base64
    import cloudpickle
    assert done["status"] == "succeeded", done
    assert cloudpickle.loads(base64.b64decode(done["result"])) == (True, True, False, None)


def test_a_job_ignoring_its_soft_timeout_is_killed_at_its_timeout(srv):
    def job():
        import time
        from pyjobd import SoftTimeout
        while True:
            try:
                time.sleep(10)
            except SoftTimeout:
                pass

    j = post(srv, job, soft_timeout=0.3, timeout=1.5)
    done = srv.wait_done(j["id"], timeout=10)
    assert done["status"] == "failed" and done["error"]["type"] == "timeout", done
    took = ran_for(done)
    assert 1.45 <= took < 2.5, f"killed after {took:.3f} s, want its timeout of 1.5 s"


# --------------------------------------------------------------------------- interrupt


def test_interrupt_raises_cancelled_and_finally_runs(srv, marker_dir):
    started, marker = marker_dir / "started", marker_dir / "finally"

    def job(start, path):
        import time
        open(start, "w").write("x")
        try:
            time.sleep(30)
        finally:
            open(path, "w").write("ran")

    j = post(srv, job, str(started), str(marker), timeout=60)
    wait_running(srv, j["id"])
    wait_file(started)
    t = time.monotonic()
    r = cancel(srv, j["id"], "interrupt=2")
    assert r.status == 200, r
    done = srv.wait_done(j["id"], timeout=10)
    took = time.monotonic() - t
    assert marker.exists(), f"finally did not run: {done}"
    assert done["status"] == "cancelled" and done["error"]["type"] == "cancelled", done
    assert "Cancelled was raised" in done["error"]["message"], done["error"]
    assert took < 1.5, f"the job ended {took:.2f} s after the interrupt: it was killed, not interrupted"
    # The worker goes on: the next job runs on it.
    again = post(srv, lambda: 1, timeout=5)
    assert srv.wait_done(again["id"])["status"] == "succeeded"


def test_interrupt_of_a_job_that_returns_still_cancels_it(srv, marker_dir):
    started = marker_dir / "started"

    def job(start):
        import time
        from pyjobd import Cancelled
        open(start, "w").write("x")
        try:
            time.sleep(30)
        except Cancelled:
            return "caught"

    j = post(srv, job, str(started), timeout=60)
    wait_file(started)
    assert cancel(srv, j["id"], "interrupt=2").status == 200
    done = srv.wait_done(j["id"], timeout=10)
    assert done["status"] == "cancelled", done


def test_a_job_ignoring_cancelled_is_killed_after_the_grace(srv, marker_dir):
    started = marker_dir / "started"

    def job(start):
        import time
        while True:
            try:
                # The marker inside the try: an interrupt sent as soon as it exists finds
                # the job where it swallows exceptions (written before the try, a
                # Cancelled landing between the two ended the job, raising).
                open(start, "w").write("x")
                time.sleep(10)
            except BaseException:
                pass

    j = post(srv, job, str(started), timeout=60)
    wait_file(started)
    t = time.monotonic()
    assert cancel(srv, j["id"], "interrupt=2").status == 200
    done = srv.wait_done(j["id"], timeout=10)
    took = time.monotonic() - t
    assert done["status"] == "cancelled" and done["error"]["type"] == "cancelled", done
    assert "killed" in done["error"]["message"], done["error"]
    assert 1.9 <= took < 3.5, f"killed {took:.2f} s after the interrupt, want 2 s"
    again = post(srv, lambda: 1, timeout=5)  # a replacement worker runs the next job
    assert srv.wait_done(again["id"])["status"] == "succeeded"


def test_interrupt_parameter_is_checked(server):
    j = check_created(server.post_job(make_payload(lambda: 1)))
    for bad in ("0", "-1", "3601", "abc", "nan", ""):
        r = cancel(server, j["id"], f"interrupt={bad}")
        check_problem(r, 400)
        assert "'interrupt'" in r.json()["detail"], r.json()
    r = cancel(server, j["id"], "interrupt=1&force=true")
    check_problem(r, 400)
    assert "'force'" in r.json()["detail"] and "'interrupt'" in r.json()["detail"], r.json()
