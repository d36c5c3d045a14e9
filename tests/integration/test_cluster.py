"""Several pyjobd nodes, one queue: the PostgreSQL shared store (issue 10).

A real PostgreSQL server runs on loopback for the session (pgserver.py,
conftest_pg.py); every test gets its own database and starts its own nodes with
`--store postgresql://...`, one or two workers each, `--worker-env NODE=<name>` so
that a job can tell which node ran it, and a short `--node-lease`. Jobs leave their
side effects in one file per test (O_APPEND lines: what, token, node, pid, time), so
"ran exactly once" and "ran on node X" are checked outside pyjobd. Every response is
checked against openapi.yaml.

Run from the repository root:

    PYJOBD_BIN=build/pyjobd /usr/bin/python3 -m pytest -q tests/integration/test_cluster.py

PostgreSQL comes from Debian (`make deps` installs it); PYJOBD_PG_OPTIONAL=1 skips
these tests when it is not installed. test_pg_harness checks the harness itself.
"""

import collections
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import cloudpickle
import pytest

from conftest import _pid_alive, b64, check_job, pyjobd_bin, Server, TERMINAL
from conftest_pg import pg_db, pg_server  # noqa: F401  (fixtures)
from openapi_check import Contract, checked_call
from pgserver import free_port

CONTRACT = Contract()

LEASE = 1.5  # --node-lease of the nodes under test (seconds)
REAP_BOUND = LEASE * 3 + 2  # a dead node's jobs are re-queued or failed within this
NODE_ID_RE = re.compile(r"^(?P<name>.+)-[0-9a-f]{8}$")
POLL = 0.02  # how often the tests poll files and job states


# --------------------------------------------------------------------------- jobs
#
# Built inside a function so that cloudpickle sends them by value (module-level
# functions of a test module would be pickled by reference, see conftest.py).


def _job_functions():
    def note(log, what, token):
        """Appends 'what token node pid time' to log, in one write (O_APPEND)."""
        import os
        import time
        node = os.environ.get("NODE", "?")
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, f"{what} {token} {node} {os.getpid()} {time.time():.6f}\n".encode())
        finally:
            os.close(fd)
        return node

    def record(log, token, delay=0.0):
        """Leaves one 'run' line and returns [token, node]."""
        import time
        node = note(log, "run", token)
        if delay:
            time.sleep(delay)
        return [token, node]

    def gated(log, token, gate, release_all, first_only=True, limit=60.0):
        """Notes 'start', waits for the gate file (only on its first run when
        first_only), notes 'end'; returns who ran it and when it ended."""
        import os
        import time
        first = True
        if first_only:
            try:
                os.close(os.open(f"{log}.{token}.first", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                first = False
        node = note(log, "start", token)
        if first or not first_only:
            deadline = time.time() + limit
            while not (os.path.exists(gate) or os.path.exists(release_all)) and time.time() < deadline:
                time.sleep(0.005)
        end = time.time()
        note(log, "end", token)
        return {"node": node, "first": first, "end": end}

    return record, gated


RECORD, GATED = _job_functions()
RECORD_B64 = b64(cloudpickle.dumps(RECORD))
GATED_B64 = b64(cloudpickle.dumps(GATED))

Line = collections.namedtuple("Line", "what token node pid t")


def job_request(callable_b64, *args, **fields):
    req = {"callable": callable_b64}
    if args:
        req["args"] = b64(cloudpickle.dumps(tuple(args)))
    req.update(fields)
    return req


def result_of(job):
    assert job["status"] == "succeeded", f"job did not succeed: {job}"
    return cloudpickle.loads(__import__("base64").b64decode(job["result"]))


def check_cluster_job(job):
    """conftest.check_job, plus the cluster field `node`."""
    check_job(job)
    node = job.get("node")
    assert node is None or (isinstance(node, str) and NODE_ID_RE.match(node)), f"bad node {node!r}: {job}"
    if job["status"] in ("running", "succeeded"):
        assert isinstance(node, str), f"{job['status']} job without the node that ran it: {job}"
    return job


def wait_for(what, predicate, timeout, interval=POLL):
    """Polls predicate() until it returns something truthy (returned); fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.1f}s")
        time.sleep(interval)


# --------------------------------------------------------------------------- nodes


class Node(Server):
    """A pyjobd node (conftest.Server) whose answers are checked against openapi.yaml."""

    def __init__(self, args, name, env=None):
        super().__init__(args, name, env=env)
        self.killed = False
        self.stopped = False  # SIGSTOPped
        self.node_id = None
        self.lost_workers = set()

    def call(self, method, path, body=None, expect=None, timeout=30.0):
        return checked_call(CONTRACT, self, method, path, body, expect, timeout,
                            who=f"node {self.name}: ")

    def submit_req(self, req):
        job = self.call("POST", "/v1/jobs", req, expect=201).value
        return check_cluster_job(job)

    def job(self, job_id, wait=None):
        path = f"/v1/jobs/{job_id}" + (f"?wait={wait}" if wait is not None else "")
        job = self.call("GET", path, expect=200, timeout=10 + (wait or 0)).value
        assert job["id"] == job_id
        return check_cluster_job(job)

    def done(self, job_id, timeout=30.0):
        """Long-polls until the job is terminal."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"job {job_id} not finished after {timeout}s (node {self.name}): {self.job(job_id)}")
            job = self.job(job_id, wait=max(1, min(10, int(left))))
            if job["status"] in TERMINAL:
                return job

    def kill9(self):
        """kill -9 the node and its workers (a machine that died)."""
        pids = self._child_pids()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)
        self.killed = True
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.lost_workers |= pids
        self.proc.stdout.close()
        self._log_file.flush()

    def sigstop(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.stopped = False


class Cluster:
    """Nodes on one database, a worker-writable directory with the side-effect log
    and gate files. close() stops everything by PID."""

    def __init__(self, db):
        self.db = db
        self.dir = tempfile.mkdtemp(prefix="pyjobd-cluster-")
        os.chmod(self.dir, 0o777)  # workers may run as another user
        self.log = os.path.join(self.dir, "log")
        self.release_all_path = os.path.join(self.dir, "release-all")
        self.nodes = []

    def node(self, name, *extra, lease=LEASE, store=None, workers=1, env=None, flags=True):
        """Starts a node named name (--node-name, NODE=name for its workers) and waits
        until a worker is up. flags=False passes the store and lease in the
        environment (PYJOBD_STORE, PYJOBD_NODE_LEASE) instead of flags."""
        args = ["--node-name", name, "--workers", str(workers), "--worker-env", f"NODE={name}",
                "--default-timeout", "0", "--shutdown-grace", "2"]
        env = dict(env or {})
        if flags:
            args += ["--store", store or self.db.uri, "--node-lease", str(lease)]
        else:
            env.update(PYJOBD_STORE=store or self.db.uri, PYJOBD_NODE_LEASE=str(lease))
        n = Node(args + list(extra), f"node-{name}", env=env)
        n.short = name
        self.nodes.append(n)
        n.start()
        info = n.wait_ready()
        n.node_id = info.get("node")
        return n

    def by_name(self, short):
        return next(n for n in self.nodes if n.short == short)

    # ---- side effects

    def lines(self):
        try:
            with open(self.log) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        out = []
        for raw in text.splitlines():
            parts = raw.split()
            assert len(parts) == 5, f"torn line in the side-effect log: {raw!r}"
            out.append(Line(parts[0], parts[1], parts[2], int(parts[3]), float(parts[4])))
        return out

    def wait_line(self, what, token, node=None, timeout=10.0):
        """The first 'what token' line (written on node, if given), waiting for it."""
        return wait_for(f"a '{what} {token}{' ' + node if node else ''}' line in the side-effect log",
                        lambda: next((ln for ln in self.lines() if ln.what == what and ln.token == token
                                      and node in (None, ln.node)), None),
                        timeout)

    def gate(self, name):
        return os.path.join(self.dir, f"gate-{name}")

    def open_gate(self, name):
        with open(self.gate(name), "w"):
            pass

    def gated_request(self, token, first_only=True, **fields):
        return job_request(GATED_B64, self.log, token, self.gate(token), self.release_all_path, first_only,
                           **fields)

    def record_request(self, token, delay=0.0, **fields):
        return job_request(RECORD_B64, self.log, token, delay, **fields)

    # ---- teardown

    def close(self):
        problems = []
        try:
            with open(self.release_all_path, "w"):
                pass
        except OSError:
            pass
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.sigcont()
        for n in self.nodes:
            if n.proc is None:
                continue
            if n.killed:  # its log is in the test report if the test failed
                n._log_file.close()
                n.reported_dead = True
                try:
                    os.unlink(n.log_path)
                except OSError:
                    pass
                continue
            p = n.stop()
            if p:
                problems.append(f"{n.name}: " + "; ".join(p) + f"\nstderr:\n{n.log_tail()}")
        for n in self.nodes:
            for pid in n.lost_workers:
                if _pid_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        shutil.rmtree(self.dir, ignore_errors=True)
        if problems:
            pytest.fail("unclean node shutdown: " + "\n".join(problems))


@pytest.fixture
def cluster(pg_db):
    c = Cluster(pg_db)
    try:
        yield c
    finally:
        c.close()


def node_env():
    """The environment conftest gives servers (no PYJOBD_* leaks, root workers allowed)."""
    return Server([], "env")._environment()


def run_until_exit(cmd, timeout):
    """Runs a node expected to refuse to start. Returns (exit code, stdout, stderr
    text); exit code None when it was still running after timeout or printed its
    'listening on' line (it is killed then)."""
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf,
                                env=node_env())
        out = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                r, _, _ = select.select([proc.stdout], [], [], 0.1)
                if r:
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    out += chunk
                    if out.startswith(b"listening on") and b"\n" in out:
                        break
                    if not chunk:
                        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                        break
                elif proc.poll() is not None:
                    break
        except subprocess.TimeoutExpired:
            pass
        finally:
            rc = proc.poll()
            if rc is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        errf.seek(0)
        return rc, out, errf.read().decode("utf-8", "replace")


# --------------------------------------------------------------------------- the harness


def test_pg_harness(pg_server, pg_db):
    """The PostgreSQL harness: a server of our own on loopback, databases, queries, a
    restart on the same port with the data kept."""
    assert pg_server.running and pg_server.port and pg_server.port != 5432
    if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as postgres
        with open(f"/proc/{pg_server.pid}/status") as f:
            uid = int(next(ln for ln in f if ln.startswith("Uid:")).split()[1])
        assert uid != 0, "postgres runs as root"
    assert pg_db.value("SELECT 1") == 1
    assert pg_db.sql("SELECT 1, NULL::text, 'a b'") == [("1", None, "a b")]
    other = pg_server.create_database("harness_other")
    try:
        assert other == f"postgresql://postgres@127.0.0.1:{pg_server.port}/harness_other"
        assert pg_server.value("harness_other", "SELECT current_database()") == "harness_other"
        pg_db.sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'kept')")
        port, pid = pg_server.port, pg_server.pid
        down = pg_server.restart()
        assert pg_server.port == port and pg_server.pid != pid and not _pid_alive(pid)
        assert down < 15, f"restart took {down:.1f}s"
        assert pg_db.query("SELECT id, v FROM t") == [{"id": 1, "v": "kept"}]
        assert pg_server.value("harness_other", "SELECT 1") == 1
        assert pg_server.terminate_connections(pg_db.name) == 0
        # libpq (psql) accepts both URI schemes the nodes accept.
        for uri in (pg_db.uri, pg_db.uri_postgres):
            r = subprocess.run([pg_server.bin("psql"), "-X", "-A", "-t", "-d", uri, "-c", "SELECT 7"],
                               capture_output=True, timeout=30)
            assert r.stdout.strip() == b"7", r
    finally:
        pg_server.drop_database("harness_other")


# --------------------------------------------------------------------------- startup


@pytest.mark.parametrize("case", ["unreachable", "malformed_port", "unknown_option", "unknown_database"])
def test_bad_store_uri_fails_clearly(pg_server, case):
    """A node whose --store cannot work exits non-zero at start, saying why (and
    without printing the password)."""
    secret = "pw-Sup3rSecret"
    dead_port = free_port()
    uri, needle = {
        "unreachable": (f"postgresql://postgres:{secret}@127.0.0.1:{dead_port}/x", str(dead_port)),
        "malformed_port": (f"postgresql://postgres:{secret}@127.0.0.1:notaport/x", "notaport"),
        "unknown_option": (f"postgresql://postgres:{secret}@127.0.0.1:{pg_server.port}/postgres?bogusopt=1",
                           "bogusopt"),
        "unknown_database": (pg_server.uri("no_such_db_here", password=secret), "no_such_db_here"),
    }[case]
    cmd = [pyjobd_bin(), "--port", "0", "--listen", "127.0.0.1", "--workers", "1", "--store", uri,
           "--node-lease", str(LEASE)]
    rc, out, err = run_until_exit(cmd, timeout=30)
    assert not out.startswith(b"listening on"), f"{cmd} started (it should refuse to): {out!r}\n{err}"
    assert rc is not None, f"{cmd} still running after 30s (it should refuse to start): stdout {out!r}\n{err}"
    assert rc != 0, f"started with --store {uri}: exit 0\nstdout {out!r}\nstderr {err}"
    assert needle in err, f"stderr does not name the problem ({needle!r}):\n{err}"
    assert secret not in err, f"stderr shows the password:\n{err}"


def test_info_names_node_and_store(cluster):
    """GET /v1/info: this node's id (NAME-<8 hex>) and the store, without the
    password; the store and lease may also come from the environment, and the
    postgres:// scheme works too."""
    secret = "pw-NotInLogs42"
    pg = cluster.db.server
    a = cluster.node("alpha", store=pg.uri(cluster.db.name, password=secret))
    b = cluster.node("beta", store=cluster.db.uri_postgres, flags=False)
    ids = set()
    for n, name in ((a, "alpha"), (b, "beta")):
        info = n.call("GET", "/v1/info", expect=200).value
        m = NODE_ID_RE.match(info.get("node") or "")
        assert m and m.group("name") == name, f"/v1/info node {info.get('node')!r} is not {name}-<8 hex>"
        assert info["store"].startswith(("postgresql:", "postgres:")), f"store {info['store']!r}"
        assert secret not in json.dumps(info), f"/v1/info shows the password: {info}"
        ids.add(info["node"])
    assert len(ids) == 2
    assert secret not in a.log_tail(100000), "the node's log shows the password"


# --------------------------------------------------------------------------- any node


def test_any_node_answers_for_any_job(cluster):
    """A job submitted on A is seen, long-polled, fetched and deleted through B and C."""
    a, b, c = (cluster.node(x) for x in "abc")
    job = a.submit_req(cluster.record_request("t1"))
    done = b.done(job["id"], timeout=20)
    assert done["status"] == "succeeded", done
    token, ran_on = result_of(done)
    assert token == "t1" and ran_on in "abc"
    assert done["node"] == cluster.by_name(ran_on).node_id, f"node field {done['node']!r} but NODE={ran_on}"
    same = {k: v for k, v in done.items()}
    for n in (a, b, c):
        j = n.job(job["id"])
        assert j == same, f"node {n.name} answers {j}\nnode b answered {same}"
        r = n.call("GET", f"/v1/jobs/{job['id']}/result", expect=200)
        assert cloudpickle.loads(r.body) == ["t1", ran_on]
    listed = c.call("GET", "/v1/jobs?limit=10", expect=200).value
    assert job["id"] in [j["id"] for j in listed["jobs"]], listed
    b.call("GET", "/v1/jobs/0123456789abcdef0123456789abcdef", expect=404)
    c.call("DELETE", f"/v1/jobs/{job['id']}", expect=204)
    a.call("GET", f"/v1/jobs/{job['id']}", expect=404)
    assert [ln.token for ln in cluster.lines()] == ["t1"]


def test_cancel_queued_job_from_another_node(cluster):
    """With every worker busy, a job queued through A is cancelled through B and
    never runs."""
    a, b = cluster.node("a"), cluster.node("b")
    busy = [a.submit_req(cluster.gated_request(f"busy{i}")) for i in range(2)]
    for i in range(2):
        cluster.wait_line("start", f"busy{i}")
    queued = a.submit_req(cluster.record_request("never"))
    assert a.job(queued["id"])["status"] == "queued"
    r = b.call("POST", f"/v1/jobs/{queued['id']}/cancel", expect=200)
    assert r.value["status"] == "cancelled", r.value
    assert a.job(queued["id"])["status"] == "cancelled"
    for i in range(2):
        cluster.open_gate(f"busy{i}")
    for j in busy:
        assert b.done(j["id"], timeout=15)["status"] == "succeeded"
    time.sleep(1.0)  # a wrongly claimed job would run now that workers are free
    assert "never" not in [ln.token for ln in cluster.lines()]
    assert a.job(queued["id"])["status"] == "cancelled"


def test_cancel_job_running_on_another_node(cluster):
    """A job that node A runs is cancelled through B: without force 409 (it is
    running), with force B relays the cancel to A, which kills its worker; B answers
    with the cancelled job and A runs the next job as usual."""
    a, b = cluster.node("a"), cluster.node("b", workers=1)
    job = a.submit_req(cluster.gated_request("victim"))
    cluster.wait_line("start", "victim")
    assert a.job(job["id"])["node"] == a.node_id
    r = b.call("POST", f"/v1/jobs/{job['id']}/cancel", expect=409)
    assert "running" in r.value["detail"], r.value
    t0 = time.monotonic()
    r = b.call("POST", f"/v1/jobs/{job['id']}/cancel?force=true", expect=200)
    took = time.monotonic() - t0
    assert r.value["status"] == "cancelled", r.value
    assert r.value["error"]["type"] == "cancelled", r.value
    assert took < 3, f"cross-node cancel took {took:.2f}s"
    for n in (a, b):
        assert n.job(job["id"])["status"] == "cancelled"
    cluster.open_gate("victim")  # a worker that survived would now write "end"
    after = a.submit_req(cluster.record_request("after"))
    assert b.done(after["id"], timeout=20)["status"] == "succeeded"
    assert "victim" not in [ln.token for ln in cluster.lines() if ln.what == "end"]


def test_max_queue_bounds_the_shared_queue(cluster):
    """--max-queue bounds the jobs waiting in the database for any node (not only a
    node's own queue): with every worker busy, submissions beyond it answer 429 on
    either node, and are accepted again once the queue drains."""
    a = cluster.node("a", "--max-queue", "3")
    b = cluster.node("b", "--max-queue", "3")
    busy = [a.submit_req(cluster.gated_request(f"busy{i}")) for i in range(2)]
    for i in range(2):
        cluster.wait_line("start", f"busy{i}")
    # busy1 went through the database's queue to b: the count forgets it within the
    # poll interval (until then the estimate errs on the full side).
    time.sleep(1.5)
    queued = [a.submit_req(cluster.record_request(f"q{i}")) for i in range(3)]
    r = a.call("POST", "/v1/jobs", cluster.record_request("over"), expect=429)
    assert "--max-queue" in r.value["detail"], r.value
    time.sleep(1.5)  # b counts the shared queue at its poll interval (1 s)
    b.call("POST", "/v1/jobs", cluster.record_request("over-b"), expect=429)
    for i in range(2):
        cluster.open_gate(f"busy{i}")
    for j in busy + queued:
        assert b.done(j["id"], timeout=20)["status"] == "succeeded"
    time.sleep(1.5)
    later = b.submit_req(cluster.record_request("later"))
    assert a.done(later["id"], timeout=20)["status"] == "succeeded"
    assert not {"over", "over-b"} & {ln.token for ln in cluster.lines()}


def test_three_nodes_run_300_jobs_exactly_once(cluster):
    """300 jobs submitted to node A run exactly once each, spread over three nodes of
    one worker each; each job's `node` is the node that ran it."""
    a, b, c = (cluster.node(x) for x in "abc")
    n_jobs = 300
    reqs = [cluster.record_request(f"j{i}", 0.03) for i in range(n_jobs)]
    t0 = time.monotonic()
    created = a.call("POST", "/v1/jobs/batch", {"jobs": reqs}, expect=201).value["jobs"]
    assert len(created) == n_jobs
    ids = [j["id"] for j in created]
    assert len(set(ids)) == n_jobs
    done = {}
    deadline = time.monotonic() + 60
    while len(done) < n_jobs:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"{n_jobs - len(done)} of {n_jobs} jobs not finished after 60s")
        pending = [i for i in ids if i not in done]
        r = a.call("POST", "/v1/jobs/wait", {"ids": pending, "timeout": min(10, max(1, int(left))),
                                             "return_when": "ALL_COMPLETED"}, expect=200, timeout=30).value
        assert not r["unknown"], f"unknown ids: {r['unknown'][:5]}"
        for j in r["done"]:
            done[j["id"]] = check_cluster_job(j)
    elapsed = time.monotonic() - t0
    node_ids = {n.short: n.node_id for n in (a, b, c)}
    assert len(set(node_ids.values())) == 3, node_ids
    for i, job_id in enumerate(ids):
        j = done[job_id]
        assert j["status"] == "succeeded", j
        token, ran_on = result_of(j)
        assert token == f"j{i}"
        assert j["node"] == node_ids[ran_on], f"job {job_id}: node {j['node']!r} but NODE={ran_on}"
        assert j["attempts"] == 1, j
    lines = cluster.lines()
    runs = collections.Counter(ln.token for ln in lines)
    dup = {t: k for t, k in runs.items() if k > 1}
    assert not dup, f"jobs ran more than once: {dict(list(dup.items())[:10])}"
    expected = {f"j{i}" for i in range(n_jobs)}
    assert set(runs) == expected, f"never ran: {sorted(expected - set(runs))[:10]}"
    per_node = collections.Counter(ln.node for ln in lines)
    print(f"\n300 jobs on 3 nodes in {elapsed:.2f}s; per node: {dict(per_node)}")
    for name in "abc":
        assert per_node[name] >= n_jobs * 0.05, f"node {name} ran {per_node[name]} of {n_jobs} jobs: {dict(per_node)}"


def test_long_poll_on_another_node_returns_promptly(cluster):
    """A long-poll (GET ?wait, POST /v1/jobs/wait) on a node other than the one
    running the job answers within 1 s of the job's end. --pg-poll 5 on every node:
    only the completion's notification can be that fast."""
    nodes = [cluster.node(x, "--pg-poll", "5") for x in "abc"]
    a = nodes[0]
    for round_no, kind in enumerate(["get", "get", "wait"]):
        token = f"lp{round_no}"
        job = a.submit_req(cluster.gated_request(token))
        runner = cluster.wait_line("start", token).node
        waiter = next(n for n in reversed(nodes) if n.short != runner)  # c unless c runs it
        out = {}

        def poll():
            try:
                if kind == "get":
                    out["job"] = waiter.job(job["id"], wait=20)
                else:
                    r = waiter.call("POST", "/v1/jobs/wait", {"ids": [job["id"]], "timeout": 20,
                                                              "return_when": "FIRST_COMPLETED"},
                                    expect=200, timeout=40).value
                    assert len(r["done"]) == 1, r
                    out["job"] = check_cluster_job(r["done"][0])
            except BaseException as e:  # reported by the main thread
                out["error"] = e
            out["at"] = time.time()

        t = threading.Thread(target=poll, daemon=True)
        t.start()
        time.sleep(0.5)  # the long-poll is parked on the waiter node
        if not t.is_alive():
            if "error" in out:
                raise out["error"]
            pytest.fail(f"the {kind} long-poll on {waiter.short} answered before the job ended: {out}")
        cluster.open_gate(token)
        t.join(timeout=30)
        assert not t.is_alive(), "the long-poll did not answer within 30s"
        if "error" in out:
            raise out["error"]
        j = out["job"]
        assert j["status"] == "succeeded", f"long-poll on {waiter.name} answered {j}"
        res = result_of(j)
        assert res["node"] == runner
        lag = out["at"] - res["end"]
        print(f"\n{kind} long-poll on {waiter.short} for a job on {runner}: answered {lag * 1000:.0f} ms after its end")
        assert lag < 1.0, f"{kind} long-poll on node {waiter.short} answered {lag:.2f}s after the job ended on {runner}"


# --------------------------------------------------------------------------- dead nodes


@pytest.mark.parametrize("max_retries", [1, 0])
def test_killed_node_jobs_rerun_or_fail_node_lost(cluster, max_retries):
    """kill -9 a node (and its workers) while it runs a long job: within lease +
    reap interval another node re-runs the job (max_retries 1) or fails it with
    error.type node_lost (max_retries 0)."""
    a, b = cluster.node("a"), cluster.node("b")
    job = a.submit_req(cluster.gated_request("long", max_retries=max_retries))
    victim = cluster.by_name(cluster.wait_line("start", "long").node)
    survivor = b if victim is a else a
    running = wait_for("the job running on the victim, seen by the survivor",
                       lambda: (lambda j: j if j["status"] != "queued" else None)(survivor.job(job["id"])), 5)
    assert running["status"] == "running" and running["node"] == victim.node_id, running
    victim.kill9()
    t_kill = time.monotonic()

    if max_retries:
        def rerun():
            j = survivor.job(job["id"])
            if j["status"] in TERMINAL or (j["status"] == "running" and j.get("node") == survivor.node_id):
                return j
            return None

        j = wait_for("the dead node's job re-queued and running on the survivor", rerun, REAP_BOUND + 5)
        requeued_after = time.monotonic() - t_kill
        j = survivor.done(job["id"], timeout=15)
        assert j["status"] == "succeeded", j
        res = result_of(j)
        assert res["node"] == survivor.short and res["first"] is False, res
        assert j["node"] == survivor.node_id, j
        assert j["attempts"] == 2, j
        starts = [ln.node for ln in cluster.lines() if ln.what == "start"]
        assert starts == [victim.short, survivor.short], starts
    else:
        def failed():
            j = survivor.job(job["id"])
            return j if j["status"] in TERMINAL else None

        j = wait_for("the dead node's job failed", failed, REAP_BOUND + 5)
        requeued_after = time.monotonic() - t_kill
        assert j["status"] == "failed", j
        err = j["error"]
        assert err["type"] == "node_lost", err
        assert "node" in err["message"].lower(), err
        assert [ln.node for ln in cluster.lines() if ln.what == "start"] == [victim.short]
    print(f"\nnode killed -> its job {'re-run' if max_retries else 'failed'} after {requeued_after:.2f}s "
          f"(lease {LEASE}s)")
    assert requeued_after <= REAP_BOUND, f"took {requeued_after:.2f}s, bound {REAP_BOUND}s (lease {LEASE}s)"
    # The survivor keeps working.
    assert survivor.done(survivor.submit_req(cluster.record_request("after"))["id"])["status"] == "succeeded"


def test_stopped_node_stale_completion_is_rejected(cluster):
    """SIGSTOP a node past its lease while it runs a job; another node re-runs the
    job; the first run then finishes and the node is continued: its late completion
    is rejected (the job keeps the re-run's result), and the node recovers."""
    a, b = cluster.node("a"), cluster.node("b")
    job = a.submit_req(cluster.gated_request("stale", max_retries=1))
    frozen = cluster.by_name(cluster.wait_line("start", "stale").node)
    other = b if frozen is a else a
    frozen.sigstop()  # the server only: its worker keeps running the job
    t0 = time.monotonic()
    j = wait_for("the frozen node's job re-run elsewhere",
                 lambda: (lambda j: j if j["status"] in TERMINAL else None)(other.job(job["id"])),
                 REAP_BOUND + 10)
    print(f"\nnode stopped -> job re-run and finished after {time.monotonic() - t0:.2f}s")
    assert j["status"] == "succeeded", j
    assert result_of(j)["node"] == other.short and j["node"] == other.node_id, j
    # Let the first run finish while its node is still stopped: the result waits in
    # the worker's socket for the node to come back.
    cluster.open_gate("stale")
    cluster.wait_line("end", "stale", node=frozen.short)
    ends = [ln for ln in cluster.lines() if ln.what == "end"]
    assert sorted(ln.node for ln in ends) == sorted([frozen.short, other.short]), ends
    time.sleep(0.3)
    frozen.sigcont()
    # For two leases, every answer from both nodes keeps the re-run's result.
    deadline = time.monotonic() + 2 * LEASE + 1
    while time.monotonic() < deadline:
        assert frozen.proc.poll() is None, f"the continued node exited (code {frozen.proc.returncode})"
        for n in (frozen, other):
            try:
                cur = n.job(job["id"])
            except AssertionError:
                if n is frozen:  # it may answer 503 while it re-registers
                    continue
                raise
            assert cur["status"] == "succeeded", f"after SIGCONT, node {n.short} says {cur}"
            res = result_of(cur)
            assert res["node"] == other.short and res["first"] is False, \
                f"node {n.short} answers the stale completion of node {frozen.short}, not the re-run's: {cur}"
            assert cur["node"] == other.node_id, cur
        time.sleep(0.1)
    # The continued node is usable again (it re-registered).
    jobs = [frozen.submit_req(cluster.record_request(f"later{i}")) for i in range(4)]
    for jj in jobs:
        assert frozen.done(jj["id"], timeout=20)["status"] == "succeeded"
    frozen.healthy()


# --------------------------------------------------------------------------- PostgreSQL restarts


def test_postgres_restart_under_load(cluster):
    """PostgreSQL restarts (down ~1.5 s) while jobs are submitted continuously to two
    nodes: submissions during the outage get 503 (retried), every job that got a 201
    finishes and ran, long-polls in progress answer by their deadline, a job that
    finished during the outage wakes its waiter once the database is back, and both
    nodes accept jobs again."""
    pg = cluster.db.server
    # A lease well past the outage (~1.5 s, plus reconnect backoff): no node may be
    # presumed dead, so nothing is re-run. Load jobs still get one retry so that a
    # spurious reap shows up as attempts > 1 (printed) rather than as a lost job.
    lease = 5.0
    a = cluster.node("a", lease=lease, workers=2)
    b = cluster.node("b", lease=lease, workers=2)
    nodes = {"a": a, "b": b}
    g1 = a.submit_req(cluster.gated_request("g1", first_only=False, max_retries=1))
    g2 = a.submit_req(cluster.gated_request("g2", first_only=False, max_retries=1))
    g1_runner = cluster.wait_line("start", "g1").node
    g2_runner = cluster.wait_line("start", "g2").node

    stop = threading.Event()
    accepted = []  # (id, token, node short name, time accepted)
    refused = collections.Counter()
    errors = []

    def submitter():
        i = 0
        while not stop.is_set():
            n = (a, b)[i % 2]
            token = f"L{i}"
            i += 1
            try:
                r = n.call("POST", "/v1/jobs", cluster.record_request(token, max_retries=1), timeout=15)
            except Exception as e:  # noqa: BLE001  (reported below)
                errors.append(f"POST to {n.short}: {type(e).__name__}: {e}")
                time.sleep(0.1)
                continue
            if r.status == 201:
                accepted.append((r.value["id"], token, n.short, time.monotonic()))
            elif r.status in (503, 429):
                refused[(n.short, r.status)] += 1
                time.sleep(0.05)
            else:
                errors.append(f"POST to {n.short}: unexpected {r!r}")
            time.sleep(0.01)

    polls = {}

    def long_poll(key, node, job_id, wait):
        t0 = time.monotonic()
        try:
            r = node.call("GET", f"/v1/jobs/{job_id}?wait={wait}", timeout=wait + 30)
            polls[key] = (r.status, r.value, time.monotonic() - t0, time.monotonic())
        except Exception as e:  # noqa: BLE001
            polls[key] = ("error", e, time.monotonic() - t0, time.monotonic())

    sub = threading.Thread(target=submitter, daemon=True)
    sub.start()
    time.sleep(1.0)
    w1 = nodes["b" if g1_runner == "a" else "a"]
    w2 = nodes["b" if g2_runner == "a" else "a"]
    lp1 = threading.Thread(target=long_poll, args=("g1", w1, g1["id"], 5), daemon=True)
    lp2 = threading.Thread(target=long_poll, args=("g2", w2, g2["id"], 25), daemon=True)
    lp1.start()
    lp2.start()
    time.sleep(0.3)
    t_down = time.monotonic()
    pg.stop("fast")
    time.sleep(0.5)
    cluster.open_gate("g2")  # g2 finishes while the database is down
    cluster.wait_line("end", "g2", timeout=5)
    time.sleep(1.0)
    pg.start()
    t_up = time.monotonic()
    time.sleep(2.5)
    stop.set()
    sub.join(timeout=30)
    assert not sub.is_alive(), "the submitter is stuck in a request"
    lp1.join(timeout=30)
    lp2.join(timeout=30)
    assert not lp1.is_alive() and not lp2.is_alive(), "a long-poll did not answer"

    print(f"\nPostgreSQL down {t_up - t_down:.2f}s; accepted {len(accepted)} jobs, refused {dict(refused)}")
    assert not errors, f"{len(errors)} submissions failed other than with 503/429: {errors[:5]}"
    # A long-poll parked across the restart answers by its deadline (job still running: 200; or 503).
    status, value, took, _ = polls["g1"]
    assert status in (200, 503), f"long-poll g1: {status} {value}"
    assert took < 5 + 3, f"long-poll ?wait=5 across the restart answered after {took:.1f}s"
    if status == 200:
        assert value["status"] == "running", value
    # A job that ended during the outage wakes its long-poll once PostgreSQL is back.
    status, value, took, at = polls["g2"]
    assert status in (200, 503), f"long-poll g2: {status} {value}"
    if status == 200:
        assert value["status"] == "succeeded", f"long-poll g2 answered before the job ended: {value}"
        assert at - t_up < 5, f"long-poll g2 answered {at - t_up:.1f}s after PostgreSQL was back"
    j2 = w2.done(g2["id"], timeout=10)
    assert j2["status"] == "succeeded" and result_of(j2)["node"] == g2_runner, j2
    # Both nodes took jobs again after the restart.
    for name in "ab":
        assert any(n == name and at > t_up for _, _, n, at in accepted), \
            f"node {name} accepted nothing after the restart"
    # Every accepted job finishes and ran.
    cluster.open_gate("g1")
    ids = [x[0] for x in accepted] + [g1["id"]]
    deadline = time.monotonic() + 60
    pending = list(ids)
    final = {}
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"{len(pending)} accepted jobs not finished 60s after the restart, e.g. "
                        f"{[a.job(i) for i in pending[:3]]}")
        for off in range(0, len(pending), 5000):
            r = a.call("POST", "/v1/jobs/wait", {"ids": pending[off:off + 5000],
                                                 "timeout": min(10, max(1, int(left)))},
                       expect=200, timeout=30).value
            assert not r["unknown"], f"accepted jobs the store does not know: {r['unknown'][:5]}"
            for j in r["done"]:
                final[j["id"]] = check_cluster_job(j)
        pending = [i for i in ids if i not in final]
    not_ok = [j for j in final.values() if j["status"] != "succeeded"]
    assert not not_ok, f"{len(not_ok)} accepted jobs did not succeed, e.g. {not_ok[:3]}"
    ran = collections.Counter(ln.token for ln in cluster.lines() if ln.what == "run")
    missing = [t for _, t, _, _ in accepted if ran[t] == 0]
    assert not missing, f"accepted jobs that never ran: {missing[:10]}"
    twice = {t: k for t, k in ran.items() if k > 1}
    retried = [j["id"] for j in final.values() if j["attempts"] > 1]
    print(f"jobs run more than once across the restart: {len(twice)}; with attempts > 1: {len(retried)}")
    for n in (a, b):
        n.healthy()


# --------------------------------------------------------------------------- schemas


def test_pg_schema_separates_clusters(cluster):
    """--pg-schema: everything lives in that schema (default pyjobd); nodes on
    different schemas of one database do not see each other's jobs."""
    x = cluster.node("x")
    y = cluster.node("y", "--pg-schema", "other_cluster")
    jx = x.submit_req(cluster.record_request("in-x"))
    jy = y.submit_req(cluster.record_request("in-y"))
    assert x.done(jx["id"])["status"] == "succeeded"
    assert y.done(jy["id"])["status"] == "succeeded"
    x.call("GET", f"/v1/jobs/{jy['id']}", expect=404)
    y.call("GET", f"/v1/jobs/{jx['id']}", expect=404)
    ran = {ln.token: ln.node for ln in cluster.lines()}
    assert ran == {"in-x": "x", "in-y": "y"}, ran
    tables = cluster.db.query("SELECT table_schema AS s, table_name AS t FROM information_schema.tables "
                              "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
    schemas = {t["s"] for t in tables}
    assert schemas == {"pyjobd", "other_cluster"}, f"tables outside the two schemas: {tables}"
