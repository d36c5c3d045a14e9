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


# --------------------------------------------------------------------------- item 2: framing

import base64  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402


def raw(s, data, wait=3.0):
    """Sends data on a fresh connection; returns everything the server sent until it
    closed the connection, and whether it did (else the read timed out)."""
    c = socket.create_connection(("127.0.0.1", s.port))
    c.settimeout(wait)
    c.sendall(data)
    out, closed = b"", False
    try:
        while True:
            b = c.recv(65536)
            if not b:
                closed = True
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    c.close()
    return out, closed


def responses(data):
    """The status codes of the HTTP responses in data, in order."""
    return [int(line.split()[1]) for line in data.split(b"\r\n")
            if line.startswith(b"HTTP/1.1 ")]


def problem_of(data):
    body = data.split(b"\r\n\r\n", 1)[1]
    return json.loads(body[:body.index(b"}\n") + 1] if b"}\n" in body else body)


H = b"Host: localhost\r\n"
JSON_CT = b"Content-Type: application/json\r\n"
SMUGGLED = b"GET /v1/info HTTP/1.1\r\n" + H + b"\r\n"


@pytest.mark.parametrize("name,request_bytes,status,words", [
    ("content-length and chunked",
     b"POST /v1/jobs HTTP/1.1\r\n" + H + JSON_CT + b"Content-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400, "both Content-Length"),
    ("two content-lengths",
     b"POST /v1/jobs HTTP/1.1\r\n" + H + JSON_CT + b"Content-Length: 2\r\nContent-Length: 30\r\n"
     b"\r\n{}" + SMUGGLED, 400, "two Content-Length"),
    # libmicrohttpd refuses this one itself, before the server sees it (its own HTML
    # answer, whose head 0.9.75 writes twice), and closes the connection.
    ("content-length not a number",
     b"POST /v1/jobs HTTP/1.1\r\n" + H + JSON_CT + b"Content-Length: +2\r\n\r\n{}" + SMUGGLED,
     400, None),
    ("no target at all", b"GET   \r\n" + H + b"\r\n", 400, None),  # libmicrohttpd's
    ("unknown coding", b"POST /v1/jobs HTTP/1.1\r\n" + H + JSON_CT +
     b"Transfer-Encoding: gzip\r\n\r\n{}", 501, "'gzip' is not supported"),
    ("chunked after another coding", b"POST /v1/jobs HTTP/1.1\r\n" + H + JSON_CT +
     b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "is not supported"),
    ("raw NUL in the target", b"PATCH /v1/pool\x00x HTTP/1.1\r\n" + H + JSON_CT +
     b"Content-Length: 14\r\n\r\n{\"workers\": 1}", 400, "NUL byte (raw)"),
    ("%00 in the path", b"PATCH /v1/pool%00x HTTP/1.1\r\n" + H + JSON_CT +
     b"Content-Length: 14\r\n\r\n{\"workers\": 1}", 400, "NUL byte (%00)"),
    ("%00 in a query parameter", b"GET /v1/jobs?status=queued%00x HTTP/1.1\r\n" + H + b"\r\n",
     400, "NUL byte (%00)"),
    ("two Authorization fields", b"GET /v1/info HTTP/1.1\r\n" + H +
     b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n", 400, "2 Authorization"),
    ("two Idempotency-Key fields", b"POST /v1/jobs HTTP/1.1\r\n" + H + JSON_CT +
     b"Idempotency-Key: a\r\nIdempotency-Key: b\r\nContent-Length: 2\r\n\r\n{}", 400,
     "2 Idempotency-Key"),
    ("a space in the target", b"GET /v1/in fo HTTP/1.1\r\n" + H + b"\r\n", 400, "space"),
    ("HTTP/1.1 without Host", b"GET /v1/info HTTP/1.1\r\n\r\n", 400, "Host header"),
])
def test_ambiguous_framing_is_refused_and_the_connection_closed(server, name, request_bytes,
                                                                status, words):
    before = server.info()["workers"]
    out, closed = raw(server, request_bytes)
    assert closed, f"{name}: the connection stayed open after the refusal"
    if words is None:  # libmicrohttpd's own answer
        assert responses(out)[0] == status and b"Content-Length" in out, out[:600]
    else:
        assert responses(out) == [status], (name, out[:600])  # nothing smuggled was answered
        p = problem_of(out)
        assert p["status"] == status and words in p["detail"], (name, p)
    assert b'"version"' not in out, f"{name}: the smuggled request was served"
    assert server.info()["workers"] == before  # the PATCH never reached /v1/pool
    assert server.healthy()


def test_unambiguous_requests_still_pass(server):
    # Equal duplicate lengths, chunked alone (any case), escapes other than %00.
    body = json.dumps(make_payload(pow, 2, 5)).encode()
    cl = str(len(body)).encode()
    out, _ = raw(server, b"POST /v1/jobs?wait=10 HTTP/1.1\r\n" + H + JSON_CT + b"Content-Length: "
                 + cl + b"\r\nContent-Length: " + cl + b"\r\nConnection: close\r\n\r\n" + body)
    assert responses(out) in ([200], [201]), out[:400]
    chunked = hex(len(body))[2:].encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"
    out, _ = raw(server, b"POST /v1/jobs?wait=10 HTTP/1.1\r\n" + H + JSON_CT +
                 b"Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n" + chunked)
    assert responses(out) in ([200], [201]), out[:400]
    out, _ = raw(server, b"GET /v1/info?x=a%20b HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    assert responses(out) == [200], out[:400]


# --------------------------------------------------------------------------- helpers: memory


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class RssSampler:
    """The largest VmRSS of pid seen while active (sampled every 20 ms)."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, rss_kb(pid), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def big(n, seed):
    """n deterministic bytes (the test computes the same)."""
    import random

    rng = random.Random(seed)
    return b"".join(rng.randbytes(min(1 << 20, n - i)) for i in range(0, n, 1 << 20))


def submit_wait(s, fn, *args, **kwargs):
    r = s.request("POST", "/v1/jobs?wait=60", body=make_payload(fn, *args, **kwargs),
                  headers={"Content-Type": "application/json"})
    assert r.status in (200, 201), r
    job = r.json()
    assert job["status"] == "succeeded", job
    return job["id"]


# --------------------------------------------------------------------------- item 3: slow readers


def open_slow_readers(s, path, n):
    socks = []
    for _ in range(n):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # reads almost nothing
        c.connect(("127.0.0.1", s.port))
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        socks.append(c)
    return socks


def drain(c, timeout):
    """Reads what is left: the byte count when the server closed the connection, -1
    when it kept it open."""
    c.settimeout(timeout)
    got = 0
    try:
        while True:
            b = c.recv(1 << 20)
            if not b:
                return got
            got += len(b)
    except socket.timeout:
        return -1
    except ConnectionResetError:
        return got
    finally:
        c.close()


def test_400_slow_readers_hold_little_server_memory_and_others_are_served(make_server):
    """A 2 MiB result fits in the kernel's socket buffers: what a slow reader may hold of
    the server's own memory is what is in flight, not a copy of the body."""
    s = make_server("--workers", "1", *ROOT)
    jid = submit_wait(s, big, 2 << 20, 1)
    base = rss_kb(s.proc.pid)
    with RssSampler(s.proc.pid) as rss:
        socks = open_slow_readers(s, f"/v1/jobs/{jid}", 400)
        t0, slowest = time.monotonic(), 0.0
        while time.monotonic() - t0 < 3.0:
            t = time.monotonic()
            assert s.request("GET", "/v1/info").status == 200
            slowest = max(slowest, time.monotonic() - t)
            time.sleep(0.1)
    for c in socks:
        c.close()
    grown = rss.peak - base
    print(f"\n400 slow readers of a 2 MiB result: server RSS +{grown // 1024} MiB at most "
          f"(a copy each would be 1100 MiB); slowest other request {slowest * 1000:.0f} ms")
    assert grown < 48 * 1024, f"the server grew by {grown // 1024} MiB for 400 slow readers"
    assert slowest < 1.0
    assert s.healthy()


def test_a_slow_reader_of_a_long_response_is_cut_off(make_server):
    """16 MiB (more than the kernel buffers): a reader below 64 KB/s is disconnected
    within the grace and one window, however fast it started."""
    s = make_server("--min-transfer-rate", "64K", "--transfer-grace", "1", "--workers", "1",
                    "--max-result-bytes", "32M", *ROOT)
    jid = submit_wait(s, big, 16 << 20, 2)
    socks = open_slow_readers(s, f"/v1/jobs/{jid}/result", 20)
    time.sleep(4)
    got = [drain(c, 5) for c in socks]
    cut = sum(0 <= g < (16 << 20) for g in got)
    print(f"\n20 slow readers of a 16 MiB result: {cut} cut off (bytes they got: {sorted(got)[:3]}...)")
    assert cut == len(socks), f"only {cut} slow readers were disconnected: {got}"
    # A reader at speed gets it all.
    out = {}
    hashed_get(s, f"/v1/jobs/{jid}/result", out, 0)
    assert out[0][0] == 200 and (16 << 20) < out[0][2] < (16 << 20) + 64  # the pickle's


# --------------------------------------------------------------------------- item 4: streamed results


def hashed_get(s, path, out, key):
    """GET path, reading the body in pieces: out[key] = (status, sha256 of the body, length)."""
    c = socket.create_connection(("127.0.0.1", s.port))
    c.settimeout(120)
    c.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += c.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    h, n = hashlib.sha256(rest), len(rest)
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    c.close()
    out[key] = (int(head.split()[1]), h.hexdigest(), n)


def test_a_300mb_result_read_by_three_clients_costs_its_size_once(make_server):
    size = 300 << 20
    s = make_server("--max-result-bytes", "400M", "--workers", "1", *ROOT)
    jid = submit_wait(s, big, size, 7)
    expected = big(size, 7)
    base = rss_kb(s.proc.pid)
    got = {}
    with RssSampler(s.proc.pid) as rss:
        threads = [threading.Thread(target=hashed_get, args=(s, f"/v1/jobs/{jid}/result", got, i))
                   for i in range(2)]
        full = {}

        def read_json():
            r = s.request("GET", f"/v1/jobs/{jid}", timeout=120)
            full["job"] = r.json()

        threads.append(threading.Thread(target=read_json))
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
    grown = rss.peak - base
    print(f"\n300 MiB result, 3 concurrent readers: server RSS {base // 1024} MiB before, "
          f"+{grown // 1024} MiB at most while serving")
    pickled = cloudpickle.dumps(expected)
    for i in range(2):  # the pickle itself
        assert got[i] == (200, hashlib.sha256(pickled).hexdigest(), len(pickled)), got[i][0]
    job = full["job"]
    assert cloudpickle.loads(base64.b64decode(job["result"])) == expected
    assert grown < 64 * 1024, f"serving grew the server by {grown // 1024} MiB (S = 300 MiB)"


def json_result(n):
    return {"n": n, "text": "é" * n}


def test_a_listing_has_no_results_unless_asked_and_then_a_bounded_page(make_server):
    s = make_server("--max-result-bytes", "2M", "--workers", "1", *ROOT)
    ids = [submit_wait(s, big, 900 << 10, i) for i in range(3)]
    page = s.request("GET", "/v1/jobs").json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1]
    assert all("result" not in j and j["status"] == "succeeded" for j in page["jobs"]), page
    # With results: two of 900 KiB fit in 2 MiB, the third comes on the next page.
    page = s.request("GET", "/v1/jobs?include=result").json()
    assert [j["id"] for j in page["jobs"]] == ids[:0:-1] and page["next_cursor"], page.keys()
    for j, seed in zip(page["jobs"], (2, 1)):
        assert cloudpickle.loads(base64.b64decode(j["result"])) == big(900 << 10, seed)
    rest = s.request("GET", f"/v1/jobs?include=result&cursor={page['next_cursor']}").json()
    assert [j["id"] for j in rest["jobs"]] == ids[:1] and rest["next_cursor"] is None
    assert cloudpickle.loads(base64.b64decode(rest["jobs"][0]["result"])) == big(900 << 10, 0)
    check_problem(s.request("GET", "/v1/jobs?include=everything"), 400)
    # JSON results come through as they are, in a listing and alone.
    body = dict(make_payload(json_result, 3), result_format="json")
    r = s.request("POST", "/v1/jobs?wait=20", body=body, headers={"Content-Type": "application/json"})
    job = r.json()
    assert job["result_json"] == {"n": 3, "text": "ééé"}, job
    listed = s.request("GET", "/v1/jobs?include=result&limit=1").json()["jobs"][0]
    assert listed["result_json"] == {"n": 3, "text": "ééé"}
    assert s.request("GET", f"/v1/jobs/{job['id']}/result").json() == {"n": 3, "text": "ééé"}


def forge_result_json(frame_hex):
    """A job that answers for itself with a RESULT frame whose JSON is not one value."""
    import os
    import time

    os.write(3, bytes.fromhex(frame_hex))
    time.sleep(3)


def test_a_forged_json_result_cannot_change_the_document_it_is_sent_in(make_server):
    import struct

    evil = b'1,"status":"hacked","id":"0"'
    payload = struct.pack("<II", 21, len(evil)) + evil
    frame = (struct.pack("<II", len(payload), 3) + payload).hex()
    s = make_server("--workers", "1", *ROOT)
    body = dict(make_payload(forge_result_json, frame), result_format="json")
    r = s.request("POST", "/v1/jobs?wait=20", body=body, headers={"Content-Type": "application/json"})
    job = r.json()  # one well-formed document
    assert job["status"] == "succeeded" and job["result_json"] is None, job
    assert len(job["id"]) == 32
    listed = s.request("GET", "/v1/jobs?include=result").json()
    assert listed["jobs"][0]["result_json"] is None and listed["jobs"][0]["id"] == job["id"]


# --------------------------------------------------------------------------- item 5: parked bodies


def test_parked_bodies_are_bounded_in_total(make_server):
    s = make_server("--max-buffered-bytes", "64M", "--max-request-bytes", "48M",
                    "--min-transfer-rate", "64K", "--transfer-grace", "2", *ROOT)
    base = rss_kb(s.proc.pid)
    head = (b"POST /v1/jobs HTTP/1.1\r\n" + H + JSON_CT + b"Content-Length: " +
            str(48 << 20).encode() + b"\r\n\r\n")
    chunk = b"x" * (1 << 20)
    parked, refused = [], []
    with RssSampler(s.proc.pid) as rss:
        for i in range(20):
            c = socket.create_connection(("127.0.0.1", s.port))
            c.settimeout(0.5)
            c.sendall(head)
            try:
                first = c.recv(4096)  # answered at once when there is no room
            except socket.timeout:
                first = b""
            if first:
                refused.append(first)
                c.close()
                continue
            c.settimeout(10)
            for _ in range(47):  # all but the last megabyte and a byte
                c.sendall(chunk)
            c.sendall(chunk[:-1])
            parked.append(c)
        time.sleep(0.5)
    grown = rss.peak - base
    print(f"\n20 bodies of 48 MiB, last byte withheld: {len(parked)} parked, {len(refused)} refused "
          f"(503), server RSS +{grown // 1024} MiB at most")
    assert len(parked) == 1 and len(refused) == 19, (len(parked), len(refused))
    assert responses(refused[0]) == [503] and b"Retry-After: 1" in refused[0]
    assert "--max-buffered-bytes" in problem_of(refused[0])["detail"]
    assert grown < 80 * 1024, f"the server grew by {grown // 1024} MiB"
    # The parked one stalls: cut within two windows of the grace, and its room is free again.
    t0 = time.monotonic()
    c = parked[0]
    c.settimeout(15)
    try:
        while c.recv(4096):
            pass
    except ConnectionResetError:
        pass
    stalled_for = time.monotonic() - t0
    c.close()
    assert stalled_for < 6.5, f"a stalled body held its connection {stalled_for:.1f} s"
    r = s.request("POST", "/v1/jobs?wait=10", body=make_payload(pow, 2, 3),
                  headers={"Content-Type": "application/json"})
    assert r.status in (200, 201) and r.json()["status"] == "succeeded", r


def test_a_body_that_trickles_buys_no_time(make_server):
    s = make_server("--min-transfer-rate", "64K", "--transfer-grace", "1", *ROOT)
    body = json.dumps(make_payload(pow, 2, 3)).encode()
    body += b" " * ((1 << 20) - len(body))  # 1 MiB, JSON whitespace after the object
    c = socket.create_connection(("127.0.0.1", s.port))
    c.sendall(b"POST /v1/jobs HTTP/1.1\r\n" + H + JSON_CT + b"Content-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body[:900 << 10])
    t0 = time.monotonic()
    cut = None
    try:
        for i in range(900 << 10, len(body)):  # then a byte each 50 ms
            c.sendall(body[i:i + 1])
            time.sleep(0.05)
            if time.monotonic() - t0 > 10:
                break
    except (BrokenPipeError, ConnectionResetError):
        cut = time.monotonic() - t0
    c.close()
    assert cut is not None and cut < 4.0, f"a trickling body kept its connection ({cut})"
    # A body at the rate is fine: 1 MiB at ~200 KiB/s.
    c = socket.create_connection(("127.0.0.1", s.port))
    c.settimeout(20)
    c.sendall(b"POST /v1/jobs?wait=10 HTTP/1.1\r\n" + H + JSON_CT + b"Connection: close\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    for i in range(0, len(body), 20 << 10):
        c.sendall(body[i:i + (20 << 10)])
        time.sleep(0.1)
    out = b""
    while True:
        b = c.recv(65536)
        if not b:
            break
        out += b
    assert responses(out) in ([200], [201]), out[:300]
