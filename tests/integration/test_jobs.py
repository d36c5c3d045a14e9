"""Jobs that succeed: callables of every kind, arguments, the job resource, long-poll,
/healthz and /v1/info."""

import functools
import platform
import time

import cloudpickle

from conftest import TERMINAL, check_created, decode_result, make_payload


def test_healthz(server):
    r = server.request("GET", "/healthz")
    assert r.status == 200, r


def test_info(server):
    info = server.wait_ready()
    for key in ("version", "python_version", "cloudpickle_version", "workers"):
        assert key in info, f"/v1/info lacks {key!r}: {info}"
    assert isinstance(info["version"], str) and info["version"], info
    # The worker embeds Debian's libpython: same interpreter as /usr/bin/python3.
    assert info["python_version"] == platform.python_version(), info
    assert info["cloudpickle_version"] == cloudpickle.__version__, info
    assert info["workers"] == 2, info


def test_lambda(server):
    job = server.run(lambda: 6 * 7)
    assert decode_result(job) == 42
    assert job["error"] is None
    assert isinstance(job["worker_pid"], int)


def test_lambda_with_args(server):
    job = server.run(lambda a, b: a - b, 10, 3)
    assert decode_result(job) == 7


def test_closure_captures_local(server):
    secret = {"word": "swordfish", "n": [1, 2, 3]}

    def reveal(suffix):
        return secret["word"] + suffix, sum(secret["n"])

    job = server.run(reveal, "!")
    assert decode_result(job) == ("swordfish!", 6)


def test_functools_partial(server):
    def power(base, exp):
        return base**exp

    square = functools.partial(power, exp=2)
    job = server.run(square, 9)
    assert decode_result(job) == 81

    # partial of a builtin, with positional arguments bound
    job = server.run(functools.partial(max, 3, 17), 5)
    assert decode_result(job) == 17


def test_kwargs(server):
    def describe(a, b=0, *, scale=1, label="x"):
        return f"{label}={(a + b) * scale}"

    job = server.run(describe, 1, b=2, scale=10, label="total")
    assert decode_result(job) == "total=30"

    # kwargs only, no positional args
    job = server.run(lambda **kw: sorted(kw.items()), z=1, a=2)
    assert decode_result(job) == [("a", 2), ("z", 1)]


def test_rich_result_roundtrip(server):
    import collections
    import datetime
    import decimal

    Point = collections.namedtuple("Point", "x y")  # defined here: pickled by value

    def build():
        return {
            "bytes": bytes(range(256)),
            "set": {1, 2, 3},
            "dec": decimal.Decimal("1.10"),
            "when": datetime.date(2024, 2, 29),
            "pt": Point(1, 2),
            "unicode": "héllo ☃",
            "none": None,
        }

    res = decode_result(server.run(build))
    assert res["bytes"] == bytes(range(256))
    assert res["set"] == {1, 2, 3}
    assert res["dec"] == decimal.Decimal("1.10")
    assert res["pt"] == (1, 2) and res["pt"].x == 1
    assert res["unicode"] == "héllo ☃"
    assert res["none"] is None
    assert res["when"].isoformat() == "2024-02-29"


def test_atomic_results_are_the_bytes_cloudpickle_writes(server):
    """The worker pickles None, bools, ints, floats, str and bytes with the C pickler
    (no CloudPickler per result): the bytes must be exactly cloudpickle.dumps's, and a
    subclass (whose reduction cloudpickle may change) still goes through cloudpickle."""
    import base64

    class Int(int):  # defined here: by value, so only cloudpickle can write it
        pass
    for value in (None, True, False, 0, -7, 10**40, 2.5, float("inf"), "", "héllo ☃",
                  "x" * 100_000, b"", bytes(range(256)), Int(3)):
        job = server.run(lambda v=value: v)
        assert base64.b64decode(job["result"]) == cloudpickle.dumps(value), repr(value)[:60]
        back = decode_result(job)
        assert back == value and type(back).__name__ == type(value).__name__, repr(value)[:60]


def test_returns_none(server):
    job = server.run(lambda: None)
    assert decode_result(job) is None


def test_large_args_and_result(server):
    blob = bytes(range(256)) * 4096  # 1 MiB argument
    job = server.run(lambda b: b[::-1] + b"!", blob)
    assert decode_result(job) == blob[::-1] + b"!"


def test_worker_state_does_not_leak_into_results(server):
    # Each job computes from its own inputs even when the same worker is reused.
    results = [decode_result(server.run(lambda x: x + 1, i)) for i in range(5)]
    assert results == [1, 2, 3, 4, 5]


def test_job_resource_fields(server):
    job = server.run(lambda: "done", timeout=7.5)
    assert job["status"] == "succeeded"
    assert job["timeout"] == 7.5, job
    assert job["attempts"] == 1, job
    assert isinstance(job["worker_pid"], int) and job["worker_pid"] > 0
    assert job["started_at"] is not None and job["finished_at"] is not None
    # GET returns the same finished job, repeatedly.
    again = server.get(job["id"])
    assert again["status"] == "succeeded"
    assert again["result"] == job["result"]
    assert again["created_at"] == job["created_at"]
    assert again["finished_at"] == job["finished_at"]
    assert server.get(job["id"])["result"] == job["result"]
    assert decode_result(again) == "done"


def test_no_timeout_is_null_on_server_without_default(server):
    job = server.run(lambda: 1)
    assert job["timeout"] is None, job


def test_post_without_wait_returns_immediately(server):
    t0 = time.monotonic()
    job = server.submit(lambda: __import__("time").sleep(0.5) or "slept")
    elapsed = time.monotonic() - t0
    assert job["status"] in ("queued", "running"), job
    assert elapsed < 0.4, f"POST without ?wait took {elapsed:.2f}s"
    done = server.wait_done(job["id"])
    assert decode_result(done) == "slept"


def test_ids_are_unique(server):
    ids = {server.submit(lambda: 0)["id"] for _ in range(20)}
    assert len(ids) == 20
    for i in ids:
        server.wait_done(i)


def test_long_poll_get_returns_when_job_ends(server):
    job = server.submit(lambda: __import__("time").sleep(0.3) or "late")
    assert job["status"] in ("queued", "running"), job
    t0 = time.monotonic()
    done = server.get(job["id"], wait=5)
    elapsed = time.monotonic() - t0
    assert done["status"] == "succeeded", done
    assert elapsed < 2.0, f"GET ?wait=5 took {elapsed:.2f}s for a 0.3 s job"
    assert decode_result(done) == "late"


def test_long_poll_get_times_out_while_running(server):
    job = server.submit(lambda: __import__("time").sleep(3) or "slow")
    try:
        t0 = time.monotonic()
        mid = server.get(job["id"], wait=1)
        elapsed = time.monotonic() - t0
        assert mid["status"] in ("queued", "running"), mid
        assert 0.9 <= elapsed <= 2.0, f"GET ?wait=1 returned after {elapsed:.2f}s"
    finally:
        done = server.wait_done(job["id"])  # leave both workers idle for the next tests
    assert decode_result(done) == "slow"


def test_long_poll_on_finished_job_is_immediate(server):
    job = server.run(lambda: 5)
    t0 = time.monotonic()
    again = server.get(job["id"], wait=10)
    assert time.monotonic() - t0 < 0.5
    assert decode_result(again) == 5


def test_post_wait_returns_terminal_job(server):
    t0 = time.monotonic()
    job = server.submit(lambda: __import__("time").sleep(0.2) or 1, wait=10)
    elapsed = time.monotonic() - t0
    assert job["status"] == "succeeded", job
    assert elapsed < 3.0, elapsed
    assert decode_result(job) == 1


def test_post_wait_expires_with_running_job(server):
    t0 = time.monotonic()
    job = server.submit(lambda: __import__("time").sleep(2) or 2, wait=1)
    elapsed = time.monotonic() - t0
    try:
        assert job["status"] in ("queued", "running"), job
        assert 0.9 <= elapsed <= 2.0, f"POST ?wait=1 returned after {elapsed:.2f}s"
    finally:
        done = server.wait_done(job["id"])
    assert decode_result(done) == 2


def test_content_type_with_charset_is_accepted(server):
    r = server.post_job(make_payload(lambda: "cs"), wait=10,
                        headers={"Content-Type": "application/json; charset=utf-8"})
    job = check_created(r)
    assert job["status"] in TERMINAL
    assert decode_result(job) == "cs"


def test_job_output_does_not_break_worker(make_server):
    # print() in a job must neither block the worker (pipes full) nor leak onto the
    # server's stdout, which carries only the "listening on" line (checked at stop).
    s = make_server("--workers", "1", name="noisy")

    def noisy():
        import sys

        for _ in range(2000):
            print("o" * 1000)
            sys.stderr.write("e" * 1000 + "\n")
        sys.stdout.flush()
        return "quiet"

    t0 = time.monotonic()
    job = s.run(noisy, timeout=20)
    assert decode_result(job) == "quiet"
    assert time.monotonic() - t0 < 10
    assert decode_result(s.run(lambda: "next")) == "next"


def test_large_result(server):
    job = server.run(lambda n: b"r" * n, 20 << 20)  # 20 MiB result
    assert decode_result(job) == b"r" * (20 << 20)
