"""Many jobs and many clients at once."""

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from conftest import check_created, check_job, decode_result, make_payload


def post_urllib(base_url, payload, wait):
    """POST with urllib.request, as a plain client would."""
    req = urllib.request.Request(
        f"{base_url}/v1/jobs?wait={wait}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 201, resp.status
        job = json.loads(resp.read())
        assert resp.headers["Location"] == f"/v1/jobs/{job['id']}"
        return job


def test_200_concurrent_jobs(server):
    square = lambda x: x * x  # noqa: E731
    payloads = [make_payload(square, x) for x in range(200)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as ex:
        jobs = list(ex.map(lambda p: post_urllib(server.base_url, p, 30), payloads))
    elapsed = time.monotonic() - t0
    for x, job in enumerate(jobs):
        check_job(job)
        if job["status"] != "succeeded":  # ?wait=30 expired or failed: say which
            job = server.get(job["id"])
        assert job["status"] == "succeeded", f"job for x={x}: {job}"
        assert decode_result(job) == x * x, f"wrong result for x={x}"
    assert len({j["id"] for j in jobs}) == 200, "job ids must be unique"
    pids = {j["worker_pid"] for j in jobs}
    assert len(pids) == 2, f"expected both workers to be used, got worker_pids {pids}"
    assert elapsed < 30, f"200 trivial jobs took {elapsed:.1f}s"
    server.healthy()


def test_jobs_queue_beyond_workers(server):
    # 6 jobs of 0.4 s on 2 workers: run two at a time, all succeed, in about 1.2 s.
    t0 = time.monotonic()
    ids = [server.submit(lambda i: __import__("time").sleep(0.4) or i, i)["id"] for i in range(6)]
    queued_seen = server.get(ids[-1])["status"]
    done = [server.wait_done(i) for i in ids]
    elapsed = time.monotonic() - t0
    assert [decode_result(j) for j in done] == list(range(6))
    assert queued_seen == "queued", "the 6th job cannot be running with 2 busy workers"
    assert 1.1 <= elapsed < 3.5, f"6 x 0.4 s jobs on 2 workers took {elapsed:.2f}s"


def test_many_long_polls_on_one_job(server):
    job = server.submit(lambda: __import__("time").sleep(0.5) or "shared")
    with ThreadPoolExecutor(max_workers=30) as ex:
        views = list(ex.map(lambda _: server.get(job["id"], wait=10), range(30)))
    for v in views:
        assert v["status"] == "succeeded", v
        assert decode_result(v) == "shared"


def test_concurrent_mixed_outcomes(server):
    def kind(i):
        if i % 4 == 0:
            raise KeyError(i)
        if i % 4 == 1:
            return i
        if i % 4 == 2:
            return (x for x in ())  # unpicklable
        return -i

    payloads = [make_payload(kind, i) for i in range(40)]
    with ThreadPoolExecutor(max_workers=20) as ex:
        jobs = list(ex.map(lambda p: check_created(server.post_job(p, wait=30)), payloads))
    for i, job in enumerate(jobs):
        if job["status"] not in ("succeeded", "failed"):
            job = server.wait_done(job["id"])
        if i % 4 == 0:
            assert job["status"] == "failed" and job["error"]["type"] == "exception", job
            assert job["error"]["exc_type"] == "KeyError"
        elif i % 4 == 2:
            assert job["status"] == "failed" and job["error"]["type"] == "unpicklable_result", job
        else:
            assert decode_result(job) == (i if i % 4 == 1 else -i)
