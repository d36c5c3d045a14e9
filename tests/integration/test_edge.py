"""The HTTP edge (issue 16), attacked from loopback. So far: DNS rebinding and
cross-site browser requests (item 1: Host and Origin).

Run from the repository root:

    PYJOBD_BIN=build/pyjobd /usr/bin/python3 -m pytest -q tests/integration/test_edge.py
"""

import os
import sys
import time

import cloudpickle
import pytest

from conftest import check_problem, make_payload

# The jobs below are this module's functions: by value (workers cannot import tests).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROOT = ["--allow-root-workers"] if os.geteuid() == 0 else []
TOKEN = "edge-token-eeeeeeeeeeeeeeeeeeeeeeee"


def ready(s, secs=15):
    deadline = time.monotonic() + secs
    while s.request("GET", "/readyz").status != 200:
        assert time.monotonic() < deadline, s.log_tail()
        time.sleep(0.05)
    return s


def touch(path):
    open(path, "w").close()
    return "ran"


def post(s, host, marker, origin=None, token=None):
    headers = {"Content-Type": "application/json"}
    if host is not None:
        headers["Host"] = host
    if origin is not None:
        headers["Origin"] = origin
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return s.request("POST", "/v1/jobs?wait=10", body=make_payload(touch, str(marker)),
                     headers=headers)


def test_a_rebound_host_runs_nothing_on_a_token_less_server(make_server, tmp_path):
    """The attack: a page on rebind.attacker.example, its name now pointing at 127.0.0.1,
    posts a job to the token-less server `make run` starts."""
    s = make_server(*ROOT)
    marker = tmp_path / "owned"
    for host in (f"rebind.attacker.example:{s.port}", "rebind.attacker.example",
                 f"127.0.0.1.attacker.example:{s.port}", f"localhost.attacker.example:{s.port}"):
        r = post(s, host, marker)
        body = check_problem(r, 421)
        assert "--allowed-hosts" in body["detail"] and "rebinding" in body["detail"], body
    time.sleep(0.3)
    assert not marker.exists(), "a rebound page ran a job"
    # This machine's own names work, and the probes answer whatever the Host.
    for host in (f"127.0.0.1:{s.port}", f"localhost:{s.port}", f"[::1]:{s.port}", "localhost"):
        r = post(s, host, marker)
        assert r.status in (200, 201) and r.json()["status"] == "succeeded", (host, r)
    assert s.request("GET", "/healthz", headers={"Host": "rebind.attacker.example"}).status == 200
    r = s.request("GET", "/v1/info", headers={"Host": "rebind.attacker.example"})
    check_problem(r, 421)


def test_allowed_hosts_adds_names_and_with_tokens_is_the_only_list(make_server, tmp_path):
    marker = tmp_path / "ran"
    s = make_server("--allowed-hosts", "pyjobd.internal, 10.9.8.7", *ROOT)
    assert post(s, f"pyjobd.internal:{s.port}", marker).status in (200, 201)
    assert post(s, "10.9.8.7", marker).status in (200, 201)
    check_problem(post(s, "other.internal", marker), 421)
    # With tokens and no --allowed-hosts, any Host is served (the token guards it)...
    t = ready(make_server(*ROOT, env={"PYJOBD_TOKEN": TOKEN}, name="tokens", ready=False))
    assert post(t, "pyjobd.example.com", marker, token=TOKEN).status in (200, 201)
    # ...and with --allowed-hosts, only those (and loopback names).
    u = ready(make_server("--allowed-hosts", "pyjobd.example.com", *ROOT,
                          env={"PYJOBD_TOKEN": TOKEN}, name="tokens-hosts", ready=False))
    assert post(u, "pyjobd.example.com", marker, token=TOKEN).status in (200, 201)
    assert post(u, f"127.0.0.1:{u.port}", marker, token=TOKEN).status in (200, 201)
    check_problem(post(u, "other.example.com", marker, token=TOKEN), 421)


def test_a_foreign_origin_runs_nothing(make_server, tmp_path):
    """A browser on another site (a form or fetch to localhost) sends its Origin."""
    s = make_server("--cors-origin", "https://dash.example.com", *ROOT)
    marker = tmp_path / "owned"
    own = f"127.0.0.1:{s.port}"
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{s.port + 1}"):
        body = check_problem(post(s, own, marker, origin=origin), 403)
        assert "--cors-origin" in body["detail"], body
    time.sleep(0.3)
    assert not marker.exists(), "a foreign page ran a job"
    assert post(s, own, marker, origin=f"http://{own}").status in (200, 201)  # its own pages
    assert post(s, own, marker, origin="https://dash.example.com").status in (200, 201)


@pytest.mark.parametrize("args,message", [
    (["--allowed-hosts", "good.example,bad host"], "'bad host' is no host name"),
    (["--cors-origin", "https://ok.example,<script>"], "is no web origin"),
])
def test_bad_host_and_origin_lists_are_refused(args, message):
    import subprocess

    from conftest import pyjobd_bin

    p = subprocess.run([pyjobd_bin(), "--port", "0", *ROOT, *args], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 2 and message in p.stderr, p.stderr
