"""Job options of issue 17, items 5 and 6, as the API and the stores see them:
"priority" (-100..100, default 0) and "soft_timeout" (> 0 seconds, less than the job's
timeout, the request's or the server's --default-timeout).

* every answer carrying a job is checked against openapi.yaml; both fields are echoed
  (single and batch submissions, GET);
* every bad value is a 400 problem+json naming the field and its allowed range;
* SQLite: a queued job keeps both across a restart (and the row has them);
* PostgreSQL: two nodes see the same values; a v1 schema made by hand is migrated in
  place; one tenant's queued jobs of priorities 0, 5, -5, 5 are claimed 5, 5, 0, -5.

What the options do inside the pool and the worker (the in-memory order, raising
pyjobd.SoftTimeout) is tested elsewhere: on the memory and SQLite stores this file
asserts no run order.

    PYJOBD_BIN=build/pyjobd /usr/bin/python3 -m pytest -q tests/integration/test_job_options.py
"""

import json
import os
import shutil
import signal
import sqlite3
import tempfile
import time

import cloudpickle
import pytest

from conftest import REPO_ROOT, TERMINAL, b64, check_problem, start_server, stop_server
from conftest_pg import pg_db, pg_server  # noqa: F401  (fixtures)
from openapi_check import Contract, checked_call
from test_cluster import Cluster, result_of, wait_for

CONTRACT = Contract()
ABS = b64(cloudpickle.dumps(abs))  # builtins.abs, by reference: tiny


def call(server, method, path, body=None, expect=None):
    """One request, its answer checked against openapi.yaml (r.value: the parsed body)."""
    return checked_call(CONTRACT, server, method, path, body, expect)


def source_define(path, name):
    """The number a #define in the server's source gives name: the schema version a store
    must end at (exact, and right again when a later change bumps it)."""
    import re

    with open(os.path.join(REPO_ROOT, path)) as f:
        m = re.search(rf"^#define {name} (\d+)$", f.read(), re.M)
    assert m, f"no #define {name} in {path}"
    return int(m.group(1))


def abs_job(**fields):
    return dict({"callable": ABS, "json_args": [-3], "result_format": "json"}, **fields)


def _sleeper():
    def wait_for_file(path, limit=60.0):
        """Runs until path exists (or limit seconds pass)."""
        import os
        import time
        t0 = time.monotonic()
        while not os.path.exists(path) and time.monotonic() - t0 < limit:
            time.sleep(0.01)
        return "released"
    return wait_for_file


SLEEPER_B64 = b64(cloudpickle.dumps(_sleeper()))


@pytest.fixture
def work_dir():
    d = tempfile.mkdtemp(prefix="pyjobd-options-")
    os.chmod(d, 0o777)  # workers may run as another user
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def opt_server():
    """Memory store, --default-timeout 20 (the hard stop of requests without one)."""
    s = start_server("options", "--workers", "1", "--default-timeout", "20")
    try:
        s.wait_ready()
        yield s
    finally:
        stop_server(s)


# --------------------------------------------------------------------------- the API


def test_options_are_echoed_in_the_job(opt_server):
    job = call(opt_server, "POST", "/v1/jobs?wait=10", abs_job(priority=7, soft_timeout=2.5, timeout=10),
               expect=201).value
    assert job["priority"] == 7 and job["soft_timeout"] == 2.5, job
    got = call(opt_server, "GET", f"/v1/jobs/{job['id']}", expect=200).value
    assert got["priority"] == 7 and got["soft_timeout"] == 2.5, got
    assert got["timeout"] == 10
    # The defaults: priority 0, no soft timeout (null, the key always present).
    job = call(opt_server, "POST", "/v1/jobs", abs_job(), expect=201).value
    assert job["priority"] == 0 and "soft_timeout" in job and job["soft_timeout"] is None, job
    assert list(job).index("priority") == list(job).index("max_retries") + 1, list(job)
    # Below the server's default timeout: accepted without a timeout of its own.
    job = call(opt_server, "POST", "/v1/jobs", abs_job(priority=-100, soft_timeout=19.5), expect=201).value
    assert job["priority"] == -100 and job["soft_timeout"] == 19.5 and job["timeout"] == 20, job
    # Batches: each job its own.
    jobs = call(opt_server, "POST", "/v1/jobs/batch",
                {"jobs": [abs_job(priority=100), abs_job(), abs_job(soft_timeout=1)]}, expect=201).value["jobs"]
    assert [(j["priority"], j["soft_timeout"]) for j in jobs] == [(100, None), (0, None), (0, 1)], jobs
    for j in jobs:
        call(opt_server, "GET", f"/v1/jobs/{j['id']}?wait=10", expect=200)


BAD = [
    ({"priority": 101}, "field 'priority' must be an integer from -100 to 100", "got 101"),
    ({"priority": -101}, "field 'priority' must be an integer from -100 to 100", "got -101"),
    ({"priority": 2.5}, "field 'priority' must be an integer from -100 to 100", "got 2.5"),
    ({"priority": "high"}, "field 'priority' must be an integer from -100 to 100", "got string"),
    ({"priority": True}, "field 'priority' must be an integer from -100 to 100", "got boolean"),
    ({"soft_timeout": 0}, "field 'soft_timeout' must be a number of seconds > 0", "got 0"),
    ({"soft_timeout": -3}, "field 'soft_timeout' must be a number of seconds > 0", "got -3"),
    ({"soft_timeout": "5"}, "field 'soft_timeout' must be a number of seconds > 0", "got string"),
    ({"soft_timeout": 30, "timeout": 30},
     "field 'soft_timeout' must be less than 'timeout' (30 s): it is the warning before the hard stop", "30"),
    ({"soft_timeout": 45.5, "timeout": 30}, "field 'soft_timeout' must be less than 'timeout' (30 s)", "45.5"),
    ({"soft_timeout": 20}, "field 'soft_timeout' must be less than the job's timeout, here the server's "
                           "--default-timeout (20 s)", "got 20"),
]


@pytest.mark.parametrize("fields,want,got", BAD, ids=[json.dumps(b[0]) for b in BAD])
def test_bad_values_are_400_naming_the_field_and_range(opt_server, fields, want, got):
    r = call(opt_server, "POST", "/v1/jobs", abs_job(**fields))
    p = check_problem(r, 400)
    assert want in p["detail"] and got in p["detail"], p["detail"]
    # The same in a batch, with the index of the bad job.
    r = call(opt_server, "POST", "/v1/jobs/batch", {"jobs": [abs_job(), abs_job(**fields)]})
    p = check_problem(r, 400)
    assert p["detail"].startswith("jobs[1]: ") and want in p["detail"], p["detail"]


# --------------------------------------------------------------------------- SQLite


def test_sqlite_queued_job_keeps_its_options_across_a_restart(tmp_path, work_dir):
    db = tmp_path / "jobs.db"
    gate = os.path.join(work_dir, "gate")
    s = start_server("options-sqlite", "--store", f"sqlite:{db}", "--workers", "1", "--shutdown-grace", "0.2")
    s2 = None
    try:
        s.wait_ready()
        blocker = call(s, "POST", "/v1/jobs", {"callable": SLEEPER_B64, "json_args": [gate]}, expect=201).value
        wait_for("the blocker to start", lambda: call(s, "GET", f"/v1/jobs/{blocker['id']}").value["status"]
                 == "running", 10)
        job = call(s, "POST", "/v1/jobs", abs_job(priority=-7, soft_timeout=3.5, timeout=9), expect=201).value
        assert job["status"] == "queued" and job["priority"] == -7 and job["soft_timeout"] == 3.5, job
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=15) == 0, s.log_tail()
        s.proc.stdout.close()
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT status, priority, soft_timeout FROM jobs WHERE id = ?", (job["id"],)).fetchone()
            version = con.execute("PRAGMA user_version").fetchone()[0]
        finally:
            con.close()
        assert row == (0, -7, 3.5), f"the stored row (status, priority, soft_timeout): {row}"
        assert version == source_define("pool/store/store_sqlite_schema.c", "STORE_SCHEMA"), version
        s2 = start_server("options-sqlite-2", "--store", f"sqlite:{db}", "--workers", "1")
        got = call(s2, "GET", f"/v1/jobs/{job['id']}", expect=200).value
        assert got["priority"] == -7 and got["soft_timeout"] == 3.5 and got["timeout"] == 9, got
        done = call(s2, "GET", f"/v1/jobs/{job['id']}?wait=20", expect=200).value
        assert done["status"] == "succeeded" and done["priority"] == -7 and done["soft_timeout"] == 3.5, done
    finally:
        with open(gate, "w"):
            pass
        s.kill()
        if s2 is not None:
            stop_server(s2)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def cluster(pg_db):
    c = Cluster(pg_db)
    try:
        yield c
    finally:
        c.close()


def test_pg_two_nodes_see_the_same_options(cluster):
    a = cluster.node("a")
    b = cluster.node("b")
    req = cluster.record_request("opt", priority=42, soft_timeout=1.25, timeout=6)
    job = a.submit_req(req)
    assert job["priority"] == 42 and job["soft_timeout"] == 1.25, job
    for n in (a, b):
        got = n.job(job["id"])
        assert got["priority"] == 42 and got["soft_timeout"] == 1.25 and got["timeout"] == 6, (n.name, got)
    done = b.done(job["id"])
    assert done["status"] == "succeeded" and done["priority"] == 42 and done["soft_timeout"] == 1.25, done
    rows = cluster.db.query(f"SELECT priority, soft_timeout FROM pyjobd.jobs WHERE id = '{job['id']}'")
    assert rows == [{"priority": 42, "soft_timeout": 1.25}], rows
    # Defaults, through the other node.
    job = b.submit_req(cluster.record_request("plain"))
    assert a.job(job["id"])["priority"] == 0 and a.job(job["id"])["soft_timeout"] is None


def test_pg_claim_order_is_priority_then_age_within_a_tenant(cluster):
    """One worker, busy: the tenant's queued jobs of priorities 0, 5, -5, 5 wait in the
    database; once the worker is free they are claimed (and run) 5, 5, 0, -5, the two
    fives oldest first. Four older jobs of priority -10 come before them in the queue:
    claimed by age, they would run first (a node may claim a few jobs ahead and order
    them itself, but not eight)."""
    a = cluster.node("a", workers=1)
    blocker = a.submit_req(cluster.gated_request("blocker"))
    cluster.wait_line("start", "blocker")
    ids = {}
    jobs = [(f"f{i}", -10) for i in range(1, 5)] + [("p0", 0), ("p5a", 5), ("pm5", -5), ("p5b", 5)]
    for token, prio in jobs:
        job = a.submit_req(cluster.record_request(token, priority=prio))
        assert job["status"] == "queued" and "node" not in job, f"claimed while the worker is busy: {job}"
        ids[token] = job["id"]
    queued = cluster.db.value("SELECT count(*) FROM pyjobd.jobs WHERE status = 0 AND node IS NULL")
    assert queued == 8, f"{queued} jobs unclaimed in the database (expected 8)"
    cluster.open_gate("blocker")
    a.done(blocker["id"])
    for i in ids.values():
        assert a.done(i)["status"] == "succeeded"
    order = [ln.token for ln in cluster.lines() if ln.what == "run"]
    assert order == ["p5a", "p5b", "p0", "pm5", "f1", "f2", "f3", "f4"], f"run order {order}"


# Version 1 of the PostgreSQL schema, as it shipped (pool/store/pg/pg_sql.c before
# schema version 2), with a queued job in it.
PG_V1 = """
CREATE SCHEMA pyjobd; SET search_path TO pyjobd;
CREATE TABLE meta (version int NOT NULL); INSERT INTO meta VALUES (1);
CREATE TABLE nodes (id text PRIMARY KEY, lease_ms int NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(), heartbeat_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE jobs (id text PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY,
  owner text NOT NULL, status smallint NOT NULL, node text,
  has_waiter boolean NOT NULL DEFAULT false, created_us bigint NOT NULL,
  started_us bigint NOT NULL DEFAULT 0, finished_us bigint NOT NULL DEFAULT 0,
  timeout float8 NOT NULL, attempts int NOT NULL DEFAULT 0,
  worker_pid int NOT NULL DEFAULT 0, max_retries int NOT NULL,
  retry_on_timeout boolean NOT NULL, result_json_fmt boolean NOT NULL,
  metadata text, err_type smallint NOT NULL DEFAULT 0, err_message text,
  err_exc_type text, err_exit_code int NOT NULL DEFAULT -1,
  err_signal int NOT NULL DEFAULT 0, err_max_rss bigint NOT NULL DEFAULT -1);
CREATE INDEX jobs_claimable ON jobs (seq) WHERE status = 0 AND node IS NULL;
CREATE INDEX jobs_claimable_owner ON jobs (owner, seq) WHERE status = 0 AND node IS NULL;
CREATE INDEX jobs_running_owner ON jobs (owner) WHERE status = 1;
CREATE INDEX jobs_by_node ON jobs (node) WHERE status IN (0, 1);
CREATE INDEX jobs_finished ON jobs (finished_us) WHERE status >= 2;
CREATE TABLE payloads (id text PRIMARY KEY REFERENCES jobs ON DELETE CASCADE, callable bytea NOT NULL,
  args bytea, kwargs bytea, json_args bytea, json_kwargs bytea);
CREATE TABLE results (id text PRIMARY KEY REFERENCES jobs ON DELETE CASCADE, result bytea,
  result_json bytea, err_exception bytea, err_traceback text);
INSERT INTO jobs (id, owner, status, created_us, timeout, max_retries, retry_on_timeout, result_json_fmt)
  VALUES ('{id}', '', 0, (extract(epoch FROM now()) * 1e6)::int8, 0, 0, false, false);
INSERT INTO payloads (id, callable, json_args) VALUES ('{id}', decode('{callable}', 'hex'), '[-4]');
"""


def test_pg_v1_schema_is_migrated_in_place(cluster):
    old_id = "ab" * 16
    cluster.db.sql(PG_V1.format(id=old_id, callable=cloudpickle.dumps(abs).hex()))
    a = cluster.node("a")
    assert cluster.db.value("SELECT max(version) FROM pyjobd.meta") == source_define(
        "pool/store/pg/pg_sql.h", "PG_SCHEMA_VERSION")  # migrated to the current schema
    cols = cluster.db.query("SELECT column_name, data_type, column_default FROM information_schema.columns"
                            " WHERE table_schema = 'pyjobd' AND table_name = 'jobs'"
                            " AND column_name IN ('priority', 'soft_timeout') ORDER BY 1")
    assert [(c["column_name"], c["data_type"]) for c in cols] == [("priority", "smallint"),
                                                                  ("soft_timeout", "double precision")], cols
    idx = {r["indexname"]: r["indexdef"] for r in
           cluster.db.query("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'pyjobd'")}
    assert "jobs_claimable_owner" not in idx, idx
    assert "(owner, priority DESC, seq)" in idx.get("jobs_claimable_prio", ""), idx
    done = a.done(old_id)
    assert result_of(done) == 4, done
    assert done["priority"] == 0 and done["soft_timeout"] is None, done
    # New jobs beside it keep theirs; a second node opening the migrated schema is fine.
    b = cluster.node("b")
    job = b.submit_req(cluster.record_request("new", priority=-3, soft_timeout=0.5))
    assert a.done(job["id"])["priority"] == -3
