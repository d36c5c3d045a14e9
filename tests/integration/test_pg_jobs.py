"""Job semantics on the PostgreSQL store, across nodes (issue 17 items 2, 3, 7).

Delayed and expiring jobs, retry policies with backoff, and reruns, when several nodes
share one database: the timers live in the database (a scheduled job nobody holds is
queued by whichever node runs its timers first, pg_sql_promote), so a node killed with
kill -9 neither loses nor doubles a scheduled job or a retry waiting for its backoff.
Runs are counted in the side-effect log of test_cluster.py's Cluster (one line per run,
written by the job itself), never assumed.

    PYJOBD_BIN=build/pyjobd /usr/bin/python3 -m pytest -q tests/integration/test_pg_jobs.py
"""

import time

import cloudpickle
import pytest

from conftest import make_server, parse_ts  # noqa: F401  (a fixture)
from conftest_pg import pg_db, pg_server  # noqa: F401  (fixtures)
from test_cluster import (RECORD_B64, REAP_BOUND, b64, cluster, job_request,  # noqa: F401
                          result_of, wait_for)

POLL_S = 0.2  # --pg-poll of the nodes here: a timer nobody holds is run within it


def _flaky_function():
    def flaky(log, token, failures, exc_name, sleep=0.0):
        """Notes a 'run' line; raises exc_name (a builtin) on its first `failures` runs."""
        import builtins
        import os
        import time
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, f"run {token} {os.environ.get('NODE', '?')} {os.getpid()} {time.time():.6f}\n".encode())
        finally:
            os.close(fd)
        with open(log) as f:
            n = sum(1 for line in f if line.split()[:2] == ["run", token])
        if sleep:
            time.sleep(sleep)
        if n <= failures:
            raise getattr(builtins, exc_name)(f"run {n} failed on purpose")
        return n

    return flaky


FLAKY_B64 = b64(cloudpickle.dumps(_flaky_function()))


def node(cluster, name, **kw):
    return cluster.node(name, "--pg-poll", str(POLL_S), **kw)


def runs(cluster, token):
    return [ln for ln in cluster.lines() if ln.what == "run" and ln.token == token]


def rec(cluster, token, **fields):
    """A job that notes one 'run' line (test_cluster.py's record), with job fields."""
    return job_request(RECORD_B64, cluster.log, token, 0.0, **fields)


def flaky_request(cluster, token, failures, exc="ConnectionError", sleep=0.0, **fields):
    return job_request(FLAKY_B64, cluster.log, token, failures, exc, sleep, **fields)


def test_delayed_job_waits_scheduled_then_runs_once_on_time(cluster):
    a, b = node(cluster, "a"), node(cluster, "b")
    t0 = time.time()
    job = a.submit_req(rec(cluster, "later", delay=1.5))
    assert job["status"] == "scheduled" and "run_at" in job, job
    run_at = parse_ts(job["run_at"])
    assert t0 + 1.4 <= run_at <= time.time() + 1.6, job
    seen = b.job(job["id"])  # the other node answers from the database
    assert seen["status"] == "scheduled" and seen["run_at"] == job["run_at"], seen
    done = b.done(job["id"], timeout=15)
    assert done["status"] == "succeeded", done
    started = parse_ts(done["started_at"])
    late = started - run_at
    print(f"\ndelayed job: started {late * 1000:.0f} ms after its run_at (--pg-poll {POLL_S}s)")
    assert 0 <= late <= POLL_S + 0.5, done
    assert len(runs(cluster, "later")) == 1


def test_many_delayed_jobs_each_run_once_after_their_time(cluster):
    a, b = node(cluster, "a"), node(cluster, "b")
    jobs = [(a if i % 2 else b).submit_req(rec(cluster, f"d{i}", delay=0.3 + 0.05 * i))
            for i in range(20)]
    for j in jobs:
        done = a.done(j["id"], timeout=20)
        assert done["status"] == "succeeded", done
        assert parse_ts(done["started_at"]) >= parse_ts(j["run_at"]), done
    counts = {f"d{i}": len(runs(cluster, f"d{i}")) for i in range(20)}
    assert set(counts.values()) == {1}, counts
    nodes = {ln.node for ln in cluster.lines()}
    print(f"\n20 delayed jobs ran on nodes {sorted(nodes)}")


def test_job_not_started_by_expires_at_fails_expired_and_never_runs(cluster):
    a = node(cluster, "a")
    b = node(cluster, "b")
    # Both nodes' only workers are held: the expiring job waits in the database.
    holds = [n.submit_req(cluster.gated_request(f"hold-{n.short}")) for n in (a, b)]
    for n in (a, b):
        cluster.wait_line("start", f"hold-{n.short}")
    job = a.submit_req(rec(cluster, "exp", expires_in=0.5))
    assert job["status"] == "queued" and "expires_at" in job, job
    # A delayed job that comes due while no worker is free expires too, without running.
    job2 = b.submit_req(rec(cluster, "exp2", delay=0.3, expires_in=0.8))
    for j in (job, job2):
        done = b.done(j["id"], timeout=10)
        assert done["status"] == "failed" and done["error"]["type"] == "expired", done
        assert "expires_at" in done["error"]["message"], done
        assert done.get("attempts", 0) == 0, done
    for n in (a, b):
        cluster.open_gate(f"hold-{n.short}")
    for h in holds:
        assert a.done(h["id"])["status"] == "succeeded"
    assert runs(cluster, "exp") == [] and runs(cluster, "exp2") == []


def test_retry_on_connection_error_with_backoff_gaps_across_nodes(cluster):
    a, b = node(cluster, "a"), node(cluster, "b")
    retry = {"max": 3, "on": ["ConnectionError"], "backoff": {"initial": 0.4, "factor": 2.0}}
    job = a.submit_req(flaky_request(cluster, "cx", 2, retry=retry))
    done = b.done(job["id"], timeout=20)
    assert done["status"] == "succeeded" and result_of(done) == 3, done
    assert done["attempts"] == 3, done
    h = done["history"]
    assert [a["attempt"] for a in h] == [1, 2, 3], h
    assert [a["error"]["type"] if a["error"] else None for a in h] == ["exception", "exception", None], h
    assert "run 1 failed on purpose" in h[0]["error"]["message"], h
    gaps = [parse_ts(h[k]["started_at"]) - parse_ts(h[k - 1]["finished_at"]) for k in (1, 2)]
    print(f"\nretry gaps on PostgreSQL: {[round(g, 3) for g in gaps]} (backoff 0.4, 0.8)")
    assert 0.4 <= gaps[0] < 0.4 + 0.3 and 0.8 <= gaps[1] < 0.8 + 0.3, gaps
    assert [ln.node for ln in runs(cluster, "cx")] == ["a"] * 3  # a retry stays on its node
    assert len(runs(cluster, "cx")) == 3
    # not_on wins over on: the first ConnectionError ends it.
    retry = {"max": 3, "on": ["OSError"], "not_on": ["ConnectionError"]}
    job = b.submit_req(flaky_request(cluster, "no", 2, retry=retry))
    done = a.done(job["id"], timeout=20)
    assert done["status"] == "failed" and done["attempts"] == 1, done
    assert done["error"]["exc_type"].endswith("ConnectionError"), done
    assert len(runs(cluster, "no")) == 1


def test_kill9_during_a_backoff_wait_runs_the_retry_once_on_another_node(cluster):
    a = node(cluster, "a")
    retry = {"max": 2, "on": ["ConnectionError"], "backoff": {"initial": 3.0}}
    job = a.submit_req(flaky_request(cluster, "bk", 1, retry=retry))
    waiting = wait_for("the job waiting for its backoff",
                       lambda: (lambda j: j if j["status"] == "scheduled" else None)(a.job(job["id"])), 10)
    assert "next_attempt_at" in waiting and waiting["attempts"] == 1, waiting
    next_at = parse_ts(waiting["next_attempt_at"])
    b = node(cluster, "b")
    a.kill9()
    done = b.done(job["id"], timeout=REAP_BOUND + 15)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    r = runs(cluster, "bk")
    assert [ln.node for ln in r] == ["a", "b"], r
    assert r[1].t >= next_at - 0.01, (r, waiting)  # not before its backoff said


def test_kill9_during_a_scheduled_wait_runs_it_once_on_time(cluster):
    a, b = node(cluster, "a"), node(cluster, "b")
    job = a.submit_req(rec(cluster, "sched", delay=2.0))
    run_at = parse_ts(job["run_at"])
    a.kill9()
    done = b.done(job["id"], timeout=15)
    assert done["status"] == "succeeded", done
    r = runs(cluster, "sched")
    assert len(r) == 1 and r[0].node == "b", r
    assert run_at <= r[0].t <= run_at + POLL_S + 0.5, (r, job)


def test_node_lost_is_not_retried_when_the_policy_says_so(cluster):
    a, b = node(cluster, "a"), node(cluster, "b")
    req = cluster.gated_request("nl", retry={"max": 3, "on_node_lost": False})
    job = a.submit_req(req)
    victim = cluster.by_name(cluster.wait_line("start", "nl").node)
    survivor = b if victim is a else a
    victim.kill9()
    done = survivor.done(job["id"], timeout=REAP_BOUND + 10)
    assert done["status"] == "failed" and done["error"]["type"] == "node_lost", done
    assert "on_node_lost" in done["error"]["message"], done
    assert [ln.node for ln in cluster.lines() if ln.what == "start"] == [victim.short]
    # The lost attempt is in the history, with the node it ran on.
    h = done["history"]
    assert len(h) == 1 and h[0]["node"] == victim.node_id, h
    assert h[0]["error"]["type"] == "node_lost" and h[0]["finished_at"], h


def test_a_lost_attempt_joins_the_history_and_the_retry_names_its_node(cluster):
    a, b = node(cluster, "a"), node(cluster, "b")
    job = a.submit_req(cluster.gated_request("lost", max_retries=1))
    victim = cluster.by_name(cluster.wait_line("start", "lost").node)
    survivor = b if victim is a else a
    victim.kill9()
    done = survivor.done(job["id"], timeout=REAP_BOUND + 15)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    h = done["history"]
    assert [x["node"] for x in h] == [victim.node_id, survivor.node_id], h
    assert h[0]["error"]["type"] == "node_lost" and h[1]["error"] is None, h


def test_cancel_a_scheduled_job_from_another_node(cluster):
    a, b = node(cluster, "a"), node(cluster, "b")
    job = a.submit_req(rec(cluster, "cx", delay=3))
    r = b.call("POST", f"/v1/jobs/{job['id']}/cancel", expect=200).value
    assert r["status"] == "cancelled", r
    time.sleep(3.5)
    assert a.job(job["id"])["status"] == "cancelled"
    assert runs(cluster, "cx") == []


def test_rerun_on_another_node_and_in_bulk(cluster):
    a, b = node(cluster, "a"), node(cluster, "b")
    failed = [a.submit_req(flaky_request(cluster, f"r{i}", 1, metadata={"i": i})) for i in range(3)]
    for j in failed:
        assert a.done(j["id"])["status"] == "failed"
    # One, from the other node: the same request (its metadata too), rerun_of names it.
    again = b.call("POST", f"/v1/jobs/{failed[0]['id']}/rerun", expect=201).value
    assert again["rerun_of"] == failed[0]["id"] and again["metadata"] == {"i": 0}, again
    done = a.done(again["id"])
    assert done["status"] == "succeeded" and result_of(done) == 2, done
    # A job that has not finished: 409; an unknown id: 404.
    hold = a.submit_req(cluster.gated_request("hold"))
    cluster.wait_line("start", "hold")
    b.call("POST", f"/v1/jobs/{hold['id']}/rerun", expect=409)
    b.call("POST", f"/v1/jobs/{'0' * 32}/rerun", expect=404)
    cluster.open_gate("hold")
    # In bulk, from node b: the three failed ones (a rerun leaves its original as it
    # was), oldest finished first.
    r = b.call("POST", "/v1/jobs/rerun", {"status": "failed", "error_type": "exception"},
               expect=201).value
    # (Two nodes ran them: the order is the database's finished_at, not the submissions'.)
    finished = sorted(failed, key=lambda j: (parse_ts(a.job(j["id"])["finished_at"])))
    assert [j["rerun_of"] for j in r["jobs"]] == [j["id"] for j in finished], r
    for j in r["jobs"]:
        assert b.done(j["id"])["status"] == "succeeded"
    for i in range(3):
        assert len(runs(cluster, f"r{i}")) == 2 + (i == 0), (i, runs(cluster, f"r{i}"))


def test_rerun_of_another_tenants_job_is_unknown(make_server, pg_db, tmp_path, cluster):
    from test_tenancy import ALICE, BOB, ROOT_OK, call, ready, tokens
    tf = tokens(tmp_path)
    a, b = (make_server("--workers", "1", "--store", pg_db.uri, "--token-file", tf, "--node-lease",
                        "1.5", "--pg-poll", str(POLL_S), *ROOT_OK, name=f"pg-t{n}", ready=False)
            for n in "ab")
    ready(a, ALICE), ready(b, ALICE)
    r = call(a, "POST", "/v1/jobs?wait=20", ALICE, flaky_request(cluster, "t", 1))
    assert r.status in (200, 201), r
    jid = r.json()["id"]
    assert r.json()["status"] == "failed", r.json()
    for path, body in ((f"/v1/jobs/{jid}/rerun", None), ("/v1/jobs/rerun", {"status": "failed"})):
        got = call(b, "POST", path, BOB, body)
        if body is None:
            assert got.status == 404, got  # as for an unknown job: nothing leaks
        else:
            assert got.status == 201 and got.json()["jobs"] == [], got
    got = call(b, "POST", f"/v1/jobs/{jid}/rerun", ALICE)
    assert got.status == 201 and got.json()["rerun_of"] == jid, got
    assert call(a, "GET", f"/v1/jobs/{got.json()['id']}?wait=20", ALICE).json()["status"] == "succeeded"
    assert len(runs(cluster, "t")) == 2


def _interruptible_functions():
    def cleans_up(log, token):
        """Notes 'start', sleeps; its finally notes 'finally' (pyjobd.Cancelled ends it)."""
        import os
        import time

        def note(what):
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, f"{what} {token} {os.environ.get('NODE', '?')} {os.getpid()} {time.time():.6f}\n".encode())
            finally:
                os.close(fd)
        note("start")
        try:
            time.sleep(60)
        finally:
            note("finally")

    def stubborn(log, token):
        """Notes 'start', then swallows everything pyjobd raises in it."""
        import os
        import time
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        os.write(fd, f"start {token} {os.environ.get('NODE', '?')} {os.getpid()} {time.time():.6f}\n".encode())
        os.close(fd)
        while True:
            try:
                time.sleep(10)
            except BaseException:
                pass

    return cleans_up, stubborn


CLEANS_UP_B64, STUBBORN_B64 = (b64(cloudpickle.dumps(f)) for f in _interruptible_functions())


def test_interrupt_reaches_a_job_running_on_another_node(cluster):
    a = node(cluster, "a")
    job = a.submit_req(job_request(CLEANS_UP_B64, cluster.log, "int", timeout=120))
    cluster.wait_line("start", "int", node="a")
    b = node(cluster, "b")
    t = time.monotonic()
    r = b.call("POST", f"/v1/jobs/{job['id']}/cancel?interrupt=5", expect=200).value
    assert r["id"] == job["id"], r
    done = b.done(job["id"], timeout=15)
    took = time.monotonic() - t
    assert done["status"] == "cancelled" and "Cancelled was raised" in done["error"]["message"], done
    assert cluster.wait_line("finally", "int", node="a")  # its finally ran, on its node
    print(f"\ninterrupt from another node: the job ended {took * 1000:.0f} ms later")
    assert took < 3, f"ended {took:.2f}s after the interrupt: killed at the grace, not interrupted"
    # One that ignores pyjobd.Cancelled is still killed when its grace ends.
    job = a.submit_req(job_request(STUBBORN_B64, cluster.log, "stub", timeout=120))
    cluster.wait_line("start", "stub", node="a")
    t = time.monotonic()
    b.call("POST", f"/v1/jobs/{job['id']}/cancel?interrupt=1.5", expect=200)
    done = b.done(job["id"], timeout=15)
    took = time.monotonic() - t
    assert done["status"] == "cancelled" and "killed" in done["error"]["message"], done
    assert 1.4 <= took < 4, f"killed {took:.2f}s after an interrupt with 1.5 s of grace"
    # Node a goes on with a new worker.
    assert a.done(a.submit_req(cluster.record_request("after"))["id"])["status"] == "succeeded"
