"""Recurring schedules on the PostgreSQL store, across nodes (issue 17 item 4).

Schedules are rows of the database: any node creates, reads and deletes them; one
node at a time fires them (the holder of an advisory lock on its connection), and each
tick's job is inserted with the schedule's progress in one transaction. "Exactly one
job per tick" is checked against the ticks themselves: a tick's job id is the SHA-256
of the schedule and the tick (pool/sources/schedules.c), so the test computes the id
every tick must have and compares with the jobs the database holds (jobs.schedule).
Runs are counted in the side-effect log of test_cluster.py's Cluster.

    PYJOBD_BIN=build/pyjobd /usr/bin/python3 -m pytest -q tests/integration/test_pg_schedules.py
"""

import hashlib
import os
import re
import time

import pytest

from conftest import parse_ts
from conftest_pg import pg_db, pg_server  # noqa: F401  (fixtures)
from test_cluster import LEASE, Node, cluster, wait_for  # noqa: F401

POLL_S = 0.2  # --pg-poll: how often a node that does not lead tries to
IS_ROOT = os.geteuid() == 0
ROOT_OK = (["--allow-root-workers"] if IS_ROOT else []) + ["--allow-shared-worker-uid"]
ALICE = "alice-token-aaaaaaaaaaaaaaaaaaaa"
BOB = "bob-token-bbbbbbbbbbbbbbbbbbbbbbbb"
LEADS = "this node leads the schedules now"


def node(cluster, name, *extra, **kw):
    return cluster.node(name, "--pg-poll", str(POLL_S), *extra, **kw)


def token_node(cluster, name, token_file):
    """A node that wants bearer tokens (Cluster.node's readiness check sends none)."""
    args = ["--node-name", name, "--workers", "1", "--worker-env", f"NODE={name}",
            "--default-timeout", "0", "--shutdown-grace", "2", "--store", cluster.db.uri,
            "--node-lease", str(LEASE), "--pg-poll", str(POLL_S), "--token-file", str(token_file),
            *ROOT_OK]
    n = Node(args, f"node-{name}")
    n.short = name
    cluster.nodes.append(n)
    n.start()
    return n


def tick_id(sid, tick_us):
    return hashlib.sha256(f"pyjobd schedule {sid} {tick_us}".encode()).hexdigest()[:32]


def create(n, body, token=None, expect=201):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    r = n.request("POST", "/v1/schedules", body, headers=headers)
    assert r.status == expect, (r.status, r.body)
    return r.json() if r.status in (200, 201) else r


def get(n, path, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return n.request("GET", path, headers=headers)


def delete(n, sid, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return n.request("DELETE", f"/v1/schedules/{sid}", headers=headers)


def created_us(db, sid):
    return db.value(f"SELECT created_us FROM pyjobd.schedules WHERE id = '{sid}'")


def tick_jobs(db, sid):
    """The ids of the jobs the schedule made, as the database has them."""
    return [r["id"] for r in db.query(f"SELECT id FROM pyjobd.jobs WHERE schedule = '{sid}'")]


def every_ticks(base, sid, every, ids):
    """Which ticks (1, 2, ...) of an every-schedule created at base (µs) the job ids
    are; fails on an id that is no tick's (made by something else than a tick) or
    repeated."""
    step = int(every * 1e6)
    by_id = {tick_id(sid, base + k * step): k for k in range(1, 2000)}
    assert len(set(ids)) == len(ids), f"a job id twice: {ids}"
    unknown = [i for i in ids if i not in by_id]
    assert not unknown, f"jobs of schedule {sid} that are no tick's: {unknown}"
    return sorted(by_id[i] for i in ids)


def leaders(nodes):
    """The nodes whose log says they took the lead (read while they still run)."""
    out = []
    for n in nodes:
        with open(n.log_path, errors="replace") as f:
            if LEADS in f.read():
                out.append(n)
    return out


def no_doubled_tick(nodes):
    for n in nodes:
        with open(n.log_path, errors="replace") as f:
            text = f.read()
        assert "existed already" not in text, f"{n.name} fired a tick fired before:\n{text[-3000:]}"


def runs_of(cluster, token):
    return [ln for ln in cluster.lines() if ln.what == "run" and ln.token == token]


def wait_runs(cluster, token, n, timeout):
    return wait_for(f"{n} runs of {token}", lambda: len(runs_of(cluster, token)) >= n, timeout)


def test_create_on_one_node_read_and_delete_on_another(cluster):
    a, b = node(cluster, "a"), node(cluster, "b")
    sc = create(a, {"every": 1, "job": cluster.record_request("ab")})
    sid = sc["id"]
    base = created_us(cluster.db, sid)
    assert sc["runs"] == 0 and sc["last_job"] is None and sc["missed"] == "skip"
    assert abs(parse_ts(sc["next_run_at"]) - parse_ts(sc["created_at"]) - 1.0) < 0.01, sc
    got = get(b, f"/v1/schedules/{sid}").json()
    assert {k: got[k] for k in ("id", "every", "cron", "timezone", "missed", "created_at")} == \
        {k: sc[k] for k in ("id", "every", "cron", "timezone", "missed", "created_at")}
    assert sid in [x["id"] for x in get(b, "/v1/schedules").json()["schedules"]]
    wait_runs(cluster, "ab", 3, 10)
    got = get(b, f"/v1/schedules/{sid}").json()
    ids = tick_jobs(cluster.db, sid)
    assert got["runs"] >= 3 and got["last_job"] in ids, (got, ids)
    assert delete(b, sid).status == 204
    assert get(a, f"/v1/schedules/{sid}").status == 404
    assert delete(a, sid).status == 404
    n = len(tick_jobs(cluster.db, sid))
    time.sleep(2.5)
    assert len(tick_jobs(cluster.db, sid)) == n, "a schedule deleted on another node still ticked"
    ticks = every_ticks(base, sid, 1, tick_jobs(cluster.db, sid))
    assert ticks == list(range(1, len(ticks) + 1)), ticks
    assert len(leaders(cluster.nodes)) == 1


def test_tick_job_names_its_schedule(cluster):
    a, b = node(cluster, "a"), node(cluster, "b")
    sid = create(a, {"every": 1, "job": cluster.record_request("named")})["id"]
    wait_runs(cluster, "named", 1, 10)
    (job_id,) = tick_jobs(cluster.db, sid)[:1]
    assert delete(a, sid).status == 204
    for n in (a, b):
        job = n.call("GET", f"/v1/jobs/{job_id}", expect=200).value
        assert job.get("schedule") == sid, job


def test_every_second_on_three_nodes_one_job_per_tick(cluster):
    nodes = [node(cluster, name) for name in ("a", "b", "c")]
    sid = create(nodes[1], {"every": 1, "job": cluster.record_request("three")})["id"]
    base = created_us(cluster.db, sid)
    time.sleep(20.5)
    assert delete(nodes[2], sid).status == 204
    ids = tick_jobs(cluster.db, sid)
    ticks = every_ticks(base, sid, 1, ids)
    assert ticks == list(range(1, 21)), f"ticks 1..20 once each, got {ticks}"
    for i in ids:
        assert nodes[0].done(i)["status"] == "succeeded"
    assert len(runs_of(cluster, "three")) == len(ids)
    assert len(leaders(nodes)) == 1, "more than one node led the schedules"
    no_doubled_tick(nodes)


def test_cron_every_minute_on_three_nodes(cluster):
    """A cron schedule ticks at whole minutes: what fits in about 70 s, one or two."""
    nodes = [node(cluster, name) for name in ("a", "b", "c")]
    sc = create(nodes[0], {"cron": "* * * * *", "job": cluster.record_request("cron")})
    sid, first = sc["id"], parse_ts(sc["next_run_at"])
    assert first % 60 == 0 and 0 < first - time.time() <= 60, sc
    until = first + 60 if first + 60 - time.time() < 68 else first
    wait_for("the minute's ticks", lambda: time.time() > until + 2, 75, interval=0.5)
    ids = tick_jobs(cluster.db, sid)
    want = [tick_id(sid, int(t * 1e6)) for t in range(int(first), int(until) + 1, 60)]
    assert sorted(ids) == sorted(want), (ids, want)
    got = get(nodes[2], f"/v1/schedules/{sid}").json()
    assert got["runs"] == len(want) and parse_ts(got["last_run_at"]) == until, got
    assert parse_ts(got["next_run_at"]) == until + 60, got
    wait_runs(cluster, "cron", len(want), 10)
    assert len(runs_of(cluster, "cron")) == len(want)
    assert len(leaders(nodes)) == 1
    no_doubled_tick(nodes)


@pytest.mark.parametrize("missed", ["skip", "run_once"])
def test_leader_killed_another_node_takes_over(cluster, missed):
    nodes = [node(cluster, name) for name in ("a", "b", "c")]
    sid = create(nodes[0], {"every": 1, "missed": missed, "job": cluster.record_request("kill")})["id"]
    base = created_us(cluster.db, sid)
    wait_runs(cluster, "kill", 3, 10)
    (leader,) = leaders(nodes)
    others = [n for n in nodes if n is not leader]
    killed_at = time.time()
    leader.kill9()
    new = wait_for("another node leading", lambda: leaders(others), LEASE + POLL_S + 5, interval=0.05)
    assert len(new) == 1
    took = time.time() - killed_at
    print(f"\nmissed={missed}: another node led {took:.3f}s after the kill -9 of {leader.name}")
    time.sleep(4.2)
    assert delete(others[0], sid).status == 204
    ids = tick_jobs(cluster.db, sid)
    ticks = every_ticks(base, sid, 1, ids)
    missing = sorted(set(range(1, ticks[-1] + 1)) - set(ticks))
    # The lead went with the killed node's connection, and another node took it at its
    # next try: well within a lease and a poll.
    assert took < LEASE + POLL_S + 1, f"took {took:.2f}s to take over"
    if missed == "run_once":
        assert not missing, f"ticks missed over the hand-over despite run_once: {missing}"
    else:
        assert len(missing) <= 2, f"more ticks skipped than the hand-over explains: {missing}"
    assert len(runs_of(cluster, "kill")) <= len(ids), "a tick's job ran twice"
    no_doubled_tick(others)


def test_tenants_do_not_see_each_others_schedules(cluster, tmp_path):
    tf = tmp_path / "tokens"
    tf.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
    tf.chmod(0o600)
    a, b = token_node(cluster, "a", tf), token_node(cluster, "b", tf)
    job = cluster.record_request("tenant")
    sid = create(a, {"every": 3600, "job": job}, token=ALICE)["id"]
    assert get(b, f"/v1/schedules/{sid}", token=BOB).status == 404
    assert delete(b, sid, token=BOB).status == 404
    assert get(b, "/v1/schedules", token=BOB).json()["schedules"] == []
    assert get(b, f"/v1/schedules/{sid}", token=ALICE).status == 200
    assert [x["id"] for x in get(b, "/v1/schedules", token=ALICE).json()["schedules"]] == [sid]
    assert cluster.db.value(f"SELECT owner FROM pyjobd.schedules WHERE id = '{sid}'") == "alice"
    # 1,000 of one tenant, counted in the database whichever node is asked.
    for i in range(999):
        create((a, b)[i % 2], {"every": 3600, "job": job}, token=ALICE)
    r = create(b, {"every": 3600, "job": job}, token=ALICE, expect=429)
    assert "1000" in r.json()["detail"], r.json()
    create(a, {"every": 3600, "job": job}, token=BOB)
    assert len(get(a, "/v1/schedules", token=ALICE).json()["schedules"]) == 1000
    assert delete(a, sid, token=ALICE).status == 204


def test_schedules_survive_a_restart_of_every_node(cluster):
    a, b = node(cluster, "a"), node(cluster, "b")
    sid = create(a, {"every": 1, "missed": "run_once", "job": cluster.record_request("restart")})["id"]
    base = created_us(cluster.db, sid)
    wait_runs(cluster, "restart", 2, 10)
    for n in (a, b):
        assert n.stop() == []
        cluster.nodes.remove(n)
    stopped = time.time()
    before = every_ticks(base, sid, 1, tick_jobs(cluster.db, sid))
    time.sleep(3.5)
    c, d = node(cluster, "c"), node(cluster, "d")
    started = time.time()
    got = get(d, f"/v1/schedules/{sid}").json()
    assert got["id"] == sid and got["missed"] == "run_once"
    time.sleep(3.2)
    assert delete(c, sid).status == 204
    ticks = every_ticks(base, sid, 1, tick_jobs(cluster.db, sid))
    assert ticks[:len(before)] == before == list(range(1, len(before) + 1)), (before, ticks)
    after = ticks[len(before):]
    # Down for several ticks: run_once makes one job for them (the last), then the
    # ticks go on, one each.
    assert after == list(range(after[0], after[0] + len(after))), ticks
    assert after[0] - before[-1] >= 3, (before, after, stopped, started)
    got_runs = get(c, "/v1/schedules").json()["schedules"]
    assert sid not in [x["id"] for x in got_runs]


def test_a_ticks_job_keeps_its_retry_policy(cluster):
    """The job of a tick carries the schedule's job's retry policy: it fails once with
    ConnectionError and is retried (after its backoff) to success."""
    from test_pg_jobs import flaky_request
    a = node(cluster, "a")
    job = flaky_request(cluster, "sr", 1, retry={"max": 2, "on": ["ConnectionError"],
                                                 "backoff": {"initial": 0.2}})
    sid = create(a, {"every": 1, "job": job})["id"]
    first = wait_for("the schedule's first job", lambda: tick_jobs(cluster.db, sid), 10)[0]
    done = a.done(first, timeout=20)
    assert delete(a, sid).status == 204
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    assert done["schedule"] == sid and done["retry"]["on"] == ["ConnectionError"], done
    assert done["history"][0]["error"]["type"] == "exception", done


def test_bad_schedules_on_postgres(cluster):
    a = node(cluster, "a")
    job = cluster.record_request("bad")
    r = create(a, {"cron": "61 * * * *", "job": job}, expect=400)
    assert "field 'cron'" in r.json()["detail"]
    assert get(a, "/v1/schedules/" + "0" * 32).status == 404
    assert re.fullmatch(r"[0-9a-f]{32}", create(a, {"every": 5, "job": job})["id"])
