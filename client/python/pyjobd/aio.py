"""pyjobd.AsyncExecutor: the asyncio front end of a pyjobd server.

    import asyncio, pyjobd

    async def main():
        async with pyjobd.AsyncExecutor("http://127.0.0.1:8080") as ex:
            print(await ex.submit(pow, 2, 10))                  # 1024
            async for r in ex.map(abs, range(-3, 0)):
                print(r)                                        # 3, 2, 1

    asyncio.run(main())

Everything runs in the event loop's thread: no thread per job, no background thread
at all. HTTP/1.1 is spoken with the stdlib's asyncio streams over a small pool of
keep-alive connections; results come back through long-polls (``POST /v1/jobs/wait``
over every pending id, or the submission's own ``POST /v1/jobs?wait=``)."""

import asyncio
import collections
import concurrent.futures
import inspect
import itertools
import json
import logging
import platform
import re
import ssl
import time
import uuid

from ._http import USER_AGENT, parse_url, problem_text
from ._jobs import TERMINAL, job_outcome
from ._requests import RequestBuilder, job_options
from .errors import (PayloadTooLargeError, PythonVersionMismatchError, ResultError,
                     ServerConnectionError, ServerError, UnknownJobError)

log = logging.getLogger("pyjobd")

# Long-poll length asked of the server (it caps waits at its max_wait_seconds, 60).
POLL_SECONDS = 30.0
# Largest number of ids in one POST /v1/jobs/wait (the oldest first).
MAX_WAIT_IDS = 10000
# Long-polls over disjoint sets of ids at once; one more is folded into a single poll.
MAX_POLLS = 4
# Submissions that wait for their own job (?wait) at once; the others use the polls.
MAX_WAITED_SUBMITS = 2
# Jobs per POST /v1/jobs/batch, and a soft cap on one batch body.
BATCH_JOBS = 1000
BATCH_BYTES = 16 << 20
# Submission requests (single or batch) in flight at once.
MAX_SENDS = 4
# Requests other than long-polls in flight at once (each on its own connection).
POOL_SIZE = 8
# Default number of jobs map() keeps submitted ahead of the one it yields next.
MAP_BUFFERSIZE = 256
# Answers from the server: bounds of what this client reads.
MAX_HEAD_BYTES = 64 << 10
MAX_HEADERS = 100
MAX_BODY_BYTES = 1 << 30
# After the first http_timeout seconds, a body must keep coming at this rate on average.
MIN_BODY_RATE = 64 << 10

_STATUS_RE = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [^\r\n]*)?\r?\n\Z")
_TOKEN_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_KEY_RE = re.compile(r"[\x21-\x7e]{1,200}\Z")

if hasattr(asyncio, "timeout"):  # Python 3.11+
    async def _within(seconds, aw):
        async with asyncio.timeout(seconds):
            return await aw
else:  # pragma: no cover - older Pythons
    async def _within(seconds, aw):
        return await asyncio.wait_for(aw, seconds)


def _uncancel():
    """Forget a cancellation this task handled itself (Python 3.11+ counts them)."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()


class _Stale(Exception):
    """A kept-alive connection closed before the server read the request: resend."""


class _BadAnswer(Exception):
    """The server's answer is not HTTP as this client reads it."""


class _Response:
    __slots__ = ("status", "headers", "body", "keep_alive")

    def __init__(self, status, headers, body, keep_alive):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.body = body
        self.keep_alive = keep_alive

    def json(self):
        return json.loads(self.body) if self.body else None


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    def close(self):
        try:
            self.writer.transport.abort()
        except Exception:  # an already closed transport
            pass


class _AsyncHTTP:
    """HTTP/1.1 over asyncio streams: keep-alive connections, Content-Length and
    chunked bodies, bounded heads and bodies, and a deadline for every answer."""

    def __init__(self, url, token=None, timeout=60.0, ssl_context=None):
        u = parse_url(url)
        self.url, self._host, self._port, self._prefix = u.url, u.host, u.port, u.prefix
        self._ssl = None
        if u.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        common = [("Host", u.host_header), ("User-Agent", USER_AGENT), ("Accept", "application/json")]
        if token:
            common.append(("Authorization", f"Bearer {token}"))
        for name, value in common:
            _check_header(name, value)
        self._common = "".join(f"{n}: {v}\r\n" for n, v in common)
        if not timeout > 0:
            raise ValueError(f"http_timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self._idle = []
        self._slots = None  # asyncio.Semaphore(POOL_SIZE), made in the loop
        self._closed = False

    # -------------------------------------------------------------- connections

    async def _connect(self):
        try:
            reader, writer = await _within(self.timeout, asyncio.open_connection(
                self._host, self._port, ssl=self._ssl, limit=MAX_HEAD_BYTES))
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:
            err = self.connection_error(e)
            err.at_connect = True  # nothing was sent
            raise err from e
        return _Conn(reader, writer)

    def _release(self, conn):
        if self._closed or len(self._idle) >= POOL_SIZE + MAX_POLLS:
            conn.close()
        else:
            self._idle.append(conn)

    def close(self):
        self._closed = True
        idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    def connection_error(self, exc, what=None, wait=0.0):
        if isinstance(exc, asyncio.TimeoutError):
            text = f"no answer{' to ' + what if what else ''} within {self.timeout + wait:g} s"
        else:
            text = f"{exc.__class__.__name__}: {exc}"
        hint = (" (is the server running? start it with `make run` or `pyjobd --port N`)"
                if isinstance(exc, ConnectionRefusedError) else "")
        return ServerConnectionError(f"cannot reach the pyjobd server at {self.url}: {text}{hint}",
                                     url=self.url)

    # -------------------------------------------------------------- requests

    async def request(self, method, path, body=None, headers=None, *, wait=0.0, pooled=True):
        """One request; returns the answer whatever its status. ``wait``: seconds the
        server may hold the answer (a long-poll) on top of the usual timeout.
        ``pooled``: count it among the POOL_SIZE ordinary requests (long-polls do not,
        they are bounded by their callers). Raises ServerConnectionError when the
        server cannot be reached or does not answer in time, ServerError when what
        it sends is not HTTP."""
        if self._closed:
            raise RuntimeError("this AsyncExecutor is closed")
        if pooled:
            if self._slots is None:
                self._slots = asyncio.Semaphore(POOL_SIZE)
            async with self._slots:
                return await self._request(method, path, body, headers, wait)
        return await self._request(method, path, body, headers, wait)

    async def _request(self, method, path, body, headers, wait):
        data = b""
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._common}"
        if body is not None:
            data = body if isinstance(body, (bytes, bytearray)) else \
                json.dumps(body, separators=(",", ":")).encode()
            head += "Content-Type: application/json\r\n"
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(data)}\r\n"
        for name, value in (headers or {}).items():
            _check_header(name, value)
            head += f"{name}: {value}\r\n"
        payload = (head + "\r\n").encode("latin-1") + data
        what = f"{method} {path.split('?')[0]}"
        for _ in range(3):
            conn = None
            while self._idle and conn is None:
                conn = self._idle.pop()
                if conn.reader.at_eof() or conn.writer.transport.is_closing():
                    conn.close()  # closed by the server while idle
                    conn = None
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            try:
                resp = await self._exchange(conn, payload, method, wait)
            except _Stale as e:
                conn.close()
                if reused:
                    continue  # the server closed an idle connection: resend
                raise self.connection_error(e.__cause__ or e) from e
            except _BadAnswer as e:
                conn.close()
                raise ServerError(f"{what}: the server at {self.url} sent an answer that is not "
                                  f"valid HTTP: {e}", url=self.url) from None
            except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                    ssl.SSLError) as e:
                conn.close()
                raise self.connection_error(e, what, wait) from e
            except BaseException:  # cancelled mid-exchange: the connection is unusable
                conn.close()
                raise
            if resp.keep_alive:
                self._release(conn)
            else:
                conn.close()
            return resp
        raise self.connection_error(ConnectionError("connection closed repeatedly"))

    async def _exchange(self, conn, payload, method, wait):
        reader, writer = conn.reader, conn.writer
        writer.write(payload)
        if writer.transport.get_write_buffer_size() == 0:  # all of it is in the kernel
            return await self._read_answer(reader, method, wait)
        # A big body: the server may answer before it has read it all (413) and then
        # read no more, so its answer is awaited while the body is still going out.
        loop = asyncio.get_running_loop()
        drain = loop.create_task(_within(self.timeout + len(payload) / MIN_BODY_RATE,
                                         writer.drain()))
        answer = loop.create_task(self._read_answer(reader, method, wait))
        try:
            done, _ = await asyncio.wait((drain, answer), return_when=asyncio.FIRST_COMPLETED)
            if answer in done:
                resp = answer.result()
                if not drain.done() or drain.cancelled() or drain.exception() is not None:
                    resp.keep_alive = False  # the rest of the body was not sent
                return resp
            exc = drain.exception()
            if exc is not None and not isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                raise exc
            # sent, or the server closed while it was sent (with an answer, perhaps)
            return await answer
        finally:
            for t in (drain, answer):
                if not t.done():
                    t.cancel()

    async def _read_answer(self, reader, method, wait, first_read=True):
        loop = asyncio.get_running_loop()
        start = loop.time()
        status, version, headers = await _within(self.timeout + wait,
                                                 self._read_head(reader, first_read))
        conn_tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep_alive = ("close" not in conn_tokens) if version == 1 else ("keep-alive" in conn_tokens)
        if method == "HEAD" or status in (204, 304):
            return _Response(status, headers, b"", keep_alive)
        te = headers.get("transfer-encoding")
        if te is not None:
            codings = [c.strip().lower() for c in te.split(",") if c.strip()]
            if codings != ["chunked"]:
                raise _BadAnswer(f"unsupported Transfer-Encoding {te!r}")
            body = await self._read_chunked(reader, start + wait)
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit() or len(length) > 15:
                raise _BadAnswer(f"invalid Content-Length {length!r}")
            n = int(length)
            if n > MAX_BODY_BYTES:
                raise _BadAnswer(f"a body of {n} bytes is beyond this client's limit "
                                 f"({MAX_BODY_BYTES} bytes)")
            deadline = start + wait + self.timeout + n / MIN_BODY_RATE
            body = await _within(max(0.0, deadline - loop.time()), reader.readexactly(n))
        else:  # the body ends with the connection
            keep_alive = False
            body = await self._read_to_eof(reader, start + wait)
        return _Response(status, headers, body, keep_alive)

    async def _read_head(self, reader, first_read):
        for _ in range(10):  # interim 1xx answers before the real one
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as e:
                if first_read and not e.partial:
                    raise _Stale(ConnectionError("the server closed the connection")) from None
                raise _BadAnswer(f"the connection closed before the end of the headers "
                                 f"({e.partial[:80]!r})") from None
            except asyncio.LimitOverrunError:
                raise _BadAnswer(f"a status line and headers longer than {MAX_HEAD_BYTES} "
                                 f"bytes") from None
            except ConnectionResetError as e:
                if first_read:
                    raise _Stale(e) from e
                raise
            first_read = False
            lines = head[:-4].split(b"\r\n")
            m = _STATUS_RE.match(lines[0] + b"\r\n")
            if not m:
                raise _BadAnswer(f"not an HTTP status line: {lines[0][:80]!r}")
            version, status = int(m.group(1)), int(m.group(2))
            if len(lines) > MAX_HEADERS + 1:
                raise _BadAnswer(f"more than {MAX_HEADERS} headers")
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep or not _TOKEN_RE.match(name):
                    raise _BadAnswer(f"not a header line: {line[:80]!r}")
                key = name.decode("ascii").lower()
                text = value.strip().decode("latin-1")
                if key == "content-length" and headers.get(key, text) != text:
                    raise _BadAnswer("two different Content-Length headers")
                headers[key] = text
            if 100 <= status < 200:
                continue
            return status, version, headers
        raise _BadAnswer("too many interim (1xx) answers")

    async def _read_chunked(self, reader, start):
        loop = asyncio.get_running_loop()
        parts = []
        size_total = 0

        def left():
            return max(0.0, start + self.timeout + size_total / MIN_BODY_RATE - loop.time())

        while True:
            try:
                line = await _within(left(), reader.readuntil(b"\n"))
            except asyncio.LimitOverrunError:
                raise _BadAnswer("a chunk-size line too long") from None
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 15 or not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
                raise _BadAnswer(f"invalid chunk size line {line[:80]!r}")
            n = int(size_text, 16)
            if n == 0:
                break
            if size_total + n > MAX_BODY_BYTES:
                raise _BadAnswer(f"a body beyond this client's limit ({MAX_BODY_BYTES} bytes)")
            size_total += n
            parts.append(await _within(left(), reader.readexactly(n)))
            if await _within(left(), reader.readexactly(2)) != b"\r\n":
                raise _BadAnswer("a chunk not followed by CRLF")
        trailer = 0
        while True:  # trailers, ignored
            try:
                line = await _within(left(), reader.readuntil(b"\n"))
            except asyncio.LimitOverrunError:
                raise _BadAnswer("a trailer line too long") from None
            trailer += len(line)
            if trailer > MAX_HEAD_BYTES:
                raise _BadAnswer("trailers too long")
            if line in (b"\r\n", b"\n"):
                return b"".join(parts)

    async def _read_to_eof(self, reader, start):
        loop = asyncio.get_running_loop()
        parts, total = [], 0
        while True:
            left = max(0.0, start + self.timeout + total / MIN_BODY_RATE - loop.time())
            chunk = await _within(left, reader.read(1 << 16))
            if not chunk:
                return b"".join(parts)
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                raise _BadAnswer(f"a body beyond this client's limit ({MAX_BODY_BYTES} bytes)")
            parts.append(chunk)


def _check_header(name, value):
    value = str(value)
    if "\r" in value or "\n" in value or "\0" in value:
        shown = "(the token is not shown)" if name == "Authorization" else repr(value)
        raise ValueError(f"the {name} header cannot contain CR, LF or NUL: {shown}")


def _retry_after(resp, default):
    text = resp.headers.get("retry-after")
    try:
        return max(0.0, float(text)) if text is not None else default
    except ValueError:
        return default


async def _back_off(resp, delay):
    """Sleeps before retrying a 429 (queue full) or 503: exponentially from 50 ms, never
    longer than the server's Retry-After (nor 5 s). Returns the next delay."""
    limit = min(5.0, _retry_after(resp, 5.0))
    await asyncio.sleep(min(delay, limit) if limit > 0 else delay)
    return min(delay * 2, 5.0)


def _refuses_keys(resp):
    return "Idempotency-Key" in problem_text(resp)[0]


def _predates_keys(resp):
    return "unknown field 'idempotency_key'" in problem_text(resp)[0]


class AsyncJobFuture(asyncio.Future):
    """The ``asyncio.Future`` of one job: ``await fut`` gives its result or raises its
    exception. ``job_id`` is the server's id once submitted, ``job`` the last job
    resource seen (a dict).

    Cancelling it (``fut.cancel()``, or cancelling a task awaiting it, or
    ``asyncio.wait_for`` timing out) cancels the job on the server: a queued job at
    once, a running one as the executor's ``cancel_grace`` says. ``asyncio.shield(fut)``
    waits without that."""

    def __init__(self, executor, loop):
        super().__init__(loop=loop)
        self._executor = executor
        self.job_id = None
        self.job = None
        self._server_cancelled = False  # the server says cancelled: nothing to send
        self._queued = True             # not sent yet
        self._send_task = None          # the submission waiting for its job (?wait)
        self._abort_wait = False

    def cancel(self, *args, **kwargs):
        if self.done():
            return False
        if not super().cancel(*args, **kwargs):
            return False
        if not self._server_cancelled:
            self._executor._cancel_job(self)
        return True

    def __repr__(self):
        return super().__repr__()[:-1] + f" job={self.job_id}>"


class AsyncExecutor:
    """Runs calls on a pyjobd server from asyncio code.

    ``url``, ``token``, ``timeout``, ``retry``, ``python_check``, ``pickle_by_value``
    and ``pickler`` mean what they mean for ``pyjobd.Executor``. ``cancel_grace``: a
    cancelled future's job, if it is already running, gets ``pyjobd.Cancelled`` raised
    in it and is killed if still running that many seconds later (``?interrupt=``);
    0 kills it at once (``?force=true``); None leaves running jobs alone (only queued
    ones are cancelled). ``http_timeout``: seconds the server has to answer a request
    (beyond a long-poll's own wait). ``reconnect_timeout``: how long waits keep retrying
    a server that cannot be reached before the pending futures fail. ``ssl``: an
    ``ssl.SSLContext`` for an https URL (default: the system's trusted certificates).

    Bound to the event loop of its first submission; ``async with`` shuts it down."""

    def __init__(self, url, token=None, *, timeout=None, retry=None, python_check=True,
                 pickle_by_value=None, pickler=None, cancel_grace=5.0, http_timeout=60.0,
                 reconnect_timeout=60.0, ssl=None):
        self._builder = RequestBuilder(timeout=timeout, retry=retry, python_check=python_check,
                                       pickle_by_value=pickle_by_value, pickler=pickler)
        if cancel_grace is not None and not 0 <= cancel_grace <= 3600:
            raise ValueError(f"cancel_grace must be None or 0..3600 seconds, got {cancel_grace!r}")
        self._http = _AsyncHTTP(url, token, http_timeout, ssl)
        self.url = self._http.url
        self._cancel_grace = cancel_grace
        self._reconnect_timeout = reconnect_timeout
        self._loop = None
        self._shutdown = False
        self._closed = False
        self._keys = True
        self._python_checked = not python_check
        self._python_task = None
        self.server_python = None
        self._live = {}             # futures not done yet (an ordered set)
        self._cancel_ids = []       # jobs to cancel on the server, on the next turn
        self._queue = collections.deque()  # (future, request, key) not sent yet
        self._dispatching = False
        self._sending = 0            # submission requests under way
        self._sends = set()
        self._waited = 0            # submissions waiting for their job (?wait)
        self._pending = {}          # job id -> [futures], oldest first
        self._uncovered = {}        # ids pending but in no long-poll (an ordered set)
        self._polls = set()
        self._waiter = None
        self._max_ids = MAX_WAIT_IDS
        self._failing_since = None
        self._retry_at = 0.0
        self._backoff = 0.05
        self._chores = set()        # cancel requests under way

    # ------------------------------------------------------------------ plumbing

    def _bind(self):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("AsyncExecutor.submit must be called from a coroutine running "
                               "in an event loop (use pyjobd.Executor in synchronous code)") from None
        if self._loop is None:
            self._loop = loop
            self._waiter_wake = asyncio.Event()
        elif loop is not self._loop:
            raise RuntimeError("this AsyncExecutor belongs to another event loop")
        return loop

    def _forget(self, fut):
        self._live.pop(fut, None)

    def _spawn(self, coro, where):
        task = self._loop.create_task(coro)
        where.add(task)
        task.add_done_callback(where.discard)
        return task

    async def info(self):
        """The server's ``GET /v1/info`` (versions, limits)."""
        self._bind()
        resp = await self._http.request("GET", "/v1/info")
        if resp.status != 200:
            raise self._error("GET", "/v1/info", resp)
        return resp.json()

    def _error(self, method, path, resp):
        text, problem = problem_text(resp)
        if resp.status == 400 and "python" in text.lower() and "version" in text.lower():
            return PythonVersionMismatchError(f"{self.url}: {text}")
        cls = PayloadTooLargeError if resp.status == 413 else ServerError
        return cls(f"{method} {self.url}{path} failed with HTTP {resp.status}: {text}",
                   status=resp.status, problem=problem, url=self.url)

    async def _check_python(self):
        deadline = time.monotonic() + 10.0
        while True:
            info = await self.info() or {}
            server = info.get("python_version")
            if server or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)  # workers still booting
        if not server:
            return  # unknown yet: the server checks each job's "python" itself
        client = platform.python_version()
        self.server_python = server
        if server.split(".")[:2] != client.split(".")[:2]:
            raise PythonVersionMismatchError(
                f"the pyjobd server at {self.url} runs Python {server} but this client is Python "
                f"{client}: pickled code only works between the same Python major.minor; "
                f"python_check=False skips this check at your own risk.",
                client_version=client, server_version=server)
        self._python_checked = True

    def _python_done(self, task):
        """The version check ended: send what waited for it, or fail it."""
        if task.cancelled():
            self._python_task = None
            return
        exc = task.exception()
        if exc is None:
            self._python_checked = True  # (a version still unknown: the server checks each job)
            self._dispatch()
            return
        if not isinstance(exc, PythonVersionMismatchError):
            self._python_task = None  # try again with the next submission
        while self._queue:
            f, _, _ = self._queue.popleft()
            _fail(f, exc)

    # ------------------------------------------------------------------ submitting

    def submit(self, fn, /, *args, **kwargs):
        """Runs ``fn(*args, **kwargs)`` on the server; returns an ``AsyncJobFuture``
        (``await`` it). Pickling happens here: an unpicklable argument raises now."""
        return self.submit_with(fn, args, kwargs)

    def submit_with(self, fn, args=(), kwargs=None, *, timeout=None, max_retries=None,
                    metadata=None, priority=None, soft_timeout=None, idempotency_key=None,
                    delay=None, run_at=None, expires_in=None, expires_at=None, retry=None):
        """``submit`` with ``pyjobd.Executor.submit_with``'s per-call options (same
        names, same meaning)."""
        self._bind()
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        extra = job_options(priority=priority, soft_timeout=soft_timeout, retry=retry,
                            max_retries=max_retries, delay=delay, run_at=run_at,
                            expires_in=expires_in, expires_at=expires_at)
        req = self._builder.request(self._builder.dumps(fn), args, kwargs, timeout=timeout,
                                    max_retries=max_retries, metadata=metadata, **extra)
        if idempotency_key is not None and not (isinstance(idempotency_key, str)
                                                and _KEY_RE.match(idempotency_key)):
            raise ValueError("idempotency_key must be 1-200 printable ASCII characters without "
                             f"spaces, got {idempotency_key!r}")
        return self._enqueue(req, idempotency_key)

    def _enqueue(self, req, key):
        fut = AsyncJobFuture(self, self._loop)
        self._live[fut] = None
        fut.add_done_callback(self._forget)
        self._queue.append((fut, req, key))
        if not self._dispatching:
            # On the next turn of the loop: what is submitted until then goes together.
            self._dispatching = True
            self._loop.call_soon(self._dispatch)
        return fut

    def _dispatch(self):
        """Sends the queued submissions, in batches, MAX_SENDS requests at most at once."""
        self._dispatching = False
        if not self._queue:
            return
        if not self._python_checked:
            if self._python_task is None:
                self._python_task = self._loop.create_task(self._check_python())
                self._python_task.add_done_callback(self._python_done)
            return
        while self._queue and self._sending < MAX_SENDS:
            batch, size = [], 0
            while self._queue and len(batch) < BATCH_JOBS:
                f, req, key = self._queue[0]
                if f.done():
                    self._queue.popleft()  # cancelled before it was sent: no job
                    continue
                n = len(req.get("callable", "")) + len(req.get("args", "")) + \
                    len(req.get("kwargs", "")) + 200
                if batch and size + n > BATCH_BYTES:
                    break
                self._queue.popleft()
                batch.append((f, req, self._key(key)))
                size += n
                f._queued = False
            if not batch:
                return
            self._sending += 1
            self._spawn(self._send(batch), self._sends).add_done_callback(self._sent)

    def _sent(self, _task):
        self._sending -= 1
        if self._queue and not self._dispatching:
            self._dispatch()

    def _key(self, key):
        return key or (str(uuid.uuid4()) if self._keys else None)

    async def _send(self, batch):
        try:
            if len(batch) == 1:
                fut, req, key = batch[0]
                waited = (key is not None and self._waited < MAX_WAITED_SUBMITS
                          and "delay" not in req and "run_at" not in req)
                if waited:
                    self._waited += 1
                    fut._send_task = asyncio.current_task()
                try:
                    job = await self._send_one(fut, req, key, waited)
                finally:
                    if waited:
                        self._waited -= 1
                        fut._send_task = None
                self._register(fut, job)
            else:
                await self._send_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            for fut, _, _ in batch:
                _fail(fut, e)

    async def _send_one(self, fut, req, key, waited):
        """POST /v1/jobs with an Idempotency-Key; resent (same key) when the connection
        is lost before the answer; with ``waited``, the answer waits for the job."""
        lost = _Lost(self._reconnect_timeout)
        delay = 0.05
        while True:
            wait = POLL_SECONDS if waited and not fut._abort_wait else 0.0
            path = "/v1/jobs" + (f"?wait={wait:g}" if wait else "")
            headers = {"Idempotency-Key": key} if key else None
            try:
                try:
                    resp = await self._http.request("POST", path, req, headers, wait=wait,
                                                    pooled=not wait)
                except ServerConnectionError as e:
                    if not key:
                        raise
                    await lost.pause(e)
                    continue
                if resp.status in (200, 201):  # 200: the key's job, made by an earlier send
                    return resp.json()
                if resp.status == 501 and key and _refuses_keys(resp):
                    self._keys = False
                    key = None
                    waited = False
                    continue
                if resp.status in (429, 503):
                    delay = await _back_off(resp, delay)
                    continue
                raise self._error("POST", path, resp)
            except asyncio.CancelledError:
                if not fut._abort_wait or not waited:
                    raise
                _uncancel()  # the future was cancelled: ask again without the wait,
                waited = False  # the same key answers the job, which is then cancelled

    async def _send_batch(self, batch):
        path = "/v1/jobs/batch"
        reqs = []
        for _, req, key in batch:
            r = dict(req)
            if key:
                r["idempotency_key"] = key
            reqs.append(r)
        delay = 0.05
        lost = _Lost(self._reconnect_timeout)
        while True:
            try:
                resp = await self._http.request("POST", path, {"jobs": reqs})
            except ServerConnectionError as e:
                if not all("idempotency_key" in r for r in reqs):
                    raise  # resent only when every job has its key: then it is safe
                await lost.pause(e)
                continue
            if (resp.status == 501 and _refuses_keys(resp)) or (resp.status == 400 and
                                                                 _predates_keys(resp)):
                self._keys = False
                for r in reqs:
                    r.pop("idempotency_key", None)
                continue
            if resp.status in (200, 201):
                jobs = (resp.json() or {}).get("jobs")
                if not isinstance(jobs, list) or len(jobs) != len(batch):
                    raise ServerError(f"POST {self.url}{path}: sent {len(batch)} jobs, got "
                                      f"{len(jobs) if isinstance(jobs, list) else 'no list'} back",
                                      status=resp.status, url=self.url)
                for (fut, _, _), job in zip(batch, jobs):
                    self._register(fut, job)
                return
            half = len(batch) // 2
            if resp.status in (429, 413) and len(batch) > 1:
                # No room for all (or too big): nothing was queued; send it in halves.
                await asyncio.gather(self._send_part(batch[:half]), self._send_part(batch[half:]))
                return
            if resp.status in (400, 422) and len(batch) > 1:
                # All or nothing: one by one, so the error goes to the job it is about.
                await asyncio.gather(*(self._send_part([b]) for b in batch))
                return
            if resp.status in (429, 503):
                delay = await _back_off(resp, delay)
                continue
            raise self._error("POST", path, resp)

    async def _send_part(self, batch):
        try:
            if len(batch) == 1:
                fut, req, key = batch[0]
                self._register(fut, await self._send_one(fut, req, key, False))
            else:
                await self._send_batch(batch)
        except Exception as e:
            for fut, _, _ in batch:
                _fail(fut, e)

    # ------------------------------------------------------------------ results

    def _register(self, fut, job):
        if not isinstance(job, dict) or not isinstance(job.get("id"), str):
            raise ServerError(f"POST {self.url}/v1/jobs: the answer is not a job: {job!r:.200}",
                              url=self.url)
        fut.job_id = job["id"]
        fut.job = job
        if fut.done():  # cancelled while it was being sent
            if fut.cancelled() and not fut._server_cancelled and job.get("status") not in TERMINAL:
                self._send_cancel(fut.job_id)
            return
        if job.get("status") in TERMINAL:
            self._resolve(fut, job)
            return
        futures = self._pending.setdefault(job["id"], [])
        futures.append(fut)
        if len(futures) == 1:
            self._uncovered[job["id"]] = None
            self._wake_waiter()

    def _resolve(self, fut, job):
        fut.job = job
        if fut.done():
            return
        try:
            kind, value = job_outcome(job)
        except (Exception, SystemExit, GeneratorExit) as e:  # a result whose unpickling raises
            kind = "exception"
            value = ResultError(f"job {job.get('id')} succeeded but its result could not be "
                                f"unpickled by this client: {e.__class__.__name__}: {e}", job)
            value.__cause__ = e
        if kind == "result":
            fut.set_result(value)
        elif kind == "exception":
            if isinstance(value, StopIteration):  # asyncio futures refuse StopIteration
                wrapped = RuntimeError(f"the job raised StopIteration: {value}")
                wrapped.__cause__ = value
                value = wrapped
            fut.set_exception(value)
        else:
            fut._server_cancelled = True
            fut.cancel()

    def _wake_waiter(self):
        if self._waiter is None or self._waiter.done():
            self._waiter = self._loop.create_task(self._wait_loop())
        self._waiter_wake.set()

    async def _wait_loop(self):
        """Starts long-polls for the pending ids no poll covers yet: a new poll for new
        ids (up to MAX_POLLS at once), else one poll over all of them."""
        try:
            while True:
                for jid in [j for j in self._uncovered if j not in self._pending]:
                    del self._uncovered[jid]
                if not self._uncovered:
                    if not self._pending and not self._polls:
                        return  # started again by the next pending job
                    self._waiter_wake.clear()
                    await self._waiter_wake.wait()
                    continue
                pause = self._retry_at - self._loop.time()
                if pause > 0:
                    self._waiter_wake.clear()
                    try:
                        await asyncio.wait_for(self._waiter_wake.wait(), pause)
                    except asyncio.TimeoutError:
                        pass
                    continue
                if len(self._polls) >= MAX_POLLS:
                    polls = list(self._polls)
                    for t in polls:
                        t.cancel()
                    await asyncio.wait(polls)
                    self._uncovered = dict.fromkeys(self._pending)
                ids = list(itertools.islice(self._uncovered, self._max_ids))
                for jid in ids:
                    del self._uncovered[jid]
                self._spawn(self._poll(ids), self._polls)
                await asyncio.sleep(0)
        finally:
            for t in list(self._polls):
                t.cancel()

    async def _poll(self, ids):
        body = {"ids": ids, "timeout": POLL_SECONDS, "return_when": "FIRST_COMPLETED"}
        cancelled = False
        start = self._loop.time()
        try:
            resp = await self._http.request("POST", "/v1/jobs/wait", body, wait=POLL_SECONDS,
                                            pooled=False)
            if self._handle_wait(ids, resp) or self._loop.time() - start > POLL_SECONDS / 2:
                self._failing_since = None
                self._backoff = 0.05
            else:  # an early answer that ended nothing: do not spin
                self._retry_at = self._loop.time() + self._backoff
                self._backoff = min(self._backoff * 2, 2.0)
        except asyncio.CancelledError:
            cancelled = True  # folded into another poll (or shutting down)
            raise
        except Exception as e:  # also an answer that is JSON but not a wait result
            self._poll_failed(e if isinstance(e, (ServerError, RuntimeError)) else ServerError(
                f"POST {self.url}/v1/jobs/wait: unexpected answer: {e.__class__.__name__}: {e}",
                url=self.url))
        finally:
            if not cancelled:
                for jid in ids:
                    if jid in self._pending:
                        self._uncovered[jid] = None
                if not self._closed:
                    self._wake_waiter()

    def _poll_failed(self, exc):
        now = self._loop.time()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since > self._reconnect_timeout or isinstance(exc, RuntimeError):
            self._failing_since = None
            pending, self._pending = self._pending, {}
            self._uncovered.clear()
            for jid, futures in pending.items():
                for f in futures:
                    _fail(f, ServerConnectionError(
                        f"lost the pyjobd server at {self.url} while waiting for job {jid}: {exc}",
                        url=self.url) if isinstance(exc, ServerConnectionError) else exc)
            return
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, 2.0)

    def _handle_wait(self, ids, resp):
        if resp.status == 200:
            try:
                data = resp.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise ServerError(f"POST {self.url}/v1/jobs/wait: the answer is not a wait "
                                  f"result: {resp.body[:200]!r}", status=200, url=self.url)
            ended = 0
            for job in data.get("done") or ():
                if isinstance(job, dict) and job.get("status") in TERMINAL:
                    for f in self._pending.pop(job.get("id"), ()):
                        ended += 1
                        self._resolve(f, job)
            for jid in data.get("unknown") or ():
                for f in self._pending.pop(jid, ()):
                    ended += 1
                    _fail(f, UnknownJobError(
                        f"the pyjobd server at {self.url} no longer knows job {jid} (its record "
                        "expired or was deleted, or the server restarted)", f.job))
            return ended
        if resp.status in (400, 413) and len(ids) > 1:
            self._max_ids = max(1, len(ids) // 2)  # too many ids for this server
            return 1
        if resp.status in (429, 500, 502, 503, 504):
            self._retry_at = self._loop.time() + min(5.0, _retry_after(resp, 1.0))
            return 1
        err = self._error("POST", "/v1/jobs/wait", resp)
        for jid in ids:
            for f in self._pending.pop(jid, ()):
                _fail(f, ServerError(f"cannot wait for job {jid}: {err}", status=err.status,
                                     problem=err.problem, url=err.url))
        return 1

    # ------------------------------------------------------------------ cancelling

    def _cancel_job(self, fut):
        """fut was cancelled here: its job goes too (if it was made)."""
        if fut._queued or self._loop is None or self._loop.is_closed():
            return  # never sent: the submitter drops it
        if fut.job_id is None:
            if fut._send_task is not None:  # waiting for its job: stop that wait
                fut._abort_wait = True
                fut._send_task.cancel()
            return  # _register cancels it on the server when the answer comes
        futures = self._pending.get(fut.job_id)
        if futures is not None:
            if fut in futures:
                futures.remove(fut)
            if not futures:
                del self._pending[fut.job_id]
        self._send_cancel(fut.job_id)

    def _send_cancel(self, job_id):
        # Cancels made in one turn of the loop go together (see _cancel_jobs).
        self._cancel_ids.append(job_id)
        if len(self._cancel_ids) == 1:
            self._loop.call_soon(self._flush_cancels)

    def _flush_cancels(self):
        ids, self._cancel_ids = self._cancel_ids, []
        if ids:
            self._spawn(self._cancel_jobs(ids), self._chores)

    def _cancel_all(self, futures):
        for f in futures:
            f.cancel()

    async def _cancel_jobs(self, ids):
        """One job: one request (it also cancels a queued job). Several: the plain cancel
        of each first, which cancels the queued ones, then the running ones (409) are
        interrupted or killed, so that a worker an interrupt frees cannot start a job
        whose own cancel is still on its way."""
        grace = self._cancel_grace
        strong = "" if grace is None else ("?force=true" if grace == 0 else f"?interrupt={grace:g}")
        if len(ids) == 1:
            await self._cancel_request(ids[0], strong)
            return
        statuses = await asyncio.gather(*(self._cancel_request(j, "") for j in ids))
        if strong:
            await asyncio.gather(*(self._cancel_request(j, strong)
                                   for j, status in zip(ids, statuses) if status == 409))

    async def _cancel_request(self, job_id, query):
        """POST /v1/jobs/{id}/cancel{query}; returns the answer's status (None: none)."""
        path = f"/v1/jobs/{job_id}/cancel{query}"
        for attempt in range(3):
            try:
                resp = await self._http.request("POST", path)
            except ServerConnectionError as e:
                if attempt == 2:
                    log.warning("cancel of job %s failed: %s", job_id, e)
                    return None
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            except (ServerError, RuntimeError) as e:
                log.warning("cancel of job %s failed: %s", job_id, e)
                return None
            if resp.status in (429, 503):
                await asyncio.sleep(min(2.0, _retry_after(resp, 0.5)))
                continue
            if resp.status not in (200, 404, 409):
                log.warning("cancel of job %s: HTTP %s: %s", job_id, resp.status,
                            problem_text(resp)[0])
            return resp.status
        return None

    # ------------------------------------------------------------------ map

    async def map(self, fn, *iterables, buffersize=MAP_BUFFERSIZE):
        """``async for r in ex.map(fn, *iterables)``: ``fn(*args)`` for each ``args``
        of ``zip(*iterables)`` (sync or async iterables), yielded in order. At most
        ``buffersize`` jobs are submitted ahead of the result yielded next, so an
        endless iterable works. When a job fails its exception is raised there and the
        jobs submitted after it are cancelled, as they are when the loop stops early
        (``break``: then close the generator, e.g. ``contextlib.aclosing``)."""
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        if buffersize is None or buffersize < 1:
            raise ValueError("buffersize must be >= 1")
        self._bind()
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        fn_b64 = self._builder.dumps(fn)
        window = collections.deque()
        room = asyncio.Event()
        more = asyncio.Event()
        state = {"done": False, "error": None}

        # Once the window is full, it is refilled when a quarter of it is free: jobs
        # then go in batches rather than one by one as each result is taken.
        low = buffersize - max(1, buffersize // 4)

        async def feed():
            try:
                async for args in _azip(iterables):
                    if len(window) >= buffersize:
                        while len(window) > low:
                            room.clear()
                            await room.wait()
                    if self._shutdown:
                        raise RuntimeError("cannot schedule new futures after shutdown")
                    window.append(self._enqueue(self._builder.request(fn_b64, args), None))
                    more.set()
            except asyncio.CancelledError:
                pass
            except BaseException as e:  # the input raised: after the results before it
                state["error"] = e
            finally:
                state["done"] = True
                more.set()

        feeder = self._loop.create_task(feed())
        try:
            while True:
                if window:
                    result = await window[0]
                    window.popleft()
                    room.set()
                    yield result
                elif state["done"]:
                    if state["error"] is not None:
                        raise state["error"]
                    return
                else:
                    more.clear()
                    await more.wait()
        finally:
            feeder.cancel()
            self._cancel_all(list(window))

    # ------------------------------------------------------------------ shutting down

    async def shutdown(self, wait=True, *, cancel_futures=False):
        """No new submissions; ``cancel_futures`` cancels the jobs of the pending
        futures; ``wait`` waits for the pending futures, then for the cancel requests,
        and closes the connections. Without ``wait`` the pending futures still resolve
        (while the loop runs) and the connections close after them."""
        self._shutdown = True
        if self._loop is None:
            self._closed = True
            self._http.close()
            return
        if cancel_futures:
            self._cancel_all(list(self._live))
        if not wait:
            self._wake_waiter_if_running()
            self._spawn(self._close_when_idle(), self._chores)
            return
        if self._live:
            await asyncio.wait(list(self._live))
        await self._close_when_idle()

    def _wake_waiter_if_running(self):
        if self._waiter is not None and not self._waiter.done():
            self._waiter_wake.set()

    async def _close_when_idle(self):
        if self._live:
            await asyncio.wait(list(self._live))
        self._flush_cancels()
        chores = [t for t in self._chores if t is not asyncio.current_task()]
        if chores:
            await asyncio.wait(chores, timeout=self._http.timeout)
        self._closed = True
        for t in (self._waiter,):
            if t is not None and not t.done():
                t.cancel()
        for t in list(self._polls) + list(self._sends):
            t.cancel()
        self._http.close()

    async def aclose(self):
        """``shutdown(wait=True)``."""
        await self.shutdown(wait=True)

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        # The block's task was cancelled (or interrupted): its jobs go with it, as the
        # job of a cancelled await does. Otherwise wait for them, as Executor does.
        cancelled = exc_type is not None and issubclass(
            exc_type, (asyncio.CancelledError, KeyboardInterrupt))
        await self.shutdown(wait=True, cancel_futures=cancelled)
        return False

    def __repr__(self):
        return f"<pyjobd.AsyncExecutor {self.url} pending={len(self._live)}>"


class _Lost:
    """Resending a keyed submission after its connection was lost: a server refusing
    connections from the start is reported after 3 tries (no job can have been made);
    once a request may have reached it, resends go on (backing off) for
    ``reconnect_timeout`` seconds, so a server restarting meanwhile gets it."""

    def __init__(self, reconnect_timeout):
        self._limit = reconnect_timeout
        self._since = None
        self._tries = 0
        self._delivered = False
        self._delay = 0.1

    async def pause(self, exc):
        now = time.monotonic()
        self._since = self._since or now
        self._tries += 1
        self._delivered = self._delivered or not getattr(exc, "at_connect", False)
        if (not self._delivered and self._tries > 2) or now - self._since > self._limit:
            raise exc
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, 2.0)


def _fail(fut, exc):
    if not fut.done():
        fut.set_exception(exc)


async def _azip(iterables):
    """zip() of sync and async iterables, as an async iterator."""
    if all(not hasattr(it, "__aiter__") for it in iterables):
        for args in zip(*iterables):
            yield args
        return
    its = [it.__aiter__() if hasattr(it, "__aiter__") else iter(it) for it in iterables]
    while True:
        args = []
        for it in its:
            try:
                args.append(await it.__anext__() if hasattr(it, "__anext__") else next(it))
            except (StopIteration, StopAsyncIteration):
                return
        yield tuple(args)


# ---------------------------------------------------------------------- as_completed

def _is_awaitable(f):
    return isinstance(f, asyncio.Future) or inspect.isawaitable(f)


def as_completed(fs, timeout=None):
    """``concurrent.futures.as_completed`` for ``concurrent.futures`` futures (what
    ``pyjobd.Executor`` gives); for awaitables (``AsyncExecutor`` futures, tasks,
    coroutines) an object to iterate with ``async for``, which yields each future (a
    coroutine becomes a task) as it completes, like Python 3.13's
    ``asyncio.as_completed``. ``timeout`` (seconds, from the call) raises
    ``TimeoutError`` then. Mixing both kinds raises TypeError."""
    fs = list(fs)
    sync = [f for f in fs if isinstance(f, concurrent.futures.Future)]
    if sync and len(sync) == len(fs):
        return concurrent.futures.as_completed(fs, timeout)
    if sync:
        raise TypeError("as_completed() got both concurrent.futures futures and awaitables")
    for f in fs:
        if not _is_awaitable(f):
            raise TypeError(f"as_completed() needs futures or awaitables, got {type(f).__name__}")
    return _AsCompleted(fs, timeout)


class _AsCompleted:
    """``async for f in pyjobd.as_completed(async_futures)``. A plain ``for`` gives
    what ``asyncio.as_completed`` gives (awaitables, in completion order)."""

    def __init__(self, fs, timeout):
        self._fs = fs
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def __iter__(self):
        if not self._fs:
            return iter(())
        left = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        return iter(asyncio.as_completed(self._fs, timeout=left))

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        if not self._fs:
            return
        futures = list(dict.fromkeys(asyncio.ensure_future(f) for f in self._fs))
        done = collections.deque()
        ready = asyncio.Event()

        def on_done(f):
            done.append(f)
            ready.set()

        for f in futures:
            f.add_done_callback(on_done)
        try:
            for _ in range(len(futures)):
                while not done:
                    ready.clear()
                    if self._deadline is None:
                        await ready.wait()
                        continue
                    left = self._deadline - time.monotonic()
                    try:
                        if left <= 0:
                            raise asyncio.TimeoutError
                        await asyncio.wait_for(ready.wait(), left)
                    except asyncio.TimeoutError:
                        unfinished = sum(1 for f in futures if not f.done())
                        raise asyncio.TimeoutError(
                            f"{unfinished} (of {len(futures)}) futures unfinished after "
                            f"{self._timeout:g} s") from None
                yield done.popleft()
        finally:
            for f in futures:
                f.remove_done_callback(on_done)
