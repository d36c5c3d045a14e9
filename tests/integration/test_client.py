"""The Python client (client/python/pyjobd) against the real server.

pyjobd.Executor is a concurrent.futures.Executor: submit/map/shutdown, futures that
work with concurrent.futures.wait/as_completed, remote exceptions re-raised with
their type and the remote traceback as __cause__, and pyjobd's own errors.
"""

import concurrent.futures as cf
import os
import platform
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import cloudpickle
import pytest

from conftest import blocker, REPO_ROOT, b64, decode_result

CLIENT_DIR = os.path.join(REPO_ROOT, "client", "python")
if CLIENT_DIR not in sys.path:
    sys.path.insert(0, CLIENT_DIR)

import pyjobd  # noqa: E402

PYTHON = "/usr/bin/python3"


@pytest.fixture
def url(server):
    return server.base_url


@pytest.fixture
def ex(url):
    executor = pyjobd.Executor(url)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def wait_for_file(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.01)


# ----------------------------------------------------------------------------- basics


def test_map_squares_in_a_with_block(url):
    with pyjobd.Executor(url) as executor:
        assert list(executor.map(lambda x: x * x, range(10))) == [x * x for x in range(10)]


def test_executor_is_a_concurrent_futures_executor(ex):
    assert isinstance(ex, cf.Executor)
    f = ex.submit(lambda a, b, *, c: (a, b, c), 1, 2, c=3)
    assert isinstance(f, cf.Future)
    assert f.result(timeout=30) == (1, 2, 3)
    assert f.done() and not f.cancelled() and f.exception() is None
    assert isinstance(f.job_id, str) and len(f.job_id) == 32
    assert f.job["status"] == "succeeded"


def test_submit_positional_only_fn_allows_fn_keyword(ex):
    # submit(fn, /, *args, **kwargs): a keyword named "fn" goes to the callable
    assert ex.submit(lambda **kw: kw, fn=1, args=2).result(timeout=30) == {"fn": 1, "args": 2}


def test_done_callbacks_run(ex):
    got = []
    event = threading.Event()

    def cb(fut):
        got.append(fut.result())
        event.set()

    ex.submit(lambda: "called back").add_done_callback(cb)
    assert event.wait(30)
    assert got == ["called back"]


def test_large_arguments_and_results(ex):
    blob = os.urandom(3 << 20)
    assert ex.submit(lambda b: b[::-1], blob).result(timeout=60) == blob[::-1]


def test_submit_from_many_threads(ex):
    results = {}

    def client(t):
        fs = [ex.submit(lambda a, b: a * 1000 + b, t, i) for i in range(20)]
        results[t] = [f.result(timeout=60) for f in fs]

    threads = [threading.Thread(target=client, args=(t,)) for t in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results == {t: [t * 1000 + i for i in range(20)] for t in range(10)}


def test_token_is_sent_as_bearer_header(url):
    with pyjobd.Executor(url, "s3cret-token") as executor:
        assert executor._http._headers["Authorization"] == "Bearer s3cret-token"
        assert executor.submit(lambda: 7).result(timeout=30) == 7


# ----------------------------------------------------------------------------- map


def test_map_2000_items_in_order(ex):
    t0 = time.monotonic()
    out = list(ex.map(lambda x: (x, x * 3), range(2000)))
    assert out == [(x, x * 3) for x in range(2000)]
    assert time.monotonic() - t0 < 30


def test_map_several_iterables_and_chunksize(ex):
    assert list(ex.map(lambda a, b: a - b, range(10), range(100, 0, -1))) == [
        a - b for a, b in zip(range(10), range(100, 0, -1))]
    assert list(ex.map(lambda x: x + 1, range(1000), chunksize=64)) == list(range(1, 1001))
    assert list(ex.map(lambda x: x, [])) == []


def test_map_is_lazy_and_reraises_in_order(ex):
    def f(x):
        if x == 3:
            raise KeyError(x)
        return x

    it = ex.map(f, range(6))
    assert [next(it), next(it), next(it)] == [0, 1, 2]
    with pytest.raises(KeyError):
        next(it)


def test_map_timeout(ex):
    import time as _t
    t0 = time.monotonic()
    it = ex.map(lambda s: _t.sleep(s) or s, [0.0, 2.0], timeout=0.5)
    assert next(it) == 0.0
    with pytest.raises(TimeoutError):
        next(it)
    assert time.monotonic() - t0 < 1.9


# ----------------------------------------------------------------------------- errors


def test_remote_exception_round_trip(ex):
    class InventoryError(Exception):
        # (args must be what __init__ takes, for the exception to unpickle: plain pickle rules)
        def __init__(self, item, count):
            super().__init__(item, count)
            self.item = item
            self.count = count

        def __str__(self):
            return f"{self.item}: only {self.count} left"

    def reserve(item):
        raise InventoryError(item, 2)

    fut = ex.submit(reserve, "widget")
    exc = fut.exception(timeout=30)
    assert type(exc).__name__ == "InventoryError"
    assert (exc.item, exc.count) == ("widget", 2)
    with pytest.raises(Exception) as info:
        fut.result()
    assert info.value is exc
    cause = exc.__cause__
    assert isinstance(cause, pyjobd.RemoteTraceback)
    text = str(cause)
    assert "Traceback" in text and "reserve" in text and "InventoryError" in text


def test_builtin_exception_types_round_trip(ex):
    with pytest.raises(ZeroDivisionError) as info:
        ex.submit(lambda: 1 / 0).result(timeout=30)
    assert "ZeroDivisionError" in str(info.value.__cause__)


def test_timeout_raises_job_timeout_error(url):
    import time as _t
    with pyjobd.Executor(url) as executor:
        fut = executor.submit_with(_t.sleep, (30,), timeout=0.5)
        exc = fut.exception(timeout=30)
        assert isinstance(exc, pyjobd.JobTimeoutError)
        assert isinstance(exc, TimeoutError)
        assert "timeout" in str(exc)
        assert exc.job_id == fut.job_id
    # the executor-wide default applies to every call
    with pyjobd.Executor(url, timeout=0.5) as executor:
        with pytest.raises(pyjobd.JobTimeoutError):
            executor.submit(_t.sleep, 30).result(timeout=30)
        assert executor.submit(lambda: "fast").result(timeout=30) == "fast"


def test_worker_crash_exit_code(ex):
    def die():
        import os
        os._exit(7)

    exc = ex.submit(die).exception(timeout=30)
    assert isinstance(exc, pyjobd.WorkerCrashedError)
    assert "exit" in str(exc) and "7" in str(exc), str(exc)
    assert ex.submit(lambda: "still serving").result(timeout=30) == "still serving"


def test_worker_crash_signal(ex):
    def segv():
        import os
        import signal
        os.kill(os.getpid(), signal.SIGKILL)

    exc = ex.submit(segv).exception(timeout=30)
    assert isinstance(exc, pyjobd.WorkerCrashedError)
    assert "SIGKILL" in str(exc), str(exc)


def test_module_function_by_reference_needs_pickle_by_value(url, tmp_path, monkeypatch):
    name = f"clientmod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        FACTOR = 3

        def triple(x):
            return x * FACTOR
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = __import__(name)
    try:
        with pyjobd.Executor(url) as executor:
            exc = executor.submit(mod.triple, 5).exception(timeout=30)
        assert isinstance(exc, pyjobd.InvalidPayloadError), repr(exc)
        assert "pickle_by_value" in str(exc)
        assert name in str(exc), str(exc)
        with pyjobd.Executor(url, pickle_by_value=[mod]) as executor:
            assert executor.submit(mod.triple, 5).result(timeout=30) == 15
            assert list(executor.map(mod.triple, range(4))) == [0, 3, 6, 9]
        # module names work too, and the registration does not outlive the executor
        with pyjobd.Executor(url, pickle_by_value=[name]) as executor:
            assert executor.submit(mod.triple, 2).result(timeout=30) == 6
        assert name not in cloudpickle.list_registry_pickle_by_value()
    finally:
        sys.modules.pop(name, None)


def test_http_errors_carry_problem_detail(ex):
    with pytest.raises(pyjobd.ServerError) as info:
        ex.submit_with(lambda: 1, timeout=-5)
    assert info.value.status == 400
    assert "timeout" in str(info.value)


def test_connection_refused_names_the_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(pyjobd.ServerError) as info:
        pyjobd.Executor(url)
    assert isinstance(info.value, ConnectionError)
    assert url in str(info.value)
    # without the version check nothing is sent until the first submit
    executor = pyjobd.Executor(url, python_check=False)
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        executor.submit(lambda: 1)
    executor.shutdown()


def test_python_version_mismatch_is_detected_before_sending(url, monkeypatch):
    with pyjobd.Executor(url) as executor:
        server_python = executor.info()["python_version"]
    assert server_python.split(".")[:2] == platform.python_version().split(".")[:2]
    monkeypatch.setattr(platform, "python_version", lambda: "3.99.1")
    with pytest.raises(pyjobd.PythonVersionMismatchError) as info:
        pyjobd.Executor(url)
    assert "3.99.1" in str(info.value) and server_python in str(info.value)
    assert info.value.client_version == "3.99.1"
    # the same major.minor with another patch level is fine
    monkeypatch.setattr(platform, "python_version",
                        lambda: ".".join(server_python.split(".")[:2] + ["999"]))
    with pyjobd.Executor(url) as executor:
        assert executor.submit(lambda: "ok").result(timeout=30) == "ok"


# ----------------------------------------------------------------------------- futures


def test_wait_and_as_completed_over_200_futures(ex):
    fs = [ex.submit(lambda i: i * i, i) for i in range(200)]
    seen = sorted(f.result() for f in cf.as_completed(fs, timeout=60))
    assert seen == sorted(i * i for i in range(200))
    done, not_done = cf.wait(fs, timeout=60)
    assert len(done) == 200 and not not_done

    fs = [ex.submit(lambda i: i, i) for i in range(200)]
    done, not_done = cf.wait(fs, timeout=60, return_when=cf.ALL_COMPLETED)
    assert len(done) == 200 and not not_done
    assert [f.result() for f in fs] == list(range(200))


def test_wait_first_completed_and_first_exception(ex):
    import time as _t
    slow = ex.submit(_t.sleep, 1.5)
    fast = ex.submit(lambda: 1)
    done, not_done = cf.wait([slow, fast], timeout=30, return_when=cf.FIRST_COMPLETED)
    assert fast in done and slow in not_done
    bad = ex.submit(lambda: 1 / 0)
    done, not_done = cf.wait([slow, bad], timeout=30, return_when=cf.FIRST_EXCEPTION)
    assert bad in done and slow in not_done


def test_new_future_resolves_while_others_run(ex):
    # A long-poll in flight for a slow job must not delay a newer, fast job.
    import time as _t
    slow = ex.submit(_t.sleep, 2)
    time.sleep(0.2)
    t0 = time.monotonic()
    assert ex.submit(lambda: "quick").result(timeout=30) == "quick"
    assert time.monotonic() - t0 < 1.0
    assert not slow.done()


def test_cancel_queued_job_and_not_running_one(make_server, tmp_path):
    srv = make_server("--workers", "1", name="client-cancel")
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    with pyjobd.Executor(srv.base_url) as executor:
        running = executor.submit(blocker(started, release))
        wait_for_file(started)
        queued = executor.submit(lambda: "never")
        waiting = threading.Thread(target=cf.wait, args=([queued],))
        waiting.start()
        assert queued.cancel() is True
        assert queued.cancelled() and queued.done()
        assert queued.cancel() is True  # idempotent
        with pytest.raises(cf.CancelledError):
            queued.result(timeout=1)
        waiting.join(5)
        assert not waiting.is_alive(), "cf.wait() on a cancelled future did not return"
        assert srv.get(queued.job_id)["status"] == "cancelled"

        assert running.cancel() is False  # running on the server: not cancellable
        assert not running.cancelled()
        open(release, "w").close()
        assert running.result(timeout=30) == "released"
        assert running.cancel() is False  # finished


def test_shutdown_cancel_futures_and_no_new_submissions(make_server, tmp_path):
    srv = make_server("--workers", "1", name="client-shutdown")
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    executor = pyjobd.Executor(srv.base_url)
    running = executor.submit(blocker(started, release))
    wait_for_file(started)
    queued = [executor.submit(lambda i: i, i) for i in range(5)]
    threading.Timer(0.5, lambda: open(release, "w").close()).start()
    executor.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    assert running.result(timeout=0) == "released"
    with pytest.raises(RuntimeError):
        executor.submit(lambda: 1)


def test_submit_with_options(ex):
    fut = ex.submit_with(lambda a, b=0: a + b, (1,), {"b": 2}, metadata={"owner": "tests", "n": 1})
    assert fut.result(timeout=30) == 3
    assert fut.job.get("metadata") == {"owner": "tests", "n": 1}


def test_submit_with_priority_and_soft_timeout_reach_the_job(ex):
    fut = ex.submit_with(lambda: 7, priority=5, timeout=20, soft_timeout=10)
    assert fut.result(timeout=30) == 7
    assert fut.job["priority"] == 5 and fut.job["soft_timeout"] == 10, fut.job
    with pytest.raises(pyjobd.ServerError) as e:  # the server's 400 names the field
        ex.submit_with(lambda: 7, priority=500)
    assert "priority" in str(e.value)


def test_a_soft_timeout_is_caught_in_the_job_and_raised_here_by_type(ex, tmp_path):
    def overrun(marker):
        import time

        import pyjobd  # in a worker: the worker's own module, with the same classes

        try:
            time.sleep(30)
        except pyjobd.SoftTimeout:
            open(marker, "w").write("cleaned up")
            raise

    marker = str(tmp_path / "cleanup")
    fut = ex.submit_with(overrun, (marker,), timeout=20, soft_timeout=0.3)
    with pytest.raises(pyjobd.SoftTimeout) as e:
        fut.result(timeout=30)
    assert isinstance(e.value, TimeoutError) and "soft_timeout" in str(e.value)
    assert open(marker).read() == "cleaned up"


def test_map_against_a_server_older_than_idempotency_keys_sends_again_without_them():
    """During an upgrade a new client meets an old server, which refuses the batch field
    (400, nothing queued): the client sends the batch again without keys."""
    import base64
    import http.server
    import json as json_mod

    seen = []

    class Old(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def answer(self, status, obj, ctype="application/json"):
            body = json_mod.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.answer(200, {"python_version": platform.python_version()})

        def do_POST(self):
            batch = json_mod.loads(self.rfile.read(int(self.headers["Content-Length"])))["jobs"]
            seen.append([sorted(j) for j in batch])
            if any("idempotency_key" in j for j in batch):
                return self.answer(400, {"type": "about:blank", "title": "Bad Request",
                                         "status": 400,
                                         "detail": "jobs[0]: unknown field 'idempotency_key'; "
                                                   "accepted fields: callable, args"},
                                   "application/problem+json")
            jobs = [{"id": f"{i:032x}", "status": "succeeded",
                     "result": base64.b64encode(cloudpickle.dumps(i)).decode(), "error": None}
                    for i in range(len(batch))]
            self.answer(201, {"jobs": jobs})

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Old)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with pyjobd.Executor(f"http://127.0.0.1:{srv.server_address[1]}") as old_ex:
            assert list(old_ex.map(abs, [-1, -2, -3])) == [0, 1, 2]
    finally:
        srv.shutdown()
        srv.server_close()
    assert len(seen) == 2 and all("idempotency_key" in j for j in seen[0])
    assert not any("idempotency_key" in j for j in seen[1])


def test_submit_with_max_retries_reruns_after_a_crash(ex):
    def flaky(marker):
        import os
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return "second attempt"

    marker = f"/tmp/pyjobd-client-retry-{uuid.uuid4().hex}"
    try:
        fut = ex.submit_with(flaky, (marker,), max_retries=1)
        assert fut.result(timeout=30) == "second attempt"
        assert fut.job["attempts"] == 2
    finally:
        if os.path.exists(marker):
            os.unlink(marker)


def test_queue_full_429_is_retried_with_backoff(make_server):
    helptext = subprocess.run([os.path.join(REPO_ROOT, "build", "pyjobd"), "--help"],
                              capture_output=True, text=True).stdout
    if "--max-queue" not in helptext:
        pytest.skip("this server build has no --max-queue flag yet")
    srv = make_server("--workers", "1", "--max-queue", "4", name="client-429")
    import time as _t
    with pyjobd.Executor(srv.base_url) as executor:
        # one at a time: each POST beyond the queue's room gets 429 and is retried
        fs = [executor.submit(lambda i: _t.sleep(0.01) or i, i) for i in range(20)]
        assert [f.result(timeout=30) for f in fs] == list(range(20))
        # a batch larger than the queue is refused whole; the client splits it
        assert list(executor.map(lambda i: _t.sleep(0.01) or -i, range(30))) == [-i for i in range(30)]


def test_wrap_non_picklable_objects_is_an_identity_shim():
    def f(x):
        return x

    class C:
        pass

    assert pyjobd.wrap_non_picklable_objects(f) is f
    assert pyjobd.wrap_non_picklable_objects(C) is C
    assert pyjobd.wrap_non_picklable_objects(f, keep_wrapper=False) is f

    @pyjobd.wrap_non_picklable_objects
    def g():
        return 1

    assert g() == 1


def test_unpicklable_argument_fails_at_submit(ex):
    lock = threading.Lock()
    with pytest.raises(TypeError, match="pickle"):
        ex.submit(lambda l: 1, lock)


# ----------------------------------------------------------------------------- CLI


def run_cli(*args, cwd=None, timeout=60):
    env = dict(os.environ, PYTHONPATH=CLIENT_DIR)
    return subprocess.run([PYTHON, "-m", "pyjobd", *args], capture_output=True, text=True,
                          cwd=cwd or REPO_ROOT, env=env, timeout=timeout)


def test_cli_payload_prints_a_base64_callable(server):
    r = run_cli("payload", "lambda x: x * 2")
    assert r.returncode == 0, r.stderr
    text = r.stdout.strip()
    import base64
    fn = cloudpickle.loads(base64.b64decode(text, validate=True))
    assert fn(21) == 42
    # and the server runs it, as curl would send it
    resp = server.post_job({"callable": text, "args": b64(cloudpickle.dumps((21,)))}, wait=30)
    assert resp.status == 201, resp
    job = resp.json()
    if job["status"] != "succeeded":
        job = server.wait_done(job["id"])
    assert decode_result(job) == 42


def test_cli_run_module_function(url):
    r = run_cli("run", url, "operator:add", "--json-args", "[1, 2]")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"


def test_cli_run_local_module_by_value_and_errors(url, tmp_path):
    (tmp_path / "climod.py").write_text("def greet(name, punct='!'):\n    return {'hello': name + punct}\n")
    r = run_cli("run", url, "climod:greet", "--by-value", "--json-args", '["pyjobd"]',
                "--json-kwargs", '{"punct": "?"}', cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '{"hello": "pyjobd?"}'
    r = run_cli("run", url, "lambda: 1 / 0")
    assert r.returncode == 1
    assert "ZeroDivisionError" in r.stderr


def test_map_of_jobs_that_all_fail_raises_the_jobs_error(ex):
    """The first failure surfaces as the job's own error while map() cancels the rest
    (which the waiter thread may be cancelling at the same time): never a RuntimeError
    of a future cancelled twice."""
    def f(x):
        raise KeyError(x)

    for _ in range(5):
        with pytest.raises(KeyError):
            list(ex.map(f, range(300)))
