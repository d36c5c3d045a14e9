"""Retry policies (issue 17 item 2): "retry": {"max", "on", "not_on", "backoff",
"on_crash", "on_timeout", "on_node_lost"}.

The jobs here count their attempts in a side-effect file, so every "retried", "not
retried" and "ran once" is counted. An exception is retried when a class of its MRO is
named in "on" and none in "not_on" (the worker matches; the server never unpickles);
attempt k+1 waits min(max, initial * factor^(k-1)) s after attempt k (the gaps are
asserted from the job's own history); the job is `scheduled` with `next_attempt_at`
meanwhile, and a kill -9 during that wait (SQLite) neither loses nor doubles it.
"""

import json
import os
import sys
import time

import cloudpickle
import pytest

from conftest import check_problem, make_payload, parse_ts, start_server

cloudpickle.register_pickle_by_value(sys.modules[__name__])
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client", "python"))


def flaky(path, failures, exc_name):
    """Raises exc_name (a builtin) the first `failures` times, then returns the count."""
    import builtins
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        n = len(f.read())
    if n <= failures:
        raise getattr(builtins, exc_name)(f"attempt {n} failed on purpose")
    return n


def count(path):
    try:
        with open(path) as f:
            return len(f.read())
    except FileNotFoundError:
        return 0


def post(s, body, path="/v1/jobs"):
    return s.request("POST", path, body=json.dumps(body),
                     headers={"Content-Type": "application/json"})


def req(path, failures, exc="ConnectionError", **retry):
    body = make_payload(flaky, path, failures, exc)
    body["retry"] = retry
    return body


def test_retried_on_a_named_exception_with_backoff_gaps(server, runs_dir):
    log = os.path.join(runs_dir, "n")
    job = post(server, req(log, 2, on=["ConnectionError"],
                           backoff={"initial": 0.2, "factor": 2})).json()
    assert job["retry"]["on"] == ["ConnectionError"] and job["retry"]["max"] == 3, job
    assert job["retry"]["backoff"] == {"initial": 0.2, "factor": 2.0, "max": 300.0,
                                       "jitter": False}, job
    # While it waits for its backoff: scheduled, with next_attempt_at.
    seen = None
    for _ in range(200):
        j = server.request("GET", f"/v1/jobs/{job['id']}").json()
        if j["status"] == "scheduled":
            seen = j
            break
        time.sleep(0.01)
    assert seen and seen.get("next_attempt_at"), "never saw the retry waiting"
    done = server.wait_done(job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 3, done
    assert "next_attempt_at" not in done
    h = done["history"]
    assert [a["attempt"] for a in h] == [1, 2, 3], h
    assert [a["error"]["type"] if a["error"] else None for a in h] == ["exception", "exception", None]
    assert "attempt 1 failed on purpose" in h[0]["error"]["message"]
    for k, want in ((1, 0.2), (2, 0.4)):
        gap = parse_ts(h[k]["started_at"]) - parse_ts(h[k - 1]["finished_at"])
        assert want <= gap < want + 0.15, f"gap before attempt {k + 1}: {gap:.3f} s, want {want}"
    assert count(log) == 3


def test_not_on_wins_and_unnamed_exceptions_are_not_retried(server, runs_dir):
    a, b, c = (os.path.join(runs_dir, x) for x in "abc")
    # ConnectionResetError is a ConnectionError, but not_on names it.
    j1 = post(server, req(a, 5, "ConnectionResetError", max=3, on=["ConnectionError"],
                          not_on=["ConnectionResetError"])).json()
    # Matched through the MRO when not excluded.
    j2 = post(server, req(b, 1, "ConnectionResetError", max=3, on=["builtins.ConnectionError"])).json()
    # Not named: not retried.
    j3 = post(server, req(c, 5, "ValueError", max=3, on=["ConnectionError"])).json()
    d1, d2, d3 = (server.wait_done(j["id"]) for j in (j1, j2, j3))
    assert d1["status"] == "failed" and d1["attempts"] == 1 and count(a) == 1, d1
    assert d2["status"] == "succeeded" and d2["attempts"] == 2 and count(b) == 2, d2
    assert d3["status"] == "failed" and d3["attempts"] == 1 and count(c) == 1, d3
    assert d3["error"]["exc_type"] == "ValueError"


def test_retries_run_out(server, runs_dir):
    log = os.path.join(runs_dir, "n")
    done = server.wait_done(post(server, req(log, 9, max=2, on=["ConnectionError"])).json()["id"])
    assert done["status"] == "failed" and done["attempts"] == 3 and count(log) == 3, done
    assert len(done["history"]) == 3 and all(a["error"] for a in done["history"])


def test_jitter_stays_within_the_delay(server, runs_dir):
    log = os.path.join(runs_dir, "n")
    done = server.wait_done(post(server, req(log, 3, max=3, on=["ConnectionError"],
                                             backoff={"initial": 0.3, "factor": 1,
                                                      "jitter": True})).json()["id"])
    assert done["status"] == "succeeded", done
    h = done["history"]
    gaps = [parse_ts(h[k]["started_at"]) - parse_ts(h[k - 1]["finished_at"]) for k in (1, 2, 3)]
    assert all(0 <= g < 0.3 + 0.1 for g in gaps), gaps


def die(path):
    import os
    with open(path, "a") as f:
        f.write("x")
    os._exit(3)


def test_on_crash_false_is_not_retried(server, runs_dir):
    log = os.path.join(runs_dir, "n")
    body = make_payload(die, log)
    body["retry"] = {"max": 3, "on_crash": False}
    done = server.wait_done(post(server, body).json()["id"])
    assert done["status"] == "failed" and done["error"]["type"] == "worker_crashed", done
    assert done["attempts"] == 1 and count(log) == 1
    body["retry"] = {"max": 2}  # on_crash defaults to true, as max_retries always did
    done = server.wait_done(post(server, body).json()["id"])
    assert done["attempts"] == 3 and count(log) == 4, done


def test_bad_retry_fields_name_the_field(server, runs_dir):
    log = os.path.join(runs_dir, "n")
    cases = [
        ({"retry": {"on": ["1abc"]}}, "retry.on[0]' is not an exception class name"),
        ({"retry": {"on": ["a..b"]}}, "wrong at character 3"),
        ({"retry": {"on": []}}, "retry.on' must be a list of 1 to 64"),
        ({"retry": {"on": "ConnectionError"}}, "retry.on' must be a list"),
        ({"retry": {"max": 99}}, "retry.max' must be an integer from 0 to"),
        ({"retry": {"tries": 3}}, "retry: unknown field 'tries'"),
        ({"retry": {"backoff": {"factor": 0.5}}}, "retry.backoff.factor"),
        ({"retry": {"backoff": {"initial": 5, "max": 1}}}, "must be at least 'initial'"),
        ({"retry": {"backoff": {"start": 1}}}, "retry.backoff: unknown field 'start'"),
        ({"retry": {"on_crash": "yes"}}, "retry.on_crash' must be true or false"),
        ({"retry": {"max": 1}, "max_retries": 1}, "mutually exclusive"),
        ({"retry": 3}, "field 'retry' must be an object"),
    ]
    for extra, needle in cases:
        body = make_payload(flaky, log, 0, "ValueError")
        body.update(extra)
        p = check_problem(post(server, body), 400)
        assert needle in p["detail"], (extra, p["detail"])
    assert count(log) == 0


def test_kill_9_during_a_backoff_wait_runs_it_once_more(make_server, runs_dir, tmp_path):
    db = str(tmp_path / "jobs.db")
    log = os.path.join(runs_dir, "n")
    s = start_server("retry-kill", "--workers", "1", "--store", f"sqlite:{db}")
    s.wait_ready()
    job = post(s, req(log, 1, max=3, on=["ConnectionError"], backoff={"initial": 1.5})).json()
    for _ in range(300):
        j = s.request("GET", f"/v1/jobs/{job['id']}").json()
        if j["status"] == "scheduled":
            break
        time.sleep(0.01)
    assert j["status"] == "scheduled", j
    next_at = parse_ts(j["next_attempt_at"])
    time.sleep(0.2)  # the scheduled state is committed by now (group commit)
    s.kill()
    s2 = make_server("--workers", "1", "--store", f"sqlite:{db}", name="retry-kill-after")
    done = s2.wait_done(job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    assert count(log) == 2, f"ran {count(log)} times"
    assert parse_ts(done["started_at"]) >= next_at - 0.002, "the retry started before its backoff"
    assert [a["attempt"] for a in done["history"]] == [1, 2]


def test_client_retry_policy(server, runs_dir):
    import pyjobd
    log = os.path.join(runs_dir, "n")
    with pyjobd.Executor(server.base_url,
                         retry=pyjobd.Retry(max=3, on=[ConnectionError], initial=0.05)) as ex:
        assert ex.submit(flaky, log, 2, "ConnectionError").result(30) == 3
        f = ex.submit_with(flaky, (os.path.join(runs_dir, "m"), 1, "ConnectionError"),
                           retry=pyjobd.Retry(max=1, on=["OSError"], not_on=[ConnectionError]))
        with pytest.raises(ConnectionError):
            f.result(30)
        assert f.job["attempts"] == 1 and f.job["retry"]["not_on"] == ["ConnectionError"]
