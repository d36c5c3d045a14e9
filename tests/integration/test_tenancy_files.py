"""The server's own memory and files (issue 15, items 4 and 9, in part).

* The server makes itself non-dumpable: a job running under the server's own uid (no
  --worker-user) cannot read /proc/<server>/environ or /proc/<server>/mem, nor ptrace it.
  CI runs as root, whose jobs could read anything anyway, so these servers run as an
  unprivileged user (setpriv, from util-linux) with their workers under that same uid.

Run from the repository root:

    PYJOBD_BIN=build/pyjobd /usr/bin/python3 -m pytest -q tests/integration/test_tenancy_files.py
"""

import os
import pwd
import shutil
import tempfile

import pytest

from conftest import decode_result, pyjobd_bin

IS_ROOT = os.geteuid() == 0
SECRET = "tenancy-files-secret-6b1f0c2e9d"


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
