"""pyjobd.Executor: a concurrent.futures.Executor whose work runs on a pyjobd server."""

import collections
import functools
import itertools
import logging
import platform
import threading
import time
import uuid
import weakref
from concurrent.futures import _base

from ._futures import JobFuture, SubmitRecord, _Waiter
from ._http import HTTPClient, problem_text
from ._jobs import TERMINAL, job_outcome
from ._requests import RequestBuilder, job_options
from .errors import PythonVersionMismatchError, ServerConnectionError, ServerError

log = logging.getLogger("pyjobd")

# How long the POST of a submission waits for its job when the caller seems to wait
# for each job before submitting the next (submit().result() in a loop): a quick job's
# result then comes with the POST's answer, one request per result.
SYNC_WAIT_SECONDS = 0.01
# Jobs per POST /v1/jobs/batch, and a soft cap on one batch body.
BATCH_JOBS = 1000
BATCH_BYTES = 16 << 20


def _major_minor(version):
    return ".".join(str(version).split(".")[:2])


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
        self._local = threading.local()  # .last: this thread's last SubmitRecord
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

    def _track(self, jobs, defer=False):
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
                f._finish(*job_outcome(f.job))
            else:
                waiting.append(f)
        if waiting:
            self._waiter.add(waiting, defer=defer)
        return futures

    def _submit_request(self, req, idempotency_key=None, may_wait=True):
        self._before_submit()
        key = idempotency_key or (str(uuid.uuid4()) if self._keys else None)
        path = "/v1/jobs"
        prev = getattr(self._local, "last", None)
        if (may_wait and prev is not None and prev.asked and prev.took is not None
                and prev.took < SYNC_WAIT_SECONDS / 2):
            # This thread waited for its previous submission before this one, and that
            # job was quick: this one is likely awaited at once too. Its POST waits
            # briefly, so that a quick job's result comes with the answer.
            path = f"/v1/jobs?wait={SYNC_WAIT_SECONDS:g}"
        record = SubmitRecord(time.monotonic())
        job = self._post(path, req, headers={"Idempotency-Key": key} if key else None)
        f = self._track([job], defer=True)[0]
        if _base.Future.done(f):  # (JobFuture.done would hand it to the waiter thread)
            record.took = time.monotonic() - record.submitted_at
        f._record = record
        self._local.last = record
        return f

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
        return self._submit_request(req, idempotency_key, may_wait=delay is None and run_at is None)

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

    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None, progress=False):
        """Like ``Executor.map`` (Python 3.14's signature): yields ``fn(*args)`` for
        the items of ``iterables`` in order, lazily, re-raising the first failed
        call's exception when its turn comes. ``timeout`` bounds the whole iteration
        (TimeoutError); ``chunksize`` > 1 runs that many calls per job.

        ``buffersize=None`` (the default) submits every call at once (``POST
        /v1/jobs/batch``, 1,000 jobs a request, ``fn`` pickled once). ``buffersize=N``
        keeps at most N jobs submitted and not yet yielded: the iterables are read
        only as results are consumed, so an endless generator works and memory stays
        flat.

        ``progress=True`` draws a progress bar (``pyjobd.progress.Bar``) of the map's
        jobs (chunks when ``chunksize`` > 1), closed when the iteration ends."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if not isinstance(buffersize, int) or isinstance(buffersize, bool):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        end_time = None if timeout is None else timeout + time.monotonic()
        self._before_submit()
        if chunksize == 1:
            fn_b64 = self._dumps(fn)
            calls = zip(*iterables)
        else:
            fn_b64 = self._dumps(functools.partial(_run_chunk, fn))
            calls = _chunks(zip(*iterables), chunksize)
        requests = (self._request(fn_b64, (args,) if chunksize > 1 else args) for args in calls)
        bar = None
        if progress:
            from .progress import Bar  # the progress module, loaded on demand
            total = None
            if buffersize is None:
                requests = list(requests)
                total = len(requests)
            else:
                total = _known_length(iterables, chunksize)
            bar = Bar(total=total)
        try:
            if buffersize is None:
                fs = collections.deque(self._submit_requests(list(requests)))
            else:
                fs = collections.deque(self._submit_requests(list(itertools.islice(requests, buffersize))))
            if bar is not None:
                for f in fs:
                    bar.track(f)
        except BaseException:
            if bar is not None:
                bar.close()
            raise
        executor_ref = weakref.ref(self)

        def refill():
            # Keeps buffersize jobs submitted and not yet yielded, in batches of at
            # least a quarter of it once it is large.
            missing = buffersize - len(fs)
            if missing < max(1, buffersize // 4):
                return
            executor = executor_ref()
            if executor is None or executor._shutdown:
                return
            reqs = list(itertools.islice(requests, missing))
            if reqs:
                new = executor._submit_requests(reqs)
                fs.extend(new)
                if bar is not None:
                    for f in new:
                        bar.track(f)

        def result_iterator():
            try:
                while True:
                    if buffersize is not None:
                        refill()
                    if not fs:
                        break
                    if end_time is None:
                        yield _result_or_cancel(fs.popleft())
                    else:
                        yield _result_or_cancel(fs.popleft(), end_time - time.monotonic())
            finally:
                for future in fs:
                    if not future.done():
                        future.cancel()
                if bar is not None:
                    bar.close()

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
        if wait:
            self._waiter.join()
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


def _chunks(calls, chunksize):
    while True:
        chunk = tuple(itertools.islice(calls, chunksize))
        if not chunk:
            return
        yield chunk


def _known_length(iterables, chunksize):
    """The number of jobs of a map over iterables that all have a length, else None."""
    try:
        n = min(len(it) for it in iterables)
    except (TypeError, ValueError):
        return None
    return -(-n // chunksize)


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
