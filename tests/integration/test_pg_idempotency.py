"""Idempotent submission on the PostgreSQL store (issue 17 item 1), across nodes.

The same tenant, key and request again within --idempotency-ttl answer 200 with the
job the first one made (Idempotent-Replayed: true), never a second job: from two
threads of one node, from two nodes at the same moment, for whole batches sent to two
nodes at once (in opposite orders), after the node that took the key restarted. The
same key with another request is 422 naming the key, on any node, and a batch with one
such item makes no job at all; tenants' keys never meet; a key whose job was deleted
answers 404 naming the key (as on SQLite); an expired key is taken over. Runs are
counted in the cluster's side-effect file, jobs and keys in the database.
"""

import os
import sys
import threading
import time

import pytest

from conftest_pg import pg_db, pg_server  # noqa: F401  (fixtures)
from test_cluster import CONTRACT, Node, check_cluster_job, cluster, wait_for  # noqa: F401

KEY_HEADER = "Idempotency-Key"
ALICE = "alice-token-aaaaaaaaaaaaaaaaaaaa"
BOB = "bob-token-bbbbbbbbbbbbbbbbbbbbbbbb"


def post(node, body, key=None, token=None, path="/v1/jobs"):
    """POST with an optional Idempotency-Key and bearer token, checked against openapi.yaml."""
    import json
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers[KEY_HEADER] = key
    if token:
        headers["Authorization"] = f"Bearer {token}"
    r = node.request("POST", path, body=json.dumps(body), headers=headers)
    r.value = CONTRACT.check("POST", path, r.status, r.headers, r.body)
    return r


def replayed(r):
    return r.headers.get("Idempotent-Replayed")


def runs(cluster, token):
    return sum(1 for ln in cluster.lines() if ln.what == "run" and ln.token == token)


def problem(r, status):
    assert r.status == status, r
    assert r.headers.get("Content-Type", "").startswith("application/problem+json"), r
    return r.json()


def at_once(calls):
    """Runs the calls in threads released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    out = [None] * len(calls)

    def one(i):
        barrier.wait()
        out[i] = calls[i]()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def count(cluster, sql):
    return int(cluster.db.value(sql))


def test_two_threads_of_one_node_one_job_one_run(cluster):
    a = cluster.node("a", workers=2)
    for i in range(15):
        req = cluster.record_request(f"t{i}")
        rs = at_once([lambda: post(a, req, key=f"k{i}")] * 2)
        assert sorted(r.status for r in rs) == [200, 201], rs
        assert len({r.json()["id"] for r in rs}) == 1, rs
        assert [replayed(r) for r in rs if r.status == 200] == ["true"]
        check_cluster_job(rs[0].json())
    for i in range(15):
        cluster.wait_line("run", f"t{i}")
    time.sleep(0.3)
    assert all(runs(cluster, f"t{i}") == 1 for i in range(15)), cluster.lines()
    assert count(cluster, "SELECT count(*) FROM pyjobd.jobs") == 15
    assert count(cluster, "SELECT count(*) FROM pyjobd.idempotency_keys") == 15


def test_two_nodes_at_the_same_moment_one_job_one_run(cluster):
    a, b = cluster.node("a"), cluster.node("b")
    n = 25
    for i in range(n):
        req = cluster.record_request(f"r{i}")
        rs = at_once([lambda: post(a, req, key=f"race-{i}"), lambda: post(b, req, key=f"race-{i}")])
        assert sorted(r.status for r in rs) == [200, 201], rs
        assert len({r.json()["id"] for r in rs}) == 1, rs
    for i in range(n):
        cluster.wait_line("run", f"r{i}")
    time.sleep(0.3)
    assert [runs(cluster, f"r{i}") for i in range(n)] == [1] * n, cluster.lines()
    assert count(cluster, "SELECT count(*) FROM pyjobd.jobs") == n
    # Every key names an existing job.
    assert count(cluster, "SELECT count(*) FROM pyjobd.idempotency_keys k"
                          " JOIN pyjobd.jobs j ON j.id = k.job_id") == n


def test_batches_racing_on_two_nodes_in_opposite_orders(cluster):
    a, b = cluster.node("a", workers=2), cluster.node("b", workers=2)
    items = [dict(cluster.record_request(f"b{i}"), idempotency_key=f"bk-{i}") for i in range(40)]
    for _ in range(3):  # the same batches again: all replays
        rs = at_once([lambda: post(a, {"jobs": items}, path="/v1/jobs/batch"),
                      lambda: post(b, {"jobs": items[::-1]}, path="/v1/jobs/batch")])
        assert all(r.status in (200, 201) for r in rs), rs
        ids_a = [j["id"] for j in rs[0].json()["jobs"]]
        ids_b = [j["id"] for j in rs[1].json()["jobs"]][::-1]
        assert ids_a == ids_b
        assert len(set(ids_a)) == 40
    for i in range(40):
        cluster.wait_line("run", f"b{i}")
    time.sleep(0.3)
    assert [runs(cluster, f"b{i}") for i in range(40)] == [1] * 40
    assert count(cluster, "SELECT count(*) FROM pyjobd.jobs") == 40


def test_same_key_other_body_422_names_key_on_any_node(cluster):
    a, b = cluster.node("a"), cluster.node("b")
    first = post(a, cluster.record_request("x1"), key="conflict-1")
    assert first.status == 201, first
    for n in (a, b):
        p = problem(post(n, cluster.record_request("x2"), key="conflict-1"), 422)
        assert "conflict-1" in p["detail"], p
    # Both at once, one of them changed: one job, the other 422.
    rs = at_once([lambda: post(a, cluster.record_request("y1"), key="conflict-2"),
                  lambda: post(b, cluster.record_request("y2"), key="conflict-2")])
    assert sorted(r.status for r in rs) == [201, 422], rs
    assert count(cluster, "SELECT count(*) FROM pyjobd.jobs") == 2


def test_tenants_same_key_are_two_jobs(cluster, tmp_path):
    tf = tmp_path / "tokens"
    tf.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
    tf.chmod(0o600)
    nodes = []
    for name in ("a", "b"):
        args = ["--node-name", name, "--workers", "1", "--worker-env", f"NODE={name}",
                "--store", cluster.db.uri, "--node-lease", "1.5", "--token-file", str(tf)]
        if os.geteuid() == 0:
            args += ["--allow-root-workers"]
        n = Node(args + ["--allow-shared-worker-uid"], f"node-{name}")
        n.short = name
        cluster.nodes.append(n)
        n.start()
        nodes.append(n)
    a, b = nodes
    req = cluster.record_request("tenant")
    wait_for("node a answers", lambda: post(a, {"jobs": []}, token=ALICE,
                                            path="/v1/jobs/batch").status != 503, 15)
    x = post(a, req, key="shared-key", token=ALICE)
    y = post(b, req, key="shared-key", token=BOB)
    assert x.status == 201 and y.status == 201, (x, y)
    assert x.json()["id"] != y.json()["id"]
    again = post(b, req, key="shared-key", token=ALICE)
    assert again.status == 200 and again.json()["id"] == x.json()["id"], again
    # Another request under bob's key is no conflict with alice's.
    assert post(a, cluster.record_request("other"), key="only-alice", token=ALICE).status == 201
    assert post(b, cluster.record_request("else"), key="only-alice", token=BOB).status == 201


def test_replay_after_the_node_that_took_it_restarted(cluster):
    a = cluster.node("a")
    req = cluster.record_request("restart")
    first = post(a, req, key="survives")
    assert first.status == 201, first
    job = a.done(first.json()["id"])
    assert not a.stop(), a.log_tail()  # a clean stop, then a new process
    cluster.nodes.remove(a)
    a2 = cluster.node("a2")
    again = post(a2, req, key="survives")
    assert again.status == 200 and replayed(again) == "true", again
    assert again.json()["id"] == job["id"] and again.json()["status"] == "succeeded"
    assert problem(post(a2, cluster.record_request("changed"), key="survives"), 422)
    assert runs(cluster, "restart") == 1


def test_batch_one_replayed_one_new_and_a_bad_item_makes_nothing(cluster):
    a, b = cluster.node("a"), cluster.node("b")
    single = post(a, cluster.record_request("s1"), key="batch-a")
    assert single.status == 201
    ia = dict(cluster.record_request("s1"), idempotency_key="batch-a")
    ib = dict(cluster.record_request("s2"), idempotency_key="batch-b")
    plain = cluster.record_request("s3")  # no key: a new job each time
    r = post(b, {"jobs": [ia, ib, plain]}, path="/v1/jobs/batch")
    assert r.status == 201, r
    out = r.json()
    assert out["jobs"][0]["id"] == single.json()["id"] and out["replayed"] == [0]
    r2 = post(a, {"jobs": [ia, ib]}, path="/v1/jobs/batch")
    assert r2.status == 200 and replayed(r2) == "true", r2
    assert [j["id"] for j in r2.json()["jobs"]] == [j["id"] for j in out["jobs"][:2]]
    assert r2.json()["replayed"] == [0, 1]
    before = count(cluster, "SELECT count(*) FROM pyjobd.jobs")
    ic = dict(cluster.record_request("s4"), idempotency_key="batch-c")
    bad = post(b, {"jobs": [ic, plain, dict(cluster.record_request("s9"), idempotency_key="batch-b")]},
               path="/v1/jobs/batch")
    p = problem(bad, 422)
    assert "jobs[2]" in p["detail"] and "batch-b" in p["detail"], p
    assert count(cluster, "SELECT count(*) FROM pyjobd.jobs") == before  # nothing inserted
    assert count(cluster, "SELECT count(*) FROM pyjobd.idempotency_keys WHERE key = 'batch-c'") == 0
    assert post(a, {"jobs": [ic]}, path="/v1/jobs/batch").status == 201  # c was free
    for t in ("s1", "s2", "s3", "s4"):
        cluster.wait_line("run", t)
    time.sleep(0.3)
    assert [runs(cluster, t) for t in ("s1", "s2", "s3", "s4", "s9")] == [1, 1, 1, 1, 0]


def test_key_of_a_deleted_job_is_404_naming_it(cluster):
    a, b = cluster.node("a"), cluster.node("b")
    req = cluster.record_request("gone")
    first = post(a, req, key="gone-key").json()
    a.done(first["id"])
    d = a.request("DELETE", f"/v1/jobs/{first['id']}")
    assert d.status in (200, 204), d
    for n in (a, b):
        p = problem(post(n, req, key="gone-key"), 404)
        assert "gone-key" in p["detail"] and "gone" in p["detail"], p
    # A batch naming it makes nothing either.
    before = count(cluster, "SELECT count(*) FROM pyjobd.jobs")
    r = post(b, {"jobs": [cluster.record_request("new"), dict(req, idempotency_key="gone-key")]},
             path="/v1/jobs/batch")
    assert "jobs[1]" in problem(r, 404)["detail"]
    assert count(cluster, "SELECT count(*) FROM pyjobd.jobs") == before


def test_expired_key_is_taken_over_and_deleted(cluster):
    a = cluster.node("a", "--idempotency-ttl", "1")
    first = post(a, cluster.record_request("e1"), key="short")
    assert first.status == 201
    time.sleep(1.2)
    second = post(a, cluster.record_request("e2"), key="short")  # another body: no conflict now
    assert second.status == 201 and second.json()["id"] != first.json()["id"], second
    assert post(a, cluster.record_request("e2"), key="short").json()["id"] == second.json()["id"]
    # Expired keys are deleted by a periodic round.
    wait_for("expired keys deleted",
             lambda: count(cluster, "SELECT count(*) FROM pyjobd.idempotency_keys") == 0, 15, 0.2)


def test_python_client_keys_on_postgres(cluster):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))
    import pyjobd

    a = cluster.node("a")
    req = cluster.record_request("client")
    with pyjobd.Executor(a.base_url) as ex:
        jobs = [ex._post("/v1/jobs", req, headers={KEY_HEADER: "client-1"}) for _ in range(2)]
        assert jobs[0]["id"] == jobs[1]["id"]
        assert ex.submit(lambda: 5).result(30) == 5
        assert list(ex.map(lambda x: x * 2, range(30))) == [x * 2 for x in range(30)]
        assert ex._keys, "the client should keep sending keys"
        a.done(jobs[0]["id"])
    assert runs(cluster, "client") == 1
    # Every submission above carried a key (map's batches per job).
    assert count(cluster, "SELECT count(*) FROM pyjobd.idempotency_keys") == 1 + 1 + 30
