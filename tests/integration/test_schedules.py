"""Recurring jobs (issue 17 item 4): POST /v1/schedules {"cron" | "every", "job",
"timezone"?, "missed"?}, GET /v1/schedules[/{id}], DELETE /v1/schedules/{id}.

Each tick submits one job whose "schedule" names the schedule; jobs count their runs
in a side-effect file, so "one job per tick" is counted. With SQLite a schedule
survives a restart and a kill -9; ticks missed while the server was down make no job
("missed": "skip") or one at start ("run_once"). Schedules belong to their tenant.
"""

import datetime
import json
import os
import sys
import time

import cloudpickle
import pytest

from conftest import check_problem, make_payload, parse_ts, start_server, stop_server

cloudpickle.register_pickle_by_value(sys.modules[__name__])

IS_ROOT = os.geteuid() == 0
ROOT_OK = (["--allow-root-workers"] if IS_ROOT else []) + ["--allow-shared-worker-uid"]
ALICE = "alice-token-aaaaaaaaaaaaaaaaaaaa"
BOB = "bob-token-bbbbbbbbbbbbbbbbbbbbbbbb"


def mark(path):
    import time
    with open(path, "a") as f:
        f.write(f"{time.time()!r}\n")


def marks(path):
    try:
        with open(path) as f:
            return [float(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def call(s, method, path, body=None, token=None):
    headers = {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return s.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)


def jobs_of(s, sid, token=None):
    jobs = call(s, "GET", "/v1/jobs?limit=1000", token=token).json()["jobs"]
    return [j for j in jobs if j.get("schedule") == sid]


def test_every_second_one_job_per_tick_then_deleted(server, runs_dir):
    log = os.path.join(runs_dir, "n")
    r = call(server, "POST", "/v1/schedules", {"every": 1, "job": make_payload(mark, log)})
    assert r.status == 201, r
    sc = r.json()
    assert r.headers.get("Location") == f"/v1/schedules/{sc['id']}"
    assert sc["every"] == 1.0 and sc["cron"] is None and sc["timezone"] == "UTC"
    assert sc["missed"] == "skip" and sc["runs"] == 0 and sc["last_job"] is None
    assert abs(parse_ts(sc["next_run_at"]) - parse_ts(sc["created_at"]) - 1.0) < 0.01, sc
    time.sleep(3.4)
    got = call(server, "GET", f"/v1/schedules/{sc['id']}").json()
    assert got["runs"] >= 3 and got["last_job"], got
    jobs = jobs_of(server, sc["id"])
    assert len(jobs) == got["runs"] and len({j["id"] for j in jobs}) == len(jobs), jobs
    listed = call(server, "GET", "/v1/schedules").json()["schedules"]
    assert sc["id"] in [x["id"] for x in listed]
    assert call(server, "DELETE", f"/v1/schedules/{sc['id']}").status == 204
    check_problem(call(server, "GET", f"/v1/schedules/{sc['id']}"), 404)
    for j in jobs:
        server.wait_done(j["id"])
    n = len(marks(log))
    time.sleep(1.5)
    assert len(marks(log)) == n, "a deleted schedule still made jobs"
    ticks = sorted(marks(log))
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert all(0.7 < g < 1.3 for g in gaps), gaps


def test_cron_next_run_in_a_time_zone(server, runs_dir):
    log = os.path.join(runs_dir, "n")
    r = call(server, "POST", "/v1/schedules", {"cron": "*/5 * * * *", "job": make_payload(mark, log)})
    assert r.status == 201, r
    nxt = parse_ts(r.json()["next_run_at"])
    assert nxt % 300 == 0 and 0 < nxt - time.time() <= 300, r.json()
    # 09:00 in Kolkata (UTC+05:30, no DST) is 03:30 UTC.
    r = call(server, "POST", "/v1/schedules", {"cron": "0 9 * * *", "timezone": "Asia/Kolkata",
                                               "job": make_payload(mark, log)})
    assert r.status == 201, r
    at = datetime.datetime.fromtimestamp(parse_ts(r.json()["next_run_at"]), datetime.timezone.utc)
    assert (at.hour, at.minute) == (3, 30), at
    assert r.json()["timezone"] == "Asia/Kolkata"
    for sc in call(server, "GET", "/v1/schedules").json()["schedules"]:
        call(server, "DELETE", f"/v1/schedules/{sc['id']}")


def test_bad_schedules_name_the_field(server, runs_dir):
    log = os.path.join(runs_dir, "n")
    job = make_payload(mark, log)
    cases = [
        ({"job": job}, "give one of 'cron'"),
        ({"every": 1, "cron": "* * * * *", "job": job}, "give one of 'cron'"),
        ({"cron": "61 * * * *", "job": job}, "field 'cron': "),
        ({"cron": "* * * *", "job": job}, "field 'cron': "),
        ({"every": 0.1, "job": job}, "'every' must be a number of seconds from 1"),
        ({"every": 1}, "field 'job' is required"),
        ({"every": 1, "job": {}}, "job: field 'callable' is required"),
        ({"every": 1, "job": dict(job, delay=5)}, "job: field 'delay' has no place"),
        ({"cron": "0 0 * * *", "timezone": "Mars/Olympus", "job": job}, "field 'timezone': "),
        ({"cron": "0 0 * * *", "timezone": "../../etc/passwd", "job": job}, "field 'timezone': "),
        ({"every": 5, "timezone": "Europe/Paris", "job": job}, "goes with 'cron' only"),
        ({"every": 5, "missed": "later", "job": job}, "field 'missed' must be"),
        ({"every": 5, "job": job, "when": 1}, "unknown field 'when'"),
    ]
    for body, needle in cases:
        p = check_problem(call(server, "POST", "/v1/schedules", body), 400)
        assert needle in p["detail"], (body, p["detail"])
    p = check_problem(call(server, "POST", "/v1/schedules", {"cron": "0 0 32 * *", "job": job}), 400)
    assert "character" in p["detail"], p  # where the expression is wrong
    check_problem(call(server, "GET", "/v1/schedules/nope"), 404)
    check_problem(call(server, "PATCH", "/v1/schedules"), 405)
    assert call(server, "GET", "/v1/schedules").json()["schedules"] == []


def test_another_tenants_schedule_is_unknown(make_server, tmp_path, runs_dir):
    tf = tmp_path / "tokens"
    tf.write_text(f"alice:{ALICE}\nbob:{BOB}\n")
    tf.chmod(0o600)
    s = make_server("--workers", "1", "--token-file", str(tf), *ROOT_OK, ready=False)
    log = os.path.join(runs_dir, "n")
    sid = call(s, "POST", "/v1/schedules", {"every": 60, "job": make_payload(mark, log)},
               token=ALICE).json()["id"]
    check_problem(call(s, "GET", f"/v1/schedules/{sid}", token=BOB), 404)
    check_problem(call(s, "DELETE", f"/v1/schedules/{sid}", token=BOB), 404)
    assert call(s, "GET", "/v1/schedules", token=BOB).json()["schedules"] == []
    assert call(s, "GET", f"/v1/schedules/{sid}", token=ALICE).status == 200


def test_sqlite_restart_skip_and_run_once(make_server, tmp_path, runs_dir):
    db = str(tmp_path / "jobs.db")
    a, b = os.path.join(runs_dir, "skip"), os.path.join(runs_dir, "once")
    s = start_server("sched-before", "--workers", "1", "--store", f"sqlite:{db}")
    try:
        s.wait_ready()
        skip = call(s, "POST", "/v1/schedules", {"every": 1, "job": make_payload(mark, a)}).json()
        once = call(s, "POST", "/v1/schedules", {"every": 1, "missed": "run_once",
                                                 "job": make_payload(mark, b)}).json()
        time.sleep(1.5)
    finally:
        stop_server(s)
    na, nb = len(marks(a)), len(marks(b))
    assert na >= 1 and nb >= 1
    down_at = time.time()
    time.sleep(3.2)  # three ticks missed
    s2 = make_server("--workers", "1", "--store", f"sqlite:{db}", name="sched-after")
    up_at = time.time()
    time.sleep(0.6)
    end = time.time()

    def regular(sc):  # its ticks that came due since the restart (created + k s)
        c = parse_ts(sc["created_at"])
        return sum(1 for k in range(1, 100) if up_at - 0.3 <= c + k <= end)
    # run_once: one job at start for the missed ticks; skip: none (only regular ticks).
    assert len(marks(b)) == nb + 1 + regular(once), (nb, marks(b), up_at)
    assert len(marks(a)) == na + regular(skip), (na, marks(a), up_at)
    time.sleep(1.2)
    assert len(marks(a)) >= na + 1, "the schedule did not go on after the restart"
    got = call(s2, "GET", f"/v1/schedules/{skip['id']}").json()
    assert got["every"] == 1.0 and got["runs"] >= na + 1
    assert all(t < down_at or t > up_at - 0.2 for t in marks(a)), "a job ran while down?"
    assert len(jobs_of(s2, once["id"])) == len(marks(b))


def test_kill_9_never_doubles_a_tick(make_server, tmp_path, runs_dir):
    db = str(tmp_path / "jobs.db")
    log = os.path.join(runs_dir, "n")
    s = start_server("sched-kill", "--workers", "2", "--store", f"sqlite:{db}")
    s.wait_ready()
    sid = call(s, "POST", "/v1/schedules", {"every": 1, "missed": "run_once",
                                            "job": make_payload(mark, log)}).json()["id"]
    time.sleep(2.05)  # just after a tick
    s.kill()
    s2 = make_server("--workers", "2", "--store", f"sqlite:{db}", name="sched-kill-after")
    time.sleep(2.5)
    jobs = jobs_of(s2, sid)
    for j in jobs:
        s2.wait_done(j["id"])
    ids = [j["id"] for j in jobs]
    assert len(ids) == len(set(ids))
    # Every run is one listed job (none ran twice), ticks about a second apart.
    assert len(marks(log)) == len(jobs), (len(marks(log)), len(jobs))
    ticks = sorted(marks(log))
    assert all(b - a > 0.3 for a, b in zip(ticks, ticks[1:])), ticks


def test_client_schedule(server, runs_dir):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))
    import pyjobd
    log = os.path.join(runs_dir, "n")
    with pyjobd.Executor(server.base_url) as ex:
        sc = ex.schedule(mark, (log,), every=1)
        assert sc["every"] == 1.0
        assert sc["id"] in [x["id"] for x in ex.schedules()]
        time.sleep(1.5)
        assert ex.unschedule(sc["id"]) is True and ex.unschedule(sc["id"]) is False
        with pytest.raises(ValueError):
            ex.schedule(mark, (log,))
    deadline = time.time() + 10
    while not marks(log) and time.time() < deadline:
        time.sleep(0.1)
    assert len(marks(log)) >= 1


def nap(s):
    import time
    time.sleep(s)


def test_ticks_respect_the_tenants_queue_limit(make_server, runs_dir):
    """A schedule cannot flood the queue: a tick past --tenant-max-queued makes no job
    (said in the log), the next one in room does."""
    s = make_server("--workers", "1", "--tenant-max-queued", "1")
    log = os.path.join(runs_dir, "n")
    busy = call(s, "POST", "/v1/jobs", make_payload(nap, 3.5)).json()["id"]
    sid = call(s, "POST", "/v1/schedules", {"every": 1, "job": make_payload(mark, log)}).json()["id"]
    time.sleep(3.2)
    assert call(s, "GET", "/v1/pool").json()["queued"] <= 1
    assert len(jobs_of(s, sid)) == 1, jobs_of(s, sid)
    assert "this tick's job was not made" in s.log_tail()
    s.wait_done(busy)
    call(s, "DELETE", f"/v1/schedules/{sid}")
