"""pyjobd.AsyncExecutor (client/python/pyjobd/aio.py) against the real server, and
against fake servers that misbehave (garbage, huge or endless headers, stalls, lost
connections, 429s).

The executor runs in the test's own event loop (asyncio.run); no test relies on a
thread of the client. Jobs that block use files in a directory the workers can write
(runs_dir), as test_client.py's blocker does."""

import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import cloudpickle
import pytest

from conftest import blocker, REPO_ROOT, start_server, stop_server

CLIENT_DIR = os.path.join(REPO_ROOT, "client", "python")
if CLIENT_DIR not in sys.path:
    sys.path.insert(0, CLIENT_DIR)

import pyjobd  # noqa: E402
from pyjobd import aio  # noqa: E402


def run(coro, limit=25.0):
    """Runs coro in a fresh event loop; fails (instead of hanging) after limit s."""
    async def bounded():
        return await asyncio.wait_for(coro, limit)
    return asyncio.run(bounded())


async def until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        await asyncio.sleep(0.01)


async def server_status(server, job_id, want, timeout=10.0):
    """Polls GET /v1/jobs/{id} (in a thread: the test's own HTTP client is blocking)
    until its status is `want`; returns the job."""
    deadline = time.monotonic() + timeout
    while True:
        job = await asyncio.to_thread(server.get, job_id)
        if job["status"] == want:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is {job['status']}, not {want}: {job}"
        await asyncio.sleep(0.05)


@pytest.fixture
def url(server):
    return server.base_url


# --------------------------------------------------------------------------- results


def test_results_kwargs_closures_and_big_results(url):
    async def main():
        base = 10

        def add(a, b=0, *, c=0):
            return base + a + b + c

        async with pyjobd.AsyncExecutor(url) as ex:
            fut = ex.submit(add, 1, 2, c=3)
            assert isinstance(fut, asyncio.Future)
            assert await fut == 16
            assert fut.job_id and fut.job["status"] == "succeeded"
            assert await ex.submit(lambda: None) is None
            big = await ex.submit(lambda n: b"x" * n, 3 << 20)
            assert big == b"x" * (3 << 20)
            # a request built with every option of submit_with
            f2 = ex.submit_with(add, (1,), {"c": 1}, timeout=30, metadata={"team": "a"},
                                priority=5, max_retries=1, expires_in=60)
            assert await f2 == 12
            assert f2.job["metadata"] == {"team": "a"} and f2.job["priority"] == 5
            assert f2.job["timeout"] == 30 and f2.job["max_retries"] == 1
            # one event loop: futures of many submissions, gathered
            assert await asyncio.gather(*(ex.submit(pow, 2, i) for i in range(50))) == \
                [2 ** i for i in range(50)]
    run(main())


def test_remote_exceptions_keep_their_type(url):
    async def main():
        class Custom(Exception):
            pass

        def raise_custom():
            raise Custom("boom", 42)

        def crash():
            import os
            os._exit(3)

        def stop():
            raise StopIteration("no more")

        class Exits:
            def __reduce__(self):
                import sys
                return (sys.exit, (1,))

        async with pyjobd.AsyncExecutor(url) as ex:
            with pytest.raises(ZeroDivisionError) as e:
                await ex.submit(lambda: 1 / 0)
            assert isinstance(e.value.__cause__, pyjobd.RemoteTraceback)
            assert "ZeroDivisionError" in str(e.value.__cause__)
            with pytest.raises(Custom) as e:
                await ex.submit(raise_custom)
            assert e.value.args == ("boom", 42)
            with pytest.raises(pyjobd.JobTimeoutError) as e:
                await ex.submit_with(__import__("time").sleep, (10,), timeout=0.5)
            assert isinstance(e.value, TimeoutError)
            with pytest.raises(pyjobd.WorkerCrashedError) as e:
                await ex.submit(crash)
            assert "exited with code 3" in str(e.value)
            # asyncio futures cannot hold StopIteration: it comes as a RuntimeError's cause
            with pytest.raises(RuntimeError) as e:
                await ex.submit(stop)
            assert isinstance(e.value.__cause__, StopIteration)
            # a result whose unpickling raises SystemExit fails its future only
            with pytest.raises(pyjobd.ResultError) as e:
                await ex.submit(Exits)
            assert isinstance(e.value.__cause__, SystemExit)
            assert await ex.submit(pow, 2, 3) == 8
            # the server refuses a bad option: that future fails with the problem's detail
            with pytest.raises(pyjobd.ServerError) as e:
                await ex.submit_with(abs, (1,), priority=1000)
            assert e.value.status == 400 and "priority" in str(e.value)
    run(main())


def test_a_bad_job_in_a_batch_fails_alone(url):
    async def main():
        async with pyjobd.AsyncExecutor(url) as ex:
            fs = [ex.submit(abs, -i) for i in range(20)]
            bad = ex.submit_with(abs, (1,), priority=1000)  # the server answers 400
            fs += [ex.submit(abs, -i) for i in range(20, 40)]
            assert await asyncio.gather(*fs) == list(range(40))
            with pytest.raises(pyjobd.ServerError) as e:
                await bad
            assert e.value.status == 400
    run(main())


def test_idempotency_key_and_delay(url):
    async def main():
        async with pyjobd.AsyncExecutor(url) as ex:
            key = f"aio-key-{time.time_ns()}"
            a = ex.submit_with(abs, (-5,), idempotency_key=key)
            assert await a == 5
            b = ex.submit_with(abs, (-5,), idempotency_key=key)
            assert await b == 5 and b.job_id == a.job_id  # the same job, not a second
            t0 = time.monotonic()
            late = ex.submit_with(abs, (-1,), delay=0.6)
            await until(lambda: late.job is not None, what="submission of the delayed job")
            assert late.job["status"] == "scheduled"
            assert await late == 1 and time.monotonic() - t0 >= 0.55
            with pytest.raises(ValueError):
                ex.submit_with(abs, (1,), idempotency_key="has space")
            with pytest.raises(ValueError):
                ex.submit_with(abs, (1,), idempotency_key="x\r\nInjected: 1")
    run(main())


def test_unpicklable_argument_raises_in_submit(url):
    async def main():
        async with pyjobd.AsyncExecutor(url) as ex:
            lock = threading.Lock()
            with pytest.raises(TypeError):
                ex.submit(id, lock)
    run(main())


# --------------------------------------------------------------------------- map


def test_map_order_async_iterables_and_errors(url):
    async def main():
        def slow_square(x):
            import random
            import time
            time.sleep(random.random() * 0.02)
            return x * x

        async def agen(n):
            for i in range(n):
                await asyncio.sleep(0)
                yield i

        async with pyjobd.AsyncExecutor(url) as ex:
            assert [r async for r in ex.map(slow_square, range(60), buffersize=16)] == \
                [x * x for x in range(60)]
            assert [r async for r in ex.map(pow, agen(10), range(3, 100))] == \
                [i ** (i + 3) for i in range(10)]

            def fail_at_5(x):
                if x == 5:
                    raise KeyError(x)
                return x

            got = []
            with pytest.raises(KeyError):
                async for r in ex.map(fail_at_5, range(10), buffersize=4):
                    got.append(r)
            assert got == [0, 1, 2, 3, 4]

            def bad_input():
                yield 1
                yield 2
                raise OSError("input broke")

            got = []
            with pytest.raises(OSError, match="input broke"):
                async for r in ex.map(abs, bad_input()):
                    got.append(r)
            assert got == [1, 2]  # the results before the input's error come first
    run(main())


def test_map_endless_iterable_is_bounded(url):
    async def main():
        pulled = 0

        def endless():
            nonlocal pulled
            while True:
                pulled += 1
                yield pulled

        async with pyjobd.AsyncExecutor(url) as ex:
            got = []
            async with contextlib.aclosing(ex.map(abs, endless(), buffersize=8)) as results:
                async for r in results:
                    got.append(r)
                    if len(got) == 50:
                        break
            assert got == list(range(1, 51))
            # never more than buffersize ahead of what was yielded
            assert pulled <= 50 + 8 + 1, pulled
    run(main())


def test_map_streams_results_of_a_slow_input(url):
    """A result is yielded as soon as it is ready, not once buffersize items came."""
    async def main():
        async def trickle():
            for i in range(3):
                yield i
                await asyncio.sleep(10 if i == 2 else 0)

        async with pyjobd.AsyncExecutor(url) as ex:
            it = ex.map(abs, trickle(), buffersize=100)
            t0 = time.monotonic()
            assert [await it.__anext__() for _ in range(3)] == [0, 1, 2]
            assert time.monotonic() - t0 < 5
            await it.aclose()
    run(main())


# --------------------------------------------------------------------------- as_completed


def test_as_completed_async_and_sync(url):
    async def main():
        async with pyjobd.AsyncExecutor(url) as ex:
            import time as t
            fs = [ex.submit(t.sleep, d) for d in (0.6, 0.0)]  # the server has 2 workers
            order = [f async for f in pyjobd.as_completed(fs)]
            assert order == [fs[1], fs[0]]
            # coroutines too; a plain `for` gives awaitables as asyncio.as_completed does
            async def job(i):
                return await ex.submit(abs, -i)

            coros = [job(i) for i in range(5)]
            assert sorted([await c for c in pyjobd.as_completed(coros)]) == [0, 1, 2, 3, 4]
            tasks = [f async for f in pyjobd.as_completed([job(i) for i in range(3)])]
            assert sorted(t.result() for t in tasks) == [0, 1, 2]
            slow = ex.submit(t.sleep, 3)
            t0 = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                async for _ in pyjobd.as_completed([slow], timeout=0.3):
                    pass
            assert time.monotonic() - t0 < 2
            slow.cancel()
            with pytest.raises(TypeError):
                pyjobd.as_completed([slow, __import__("concurrent.futures").futures.Future()])
            assert [f async for f in pyjobd.as_completed([])] == []
    run(main())
    # the same name with concurrent.futures futures is the stdlib's as_completed
    with pyjobd.Executor(url) as ex:
        fs = [ex.submit(abs, -i) for i in range(5)]
        done = list(pyjobd.as_completed(fs, timeout=20))
        assert sorted(f.result() for f in done) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- cancelling


def test_cancelling_the_awaiting_task_cancels_queued_and_running_jobs(server, runs_dir):
    url = server.base_url

    async def main():
        started = [os.path.join(runs_dir, f"started{i}") for i in range(2)]
        release = os.path.join(runs_dir, "release")
        async with pyjobd.AsyncExecutor(url, cancel_grace=2) as ex:
            try:
                blockers = [ex.submit(blocker(s, release)) for s in started]
                await until(lambda: all(map(os.path.exists, started)), what="both workers busy")
                queued = ex.submit(abs, -1)
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(queued, 0.5)  # cancels the awaited future
                assert queued.cancelled()
                await until(lambda: queued.job_id, what="the queued job's id")
                job = await server_status(server, queued.job_id, "cancelled")
                assert job["started_at"] is None  # it never ran
                # a task awaiting a running job, cancelled: the job is interrupted
                async def awaiting(f):
                    return await f

                task = asyncio.ensure_future(awaiting(blockers[0]))
                await asyncio.sleep(0.1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                job = await server_status(server, blockers[0].job_id, "cancelled")
                assert job["started_at"] is not None
                # asyncio.shield waits without cancelling
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(blockers[1]), 0.2)
                assert (await asyncio.to_thread(server.get, blockers[1].job_id))["status"] == "running"
            finally:
                open(release, "w").close()
            assert await blockers[1] == "released"
    run(main())


def test_cancel_before_the_submission_is_answered(server, runs_dir):
    """Cancelled while its POST is under way (the job id not known yet): the job is
    cancelled on the server once the answer names it."""
    url = server.base_url

    async def main():
        started = os.path.join(runs_dir, "started")
        release = os.path.join(runs_dir, "release")
        async with pyjobd.AsyncExecutor(url, cancel_grace=2) as ex:
            try:
                fut = ex.submit(blocker(started, release))  # its POST waits for the job
                await until(lambda: os.path.exists(started), what="the job's start")
                assert fut.job_id is None  # still in its submission's ?wait
                fut.cancel()
                await until(lambda: fut.job_id is not None, what="the job's id")
                await server_status(server, fut.job_id, "cancelled")
                # never sent at all: no job is made
                never = ex.submit(abs, 1)
                never.cancel()
                await asyncio.sleep(0.1)
                assert never.job_id is None
            finally:
                open(release, "w").close()
    run(main())


def test_shutdown_cancel_futures(server, runs_dir):
    url = server.base_url

    async def main():
        started = [os.path.join(runs_dir, f"s{i}") for i in range(2)]
        release = os.path.join(runs_dir, "release")
        ex = pyjobd.AsyncExecutor(url, cancel_grace=None)  # running jobs are left alone
        try:
            running = [ex.submit(blocker(s, release)) for s in started]
            await until(lambda: all(map(os.path.exists, started)), what="both workers busy")
            queued = [ex.submit(abs, -i) for i in range(5)]
            await until(lambda: all(f.job_id for f in queued), what="the queued jobs' ids")
            await ex.shutdown(wait=True, cancel_futures=True)
            assert all(f.cancelled() for f in queued + running)
            for f in queued:  # shutdown sent the cancels before it returned
                assert (await asyncio.to_thread(server.get, f.job_id))["status"] == "cancelled"
            for f in running:
                assert (await asyncio.to_thread(server.get, f.job_id))["status"] == "running"
            with pytest.raises(RuntimeError):
                ex.submit(abs, 1)
        finally:
            open(release, "w").close()
        for f in running:  # they end before runs_dir (and `release`) is removed
            await server_status(server, f.job_id, "succeeded")
    run(main())


# --------------------------------------------------------------------------- concurrency


def thread_count():
    return len(os.listdir("/proc/self/task"))


def test_500_concurrent_awaits_in_one_thread(url):
    async def main():
        before = thread_count()
        seen = []
        async with pyjobd.AsyncExecutor(url) as ex:
            import time as t

            async def one(i):
                await ex.submit(t.sleep, 0.002)
                seen.append(thread_count())
                return await ex.submit(abs, -i)

            t0 = time.monotonic()
            results = await asyncio.gather(*(one(i) for i in range(500)))
            elapsed = time.monotonic() - t0
        assert results == list(range(500))
        assert max(seen) <= before, f"threads: {before} before, up to {max(seen)} during"
        print(f"\n500 concurrent submit+await pairs: {elapsed:.2f} s, threads {before}")
    run(main())


# --------------------------------------------------------------------------- lost connections


class Proxy:
    """A TCP relay to the server (in threads, test-side) that can cut every connection."""

    def __init__(self, port):
        self.target = port
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, s]
                self.accepted += 1
            for a, b in ((c, s), (s, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the relay threads; the peers see EOF
                s.close()
            except OSError:
                pass

    def close(self):
        self.lsock.close()
        self.cut()


def test_connection_drop_mid_wait(server):
    proxy = Proxy(server.port)
    try:
        async def main():
            async with pyjobd.AsyncExecutor(f"http://127.0.0.1:{proxy.port}") as ex:
                import time as t
                fs = [ex.submit(lambda i: (t.sleep(1.0), i)[1], i) for i in range(6)]
                await until(lambda: all(f.job_id for f in fs), what="submissions")
                await asyncio.sleep(0.3)
                before = proxy.accepted
                proxy.cut()  # every long-poll loses its connection mid-wait
                assert await asyncio.gather(*fs) == list(range(6))
                assert proxy.accepted > before  # it reconnected
        run(main())
    finally:
        proxy.close()


def test_server_restart_mid_wait(tmp_path):
    store = f"sqlite:{tmp_path}/jobs.sqlite"
    args = ("--workers", "1", "--store", store, "--shutdown-grace", "0")
    servers = [start_server("aio-restart-1", *args)]
    port = servers[0].port

    async def main():
        servers[0].wait_ready()
        async with pyjobd.AsyncExecutor(f"http://127.0.0.1:{port}") as ex:
            import time as t
            running = ex.submit_with(t.sleep, (5,), priority=10)
            queued = [ex.submit(abs, -i) for i in range(5)]
            await until(lambda: running.job_id and all(f.job_id for f in queued), what="ids")
            await until(lambda: servers[0].get(running.job_id)["status"] == "running",
                        what="the job's start")
            stopped = servers.pop()
            problems = await asyncio.to_thread(stopped.stop)
            assert not problems, problems
            await asyncio.sleep(0.5)  # the client meets refused connections meanwhile
            servers.append(await asyncio.to_thread(start_server, "aio-restart-2", *args,
                                                   "--port", str(port)))
            assert servers[0].port == port
            with pytest.raises(pyjobd.JobInterruptedError):
                await running
            assert await asyncio.gather(*queued) == list(range(5))
    try:
        run(main())
    finally:
        for s in servers:
            stop_server(s)


def test_unreachable_server_is_a_clear_error_soon():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there

    async def main():
        ex = pyjobd.AsyncExecutor(f"http://127.0.0.1:{port}")
        t0 = time.monotonic()
        with pytest.raises(pyjobd.ServerConnectionError) as e:
            await ex.submit(abs, 1)
        assert "ConnectionRefusedError" in str(e.value) and str(port) in str(e.value)
        assert time.monotonic() - t0 < 3
        await ex.shutdown()
    run(main())


# --------------------------------------------------------------------------- fake servers


def _job(job_id="f" * 32, status="succeeded", result=None):
    job = {"id": job_id, "status": status, "created_at": "2026-01-01T00:00:00Z",
           "started_at": None, "finished_at": None, "timeout": None, "attempts": 1,
           "worker_pid": None, "error": None}
    if status == "succeeded":
        job["result"] = base64.b64encode(cloudpickle.dumps(result)).decode()
    return job


class FakeServer:
    """Answers each request with what `handler(request, conn)` does; records every
    request (method, path, headers, body)."""

    def __init__(self, handler):
        self.handler = handler
        self.requests = []
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = c.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", 0))
                while len(buf) < n:
                    data = c.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:n], buf[n:]
                req = {"method": method, "path": path, "headers": headers, "body": body}
                self.requests.append(req)
                if self.handler(req, c) == "close":
                    c.close()
                    return
        except OSError:
            return

    def close(self):
        self.lsock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def answer(c, status, body=b"", headers=(), chunked=False):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
    for k, v in headers:
        head += f"{k}: {v}\r\n"
    if chunked:
        c.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
        for i in range(0, len(body), 7):
            part = body[i:i + 7]
            c.sendall(f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n")
        c.sendall(b"0\r\nTrailer: x\r\n\r\n")
    else:
        c.sendall((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)


@pytest.fixture
def short_polls(monkeypatch):
    """Long-polls of 0.5 s: a stalled long-poll is then found out within 1.5 s."""
    monkeypatch.setattr(aio, "POLL_SECONDS", 0.5)


@contextlib.contextmanager
def fake(handler):
    s = FakeServer(handler)
    try:
        yield s
    finally:
        s.close()


async def submit_to(url, **options):
    options.setdefault("python_check", False)
    options.setdefault("http_timeout", 1.0)
    options.setdefault("reconnect_timeout", 1.0)
    ex = pyjobd.AsyncExecutor(url, **options)
    try:
        return await ex.submit(abs, -7)
    finally:
        await ex.shutdown(wait=False)


BAD_ANSWERS = {
    "garbage": (b"hello, this is not HTTP\r\n\r\n", "not an HTTP status line"),
    "huge header": (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n",
                    "headers longer than 65536 bytes"),
    "many headers": (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(500))
                     + b"\r\n", "more than 100 headers"),
    "bad header": (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
    "bad length": (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "invalid Content-Length"),
    "bad chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                  "invalid chunk size"),
    "gzip": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
    "two lengths": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
                    "two different Content-Length"),
    "huge body": (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "beyond this client"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ANSWERS))
def test_malformed_answers_are_clear_errors(kind, short_polls):
    raw, message = BAD_ANSWERS[kind]

    def handler(req, c):
        c.sendall(raw)
        return "close"

    with fake(handler) as s:
        t0 = time.monotonic()
        with pytest.raises(pyjobd.ServerError) as e:
            run(submit_to(s.url), limit=10)
        assert time.monotonic() - t0 < 5
        assert message in str(e.value) and s.url in str(e.value), str(e.value)
        assert "not valid HTTP" in str(e.value)


@pytest.mark.parametrize("kind", ["stall", "drip", "body stall"])
def test_stalling_server_times_out(kind, short_polls):
    def handler(req, c):
        if kind == "drip":  # one byte of headers every 0.2 s, forever
            try:
                c.sendall(b"HTTP/1.1 200 OK\r\n")
                while True:
                    c.sendall(b"X")
                    time.sleep(0.2)
            except OSError:
                return "close"
        if kind == "body stall":
            c.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 1000\r\n\r\n{")
        time.sleep(30)
        return "close"

    with fake(handler) as s:
        t0 = time.monotonic()
        with pytest.raises(pyjobd.ServerConnectionError) as e:
            run(submit_to(s.url), limit=20)
        elapsed = time.monotonic() - t0
        # http_timeout=1; a keyed submission is resent for reconnect_timeout=1 s
        assert elapsed < 8, elapsed
        assert "no answer to POST /v1/jobs" in str(e.value) and s.url in str(e.value)
        assert len(s.requests) >= 2  # it was resent ...
        keys = {r["headers"]["idempotency-key"] for r in s.requests}
        assert len(keys) == 1  # ... with the same Idempotency-Key


def test_chunked_content_length_and_close_delimited_answers(short_polls):
    for style in ("chunked", "length", "close"):
        def handler(req, c, style=style):
            body = json.dumps(_job(result=("ok", style))).encode()
            if style == "close":
                c.sendall(b"HTTP/1.1 201 Created\r\nConnection: close\r\n\r\n" + body)
                return "close"
            answer(c, 201, body, chunked=style == "chunked")

        with fake(handler) as s:
            assert run(submit_to(s.url), limit=10) == ("ok", style)


def test_lost_answer_is_resent_with_the_same_key_and_429_backs_off(short_polls):
    state = {"n": 0}

    def handler(req, c):
        if req["path"].startswith("/v1/jobs") and req["method"] == "POST":
            state["n"] += 1
            if state["n"] == 1:
                return "close"  # read the request, never answer
            if state["n"] in (2, 3):
                answer(c, 429, {"title": "Too Many Requests", "detail": "queue full"},
                       headers=[("Retry-After", "0.2")])
                return None
            answer(c, 201, _job(result=7))
            return None
        answer(c, 404, {"title": "Not Found", "detail": "no"})

    with fake(handler) as s:
        t0 = time.monotonic()
        assert run(submit_to(s.url), limit=10) == 7
        posts = [r for r in s.requests if r["method"] == "POST"]
        assert len(posts) == 4
        keys = [r["headers"].get("idempotency-key") for r in posts]
        assert keys[0] and len(set(keys)) == 1, keys
        assert len({r["body"] for r in posts}) == 1
        assert time.monotonic() - t0 >= 0.25  # two back-offs (50 ms, 100 ms .. Retry-After)


def test_long_poll_answers_garbage_then_gives_up(short_polls):
    def handler(req, c):
        if req["path"] == "/v1/jobs/wait":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n[1]")
            return None
        answer(c, 201, _job(status="queued"))

    with fake(handler) as s:
        t0 = time.monotonic()
        with pytest.raises(pyjobd.ServerError) as e:
            run(submit_to(s.url), limit=15)
        assert "/v1/jobs/wait" in str(e.value)
        assert time.monotonic() - t0 < 8


def test_problem_json_error_and_python_mismatch(short_polls):
    def handler(req, c):
        if req["path"] == "/v1/info":
            answer(c, 200, {"python_version": "2.7.18"})
        else:
            answer(c, 403, {"type": "about:blank", "title": "Forbidden",
                            "detail": "this token may not submit"},
                   headers=[("Content-Type", "application/problem+json")])

    with fake(handler) as s:
        with pytest.raises(pyjobd.PythonVersionMismatchError) as e:
            run(submit_to(s.url, python_check=True), limit=10)
        assert "2.7.18" in str(e.value)
        with pytest.raises(pyjobd.ServerError) as e:
            run(submit_to(s.url), limit=10)
        assert e.value.status == 403 and "Forbidden: this token may not submit" in str(e.value)
        assert e.value.problem["detail"] == "this token may not submit"


def test_payload_too_large_is_the_servers_413(make_server):
    s = make_server("--workers", "1", "--max-request-bytes", "1M", name="aio-413")

    async def main():
        async with pyjobd.AsyncExecutor(s.base_url) as ex:
            with pytest.raises(pyjobd.PayloadTooLargeError) as e:
                await ex.submit(len, b"x" * (8 << 20))
            assert e.value.status == 413, e.value
            assert "max-request-bytes" in str(e.value) or "large" in str(e.value).lower(), e.value
            assert await ex.submit(len, b"x" * 1000) == 1000
    run(main())


def test_token_is_sent(make_server, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("alice:secret-token-aio\n")
    os.chmod(tokens, 0o600)
    s = make_server("--workers", "1", "--token-file", str(tokens), name="aio-token", ready=False)

    async def main():
        async with pyjobd.AsyncExecutor(s.base_url, token="secret-token-aio") as ex:
            assert await ex.submit(abs, -3) == 3
        with pytest.raises(pyjobd.ServerError) as e:
            async with pyjobd.AsyncExecutor(s.base_url, token="wrong") as ex:
                await ex.submit(abs, -3)
        assert e.value.status == 401
    run(main())
    with pytest.raises(ValueError) as e:  # no header injection, and the token is not echoed
        pyjobd.AsyncExecutor(s.base_url, token="secret\r\nX-Evil: 1")
    assert "secret" not in str(e.value)


def test_cancelling_the_task_of_an_async_with_block_cancels_its_jobs(server, runs_dir):
    url = server.base_url

    async def main():
        started = [os.path.join(runs_dir, f"s{i}") for i in range(2)]
        release = os.path.join(runs_dir, "release")
        made = []

        async def block():
            async with pyjobd.AsyncExecutor(url, cancel_grace=1) as ex:
                made.extend(ex.submit(blocker(s, release)) for s in started)
                made.extend(ex.submit(abs, -i) for i in range(3))
                await made[0]

        task = asyncio.ensure_future(block())
        try:
            await until(lambda: all(map(os.path.exists, started)), what="both workers busy")
            await until(lambda: all(f.job_id for f in made), what="the jobs' ids")
            t0 = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - t0 < 5  # it did not wait for the 20 s blockers
            for f in made:
                assert f.cancelled()
                await server_status(server, f.job_id, "cancelled")
        finally:
            open(release, "w").close()
    run(main())


def test_https_with_a_context(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("needs openssl")
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1", "-days", "1"], check=True,
                   capture_output=True, timeout=60)
    s = start_server("aio-tls", "--workers", "1", "--tls-cert", cert, "--tls-key", key)
    try:
        url = f"https://127.0.0.1:{s.port}"

        async def main():
            async with pyjobd.AsyncExecutor(url, ssl=ssl.create_default_context(cafile=cert)) as ex:
                assert await ex.submit(abs, -4) == 4
                assert [r async for r in ex.map(abs, [-1, -2, -3])] == [1, 2, 3]
            with pytest.raises(pyjobd.ServerConnectionError) as e:  # not trusted by default
                async with pyjobd.AsyncExecutor(url) as ex:
                    await ex.submit(abs, -4)
            assert "CERTIFICATE_VERIFY_FAILED" in str(e.value) or "certificate" in str(e.value)
        run(main())
    finally:
        stop_server(s)
