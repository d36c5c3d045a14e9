"""pyjobd.Executor: a concurrent.futures.Executor whose work runs on a pyjobd server."""

import functools
import itertools
import logging
import os
import platform
import select
import threading
import time
import uuid
import weakref
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import _base

from ._http import HTTPClient, problem_text
from ._jobs import TERMINAL, job_outcome
from ._requests import RequestBuilder, job_options
from .errors import (PythonVersionMismatchError, ServerConnectionError, ServerError,
                     UnknownJobError)

log = logging.getLogger("pyjobd")

# Long-poll length asked of POST /v1/jobs/wait (the server caps waits at 60 s).
POLL_SECONDS = 30.0
# Largest number of ids in one wait request (older ids first).
MAX_WAIT_IDS = 10000
# Jobs per POST /v1/jobs/batch, and a soft cap on one batch body.
BATCH_JOBS = 1000
BATCH_BYTES = 16 << 20
# New submissions arriving during a long-poll are folded in after at most this delay.
COALESCE_SECONDS = 0.01
# The waiter gives up (failing the pending futures) after this long without a server.
GIVE_UP_SECONDS = 60.0


def _major_minor(version):
    return ".".join(str(version).split(".")[:2])


class JobFuture(Future):
    """A concurrent.futures.Future for one pyjobd job.

    ``job_id`` is the server's id; ``job`` the last job resource seen (a dict).
    ``cancel()`` asks the server: only a job still queued there can be cancelled.
    ``running()`` stays False: the client learns about jobs when they end."""

    def __init__(self, executor):
        super().__init__()
        self._executor_ref = weakref.ref(executor)
        self._http = executor._http
        self._waiter = executor._waiter
        self.job_id = None
        self.job = None
        self._cancel_lock = threading.Lock()

    def _cancel_local(self):
        # The waiter thread and the caller may both cancel a future (map() cancels what
        # is left when a job failed, while the waiter sees those jobs cancelled): only
        # the one that moves it to CANCELLED notifies, once.
        with self._cancel_lock:
            if not Future.cancel(self):
                return False
            if self._state == _base.CANCELLED:
                self.set_running_or_notify_cancel()  # wakes wait()/as_completed()
            return True

    def cancel(self):
        with self._condition:
            if self._state in (_base.CANCELLED, _base.CANCELLED_AND_NOTIFIED):
                return True
            if self._state == _base.FINISHED:
                return False
        if self.job_id is None:
            return self._cancel_local()
        try:
            resp = self._http.request("POST", f"/v1/jobs/{self.job_id}/cancel")
        except ServerError as e:
            log.warning("cancel of job %s failed: %s", self.job_id, e)
            return False
        if resp.status == 200:
            try:
                job = resp.json()
            except ValueError:
                job = None
            if isinstance(job, dict):
                self.job = job
                if job.get("status") == "cancelled":
                    self._waiter.forget(self.job_id)
                    return self._cancel_local()
            return False
        if resp.status not in (404, 409):
            log.warning("cancel of job %s: %s", self.job_id, problem_text(resp)[0])
        return False

    def rerun(self):
        """Runs this finished job's request again on the server (``POST
        /v1/jobs/{id}/rerun``): a new JobFuture, whose ``job["rerun_of"]`` is this
        job's id. The server keeps a request while it keeps the job."""
        executor = self._executor_ref()
        if executor is None:
            raise RuntimeError("the executor of this future is gone")
        if self.job_id is None:
            raise RuntimeError("this future was never submitted")
        resp = self._http.request("POST", f"/v1/jobs/{self.job_id}/rerun")
        if resp.status != 201:
            executor._raise_for("POST", f"/v1/jobs/{self.job_id}/rerun", resp)
        return executor._track([resp.json()])[0]

    def __repr__(self):
        return super().__repr__()[:-1] + f" job={self.job_id}>"


class _Waiter(threading.Thread):
    """The one background thread that resolves futures, with POST /v1/jobs/wait
    long-polls over all pending ids (FIRST_COMPLETED)."""

    def __init__(self, http):
        super().__init__(name="pyjobd-waiter", daemon=True)
        self._http = http
        self._pending = {}  # job id -> JobFuture, oldest first
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._new = False
        self._closing = False
        self._max_ids = MAX_WAIT_IDS
        self._thread_started = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -------------------------------------------------------------- other threads

    def _wake(self):
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def add(self, futures):
        with self._lock:
            for f in futures:
                self._pending[f.job_id] = f
            self._new = True
            self._cond.notify_all()
        with self._lock:
            if not self._thread_started:
                self._thread_started = True
                self.start()
        self._wake()

    def forget(self, job_id):
        with self._lock:
            self._pending.pop(job_id, None)

    def get(self, job_id):
        """The future already waiting for job_id, or None."""
        with self._lock:
            return self._pending.get(job_id)

    def pending(self):
        with self._lock:
            return list(self._pending.values())

    def close(self):
        """Exit once nothing is pending (futures still pending keep resolving)."""
        with self._lock:
            self._closing = True
            self._cond.notify_all()
        self._wake()

    # -------------------------------------------------------------- the thread

    def _drain(self):
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _fail_all(self, exc_factory):
        with self._lock:
            futures = list(self._pending.values())
            self._pending.clear()
        for f in futures:
            _set(f, "exception", exc_factory(f))

    def run(self):
        conn = None
        failing_since = None
        backoff = 0.05
        try:
            while True:
                with self._lock:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending:
                        return  # closing and nothing left
                    ids = list(itertools.islice(self._pending, self._max_ids))
                    self._new = False
                self._drain()
                if conn is None:
                    conn = self._http.new_connection(timeout=POLL_SECONDS + 30)
                body = {"ids": ids, "timeout": POLL_SECONDS, "return_when": "FIRST_COMPLETED"}
                try:
                    self._http.send(conn, "POST", "/v1/jobs/wait", body)
                    if not self._await_answer(conn):
                        conn.close()  # abandoned: new ids (or closing) -- ask again
                        conn = None
                        continue
                    resp = self._http.receive(conn)
                except ServerConnectionError as e:
                    conn = None
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if now - failing_since > GIVE_UP_SECONDS:
                        self._fail_all(lambda f, e=e: ServerConnectionError(
                            f"lost the pyjobd server while waiting for job {f.job_id}: {e}",
                            url=self._http.url))
                        failing_since = None
                        continue
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                failing_since = None
                backoff = 0.05
                self._handle(ids, resp)
        except BaseException:  # never die silently with futures pending
            log.exception("pyjobd waiter thread crashed")
            self._fail_all(lambda f: ServerError("pyjobd client waiter thread crashed (see the log)"))
            raise
        finally:
            if conn is not None:
                conn.close()

    def _await_answer(self, conn):
        """Waits for the long-poll's answer; False when it should be abandoned because
        new ids were submitted (after COALESCE_SECONDS) or the executor is closing
        with nothing pending."""
        sock = conn.sock
        deadline = time.monotonic() + POLL_SECONDS + 30
        abandon_at = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise ServerConnectionError(
                    f"no answer from the pyjobd server at {self._http.url} to a wait request "
                    f"within {POLL_SECONDS + 30:g} s", url=self._http.url)
            limit = deadline - now
            if abandon_at is not None:
                limit = max(0.0, min(limit, abandon_at - now))
            r, _, _ = select.select([sock, self._wake_r], [], [], limit)
            if sock in r:
                return True
            if self._wake_r in r:
                self._drain()
                with self._lock:
                    if self._closing and not self._pending:
                        return False
                    if self._new and abandon_at is None:
                        abandon_at = time.monotonic() + COALESCE_SECONDS
            if abandon_at is not None and time.monotonic() >= abandon_at:
                return False

    def _handle(self, ids, resp):
        if resp.status == 200:
            try:
                data = resp.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                log.warning("POST /v1/jobs/wait: unexpected answer %r", resp.body[:200])
                time.sleep(0.5)
                return
            for job in data.get("done") or ():
                if not isinstance(job, dict) or job.get("status") not in TERMINAL:
                    continue
                with self._lock:
                    f = self._pending.pop(job.get("id"), None)
                if f is not None:
                    f.job = job
                    _set(f, *job_outcome(job))
            for jid in data.get("unknown") or ():
                with self._lock:
                    f = self._pending.pop(jid, None)
                if f is not None:
                    _set(f, "exception", UnknownJobError(
                        f"the pyjobd server at {self._http.url} no longer knows job {jid} "
                        "(its record expired or was deleted, or the server restarted)", f.job))
            return
        if resp.status in (400, 413) and len(ids) > 1:
            # Too many ids for one request on this server: ask for fewer.
            self._max_ids = max(1, len(ids) // 2)
            return
        if resp.status in (429, 500, 502, 503, 504):
            time.sleep(1.0)
            return
        err = self._http.error("POST", "/v1/jobs/wait", resp)
        self._fail_all(lambda f: ServerError(
            f"cannot wait for job {f.job_id}: {err}", status=err.status, problem=err.problem,
            url=err.url))


def _set(future, kind, value):
    """Completes future (ignoring futures already cancelled/finished locally)."""
    try:
        if kind == "result":
            future.set_result(value)
        elif kind == "exception":
            future.set_exception(value)
        else:
            future._cancel_local()
    except InvalidStateError:
        pass


def _make_chunk_runner():
    # Defined in a function so that cloudpickle ships it by value (the server's
    # workers do not have the pyjobd package).
    def run_chunk(fn, chunk):
        return [fn(*args) for args in chunk]
    return run_chunk


_run_chunk = _make_chunk_runner()


class Executor(_base.Executor):
    """A ``concurrent.futures.Executor`` that runs calls on a pyjobd server.

    ``url``: the server, e.g. ``"http://127.0.0.1:8080"``. ``token``: sent as
    ``Authorization: Bearer <token>``. ``timeout``: default per-job timeout in
    seconds (killed by the server after it; ``None``: the server's default).
    ``python_check``: compare the server's worker Python (major.minor) with this one
    before sending anything, and send ``python`` with each job so the server checks
    too. ``pickle_by_value``: modules (or module names) whose functions and classes
    are pickled by value, for code the server cannot import.
    ``pickler``: a ``pyjobd.Pickler`` (cloudpickle) subclass used to pickle calls.
    """

    def __init__(self, url, token=None, *, timeout=None, python_check=True, pickle_by_value=None,
                 pickler=None, retry=None):
        self._builder = RequestBuilder(timeout=timeout, retry=retry, python_check=python_check,
                                       pickle_by_value=pickle_by_value, pickler=pickler)
        self._http = HTTPClient(url, token)
        self.url = self._http.url
        self._python_check = python_check
        self._python_checked = not python_check
        self._lock = threading.Lock()
        self._shutdown = False
        self._waiter = _Waiter(self._http)
        # Idempotency keys go with every submission, unless the server said it takes
        # none (a 501 from a PostgreSQL cluster, which does not support them yet).
        self._keys = True
        self._server_python = None
        # An executor dropped without shutdown(): let its waiter thread finish the
        # pending futures and exit.
        weakref.finalize(self, self._waiter.close)
        if python_check:
            self._check_python(wait_for_workers=0.0)

    # ------------------------------------------------------------------ checks

    def info(self):
        """The server's ``GET /v1/info`` (versions, limits)."""
        return self._http.call("GET", "/v1/info")

    def _check_python(self, wait_for_workers):
        if self._python_checked:
            return
        deadline = time.monotonic() + wait_for_workers
        while True:
            info = self.info() or {}
            server = info.get("python_version")
            if server or time.monotonic() >= deadline:
                break
            time.sleep(0.05)  # workers still booting: the version is not known yet
        if not server:
            return  # unknown yet: check again on the next submit (the server checks too)
        client = platform.python_version()
        self._server_python = server
        if _major_minor(server) != _major_minor(client):
            raise PythonVersionMismatchError(
                f"the pyjobd server at {self.url} runs Python {server} but this client is Python "
                f"{client}: pickled code only works between the same Python major.minor. Use a "
                f"Python {_major_minor(server)} client (or a server built for {_major_minor(client)}); "
                f"python_check=False skips this check at your own risk.",
                client_version=client, server_version=server)
        self._python_checked = True

    def _before_submit(self):
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if not self._python_checked:
            with self._lock:
                self._check_python(wait_for_workers=10.0)

    # ------------------------------------------------------------------ payloads

    def _dumps(self, obj):
        return self._builder.dumps(obj)

    def _request(self, fn_b64, args=(), kwargs=None, **options):
        return self._builder.request(fn_b64, args, kwargs, **options)

    def _raise_for(self, method, path, resp):
        text, problem = problem_text(resp)
        if resp.status == 400 and "python" in text.lower() and "version" in text.lower():
            raise PythonVersionMismatchError(f"{self.url}: {text}")
        raise self._http.error(method, path, resp)

    def _post(self, path, body, headers=None):
        """POST with back-off on 429 (queue full); returns the decoded answer. With an
        Idempotency-Key in headers, a connection lost before the answer is resent (twice
        at most) with the same key: the server answers the job the first one made."""
        delay = 0.05
        lost = 0
        while True:
            try:
                resp = self._http.request("POST", path, body, headers=headers)
            except ServerConnectionError:
                lost += 1
                if not headers or "Idempotency-Key" not in headers or lost > 2:
                    raise
                time.sleep(0.1 * lost)
                continue
            if resp.status in (200, 201):  # 200: the key's job, made by an earlier send
                return resp.json()
            if resp.status == 501 and headers and _refuses_keys(resp):
                self._keys = False  # nothing was queued: send it again without a key
                headers = None
                continue
            if resp.status in (429, 503):
                delay = _back_off(resp, delay)
                continue
            self._raise_for("POST", path, resp)

    def _track(self, jobs):
        futures, new = [], []
        for job in jobs:
            # A replayed Idempotency-Key answers a job already tracked: the same future.
            known = self._waiter.get(job["id"])
            if known is not None:
                futures.append(known)
                continue
            f = JobFuture(self)
            f.job_id = job["id"]
            f.job = job
            futures.append(f)
            new.append(f)
        waiting = []
        for f in new:
            if f.job.get("status") in TERMINAL:
                _set(f, *job_outcome(f.job))
            else:
                waiting.append(f)
        if waiting:
            self._waiter.add(waiting)
        return futures

    def _submit_request(self, req, idempotency_key=None):
        self._before_submit()
        key = idempotency_key or (str(uuid.uuid4()) if self._keys else None)
        job = self._post("/v1/jobs", req, headers={"Idempotency-Key": key} if key else None)
        return self._track([job])[0]

    def _submit_requests(self, reqs):
        """Submits many job requests with POST /v1/jobs/batch; returns their futures."""
        self._before_submit()
        for r in reqs:  # a resent batch (after a lost answer) makes no job twice
            if self._keys:
                r.setdefault("idempotency_key", str(uuid.uuid4()))
        futures = []
        try:
            for batch in _batches(reqs):
                futures.extend(self._submit_batch(batch))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return futures

    def _submit_batch(self, batch):
        path = "/v1/jobs/batch"
        delay = 0.05
        lost = 0
        while True:
            try:
                resp = self._http.request("POST", path, {"jobs": batch})
            except ServerConnectionError:
                lost += 1
                if lost > 2 or not all("idempotency_key" in r for r in batch):
                    raise  # resent only when every job has its key: then it is safe
                time.sleep(0.1 * lost)
                continue
            if (resp.status == 501 and _refuses_keys(resp)) or (resp.status == 400 and
                                                                 _predates_keys(resp)):
                self._keys = False  # nothing was queued: again without the keys
                for r in batch:
                    r.pop("idempotency_key", None)
                continue
            if resp.status in (200, 201):  # 200: every job was made by an earlier send
                jobs = resp.json()["jobs"]
                if len(jobs) != len(batch):
                    raise ServerError(f"POST {self.url}{path}: sent {len(batch)} jobs, "
                                      f"got {len(jobs)} back", status=201, url=self.url)
                return self._track(jobs)
            if resp.status == 429 and len(batch) > 1:
                # The queue has no room for the whole batch (nothing was queued): send
                # it in halves, so what fits goes in and the rest backs off.
                half = len(batch) // 2
                return self._submit_batch(batch[:half]) + self._submit_batch(batch[half:])
            if resp.status in (429, 503):
                delay = _back_off(resp, delay)
                continue
            if resp.status == 413 and len(batch) > 1:
                half = len(batch) // 2
                return self._submit_batch(batch[:half]) + self._submit_batch(batch[half:])
            self._raise_for("POST", path, resp)

    # ------------------------------------------------------------------ Executor API

    def submit(self, fn, /, *args, **kwargs):
        """Runs ``fn(*args, **kwargs)`` on the server; returns a Future.

        Pickling happens here, so an object that cannot be pickled raises now."""
        return self.submit_with(fn, args, kwargs)

    def submit_with(self, fn, args=(), kwargs=None, *, timeout=None, max_retries=None,
                    metadata=None, priority=None, soft_timeout=None, idempotency_key=None,
                    delay=None, run_at=None, expires_in=None, expires_at=None, retry=None):
        """``submit`` with per-call options: ``timeout`` (seconds, overrides the
        executor's), ``max_retries`` (re-runs after a worker crash), ``metadata`` (a
        JSON object stored with the job and echoed back in ``future.job``),
        ``priority`` (-100..100, default 0: among your queued jobs, higher first) and
        ``soft_timeout`` (seconds, less than ``timeout``: ``pyjobd.SoftTimeout`` is raised
        in the job then, so its ``finally`` blocks run before the hard stop).

        When it may run: ``delay`` (seconds) or ``run_at`` (a timezone-aware
        ``datetime`` or an RFC 3339 string) keep the job ``scheduled`` until then;
        ``expires_in`` (seconds) or ``expires_at`` make it fail as ``expired`` if no
        worker has started it by then (it is then never run).

        ``retry``: a ``pyjobd.Retry`` (exceptions to retry, backoff), instead of
        ``max_retries`` and the executor's default ``retry``.

        Every submission carries an ``Idempotency-Key`` (a new UUID unless
        ``idempotency_key`` names one, 1-200 printable ASCII characters without spaces):
        the same key and request again, within the server's ``--idempotency-ttl``,
        answer the job the first one made instead of making another."""
        self._before_submit()
        extra = job_options(priority=priority, soft_timeout=soft_timeout, retry=retry,
                            max_retries=max_retries, delay=delay, run_at=run_at,
                            expires_in=expires_in, expires_at=expires_at)
        req = self._request(self._dumps(fn), args, kwargs, timeout=timeout,
                            max_retries=max_retries, metadata=metadata, **extra)
        return self._submit_request(req, idempotency_key)

    def schedule(self, fn, args=(), kwargs=None, *, cron=None, every=None, timezone=None,
                 missed=None, timeout=None, max_retries=None, metadata=None, priority=None,
                 retry=None):
        """Submits ``fn(*args, **kwargs)`` at every tick, on the server: ``cron`` (five
        fields, e.g. ``"0 3 * * *"``, in ``timezone``, default UTC) or ``every`` (seconds).
        ``missed="run_once"`` makes one job at start for ticks the server was down for
        (default: none). Returns the schedule (a dict: ``id``, ``next_run_at``, ...); each
        tick's job names it in ``job["schedule"]``. ``unschedule(id)`` stops it."""
        if (cron is None) == (every is None):
            raise ValueError("give cron= or every=")
        extra = job_options(priority=priority, retry=retry, max_retries=max_retries)
        job = self._request(self._dumps(fn), args, kwargs, timeout=timeout,
                            max_retries=max_retries, metadata=metadata, **extra)
        body = {"job": job}
        for name, value in (("cron", cron), ("every", every), ("timezone", timezone),
                            ("missed", missed)):
            if value is not None:
                body[name] = value
        resp = self._http.request("POST", "/v1/schedules", body)
        if resp.status != 201:
            self._raise_for("POST", "/v1/schedules", resp)
        return resp.json()

    def schedules(self):
        """Your schedules on the server (a list of dicts)."""
        resp = self._http.request("GET", "/v1/schedules")
        if resp.status != 200:
            self._raise_for("GET", "/v1/schedules", resp)
        return resp.json()["schedules"]

    def unschedule(self, schedule_id):
        """Stops a schedule (the jobs it made stay). False if the server knows no such
        schedule of yours."""
        resp = self._http.request("DELETE", f"/v1/schedules/{schedule_id}")
        if resp.status == 404:
            return False
        if resp.status != 204:
            self._raise_for("DELETE", f"/v1/schedules/{schedule_id}", resp)
        return True

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Like ``Executor.map``: submits every call at once (``POST /v1/jobs/batch``,
        the pickled ``fn`` is shared), yields results in order, lazily. ``timeout``
        bounds the whole iteration (TimeoutError); ``chunksize`` > 1 runs that many
        calls per job."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end_time = None if timeout is None else timeout + time.monotonic()
        self._before_submit()
        if chunksize == 1:
            fn_b64 = self._dumps(fn)
            reqs = [self._request(fn_b64, args) for args in zip(*iterables)]
        else:
            fn_b64 = self._dumps(functools.partial(_run_chunk, fn))
            it = zip(*iterables)
            reqs = []
            while True:
                chunk = tuple(itertools.islice(it, chunksize))
                if not chunk:
                    break
                reqs.append(self._request(fn_b64, (chunk,)))
        fs = self._submit_requests(reqs)

        def result_iterator():
            try:
                fs.reverse()
                while fs:
                    if end_time is None:
                        yield _result_or_cancel(fs.pop())
                    else:
                        yield _result_or_cancel(fs.pop(), end_time - time.monotonic())
            finally:
                for future in fs:
                    if not future.done():
                        future.cancel()

        results = result_iterator()
        if chunksize == 1:
            return results
        return itertools.chain.from_iterable(results)

    def shutdown(self, wait=True, *, cancel_futures=False):
        """No new submissions; ``cancel_futures`` cancels the jobs still queued on the
        server; ``wait`` blocks until the other pending futures are done. Jobs keep
        running on the server whatever happens here."""
        with self._lock:
            self._shutdown = True
        if cancel_futures:
            for f in self._waiter.pending():
                f.cancel()
        if wait:
            pending = self._waiter.pending()
            if pending:
                _base.wait(pending)
        self._waiter.close()
        if wait and self._waiter._thread_started:
            self._waiter.join()
        if wait:
            self._http.close()


def _back_off(resp, delay):
    """Sleeps before retrying a 429 (queue full) or 503: exponentially from 50 ms,
    never longer than the server's Retry-After (nor 5 s). Returns the next delay."""
    limit = 5.0
    retry = resp.headers.get("Retry-After")
    if retry is not None:
        try:
            limit = min(limit, max(0.0, float(retry)))
        except ValueError:
            pass
    time.sleep(min(delay, limit) if limit > 0 else delay)
    return min(delay * 2, 5.0)


def _result_or_cancel(fut, timeout=None):
    try:
        try:
            return fut.result(timeout)
        finally:
            fut.cancel()
    finally:
        del fut


def _refuses_keys(resp):
    """A 501 saying the server takes no Idempotency-Key (a shared store, for now)."""
    text, _ = problem_text(resp)
    return "Idempotency-Key" in text


def _predates_keys(resp):
    """A 400 from a server older than idempotency keys (during an upgrade): it knows no
    field idempotency_key, and a batch is all or nothing, so nothing was queued."""
    text, _ = problem_text(resp)
    return "unknown field 'idempotency_key'" in text


def _batches(reqs):
    batch, size = [], 0
    for r in reqs:
        n = len(r.get("callable", "")) + len(r.get("args", "")) + len(r.get("kwargs", "")) + 200
        if batch and (len(batch) >= BATCH_JOBS or size + n > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(r)
        size += n
    if batch:
        yield batch
