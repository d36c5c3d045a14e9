"""Reruns (issue 17 item 7): POST /v1/jobs/{id}/rerun runs a finished job's request
again as a new job ("rerun_of" names the original); POST /v1/jobs/rerun does it for
the finished jobs a filter takes (status, error_type, since, limit).

Jobs count their runs in a side-effect file. Another tenant's job is unknown (404), an
unfinished one is 409, one whose request was dropped with its results
(--max-results-memory) is 410, and with SQLite a rerun works after a restart.
"""

import json
import os
import sys
import time

import cloudpickle
import pytest

from conftest import check_problem, make_payload, start_server, stop_server
from conftest_pg import pg_db, pg_server  # noqa: F401  (fixtures)

cloudpickle.register_pickle_by_value(sys.modules[__name__])
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))

IS_ROOT = os.geteuid() == 0
ROOT_OK = (["--allow-root-workers"] if IS_ROOT else []) + ["--allow-shared-worker-uid"]
ALICE = "alice-token-aaaaaaaaaaaaaaaaaaaa"
BOB = "bob-token-bbbbbbbbbbbbbbbbbbbbbbbb"


def tally(path, fail_first):
    """Appends a mark; fails while there are at most fail_first marks."""
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        n = len(f.read())
    if n <= fail_first:
        raise RuntimeError(f"run {n} fails")
    return n


def count(path):
    try:
        with open(path) as f:
            return len(f.read())
    except FileNotFoundError:
        return 0


def post(s, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return s.request("POST", path, body=json.dumps(body) if body is not None else None,
                     headers=headers)


def test_rerun_a_failed_job_same_request_new_id(server, runs_dir):
    log = os.path.join(runs_dir, "n")
    body = make_payload(tally, log, 1)
    body.update(priority=7, metadata={"team": "data"}, timeout=30)
    first = server.wait_done(post(server, "/v1/jobs", body).json()["id"])
    assert first["status"] == "failed" and count(log) == 1, first
    r = post(server, f"/v1/jobs/{first['id']}/rerun")
    assert r.status == 201, r
    again = r.json()
    assert again["id"] != first["id"] and again["rerun_of"] == first["id"], again
    assert r.headers.get("Location") == f"/v1/jobs/{again['id']}"
    assert again["priority"] == 7 and again["metadata"] == {"team": "data"}
    assert again["timeout"] == 30
    done = server.wait_done(again["id"])
    assert done["status"] == "succeeded" and count(log) == 2, done
    # The original is untouched, and can be rerun again (each rerun is a new job).
    assert server.request("GET", f"/v1/jobs/{first['id']}").json()["status"] == "failed"
    third = post(server, f"/v1/jobs/{first['id']}/rerun").json()
    assert server.wait_done(third["id"])["status"] == "succeeded" and count(log) == 3


def slow():
    import time
    time.sleep(2)


def test_rerun_refusals(server):
    running = post(server, "/v1/jobs", make_payload(slow)).json()
    p = check_problem(post(server, f"/v1/jobs/{running['id']}/rerun"), 409)
    assert "has not finished" in p["detail"]
    check_problem(post(server, "/v1/jobs/" + "0" * 32 + "/rerun"), 404)
    check_problem(post(server, "/v1/jobs/nonsense/rerun"), 404)
    r = server.request("GET", f"/v1/jobs/{running['id']}/rerun")
    check_problem(r, 405)
    assert r.headers.get("Allow") == "POST"
    for body, needle in (({}, "field 'status' is required"),
                         ({"status": "queued"}, "field 'status' is required"),
                         ({"status": "failed", "limit": 0}, "'limit' must be an integer from 1"),
                         ({"status": "failed", "since": "yesterday"}, "'since' must be an RFC 3339"),
                         ({"status": "succeeded", "error_type": "timeout"}, "with status \"failed\""),
                         ({"status": "failed", "error_type": "bogus"}, "error type"),
                         ({"status": "failed", "stats": 1}, "unknown field 'stats'")):
        p = check_problem(post(server, "/v1/jobs/rerun", body), 400)
        assert needle in p["detail"], (body, p["detail"])
    server.request("POST", f"/v1/jobs/{running['id']}/cancel?force=true")


def test_bulk_rerun_of_failed_jobs_by_filter(make_server, runs_dir):
    s = make_server("--workers", "2")
    logs = [os.path.join(runs_dir, f"j{i}") for i in range(5)]
    ids = [post(s, "/v1/jobs", make_payload(tally, lg, 1)).json()["id"] for lg in logs]
    ok = post(s, "/v1/jobs", make_payload(abs, -1)).json()["id"]
    for jid in ids + [ok]:
        s.wait_done(jid)
    r = post(s, "/v1/jobs/rerun", {"status": "failed", "error_type": "exception", "limit": 3})
    assert r.status == 201, r
    first = r.json()["jobs"]
    # Oldest finished first: three distinct originals (two workers finish them in any order).
    assert len({j["rerun_of"] for j in first}) == 3 and {j["rerun_of"] for j in first} <= set(ids)
    rest = post(s, "/v1/jobs/rerun", {"status": "failed", "since": "2020-01-01T00:00:00Z"}).json()["jobs"]
    # The five originals are still failed; the three reruns are not finished or succeed.
    assert {j["rerun_of"] for j in rest} >= set(ids[3:]), rest
    for j in first + rest:
        s.wait_done(j["id"])
    assert all(count(lg) >= 2 for lg in logs)
    none = post(s, "/v1/jobs/rerun", {"status": "failed", "since": "2099-01-01T00:00:00Z"})
    assert none.status == 201 and none.json()["jobs"] == []


def test_another_tenants_job_is_unknown(make_server, tmp_path, runs_dir):
    tf = tmp_path / "tokens"
    tf.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
    tf.chmod(0o600)
    s = make_server("--workers", "1", "--token-file", str(tf), *ROOT_OK, ready=False)
    log = os.path.join(runs_dir, "n")
    jid = post(s, "/v1/jobs?wait=10", make_payload(tally, log, 5), token=ALICE).json()["id"]
    check_problem(post(s, f"/v1/jobs/{jid}/rerun", token=BOB), 404)
    r = post(s, "/v1/jobs/rerun", {"status": "failed"}, token=BOB)
    assert r.status == 201 and r.json()["jobs"] == [], r
    time.sleep(0.2)
    assert count(log) == 1, "bob reran alice's job"
    assert post(s, f"/v1/jobs/{jid}/rerun", token=ALICE).status == 201


def test_request_out_of_memory_is_read_back_from_the_store(make_server, tmp_path, runs_dir):
    """--max-results-memory drops a finished job's request from memory with its
    results; with SQLite the rerun reads it back from the store."""
    s = make_server("--workers", "1", "--max-results-memory", "1", "--store",
                    f"sqlite:{tmp_path / 'jobs.db'}")
    log = os.path.join(runs_dir, "n")
    first = s.wait_done(post(s, "/v1/jobs", make_payload(tally, log, 0)).json()["id"])
    s.wait_done(post(s, "/v1/jobs", make_payload(bytes, 4096)).json()["id"])  # pushes it out
    r = post(s, f"/v1/jobs/{first['id']}/rerun")
    assert r.status == 201, r
    assert s.wait_done(r.json()["id"])["status"] == "succeeded" and count(log) == 2


def test_rerun_after_a_sqlite_restart(make_server, tmp_path, runs_dir):
    db = str(tmp_path / "jobs.db")
    log = os.path.join(runs_dir, "n")
    s = start_server("rerun-before", "--workers", "1", "--store", f"sqlite:{db}")
    try:
        s.wait_ready()
        jid = s.wait_done(post(s, "/v1/jobs", make_payload(tally, log, 1)).json()["id"])["id"]
    finally:
        stop_server(s)
    s2 = make_server("--workers", "1", "--store", f"sqlite:{db}", name="rerun-after")
    r = post(s2, f"/v1/jobs/{jid}/rerun")
    assert r.status == 201, r
    again = r.json()
    assert again["rerun_of"] == jid
    assert s2.wait_done(again["id"])["status"] == "succeeded" and count(log) == 2


def test_client_future_rerun(server, runs_dir):
    import pyjobd
    log = os.path.join(runs_dir, "n")
    with pyjobd.Executor(server.base_url) as ex:
        f = ex.submit(tally, log, 1)
        with pytest.raises(RuntimeError):
            f.result(30)
        g = f.rerun()
        assert g.result(30) == 2
        assert g.job.get("rerun_of") == f.job["id"], g.job
