"""Jobs that fail: exceptions, timeouts, worker crashes, bad payloads, unpicklable
results — and the pool keeps working after each."""

import base64
import importlib
import os
import pickle
import signal
import sys
import textwrap
import threading
import time
import uuid

import cloudpickle
import pytest

from conftest import _pid_alive, b64, check_created, decode_result, make_payload


def assert_next_job_ok(server, value=None):
    value = value if value is not None else uuid.uuid4().hex
    job = server.run(lambda v: ("ok", v), value)
    assert job["status"] == "succeeded", f"job after a failure did not succeed: {job}"
    assert decode_result(job) == ("ok", value)
    return job


def assert_pid_gone(pid, within=3.0):
    """The worker that ran a timed-out job must really be stopped (not left spinning)."""
    assert isinstance(pid, int), pid
    deadline = time.monotonic() + within
    while _pid_alive(pid):
        assert time.monotonic() < deadline, f"worker {pid} still alive {within}s after its job timed out"
        time.sleep(0.05)


def failed_with(job, error_type):
    assert job["status"] == "failed", f"expected failed/{error_type}, got {job}"
    err = job["error"]
    assert err["type"] == error_type, f"expected error.type {error_type!r}, got {err}"
    assert job.get("result") is None
    return err


# ------------------------------------------------------------------ exceptions


def test_exception_value_error(server):
    def boom():
        raise ValueError("bad")

    err = failed_with(server.run(boom), "exception")
    assert err["exc_type"] == "ValueError", err
    exc = cloudpickle.loads(base64.b64decode(err["exception"], validate=True))
    assert type(exc) is ValueError, exc
    assert exc.args == ("bad",)
    assert "ValueError" in err["traceback"], err["traceback"]
    assert "bad" in err["traceback"]
    assert "boom" in err["traceback"], "traceback should show the raising function"
    assert "bad" in err["message"] or "ValueError" in err["message"], err["message"]
    assert err["signal"] is None and err["exit_code"] is None, err
    assert_next_job_ok(server)


def test_exception_custom_class_and_chained(server):
    class AppError(Exception):
        def __init__(self, code, text):
            super().__init__(code, text)
            self.code = code

    def fail(n):
        try:
            return 1 / n
        except ZeroDivisionError as e:
            raise AppError(418, "teapot") from e

    err = failed_with(server.run(fail, 0), "exception")
    # a class of the client's own: the name may be module-qualified ("test_failures.AppError")
    assert err["exc_type"] in ("AppError", "test_failures.AppError"), err
    exc = cloudpickle.loads(base64.b64decode(err["exception"]))
    assert exc.args == (418, "teapot")
    assert "ZeroDivisionError" in err["traceback"], "chained cause should be in the traceback"
    assert "AppError" in err["traceback"]


def test_exception_in_args_type_error(server):
    # Calling with the wrong arity is the callable's exception (TypeError), not a crash.
    err = failed_with(server.run(lambda a: a, 1, 2), "exception")
    assert err["exc_type"] == "TypeError", err
    assert_next_job_ok(server)


def test_system_exit_does_not_kill_worker(server):
    job = server.run(lambda: sys.exit(5))
    assert job["status"] == "failed", job
    assert job["error"]["type"] in ("exception", "worker_crashed"), job
    assert_next_job_ok(server)


# ------------------------------------------------------------------ timeouts


def test_timeout_kills_long_job(server):
    t0 = time.monotonic()
    job = server.submit(lambda: time.sleep(10), timeout=0.5, wait=5)
    if job["status"] not in ("failed", "succeeded", "cancelled"):
        job = server.wait_done(job["id"], timeout=5)
    elapsed = time.monotonic() - t0
    err = failed_with(job, "timeout")
    assert "0.5" in err["message"], f"timeout message should name the limit: {err['message']!r}"
    assert job["timeout"] == 0.5, job
    assert elapsed < 1.5, f"submit to terminal state took {elapsed:.2f}s for timeout=0.5"
    assert_pid_gone(job["worker_pid"])
    assert_next_job_ok(server)


def test_timeout_kills_job_stuck_in_c_code(server):
    # A busy loop inside C (no bytecode boundary): must still be stopped from outside.
    def spin():
        import re

        re.match(r"(a+)+$", "a" * 40 + "b")  # catastrophic backtracking, minutes

    t0 = time.monotonic()
    job = server.submit(spin, timeout=0.5, wait=5)
    if job["status"] not in ("failed", "succeeded", "cancelled"):
        job = server.wait_done(job["id"], timeout=5)
    elapsed = time.monotonic() - t0
    failed_with(job, "timeout")
    assert elapsed < 3.0, f"a job stuck in C code was stopped only after {elapsed:.2f}s (timeout 0.5)"
    assert_pid_gone(job["worker_pid"])
    assert_next_job_ok(server)


def test_timeout_kills_job_ignoring_sigterm(server):
    def stubborn():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        time.sleep(30)

    t0 = time.monotonic()
    job = server.submit(stubborn, timeout=0.5, wait=5)
    if job["status"] not in ("failed", "succeeded", "cancelled"):
        job = server.wait_done(job["id"], timeout=5)
    elapsed = time.monotonic() - t0
    failed_with(job, "timeout")
    assert elapsed < 3.0, f"a job ignoring SIGTERM was stopped only after {elapsed:.2f}s (timeout 0.5)"
    assert_pid_gone(job["worker_pid"])
    assert_next_job_ok(server)


def test_job_within_timeout_succeeds(server):
    job = server.run(lambda: time.sleep(0.1) or "in time", timeout=5)
    assert decode_result(job) == "in time"


def test_default_timeout_applies(make_server):
    s = make_server("--workers", "1", "--default-timeout", "0.5", name="default-timeout")
    t0 = time.monotonic()
    job = s.submit(lambda: time.sleep(10), wait=5)
    if job["status"] not in ("failed", "succeeded", "cancelled"):
        job = s.wait_done(job["id"], timeout=5)
    elapsed = time.monotonic() - t0
    err = failed_with(job, "timeout")
    assert "0.5" in err["message"], err
    assert job["timeout"] == 0.5, f"effective timeout should be reported: {job}"
    assert elapsed < 1.5, elapsed
    # An explicit timeout overrides the default.
    job = s.run(lambda: time.sleep(0.8) or "longer", timeout=5)
    assert decode_result(job) == "longer"
    assert job["timeout"] == 5


# ------------------------------------------------------------------ crashes


def test_worker_exit_code(server):
    err = failed_with(server.run(lambda: os._exit(3)), "worker_crashed")
    assert err["exit_code"] == 3, err
    assert err["signal"] is None, err
    assert_next_job_ok(server)


def test_worker_segfault(server):
    err = failed_with(server.run(lambda: os.kill(os.getpid(), signal.SIGSEGV)), "worker_crashed")
    assert err["signal"] == "SIGSEGV", err
    assert err["exit_code"] is None, err
    assert isinstance(err["max_rss_bytes"], int) and err["max_rss_bytes"] > 0, err
    assert_next_job_ok(server)


def test_worker_killed_by_sigkill(server):
    err = failed_with(server.run(lambda: os.kill(os.getpid(), signal.SIGKILL)), "worker_crashed")
    assert err["signal"] == "SIGKILL", err
    assert_next_job_ok(server)


def test_crashed_worker_is_replaced(make_server):
    s = make_server("--workers", "1", name="one-worker-crash")
    first = s.run(os.getpid)
    pid1 = decode_result(first)
    assert first["worker_pid"] == pid1, "worker_pid should be the worker process id"
    failed_with(s.run(lambda: os._exit(1)), "worker_crashed")
    after = s.run(os.getpid)
    pid2 = decode_result(after)
    assert pid2 != pid1, "a crashed worker must be replaced by a new process"
    # Several crashes in a row do not exhaust the pool.
    for _ in range(3):
        failed_with(s.run(lambda: os._exit(9)), "worker_crashed")
    assert decode_result(s.run(lambda: "alive")) == "alive"


def test_crash_isolation(server):
    slow = server.submit(lambda: time.sleep(1) or 42)
    crash = server.submit(lambda: os._exit(3))
    crash_done = server.wait_done(crash["id"])
    slow_done = server.wait_done(slow["id"])
    failed_with(crash_done, "worker_crashed")
    assert slow_done["status"] == "succeeded", f"slow job was hurt by the crash: {slow_done}"
    assert decode_result(slow_done) == 42
    assert slow_done["worker_pid"] != crash_done["worker_pid"]
    assert_next_job_ok(server)


# ------------------------------------------------------------------ bad payloads


@pytest.fixture
def client_only_module(tmp_path):
    """A module importable here but not in the worker."""
    name = "pyjobd_client_only_" + uuid.uuid4().hex[:8]
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            def triple(x):
                return 3 * x
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module(name)
        yield mod
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_unimportable_module_is_invalid_payload(server, client_only_module):
    fn = client_only_module.triple
    data = cloudpickle.dumps(fn)
    assert client_only_module.__name__.encode() in data, "fixture should pickle by reference"
    assert fn(2) == 6
    err = failed_with(server.run(fn, 2), "invalid_payload")
    text = " ".join(str(err.get(k) or "") for k in ("message", "exc_type", "traceback"))
    assert "ModuleNotFoundError" in text, err
    assert client_only_module.__name__ in text, err
    assert_next_job_ok(server)


def test_invalid_payload_keeps_worker(make_server, client_only_module):
    s = make_server("--workers", "1", name="one-worker-invalid")
    pid = decode_result(s.run(os.getpid))
    failed_with(s.run(client_only_module.triple, 1), "invalid_payload")
    r = s.post_job({"callable": b64(b"definitely not a pickle")}, wait=10)
    failed_with(check_created(r), "invalid_payload")
    failed_with(s.run(lambda: (x for x in range(3))), "unpicklable_result")
    failed_with(s.run(lambda: 1 / 0), "exception")
    assert decode_result(s.run(os.getpid)) == pid, "Python-level failures must not replace the worker"


def test_garbage_callable_is_invalid_payload(server):
    r = server.post_job({"callable": b64(b"\x00\x01garbage, not a pickle\xff")}, wait=10)
    job = check_created(r)
    if job["status"] not in ("failed", "succeeded"):
        job = server.wait_done(job["id"])
    failed_with(job, "invalid_payload")
    assert_next_job_ok(server)


def test_garbage_args_is_invalid_payload(server):
    payload = make_payload(lambda *a: a)
    payload["args"] = b64(b"not a pickle either")
    job = check_created(server.post_job(payload, wait=10))
    if job["status"] not in ("failed", "succeeded"):
        job = server.wait_done(job["id"])
    failed_with(job, "invalid_payload")


def test_truncated_pickle_is_invalid_payload(server):
    data = cloudpickle.dumps(lambda: 1)
    job = check_created(server.post_job({"callable": b64(data[: len(data) // 2])}, wait=10))
    if job["status"] not in ("failed", "succeeded"):
        job = server.wait_done(job["id"])
    failed_with(job, "invalid_payload")


def test_unpickling_raises_is_invalid_payload(server):
    class Explodes:
        def __reduce__(self):
            return (int, ("not a number",))  # ValueError when the worker loads it

    data = cloudpickle.dumps(Explodes())
    job = check_created(server.post_job({"callable": b64(data)}, wait=10))
    if job["status"] not in ("failed", "succeeded"):
        job = server.wait_done(job["id"])
    failed_with(job, "invalid_payload")
    assert_next_job_ok(server)


def test_args_not_a_tuple_is_rejected(server):
    payload = make_payload(lambda *a: a)
    payload["args"] = b64(pickle.dumps(12345))
    r = server.post_job(payload, wait=10)
    # Either refused at the door or failed as an invalid payload — never run, never a crash.
    if r.status == 201:
        job = check_created(r)
        if job["status"] not in ("failed", "succeeded"):
            job = server.wait_done(job["id"])
        assert job["status"] == "failed", job
        assert job["error"]["type"] in ("invalid_payload", "exception"), job
        assert job["error"]["type"] != "worker_crashed"
    else:
        assert r.status == 400, r
    assert_next_job_ok(server)


# ------------------------------------------------------------------ unpicklable results


def test_unpicklable_result_generator(server):
    err = failed_with(server.run(lambda: (i for i in range(3))), "unpicklable_result")
    assert err["message"], err
    assert_next_job_ok(server)


def test_unpicklable_result_lock(server):
    err = failed_with(server.run(lambda: threading.Lock()), "unpicklable_result")
    assert "lock" in (err["message"] + str(err.get("traceback") or "")).lower(), err
    assert_next_job_ok(server)
