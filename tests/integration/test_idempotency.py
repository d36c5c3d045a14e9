"""Idempotent submission (issue 17 item 1): POST /v1/jobs with an Idempotency-Key, and
batch items with "idempotency_key".

The same tenant, key and request again within --idempotency-ttl answer 200 with the
job the first one made (Idempotent-Replayed: true), never a second job: from two
threads at once, and after a restart with SQLite. The same key with another request is
422 naming the key; another tenant's same key is its own job; a bad key is 400 naming
the header (or the field). The Python client sends a key with every submission, so its
resend after a lost answer runs the job once (counted in a side-effect file).
PostgreSQL (a shared store, several nodes): test_pg_idempotency.py.
"""

import json
import os
import sys
import threading

import cloudpickle
import pytest

from conftest import check_job, check_problem, make_payload, start_server, stop_server

cloudpickle.register_pickle_by_value(sys.modules[__name__])

IS_ROOT = os.geteuid() == 0
ROOT_OK = (["--allow-root-workers"] if IS_ROOT else []) + ["--allow-shared-worker-uid"]
ALICE = "alice-token-aaaaaaaaaaaaaaaaaaaa"
BOB = "bob-token-bbbbbbbbbbbbbbbbbbbbbbbb"
KEY_HEADER = "Idempotency-Key"


def payload(n=1):
    return make_payload(lambda x: x + 1, n)


def post(s, body, key=None, token=None, path="/v1/jobs", raw=False):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers[KEY_HEADER] = key
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if raw else json.dumps(body)
    return s.request("POST", path, body=data, headers=headers)


def replayed(r):
    return r.headers.get("Idempotent-Replayed")


def test_same_key_twice_one_job_200_replayed(server):
    body = payload(41)
    first = post(server, body, key="key-same-1")
    assert first.status == 201, first
    assert replayed(first) is None
    job = first.json()
    # The same request, other whitespace and member order: the same job, as it is now.
    text = json.dumps(dict(reversed(list(body.items()))), indent=3)
    again = post(server, text, key="key-same-1", raw=True)
    assert again.status == 200, again
    assert replayed(again) == "true"
    assert again.headers.get("Location") is None
    assert again.json()["id"] == job["id"]
    check_job(again.json())
    done = server.wait_done(job["id"])
    assert done["status"] == "succeeded"
    late = post(server, body, key="key-same-1")
    assert late.status == 200 and late.json()["id"] == job["id"]
    assert late.json()["status"] == "succeeded"  # the job as it is now
    # Without a key nothing changes: a new job each time.
    assert post(server, body).json()["id"] != post(server, body).json()["id"]


def test_same_key_other_body_422_names_key(server):
    assert post(server, payload(1), key="key-conflict-1").status == 201
    r = post(server, payload(2), key="key-conflict-1")
    problem = check_problem(r, 422)
    assert "key-conflict-1" in problem["detail"], problem


def test_other_tenant_same_key_own_job(make_server, tmp_path):
    tf = tmp_path / "tokens"
    tf.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
    tf.chmod(0o600)
    s = make_server("--workers", "1", "--token-file", str(tf), *ROOT_OK, ready=False)
    a = post(s, payload(1), key="shared-key", token=ALICE)
    b = post(s, payload(1), key="shared-key", token=BOB)
    assert a.status == 201 and b.status == 201, (a, b)
    assert a.json()["id"] != b.json()["id"]
    # And a different body under bob's key is no conflict with alice's.
    c = post(s, payload(5), key="alice-only", token=ALICE)
    d = post(s, payload(6), key="alice-only", token=BOB)
    assert c.status == 201 and d.status == 201, (c, d)
    assert post(s, payload(1), key="shared-key", token=ALICE).json()["id"] == a.json()["id"]


def race(s, key, body, n=2):
    barrier = threading.Barrier(n)
    out = [None] * n

    def one(i):
        barrier.wait()
        out[i] = post(s, body, key=key)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_two_threads_same_key_one_job(server):
    for round_ in range(20):
        rs = race(server, f"race-{round_}", payload(round_))
        assert sorted(r.status for r in rs) == [200, 201], rs
        assert len({r.json()["id"] for r in rs}) == 1, rs


def test_restart_sqlite_same_job(make_server, tmp_path):
    db = str(tmp_path / "jobs.db")
    s = start_server("before-restart", "--workers", "1", "--store", f"sqlite:{db}")
    try:
        s.wait_ready()
        first = post(s, payload(7), key="survives-restart")
        assert first.status == 201, first
        s.wait_done(first.json()["id"])
    finally:
        stop_server(s)
    s2 = make_server("--workers", "1", "--store", f"sqlite:{db}", name="restarted")
    again = post(s2, payload(7), key="survives-restart")
    assert again.status == 200, again
    assert replayed(again) == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "succeeded"
    assert check_problem(post(s2, payload(8), key="survives-restart"), 422)
    assert s2.info()["limits"]["idempotency_ttl"] == 86400


def test_batch_items_new_and_replayed(server):
    a = dict(payload(1), idempotency_key="batch-a")
    b = dict(payload(2), idempotency_key="batch-b")
    single = post(server, payload(1), key="batch-a")  # the header and the field are one key
    assert single.status == 201
    r = post(server, {"jobs": [a, b]}, path="/v1/jobs/batch")
    assert r.status == 201, r
    out = r.json()
    assert out["jobs"][0]["id"] == single.json()["id"]
    assert out["replayed"] == [0]
    assert out["jobs"][1]["id"] != single.json()["id"]
    assert replayed(r) is None
    # Both again: nothing new, 200 and the header.
    r2 = post(server, {"jobs": [a, b]}, path="/v1/jobs/batch")
    assert r2.status == 200 and replayed(r2) == "true", r2
    assert [j["id"] for j in r2.json()["jobs"]] == [j["id"] for j in out["jobs"]]
    assert r2.json()["replayed"] == [0, 1]
    # A changed item is 422 naming its index and key, and nothing is queued.
    c = dict(payload(3), idempotency_key="batch-c")
    bad = post(server, {"jobs": [c, dict(payload(9), idempotency_key="batch-b")]},
               path="/v1/jobs/batch")
    problem = check_problem(bad, 422)
    assert "jobs[1]" in problem["detail"] and "batch-b" in problem["detail"], problem
    assert post(server, {"jobs": [c]}, path="/v1/jobs/batch").status == 201  # c was not queued
    # One key twice in a batch is refused.
    dup = post(server, {"jobs": [dict(payload(1), idempotency_key="dup"),
                                 dict(payload(1), idempotency_key="dup")]},
               path="/v1/jobs/batch")
    assert "jobs[1]" in check_problem(dup, 400)["detail"]


def test_bad_keys_400(server):
    for key in ["", "x" * 201, "has space", "tab\tkey", "del\x7f"]:
        r = post(server, payload(1), key=key)
        problem = check_problem(r, 400)
        assert KEY_HEADER in problem["detail"], (key, problem)
    assert post(server, payload(1), key="k" * 200).status == 201
    assert post(server, payload(1), key="!~{}\"'").status == 201
    for value in [5, "", "a b"]:
        r = post(server, {"jobs": [dict(payload(1), idempotency_key=value)]},
                 path="/v1/jobs/batch")
        problem = check_problem(r, 400)
        assert "jobs[0]" in problem["detail"] and "idempotency_key" in problem["detail"], problem
    r = post(server, dict(payload(1), idempotency_key="one"), key="two")
    assert "differ" in check_problem(r, 400)["detail"]


def test_key_of_removed_job_404(make_server):
    s = make_server("--workers", "1", "--max-jobs", "1")
    first = post(s, payload(1), key="gone-key").json()
    s.wait_done(first["id"])
    s.wait_done(post(s, payload(2)).json()["id"])  # --max-jobs 1 removes the first
    problem = check_problem(post(s, payload(1), key="gone-key"), 404)
    assert "gone-key" in problem["detail"] and "gone" in problem["detail"], problem


def test_client_resend_runs_once(server, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))
    import pyjobd

    log = str(tmp_path / "runs")

    def effect(path):
        with open(path, "a") as f:
            f.write("ran\n")
        return 1

    with pyjobd.Executor(server.base_url) as ex:
        # What the client does after a lost answer: the same request, the same key.
        req = ex._request(ex._dumps(effect), (log,), None)
        jobs = [ex._post("/v1/jobs", req, headers={KEY_HEADER: "client-resend-1"})
                for _ in range(2)]
        assert jobs[0]["id"] == jobs[1]["id"]
        f1 = ex.submit_with(effect, (log,), idempotency_key="client-key-2")
        f2 = ex.submit_with(effect, (log,), idempotency_key="client-key-2")
        assert f1.result(30) == 1 and f2.result(30) == 1
        assert f1.job_id == f2.job_id
        # map's batches carry a key per job: the same requests again make no job.
        reqs = [ex._request(ex._dumps(effect), (log,), None) for _ in range(3)]
        fs = ex._submit_requests(reqs)
        assert all("idempotency_key" in r for r in reqs)
        fs2 = ex._submit_requests(reqs)
        assert [f.job_id for f in fs] == [f.job_id for f in fs2]
        assert [f.result(30) for f in fs2] == [1, 1, 1]
        server.wait_done(jobs[0]["id"])
    with open(log) as f:
        assert f.read().count("ran") == 1 + 1 + 3
