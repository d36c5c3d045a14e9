"""The HTTP edge, TLS (issue 16, item 6): TLS 1.2 and 1.3 only, AEAD suites with forward
secrecy only, the server's cipher order, --tls-priorities, and `pyjobd --health-check`
over HTTPS.

Each refusal is also tried against a deliberately lax server (--tls-priorities LAX), on
which the same client must succeed: so a refusal proves the server refused, not that
the client could not speak the old protocol or cipher. `make tls-audit` runs testssl.sh
against the defaults (tools/tls-audit.sh).

Run from the repository root:

    PYJOBD_BIN=build/pyjobd /usr/bin/python3 -m pytest -q tests/integration/test_edge_tls.py
"""

import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings

import pytest

from conftest import pyjobd_bin, start_server, stop_server

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl")

ROOT = ["--allow-root-workers"] if os.geteuid() == 0 else []
# GnuTLS's NORMAL plus TLS 1.0/1.1, CBC with SHA-1/SHA-2 MACs and static RSA key
# exchange, without %SERVER_PRECEDENCE: everything the default must refuse.
LAX = "NORMAL:+VERS-TLS1.1:+VERS-TLS1.0:+RSA:+AES-128-CBC:+AES-256-CBC:+SHA1:+SHA256:+SHA384"
CBC_ONLY = ("ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA256:"
            "ECDHE-RSA-AES256-SHA384:AES128-SHA:AES256-SHA")
STATIC_RSA_ONLY = "AES128-GCM-SHA256:AES256-GCM-SHA384"


# --------------------------------------------------------------------------- helpers


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def self_signed(d, name):
    """A throw-away RSA certificate for 127.0.0.1: (cert, key) paths."""
    cert, key = os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1")
    return cert, key


def signed_by(d, name, ca, ca_key):
    cert, key = os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-addext",
            "basicConstraints=critical,CA:FALSE", "-CA", ca, "-CAkey", ca_key, "-days", "1")
    return cert, key


def tls_server(name, cert, key, *args, env=None):
    return start_server(name, "--workers", "1", "--tls-cert", cert, "--tls-key", key, *ROOT,
                        *args, env=env)


def client_context(version=None, ciphers=None, cafile=None):
    """A client that offers exactly what it is told. SECLEVEL=0 lets Debian's OpenSSL
    offer TLS 1.0/1.1 and what else it refuses by default: the server must say no."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if version:
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers(ciphers or "DEFAULT@SECLEVEL=0")
    return ctx


def handshake(port, **kw):
    """Handshakes, GETs /healthz, returns (version, cipher, status line)."""
    ctx = client_context(**kw)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        "Connection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
            return tls.version(), tls.cipher()[0], data.split(b"\r\n")[0].decode()


def refused(port, **kw):
    """Asserts the handshake fails; returns the client's error."""
    try:
        got = handshake(port, **kw)
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return e
    pytest.fail(f"handshake with {kw} succeeded: {got}")


def s_client(port, *args):
    """openssl s_client (for what Python's ssl cannot set: TLS 1.3 suites and groups).
    Returns (handshake done, its output)."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    out = p.stdout + p.stderr
    return "Cipher is (NONE)" not in out and "New, TLS" in out, out


def health_check(*args, env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("PYJOBD_")}
    e.update(env)
    t0 = time.monotonic()
    p = subprocess.run([pyjobd_bin(), "--health-check", *args], env=e, capture_output=True,
                       text=True, timeout=20)
    return p.returncode, p.stderr, time.monotonic() - t0


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tls"))
    return {"a": self_signed(d, "a"), "b": self_signed(d, "b"), "dir": d}


@pytest.fixture(scope="module")
def strict(certs):
    """A server with the built-in priorities."""
    s = tls_server("tls-default", *certs["a"])
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def lax(certs):
    s = tls_server("tls-lax", *certs["a"], "--tls-priorities", LAX)
    yield s
    stop_server(s)


# --------------------------------------------------------------------------- protocols


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1],
                         ids=["tls1.1", "tls1.0"])
def test_tls_1_1_and_1_0_handshakes_fail(strict, lax, version):
    assert handshake(lax.port, version=version)[0] == version.name.replace("v1_", "v1.")
    refused(strict.port, version=version)
    assert handshake(strict.port)[2] == "HTTP/1.1 200 OK"  # and it still serves


def test_tls_1_3_and_tls_1_2_ecdhe_aead_work(strict, certs):
    cafile = certs["a"][0]  # and the certificate verifies, host name included
    assert handshake(strict.port, version=ssl.TLSVersion.TLSv1_3, cafile=cafile) == \
        ("TLSv1.3", "TLS_AES_256_GCM_SHA384", "HTTP/1.1 200 OK")
    for cipher in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                   "ECDHE-RSA-CHACHA20-POLY1305"):
        assert handshake(strict.port, version=ssl.TLSVersion.TLSv1_2, ciphers=cipher,
                         cafile=cafile) == ("TLSv1.2", cipher, "HTTP/1.1 200 OK")


# --------------------------------------------------------------------------- ciphers


def test_a_cbc_only_client_fails(strict, lax):
    tls12 = ssl.TLSVersion.TLSv1_2  # TLS 1.3 has no CBC (and set_ciphers cannot touch it)
    assert "SHA" in handshake(lax.port, version=tls12, ciphers=CBC_ONLY)[1]
    refused(strict.port, version=tls12, ciphers=CBC_ONLY)


def test_a_static_rsa_key_exchange_only_client_fails(strict, lax):
    """AES-GCM, but the key is sent encrypted with the certificate's: no forward secrecy."""
    tls12 = ssl.TLSVersion.TLSv1_2
    assert handshake(lax.port, version=tls12, ciphers=STATIC_RSA_ONLY)[1] in \
        STATIC_RSA_ONLY.split(":")
    refused(strict.port, version=tls12, ciphers=STATIC_RSA_ONLY)
    refused(strict.port, version=tls12, ciphers="DHE-RSA-AES128-GCM-SHA256")  # no FFDHE either


def test_tls_1_3_finite_field_groups_are_refused(strict, lax):
    """Elliptic curves only: a client asking for ffdhe8192 would cost the server most of
    a second of CPU per handshake."""
    ok, out = s_client(lax.port, "-tls1_3", "-groups", "ffdhe2048")
    assert ok and "Server Temp Key: DH" in out, out
    ok, out = s_client(strict.port, "-tls1_3", "-groups", "ffdhe2048:ffdhe8192")
    assert not ok, out
    ok, out = s_client(strict.port, "-tls1_3", "-groups", "X25519")
    assert ok and "X25519" in out, out


def test_the_server_picks_the_cipher(strict, lax):
    """The client lists AES-128-GCM first; the server's first choice, AES-256-GCM, wins."""
    tls12 = ssl.TLSVersion.TLSv1_2
    order = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
    assert handshake(lax.port, version=tls12, ciphers=order)[1] == "ECDHE-RSA-AES128-GCM-SHA256"
    assert handshake(strict.port, version=tls12, ciphers=order)[1] == \
        "ECDHE-RSA-AES256-GCM-SHA384"
    suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"
    ok, out = s_client(lax.port, "-tls1_3", "-ciphersuites", suites)
    assert ok and "Cipher is TLS_AES_128_GCM_SHA256" in out, out
    ok, out = s_client(strict.port, "-tls1_3", "-ciphersuites", suites)
    assert ok and "Cipher is TLS_AES_256_GCM_SHA384" in out, out


def get_after_renegotiating(port, renegotiate):
    """openssl s_client over TLS 1.2 (1.3 has no renegotiation): "R" renegotiates, then
    GET /healthz. Returns what s_client printed."""
    p = subprocess.Popen(["openssl", "s_client", "-no_tls1_3", "-connect", f"127.0.0.1:{port}"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         bufsize=0)
    try:
        time.sleep(0.5)
        if renegotiate:
            p.stdin.write(b"R\n")
            time.sleep(0.5)
        p.stdin.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      "Connection: close\r\n\r\n".encode())
    except BrokenPipeError:  # s_client already left: the server closed
        pass
    try:  # both ways the server closes the connection, and s_client leaves
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    out = p.stdout.read().decode("utf-8", "replace")
    p.stdin.close()
    p.stdout.close()
    return out


def test_client_initiated_renegotiation_closes_the_connection(strict):
    """Renegotiating costs the server a handshake each time a client asks."""
    answered = re.compile(r"^HTTP/1\.[01] 200", re.M)
    assert answered.search(get_after_renegotiating(strict.port, False))
    out = get_after_renegotiating(strict.port, True)
    assert "RENEGOTIATING" in out and not answered.search(out), out


# --------------------------------------------------------------------------- --tls-priorities


@pytest.mark.parametrize("how", ["flag", "env"])
def test_tls_priorities_replace_the_default(certs, how):
    prio = "SECURE256:-VERS-ALL:+VERS-TLS1.3:%SERVER_PRECEDENCE"
    args, env = (["--tls-priorities", prio], None) if how == "flag" else \
        ([], {"PYJOBD_TLS_PRIORITIES": prio})
    s = tls_server(f"tls-1.3-only-{how}", *certs["a"], *args, env=env)
    try:
        refused(s.port, version=ssl.TLSVersion.TLSv1_2,
                ciphers="ECDHE-RSA-AES256-GCM-SHA384")  # fine by the default, not by this
        assert handshake(s.port)[0] == "TLSv1.3"
    finally:
        stop_server(s)


@pytest.mark.parametrize("prio,where", [
    ("SECURE256:-VERS-ALL:+VERS-TLS1.9:%SERVER_PRECEDENCE", "character 21: '+VERS-TLS1.9"),
    ("NORMAL:+NO-SUCH-CIPHER", "character 8: '+NO-SUCH-CIPHER'"),
    ("NORMAL:-VERS-ALL", "No or insufficient priorities"),
])
def test_a_bad_tls_priorities_stops_the_server_at_start(certs, prio, where):
    cert, key = certs["a"]
    p = subprocess.run([pyjobd_bin(), "--port", "0", "--listen", "127.0.0.1", *ROOT,
                        "--tls-cert", cert, "--tls-key", key, "--tls-priorities", prio],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    assert p.returncode == 2 and "listening" not in p.stdout, (p.returncode, p.stdout, p.stderr)
    assert "--tls-priorities" in p.stderr and where in p.stderr, p.stderr
    assert "libmicrohttpd failed" not in p.stderr, p.stderr


# --------------------------------------------------------------------------- --health-check


def test_health_check_speaks_https_and_trusts_only_the_servers_certificate(strict, certs):
    a, b = certs["a"][0], certs["b"][0]
    # The container's case: the server's own environment, no URL.
    rc, err, secs = health_check(env={"PYJOBD_TLS_CERT": a, "PYJOBD_PORT": str(strict.port)})
    assert rc == 0, err
    url = f"https://127.0.0.1:{strict.port}/healthz"
    assert health_check(url, env={"PYJOBD_TLS_CERT": a})[0] == 0
    # Another certificate than the one it was given: not our server.
    rc, err, _ = health_check(env={"PYJOBD_TLS_CERT": b, "PYJOBD_PORT": str(strict.port)})
    assert rc == 1 and "not trusted" in err, (rc, err)
    # An https URL without PYJOBD_TLS_CERT: the system's CAs, which know no self-signed one.
    rc, err, _ = health_check(url, env={})
    assert rc == 1 and "not trusted" in err, (rc, err)
    # Plain HTTP to the TLS port is no answer.
    rc, err, _ = health_check(env={"PYJOBD_PORT": str(strict.port)})
    assert rc == 1, (rc, err)


def test_health_check_still_speaks_plain_http():
    s = start_server("plain", "--workers", "1", *ROOT)
    try:
        assert health_check(env={"PYJOBD_PORT": str(s.port)})[0] == 0
        assert health_check(f"http://127.0.0.1:{s.port}/healthz", env={})[0] == 0
        rc, err, _ = health_check(f"http://127.0.0.1:{s.port}/v1/no-such", env={})
        assert rc == 1 and "answered: HTTP/1.1 404" in err, (rc, err)
        rc, err, _ = health_check(f"ftp://127.0.0.1:{s.port}/", env={})
        assert rc == 2 and "http[s]://" in err, (rc, err)
    finally:
        stop_server(s)


def test_health_check_against_a_server_with_another_certificate_fails(certs):
    s = tls_server("tls-other-cert", *certs["b"])
    try:
        rc, err, _ = health_check(env={"PYJOBD_TLS_CERT": certs["a"][0],
                                       "PYJOBD_PORT": str(s.port)})
        assert rc == 1 and "not trusted" in err, (rc, err)
        rc, err, _ = health_check(env={"PYJOBD_TLS_CERT": certs["b"][0],
                                       "PYJOBD_PORT": str(s.port)})
        assert rc == 0, err
    finally:
        stop_server(s)


def test_health_check_pins_the_first_certificate_of_a_chain_file(certs):
    """PYJOBD_TLS_CERT may hold the server's certificate and its CA: another certificate of
    that CA still is not the server's."""
    d = certs["dir"]
    ca, ca_key = self_signed(d, "ca")
    one, one_key = signed_by(d, "one", ca, ca_key)
    two, two_key = signed_by(d, "two", ca, ca_key)
    chain = os.path.join(d, "one-chain.pem")
    with open(chain, "w") as f:
        f.write(open(one).read() + open(ca).read())
    s1 = tls_server("tls-chain-one", chain, one_key)
    s2 = tls_server("tls-chain-two", two, two_key)
    try:
        rc, err, _ = health_check(env={"PYJOBD_TLS_CERT": chain, "PYJOBD_PORT": str(s1.port)})
        assert rc == 0, err
        rc, err, _ = health_check(env={"PYJOBD_TLS_CERT": chain, "PYJOBD_PORT": str(s2.port)})
        assert rc == 1 and "other than the first" in err, (rc, err)
    finally:
        stop_server(s1)
        stop_server(s2)


def test_health_check_keeps_its_deadline_during_the_handshake(certs):
    """A peer that accepts the connection and then says nothing."""
    lsock = socket.create_server(("127.0.0.1", 0))
    held = []
    stop = threading.Event()

    def accept():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(lsock.accept()[0])
            except socket.timeout:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        rc, err, secs = health_check(env={"PYJOBD_TLS_CERT": certs["a"][0],
                                          "PYJOBD_PORT": str(lsock.getsockname()[1])})
        assert rc == 1 and 2.5 < secs < 5, (rc, secs, err)
        assert "TLS handshake" in err and "timed out" in err.lower(), err
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        lsock.close()
