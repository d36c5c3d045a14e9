"""Integration-test fixtures for pyjobd.

Starts the real server (PYJOBD_BIN, default build/pyjobd) on 127.0.0.1 with an
ephemeral port and drives it over HTTP like a user would.

Run from the repository root:

    PYJOBD_BIN=build/pyjobd /usr/bin/python3 -m pytest -q tests/integration

Functions sent to the server must be lambdas or functions defined inside a test:
cloudpickle pickles module-level functions of an importable module (such as a
test module) *by reference*, and the worker cannot import the test modules.
"""

import base64
import http.client
import json
import os
import re
import select
import signal
import subprocess
import tempfile
import time
from datetime import datetime, timezone

import cloudpickle
import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

STARTUP_TIMEOUT = 15.0  # seconds for the "listening on" line
SHUTDOWN_TIMEOUT = 10.0  # seconds between SIGTERM and exit
HTTP_TIMEOUT = 70.0  # socket timeout for one request (> max ?wait=60)

TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ("queued", "running", "scheduled") + TERMINAL
ERROR_TYPES = (
    "exception",
    "timeout",
    "worker_crashed",
    "invalid_payload",
    "unpicklable_result",
    "cancelled",
    "interrupted",
    "node_lost",
    "protocol_violation",
    "unjsonable_result",
    "result_too_large",
    "expired",
)
ID_RE = re.compile(r"^[0-9a-f]{32}$")
RFC3339_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
LISTEN_RE = re.compile(r"^listening on 127\.0\.0\.1:(\d+)$")

# Every server started by the suite, so a failing test can show their logs.
_SERVERS = []


def pyjobd_bin():
    path = os.environ.get("PYJOBD_BIN", os.path.join("build", "pyjobd"))
    if not os.path.isabs(path):
        path = os.path.join(REPO_ROOT, path)
    return path


# --------------------------------------------------------------------------- HTTP


class Response:
    def __init__(self, status, headers, body, elapsed):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage (case-insensitive)
        self.body = body
        self.elapsed = elapsed

    @property
    def content_type(self):
        return self.headers.get("Content-Type", "")

    @property
    def media_type(self):
        return self.content_type.split(";")[0].strip().lower()

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(
                f"response body is not JSON ({e}): status {self.status}, body {self.body[:500]!r}"
            )

    def __repr__(self):
        return f"<Response {self.status} {self.content_type!r} {self.body[:300]!r}>"


class Server:
    """One running pyjobd process."""

    def __init__(self, args, name, env=None):
        self.args = list(args)
        self.name = name
        self.env = env
        self.proc = None
        self.port = None
        self.log_path = None
        self._log_file = None
        self.children = set()

    # ---- lifecycle

    def start(self):
        binary = pyjobd_bin()
        if not os.path.exists(binary):
            pytest.fail(f"pyjobd binary not found at {binary} (set PYJOBD_BIN or run `make all`)")
        fd, self.log_path = tempfile.mkstemp(prefix=f"pyjobd-{self.name}-", suffix=".log")
        self._log_file = os.fdopen(fd, "wb")
        cmd = [binary, "--port", "0", "--listen", "127.0.0.1"] + self.args
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            cwd=REPO_ROOT,
            env=self._environment(),
        )
        _SERVERS.append(self)
        line = self._read_line(STARTUP_TIMEOUT)
        m = LISTEN_RE.match(line.rstrip("\n"))
        if not m:
            self.kill()
            pytest.fail(
                f"{cmd}: expected first stdout line 'listening on 127.0.0.1:PORT', got {line!r}\n"
                f"stderr:\n{self.log_tail()}"
            )
        self.port = int(m.group(1))
        assert 0 < self.port < 65536
        return self

    def _environment(self):
        # The caller's PYJOBD_* settings must not leak into the servers under test.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYJOBD_")}
        # The server refuses root workers unless told otherwise; tests running as root
        # (CI) say so explicitly. Tests of that refusal pass their own env.
        if os.geteuid() == 0:
            env["PYJOBD_ALLOW_ROOT_WORKERS"] = "1"
        env.update(self.env or {})
        return env

    def _read_line(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        if b"\n" not in buf:
            try:
                rc = self.proc.wait(timeout=max(0.0, deadline - time.monotonic()) + 0.5)
                why = f"server exited with code {rc} before printing it"
            except subprocess.TimeoutExpired:
                why = f"nothing within {timeout}s"
            self.kill()
            pytest.fail(
                f"{self.cmd}: no 'listening on 127.0.0.1:PORT' line: {why} "
                f"(stdout so far {buf!r})\nstderr:\n{self.log_tail()}"
            )
        line, _, rest = buf.partition(b"\n")
        self._extra_stdout = rest
        return line.decode("utf-8", "replace") + "\n"

    def _child_pids(self):
        """PIDs whose parent is the server (its workers)."""
        pids = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                pids.add(int(entry))
        return pids

    def stop(self, second_sigterm_after=None):
        """SIGTERM, wait up to 10 s. Returns a list of problems (empty when clean).

        second_sigterm_after: send SIGTERM again after this many seconds if the server
        is still running (the "stop at once" request)."""
        problems = []
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                problems.append(f"server exited before the end of its tests (exit code {self.proc.returncode})")
            return problems
        self.children = self._child_pids()
        self.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        if second_sigterm_after is not None:
            try:
                self.proc.wait(timeout=second_sigterm_after)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=max(0.0, SHUTDOWN_TIMEOUT - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            problems.append(f"server did not exit within {SHUTDOWN_TIMEOUT}s of SIGTERM")
            self.proc.kill()
            self.proc.wait()
        elapsed = time.monotonic() - t0
        rc = self.proc.returncode
        if not problems and rc != 0:
            problems.append(f"server exit code after SIGTERM is {rc}, expected 0 (clean shutdown)")
        # Workers must not outlive the server.
        deadline = time.monotonic() + 2.0
        alive = set(self.children)
        while alive and time.monotonic() < deadline:
            alive = {p for p in alive if _pid_alive(p)}
            if alive:
                time.sleep(0.05)
        if alive:
            problems.append(f"worker processes {sorted(alive)} still alive after the server exited")
            for p in alive:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        extra = self._extra_stdout + self.proc.stdout.read()
        if extra.strip():
            problems.append(f"server printed more than one line on stdout: {extra[:300]!r}")
        self.proc.stdout.close()
        self._log_file.close()
        self.shutdown_seconds = elapsed
        if not problems:  # keep the log only when something went wrong
            self.reported_dead = True
            try:
                os.unlink(self.log_path)
            except OSError:
                pass
        return problems

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, limit=8000):
        if not self.log_path:
            return ""
        try:
            if self._log_file and not self._log_file.closed:
                self._log_file.flush()
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        text = data.decode("utf-8", "replace")
        return text[-limit:]

    # ---- HTTP

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def request(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT):
        """One HTTP request on a fresh connection. body: bytes, str or a JSON-able object."""
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        t0 = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        return Response(resp.status, resp.headers, data, time.monotonic() - t0)

    def post_job(self, payload, wait=None, headers=None):
        path = "/v1/jobs" + (f"?wait={wait}" if wait is not None else "")
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        return self.request("POST", path, body=body, headers=hdrs, timeout=_deadline(wait))

    def submit(self, fn, *args, wait=None, timeout=None, **kwargs):
        """POSTs fn(*args, **kwargs). Asserts 201 + Location + a well-formed job; returns the job."""
        payload = make_payload(fn, *args, timeout=timeout, **kwargs)
        r = self.post_job(payload, wait=wait)
        return check_created(r)

    def get(self, job_id, wait=None):
        """GET /v1/jobs/{id}[?wait=]. Asserts 200 and a well-formed job; returns the job."""
        path = f"/v1/jobs/{job_id}" + (f"?wait={wait}" if wait is not None else "")
        r = self.request("GET", path, timeout=_deadline(wait))
        assert r.status == 200, f"GET {path}: expected 200, got {r!r}"
        assert r.media_type == "application/json", f"GET {path}: Content-Type {r.content_type!r}"
        job = r.json()
        check_job(job)
        assert job["id"] == job_id
        return job

    def wait_done(self, job_id, timeout=30.0):
        """Long-polls until the job is terminal (fails the test after timeout seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                job = self.get(job_id)
                pytest.fail(f"job {job_id} not terminal after {timeout}s: {job}")
            job = self.get(job_id, wait=max(1, min(60, int(left) + 1)))
            if job["status"] in TERMINAL:
                return job

    def run(self, fn, *args, timeout=None, **kwargs):
        """Submits with ?wait=30 and returns the terminal job."""
        job = self.submit(fn, *args, wait=30, timeout=timeout, **kwargs)
        if job["status"] not in TERMINAL:
            job = self.wait_done(job["id"])
        return job

    def healthy(self):
        r = self.request("GET", "/healthz", timeout=10)
        assert r.status == 200, f"GET /healthz after the previous request: {r!r}"
        assert self.proc.poll() is None, f"server died (exit code {self.proc.returncode})"
        return True

    def info(self):
        r = self.request("GET", "/v1/info")
        assert r.status == 200, f"GET /v1/info: {r!r}"
        return r.json()

    def wait_ready(self, timeout=15.0):
        """Polls /v1/info until a worker has booted (python_version is set)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.info()
            if info.get("python_version"):
                return info
            if time.monotonic() > deadline:
                pytest.fail(f"/v1/info python_version still unset after {timeout}s: {info}\n{self.log_tail()}")
            time.sleep(0.05)


def _deadline(wait):
    """Socket timeout for a request with ?wait=wait: the wait plus 10 s of slack."""
    return 10.0 + (float(wait) if wait is not None else 0.0)


def _pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------- payloads


def b64(data):
    return base64.b64encode(data).decode("ascii")


def make_payload(fn, *args, timeout=None, **kwargs):
    payload = {"callable": b64(cloudpickle.dumps(fn))}
    if args:
        payload["args"] = b64(cloudpickle.dumps(tuple(args)))
    if kwargs:
        payload["kwargs"] = b64(cloudpickle.dumps(dict(kwargs)))
    if timeout is not None:
        payload["timeout"] = timeout
    return payload


def blocker(started, release, limit=20.0):
    """A job (a closure: pickled by value) that says it started (creates `started`) and
    runs until `release` exists, or for `limit` s."""
    def block():
        import os
        import time
        open(started, "w").close()
        deadline = time.monotonic() + limit
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "released"
    return block


def decode_result(job):
    assert job["status"] == "succeeded", f"job did not succeed: {job}"
    assert isinstance(job.get("result"), str), f"succeeded job without a base64 result: {job}"
    return cloudpickle.loads(base64.b64decode(job["result"], validate=True))


def parse_ts(s):
    assert isinstance(s, str) and RFC3339_UTC_RE.match(s), f"not an RFC 3339 UTC timestamp: {s!r}"
    main, _, frac = s[:-1].partition(".")
    dt = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


def check_job(job):
    """Asserts the job JSON has the v1 shape and is internally consistent."""
    assert isinstance(job, dict), job
    for key in ("id", "status", "created_at", "started_at", "finished_at", "timeout", "attempts",
                "worker_pid", "error"):
        assert key in job, f"job JSON lacks {key!r}: {job}"
    assert isinstance(job["id"], str) and ID_RE.match(job["id"]), f"bad id: {job['id']!r}"
    st = job["status"]
    assert st in STATUSES, f"bad status {st!r}"
    created = parse_ts(job["created_at"])
    assert abs(created - time.time()) < 300, f"created_at far from now: {job['created_at']}"
    started = parse_ts(job["started_at"]) if job["started_at"] is not None else None
    finished = parse_ts(job["finished_at"]) if job["finished_at"] is not None else None
    assert job["timeout"] is None or (
        isinstance(job["timeout"], (int, float)) and not isinstance(job["timeout"], bool) and job["timeout"] > 0
    ), f"bad timeout {job['timeout']!r}"
    assert isinstance(job["attempts"], int) and not isinstance(job["attempts"], bool) and job["attempts"] >= 0
    assert job["worker_pid"] is None or (isinstance(job["worker_pid"], int) and job["worker_pid"] > 0)
    if st == "queued":
        assert started is None and finished is None, f"queued job with start/finish times: {job}"
    if st == "running":
        assert started is not None and finished is None, f"running job times: {job}"
        assert isinstance(job["worker_pid"], int), f"running job without worker_pid: {job}"
    if st in TERMINAL:
        assert finished is not None, f"terminal job without finished_at: {job}"
    if started is not None:
        assert started >= created - 0.001, f"started_at before created_at: {job}"
    if started is not None and finished is not None:
        assert finished >= started - 0.001, f"finished_at before started_at: {job}"
    if st == "succeeded":
        assert started is not None, f"succeeded job without started_at: {job}"
        assert job["error"] is None, f"succeeded job with an error: {job}"
        assert isinstance(job.get("result"), str), f"succeeded job without result: {job}"
        assert job["attempts"] >= 1, f"succeeded job with attempts={job['attempts']}"
    elif st == "failed":
        err = job["error"]
        assert isinstance(err, dict), f"failed job without error object: {job}"
        assert err.get("type") in ERROR_TYPES, f"bad error.type {err.get('type')!r}"
        assert isinstance(err.get("message"), str) and err["message"].strip(), f"empty error.message: {err}"
        assert job.get("result") is None, f"failed job with a result: {job}"
    else:
        assert job["error"] is None or st == "cancelled", f"{st} job with an error: {job}"


def check_created(r):
    """Checks a POST /v1/jobs response (201 + Location) and returns the job."""
    assert r.status == 201, f"POST /v1/jobs: expected 201, got {r!r}"
    assert r.media_type == "application/json", f"POST /v1/jobs: Content-Type {r.content_type!r}"
    job = r.json()
    check_job(job)
    loc = r.headers.get("Location")
    assert loc == f"/v1/jobs/{job['id']}", f"Location {loc!r} does not match id {job['id']}"
    return job


def check_problem(r, status):
    """Asserts r is an application/problem+json error with the given status."""
    assert r.status == status, f"expected {status}, got {r!r}"
    assert r.media_type == "application/problem+json", f"expected application/problem+json, got {r!r}"
    p = r.json()
    assert isinstance(p, dict), p
    for key in ("type", "title", "status", "detail"):
        assert key in p, f"problem lacks {key!r}: {p}"
    assert isinstance(p["type"], str) and p["type"], p
    assert isinstance(p["title"], str) and p["title"].strip(), p
    assert p["status"] == status, f"problem status {p['status']!r} != HTTP status {status}"
    assert isinstance(p["detail"], str) and p["detail"].strip(), f"empty detail: {p}"
    return p


# --------------------------------------------------------------------------- fixtures


def start_server(name, *args, env=None):
    return Server(list(args), name, env=env).start()


def stop_server(server):
    problems = server.stop()
    if problems:
        pytest.fail(f"pyjobd ({server.name}) unclean shutdown: " + "; ".join(problems)
                    + f"\nstderr:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def server():
    """One server for the session: 2 workers, no default timeout."""
    s = start_server("session", "--workers", "2", "--default-timeout", "0")
    try:
        s.wait_ready()
        yield s
    finally:
        stop_server(s)


@pytest.fixture
def runs_dir():
    """A directory for jobs' side-effect files (counting their runs), writable by
    whatever user the workers run as."""
    d = tempfile.mkdtemp(prefix="pyjobd-runs-")
    os.chmod(d, 0o777)
    yield d
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)


@pytest.fixture
def make_server():
    """Factory for servers with other flags; each is stopped (and checked) at teardown."""
    started = []

    def factory(*args, name="extra", ready=True, env=None):
        s = start_server(name, *args, env=env)
        started.append(s)
        if ready:
            s.wait_ready()
        return s

    yield factory
    problems = []
    for s in started:
        p = s.stop()
        if p:
            problems.append(f"{s.name}: " + "; ".join(p) + f"\nstderr:\n{s.log_tail()}")
    if problems:
        pytest.fail("unclean shutdown: " + "\n".join(problems))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for s in _SERVERS:
            if s.proc is None or getattr(s, "reported_dead", False):
                continue
            if s.proc.poll() is not None:
                s.reported_dead = True  # show a stopped server's log once
            report.sections.append(
                (f"pyjobd stderr ({s.name}, {s.log_path})", s.log_tail(4000) or "(empty)")
            )
