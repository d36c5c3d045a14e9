"""Administration is a role (issue 15, items 7 and 9): attacks by one tenant on the
shared service, tried through the API as that tenant would.

The token file names two users, alice and bob, and an admin, ops:

* a user cannot resize the pool (PATCH /v1/pool is 403 and nothing changes, not even
  the number of worker processes), cannot read /metrics, and sees in GET /v1/pool
  only the workers that run its own jobs: not the pid of the worker running bob's job
  (which a job of alice's could kill);
* the admin does all of that; without a token file the one user is the admin, and
  PYJOBD_TOKEN is an admin token;
* list cursors are opaque: two of alice's cursors around bob's submissions tell
  nothing about how many he made, an altered cursor (or one made with another token
  file) is a 400, and a server with the same token file (another node) reads them;
* a token file that others can read is refused at start with the chmod that fixes
  it, unless --allow-insecure-files, which starts with a warning.

Every answer is checked against openapi.yaml (tests/integration/openapi_check.py).
The tokens are fixed, so the cursors of a run are the same every run.

    PYJOBD_BIN=build/pyjobd /usr/bin/python3 -m pytest -q tests/integration/test_tenancy_admin.py
"""

import json
import os
import subprocess
import time

import cloudpickle
import pytest

from conftest import REPO_ROOT, b64, pyjobd_bin
from openapi_check import Contract, ContractError

CONTRACT = Contract()

IS_ROOT = os.geteuid() == 0
# CI runs as root: workers may be root there (these tests are not about the workers' uid).
# These tests are about roles, not uids: the tenants' workers share one uid (root's in
# CI), which the server accepts only when told (see test_tenancy_files.py).
ROOT_OK = (["--allow-root-workers"] if IS_ROOT else []) + ["--allow-shared-worker-uid"]

ALICE = "alice-token-aaaaaaaaaaaaaaaaaaaa"
BOB = "bob-token-bbbbbbbbbbbbbbbbbbbbbbbb"
OPS = "ops-token-oooo:with:colons:ooooooo"  # a token may hold ':'
TOKENS = f"alice:{ALICE}\nbob:{BOB}\n# the operator\nops:{OPS} admin\n"

SLEEP = lambda s: __import__("time").sleep(s)  # noqa: E731


# --------------------------------------------------------------------------- helpers


def call(s, method, path, token=None, body=None, expect=None, timeout=30.0):
    """One request, its answer checked against the contract; r.value is the JSON."""
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if body is not None:
        headers["Content-Type"] = "application/json"
    r = s.request(method, path, body=body, headers=headers, timeout=timeout)
    try:
        r.value = CONTRACT.check(method, path, r.status, r.headers, r.body)
    except ContractError as e:
        raise AssertionError(f"CONTRACT MISMATCH: {e}") from None
    if expect is not None:
        assert r.status == expect, f"{method} {path} as {token and token[:5]}: expected {expect}, got {r!r}"
    return r


def job(fn, *args, **fields):
    req = {"callable": b64(cloudpickle.dumps(fn))}
    if args:
        req["args"] = b64(cloudpickle.dumps(tuple(args)))
    req.update(fields)
    return req


def token_file(tmp_path, text=TOKENS, mode=0o600, name="tokens"):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def wait_ready(s, token, workers=None, timeout=15.0):
    """Until a worker has booted (and, given workers, that many are ready)."""
    deadline = time.monotonic() + timeout
    while True:
        info = call(s, "GET", "/v1/info", token, expect=200).value
        if info["python_version"] and (workers is None or info["workers_ready"] >= workers):
            return info
        assert time.monotonic() < deadline, f"not ready after {timeout}s: {info}\n{s.log_tail()}"
        time.sleep(0.05)


def tenant_server(make_server, tmp_path, *args, name="tenants", **kw):
    tf = token_file(tmp_path)
    s = make_server("--workers", "2", "--token-file", str(tf), *ROOT_OK, *args, name=name,
                    ready=False, **kw)
    wait_ready(s, OPS, workers=2)
    return s


def wait_running(s, token, job_id, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        j = call(s, "GET", f"/v1/jobs/{job_id}", token, expect=200).value
        if j["status"] == "running":
            return j
        assert j["status"] == "queued" and time.monotonic() < deadline, j
        time.sleep(0.02)


def pids(pool):
    return sorted(w["pid"] for w in pool["workers"])


def run_binary(args, timeout=5.0):
    """Runs pyjobd expecting it to exit by itself: (rc, stdout, stderr); rc None if it
    was still running after timeout (then it is killed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYJOBD_")}
    p = subprocess.Popen([pyjobd_bin(), "--port", "0", *ROOT_OK, *args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return None, out.decode(errors="replace"), err.decode(errors="replace")


# --------------------------------------------------------------------------- the pool


def worker_pids(s):
    """The server's children but its zygote (which forks the workers, and is no worker)."""
    out = set()
    for pid in s._child_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"--zygote" not in f.read():
                    out.add(pid)
        except OSError:
            pass
    return out


def test_users_cannot_resize_the_pool(make_server, tmp_path):
    s = tenant_server(make_server, tmp_path)
    workers_before = worker_pids(s)
    assert len(workers_before) == 2, workers_before
    for token, tenant in ((ALICE, "alice"), (BOB, "bob")):
        for body in ({"workers": 1}, {"workers": 1024}, {"workers": 0}, "not json"):
            r = call(s, "PATCH", "/v1/pool", token, body=body, expect=403)
            detail = r.value["detail"]
            assert f"tenant '{tenant}'" in detail and "role admin" in detail, detail
            assert "token file" in detail, detail
    r = call(s, "PATCH", "/v1/pool", None, body={"workers": 1}, expect=401)

    # Nothing changed: the target, the workers the pool reports, the processes.
    pool = call(s, "GET", "/v1/pool", OPS, expect=200).value
    assert pool["workers_target"] == 2 and len(pool["workers"]) == 2, pool
    time.sleep(0.3)  # a resize to 1 would retire an idle worker at once
    assert worker_pids(s) == workers_before, "the workers changed after users' PATCHes"
    assert call(s, "GET", "/v1/info", ALICE, expect=200).value["workers"] == 2

    # The admin may.
    pool = call(s, "PATCH", "/v1/pool", OPS, body={"workers": 3}, expect=200).value
    assert pool["workers_target"] == 3, pool
    wait_ready(s, OPS, workers=3)
    assert len(worker_pids(s)) == 3
    pool = call(s, "PATCH", "/v1/pool", OPS, body={"workers": 2}, expect=200).value
    assert pool["workers_target"] == 2, pool


def test_users_cannot_read_metrics(make_server, tmp_path):
    s = tenant_server(make_server, tmp_path)
    for token, tenant in ((ALICE, "alice"), (BOB, "bob")):
        r = call(s, "GET", "/metrics", token, expect=403)
        assert f"tenant '{tenant}'" in r.value["detail"], r.value
        assert "--public-metrics" in r.value["detail"], r.value
        assert b"pyjobd_" not in r.body, r.body
        call(s, "HEAD", "/metrics", token, expect=403)
    call(s, "GET", "/metrics", None, expect=401)
    r = call(s, "GET", "/metrics", OPS, expect=200)
    assert b"pyjobd_workers_target 2\n" in r.body, r.body[:400]
    # Alice's two 403s and bob's (GET and HEAD each) were counted.
    assert b'pyjobd_http_requests_total{code="403"} 4\n' in r.body, r.body


def test_public_metrics_serves_anyone(make_server, tmp_path):
    s = tenant_server(make_server, tmp_path, "--public-metrics", name="pubmetrics")
    for token in (None, ALICE):
        r = call(s, "GET", "/metrics", token, expect=200)
        assert b"pyjobd_workers_target 2\n" in r.body
    # It opens /metrics only.
    call(s, "PATCH", "/v1/pool", ALICE, body={"workers": 1}, expect=403)


def test_pool_view_shows_a_user_only_its_own_workers(make_server, tmp_path):
    s = tenant_server(make_server, tmp_path)
    bobs = call(s, "POST", "/v1/jobs", BOB, body=job(SLEEP, 20, timeout=30), expect=201).value
    alices = call(s, "POST", "/v1/jobs", ALICE, body=job(SLEEP, 20, timeout=30), expect=201).value
    try:
        bob_pid = wait_running(s, BOB, bobs["id"])["worker_pid"]
        alice_pid = wait_running(s, ALICE, alices["id"])["worker_pid"]
        assert bob_pid != alice_pid

        r = call(s, "GET", "/v1/pool", ALICE, expect=200)
        pool = r.value
        assert pids(pool) == [alice_pid], f"alice sees workers {pids(pool)}; bob's job runs on {bob_pid}"
        assert f'"pid":{bob_pid},'.encode() not in r.body, r.body
        assert bobs["id"].encode() not in r.body, r.body
        assert pool["workers"][0]["job_id"] == alices["id"] and pool["workers"][0]["state"] == "busy"
        # The counts are the whole pool's.
        assert pool["workers_target"] == 2 and pool["running"] == 2 and pool["queued"] == 0, pool
        assert set(pool["restarts"]) == {"crash", "timeout", "recycle", "cancel", "tenant"}, pool

        pool = call(s, "GET", "/v1/pool", BOB, expect=200).value
        assert pids(pool) == [bob_pid], pool
        assert pool["workers"][0]["job_id"] == bobs["id"], pool

        # The admin sees every worker (never a tenant's job id: the jobs are not ops').
        r = call(s, "GET", "/v1/pool", OPS, expect=200)
        assert pids(r.value) == sorted([alice_pid, bob_pid]), r.value
        assert all(w["job_id"] is None for w in r.value["workers"]), r.value
    finally:
        call(s, "POST", f"/v1/jobs/{bobs['id']}/cancel?force=true", BOB)
        call(s, "POST", f"/v1/jobs/{alices['id']}/cancel?force=true", ALICE)
    # No job of hers runs (once her killed worker is gone): alice sees no worker at
    # all; the admin still sees both.
    deadline = time.monotonic() + 5
    while call(s, "GET", "/v1/pool", ALICE, expect=200).value["workers"]:
        assert time.monotonic() < deadline, call(s, "GET", "/v1/pool", ALICE).value
        time.sleep(0.05)
    wait_ready(s, OPS, workers=2)
    assert len(call(s, "GET", "/v1/pool", OPS, expect=200).value["workers"]) == 2


def test_without_a_token_file_the_one_user_is_admin(make_server):
    s = make_server("--workers", "2", *ROOT_OK, name="noauth")
    pool = call(s, "PATCH", "/v1/pool", body={"workers": 3}, expect=200).value
    assert pool["workers_target"] == 3, pool
    wait_ready(s, None, workers=3)
    assert len(call(s, "GET", "/v1/pool", expect=200).value["workers"]) == 3
    assert b"pyjobd_workers_target 3\n" in call(s, "GET", "/metrics", expect=200).body
    # One user, nothing to hide: cursors stay the plain seq (3 jobs: the newest is 3).
    call(s, "POST", "/v1/jobs/batch", body={"jobs": [job(lambda: 1)] * 3}, expect=201)
    assert call(s, "GET", "/v1/jobs?limit=1", expect=200).value["next_cursor"] == "3"


def test_pyjobd_token_is_an_admin(make_server):
    token = "env-token-eeeeeeeeeeeeeeeeeeeeeeee"
    s = make_server("--workers", "1", *ROOT_OK, name="envtoken", ready=False,
                    env={"PYJOBD_TOKEN": token})
    wait_ready(s, token)
    assert call(s, "PATCH", "/v1/pool", token, body={"workers": 2}, expect=200).value["workers_target"] == 2
    call(s, "GET", "/metrics", token, expect=200)


# --------------------------------------------------------------------------- cursors


def cursors_of(s, token, n):
    """The next_cursor after each of the first n pages of one job (walking them),
    and the ids listed, newest first."""
    cursors, ids, cursor = [], [], None
    for _ in range(n):
        path = "/v1/jobs?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = call(s, "GET", path, token, expect=200).value
        ids += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        cursors.append(cursor)
    return cursors, ids


def test_cursors_reveal_nothing_about_other_tenants(make_server, tmp_path):
    s = tenant_server(make_server, tmp_path)

    def batch(token, n):
        jobs = call(s, "POST", "/v1/jobs/batch", token, body={"jobs": [job(lambda: 1)] * n},
                    expect=201).value["jobs"]
        return [j["id"] for j in jobs]

    mine = batch(ALICE, 3)
    first = call(s, "GET", "/v1/jobs?limit=1", ALICE, expect=200).value["next_cursor"]
    batch(BOB, 7)  # between alice's two pages: what a plain seq would count
    mine += batch(ALICE, 3)
    second = call(s, "GET", "/v1/jobs?limit=1", ALICE, expect=200).value["next_cursor"]

    for c in (first, second):
        assert len(c) == 16 and all(ch in "0123456789abcdef" for ch in c), c
    # With plain seqs second - first would be 10 (3 of alice's + bob's 7).
    gap = abs(int(second, 16) - int(first, 16))
    assert gap > 1 << 32, f"cursors {first} and {second} are {gap} apart"

    # Walk all of alice's pages: the cursors of neighbouring jobs of hers are as far
    # apart as those with bob's seven jobs between them (plain: 1, 1, 8, 1, 1).
    cursors, ids = cursors_of(s, ALICE, 6)
    assert ids == list(reversed(mine)), "alice's pages are not her jobs, newest first"
    assert cursors[-1] is None and len(set(cursors[:-1])) == 5, cursors
    values = [int(c, 16) for c in cursors[:-1]]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(abs(d) > 1 << 32 for d in steps), f"steps between alice's cursors: {steps}"
    assert len(set(steps)) == len(steps), steps
    assert cursors[0] == second, "the same page gave another cursor"

    # An altered cursor is refused, and the pool is not asked.
    for pos in (0, 7, 15):
        c = list(second)
        c[pos] = "0" if c[pos] != "0" else "1"
        r = call(s, "GET", f"/v1/jobs?cursor={''.join(c)}", ALICE, expect=400)
        assert "first page" in r.value["detail"], r.value
    r = call(s, "GET", f"/v1/jobs?cursor={int(second, 16) - 1:x}", ALICE, expect=400)
    call(s, "GET", "/v1/jobs?cursor=7", ALICE, expect=400)  # a plain seq

    # Another node with the same token file reads alice's cursor; a server with
    # another token file does not.
    same = make_server("--workers", "1", "--token-file", str(token_file(tmp_path, name="same")),
                       *ROOT_OK, name="same-tokens", ready=False)
    call(same, "GET", f"/v1/jobs?limit=1&cursor={second}", ALICE, expect=200)
    other_tokens = TOKENS.replace(OPS, "ops-token-of-another-cluster-000000")
    other = make_server("--workers", "1", "--token-file",
                        str(token_file(tmp_path, other_tokens, name="other")), *ROOT_OK,
                        name="other-tokens", ready=False)
    r = call(other, "GET", f"/v1/jobs?cursor={second}", ALICE, expect=400)
    assert "other tokens" in r.value["detail"], r.value


# --------------------------------------------------------------------------- the token file


def test_token_file_others_can_read_is_refused(make_server, tmp_path):
    for mode in (0o644, 0o640, 0o604, 0o620):
        tf = token_file(tmp_path, mode=mode)
        rc, out, err = run_binary(["--token-file", str(tf)])
        assert rc == 2 and "listening" not in out, f"mode {mode:o}: rc {rc} {out!r} {err!r}"
        assert str(tf) in err and f"chmod 600 {tf}" in err, err
        assert f"{mode:04o}" in err and "--allow-insecure-files" in err, err
        assert ALICE not in err and OPS not in err, err

    # --allow-insecure-files (or its variable) starts, and says why it should not.
    tf = token_file(tmp_path, mode=0o644)
    for args, env in ((["--allow-insecure-files"], None), ([], {"PYJOBD_ALLOW_INSECURE_FILES": "1"})):
        s = make_server("--workers", "1", "--token-file", str(tf), *ROOT_OK, *args, env=env,
                        name="insecure", ready=False)
        wait_ready(s, ALICE)
        log = s.log_tail()
        assert "warn" in log and str(tf) in log and f"chmod 600 {tf}" in log, log
        assert "0644" in log, log


def test_token_file_roles_and_options(make_server, tmp_path):
    bad = [
        (f"alice:{ALICE}\nbob:{BOB} weight=3\n", "line 2", "unknown option"),
        (f"alice:{ALICE} role=root\n", "line 1", "role must be admin or user"),
        (f"alice:{ALICE} admin role=user\n", "line 1", "twice"),
        (f"alice:{ALICE} isolation=process\n", "line 1", "isolation must be job or tenant"),
        (f"alice:{ALICE} my secret words\n", "line 1", "unknown option"),
    ]
    for text, line, why in bad:
        tf = token_file(tmp_path, text)
        rc, out, err = run_binary(["--token-file", str(tf)])
        assert rc == 2, f"{text!r}: rc {rc} {out!r}"
        assert str(tf) in err and line in err and why in err, (text, err)
        assert "'admin'" in err or "admin or user" in err or "twice" in err, err
        # Nothing of the line is echoed: an "option" may be the rest of a token with spaces.
        for part in (ALICE, BOB, "weight=3", "role=root", "isolation=process", "my secret words", "words"):
            assert part not in err, f"the error echoes {part!r}: {err}"

    # Tabs and spaces, both spellings, an unnamed admin token, an explicit user.
    unnamed = "unnamed-admin-token-uuuuuuuuuuuuu"
    tf = token_file(tmp_path, f"alice:{ALICE}\trole=user \n  ops:{OPS}  role=admin\n{unnamed} admin\n"
                              f"bob:{BOB}\n")
    s = make_server("--workers", "1", "--token-file", str(tf), *ROOT_OK, name="roles", ready=False)
    wait_ready(s, ALICE)
    for token in (OPS, unnamed):
        call(s, "PATCH", "/v1/pool", token, body={"workers": 1}, expect=200)
    for token, tenant in ((ALICE, "alice"), (BOB, "bob")):
        r = call(s, "PATCH", "/v1/pool", token, body={"workers": 1}, expect=403)
        assert f"'{tenant}'" in r.value["detail"]
    # The token is the whole of "ops-token-oooo:with:colons:ooooooo", not a part.
    call(s, "GET", "/v1/info", OPS.split(":")[0], expect=401)
    call(s, "GET", "/v1/info", "with:colons:ooooooo", expect=401)


def test_no_admin_in_the_token_file_is_said_at_start(make_server, tmp_path):
    tf = token_file(tmp_path, f"alice:{ALICE}\nbob:{BOB}\n")
    s = make_server("--workers", "1", "--token-file", str(tf), *ROOT_OK, name="noadmin", ready=False)
    wait_ready(s, ALICE)
    assert "no token has the role admin" in s.log_tail(), s.log_tail()
    call(s, "PATCH", "/v1/pool", ALICE, body={"workers": 2}, expect=403)
