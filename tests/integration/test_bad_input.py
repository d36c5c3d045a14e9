"""Bad requests: each answers application/problem+json with the right status and a
detail that says what to fix, and the server keeps serving afterwards."""

import json

import pytest

from conftest import b64, check_created, check_problem, decode_result, make_payload


def good_callable():
    return make_payload(lambda: "fine")["callable"]


def assert_still_serving(server):
    server.healthy()
    job = server.run(lambda: "still here")
    assert decode_result(job) == "still here"


JSON = {"Content-Type": "application/json"}

# (id, body, headers, expected status, words one of which the detail should contain)
POST_CASES = [
    ("malformed-json", b'{"callable": ', JSON, 400, ["json", "parse", "syntax", "malformed", "invalid"]),
    ("not-an-object", b'["callable"]', JSON, 400, ["object"]),
    ("empty-body", b"", JSON, 400, ["empty", "body", "json", "callable"]),
    ("missing-callable", b"{}", JSON, 400, ["callable"]),
    ("callable-null", b'{"callable": null}', JSON, 400, ["callable"]),
    ("callable-number", b'{"callable": 5}', JSON, 400, ["callable"]),
    ("callable-empty", b'{"callable": ""}', JSON, 400, ["callable"]),
    ("timeout-string", lambda: {"callable": good_callable(), "timeout": "abc"}, JSON, 400, ["timeout"]),
    ("timeout-negative", lambda: {"callable": good_callable(), "timeout": -1}, JSON, 400, ["timeout"]),
    ("args-number", lambda: {"callable": good_callable(), "args": 5}, JSON, 400, ["args"]),
    ("kwargs-number", lambda: {"callable": good_callable(), "kwargs": 5}, JSON, 400, ["kwargs"]),
    ("callable-bad-base64", b'{"callable": "!!!not base64!!!"}', JSON, 400, ["base64", "callable"]),
    ("args-bad-base64", lambda: {"callable": good_callable(), "args": "%%%%"}, JSON, 400, ["base64", "args"]),
    ("unknown-field", lambda: {"callable": good_callable(), "bogus": 1}, JSON, 400, ["bogus"]),
    ("python-number", lambda: {"callable": good_callable(), "python": 3.11}, JSON, 400, ["python"]),
    ("text-plain", lambda: {"callable": good_callable()}, {"Content-Type": "text/plain"}, 415,
     ["application/json", "content-type"]),
    ("form-urlencoded", b"callable=abc", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
     ["application/json", "content-type"]),
]


@pytest.mark.parametrize(
    "body,headers,status,words", [c[1:] for c in POST_CASES], ids=[c[0] for c in POST_CASES]
)
def test_bad_post(server, body, headers, status, words):
    if callable(body):
        body = json.dumps(body()).encode()
    r = server.request("POST", "/v1/jobs", body=body, headers=headers)
    p = check_problem(r, status)
    detail = p["detail"].lower()
    assert any(w.lower() in detail for w in words), f"detail should mention one of {words}: {p['detail']!r}"
    assert r.headers.get("Location") is None, "no job may be created for a bad request"
    assert_still_serving(server)


def test_bad_post_with_wait_is_still_rejected(server):
    r = server.request("POST", "/v1/jobs?wait=5", body=b'{"callable": ', headers=JSON)
    check_problem(r, 400)
    assert r.elapsed < 1.0, "a rejected request must not wait"
    assert_still_serving(server)


GET_CASES = [
    ("unknown-path", "GET", "/v1/nope", 404),
    ("root", "GET", "/", 404),
    ("jobs-subpath", "GET", "/v1/jobs/" + "0" * 32 + "/extra", 404),
    ("unknown-job", "GET", "/v1/jobs/" + "0123456789abcdef" * 2, 404),
    ("unknown-job-wait", "GET", "/v1/jobs/" + "f" * 32 + "?wait=5", 404),
    ("malformed-id-short", "GET", "/v1/jobs/xyz", 404),
    ("malformed-id-uppercase", "GET", "/v1/jobs/" + "ABCDEF0123456789" * 2, 404),
    ("malformed-id-long", "GET", "/v1/jobs/" + "a" * 33, 404),
    ("malformed-id-traversal", "GET", "/v1/jobs/..%2F..%2Fetc%2Fpasswd", 404),
]


@pytest.mark.parametrize("wait", ["abc", "-1", "61", "", "1e999", "nan"])
def test_bad_wait_parameter(server, wait):
    # ?wait= is a number of seconds, at most 60.
    job = server.run(lambda: "w")
    r = server.request("GET", f"/v1/jobs/{job['id']}?wait={wait}")
    p = check_problem(r, 400)
    assert "wait" in p["detail"], p
    r = server.request("POST", f"/v1/jobs?wait={wait}", body=make_payload(lambda: 1))
    check_problem(r, 400)
    assert r.headers.get("Location") is None, "no job may be created when ?wait= is refused"
    assert_still_serving(server)


@pytest.mark.parametrize("method,path,status", [c[1:] for c in GET_CASES], ids=[c[0] for c in GET_CASES])
def test_not_found(server, method, path, status):
    r = server.request(method, path)
    check_problem(r, status)
    assert r.elapsed < 1.0, f"{path} took {r.elapsed:.2f}s; a 404 must not long-poll"
    assert_still_serving(server)


METHOD_CASES = [
    ("delete-jobs", "DELETE", "/v1/jobs", "POST"),
    ("put-healthz", "PUT", "/healthz", "GET"),
    ("post-healthz", "POST", "/healthz", "GET"),
    ("post-info", "POST", "/v1/info", "GET"),
    ("put-job", "PUT", "/v1/jobs/" + "0" * 32, "GET"),
]


@pytest.mark.parametrize("method,path,allowed", [c[1:] for c in METHOD_CASES],
                         ids=[c[0] for c in METHOD_CASES])
def test_method_not_allowed(server, method, path, allowed):
    r = server.request(method, path, body=b"{}", headers=JSON)
    check_problem(r, 405)
    allow = r.headers.get("Allow")
    assert allow, f"405 without an Allow header: {r!r} {dict(r.headers)}"
    methods = {m.strip().upper() for m in allow.split(",")}
    assert allowed in methods, f"Allow {allow!r} should list {allowed}"
    assert method not in methods, f"Allow {allow!r} lists the refused method {method}"
    assert_still_serving(server)


def test_get_on_jobs_collection_is_not_a_job(server):
    # GET /v1/jobs is either a listing (200) or 405 with Allow: it is never a crash or a 5xx.
    r = server.request("GET", "/v1/jobs")
    assert r.status in (200, 405), r
    if r.status == 405:
        check_problem(r, 405)
        assert "POST" in r.headers.get("Allow", "")
    assert_still_serving(server)


def test_garbage_request_line_does_not_kill_server(server):
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n")
        try:
            s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            pass
    assert_still_serving(server)


def test_client_disconnect_during_long_poll(server):
    import socket

    job = server.submit(lambda: __import__("time").sleep(0.5) or "after hangup")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(f"GET /v1/jobs/{job['id']}?wait=10 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    # the connection is gone while suspended; the job still finishes and is served
    done = server.wait_done(job["id"])
    assert decode_result(done) == "after hangup"
    assert_still_serving(server)


# ------------------------------------------------------------------ request size limit


def padded_request(size):
    """A valid job request of exactly `size` bytes (JSON padded with spaces)."""
    body = json.dumps({"callable": b64(__import__("cloudpickle").dumps(int))})
    assert len(body) <= size, f"base request is {len(body)} bytes, more than {size}"
    return (body[:-1] + " " * (size - len(body)) + "}").encode()


@pytest.mark.parametrize("limit", [1000, 1024])
def test_request_size_limit(make_server, limit):
    s = make_server("--workers", "1", "--max-request-bytes", str(limit), name=f"max-{limit}")
    at_limit = padded_request(limit)
    over = padded_request(limit + 1)
    assert len(at_limit) == limit and len(over) == limit + 1
    job = check_created(s.request("POST", "/v1/jobs?wait=10", body=at_limit, headers=JSON))
    assert decode_result(s.wait_done(job["id"])) == 0  # int() == 0
    r = s.request("POST", "/v1/jobs", body=over, headers=JSON)
    p = check_problem(r, 413)
    assert str(limit) in p["detail"], f"413 detail should name the limit: {p['detail']!r}"
    # far over the limit, too
    big = b'{"callable": "' + b"A" * 200_000 + b'"}'
    try:
        r = s.request("POST", "/v1/jobs", body=big, headers=JSON)
        check_problem(r, 413)
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server may close the connection before reading everything
    assert_still_serving_plain(s)


def assert_still_serving_plain(s):
    s.healthy()
    job = s.run(lambda: 2 + 2)
    assert decode_result(job) == 4


# ------------------------------------------------------------------ interpreter check (DESIGN.md)


def test_python_version_mismatch_is_rejected(server):
    # DESIGN.md: "python", when given, is the client's platform.python_version(); a
    # major.minor mismatch is rejected with 400 before anything is unpickled.
    payload = make_payload(lambda: 1)
    payload["python"] = "2.7.18"
    p = check_problem(server.post_job(payload, wait=5), 400)
    assert "2.7" in p["detail"], p
    assert_still_serving(server)


def test_python_version_match_is_accepted(server):
    import platform

    major, minor, _ = platform.python_version_tuple()
    # the same version, and another patch release of the same major.minor
    for version in (platform.python_version(), f"{major}.{minor}.99"):
        payload = make_payload(lambda: "same interpreter")
        payload["python"] = version
        job = check_created(server.post_job(payload, wait=10))
        assert decode_result(server.wait_done(job["id"])) == "same interpreter"
