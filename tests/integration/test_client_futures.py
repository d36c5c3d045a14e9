"""pyjobd.Executor behaves as concurrent.futures does (issue 18): the defects found by
running CPython's own test_concurrent_futures (test_client_conformance.py), each with
a test, against the real server; the lazy map (buffersize=), map(progress=True), and
one request per result (a future's result() long-polls its own job).

PYJOBD_CLIENT_DIR=<dir> runs these tests against another copy of the client (e.g. the
one before a fix, to see a test fail).
"""

import concurrent.futures as cf
import io
import itertools
import os
import pickle
import sys
import threading
import time
import uuid
from concurrent.futures import _base
from concurrent.futures.process import BrokenProcessPool

import pytest

from conftest import REPO_ROOT

CLIENT_DIR = os.environ.get("PYJOBD_CLIENT_DIR") or os.path.join(REPO_ROOT, "client", "python")
if CLIENT_DIR not in sys.path:
    sys.path.insert(0, CLIENT_DIR)

import pyjobd  # noqa: E402

# Module-level functions and classes of this file travel by value.
THIS_MODULE = sys.modules[__name__]


@pytest.fixture
def url(server):
    return server.base_url


@pytest.fixture
def ex(url):
    executor = pyjobd.Executor(url, pickle_by_value=[THIS_MODULE])
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def eventually(check, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.01)


class ExitAtUnpickle:
    """Its pickle, unpickled, calls sys.exit(1) (the stdlib suite's ExitAtUnpickle)."""

    def __reduce__(self):
        return (sys.exit, (1,))


class ErrorAtUnpickle:
    def __reduce__(self):
        return (pickle.loads, (b"not a pickle",))


# ------------------------------------------------------------ a result that kills unpickling


@pytest.mark.parametrize("how", ["result", "wait", "as_completed", "map"])
def test_a_result_whose_unpickling_raises_system_exit_fails_only_its_future(ex, how):
    # The stdlib raises BrokenProcessPool here; the client's background thread used to
    # die of the SystemExit, and that future and every later one stayed pending forever.
    if how == "map":
        it = ex.map(lambda i: ExitAtUnpickle() if i == 1 else i, range(3))
        assert next(it) == 0
        with pytest.raises(pyjobd.ResultUnpicklingError) as info:
            next(it)
        exc = info.value
    else:
        f = ex.submit(lambda: ExitAtUnpickle())
        if how == "wait":  # resolved by the waiter thread, not by result()'s own request
            done, _ = cf.wait([f], timeout=15)
            assert f in done, f
        elif how == "as_completed":
            assert list(cf.as_completed([f], timeout=15)) == [f]
        exc = f.exception(timeout=15)
    assert isinstance(exc, pyjobd.ResultUnpicklingError), repr(exc)
    assert isinstance(exc, pyjobd.ResultError) and isinstance(exc, BrokenProcessPool)
    assert "SystemExit" in str(exc) and "unpickl" in str(exc), str(exc)
    assert isinstance(exc.__cause__, SystemExit)
    # The executor keeps working, for futures resolved either way.
    assert ex.submit(pow, 2, 3).result(timeout=15) == 8
    later = [ex.submit(pow, 2, i) for i in range(5)]
    done, not_done = cf.wait(later, timeout=15)
    assert not not_done, not_done
    assert [f.result() for f in later] == [1, 2, 4, 8, 16]


def test_other_unpickling_failures_of_results_fail_only_their_future(ex):
    fs = [ex.submit(lambda: ErrorAtUnpickle()) for _ in range(3)] + [ex.submit(abs, -4)]
    done, not_done = cf.wait(fs, timeout=15)
    assert not not_done
    for f in fs[:3]:
        exc = f.exception()
        assert isinstance(exc, pyjobd.ResultUnpicklingError), repr(exc)
        assert "UnpicklingError" in str(exc) or "pickle" in str(exc).lower(), str(exc)
        # The hint about modules belongs to unimportable names only.
        assert "Hint" not in str(exc), str(exc)
    assert fs[3].result() == 4


def test_the_waiter_thread_survives_a_done_callback_raising_base_exception(ex):
    calls = []

    def bad(f):
        calls.append(f)
        raise SystemExit("from a callback")

    f = ex.submit(time.sleep, 0.05)
    f.add_done_callback(bad)  # runs on the waiter thread when the job ends
    assert f.result(timeout=15) is None
    eventually(lambda: calls, what="the callback")
    assert ex.submit(pow, 3, 2).result(timeout=15) == 9
    g = ex.submit(pow, 3, 3)
    assert list(cf.as_completed([g], timeout=15)) == [g]


# ------------------------------------------------------------ cancel: a race-free state machine


def test_shutdown_cancel_futures_never_raises_across_many_rounds(make_server):
    # 50 x submit(time.sleep, .1) then shutdown(cancel_futures=True) raised
    # "RuntimeError: Future in unexpected state" in 4-17 of 10-30 rounds: the
    # cancelling thread and the background thread both marked the futures.
    s = make_server("--workers", "5", "--default-timeout", "0")
    errors = []
    for _ in range(12):
        ex = pyjobd.Executor(s.base_url)
        calls = []
        fs = [ex.submit(time.sleep, 0.1) for _ in range(50)]
        for f in fs:
            f.add_done_callback(calls.append)
        try:
            ex.shutdown(cancel_futures=True)
        except RuntimeError as e:
            errors.append(repr(e))
            continue
        cancelled = [f for f in fs if f.cancelled()]
        others = [f for f in fs if not f.cancelled()]
        assert len(cancelled) > 20, len(cancelled)
        assert others, "the running jobs cannot be cancelled"
        for f in others:
            assert f.done() and f.exception() is None, f
        eventually(lambda: len(calls) == 50, what="one callback per future")
        assert sorted(map(id, calls)) == sorted(map(id, fs)), "a callback ran twice or never"
        for f in cancelled:
            assert f._state == _base.CANCELLED_AND_NOTIFIED, f._state
            with pytest.raises(cf.CancelledError):
                f.result(timeout=0)
    assert not errors, errors


def test_cancel_from_many_threads_while_jobs_end(make_server):
    # Threads cancel the same futures at once while the waiter thread and result()
    # calls finish them: each future ends exactly once, callbacks run once, nobody
    # raises, and wait()/as_completed() see every future.
    s = make_server("--workers", "2", "--default-timeout", "0")
    with pyjobd.Executor(s.base_url) as ex:
        for _ in range(4):
            fs = [ex.submit(time.sleep, 0.02 * (i % 3)) for i in range(40)]
            calls = []
            for f in fs:
                f.add_done_callback(calls.append)
            problems = []
            barrier = threading.Barrier(5)

            def worker(k):
                barrier.wait()
                for f in (fs if k % 2 else reversed(fs)):
                    try:
                        if k == 4:
                            f.exception(timeout=20)
                        else:
                            f.cancel()
                    except cf.CancelledError:
                        pass
                    except BaseException as e:  # noqa: B902 -- any of them is the bug
                        problems.append(repr(e))

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(5)]
            for t in threads:
                t.start()
            done, not_done = cf.wait(fs, timeout=20)
            for t in threads:
                t.join(20)
            assert not problems, problems
            assert not not_done
            eventually(lambda: len(calls) == len(fs), what="one callback per future")
            assert len(set(map(id, calls))) == len(fs)
            for f in fs:
                assert f.cancelled() or f.exception() is None


def test_cancel_after_the_job_ended_gives_its_outcome(ex):
    f = ex.submit(pow, 2, 5)
    eventually(lambda: f.done(), what="the job")
    assert f.cancel() is False
    assert f.result() == 32
    g = ex.submit(time.sleep, 1)
    time.sleep(0.3)  # running now: cancel() is refused, the job goes on
    assert g.cancel() is False and not g.cancelled()
    assert g.result(timeout=15) is None


# ------------------------------------------------------------ 413: payload too large


def test_an_argument_past_the_request_limit_raises_payload_too_large(make_server):
    # The client used to fail with ServerConnectionError ... BrokenPipeError while the
    # server was answering a clear 413 (and closing the connection).
    s = make_server("--max-request-bytes", "1M", "--workers", "1")
    with pyjobd.Executor(s.base_url) as ex:
        big = os.urandom(8 << 20)
        for attempt in range(3):  # the same on a fresh and on a kept-alive connection
            with pytest.raises(pyjobd.PayloadTooLargeError) as info:
                ex.submit(len, big)
            e = info.value
            assert isinstance(e, pyjobd.ServerError) and isinstance(e, ValueError)
            assert not isinstance(e, pyjobd.ServerConnectionError)
            assert e.status == 413
            assert isinstance(e.problem, dict) and e.problem.get("status") == 413, e.problem
            assert "max-request-bytes" in e.problem["detail"], e.problem
            assert e.problem["detail"] in str(e)
            assert ex.submit(pow, 2, 4).result(timeout=15) == 16
        # A map batch that does not fit is halved down to the one job that cannot.
        with pytest.raises(pyjobd.PayloadTooLargeError):
            list(ex.map(len, [b"x", big, b"yy"]))
        assert list(ex.map(len, [b"x" * 1000] * 600)) == [1000] * 600
        # Nothing was queued by the refused requests (the map's first half, [b"x"], was).
        jobs = s.request("GET", "/v1/jobs?limit=1000").json()["jobs"]
        assert len(jobs) == 3 + 1 + 600, len(jobs)


# ------------------------------------------------------------ dumps(reducers=)


class Celsius:
    def __init__(self, degrees):
        self.degrees = degrees


def to_fahrenheit(c):
    return (float, (c.degrees * 9 / 5 + 32,))


def test_dumps_and_dump_apply_reducers():
    # They silently ignored reducers=, though the README maps loky's versions to them.
    data = pyjobd.dumps({"t": Celsius(100)}, reducers={Celsius: to_fahrenheit})
    assert pickle.loads(data) == {"t": 212.0}
    buf = io.BytesIO()
    pyjobd.dump([Celsius(0), 1], buf, reducers={Celsius: to_fahrenheit})
    assert pickle.loads(buf.getvalue()) == [32.0, 1]
    # Only for that call: the next dumps pickles the object itself.
    again = pickle.loads(pyjobd.dumps(Celsius(5)))
    assert isinstance(again, Celsius) and again.degrees == 5
    # On top of a pickler's own table, which still applies to other types.

    class Tagged(pyjobd.Pickler):
        dispatch_table = dict(pyjobd.Pickler.dispatch_table)
        dispatch_table[complex] = lambda z: (str, (f"complex {z}",))

    both = pyjobd.dumps([Celsius(10), 1j], reducers={Celsius: to_fahrenheit}, pickler=Tagged)
    assert pickle.loads(both) == [50.0, "complex 1j"]
    with pytest.raises(TypeError):
        pyjobd.dumps(1, reducers=[(Celsius, to_fahrenheit)])


def test_register_and_a_pickler_with_reducers_reach_the_server(ex):
    class Meters:
        def __init__(self, m):
            self.m = m

    pyjobd.register(Meters, lambda x: (int, (x.m * 100,)))
    try:
        assert ex.submit(lambda v: v + 1, Meters(3)).result(timeout=15) == 301
    finally:
        pyjobd.pickling._REDUCERS.pop(Meters, None)


# ------------------------------------------------------------ stdlib exception classes


def test_a_worker_crash_is_a_broken_process_pool_and_only_that_job_fails(ex):
    f = ex.submit(os._exit, 3)
    try:
        f.result(timeout=20)
    except BrokenProcessPool as e:  # a ported `except BrokenProcessPool:` catches it
        exc = e
    else:
        pytest.fail("no exception")
    assert isinstance(exc, pyjobd.WorkerCrashedError)
    assert isinstance(exc, cf.BrokenExecutor)
    assert "exit" in str(exc).lower() and "3" in str(exc)
    # Unlike a local pool, the executor is not broken.
    assert ex.submit(pow, 5, 2).result(timeout=20) == 25
    assert list(ex.map(abs, [-1, -2])) == [1, 2]


def test_a_killed_worker_fails_its_job_only(ex, server):
    # The stdlib's test_killed_child, with a worker killed from outside.
    f = ex.submit(time.sleep, 5)
    pid = None
    deadline = time.monotonic() + 10
    while pid is None and time.monotonic() < deadline:
        pool = server.request("GET", "/v1/pool").json()
        pid = next((w["pid"] for w in pool["workers"] if w.get("job_id") == f.job_id), None)
        time.sleep(0.02)
    assert pid, "the job did not start"
    os.kill(pid, 9)
    with pytest.raises(BrokenProcessPool):
        f.result(timeout=20)
    assert ex.submit(pow, 2, 8).result(timeout=20) == 256


def test_a_job_timeout_is_a_timeout_error(ex):
    f = ex.submit_with(time.sleep, (10,), timeout=0.5)
    with pytest.raises(TimeoutError) as info:  # also concurrent.futures.TimeoutError
        f.result(timeout=20)
    assert isinstance(info.value, pyjobd.JobTimeoutError)
    assert isinstance(info.value, cf.TimeoutError)
    assert ex.submit(pow, 2, 2).result(timeout=20) == 4


def test_a_task_the_worker_cannot_unpickle_is_a_broken_process_pool(ex):
    f = ex.submit(id, ErrorAtUnpickle())
    exc = f.exception(timeout=20)
    assert isinstance(exc, pyjobd.InvalidPayloadError) and isinstance(exc, BrokenProcessPool)
    assert ex.submit(pow, 2, 1).result(timeout=20) == 2


def test_a_result_the_worker_cannot_pickle_raises_the_pickling_error_type(ex):
    # As a local pool does: test_error_during_result_pickle_on_worker and
    # test_exit_during_result_pickle_on_worker of the stdlib suite.
    f = ex.submit(threading.Lock)
    with pytest.raises(TypeError) as info:
        f.result(timeout=20)
    e = info.value
    assert isinstance(e, pyjobd.ResultPicklingError) and isinstance(e, pyjobd.ResultError)
    assert "lock" in str(e), str(e)
    assert e.exc_type == "TypeError" and isinstance(e.__cause__, pyjobd.RemoteTraceback)
    assert pickle.loads(pickle.dumps(e)).args == e.args  # still picklable


def raises_123():
    raise RuntimeError(123) # some comment


def test_remote_traceback_like_the_stdlib(url):
    # The stdlib's test_traceback, with pyjobd.RemoteTraceback for its private class.
    with pyjobd.Executor(url, pickle_by_value=[THIS_MODULE]) as ex:
        with pytest.raises(Exception) as info:
            ex.submit(raises_123).result(timeout=20)
    exc = info.value
    assert type(exc) is RuntimeError and exc.args == (123,)
    assert type(exc.__cause__) is pyjobd.RemoteTraceback
    assert "raise RuntimeError(123) # some comment" in exc.__cause__.tb
    err = io.StringIO()
    old, sys.stderr = sys.stderr, err
    try:
        try:
            raise exc
        except RuntimeError:
            sys.excepthook(*sys.exc_info())
    finally:
        sys.stderr = old
    assert "raise RuntimeError(123) # some comment" in err.getvalue()


# ------------------------------------------------------------ the pickle_by_value hint


def test_the_pickle_by_value_hint_only_where_pickling_by_reference_is_the_cause(make_server, tmp_path):
    # The worker imports its own `hintmod` (from --worker-cwd), which lacks `triple`;
    # this client's `hintmod` has it: the function travels by reference and the
    # worker's unpickling fails with "Can't get attribute 'triple' on <module>".
    name = f"hintmod_{uuid.uuid4().hex[:8]}"
    worker_dir = tmp_path / "worker"
    client_dir = tmp_path / "client"
    worker_dir.mkdir()
    client_dir.mkdir()
    (worker_dir / f"{name}.py").write_text("def init():\n    pass\n")
    (client_dir / f"{name}.py").write_text("def triple(x):\n    return 3 * x\n")
    for p in (tmp_path, worker_dir, worker_dir / f"{name}.py"):
        os.chmod(p, 0o755)
    s = make_server("--workers", "1", "--worker-cwd", str(worker_dir),
                    "--worker-init", f"{name}:init")
    sys.path.insert(0, str(client_dir))
    try:
        mod = __import__(name)
        with pyjobd.Executor(s.base_url, pickle_by_value=[THIS_MODULE]) as ex:
            exc = ex.submit(mod.triple, 2).exception(timeout=20)
            assert isinstance(exc, pyjobd.InvalidPayloadError), repr(exc)
            assert "Can't get attribute" in str(exc), str(exc)
            assert "pickle_by_value" in str(exc), str(exc)
            # A payload that fails for another reason gets no such hint.
            exc = ex.submit(id, ErrorAtUnpickle()).exception(timeout=20)
            assert isinstance(exc, pyjobd.InvalidPayloadError), repr(exc)
            assert "pickle_by_value" not in str(exc) and "Hint" not in str(exc), str(exc)
            exc = ex.submit(id, ExitAtUnpickle()).exception(timeout=20)
            assert isinstance(exc, pyjobd.InvalidPayloadError), repr(exc)
            assert "SystemExit" in str(exc) and "pickle_by_value" not in str(exc), str(exc)
        with pyjobd.Executor(s.base_url, pickle_by_value=[mod]) as ex:
            assert ex.submit(mod.triple, 2).result(timeout=20) == 6
    finally:
        sys.path.remove(str(client_dir))
        sys.modules.pop(name, None)


# ------------------------------------------------------------ one request per result


class Recorder:
    """Counts the HTTP requests of an executor: its own (pooled) ones by path, and the
    waiter thread's wait requests."""

    def __init__(self, ex):
        self.requests = []
        self.waits = 0
        http = ex._http
        request, send = http.request, http.send

        def counting_request(method, path, *a, **k):
            self.requests.append((method, path.split("?")[0].rsplit("/", 1)[0], path))
            return request(method, path, *a, **k)

        def counting_send(conn, method, path, *a, **k):
            self.waits += 1
            return send(conn, method, path, *a, **k)

        http.request, http.send = counting_request, counting_send


def test_submit_result_is_one_submission_and_one_long_poll_from_the_caller(ex):
    rec = Recorder(ex)
    for delay in (0, 0.3, 0.3):
        before = len(rec.requests)
        f = ex.submit(time.sleep, delay)
        assert f.result(timeout=20) is None
        made = rec.requests[before:]
        assert made[0][:2] == ("POST", "/v1"), made
        # The POST's answer may already hold the finished job; else one long-poll.
        assert len(made) <= 2, made
        if len(made) == 2:
            assert made[1][2].startswith(f"/v1/jobs/{f.job_id}?wait="), made
        else:
            assert delay == 0, made
    time.sleep(0.1)
    assert rec.waits == 0, "the waiter thread polled a job its caller was waiting for"
    # A result(timeout) that gives up leaves the job to the waiter thread, which
    # resolves the future without another call.
    f = ex.submit(time.sleep, 0.5)
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=0.1)
    eventually(lambda: f._state == _base.FINISHED, what="the waiter's resolution")
    assert rec.waits >= 1


def test_submit_result_in_a_loop_is_one_request_per_result(ex):
    # Once the caller is seen waiting for each quick job before the next submission,
    # a submission's POST waits briefly (?wait) and brings the result back itself.
    rec = Recorder(ex)
    for i in range(3):
        assert ex.submit(abs, -i).result(timeout=20) == i
    before = len(rec.requests)
    for i in range(30):
        assert ex.submit(abs, -i).result(timeout=20) == i
    made = rec.requests[before:]
    assert all(m == "POST" and "?wait=" in path for m, _, path in made), made
    assert len(made) <= 32, f"{len(made)} requests for 30 results"
    # A submission not waited for at once does not wait in its POST.
    fs = [ex.submit(time.sleep, 0.2) for _ in range(3)]
    t = time.monotonic()
    fs += [ex.submit(time.sleep, 0.2) for _ in range(3)]
    assert time.monotonic() - t < 0.15, "submit() waited for jobs nobody waited for"
    assert [f.result(timeout=20) for f in fs] == [None] * 6
    # Nor one after a job that was not quick.
    assert ex.submit(time.sleep, 0.1).result(timeout=20) is None
    before = len(rec.requests)
    f = ex.submit(abs, -5)
    assert "?wait=" not in rec.requests[before][2], rec.requests[before:]
    assert f.result(timeout=20) == 5


def test_a_future_nobody_waits_for_is_resolved_in_the_background(ex):
    f = ex.submit(pow, 2, 6)
    # No result(), done() or callback: the waiter thread takes it over by itself.
    eventually(lambda: f._state == _base.FINISHED, timeout=5, what="background resolution")
    assert f.result(timeout=0) == 64


def test_many_threads_waiting_for_one_future_share_one_long_poll(ex):
    rec = Recorder(ex)
    f = ex.submit(time.sleep, 0.5)
    results = []
    threads = [threading.Thread(target=lambda: results.append(f.result(timeout=20)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [None] * 8
    gets = [r for r in rec.requests if r[0] == "GET"]
    assert len(gets) + rec.waits <= 2, (gets, rec.waits)


def test_wait_and_as_completed_take_fresh_futures_at_once(ex):
    # wait()/as_completed() hand futures to the waiter thread at once (not after the
    # hand-off delay left to a caller's result()).
    fs = [ex.submit(pow, 2, i) for i in range(30)]
    t = time.monotonic()
    done, not_done = cf.wait(fs, timeout=15)
    assert not not_done
    got = sorted(f.result() for f in cf.as_completed([ex.submit(abs, -i) for i in range(10)],
                                                     timeout=15))
    assert got == list(range(10))
    assert time.monotonic() - t < 10


# ------------------------------------------------------------ lazy map: buffersize


def jobs_on(server):
    return len(server.request("GET", "/v1/jobs?limit=1000").json()["jobs"])


def test_map_with_buffersize_reads_an_endless_generator_lazily(make_server):
    s = make_server("--workers", "2", "--default-timeout", "0")
    with pyjobd.Executor(s.base_url) as ex:
        it = ex.map(lambda i: i * i, itertools.count(), buffersize=4)
        assert jobs_on(s) == 4  # only the buffer was submitted
        seen = 0
        for k in range(1, 41):
            assert next(it) == (k - 1) ** 2
            n = jobs_on(s)
            assert n - k <= 4, f"{n} jobs submitted after {k} results (buffersize=4)"
            seen = n
        assert seen >= 40
        it.close()  # the iterator's end: nothing more is submitted
        time.sleep(0.2)
        assert jobs_on(s) == seen


def test_map_with_buffersize_bounds_jobs_in_flight_on_the_server(make_server):
    s = make_server("--workers", "2", "--default-timeout", "0")
    with pyjobd.Executor(s.base_url) as ex:
        it = ex.map(time.sleep, itertools.repeat(0.05, 30), buffersize=3)
        peak = 0
        for _ in it:
            pool = s.request("GET", "/v1/pool").json()
            in_flight = pool["queued"] + pool["running"]
            peak = max(peak, in_flight)
            assert in_flight <= 3, pool
        assert peak >= 1
        assert jobs_on(s) == 30
        # Chunks count as one job each.
        assert list(ex.map(abs, range(-20, 0), chunksize=5, buffersize=2)) == list(range(20, 0, -1))
        assert jobs_on(s) == 34


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_map_with_buffersize_keeps_memory_flat(make_server):
    # 400 calls whose arguments are 250 kB each: submitted at once (buffersize=None)
    # their requests hold 130 MB here; with buffersize=8 the client holds a few MB.
    s = make_server("--workers", "2", "--default-timeout", "0")
    with pyjobd.Executor(s.base_url) as ex:
        assert ex.submit(abs, -1).result(timeout=20) == 1  # connections made, warm
        peak = [rss_bytes()]
        rss0 = peak[0]
        stop = threading.Event()

        def sample():  # the peak, also while map() itself submits
            while not stop.wait(0.005):
                peak[0] = max(peak[0], rss_bytes())

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            args = (os.urandom(250_000) for _ in range(400))
            results = list(ex.map(len, args, buffersize=8))
        finally:
            stop.set()
            sampler.join()
        assert results == [250_000] * 400
        assert peak[0] - rss0 < 40 << 20, f"the client grew by {(peak[0] - rss0) >> 20} MiB"


def test_map_without_buffersize_still_submits_everything_at_once(make_server):
    s = make_server("--workers", "2", "--default-timeout", "0")
    with pyjobd.Executor(s.base_url) as ex:
        it = ex.map(abs, range(-50, 0))
        assert jobs_on(s) == 50  # before the first next(), as the stdlib does
        assert list(it) == list(range(50, 0, -1))


def test_map_buffersize_checks_its_argument_and_keeps_order_with_timeouts(ex):
    with pytest.raises(ValueError):
        ex.map(abs, [1], buffersize=0)
    with pytest.raises(TypeError):
        ex.map(abs, [1], buffersize=1.5)
    assert list(ex.map(pow, range(10), range(10), buffersize=3)) == [pow(i, i) for i in range(10)]
    it = ex.map(time.sleep, [0, 0, 5], timeout=2, buffersize=2)
    assert [next(it), next(it)] == [None, None]
    with pytest.raises(cf.TimeoutError):
        next(it)
    with pytest.raises(ZeroDivisionError):
        list(ex.map(divmod, [1, 1, 1], [2, 0, 3], buffersize=1))


# ------------------------------------------------------------ map(progress=True)


def test_map_progress_tracks_every_job_of_the_map(ex, monkeypatch):
    progress = pytest.importorskip("pyjobd.progress")
    bars = []

    class RecordingBar(progress.Bar):
        def __init__(self, total=None, desc=None, file=None, **kw):
            self.given_total = total
            self.tracked = []
            self.closed = False
            bars.append(self)
            super().__init__(total=total, desc=desc, file=io.StringIO(), **kw)

        def track(self, future):
            self.tracked.append(future)
            return super().track(future)

        def close(self):
            self.closed = True
            super().close()

    monkeypatch.setattr(progress, "Bar", RecordingBar)
    assert list(ex.map(abs, range(-30, 0), progress=True)) == list(range(30, 0, -1))
    bar = bars[-1]
    assert bar.given_total == 30 and len(bar.tracked) == 30 and bar.closed
    eventually(lambda: bar.done == 30, what="30 jobs counted done")
    assert bar.failed == 0
    # chunks, failures, buffersize over an endless generator (total unknown)
    with pytest.raises(ZeroDivisionError):
        list(ex.map(lambda x: 1 // x, [1, 2, 0, 4], chunksize=2, progress=True))
    bar = bars[-1]
    assert bar.given_total == 2 and len(bar.tracked) == 2 and bar.closed
    it = ex.map(abs, itertools.count(), buffersize=5, progress=True)
    assert [next(it) for _ in range(12)] == list(range(12))
    it.close()
    bar = bars[-1]
    assert bar.given_total is None and 12 <= len(bar.tracked) <= 17 and bar.closed
    # no bar unless asked
    n = len(bars)
    assert list(ex.map(abs, [-1])) == [1]
    assert len(bars) == n


# ------------------------------------------------------------ the HTTP client, against a fake server


class FakeServer:
    """Answers each connection with the next of ``scripts``: a function of (conn) that
    reads what it wants and writes what it wants. Counts connections."""

    def __init__(self, scripts):
        import socket

        self.scripts = list(scripts)
        self.connections = 0
        self.errors = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.scripts:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            script = self.scripts.pop(0)
            try:
                conn.settimeout(10)
                script(conn)
            except Exception as e:  # shown by the test that fails
                self.errors.append(repr(e))
            finally:
                conn.close()

    def close(self):
        self.sock.close()
        self.thread.join(5)


def read_request(conn):
    """The head and body of one request on conn."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None, None
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        body += conn.recv(65536)
    return head, body


def test_http_client_reads_every_answer_framing_and_resends_on_a_closed_keep_alive():
    from pyjobd._http import HTTPClient

    def chunked_then_keep_alive_then_close(conn):
        read_request(conn)
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                     b"Retry-After: 3\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\nTrailer: t\r\n\r\n")
        read_request(conn)
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
        # then the server drops the kept-alive connection, as after its idle timeout

    def http10_close_delimited(conn):
        head, body = read_request(conn)
        assert head.startswith(b"POST /v1/x HTTP/1.1\r\n") and body == b'{"n":1}', (head, body)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, ")
        time.sleep(0.05)
        conn.sendall(b"world")

    def garbage(conn):
        read_request(conn)
        conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

    def early_413_then_close(conn):
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += conn.recv(65536)
        body = b'{"status":413,"title":"Too large","detail":"over the 1 MiB limit"}'
        conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n"
                     b"Content-Type: application/problem+json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        time.sleep(0.2)  # then close with the body unread (the kernel resets the connection)

    fake = FakeServer([chunked_then_keep_alive_then_close, http10_close_delimited, garbage,
                       early_413_then_close])
    try:
        http = HTTPClient(fake.url, "tok")
        r = http.request("GET", "/v1/a")
        assert (r.status, r.body, r.headers.get("retry-after"), r.headers["Retry-After"]) == \
            (200, b'{"a":1}', "3", "3")
        r = http.request("GET", "/v1/b")  # the same connection, kept alive
        assert (r.status, r.json()) == (201, {})
        assert fake.connections == 1
        r = http.request("POST", "/v1/x", {"n": 1})  # the server closed it: sent again anew
        assert (r.status, r.body) == (200, b"hello, world")
        assert fake.connections == 2
        with pytest.raises(pyjobd.ServerConnectionError) as info:
            http.request("GET", "/v1/c")
        assert "not an HTTP answer" in str(info.value) and fake.url in str(info.value)
        r = http.request("POST", "/v1/jobs", b"x" * (5 << 20))
        assert r.status == 413 and r.json()["detail"] == "over the 1 MiB limit"
        err = http.error("POST", "/v1/jobs", r)
        assert isinstance(err, pyjobd.PayloadTooLargeError) and "over the 1 MiB limit" in str(err)
        assert not fake.errors, fake.errors
    finally:
        fake.close()


def test_the_executor_over_https(make_server, tmp_path, monkeypatch):
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("needs openssl")
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1", "-days", "1"],
                   check=True, capture_output=True, timeout=60)
    s = make_server("--tls-cert", cert, "--tls-key", key, "--max-request-bytes", "1M",
                    "--workers", "2", ready=False)  # (the fixture's readiness check is plain HTTP)
    url = f"https://127.0.0.1:{s.port}"
    with pytest.raises(pyjobd.ServerConnectionError) as info:  # not trusted: refused
        pyjobd.Executor(url, python_check=False).info()
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value), str(info.value)
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # read by the default context
    eventually(lambda: pyjobd.Executor(url, python_check=False).info().get("python_version"),
               timeout=15, what="the HTTPS server's workers")
    with pyjobd.Executor(url) as ex:
        assert ex.submit(pow, 2, 9).result(timeout=20) == 512
        assert list(ex.map(abs, range(-300, 0))) == list(range(300, 0, -1))
        assert ex.submit(len, b"x" * 700_000).result(timeout=20) == 700_000
        with pytest.raises(pyjobd.PayloadTooLargeError):
            ex.submit(len, os.urandom(4 << 20))
        assert ex.submit(pow, 3, 4).result(timeout=20) == 81


def test_another_threads_waiting_loop_does_not_make_submit_wait(ex):
    # The guess is per thread: a thread submitting without waiting never waits in its
    # POST, however another thread of the same executor uses it.
    stop = threading.Event()
    posts = []
    request = ex._http.request

    def recording(method, path, *a, **k):
        if method == "POST":
            posts.append((threading.get_ident(), path))
        return request(method, path, *a, **k)

    ex._http.request = recording

    def loop():
        while not stop.is_set():
            ex.submit(abs, -1).result(timeout=20)

    t = threading.Thread(target=loop)
    t.start()
    try:
        time.sleep(0.2)
        fs = [ex.submit(time.sleep, 0.05) for _ in range(10)]
        assert [f.result(timeout=20) for f in fs] == [None] * 10
    finally:
        stop.set()
        t.join(20)
    main = [path for ident, path in posts if ident == threading.get_ident()]
    other = [path for ident, path in posts if ident == t.ident]
    assert len(main) == 10 and not any("?wait" in p for p in main), main
    assert sum("?wait" in p for p in other) >= 0.8 * len(other), other


def test_values_given_to_the_client_cannot_write_headers_or_requests(make_server):
    # http.client refused these; the socket client must too.
    server = make_server("--workers", "1")
    url = server.base_url
    with pytest.raises(ValueError):
        pyjobd.Executor(url, "tok\r\nX-Injected: 1")
    with pyjobd.Executor(url) as ex:
        before = len(server.request("GET", "/v1/jobs?limit=1000").json()["jobs"])
        with pytest.raises(ValueError):
            ex.submit_with(abs, (-1,), idempotency_key="k\r\nX-Injected: 1")
        f = ex.submit(abs, -2)
        assert f.result(timeout=20) == 2
        f.job_id = "0" * 32 + " HTTP/1.1\r\nHost: evil"  # as if a server sent such an id
        with pytest.raises(ValueError):
            ex._http.request("GET", f"/v1/jobs/{f.job_id}")
        after = len(server.request("GET", "/v1/jobs?limit=1000").json()["jobs"])
        assert after == before + 1
