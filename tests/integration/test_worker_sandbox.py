"""The worker's sandbox (pool/worker/sandbox.c, documented in pool/worker/worker.h),
checked on pyjobd-worker itself through its fd-3 channel, without the server.

The --user tests need root (they are skipped otherwise) and the user "nobody".
"""

import os
import pwd
import signal
import subprocess
import sys
import tempfile
import time

import cloudpickle
import pytest

from worker_driver import WorkerDriver, WorkerError

# The jobs below are functions of this module, which workers cannot import.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.environ.get("PYJOBD_WORKER", os.path.join(ROOT, "build", "pyjobd-worker"))

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def nobody():
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")


def boot_failure(*args, cwd="/"):
    """Runs a worker expected to fail at boot; returns (exit code, stderr)."""
    w = WorkerDriver(WORKER, args=args, cwd=cwd, stderr=subprocess.PIPE, read_hello=False)
    try:
        code = w.proc.wait(30)
        return code, w.proc.stderr.read().decode()
    finally:
        w.sock.close()
        w.proc.stderr.close()


def whoami():
    import os

    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
            "egid": os.getegid(), "groups": os.getgroups(), "home": os.environ.get("HOME"),
            "cwd": os.getcwd()}


def try_setuid_root():
    import os

    os.setuid(0)


def read_file(path):
    with open(path) as f:
        return f.read()


def process_facts():
    import os
    import resource

    with open("/proc/self/status") as f:
        status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    return {"nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
            "core": resource.getrlimit(resource.RLIMIT_CORE),
            "no_new_privs": status.get("NoNewPrivs", "").strip(),
            "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd"))}


@pytest.fixture
def secret_file():
    """A root-owned 0600 file in a directory anyone may search."""
    d = tempfile.mkdtemp(prefix="pyjobd-secret-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "secret")
    with open(path, "w") as f:
        f.write("only root reads this\n")
    os.chmod(path, 0o600)
    yield path
    os.unlink(path)
    os.rmdir(d)


@needs_root
def test_user__drops_uid_gid_and_groups(secret_file):
    pw = nobody()
    with WorkerDriver(WORKER, args=("--user", "nobody"), cwd="/") as w:
        me = w.call(whoami)
        assert (me["uid"], me["euid"]) == (pw.pw_uid, pw.pw_uid)
        assert (me["gid"], me["egid"]) == (pw.pw_gid, pw.pw_gid)
        assert 0 not in me["groups"]
        assert me["home"] == pw.pw_dir
        with pytest.raises(WorkerError) as e:
            w.call(try_setuid_root)
        assert e.value.exc_type == "PermissionError"
        with pytest.raises(WorkerError) as e:
            w.call(read_file, secret_file)
        assert e.value.exc_type == "PermissionError"


@needs_root
def test_user__numeric_uid_is_accepted():
    pw = nobody()
    with WorkerDriver(WORKER, args=(f"--user={pw.pw_uid}",), cwd="/") as w:
        assert w.call(whoami)["uid"] == pw.pw_uid


def test_user__unknown_user_is_a_boot_failure():
    code, err = boot_failure("--user", "no-such-user-pyjobd")
    assert code == 3
    assert "pyjobd-worker: --user no-such-user-pyjobd: no such user" in err


@needs_root
def test_user__unreadable_cwd_moves_jobs_to_root_dir():
    nobody()
    d = tempfile.mkdtemp(prefix="pyjobd-private-")  # 0700, root's
    try:
        with WorkerDriver(WORKER, args=("--user", "nobody"), cwd=d,
                          stderr=subprocess.PIPE) as w:
            assert w.call(whoami)["cwd"] == "/"
        code, err = boot_failure("--user", "nobody", "--init", "os:getpid", cwd=d)
        assert code == 3
        assert "is not readable by uid" in err
    finally:
        os.rmdir(d)


def test_sandbox__limits_flags_and_fds():
    leaked = os.open("/dev/null", os.O_RDONLY)
    high = os.dup2(leaked, 200)
    try:
        with WorkerDriver(WORKER, cwd="/", pass_fds=(leaked, high)) as w:
            facts = w.call(process_facts)
    finally:
        os.close(leaked)
        os.close(high)
    soft, hard = facts["nofile"]
    assert soft == hard and 0 < hard <= 4096
    assert facts["core"] == (0, 0)
    assert facts["no_new_privs"] == "1"
    # 0-3 and the fd listdir itself opened; nothing the parent leaked.
    assert leaked not in facts["fds"] and high not in facts["fds"]
    assert [fd for fd in facts["fds"] if fd > 4] == []


def spawn_children():
    """A direct child and an orphaned grandchild (its parent exits at once)."""
    import subprocess

    child = subprocess.Popen(["sleep", "1000"])
    out = subprocess.run(["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    return [child.pid, int(out.stdout)]


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def spawn_children_and_wait(path):
    """spawn_children, their pids written to path, then the job goes on running."""
    import time

    pids = spawn_children()
    with open(path, "w") as f:
        f.write(" ".join(map(str, pids)))
    time.sleep(1000)


def test_group_kill__ends_the_jobs_children(tmp_path):
    """What the supervisor does on a timeout or a cancel: kill(-pid, SIGKILL) on the
    worker's process group, while the job (and the children it started) still run."""
    path = tmp_path / "pids"
    w = WorkerDriver(WORKER, cwd="/", new_session=True)
    try:
        w.send_job(cloudpickle.dumps(spawn_children_and_wait), cloudpickle.dumps((str(path),)))
        deadline = time.monotonic() + 10
        while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        pids = [int(x) for x in path.read_text().split()]
        assert all(alive(p) for p in pids)
        assert all(os.getpgid(p) == w.proc.pid for p in pids)
        os.killpg(w.proc.pid, signal.SIGKILL)
        assert w.proc.wait(10) == -signal.SIGKILL
        assert wait_gone(pids) == []
    finally:
        w.close()


def test_job_end__kills_what_the_job_started():
    """A job that returns leaves nothing running: the worker (their subreaper) kills its
    children, and the orphaned grandchild, before it sends the reply."""
    w = WorkerDriver(WORKER, cwd="/", new_session=True)
    try:
        pids = w.call(spawn_children)
        assert [p for p in pids if alive(p)] == [], "the job's processes outlived it"
        assert w.call(lambda: 1) == 1  # and the worker goes on
    finally:
        w.close()
