#!/usr/bin/python3
"""End-to-end test of the pyjobd container image (`make docker-test`).

Builds docker/Dockerfile and docker/examples/numpy/Dockerfile, starts containers with a
token on a published loopback port, and drives them from the host with curl and the
Python client (client/python).  Last, two containers share one PostgreSQL (a throw-away
server on the host's loopback, from tests/integration/pgserver.py, reached through host
networking).  Every container and image it creates, and the PostgreSQL server, is
removed (stopped by PID) at the end, also on failure or Ctrl-C.

Engine: $CONTAINER_ENGINE if set; else `docker` when a daemon answers; else whatever
../shared/tools/container-engine.sh prints (it sets up podman with a local
debian:bookworm-slim base).  Run it with Debian's /usr/bin/python3 (the workers'
Python, with python3-cloudpickle): payloads must come from the same major.minor.
"""

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import cloudpickle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE_TOOL = os.environ.get("CONTAINER_ENGINE_TOOL") or os.path.join(ROOT, "..", "shared", "tools",
                                                                     "container-engine.sh")
T0 = time.monotonic()

containers = []       # ids, removed at exit
volumes = []          # names, removed at exit
tempdirs = []         # host directories, removed at exit
images = []           # ids, removed at exit (newest first)
images_before = set()
build_containers_before = None   # podman: build containers that existed before we built
engine = None
results = []          # (name, seconds) of the checks that passed
pg_servers = []       # tests/integration/pgserver.PgServer instances, closed at exit


class Failure(Exception):
    pass


def log(msg):
    print(f"[docker-test {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def run(*args, check=True, timeout=120, input=None):
    """Runs a command; returns CompletedProcess (text).  Raises Failure when check fails."""
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"timed out after {timeout} s: {' '.join(args)}") from e
    if check and p.returncode != 0:
        raise Failure(f"exit {p.returncode}: {' '.join(args)}\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p


def eng(*args, **kw):
    return run(engine, *args, **kw)


def check(cond, what, detail=""):
    if not cond:
        raise Failure(f"{what}{': ' + str(detail) if detail != '' else ''}")


def step(name):
    """Decorator-free timing helper: `with step("..."):`."""
    class _Step:
        def __enter__(self):
            self.t = time.monotonic()
            log(f"-- {name}")

        def __exit__(self, et, ev, tb):
            if et is None:
                results.append((name, time.monotonic() - self.t))
    return _Step()


# --------------------------------------------------------------------------- engine


def find_engine():
    if os.environ.get("CONTAINER_ENGINE"):
        return os.environ["CONTAINER_ENGINE"]
    if shutil.which("docker") and run("docker", "info", check=False, timeout=30).returncode == 0:
        return "docker"
    if not os.path.exists(ENGINE_TOOL):
        raise Failure("no container engine: no working Docker daemon, and "
                      f"{os.path.normpath(ENGINE_TOOL)} (sets up podman) is missing; "
                      "set CONTAINER_ENGINE=podman|docker or provide ../shared beside the repo")
    log(f"setting up the engine with {os.path.normpath(ENGINE_TOOL)}")
    p = run("bash", ENGINE_TOOL, timeout=600)
    name = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    check(name and shutil.which(name), "container-engine.sh printed no usable engine", p.stdout + p.stderr)
    return name


def build_containers():
    """podman: build ("working") containers, which an interrupted build leaves behind."""
    out = eng("ps", "-a", "--external", "--no-trunc", "--format", "{{.ID}} {{.Names}}",
              check=False).stdout.split("\n")
    return {line.split()[0] for line in out if line.strip().endswith("working-container")
            or "-working-container-" in line}


def image_ids():
    return set(eng("images", "-a", "-q", "--no-trunc").stdout.split())


def build(tag, dockerfile, context, *extra):
    """Builds an image; returns its id (also registered for removal)."""
    with tempfile.NamedTemporaryFile(prefix="pyjobd-iid-", delete=False) as f:
        iidfile = f.name
    args = ["build", "--iidfile", iidfile, "-f", dockerfile, "-t", tag]
    if engine != "docker":
        # podman: the local base only (no registry); docker format (OCI drops
        # HEALTHCHECK); no cached intermediate images left behind
        args += ["--pull=never", "--format", "docker", "--layers=false"]
    t = time.monotonic()
    try:
        p = eng(*args, *extra, context, timeout=900, check=False)
        iid = open(iidfile).read().strip()
    finally:
        os.unlink(iidfile)
    if iid and iid not in images:
        images.insert(0, iid)
    if p.returncode != 0:
        raise Failure(f"{engine} build of {dockerfile} failed:\n{p.stdout[-4000:]}{p.stderr[-4000:]}")
    log(f"built {tag} = {iid[:19]} in {time.monotonic() - t:.1f} s")
    return iid


def create(image, *opts, cmd=()):
    cid = eng("create", *opts, image, *cmd).stdout.strip().splitlines()[-1]
    containers.insert(0, cid)
    return cid


def inspect(cid, fmt):
    return eng("container", "inspect", "--format", fmt, cid).stdout.strip()


def image_size(iid):
    p = eng("image", "inspect", "--format", "{{.Size}}", iid, check=False)
    return int(p.stdout.strip()) if p.returncode == 0 and p.stdout.strip().isdigit() else 0


def cleanup():
    if build_containers_before is not None:   # those of a build we interrupted
        containers.extend(build_containers() - build_containers_before)
    for cid in containers:
        run(engine, "kill", cid, check=False, timeout=60)
        run(engine, "rm", "-f", cid, check=False, timeout=60)
    for pg in pg_servers:     # after the containers: they are its clients
        try:
            pg.close()
        except Exception as e:
            log(f"warning: could not stop PostgreSQL (pid {pg.pid}): {e}")
    for vol in volumes:
        run(engine, "volume", "rm", "-f", vol, check=False, timeout=60)
    for d in tempdirs:
        shutil.rmtree(d, ignore_errors=True)
    # Images this run created: the ones it built, plus any new untagged leftovers.
    leftovers = []
    if images_before:
        try:
            dangling = set(eng("images", "-a", "-q", "--no-trunc", "--filter", "dangling=true",
                               check=False).stdout.split())
            leftovers = [i for i in dangling - images_before if i not in images]
        except Exception:
            pass
    for iid in images + leftovers:
        p = run(engine, "rmi", "-f", iid, check=False, timeout=120)
        if p.returncode != 0 and "image not known" not in p.stderr and "No such image" not in p.stderr:
            log(f"warning: could not remove image {iid[:19]}: {p.stderr.strip()}")
    log(f"removed {len(containers)} containers and {len(images) + len(leftovers)} images")


# --------------------------------------------------------------------------- HTTP


def b64(obj):
    return base64.b64encode(cloudpickle.dumps(obj)).decode()


def curl(url, *opts, token=None, body=None, timeout=60):
    """curl from the host; returns (status, parsed JSON or text)."""
    args = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", str(timeout)]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    if body is not None:
        args += ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-"]
    p = run(*args, *opts, url, timeout=timeout + 10, check=False,
            input=json.dumps(body) if body is not None else None)
    if p.returncode != 0:
        return 0, p.stderr.strip()
    text, _, code = p.stdout.rpartition("\n")
    try:
        return int(code), json.loads(text)
    except ValueError:
        return int(code), text


def submit(base, token, fn, args=(), wait=30, timeout=None, raw_callable=None):
    body = {"callable": raw_callable or b64(fn), "args": b64(tuple(args))}
    if timeout is not None:
        body["timeout"] = timeout
    status, job = curl(f"{base}/v1/jobs?wait={wait}", token=token, body=body, timeout=wait + 15)
    check(status == 201 and isinstance(job, dict), "POST /v1/jobs", (status, job))
    return job


def result_of(job):
    check(job.get("status") == "succeeded", "job did not succeed", json.dumps(job)[:2000])
    return cloudpickle.loads(base64.b64decode(job["result"]))


def wait_ready(cid, base, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if inspect(cid, "{{.State.Running}}") != "true":
            raise Failure(f"container exited early:\n{eng('logs', cid, check=False).stderr[-3000:]}")
        status, _ = curl(f"{base}/healthz", timeout=2)
        if status == 200:
            return
        time.sleep(0.2)
    raise Failure(f"{base}/healthz did not answer 200 within {seconds} s")


def published(cid):
    out = eng("port", cid, "8080/tcp").stdout.strip().splitlines()[0]
    host, _, port = out.rpartition(":")
    check(host == "127.0.0.1", "port published beyond loopback", out)
    return f"http://127.0.0.1:{port}"


def start_server(image, token, *opts):
    cid = create(image, "-e", f"PYJOBD_TOKEN={token}", "-e", "PYJOBD_WORKERS=2",
                 "-p", "127.0.0.1::8080", *opts)
    eng("start", cid)
    base = published(cid)
    wait_ready(cid, base)
    return cid, base


# --------------------------------------------------------------------------- jobs
# Functions defined here are pickled by value (this module is __main__).


def whoami():
    """The job's uid and user name (None: no user database entry, as --worker-uids
    gives), its cwd, PID 1, and the uid and effective capabilities of the server."""
    import os
    import pwd
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = None
    server = {}
    with open(f"/proc/{os.getppid()}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            server[key] = value.split()
    return (os.getuid(), name, os.getcwd(), open("/proc/1/comm").read().strip(),
            int(server["Uid"][0]), server["CapEff"][0])


WORKER_UIDS = range(64000, 65000)  # the image's default --worker-uids


def sleeper(seconds):
    import time
    time.sleep(seconds)
    return seconds


def segfault():
    import ctypes
    ctypes.string_at(0)


def leave_orphan(seconds):
    """Double fork: the grandchild (a `sleep`) outlives its parent, as a daemonizing
    job's would; setsid() takes it out of the worker's process group. The worker is its
    subreaper: it is reparented there and killed as the job ends."""
    import os
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", str(seconds)])
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def zombies():
    """(pid, comm, ppid) of the zombies in the container."""
    return [(pid, comm, ppid) for pid, comm, ppid, state in processes() if state == "Z"]


def plant_len():
    """One tenant's job: patches builtins.len in its worker."""
    import builtins
    import os
    builtins.len = lambda x: 1337
    return os.getpid()


def look_len():
    """Another tenant's job: what len() and which process it gets."""
    import builtins
    import os
    return [builtins.len([1, 2]), os.getpid()]


def kill_other_uids():
    """Alice's job: SIGKILL every process of the container that is not hers."""
    import os
    import signal
    killed, denied = [], []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                uid = int(next(line for line in f if line.startswith("Uid:")).split()[1])
        except (OSError, StopIteration):
            continue
        if uid == os.getuid():
            continue
        try:
            os.kill(int(entry), signal.SIGKILL)
            killed.append(int(entry))
        except OSError:
            denied.append(int(entry))
    return {"killed": killed, "denied": denied}


def forge_hello():
    """A job that writes a hello frame of its own on its worker's channel (fd 3)."""
    import os
    import time
    os.write(3, bytes.fromhex("00000000" "02000000"))
    time.sleep(5)


def submit_json(base, token, fn):
    """POST /v1/jobs?wait with result_format json (unpickles nothing); the job."""
    body = {"callable": b64(fn), "result_format": "json"}
    status, job = curl(f"{base}/v1/jobs?wait=30", token=token, body=body, timeout=45)
    check(status in (200, 201) and isinstance(job, dict), "POST /v1/jobs", (status, job))
    return job


def processes():
    """(pid, comm, ppid, state) of every process in the container."""
    import os
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            out.append((int(d), stat[stat.index("(") + 1:stat.rindex(")")], int(fields[1]),
                        fields[0]))
    return out


def peek_db_password():
    """What a job can learn of the database password: the server's environment and
    command line (the worker's parent) and the password file."""
    import os
    out = {}
    for name, path in (("environ", f"/proc/{os.getppid()}/environ"),
                       ("cmdline", f"/proc/{os.getppid()}/cmdline"), ("pgpass", "/run/secrets/pgpass")):
        try:
            out[name] = open(path, "rb").read().decode(errors="replace")
        except OSError as e:
            out[name] = f"denied: {type(e).__name__}"
    return out


def numpy_sum_version():
    np = __import__("numpy")
    return int(np.sum([1, 2, 3])), np.__version__


# numpy.sum pickled by reference (protocol 0 GLOBAL opcode): what pickle.dumps(numpy.sum)
# amounts to, made without needing numpy on the host.
NUMPY_SUM_BY_REF = base64.b64encode(b"cnumpy\nsum\n.").decode()


# --------------------------------------------------------------------------- tests


def main():
    global engine, images_before, build_containers_before
    for tool in ("curl",):
        check(shutil.which(tool), f"{tool} is needed on the host")
    engine = find_engine()
    log(f"engine: {engine} ({eng('--version').stdout.strip()})")
    images_before = image_ids()
    if engine != "docker":
        build_containers_before = build_containers()
    tag = f"localhost/pyjobd-test:{os.getpid()}"
    numpy_tag = f"localhost/pyjobd-test-numpy:{os.getpid()}"
    token = secrets.token_hex(16)

    with step("build docker/Dockerfile"):
        iid = build(tag, "docker/Dockerfile", ".")
        size = image_size(iid)
        base_size = image_size("debian:bookworm-slim")
        if base_size:
            log(f"image size: {size / 1e6:.1f} MB = base debian:bookworm-slim {base_size / 1e6:.1f} MB"
                f" + {(size - base_size) / 1e6:.1f} MB added by the image")
        else:
            log(f"image size: {size / 1e6:.1f} MB")

    with step("refuses to start on 0.0.0.0 without a token (exit 2, clear message)"):
        cid = create(iid)
        p = eng("start", "-a", cid, check=False, timeout=60)
        code = inspect(cid, "{{.State.ExitCode}}")
        out = p.stdout + p.stderr
        check(code == "2", "exit status without a token", (code, out))
        check("without authentication" in out and "PYJOBD_TOKEN" in out, "message", out)

    with step("starts with a token; GET /healthz on the published loopback port"):
        cid, base = start_server(iid, token, "--health-interval", "2s")
        status, body = curl(f"{base}/healthz")
        check(status == 200, "/healthz", (status, body))
        p = eng("logs", cid)
        check("listening on 0.0.0.0:8080" in p.stdout + p.stderr, "the 'listening on' line", p.stdout)

    with step("401 without the token, and with a wrong one"):
        for tok in (None, "x" * 32):
            status, body = curl(f"{base}/v1/jobs", token=tok, body={"callable": b64(abs)})
            check(status == 401, f"POST /v1/jobs with token {tok!r}", (status, body))

    with step("a job with curl (payload from /usr/bin/python3 + cloudpickle)"):
        job = submit(base, token, lambda x, y: x * y, (6, 7))
        check(result_of(job) == 42, "6 * 7", job)

    with step("workers run as a uid of their tenant's, the server as pyjobd with CAP_KILL "
              "only; PID 1 is tini"):
        uid, name, cwd, init, server_uid, server_caps = result_of(submit(base, token, whoami))
        check(uid in WORKER_UIDS and name is None, "worker uid", (uid, name))
        check(server_uid == 10001 and int(server_caps, 16) == 1 << 5, "server uid and capabilities",
              (server_uid, server_caps))
        check(init == "tini", "PID 1", init)
        log(f"worker: uid {uid}, cwd {cwd}; server: uid {server_uid}, CapEff {server_caps}; "
            f"PID 1: {init}")

    with step("a job with the Python client (client/python)"):
        sys.path.insert(0, os.path.join(ROOT, "client", "python"))
        import pyjobd
        with pyjobd.Executor(base, token) as ex:
            check(list(ex.map(lambda x: x * x, range(6))) == [0, 1, 4, 9, 16, 25], "Executor.map")
            fut = ex.submit(sleeper, 0.1)
            check(fut.result(timeout=30) == 0.1, "Executor.submit")
            try:
                ex.submit_with(sleeper, (30,), timeout=1).result(timeout=30)
                raise Failure("the client got no JobTimeoutError")
            except pyjobd.JobTimeoutError:
                pass

    with step("a timeout inside the container (error.type timeout)"):
        t = time.monotonic()
        job = submit(base, token, sleeper, (60,), timeout=1)
        check(job["status"] == "failed" and job["error"]["type"] == "timeout", "timeout", job)
        check(time.monotonic() - t < 15, "the timeout took too long", time.monotonic() - t)

    with step("a crash inside the container (error.type worker_crashed, SIGSEGV)"):
        job = submit(base, token, segfault)
        err = job.get("error") or {}
        check(job["status"] == "failed" and err.get("type") == "worker_crashed", "crash", job)
        check(err.get("signal") == "SIGSEGV", "signal", err)
        check(result_of(submit(base, token, lambda: "still serving")) == "still serving", "after a crash")

    with step("orphaned grandchildren are reaped (tini as PID 1)"):
        result_of(submit(base, token, leave_orphan, (1,)))
        time.sleep(2.5)
        z = result_of(submit(base, token, zombies))
        check(not z, "zombies in the container", z)

    with step("base image: numpy.sum by reference fails with invalid_payload/ModuleNotFoundError"):
        job = submit(base, token, None, ([1, 2, 3],), raw_callable=NUMPY_SUM_BY_REF)
        err = job.get("error") or {}
        check(job["status"] == "failed" and err.get("type") == "invalid_payload", "invalid_payload", job)
        check("numpy" in json.dumps(err), "error names numpy", err)
        job = submit(base, token, numpy_sum_version)
        err = job.get("error") or {}
        check(err.get("type") == "exception" and err.get("exc_type", "").endswith("ModuleNotFoundError"),
              "import numpy inside a job", job)

    with step("health status becomes healthy"):
        deadline = time.monotonic() + 60
        health = ""
        while time.monotonic() < deadline:
            if engine != "docker":
                # podman runs health checks from systemd timers; without systemd, run one now
                eng("healthcheck", "run", cid, check=False)
            health = inspect(cid, "{{.State.Health.Status}}")
            if health == "healthy":
                break
            time.sleep(1)
        check(health == "healthy", "health status", health)

    with step("stop (SIGTERM) drains the running job and exits 0 within the grace period"):
        grace = float(eng("exec", cid, "printenv", "PYJOBD_SHUTDOWN_GRACE").stdout.strip())
        job = submit(base, token, sleeper, (2,), wait=0)
        deadline = time.monotonic() + 10
        while job["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
            _, job = curl(f"{base}/v1/jobs/{job['id']}", token=token)
        check(job["status"] == "running", "the job to drain never started", job)
        box = {}

        def long_poll():   # in flight when SIGTERM arrives: must get the finished job
            box["reply"] = curl(f"{base}/v1/jobs/{job['id']}?wait=30", token=token, timeout=40)
        th = threading.Thread(target=long_poll)
        th.start()
        time.sleep(0.3)
        t = time.monotonic()
        eng("stop", cid, timeout=60)   # the engine's default timeout (10 s) before SIGKILL
        took = time.monotonic() - t
        th.join(30)
        finished = box.get("reply", (0, {}))[1]
        code = inspect(cid, "{{.State.ExitCode}}")
        p = eng("logs", cid)
        logs = p.stdout + p.stderr
        check(code == "0", "exit status after stop", (code, logs[-2000:]))
        check(took < grace + 1, f"stop took {took:.1f} s (grace {grace} s)")
        check("received SIGTERM" in logs and "stopped" in logs, "shutdown logs", logs[-2000:])
        check(isinstance(finished, dict) and finished.get("status") == "succeeded",
              "the running job was drained", box)
        log(f"stopped in {took:.1f} s (grace {grace:g} s), exit 0, running job finished")

    with step("without tini (--entrypoint pyjobd) a job's orphans do not linger either: "
              "the worker, their subreaper, kills and reaps them as the job ends"):
        cid2, base2 = start_server(iid, token, "--entrypoint", "/usr/local/bin/pyjobd")
        orphan_parent = result_of(submit(base2, token, leave_orphan, (30,)))
        z = result_of(submit(base2, token, zombies))
        check(not z, "zombies in the container without tini", z)
        procs = result_of(submit(base2, token, processes))
        check(not any(comm == "sleep" for _, comm, _, _ in procs), "the job's orphan outlived it",
              (orphan_parent, procs))
        eng("rm", "-f", cid2)

    with step("two tenants with the image's defaults (--isolation tenant, a uid per tenant): "
              "what one job plants the other tenant's job does not meet, nor can it signal "
              "that tenant's worker; a forged frame is a protocol_violation"):
        tokdir2 = tempfile.mkdtemp(prefix="pyjobd-docker-test-")
        tempdirs.append(tokdir2)
        alice, bob = secrets.token_hex(16), secrets.token_hex(16)
        tf = os.path.join(tokdir2, "tokens")
        with open(tf, "w") as f:
            f.write(f"alice:{alice}\nbob:{bob}\n")
        os.chown(tf, 10001, 10001)
        os.chmod(tf, 0o600)
        os.chmod(tokdir2, 0o755)
        cid4 = create(iid, "-v", f"{tf}:/run/secrets/pyjobd_tokens:ro",
                      "-e", "PYJOBD_TOKEN_FILE=/run/secrets/pyjobd_tokens",
                      "-e", "PYJOBD_WORKERS=2", "-p", "127.0.0.1::8080")
        eng("start", cid4)
        base4 = published(cid4)
        wait_ready(cid4, base4)
        a_uid = result_of(submit(base4, alice, whoami))[0]
        b_uid = result_of(submit(base4, bob, whoami))[0]
        check(a_uid in WORKER_UIDS and b_uid in WORKER_UIDS and a_uid != b_uid,
              "a uid per tenant", (a_uid, b_uid))
        hit = submit_json(base4, alice, kill_other_uids)
        check(hit["status"] == "succeeded" and hit["result_json"]["killed"] == [] and
              hit["result_json"]["denied"], "alice's job signalled another uid's process", hit)
        log(f"alice runs as uid {a_uid}, bob as {b_uid}; alice's job was denied signalling "
            f"{len(hit['result_json']['denied'])} processes of other uids")
        planted = submit_json(base4, alice, plant_len)
        check(planted["status"] == "succeeded", "alice's job", planted)
        seen = submit_json(base4, bob, look_len)
        check(seen["status"] == "succeeded" and seen["result_json"][0] == 2 and
              seen["result_json"][1] != planted["result_json"],
              "bob's job met alice's len()", (planted, seen))
        forged = submit_json(base4, alice, forge_hello)
        err = forged.get("error") or {}
        check(forged["status"] == "failed" and err.get("type") == "protocol_violation",
              "a forged hello frame", forged)
        eng("rm", "-f", cid4)

    with step("build docker/examples/numpy (FROM the image + python3-numpy)"):
        numpy_iid = build(numpy_tag, "docker/examples/numpy/Dockerfile", "docker/examples/numpy",
                          "--build-arg", f"BASE={tag}")
        log(f"numpy image size: {image_size(numpy_iid) / 1e6:.1f} MB")

    with step("extended image (token from a mounted file, sqlite store on a volume): numpy jobs"):
        tokdir = tempfile.mkdtemp(prefix="pyjobd-docker-test-")
        tempdirs.append(tokdir)
        tokfile = os.path.join(tokdir, "token")
        with open(tokfile, "w") as f:
            f.write(f"ci:{token}\n")
        # A secret as it should be mounted: the container's pyjobd user's alone (the
        # server refuses a token file that others can read).
        os.chown(tokfile, 10001, 10001)
        os.chmod(tokfile, 0o600)
        os.chmod(tokdir, 0o755)
        vol = eng("volume", "create", f"pyjobd-test-{os.getpid()}").stdout.strip()
        volumes.append(vol)
        cid3 = create(numpy_iid, "-v", f"{tokfile}:/run/secrets/pyjobd_token:ro",
                      "-v", f"{vol}:/var/lib/pyjobd",
                      "-e", "PYJOBD_STORE=sqlite:/var/lib/pyjobd/jobs.db",
                      "-e", "PYJOBD_TOKEN_FILE=/run/secrets/pyjobd_token",
                      "-e", "PYJOBD_WORKERS=1", "-p", "127.0.0.1::8080")
        eng("start", cid3)
        base3 = published(cid3)
        wait_ready(cid3, base3)
        status, _ = curl(f"{base3}/v1/jobs", token=None, body={"callable": b64(abs)})
        check(status == 401, "401 without the token (file)", status)
        job = submit(base3, token, None, ([1, 2, 3],), raw_callable=NUMPY_SUM_BY_REF)
        check(job["status"] == "succeeded", "numpy.sum by reference", job)
        total, version = result_of(submit(base3, token, numpy_sum_version))
        check(total == 6, "numpy.sum", total)
        uid, name, _, init, server_uid, _ = result_of(submit(base3, token, whoami))
        check(uid in WORKER_UIDS and server_uid == 10001 and init == "tini",
              "uids/PID 1 in the extended image", (uid, server_uid, init))
        log(f"numpy {version} in the extended image")
        eng("restart", cid3, timeout=60)
        base3 = published(cid3)
        wait_ready(cid3, base3)
        status, again = curl(f"{base3}/v1/jobs/{job['id']}", token=token)
        check(status == 200 and again.get("status") == "succeeded", "job kept across a restart", again)
        eng("stop", cid3, timeout=60)
        check(inspect(cid3, "{{.State.ExitCode}}") == "0", "extended image exit status")

    with step("two containers on one PostgreSQL (host network): any node answers for any job"):
        shared_store(iid, token)

    return size


def start_pg():
    """A throw-away PostgreSQL on the host's loopback (tests/integration/pgserver.py),
    with a role `pyjobd` that must log in with a password (scram) to its database.
    Returns (server, dbname, password)."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    import pgserver
    if not pgserver.find_bindir():
        raise Failure("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: "
                      "run `make deps` (apt-get install postgresql)")
    pg = pgserver.PgServer()
    pg_servers.append(pg)
    try:
        pg.start()
    except pgserver.PgError as e:
        raise Failure(f"could not start PostgreSQL: {e}") from e
    db, password = "pyjobd_docker", secrets.token_hex(16)
    pg.sql("postgres", f"CREATE ROLE pyjobd LOGIN PASSWORD '{password}'")
    pg.sql("postgres", f"CREATE DATABASE {db} OWNER pyjobd")
    # First match wins: pyjobd must bring its password; the harness keeps trust.
    hba = os.path.join(pg.datadir, "pg_hba.conf")
    with open(hba) as f:
        rules = f.read()
    with open(hba, "w") as f:
        f.write(f"host {db} pyjobd 127.0.0.1/32 scram-sha-256\n" + rules)
    pg.sql("postgres", "SELECT pg_reload_conf()")
    return pg, db, password


def shared_store(iid, token):
    """Two containers of the image, as in docker/examples/postgres/compose.yaml: server
    as root, workers as `pyjobd`, the password in a PGPASSFILE (mode 0600) mounted
    read-only, PYJOBD_STORE without it.  Host networking: the nodes reach PostgreSQL on
    127.0.0.1 and listen on free loopback ports (PYJOBD_LISTEN=127.0.0.1)."""
    pg, db, password = start_pg()
    log(f"PostgreSQL {os.path.basename(os.path.dirname(pg.bindir))} on 127.0.0.1:{pg.port} "
        f"(pid {pg.pid}), database {db}")
    d = tempfile.mkdtemp(prefix="pyjobd-docker-pg-")
    tempdirs.append(d)
    pgpass = os.path.join(d, "pgpass")
    with open(pgpass, "w") as f:
        f.write(f"127.0.0.1:{pg.port}:{db}:pyjobd:{password}\n")
    os.chown(pgpass, 10001, 10001)  # the server reads it once it runs as pyjobd
    os.chmod(pgpass, 0o600)   # libpq ignores a password file others may read
    store = f"postgresql://pyjobd@127.0.0.1:{pg.port}/{db}"
    nodes = []
    for name in ("one", "two"):
        port = free_tcp_port()
        cid = create(iid, "--network", "host", "--user", "0",
                     "-v", f"{pgpass}:/run/secrets/pgpass:ro", "-e", "PGPASSFILE=/run/secrets/pgpass",
                     "-e", f"PYJOBD_STORE={store}", "-e", f"PYJOBD_NODE_NAME={name}",
                     "-e", f"PYJOBD_TOKEN={token}",
                     "-e", "PYJOBD_LISTEN=127.0.0.1", "-e", f"PYJOBD_PORT={port}",
                     "-e", "PYJOBD_WORKERS=1", "-e", "PYJOBD_NODE_LEASE=3")
        eng("start", cid)
        nodes.append((cid, f"http://127.0.0.1:{port}"))
    for cid, base in nodes:
        wait_ready(cid, base)
    (cid1, base1), (cid2, base2) = nodes

    ids = {}
    for base in (base1, base2):
        status, info = curl(f"{base}/v1/info", token=token)
        check(status == 200, "GET /v1/info", (status, info))
        check(info.get("store") == f"postgresql://pyjobd@127.0.0.1:{pg.port}/{db} (schema pyjobd)",
              "/v1/info store", info.get("store"))
        ids[base] = info.get("node") or ""
    check(ids[base1].startswith("one-") and ids[base2].startswith("two-"), "node ids", ids)
    log(f"nodes {ids[base1]} and {ids[base2]}, store {info['store']}")

    # Sent to node one, read from node two (a long-poll there).
    job = submit(base1, token, lambda x, y: x * y, (6, 7), wait=0)
    status, done = curl(f"{base2}/v1/jobs/{job['id']}?wait=30", token=token, timeout=40)
    check(status == 200, "GET on the other node", (status, done))
    check(result_of(done) == 42 and done.get("node") == ids[base1], "job read on node two", done)
    status, out = curl(f"{base2}/v1/jobs/{job['id']}/output", token=token)
    check(status == 404 and "node that ran it" in json.dumps(out), "output on the other node", (status, out))
    status, out = curl(f"{base1}/v1/jobs/{job['id']}/output", token=token)
    check(status == 200, "output on the node that ran it", (status, out))

    # Node one has one worker: of two jobs sent to it, node two claims one.
    jobs = [submit(base1, token, sleeper, (1.5,), wait=0) for _ in range(2)]
    ran_on = set()
    for j in jobs:
        status, done = curl(f"{base1}/v1/jobs/{j['id']}?wait=30", token=token, timeout=40)
        check(status == 200 and done.get("status") == "succeeded", "sleeper", (status, done))
        ran_on.add(done.get("node"))
    check(ran_on == {ids[base1], ids[base2]}, "two jobs sent to node one ran on both nodes", ran_on)

    # Workers run under uids of their own, the server as pyjobd: no way to the password.
    for base in (base1, base2):
        uid, name, _, _, server_uid, _ = result_of(submit(base, token, whoami))
        check(uid in WORKER_UIDS and server_uid == 10001, "worker and server uids", (uid, server_uid))
        seen = result_of(submit(base, token, peek_db_password))
        # (the command line is readable by anyone; the password is not on it)
        check(seen["environ"].startswith("denied") and seen["pgpass"].startswith("denied")
              and password not in json.dumps(seen), "a job could read the database password", seen)
    log(f"jobs sent to node one ran on {sorted(ran_on)}; workers run as uid {uid}; a job "
        f"reading the server's environment: {seen['environ']}, the password file: {seen['pgpass']}")
    for cid, _ in nodes:
        p = eng("logs", cid)
        check(password not in p.stdout + p.stderr, "the password in a node's log")
        eng("stop", cid, timeout=60)
        check(inspect(cid, "{{.State.ExitCode}}") == "0", "exit status of a node", cid)


def free_tcp_port():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    os.chdir(ROOT)
    # make/CI stop us with SIGTERM or SIGINT: clean up all the same.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rc = 1
    try:
        size = main()
        rc = 0
    except Failure as e:
        log(f"FAILED: {e}")
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    except SystemExit as e:   # SIGTERM
        log("terminated")
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        if engine:
            try:
                cleanup()
            except Exception as e:  # never hide the test's own outcome
                log(f"cleanup error: {e}")
    for name, secs in results:
        print(f"  ok  {secs:5.1f}s  {name}")
    print(f"docker-test: {'PASSED' if rc == 0 else 'FAILED'} in {time.monotonic() - T0:.0f} s"
          + (f"; image {size / 1e6:.0f} MB" if rc == 0 else ""))
    sys.exit(rc)
