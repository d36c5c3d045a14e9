#!/usr/bin/python3
"""pyjobd benchmark against loky and ProcessPoolExecutor (see bench/README.md).

    /usr/bin/python3 bench/run.py [--reps N] [--only 1,2,3,4,5,6,7,8] [--quick]

Same machine, same run, 2 workers for everyone (section 6: 2 workers in all, or 2 per
node for its (c) row). Every figure is the median of --reps repetitions, with min and
max. Prints a table and writes bench/results/latest.json. Never exits non-zero because
of a number.
"""

import argparse
import asyncio
import base64
import concurrent.futures
import http.client
import json
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import shutil
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "client", "python"))

import cloudpickle  # noqa: E402

import trivial  # noqa: E402

WORKERS = 2
RESULTS = {"meta": {}, "sections": {}}
ROWS = []  # (section, name, unit, median, min, max, note)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def b64(obj):
    return base64.b64encode(cloudpickle.dumps(obj)).decode()


def make_inc():
    k = 1

    def inc(x):
        return x + k
    return inc


INC_CLOSURE = make_inc()  # a __main__ closure: cloudpickle sends it by value


def pct(values, p):
    s = sorted(values)
    if not s:
        return None
    i = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[i]


def summarize(samples):
    samples = [s for s in samples if s is not None]
    if not samples:
        return None
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "n": len(samples), "samples": samples}


def record(section, name, unit, samples, note=""):
    s = summarize(samples)
    RESULTS["sections"].setdefault(section, {})[name] = dict(s or {}, unit=unit, note=note)
    ROWS.append((section, name, unit, s, note))
    if s:
        log(f"  {name}: {fmt(s['median'])} {unit} (min {fmt(s['min'])}, max {fmt(s['max'])}) {note}")
    else:
        log(f"  {name}: n/a {note}")


def fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


# --------------------------------------------------------------------------- server

class Server:
    """build/pyjobd --port 0 --workers 2 --log-level warn, stopped by its pid."""

    def __init__(self, binary, extra=(), workers=WORKERS, prefix=(), token=None, env_extra=None):
        env = dict(os.environ, **(env_extra or {}))
        if os.geteuid() == 0:  # the peers' workers run as root too: compare like with like
            env["PYJOBD_ALLOW_ROOT_WORKERS"] = "1"
        self.errlog = open(os.environ["BENCH_SERVER_LOG"], "ab") if os.environ.get("BENCH_SERVER_LOG") else tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [*prefix, binary, "--port", "0", "--workers", str(workers), "--log-level", os.environ.get("BENCH_LOG_LEVEL", "warn"),
             "--worker-cwd", HERE, "--worker-init", "trivial:inc_ready", *extra],
            stdout=subprocess.PIPE, stderr=self.errlog, env=env, cwd=ROOT)
        self.pid = self.proc.pid
        r, _, _ = select.select([self.proc.stdout], [], [], 60 if prefix else 20)
        line = self.proc.stdout.readline().decode() if r else ""
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"pyjobd did not start: {line!r} {self.stderr()}")
        self.port = int(line.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        c = Conn(self.port, token=token)
        while time.monotonic() < deadline:  # bounded: wait for both workers to be idle
            try:
                st, pool = c.get("/v1/pool")
                if st == 200 and sum(w.get("state") == "idle" for w in pool.get("workers", [])) >= workers:
                    break
            except Exception:
                pass
            time.sleep(0.05)
        c.close()

    def stderr(self):
        try:
            self.errlog.seek(0)
            return self.errlog.read()[-2000:].decode(errors="replace")
        except Exception:
            return ""

    def status(self):
        out = {}
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("VmRSS", "VmHWM", "Threads", "RssAnon"):
                        out[k] = int(v.split()[0]) * (1024 if k != "Threads" else 1)
            out["fds"] = len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            pass
        return out

    def stop(self, grace=5):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()


class Conn:
    """A minimal keep-alive JSON client (http.client) for the bench's own requests."""

    def __init__(self, port, timeout=60, token=None):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.token = token

    def req(self, method, path, body=None):
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        hdr = {"Content-Type": "application/json"} if data is not None else {}
        if self.token:
            hdr["Authorization"] = f"Bearer {self.token}"
        self.c.request(method, path, data, hdr)
        r = self.c.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw

    def get(self, path):
        return self.req("GET", path)

    def post(self, path, body=None):
        return self.req("POST", path, body)

    def close(self):
        self.c.close()


def ts(s):
    """RFC 3339 UTC timestamp (µs) → epoch seconds."""
    from datetime import datetime
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def job_request(fn, *args, **extra):
    req = {"callable": b64(fn), "python": platform.python_version()}
    if args:
        req["args"] = b64(tuple(args))
    req.update(extra)
    return req


# --------------------------------------------------------------------------- 1 latency

def seq_latency(call, n):
    lat = []
    for i in range(n):
        t = time.perf_counter()
        call(i)
        lat.append((time.perf_counter() - t) * 1e6)
    return lat


def section_latency(args):
    log("1. round-trip latency (sequential submit + result)")
    n = args.latency_n
    fns = {"module": trivial.inc, "closure": INC_CLOSURE}
    res = {}  # name -> list of (p50, p99)

    def run(name, call, warm=50):
        seq_latency(call, warm)
        lat = seq_latency(call, n)
        res.setdefault(name, []).append((pct(lat, 50), pct(lat, 99)))

    for rep in range(args.reps):
        srv = Server(args.bin)
        try:
            client_ok = True
            try:
                import pyjobd
                ex = pyjobd.Executor(srv.url)
            except Exception as e:
                client_ok = False
                log(f"  python client unavailable ({e!r}); using the raw http.client loop only")
            for kind, fn in fns.items():
                if client_ok:
                    def call(i, fn=fn):
                        assert ex.submit(fn, i).result(timeout=10) == i + 1
                    run(f"pyjobd client {kind}", call)
                body = json.dumps(job_request(fn, 1))
                c = Conn(srv.port)

                def call_raw(i, c=c, body=body):
                    st, job = c.post("/v1/jobs?wait=5", body)
                    assert job["status"] == "succeeded", job
                run(f"pyjobd raw-http {kind}", call_raw)
                if kind == "module":  # floors: where the round trip's time goes
                    st, done = c.post("/v1/jobs?wait=5", body)

                    def call_get(i, c=c, path=f"/v1/jobs/{done['id']}"):
                        st, job = c.get(path)
                        assert st == 200, (st, job)
                    run("floor: GET /v1/jobs/{id} (finished)", call_get)

                    def call_health(i, c=c):
                        c.get("/healthz")
                    run("floor: GET /healthz", call_health)
                c.close()
            if client_ok:
                ex.shutdown()
        finally:
            srv.stop()

        from joblib.externals.loky import get_reusable_executor
        lk = get_reusable_executor(max_workers=WORKERS)
        for kind, fn in fns.items():
            run(f"loky {kind}", lambda i, fn=fn: lk.submit(fn, i).result())
        lk.shutdown(wait=True)

        with concurrent.futures.ProcessPoolExecutor(WORKERS) as ppe:
            run("ppe module", lambda i: ppe.submit(trivial.inc, i).result())
            blob = cloudpickle.dumps(INC_CLOSURE)
            run("ppe closure", lambda i: ppe.submit(trivial.call_pickled, blob, i).result())

    for name, vals in res.items():
        note = "(cloudpickle-wrapped: pickle cannot send a closure)" if name == "ppe closure" else ""
        record("1 latency", f"{name} p50", "µs", [v[0] for v in vals], note)
        record("1 latency", f"{name} p99", "µs", [v[1] for v in vals], note)


# --------------------------------------------------------------------------- 2 throughput

def timed_map(mapfn, n):
    t = time.perf_counter()
    out = mapfn(n)
    dt = time.perf_counter() - t
    assert len(out) == n and out[0] == 1 and out[-1] == n, (len(out), out[:3])
    return n / dt


def section_throughput(args):
    log("2. map throughput (trivial jobs)")
    n = args.map_n
    chunks = [10, 100, 1000]
    res = {}

    def add(name, v):
        res.setdefault(name, []).append(v)

    from joblib.externals.loky import get_reusable_executor
    import pyjobd

    srv = Server(args.bin)
    try:
        ex = pyjobd.Executor(srv.url)
        ex_map = lambda cs: (lambda k: list(ex.map(trivial.inc, range(k), chunksize=cs)))
        lk = get_reusable_executor(max_workers=WORKERS)
        lk_map = lambda cs: (lambda k: list(lk.map(trivial.inc, range(k), chunksize=cs)))
        ppe = concurrent.futures.ProcessPoolExecutor(WORKERS)
        ppe_map = lambda cs: (lambda k: list(ppe.map(trivial.inc, range(k), chunksize=cs)))
        for m in (ex_map, lk_map, ppe_map):
            timed_map(m(1), 200)  # warm up
        # Find each one's best chunksize (one pass), then repeat.
        best = {}
        for name, m in (("pyjobd", ex_map), ("loky", lk_map), ("ppe", ppe_map)):
            scores = {cs: timed_map(m(cs), n) for cs in chunks}
            best[name] = max(scores, key=scores.get)
            RESULTS["sections"].setdefault("2 throughput", {})[f"{name} chunksize sweep"] = scores
            log(f"  {name} chunksize sweep: " + ", ".join(f"{k}: {fmt(v)}" for k, v in scores.items()))
        for rep in range(args.reps):
            add("pyjobd map chunksize=1 (default)", timed_map(ex_map(1), n))
            add(f"pyjobd map chunksize={best['pyjobd']} (best)", timed_map(ex_map(best["pyjobd"]), n))
            add("loky map chunksize=1 (default)", timed_map(lk_map(1), n))
            add(f"loky map chunksize={best['loky']} (best)", timed_map(lk_map(best["loky"]), n))
            add("ppe map chunksize=1 (default)", timed_map(ppe_map(1), n))
            add(f"ppe map chunksize={best['ppe']} (best)", timed_map(ppe_map(best["ppe"]), n))
        ex.shutdown()
        lk.shutdown(wait=True)
        ppe.shutdown()
    finally:
        srv.stop()
    # The cost of durability: the same default map with every job on disk (SQLite,
    # group commit) instead of in memory. And what at-most-once costs there (issue 17
    # item 8): a start on record before the job's code runs, by the start log (the
    # default), by waiting for the database's commit, or not at all (unsafe, bench only:
    # PYJOBD_BENCH_STARTS, see pool/store/store_sqlite.h).
    for label, starts in (("", None), (", starts wait for the commit", "commit"),
                          (", starts not on record (unsafe)", "none")):
        store_dir = tempfile.mkdtemp(prefix="pyjobd-bench-store-")
        srv = Server(args.bin, extra=("--store", f"sqlite:{store_dir}/jobs.db"),
                     env_extra={"PYJOBD_BENCH_STARTS": starts} if starts else None)
        try:
            ex = pyjobd.Executor(srv.url)
            timed_map(lambda k: list(ex.map(trivial.inc, range(k))), 200)  # warm up
            for rep in range(args.reps):
                add(f"pyjobd map chunksize=1, --store sqlite{label}",
                    timed_map(lambda k: list(ex.map(trivial.inc, range(k))), n))
            ex.shutdown()
        finally:
            srv.stop()
            shutil.rmtree(store_dir, ignore_errors=True)
    # --isolation job: every job in a process forked for it (and killed when it ends).
    # Executor.map, and raw batches with one ALL_COMPLETED wait: the Executor's waiter
    # long-polls with every pending id after each completion, which at a few hundred
    # completions a second costs the server as much CPU as the forks do.
    srv = Server(args.bin, extra=("--isolation", "job"))
    job_n = min(n, 4000)
    try:
        ex = pyjobd.Executor(srv.url)
        timed_map(lambda k: list(ex.map(trivial.inc, range(k))), 200)  # warm up
        c = Conn(srv.port, timeout=120)
        req = job_request(trivial.inc, 1)

        def raw(k):
            batches = []
            for j in range(0, k, 1000):
                st, body = c.post("/v1/jobs/batch", {"jobs": [req] * min(1000, k - j)})
                batches.append([x["id"] for x in body["jobs"]])
            for ids in batches:  # a wait takes at most 1,000 ids
                st, body = c.post("/v1/jobs/wait", {"ids": ids, "timeout": 60,
                                                    "return_when": "ALL_COMPLETED"})
                if st != 200 or len(body["done"]) != len(ids) or any(
                        d.get("status") != "succeeded" for d in body["done"]):
                    raise RuntimeError(f"wait: {st} {str(body)[:300]}")

        def timed_raw(k):
            t = time.perf_counter()
            raw(k)
            return k / (time.perf_counter() - t)

        for rep in range(args.reps):
            add("pyjobd map chunksize=1, --isolation job",
                timed_map(lambda k: list(ex.map(trivial.inc, range(k))), job_n))
            add("pyjobd raw batches + ALL_COMPLETED waits, --isolation job", timed_raw(job_n))
        c.close()
        ex.shutdown()
    finally:
        srv.stop()
    for name, vals in res.items():
        record("2 throughput", name, "jobs/s", vals,
               f"{job_n if 'isolation job' in name else n:,} jobs")


# --------------------------------------------------------------------------- 3 raw HTTP

def section_http(args):
    log("3. raw HTTP throughput (wrk, keep-alive, POST /v1/jobs?wait=5)")
    if not shutil_which("wrk"):
        log("  wrk not installed: skipped")
        return
    body = json.dumps(job_request(trivial.inc, 1))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(body)
        body_path = f.name
    res = {}
    srv = Server(args.bin)
    try:
        for conns in args.http_conns:
            for rep in range(args.reps):
                cmd = ["wrk", "-t2", f"-c{conns}", f"-d{args.http_secs}s", "--timeout", "10s",
                       "-s", os.path.join(HERE, "post.lua"), f"{srv.url}/v1/jobs?wait=5"]
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.http_secs + 60,
                                   env=dict(os.environ, BENCH_BODY=body_path))
                line = [l for l in p.stdout.splitlines() if l.startswith("WRKJSON ")]
                if not line:
                    log(f"  wrk failed: {p.stdout[-500:]} {p.stderr[-500:]}")
                    continue
                d = json.loads(line[0][8:])
                d["jobs_per_s"] = d["succeeded"] / (d["duration_us"] / 1e6)
                res.setdefault(conns, []).append(d)
        st = srv.status()
    finally:
        srv.stop()
        os.unlink(body_path)
    for conns, ds in res.items():
        bad = sum(d["non2xx"] + d["not_succeeded"] + d["errors_timeout"] + d["errors_read"] for d in ds)
        note = f"{conns} conns, {args.http_secs}s" + (f", {bad} failed/incomplete" if bad else "")
        record("3 raw http", f"pyjobd wrk c={conns} throughput", "jobs/s",
               [d["jobs_per_s"] for d in ds], note)
        record("3 raw http", f"pyjobd wrk c={conns} p50", "µs", [d["p50_us"] for d in ds], note)
        record("3 raw http", f"pyjobd wrk c={conns} p99", "µs", [d["p99_us"] for d in ds], note)
    RESULTS["sections"].setdefault("3 raw http", {})["server after load"] = st


def shutil_which(name):
    import shutil
    return shutil.which(name)


# --------------------------------------------------------------------------- 4 crash/timeout

def wait_job(c, jid, secs=30):
    st, job = c.get(f"/v1/jobs/{jid}?wait={secs}")
    return job


def submit(c, req):
    st, job = c.post("/v1/jobs", req)
    if st != 201:
        raise RuntimeError(f"submit: {st} {job}")
    return job["id"]


def tenant_switches(args, n, extra=()):
    """--isolation tenant, one worker, jobs of two tenants in turn: each job needs a
    fresh worker (the idle one is bound to the other tenant). Figure: the job's
    started_at - created_at (both the server's clock), after the previous one ended."""
    alice, bob = "bench-alice-" + "a" * 20, "bench-bob-" + "b" * 20
    fd, path = tempfile.mkstemp(prefix="pyjobd-bench-tokens-")
    os.write(fd, f"alice:{alice}\nbob:{bob}\n".encode())
    os.close(fd)
    os.chmod(path, 0o600)
    srv = Server(args.bin, ("--token-file", path, "--allow-shared-worker-uid") + tuple(extra),
                 workers=1, token=alice)
    out = []
    try:
        conns = {t: Conn(srv.port, token=t) for t in (alice, bob)}
        wait_job(conns[alice], submit(conns[alice], job_request(trivial.now)))
        for i in range(n):
            c = conns[bob if i % 2 == 0 else alice]
            job = wait_job(c, submit(c, job_request(trivial.now)))
            if job.get("status") != "succeeded":
                log(f"  tenant switch {i}: {job.get('status')}")
                continue
            out.append((ts(job["started_at"]) - ts(job["created_at"])) * 1e3)
        for c in conns.values():
            c.close()
    finally:
        srv.stop()
        os.unlink(path)
    return out


def section_crash(args):
    log("4. crash recovery and timeout accuracy")
    n = args.crashes
    tmpdir = tempfile.mkdtemp(prefix="pyjobd-bench-")
    crash_to_next, detect, kill_to_next, overshoot, timeout_to_next = [], [], [], [], []
    err_seen = []
    srv = Server(args.bin, extra=("--shutdown-grace", "1"))
    try:
        c = Conn(srv.port)
        # Keep one worker busy for the whole section, so that the next job can only
        # start on the replacement of the worker that crashed.
        blocker = submit(c, job_request(trivial.sleep, 3600, timeout=3600))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and wait_job(c, blocker, 0)["status"] != "running":
            time.sleep(0.01)
        # (a) the job itself dies: os._exit(1)
        for i in range(n):
            path = os.path.join(tmpdir, f"crash{i}")
            t_sub = time.time()
            cid = submit(c, job_request(trivial.crash, path))
            nid = submit(c, job_request(trivial.now))
            cj = wait_job(c, cid)
            t_err = time.time()  # the caller has seen the failure
            nj = wait_job(c, nid)
            if cj["status"] != "failed" or nj["status"] != "succeeded":
                log(f"  crash {i}: unexpected {cj['status']} / {nj['status']}")
                continue
            t_crash = float(open(path).read())
            t_next = cloudpickle.loads(base64.b64decode(nj["result"]))
            crash_to_next.append((t_next - t_crash) * 1e3)
            detect.append((ts(cj["finished_at"]) - t_crash) * 1e3)
            err_seen.append((t_err - t_crash) * 1e3)
        # (b) SIGKILL of the worker pid from outside
        for i in range(n):
            jid = submit(c, job_request(trivial.sleep, 30, timeout=60))
            nid = submit(c, job_request(trivial.now))
            pid = None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and pid is None:
                st, pool = c.get("/v1/pool")
                for w in pool["workers"]:
                    if w.get("job_id") == jid and w.get("state") == "busy":
                        pid = w["pid"]
                if pid is None:
                    time.sleep(0.002)
            if pid is None:
                log("  kill: the sleeping job never showed up as running")
                continue
            time.sleep(0.02)
            t_kill = time.time()
            os.kill(pid, signal.SIGKILL)
            nj = wait_job(c, nid)
            wait_job(c, jid)
            if nj["status"] == "succeeded":
                t_next = cloudpickle.loads(base64.b64decode(nj["result"]))
                kill_to_next.append((t_next - t_kill) * 1e3)
        # (c) timeout of 0.2 s on a sleeping job
        for i in range(n):
            jid = submit(c, job_request(trivial.sleep, 10, timeout=0.2))
            nid = submit(c, job_request(trivial.now))
            j = wait_job(c, jid)
            nj = wait_job(c, nid)
            if j["status"] != "failed" or (j.get("error") or {}).get("type") != "timeout":
                log(f"  timeout {i}: unexpected {j['status']} {j.get('error')}")
                continue
            t_fin = ts(j["finished_at"])
            overshoot.append((t_fin - ts(j["started_at"]) - 0.2) * 1e3)
            if nj["status"] == "succeeded":
                timeout_to_next.append((cloudpickle.loads(base64.b64decode(nj["result"])) - t_fin) * 1e3)
        c.post(f"/v1/jobs/{blocker}/cancel?force=true")
        c.close()
    finally:
        srv.stop()
    record("4 crash/timeout", "pyjobd os._exit → caller sees error", "ms", err_seen, f"{n} crashes")
    record("4 crash/timeout", "pyjobd os._exit → job marked failed (server)", "ms", detect, f"{n} crashes")
    record("4 crash/timeout", "pyjobd os._exit → next job starts", "ms", crash_to_next, f"{n} crashes")
    record("4 crash/timeout", "pyjobd SIGKILL → next job starts", "ms", kill_to_next, f"{n} kills")
    record("4 crash/timeout", "pyjobd timeout 0.2 s overshoot", "ms", overshoot, f"{n} timeouts")
    record("4 crash/timeout", "pyjobd timeout → next job starts", "ms", timeout_to_next, f"{n} timeouts")
    switch = tenant_switches(args, n)
    record("4 crash/timeout", "pyjobd tenant switch → job starts", "ms", switch,
           f"{n} switches, 1 worker, --isolation tenant (workers forked from the zygote)")
    switch = tenant_switches(args, n, ("--worker-start", "exec"))
    record("4 crash/timeout", "pyjobd tenant switch → job starts, --worker-start exec", "ms",
           switch, f"{n} switches, 1 worker: each new worker execs and boots Python")

    # Peers: after a crash, the whole executor is broken; time until a job runs again.
    from joblib.externals.loky import get_reusable_executor
    lk_next, lk_err, ppe_next, ppe_err = [], [], [], []
    for i in range(min(n, args.peer_crashes)):
        path = os.path.join(tmpdir, f"lk{i}")
        ex = get_reusable_executor(max_workers=WORKERS)
        ex.submit(trivial.inc, 1).result()
        f = ex.submit(trivial.crash, path)
        try:
            f.result()
        except Exception:
            pass
        t_err = time.time()
        t_next = get_reusable_executor(max_workers=WORKERS).submit(trivial.now).result()
        t_crash = float(open(path).read())
        lk_err.append((t_err - t_crash) * 1e3)
        lk_next.append((t_next - t_crash) * 1e3)
    get_reusable_executor(max_workers=WORKERS).shutdown(wait=True)
    for i in range(min(n, args.peer_crashes)):
        path = os.path.join(tmpdir, f"ppe{i}")
        ppe = concurrent.futures.ProcessPoolExecutor(WORKERS)
        ppe.submit(trivial.inc, 1).result()
        try:
            ppe.submit(trivial.crash, path).result()
        except Exception:
            pass
        t_err = time.time()
        ppe.shutdown(wait=False)
        ppe = concurrent.futures.ProcessPoolExecutor(WORKERS)
        t_next = ppe.submit(trivial.now).result()
        ppe.shutdown()
        t_crash = float(open(path).read())
        ppe_err.append((t_err - t_crash) * 1e3)
        ppe_next.append((t_next - t_crash) * 1e3)
    record("4 crash/timeout", "loky os._exit → caller sees error", "ms", lk_err,
           "every pending job fails (TerminatedWorkerError)")
    record("4 crash/timeout", "loky os._exit → next job starts", "ms", lk_next,
           "executor rebuilt by get_reusable_executor")
    record("4 crash/timeout", "ppe os._exit → caller sees error", "ms", ppe_err, "BrokenProcessPool")
    record("4 crash/timeout", "ppe os._exit → next job starts", "ms", ppe_next, "new executor")


# --------------------------------------------------------------------------- 5 memory

async def hold_waiters(port, jid, n, hold_s):
    """Opens n keep-alive connections, each long-polling GET /v1/jobs/{jid}?wait=30."""
    conns = []
    req = (f"GET /v1/jobs/{jid}?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()
    for i in range(0, n, 100):
        batch = await asyncio.gather(*[asyncio.open_connection("127.0.0.1", port)
                                       for _ in range(min(100, n - i))], return_exceptions=True)
        for b in batch:
            if isinstance(b, Exception):
                continue
            r, w = b
            w.write(req)
            conns.append((r, w))
        await asyncio.gather(*[w.drain() for _, w in conns[-len(batch):]], return_exceptions=True)
    return conns


async def read_answers(conns, timeout):
    async def one(r):
        try:
            line = await asyncio.wait_for(r.readline(), timeout)
            return line.startswith(b"HTTP/1.1 200")
        except Exception:
            return False
    t = time.perf_counter()
    ok = await asyncio.gather(*[one(r) for r, _ in conns])
    return sum(ok), time.perf_counter() - t


def section_memory(args):
    log("5. server memory")
    idle, per_job, waiters_cost, fanout = [], [], [], []
    extra = {}
    n_jobs = args.retained
    for rep in range(args.mem_reps):
        srv = Server(args.bin, extra=("--shutdown-grace", "1"))
        try:
            time.sleep(0.3)
            idle.append(srv.status().get("VmRSS", 0) / 2**20)
            c = Conn(srv.port)
            req = job_request(trivial.inc, 1)
            # Warm up the HTTP threads and allocator with 1,000 jobs, then measure.
            ids = c.post("/v1/jobs/batch", {"jobs": [req] * 1000})[1]["jobs"]
            c.post("/v1/jobs/wait", {"ids": [j["id"] for j in ids], "timeout": 30,
                                     "return_when": "ALL_COMPLETED"})
            base = srv.status()["VmRSS"]
            t = time.perf_counter()
            last = None
            for i in range(0, n_jobs - 1000, 1000):
                st, out = c.post("/v1/jobs/batch", {"jobs": [req] * 1000})
                if st != 201:
                    log(f"  batch: {st} {out}")
                    time.sleep(0.1)
                    continue
                last = [j["id"] for j in out["jobs"]]
                if i % 10000 == 0:  # keep the queue short
                    c.post("/v1/jobs/wait", {"ids": last, "timeout": 60, "return_when": "ALL_COMPLETED"})
            c.post("/v1/jobs/wait", {"ids": last, "timeout": 60, "return_when": "ALL_COMPLETED"})
            st, pool = c.get("/v1/pool")
            dt = time.perf_counter() - t
            after = srv.status()["VmRSS"]
            retained = n_jobs - 1000
            per_job.append((after - base) / retained)
            st, one = c.get(f"/v1/jobs/{last[-1]}")
            extra["result_bytes_base64"] = len(one.get("result") or "")
            extra["fill_rate_jobs_per_s"] = retained / dt
            extra["rss_after_retained_mb"] = after / 2**20
            extra["queued_after"] = pool.get("queued")
            c.close()
        finally:
            srv.stop()

        # 2,000 long-poll waiters on one sleeping job.
        srv = Server(args.bin, extra=("--shutdown-grace", "1"))
        try:
            c = Conn(srv.port)
            jid = submit(c, job_request(trivial.sleep, 20, timeout=60))
            time.sleep(0.2)
            before = srv.status()

            async def go():
                conns = await hold_waiters(srv.port, jid, args.waiters, 30)
                await asyncio.sleep(1.0)
                held = srv.status()
                early = sum(1 for r, _ in conns if r.at_eof() or len(r._buffer))
                t_cancel = time.perf_counter()
                c.post(f"/v1/jobs/{jid}/cancel?force=true")
                answered, dt = await read_answers(conns, 20)
                dt = time.perf_counter() - t_cancel
                for _, w in conns:
                    w.close()
                return len(conns), held, early, answered, dt
            opened, held, early, answered, dt = asyncio.run(go())
            waiters_cost.append((held["VmRSS"] - before["VmRSS"]) / 2**20)
            fanout.append(dt * 1e3)
            extra.update(waiters_opened=opened, waiters_answered_early=early,
                         waiters_answered_after_cancel=answered,
                         server_threads_idle=before.get("Threads"),
                         server_threads_with_waiters=held.get("Threads"),
                         server_fds_with_waiters=held.get("fds"),
                         rss_with_waiters_mb=held["VmRSS"] / 2**20)
            c.close()
        finally:
            srv.stop()
    record("5 memory", "pyjobd server RSS idle", "MB", idle)
    record("5 memory", "pyjobd per retained finished job", "bytes", per_job,
           f"{args.retained - 1000:,} jobs; result is {extra.get('result_bytes_base64')} B of base64")
    record("5 memory", f"pyjobd {args.waiters} long-poll waiters (RSS added)", "MB", waiters_cost,
           f"threads {extra.get('server_threads_idle')}→{extra.get('server_threads_with_waiters')}, "
           f"{extra.get('waiters_opened')} held, {extra.get('waiters_answered_early')} early")
    record("5 memory", f"pyjobd {args.waiters} waiters: job end → all answered", "ms", fanout,
           f"{extra.get('waiters_answered_after_cancel')} answered")
    RESULTS["sections"]["5 memory"]["details"] = extra


# --------------------------------------------------------------------------- 6 cluster

def _proc_table():
    """pid -> (ppid, utime + stime in seconds) for every process on the machine."""
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            out[int(d)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / hz)
        except (OSError, IndexError, ValueError):
            pass
    return out


def _tree_cpu(table, roots):
    """CPU seconds of each process under roots (roots included): {pid: seconds}."""
    keep, grew = set(roots), True
    while grew:
        grew = False
        for pid, (ppid, _) in table.items():
            if ppid in keep and pid not in keep:
                keep.add(pid)
                grew = True
    return {p: table[p][1] for p in keep if p in table}


class CpuMeter:
    """CPU seconds spent by the nodes (and their workers), PostgreSQL (postmaster and
    backends) and this process, between start() and stop()."""

    def __init__(self, node_pids, pg_pid=None):
        self.node_pids, self.pg_pid = list(node_pids), pg_pid

    @staticmethod
    def _busy():
        """CPU seconds the whole machine spent outside idle and iowait (/proc/stat)."""
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")

    def _snap(self):
        t = _proc_table()
        ru = os.times()
        return (_tree_cpu(t, self.node_pids), _tree_cpu(t, [self.pg_pid]) if self.pg_pid else {},
                ru.user + ru.system, self._busy())

    def start(self):
        self.before = self._snap()

    def stop(self):
        """CPU seconds by part; "other": the rest of the machine (other processes: a
        large value means the run was disturbed)."""
        after = self._snap()
        d = lambda b, a: sum(v - b.get(p, 0.0) for p, v in a.items())  # noqa: E731
        out = {"nodes": d(self.before[0], after[0]), "postgres": d(self.before[1], after[1]),
               "client": after[2] - self.before[2]}
        out["other"] = max(0.0, after[3] - self.before[3] - sum(out.values()))
        return out


def _pg_value(pg, db, q):
    rows = pg.sql(db, q)
    return rows[0][0] if rows else None


def _pg_jobs_per_node(pg, db):
    return {n: int(c) for n, c in pg.sql(db, "SELECT coalesce(node, '-'), count(*) FROM pyjobd.jobs GROUP BY 1")}


def _pg_commits(pg, db):
    """Transactions committed in db so far, once its clients (the nodes) are gone: a
    backend reports its counters when it exits."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and int(_pg_value(
            pg, "postgres", f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'")):
        time.sleep(0.02)
    return int(_pg_value(pg, "postgres", f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"))


def _node_log_problems(servers):
    """Lines of the nodes' logs (level warn and above, see Server) other than the
    usual start/stop lines."""
    out = []
    for s in servers:
        try:
            s.errlog.seek(0)
            text = s.errlog.read().decode(errors="replace")
        except Exception:
            continue
        for line in text.splitlines():
            if " warn " in line or " error " in line:
                out.append(line.strip())
    return out


def section_cluster(args):
    """Issue 10: a trivial map on 2 nodes sharing one PostgreSQL vs 1 node on SQLite."""
    n, w = args.cluster_n, WORKERS
    log(f"6. shared store: {n:,}-job map, 1 node on SQLite vs 2 nodes on one PostgreSQL")
    try:
        sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
        import pgserver
    except ImportError as e:
        log(f"  tests/integration/pgserver.py not importable ({e!r}): skipped")
        return
    if not pgserver.find_bindir():
        log("  PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin; `make deps` installs them): skipped")
        return
    import pyjobd

    pg = pgserver.PgServer().start()
    res, details, problems = {}, [], []
    try:
        RESULTS["meta"]["postgresql"] = _pg_value(pg, "postgres", "SHOW server_version")

        def add(name, v):
            res.setdefault(name, []).append(v)

        def run_config(key, rep, nodes, workers, mode="map"):
            """Starts the nodes, warms them up, times the map, stops them. Returns jobs/s."""
            store_dir, db = None, None
            if nodes == 0:  # the SQLite baseline: one node
                store_dir = tempfile.mkdtemp(prefix="pyjobd-bench-store-")
                stores, names = [f"sqlite:{store_dir}/jobs.db"], [None]
            else:
                db = f"bench_{key}_{rep}"
                uri = pg.create_database(db)
                stores, names = [uri] * nodes, [f"bench{i + 1}" for i in range(nodes)]
            servers = []
            try:
                for store, name in zip(stores, names):
                    extra = ("--store", store) + (("--node-name", name) if name else ())
                    servers.append(Server(args.bin, extra=extra, workers=workers))
                k = len(servers)
                parts = [range(i * n // k, (i + 1) * n // k) for i in range(k)]
                executors = [pyjobd.Executor(s.url) for s in servers]
                for ex in executors:  # warm up (workers, connections, plan caches)
                    assert list(ex.map(trivial.inc, range(200))) == list(range(1, 201))
                before = _pg_jobs_per_node(pg, db) if db else {}
                out, errors = [None] * k, []

                def go_map(i):
                    try:
                        out[i] = list(executors[i].map(trivial.inc, parts[i], timeout=60))  # bounded
                    except Exception as e:  # noqa: BLE001 — reported, not fatal
                        errors.append(f"node {i + 1}: {e!r}")

                req = job_request(trivial.inc, 1)

                def go_raw(i):
                    # POST /v1/jobs/batch (1,000 per request), then one ALL_COMPLETED wait.
                    try:
                        c = Conn(servers[i].port, timeout=120)
                        ids = []
                        for j in range(0, len(parts[i]), 1000):
                            st, body = c.post("/v1/jobs/batch", {"jobs": [req] * min(1000, len(parts[i]) - j)})
                            if st != 201:
                                raise RuntimeError(f"batch: {st} {body}")
                            ids += [x["id"] for x in body["jobs"]]
                        st, body = c.post("/v1/jobs/wait", {"ids": ids, "timeout": 60, "return_when": "ALL_COMPLETED"})
                        if st != 200 or len(body["done"]) != len(ids):
                            raise RuntimeError(f"wait: {st} {body if st != 200 else len(body['not_done'])}")
                        out[i] = body["done"]
                        c.close()
                    except Exception as e:  # noqa: BLE001
                        errors.append(f"node {i + 1}: {e!r}")

                meter = CpuMeter([s.pid for s in servers], pg.pid if db else None)
                threads = [threading.Thread(target=go_map if mode == "map" else go_raw, args=(i,))
                           for i in range(k)]
                meter.start()
                t = time.perf_counter()
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                dt = time.perf_counter() - t
                cpu = meter.stop()
                d = {"config": key, "rep": rep, "mode": mode, "nodes": k, "workers_per_node": workers,
                     "jobs": n, "seconds": dt, "jobs_per_s": n / dt if not errors else None,
                     "cpu_us_per_job": {p: v / n * 1e6 for p, v in cpu.items()}, "errors": errors}
                if mode == "map" and not errors:
                    for i in range(k):
                        assert out[i] == [x + 1 for x in parts[i]], f"node {i + 1}: wrong results"
                if mode == "raw" and not errors:  # where each node's submissions ran
                    d["ran_elsewhere"] = sum(1 for i in range(k) for j in out[i]
                                             if not j["node"].startswith(names[i] + "-")) / n
                    d["failed"] = sum(1 for i in range(k) for j in out[i] if j["status"] != "succeeded")
                for ex in executors:
                    ex.shutdown()
                if db:
                    after = _pg_jobs_per_node(pg, db)
                    d["jobs_per_node"] = {node: c - before.get(node, 0) for node, c in sorted(after.items())
                                          if c - before.get(node, 0)}
            finally:
                for s in servers:
                    s.stop()
                logs = _node_log_problems(servers)
                for s in servers:
                    s.errlog.close()
                if store_dir:
                    shutil.rmtree(store_dir, ignore_errors=True)
            d["log_problems"] = logs
            if db:
                # Every transaction of the database over every job it saw (warm-up included).
                d["commits_per_job"] = _pg_commits(pg, db) / (n + 200 * len(servers))
                pg.drop_database(db)
            problems.extend(f"{key} rep {rep}: {x}" for x in errors + logs)
            details.append(d)
            log(f"  {key} rep {rep}: {fmt(d['jobs_per_s'])} jobs/s in {dt:.2f} s; cpu µs/job "
                + ", ".join(f"{p} {v:.0f}" for p, v in d["cpu_us_per_job"].items())
                + (f"; per node {d['jobs_per_node']}" if d.get("jobs_per_node") else "")
                + (f"; ran elsewhere {d['ran_elsewhere']:.0%}" if "ran_elsewhere" in d else "")
                + (f"; commits/job {d['commits_per_job']:.1f}" if "commits_per_job" in d else "")
                + (f"; PROBLEMS {errors + logs}" if errors or logs else ""))
            return d

        half = max(1, w // 2)
        for rep in range(args.reps):
            a = run_config("a", rep, 0, w)
            b = run_config("b", rep, 2, half)
            c = run_config("c", rep, 2, w)
            d1 = run_config("d", rep, 1, w)
            r = run_config("b_raw", rep, 2, half, mode="raw")
            add("a", a["jobs_per_s"])
            add("b", b["jobs_per_s"])
            add("c", c["jobs_per_s"])
            add("d", d1["jobs_per_s"])
            add("b_raw", r["jobs_per_s"])
            add("b/a", 100 * b["jobs_per_s"] / a["jobs_per_s"] if a["jobs_per_s"] and b["jobs_per_s"] else None)
            add("c/a", 100 * c["jobs_per_s"] / a["jobs_per_s"] if a["jobs_per_s"] and c["jobs_per_s"] else None)
            add("b/d", 100 * b["jobs_per_s"] / d1["jobs_per_s"] if d1["jobs_per_s"] and b["jobs_per_s"] else None)
            for key, dd in (("a", a), ("b", b), ("c", c), ("d", d1), ("b_raw", r)):
                for part, v in dd["cpu_us_per_job"].items():
                    add(f"{key} cpu {part}", v)
                if "commits_per_job" in dd:
                    add(f"{key} commits", dd["commits_per_job"])
    finally:
        pg.close()

    def cpu_note(key):
        parts = [f"{p} {statistics.median(res[f'{key} cpu {p}']):.0f}"
                 for p in ("nodes", "postgres", "client", "other") if f"{key} cpu {p}" in res
                 and statistics.median(res[f"{key} cpu {p}"]) >= 0.5]
        out = "CPU µs/job: " + ", ".join(parts)
        if f"{key} commits" in res:
            out += f"; {statistics.median(res[f'{key} commits']):.1f} commits/job"
        return out

    sec = "6 shared store"
    record(sec, f"(a) 1 node, --store sqlite, {w} workers", "jobs/s", res.get("a", []),
           f"{n:,} jobs, Executor.map; {cpu_note('a')}")
    record(sec, f"(b) 2 nodes, one PostgreSQL, {half} worker each", "jobs/s", res.get("b", []),
           f"half the items to each node, in parallel; {cpu_note('b')}")
    record(sec, f"(c) 2 nodes, one PostgreSQL, {w} workers each", "jobs/s", res.get("c", []),
           f"{2 * w} workers on {os.cpu_count()} cores: no real scale-out here; {cpu_note('c')}")
    record(sec, f"(d) 1 node, one PostgreSQL, {w} workers", "jobs/s", res.get("d", []),
           f"the PostgreSQL store without a second node; {cpu_note('d')}")
    record(sec, "ratio (b)/(a)", "%", res.get("b/a", []), "same total workers: the store's cost")
    record(sec, "ratio (b)/(d)", "%", res.get("b/d", []), "same total workers: a second node's cost")
    record(sec, "ratio (c)/(a)", "%", res.get("c/a", []))
    record(sec, "(b') as (b), raw batch + one ALL_COMPLETED wait", "jobs/s", res.get("b_raw", []),
           f"no client re-waits; {cpu_note('b_raw')}")
    RESULTS["sections"][sec]["runs"] = details
    RESULTS["sections"][sec]["problems"] = problems
    RESULTS["sections"][sec]["setup"] = (
        "PostgreSQL from tests/integration/pgserver.py: fsync=off, synchronous_commit=off, "
        "full_page_writes=off (pyjobd's overhead, not disk flushes); it shares the "
        f"{os.cpu_count()} cores with the nodes, their workers and this client")
    log("  note: " + RESULTS["sections"][sec]["setup"])
    if problems:
        log(f"  {len(problems)} problems (errors, warnings in node logs): " + "; ".join(problems[:10]))


# --------------------------------------------------------------------------- 7 instructions

def _callgrind_ir(path):
    """Total instructions (Ir) of a callgrind run, from its summary line."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no summary in {path}")


def section_instructions(args):
    """The server's instructions per job, counted by callgrind (stable where wall clock
    is not): the whole server run for n1 and for n2 sequential jobs (POST ?wait=5, one
    keep-alive connection), so start-up and shutdown cancel out of
    (Ir(n2) - Ir(n1)) / (n2 - n1). Workers are not traced (they are other programs)."""
    log("7. server instructions per job (callgrind, marginal over n2 - n1 jobs)")
    if not shutil_which("valgrind"):
        log("  valgrind not installed: skipped")
        return
    body = json.dumps(job_request(trivial.inc, 1))
    n1, n2 = args.instr_n
    out = {}
    for n in (n1, n2):
        for rep in range(args.reps):
            fd, cg = tempfile.mkstemp(prefix="pyjobd-callgrind-", suffix=".out")
            os.close(fd)
            srv = Server(args.bin, prefix=("valgrind", "--tool=callgrind", "--quiet",
                                           f"--callgrind-out-file={cg}"))
            try:
                c = Conn(srv.port)
                for _ in range(n):
                    st, job = c.post("/v1/jobs?wait=5", body)
                    assert st in (200, 201) and job["status"] == "succeeded", (st, job)
                c.close()
            finally:
                srv.stop(grace=60)  # callgrind writes its file as the server exits
            out.setdefault(n, []).append(_callgrind_ir(cg))
            os.unlink(cg)
    per_job = [(b - a) / (n2 - n1) for a, b in zip(out[n1], out[n2])]
    record("7 instructions", "pyjobd server per job (POST ?wait=5)", "instr", per_job,
           f"callgrind, (Ir({n2}) - Ir({n1})) / {n2 - n1}")
    RESULTS["sections"].setdefault("7 instructions", {})["totals"] = {str(k): v for k, v in out.items()}


# --------------------------------------------------------------------------- main

def print_table():
    lines = []
    w = max(len(r[1]) for r in ROWS) if ROWS else 30
    head = f"{'figure':<{w}}  {'median':>10}  {'min':>10}  {'max':>10}  unit    note"
    cur = None
    for sec, name, unit, s, note in ROWS:
        if sec != cur:
            lines.append("")
            lines.append(f"== {sec}")
            lines.append(head)
            cur = sec
        if s:
            lines.append(f"{name:<{w}}  {fmt(s['median']):>10}  {fmt(s['min']):>10}  "
                         f"{fmt(s['max']):>10}  {unit:<6}  {note}")
        else:
            lines.append(f"{name:<{w}}  {'n/a':>10}  {'':>10}  {'':>10}  {unit:<6}  {note}")
    text = "\n".join(lines)
    print(text)
    return text


def binary_id(path):
    """sha256 (first 12 hex digits), size and mtime of the server binary: which build
    the figures are for."""
    import hashlib
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        st = os.stat(path)
        return {"sha256": digest, "bytes": st.st_size,
                "mtime": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(st.st_mtime))}
    except OSError as e:
        return {"error": str(e)}


# --------------------------------------------------------------------------- 8 scheduling

def _lateness(conns, args, waiting_note):
    """Fills conns[0]'s store with args.sched_waiting jobs an hour ahead, then per rep
    submits args.sched_probes jobs due over 3 s (alternately through each conn) and
    returns {"p50": [...], "p99": [...]} of started_at - run_at (ms) and a note."""
    res = {"p50": [], "p99": []}
    c = conns[0]
    far = time.time() + 3600
    waiting = job_request(trivial.inc, 1, run_at=_rfc3339(far))
    for k in range(0, args.sched_waiting, 1000):
        st, body = c.post("/v1/jobs/batch", {"jobs": [waiting] * min(1000, args.sched_waiting - k)})
        if st != 201:
            raise RuntimeError(f"batch: {st} {str(body)[:200]}")
    for rep in range(args.reps):
        base = time.time() + 1.0
        n = args.sched_probes
        probes = [job_request(trivial.inc, i, run_at=_rfc3339(base + 3.0 * i / n)) for i in range(n)]
        ids = []
        for k in range(0, n, 1000):
            via = conns[(k // 1000) % len(conns)]
            st, body = via.post("/v1/jobs/batch", {"jobs": probes[k:k + 1000]})
            if st != 201:
                raise RuntimeError(f"batch: {st} {str(body)[:200]}")
            ids += [j["id"] for j in body["jobs"]]
        late = []
        for k in range(0, n, 1000):
            st, body = c.post("/v1/jobs/wait", {"ids": ids[k:k + 1000], "timeout": 60,
                                                "return_when": "ALL_COMPLETED"})
            for j in body["done"]:
                late.append(_ts(j["started_at"]) - _ts(j["run_at"]))
        if len(late) != n:
            raise RuntimeError(f"only {len(late)} of {n} probes finished")
        late.sort()
        res["p50"].append(late[len(late) // 2] * 1000)
        res["p99"].append(late[int(len(late) * 0.99)] * 1000)
    return res


def section_scheduling(args):
    """Lateness of scheduled jobs (issue 17 item 3): args.sched_waiting jobs scheduled an
    hour ahead wait in the server, and args.sched_probes jobs due over 3 s (run_at) are
    measured: started_at - run_at. One node in memory, then two nodes on one PostgreSQL
    (the timers in the database: the bound there is --pg-poll + 20 ms). The peer:
    asyncio's loop.call_at with as many timers pending, in this process (a floor: no
    HTTP, no worker)."""
    log(f"8. scheduling lateness ({args.sched_waiting:,} jobs waiting, "
        f"{args.sched_probes:,} probes due over 3 s)")
    # --max-jobs above the total: retention may only drop finished jobs, and with the
    # table past its cap it would drop each probe as soon as it finished.
    room = str(args.sched_waiting + args.sched_probes * (args.reps + 1) + 10)
    srv = Server(args.bin, extra=("--max-queue", room, "--max-jobs", room))
    try:
        c = Conn(srv.port, timeout=120)
        res = _lateness([c], args, "")
        st, pool = c.get("/v1/pool")
        note = f"{pool.get('scheduled', 0):,} still scheduled"
        c.close()
    finally:
        srv.stop()
    record("8 scheduling", "pyjobd lateness p50", "ms", res["p50"], note)
    record("8 scheduling", "pyjobd lateness p99", "ms", res["p99"], note)
    _scheduling_pg(args, room)
    peer = {"p50": [], "p99": []}
    for rep in range(args.reps):
        p50, p99 = asyncio.run(_asyncio_lateness(args.sched_waiting, args.sched_probes))
        peer["p50"].append(p50)
        peer["p99"].append(p99)
    record("8 scheduling", "asyncio call_at lateness p50", "ms", peer["p50"], "peer, in-process")
    record("8 scheduling", "asyncio call_at lateness p99", "ms", peer["p99"], "peer, in-process")


def _scheduling_pg(args, room):
    """Section 8 on two nodes sharing one PostgreSQL, --pg-poll 1 (the default)."""
    try:
        sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
        import pgserver
    except ImportError as e:
        log(f"  tests/integration/pgserver.py not importable ({e!r}): PostgreSQL part skipped")
        return
    if not pgserver.find_bindir():
        log("  PostgreSQL server binaries not found: PostgreSQL part skipped")
        return
    pg = pgserver.PgServer().start()
    servers, conns = [], []
    try:
        uri = pg.create_database("bench_sched")
        for name in ("sched1", "sched2"):
            servers.append(Server(args.bin, extra=("--store", uri, "--node-name", name,
                                                   "--max-queue", room, "--pg-poll", "1")))
        conns = [Conn(s.port, timeout=120) for s in servers]
        t0 = time.monotonic()
        res = _lateness(conns, args, "")
        log(f"  PostgreSQL: {args.sched_waiting:,} waiting + probes in {time.monotonic() - t0:.0f} s")
        note = "2 nodes, one PostgreSQL, --pg-poll 1 s"
        record("8 scheduling", "pyjobd on PostgreSQL lateness p50", "ms", res["p50"], note)
        record("8 scheduling", "pyjobd on PostgreSQL lateness p99", "ms", res["p99"], note)
    finally:
        for c in conns:
            c.close()
        for s in servers:
            s.stop()
        pg.close()


async def _asyncio_lateness(waiting, probes):
    loop = asyncio.get_running_loop()
    handles = [loop.call_at(loop.time() + 3600, lambda: None) for _ in range(waiting)]
    late, done = [], asyncio.Event()
    base = loop.time() + 1.0

    def fire(at):
        late.append(loop.time() - at)
        if len(late) == probes:
            done.set()
    for i in range(probes):
        at = base + 3.0 * i / probes
        loop.call_at(at, fire, at)
    await done.wait()
    for h in handles:
        h.cancel()
    late.sort()
    return late[len(late) // 2] * 1000, late[int(len(late) * 0.99)] * 1000


def _rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1000000:06d}Z"


def _ts(s):
    import datetime
    main, _, frac = s[:-1].partition(".")
    dt = datetime.datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


# --------------------------------------------------------------------------- 9 joblib

def section_joblib(args):
    """joblib.Parallel of 3,000 tiny tasks (trivial.inc) with the backend "pyjobd"
    (client/python/pyjobd/joblib.py) against a server started here, and with loky
    (joblib's default backend); n_jobs = WORKERS for both, batch_size='auto' (joblib's
    default), each timed from the call to its list of results. Reps alternate the two
    backends; both are warmed up first (loky's workers start, pyjobd's connect)."""
    n = 1000 if args.quick else 3000
    log(f"9. joblib Parallel ({n:,} tiny tasks, n_jobs={WORKERS}): backend pyjobd against loky")
    import joblib
    from joblib import Parallel, delayed
    import pyjobd.joblib  # noqa: F401  (registers the backend "pyjobd")

    expected = [i + 1 for i in range(n)]

    def timed(tasks):
        t = time.perf_counter()
        out = Parallel(n_jobs=WORKERS)(delayed(trivial.inc)(i) for i in range(tasks))
        dt = time.perf_counter() - t
        assert out == expected[:tasks], out[:3]
        return dt

    res = {"pyjobd": [], "loky": [], "jobs": []}
    srv = Server(args.bin)
    try:
        # One backend for every rep, as loky's executor is reused: the steady state.
        with joblib.parallel_backend("pyjobd", url=srv.url) as (backend, _):
            timed(200)  # warm-up
            with joblib.parallel_backend("loky"):
                timed(200)
            for rep in range(args.reps):
                before = backend.jobs_submitted
                res["pyjobd"].append(timed(n))
                res["jobs"].append(backend.jobs_submitted - before)
                with joblib.parallel_backend("loky"):
                    res["loky"].append(timed(n))
    finally:
        srv.stop()
    jobs = f"{min(res['jobs'])}-{max(res['jobs'])} jobs (auto-batching) for {n:,} tasks"
    # ms rather than s: the table shows two decimals, and these take tens of ms.
    record("9 joblib", f"pyjobd Parallel ({n:,} tasks)", "ms", [t * 1000 for t in res["pyjobd"]], jobs)
    record("9 joblib", f"loky Parallel ({n:,} tasks)", "ms", [t * 1000 for t in res["loky"]], "peer")
    record("9 joblib", "pyjobd Parallel", "jobs/s", [n / t for t in res["pyjobd"]], "tasks/s")
    record("9 joblib", "loky Parallel", "jobs/s", [n / t for t in res["loky"]], "tasks/s, peer")
    record("9 joblib", "pyjobd / loky (time)", "x",
           [a / b for a, b in zip(res["pyjobd"], res["loky"])], "per rep; below 1: pyjobd faster")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "pyjobd"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="1,2,3,4,5,6,7,8,9")
    ap.add_argument("--quick", action="store_true", help="small sizes, for trying the harness")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"))
    args = ap.parse_args()
    args.latency_n, args.map_n, args.http_secs = 2000, 20000, 5
    args.http_conns = [16, 64, 256]
    args.crashes, args.peer_crashes, args.retained, args.waiters, args.mem_reps = 20, 10, 100000, 2000, 2
    args.cluster_n = 4000
    args.instr_n = (200, 1200)
    args.sched_waiting, args.sched_probes = 100000, 1000
    if args.quick:
        args.latency_n, args.map_n, args.http_secs = 200, 2000, 2
        args.http_conns = [16]
        args.crashes, args.peer_crashes, args.retained, args.waiters = 3, 2, 5000, 200
        args.cluster_n = 1000
        args.instr_n = (50, 250)
        args.sched_waiting, args.sched_probes = 5000, 200
        args.reps = min(args.reps, 1)
    RESULTS["meta"] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "nproc": os.cpu_count(), "workers": WORKERS, "reps": args.reps,
        "python": sys.version.split()[0], "cloudpickle": cloudpickle.__version__,
        "cpu": (subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"],
                               capture_output=True, text=True).stdout.strip()),
        "binary": args.bin, "quick": args.quick, "binary_id": binary_id(args.bin),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }
    try:
        import joblib
        RESULTS["meta"]["joblib"] = joblib.__version__
    except ImportError:
        pass
    t0 = time.monotonic()
    sections = {"1": section_latency, "2": section_throughput, "3": section_http,
                "4": section_crash, "5": section_memory, "6": section_cluster,
                "7": section_instructions, "8": section_scheduling, "9": section_joblib}
    for key in args.only.split(","):
        fn = sections.get(key.strip())
        if not fn:
            continue
        time.sleep(1.0)  # let the previous section's processes go away
        t = time.monotonic()
        try:
            fn(args)
        except Exception:
            log(f"section {key} failed (not fatal):\n{traceback.format_exc()}")
            RESULTS["sections"].setdefault(f"{key} error", {})["traceback"] = traceback.format_exc()
        RESULTS["meta"][f"section_{key}_seconds"] = round(time.monotonic() - t, 1)
    RESULTS["meta"]["total_seconds"] = round(time.monotonic() - t0, 1)
    RESULTS["meta"]["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    table = print_table()
    RESULTS["table"] = table
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(RESULTS, f, indent=1, default=str)
    print(f"\nwritten {args.out} ({RESULTS['meta']['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
