"""Results are bounded (issue 16, item 4, the pool's side): --max-result-bytes fails a
larger result as `result_too_large` naming both sizes, a worker's reply declared larger
than the server reads is refused from its header (nothing buffered), and
--max-results-memory bounds what finished jobs' results hold in memory: without a store
the oldest expire with a 404 that names the flag, with SQLite they leave memory and are
read back from the store byte for byte.

Run from the repository root:

    PYJOBD_BIN=build/pyjobd PYJOBD_ALLOW_ROOT_WORKERS=1 /usr/bin/python3 -m pytest -q \\
        tests/integration/test_edge_results.py
"""

import base64
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import cloudpickle
import pytest

from conftest import check_problem, make_payload, start_server, stop_server

# The jobs below are this module's functions: by value (workers cannot import tests).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROOT = ["--allow-root-workers"] if os.geteuid() == 0 else []
MiB = 1 << 20
# Under AddressSanitizer (make asan) freed memory stays in its quarantine (256 MB): the
# server's RSS then says nothing about what it holds, so the bounds on it are not checked.
SANITIZED = os.environ.get("PYJOBD_TEST_SANITIZERS") == "1"


def assert_rss_grew_less(grown_kb, limit_kb, what):
    if not SANITIZED:
        assert grown_kb < limit_kb, f"{what} grew the server by {grown_kb} kB"


# --------------------------------------------------------------------------- helpers


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class PeakRss:
    """The largest VmRSS of pid seen while the with-block runs (sampled every 10 ms)."""

    def __init__(self, pid):
        self.pid, self.peak, self.done = pid, rss_kb(pid), threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self.done.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def settle_rss(s, secs=0.5):
    """The server's RSS once it is idle (a moment for frees to land)."""
    time.sleep(secs)
    return rss_kb(s.proc.pid)


def run(s, fn, *args, wait=60, **fields):
    """POST ?wait= and return the finished job as JSON (checked by hand: the shared
    check_job does not know every error type)."""
    payload = make_payload(fn, *args)
    payload.update(fields)
    r = s.request("POST", f"/v1/jobs?wait={wait}", body=payload,
                  headers={"Content-Type": "application/json"}, timeout=wait + 30)
    assert r.status in (200, 201), r
    job = r.json()
    deadline = time.monotonic() + wait
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        g = s.request("GET", f"/v1/jobs/{job['id']}?wait=10", timeout=40)
        assert g.status == 200, g
        job = g.json()
    return job


def assert_too_large(job, *sizes):
    assert job["status"] == "failed", job.get("error") or job["status"]
    err = job["error"]
    assert err["type"] == "result_too_large", err
    assert "result" not in job or job["result"] is None
    for size in sizes + ("--max-result-bytes",):
        assert size in err["message"], (size, err["message"])
    return err


def get_job(s, job_id):
    r = s.request("GET", f"/v1/jobs/{job_id}")
    return r, (r.json() if r.status == 200 else None)


def returns(n, seed):
    return bytes([seed % 256]) * n


def digest(job):
    return hashlib.sha256(base64.b64decode(job["result"])).hexdigest()


def forge_header_and_stream(mib):
    """Writes a RESULT header declaring ~4 GiB on the worker's channel, then streams
    mib MiB behind it as fast as the channel takes them."""
    import os
    import struct

    os.write(3, struct.pack("<II", 0xFFFFFFF0, 3))
    chunk = b"\0" * (1 << 20)
    for _ in range(mib):
        os.write(3, chunk)
    time.sleep(30)
    return "never"


@pytest.fixture
def store_dir():
    d = tempfile.mkdtemp(prefix="pyjobd-results-")
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- --max-result-bytes


def test_a_65_mib_result_fails_under_the_default_limit_and_the_server_keeps_serving(make_server):
    s = make_server("--workers", "1", *ROOT)
    err = assert_too_large(run(s, returns, 65 * MiB, 1), "65.0 MiB", "64.0 MiB")
    assert "Return less" in err["message"], err
    # The raw result's 409 says why, and other jobs run as before.
    r = s.request("GET", f"/v1/jobs/{run(s, returns, 65 * MiB, 2)['id']}/result")
    body = check_problem(r, 409)
    assert body["error_type"] == "result_too_large", body
    job = run(s, returns, 1000, 3)
    assert job["status"] == "succeeded"
    assert cloudpickle.loads(base64.b64decode(job["result"])) == b"\3" * 1000
    assert s.request("GET", "/healthz").status == 200


@pytest.mark.parametrize("isolation", ["tenant", "job"])
def test_max_result_bytes_1m_fails_2_mb_and_keeps_900_kb(make_server, isolation):
    s = make_server("--workers", "1", "--max-result-bytes", "1M", "--isolation", isolation, *ROOT)
    assert_too_large(run(s, returns, 2_000_000, 1), "1.9 MiB", "1.0 MiB")
    # JSON results are held to the same limit (their text's size).
    assert_too_large(run(s, lambda n: "x" * n, 2_000_000, result_format="json"),
                     "1.9 MiB", "1.0 MiB", "of JSON")
    job = run(s, returns, 900_000, 2)
    assert job["status"] == "succeeded", job["error"]
    assert cloudpickle.loads(base64.b64decode(job["result"])) == b"\2" * 900_000
    # An exception carrying more than the limit still fails as itself, without its pickle.
    job = run(s, lambda: (_ for _ in ()).throw(ValueError(b"y" * 2_000_000)))
    assert job["error"]["type"] == "exception" and job["error"]["exc_type"] == "ValueError"
    assert job["error"]["exception"] is None
    assert "--max-result-bytes" in job["error"]["message"]


def test_a_forged_4_gib_header_fails_result_too_large_and_nothing_is_buffered(make_server):
    """The job writes a RESULT header declaring ~4 GiB on fd 3 and streams 200 MiB after
    it. A RESULT header is what a worker that did not check the limit would send, so the
    job fails result_too_large (not protocol_violation): the message says the worker sent
    more than the server accepts. The worker is killed at the header: none of the
    stream is buffered."""
    s = make_server("--workers", "1", *ROOT)
    assert run(s, returns, 10, 0)["status"] == "succeeded"
    before = settle_rss(s)
    with PeakRss(s.proc.pid) as rss:
        job = run(s, forge_header_and_stream, 200, timeout=10)
    grown = rss.peak - before
    print(f"server VmRSS before {before} kB, at most {rss.peak} kB during the forged header "
          "and its 200 MiB stream")
    assert grown < 8 * 1024, f"the server's RSS grew by {grown} kB"
    err = assert_too_large(job, "4.0 GiB", "65.0 MiB")
    assert "declared" in err["message"] and "worker" in err["message"], err
    # Its worker was replaced; the next job runs.
    nxt = run(s, returns, 10, 4)
    assert nxt["status"] == "succeeded" and nxt["worker_pid"] != job["worker_pid"]


# --------------------------------------------------------------------------- --max-results-memory


def test_memory_store_expires_the_oldest_results_with_a_404_naming_the_flag(make_server):
    s = make_server("--workers", "1", "--max-results-memory", "10M", *ROOT)
    jobs = [run(s, returns, 4_000_000, i) for i in range(5)]
    assert all(j["status"] == "succeeded" for j in jobs)
    time.sleep(0.3)
    # 10 MiB holds two of the five 4 MB results: the newest two.
    for i, job in enumerate(jobs[:3]):
        r, _ = get_job(s, job["id"])
        body = check_problem(r, 404)
        assert "--max-results-memory" in body["detail"] and "10485760" in body["detail"], body
        check_problem(s.request("GET", f"/v1/jobs/{job['id']}/result"), 404)
    for i, job in enumerate(jobs[3:], 3):
        r, got = get_job(s, job["id"])
        assert r.status == 200 and digest(got) == digest(job)
        raw = s.request("GET", f"/v1/jobs/{job['id']}/result")
        assert raw.status == 200 and cloudpickle.loads(raw.body) == bytes([i]) * 4_000_000
    # Many more: the server's memory stays near the bound, not near their total.
    before = settle_rss(s)
    for i in range(25):
        assert run(s, returns, 4_000_000, i)["status"] == "succeeded"
    grown = settle_rss(s) - before
    print(f"memory store: VmRSS {before} kB before 25 x 4 MB results, {before + grown} kB after")
    assert_rss_grew_less(grown, 60 * 1024, "25 x 4 MB results")


def sqlite_server(name, *args):
    s = start_server(name, *args)
    s.wait_ready()
    return s


def test_sqlite_store_reads_results_back_byte_for_byte_with_memory_bounded(store_dir):
    db = os.path.join(store_dir, "jobs.db")
    args = ("--workers", "1", "--store", f"sqlite:{db}", "--max-results-memory", "10M", *ROOT)
    s = sqlite_server("results-sqlite", *args)
    try:
        check_sqlite_read_back(s, args)
    finally:
        if s.proc.poll() is None:
            stop_server(s)


def check_sqlite_read_back(s, args):
    before = settle_rss(s)
    jobs = [run(s, returns, 4_000_000, i) for i in range(25)]
    assert all(j["status"] == "succeeded" for j in jobs)
    grown = settle_rss(s) - before
    print(f"sqlite store: VmRSS {before} kB before 25 x 4 MB results, {before + grown} kB after")
    assert_rss_grew_less(grown, 60 * 1024, "25 x 4 MB results")
    # Every one is readable, identical to what the job returned, the oldest from disk.
    for i, job in enumerate(jobs):
        r, got = get_job(s, job["id"])
        assert r.status == 200 and got["status"] == "succeeded", r
        assert digest(got) == digest(job), f"job {i}: read back differs"
        raw = s.request("GET", f"/v1/jobs/{job['id']}/result")
        assert raw.status == 200 and base64.b64encode(raw.body).decode() == job["result"]
    grown = settle_rss(s) - before
    print(f"sqlite store: VmRSS {before + grown} kB after reading all 25 back")
    assert_rss_grew_less(grown, 60 * 1024, "reading 25 results back")
    # So does a listing that asks for results, page after page down to the oldest.
    by_id, seen, cursor = {j["id"]: j for j in jobs}, set(), None
    while True:
        r = s.request("GET", "/v1/jobs?include=result&limit=5"
                      + (f"&cursor={cursor}" if cursor else ""))
        assert r.status == 200, r
        body = r.json()
        for j in body["jobs"]:
            assert digest(j) == digest(by_id[j["id"]]), f"listed job {j['id']} differs"
            seen.add(j["id"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == set(by_id)
    # A restart reads them from the store too, without loading them at start.
    stop_server(s)
    s2 = sqlite_server("results-sqlite-restarted", *args)
    try:
        assert_rss_grew_less(rss_kb(s2.proc.pid) - before, 20 * 1024, "a restart")
        for job in jobs[:2] + jobs[-1:]:
            r, got = get_job(s2, job["id"])
            assert r.status == 200 and digest(got) == digest(job)
    finally:
        stop_server(s2)
