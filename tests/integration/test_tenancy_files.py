"""The server's own memory and files (issue 15, items 4 and 9, in part).

* The server makes itself non-dumpable: a job running under the server's own uid (no
  --worker-user) cannot read /proc/<server>/environ or /proc/<server>/mem, nor ptrace it.
  CI runs as root, whose jobs could read anything anyway, so these servers run as an
  unprivileged user (setpriv, from util-linux) with their workers under that same uid.
* A token file naming more than one tenant, with workers under the server's own uid (no
  --worker-user, or one that is the server's user, root included), is refused at start
  with a message naming the fix, unless --allow-shared-worker-uid.
* A SQLite store whose directory or files the workers' user could read (world-readable,
  readable by one of the workers' groups, or the workers' user's own) is refused naming
  the path and the chmod (or chown) that fixes it, or only warned about with
  --allow-insecure-files; a new store is a 0700 directory of 0600 files.

Run from the repository root:

    PYJOBD_BIN=build/pyjobd /usr/bin/python3 -m pytest -q tests/integration/test_tenancy_files.py
"""

import os
import pwd
import shutil
import subprocess
import tempfile

import time

import pytest

from conftest import decode_result, make_payload, pyjobd_bin, start_server, stop_server

IS_ROOT = os.geteuid() == 0
SECRET = "tenancy-files-secret-6b1f0c2e9d"
ALICE = "alice-token-aaaaaaaaaaaaaaaaaaaa"
BOB = "bob-token-bbbbbbbbbbbbbbbbbbbbbbbb"
TWO_TENANTS = f"alice:{ALICE}\nbob:{BOB}\n"
ROOT_OK = ["--allow-root-workers"] if IS_ROOT else []


# --------------------------------------------------------------------------- helpers


def _unprivileged():
    """(command prefix, uid) to run a process as an unprivileged user: nobody (through
    setpriv) when the tests run as root, else the tests' own user, as they are."""
    if not IS_ROOT:
        return [], os.getuid()
    try:
        nob = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.fail("setpriv not found: install util-linux (make deps)")
    return [setpriv, f"--reuid={nob.pw_uid}", f"--regid={nob.pw_gid}", "--clear-groups",
            "--"], nob.pw_uid


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYJOBD_")}
    env.update(extra)
    return env


def _run_to_exit(args, env=None, timeout=10.0):
    """Starts pyjobd (PYJOBD_BIN as now set) expecting it to exit on its own: (rc, stdout,
    stderr). A server that starts serving instead fails the test."""
    cmd = [pyjobd_bin(), "--port", "0", "--listen", "127.0.0.1", "--workers", "1", *args]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                           env=env if env is not None else _clean_env())
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{cmd}: the server started (stdout {e.stdout!r}), expected a refusal\n"
                    f"stderr: {(e.stderr or b'').decode('utf-8', 'replace')[-3000:]}")
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def _token_file(d, text, owner=None):
    """A token file of `text` in directory d, mode 0600, owned by owner (a uid) if given."""
    path = os.path.join(d, "tokens")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    if owner is not None and owner != os.geteuid():
        os.chown(path, owner, -1)
    return path


def _call(s, method, path, token, body=None):
    return s.request(method, path, body=body, headers={"Authorization": f"Bearer {token}"},
                     timeout=40)


def _run_as(s, token, fn, *args):
    r = _call(s, "POST", "/v1/jobs?wait=30", token, body=make_payload(fn, *args))
    assert r.status == 201, r
    return decode_result(r.json())


def _wait_ready(s, token, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not _call(s, "GET", "/v1/info", token).json().get("python_version"):
        assert time.monotonic() < deadline, f"no worker ready after {timeout}s\n{s.log_tail()}"
        time.sleep(0.05)


def _assert_refused_shared_uid(rc, out, err, token_file):
    assert rc == 2, f"expected exit status 2 (a refusal), got {rc}\nstdout {out!r}\nstderr {err}"
    assert "listening on" not in out, out
    assert "--worker-user USER" in err and "--allow-shared-worker-uid" in err, \
        f"the refusal does not name the fix: {err}"
    assert token_file in err, f"the refusal does not name {token_file}: {err}"
    assert ALICE not in err and BOB not in err, f"the refusal echoes a token: {err}"


@pytest.fixture
def unprivileged(monkeypatch):
    """Servers of this test run as an unprivileged user: the two programs are copied into
    a directory that user can read, and PYJOBD_BIN points at a script that starts the
    copy through setpriv. Yields (directory, uid); the directory is world-readable, so
    give the files you put there to that uid (os.chown) and keep them 0600."""
    prefix, uid = _unprivileged()
    d = tempfile.mkdtemp(prefix="pyjobd-unpriv-", dir="/tmp")
    try:
        os.chmod(d, 0o755)
        build = os.path.dirname(pyjobd_bin())
        for prog in ("pyjobd", "pyjobd-worker"):
            shutil.copy(os.path.join(build, prog), os.path.join(d, prog))
            os.chmod(os.path.join(d, prog), 0o755)
        script = os.path.join(d, "pyjobd-unprivileged")
        with open(script, "w") as f:
            argv = " ".join(f"'{a}'" for a in prefix + [os.path.join(d, "pyjobd"), "--worker",
                                                        os.path.join(d, "pyjobd-worker")])
            f.write(f'#!/bin/sh\nexec {argv} "$@"\n')
        os.chmod(script, 0o755)
        monkeypatch.setenv("PYJOBD_BIN", script)
        yield d, uid
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- memory


def test_same_uid_job_cannot_read_the_servers_environ_or_memory(make_server, unprivileged):
    # Defined here: cloudpickle sends a test module's own functions by reference.
    def _attack_the_server(secret):
        """A job's attempt on its parent, the server: its environment, its memory (the stack,
        where the environment strings are), and ptrace. Returns what happened to each."""
        import ctypes
        import os
        import re

        ppid = os.getppid()
        out = {"uid": os.getuid(), "ppid": ppid}
        with open(f"/proc/{ppid}/status") as f:  # 0444 whatever the server does
            out["server_uid"] = int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))

        def attempt(what, fn):
            try:
                out[what] = f"read, secret {'found' if fn() else 'not found'}"
            except OSError as e:
                out[what] = type(e).__name__

        def environ():
            with open(f"/proc/{ppid}/environ", "rb") as f:
                return secret.encode() in f.read()

        def mem():
            with open(f"/proc/{ppid}/mem", "rb") as f:
                with open(f"/proc/{ppid}/maps") as m:
                    stack = [line for line in m if line.rstrip().endswith("[stack]")][0]
                lo, hi = (int(x, 16) for x in stack.split()[0].split("-"))
                f.seek(lo)
                return secret.encode() in f.read(hi - lo)

        attempt("environ", environ)
        attempt("mem", mem)

        # PTRACE_SEIZE does not stop the server; the child's exit detaches it.
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
            rc = libc.ptrace(0x4206, ppid, None, None)
            os.write(w, b"attached" if rc == 0 else os.strerror(ctypes.get_errno()).encode())
            os._exit(0)
        os.close(w)
        out["ptrace"] = os.read(r, 200).decode()
        os.close(r)
        os.waitpid(pid, 0)
        return out

    _, uid = unprivileged
    s = make_server("--workers", "1", env={"TENANCY_FILES_SECRET": SECRET})
    got = decode_result(s.run(_attack_the_server, SECRET))
    # Else the test proves nothing: the job runs under the server's own (unprivileged) uid.
    assert got["ppid"] == s.proc.pid, f"the job's parent is not the server: {got}"
    assert got["uid"] == got["server_uid"] == uid, f"not one unprivileged uid: {got}"
    assert got["environ"] == "PermissionError", \
        f"a job read /proc/<server>/environ ({got['environ']}): the server is dumpable: {got}"
    assert got["mem"] == "PermissionError", \
        f"a job read /proc/<server>/mem ({got['mem']}): the server is dumpable: {got}"
    assert got["ptrace"] != "attached", f"a job could ptrace the server: {got}"


# --------------------------------------------------------------------------- one uid, tenants


def test_two_tenants_with_root_workers_are_refused(tmp_path):
    if not IS_ROOT:
        pytest.skip("root workers need a server running as root")
    tf = _token_file(tmp_path, TWO_TENANTS)
    # Root workers by flag, or a --worker-user that is the server's own user.
    for args in (["--allow-root-workers"], ["--worker-user", "root"], ["--worker-user", "0"]):
        rc, out, err = _run_to_exit(["--token-file", tf, *args])
        _assert_refused_shared_uid(rc, out, err, tf)
    # Tenants are names, not lines: two unnamed tokens are two tenants ("line:1", "line:2"),
    # and PYJOBD_TOKEN is a tenant of its own.
    bare = _token_file(tmp_path, f"{ALICE}\n{BOB}\n")
    _assert_refused_shared_uid(*_run_to_exit(["--token-file", bare, "--allow-root-workers"]), bare)
    one = _token_file(tmp_path, f"alice:{ALICE}\n")
    rc, out, err = _run_to_exit(["--token-file", one, "--allow-root-workers"],
                                env=_clean_env(PYJOBD_TOKEN=BOB))
    _assert_refused_shared_uid(rc, out, err, one)
    assert "PYJOBD_TOKEN" in err, err


def test_one_tenant_or_workers_of_another_uid_start(make_server, tmp_path):
    # Two tokens of one tenant (a rotation) are one tenant.
    tf = _token_file(tmp_path, f"alice:{ALICE}\nalice:{BOB}\n")
    s = make_server("--workers", "1", "--token-file", tf, *ROOT_OK, ready=False)
    _wait_ready(s, ALICE)
    job = _call(s, "POST", "/v1/jobs?wait=30", ALICE, body=make_payload(lambda: 7)).json()
    assert _call(s, "GET", f"/v1/jobs/{job['id']}", BOB).status == 200, \
        "the two tokens of alice are not one tenant"
    if not IS_ROOT:
        return
    # Two tenants, with workers under a uid that is not the server's.
    nob = pwd.getpwnam("nobody")
    tf2 = tmp_path / "two"
    tf2.write_text(TWO_TENANTS)
    tf2.chmod(0o600)
    s = make_server("--workers", "1", "--token-file", str(tf2), "--worker-user", "nobody",
                    ready=False)
    _wait_ready(s, ALICE)
    assert _run_as(s, BOB, lambda: __import__("os").getuid()) == nob.pw_uid


def test_unprivileged_server_with_two_tenants_is_refused_unless_allowed(make_server, unprivileged):
    d, uid = unprivileged
    tf = _token_file(d, TWO_TENANTS, owner=uid)
    rc, out, err = _run_to_exit(["--token-file", tf])
    _assert_refused_shared_uid(rc, out, err, tf)
    assert "as root with --worker-user USER" in err, \
        f"an unprivileged server cannot switch users itself: the fix is to start it as root: {err}"

    s = make_server("--workers", "1", "--token-file", tf, "--allow-shared-worker-uid",
                    ready=False)
    _wait_ready(s, ALICE)
    warned = [line for line in s.log_tail().splitlines()
              if " warn " in line and "--allow-shared-worker-uid" in line]
    assert warned, f"no warning about the shared uid in the log:\n{s.log_tail()}"
    for token in (ALICE, BOB):
        assert _run_as(s, token, lambda: __import__("os").getuid()) == uid


# --------------------------------------------------------------------------- the store's files


@pytest.fixture
def umask_022():
    """The usual umask, under which SQLite on its own would create a 0644 database."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return os.stat(path).st_mode & 0o7777


def _start_and_stop(db, *args):
    """Starts a server on store db, runs one job, stops it: the store exists afterwards."""
    s = start_server("store", "--store", f"sqlite:{db}", "--workers", "1", *args)
    try:
        assert decode_result(s.run(lambda: 6 * 7)) == 42
    finally:
        stop_server(s)
    return s


def _assert_refused_store(rc, out, err, path, fix):
    assert rc == 2, f"expected exit status 2 (a refusal), got {rc}\nstdout {out!r}\nstderr {err}"
    assert "listening on" not in out, out
    assert f"{fix} {path}" in err, f"the refusal does not name '{fix} {path}':\n{err}"
    assert "--allow-insecure-files" in err, f"the refusal does not name the override: {err}"


def _warned(s, path):
    return [line for line in s.log_tail().splitlines() if " warn " in line and path in line]


def test_new_store_is_a_private_directory_of_private_files(make_server, tmp_path, umask_022):
    d = tmp_path / "new-store"  # missing: the server creates it
    db = d / "jobs.db"
    s = make_server("--workers", "1", "--store", f"sqlite:{db}")
    assert decode_result(s.run(lambda: 6 * 7)) == 42  # a 201 is a commit: the -wal is written
    assert _mode(d) == 0o700, f"store directory {d} is {_mode(d):04o}, expected 0700"
    for name in ("jobs.db", "jobs.db-wal", "jobs.db-shm"):
        path = d / name
        assert path.exists(), f"{path} missing while the server runs (WAL mode)"
        assert _mode(path) == 0o600, f"{path} is {_mode(path):04o}, expected 0600"
    assert os.path.getsize(d / "jobs.db-wal") > 0, "nothing written to the -wal file yet"


def test_world_readable_store_directory_is_refused_or_warned_about(make_server, tmp_path):
    d = tmp_path / "store"
    d.mkdir()
    d.chmod(0o755)
    db = d / "jobs.db"
    rc, out, err = _run_to_exit(["--store", f"sqlite:{db}", *ROOT_OK])
    _assert_refused_store(rc, out, err, str(d), "chmod go-rwx")
    assert not db.exists(), "the refused server created the database anyway"

    s = make_server("--workers", "1", "--store", f"sqlite:{db}", "--allow-insecure-files")
    assert decode_result(s.run(lambda: 1)) == 1
    assert _warned(s, str(d)), f"no warning naming {d}:\n{s.log_tail()}"


def test_world_readable_store_file_is_refused_or_warned_about(make_server, tmp_path):
    d = tmp_path / "store"
    d.mkdir(mode=0o700)
    db = d / "jobs.db"
    _start_and_stop(db, *ROOT_OK)
    assert _mode(db) == 0o600, f"{db} is {_mode(db):04o}"
    for path in (db, d / "jobs.db-wal"):  # a -wal left by a crash is the same data
        path.touch()
        path.chmod(0o644)
        rc, out, err = _run_to_exit(["--store", f"sqlite:{db}", *ROOT_OK])
        _assert_refused_store(rc, out, err, str(path), "chmod go-rwx")
        path.chmod(0o600)
    db.chmod(0o604)
    s = make_server("--workers", "1", "--store", f"sqlite:{db}", "--allow-insecure-files")
    assert decode_result(s.run(lambda: 2)) == 2
    assert _warned(s, str(db)), f"no warning naming {db}:\n{s.log_tail()}"


def test_store_of_the_workers_group_or_user_is_refused(make_server, tmp_path):
    if not IS_ROOT:
        pytest.skip("--worker-user needs a server running as root")
    nob = pwd.getpwnam("nobody")
    d = tmp_path / "store"
    d.mkdir(mode=0o700)
    db = d / "jobs.db"
    _start_and_stop(db, "--worker-user", "nobody")
    # Group-readable: refused when the group is one of the workers', not otherwise.
    db.chmod(0o640)
    os.chown(db, 0, nob.pw_gid)
    rc, out, err = _run_to_exit(["--store", f"sqlite:{db}", "--worker-user", "nobody"])
    _assert_refused_store(rc, out, err, str(db), "chmod go-rwx")
    os.chown(db, 0, 0)
    _start_and_stop(db, "--worker-user", "nobody")
    # The workers' own directory: they could chmod it.
    db.chmod(0o600)
    os.chown(d, nob.pw_uid, -1)
    rc, out, err = _run_to_exit(["--store", f"sqlite:{db}", "--worker-user", "nobody"])
    _assert_refused_store(rc, out, err, str(d), "chown root")
    os.chown(d, 0, -1)
    # Root workers are the server's user: a store that is root's own is fine for them.
    _start_and_stop(db, "--allow-root-workers")
