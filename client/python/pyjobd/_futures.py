"""The futures of pyjobd.Executor and the thread that resolves them.

A JobFuture changes state once, in ``_finish``, under its condition; whichever thread
gets there first (a caller's ``result()`` long-polling its own job, the waiter thread,
``cancel()``) finishes it, and the others find it done. The waiter thread long-polls
``POST /v1/jobs/wait`` over the ids no caller is polling, and never dies of a job."""

import collections
import itertools
import logging
import os
import select
import threading
import time
import weakref
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import _base

from ._http import problem_text
from ._jobs import TERMINAL, job_outcome
from .errors import ResultError, ServerConnectionError, ServerError, UnknownJobError

log = logging.getLogger("pyjobd")

# Long-poll length asked of POST /v1/jobs/wait (the server caps waits at 60 s).
POLL_SECONDS = 30.0
# Largest number of ids in one wait request (older ids first).
MAX_WAIT_IDS = 10000
# New submissions arriving during a long-poll are folded in after at most this delay.
COALESCE_SECONDS = 0.01
# The waiter gives up (failing the pending futures) after this long without a server.
GIVE_UP_SECONDS = 60.0
# A future from submit() is left to its caller's result() (one long-poll of its own
# job) for this long before the waiter thread takes it over, unless something else
# waits for it sooner (a callback, wait(), as_completed(), done()).
HANDOFF_SECONDS = 0.02


class _Watchers(list):
    """``Future._waiters`` of a JobFuture: ``concurrent.futures.wait()`` and
    ``as_completed()`` append their waiter here, which hands the future to the
    executor's waiter thread at once (a future from ``submit`` is otherwise left to
    its caller's ``result()`` for a moment)."""

    __slots__ = ("_future",)

    def __init__(self, future):
        super().__init__()
        self._future = weakref.ref(future)

    def append(self, waiter):
        list.append(self, waiter)
        f = self._future()
        if f is not None:
            f._hurry()


class SubmitRecord:
    """What Executor.submit remembers of its last future (not the future itself, nor
    its result): whether its result was asked for, and how long its job took."""

    __slots__ = ("submitted_at", "asked", "took")

    def __init__(self, submitted_at):
        self.submitted_at = submitted_at
        self.asked = False
        self.took = None


class JobFuture(Future):
    """A concurrent.futures.Future for one pyjobd job.

    ``job_id`` is the server's id; ``job`` the last job resource seen (a dict).
    ``cancel()`` asks the server: only a job still queued there can be cancelled.
    ``running()`` stays False: the client learns about jobs when they end.

    Every change of state goes through ``_finish``, under the future's condition, and
    only from PENDING: the first of the threads that may finish a future (its
    caller's ``result()``, the waiter thread, ``cancel()``, shutdown) wins, and the
    others see it done."""

    def __init__(self, executor):
        super().__init__()
        self._waiters = _Watchers(self)
        self._executor_ref = weakref.ref(executor)
        self._http = executor._http
        self._waiter = executor._waiter
        self.job_id = None
        self.job = None
        self._deferred = False  # left to its caller for now (see _Waiter.add)
        self._record = None  # a submit()'s SubmitRecord

    # ------------------------------------------------------------- the one transition

    def _finish(self, kind, value=None, job=None):
        """Finishes the future: kind "result", "exception" or "cancelled". Returns
        True when this call finished it, False when it was already done."""
        with self._condition:
            if self._state not in (_base.PENDING, _base.RUNNING):
                return False
            if job is not None:
                self.job = job
            if kind == "result":
                self._result = value
                self._state = _base.FINISHED
                for w in self._waiters:
                    w.add_result(self)
            elif kind == "exception":
                self._exception = value
                self._state = _base.FINISHED
                for w in self._waiters:
                    w.add_exception(self)
            else:
                # Straight to CANCELLED_AND_NOTIFIED: the server confirmed it, nothing
                # will run it (stdlib futures pass through CANCELLED until their
                # executor notices).
                self._state = _base.CANCELLED_AND_NOTIFIED
                for w in self._waiters:
                    w.add_cancelled(self)
            self._condition.notify_all()
        if self._record is not None and self._record.took is None:
            self._record.took = time.monotonic() - self._record.submitted_at
        if self.job_id is not None:
            self._waiter.forget(self.job_id)
        self._invoke_callbacks()
        return True

    def _invoke_callbacks(self):
        # As the stdlib's, but a callback raising any BaseException (SystemExit...)
        # neither stops the others nor escapes into the thread that finished the
        # future (the waiter thread, or a caller's result()); Ctrl-C in the main
        # thread still interrupts.
        for callback in self._done_callbacks:
            try:
                callback(self)
            except BaseException as e:  # noqa: B902 -- see above
                if isinstance(e, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
                    raise
                _base.LOGGER.exception("exception calling callback for %r", self)

    def set_result(self, result):
        if not self._finish("result", result):
            raise InvalidStateError(f"{self._state}: {self!r}")

    def set_exception(self, exception):
        if not self._finish("exception", exception):
            raise InvalidStateError(f"{self._state}: {self!r}")

    # ------------------------------------------------------------- waiting

    def _hurry(self):
        """Something waits for this future other than result(): let the waiter
        thread resolve it now rather than after its hand-off delay."""
        if self._deferred:
            self._waiter.hurry(self)

    def done(self):
        if super().done():
            return True
        self._hurry()
        return False

    def running(self):
        self._hurry()
        return super().running()

    def add_done_callback(self, fn):
        self._hurry()
        super().add_done_callback(fn)

    def result(self, timeout=None):
        if self._record is not None:
            self._record.asked = True
        if self._state == _base.PENDING and self.job_id is not None:
            timeout = self._wait_here(timeout)
        return super().result(timeout)

    def exception(self, timeout=None):
        if self._record is not None:
            self._record.asked = True
        if self._state == _base.PENDING and self.job_id is not None:
            timeout = self._wait_here(timeout)
        return super().exception(timeout)

    def _wait_here(self, timeout):
        """Long-polls this job from the calling thread (GET /v1/jobs/{id}?wait=S),
        unless the waiter thread already has it in a request or another thread is
        at it. Returns what is left of timeout, for the wait on the condition after
        (the waiter thread resolves the future whenever this gives up)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = self._waiter
        while self._state == _base.PENDING:
            wait = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - time.monotonic())
            if wait < 0.001 or not waiter.claim(self):
                break
            try:
                try:
                    resp = self._http.request("GET", f"/v1/jobs/{self.job_id}?wait={wait:.3f}")
                except ServerConnectionError:
                    break  # the waiter thread retries (and gives up) for it
                if resp.status == 200:
                    job = resp.json()
                    if isinstance(job, dict) and job.get("status") in TERMINAL:
                        self._finish(*job_outcome(job), job=job)
                    elif isinstance(job, dict):
                        self.job = job
                elif resp.status == 404:
                    self._finish("exception", waiter.unknown_job_error(self.job_id, self.job))
                else:
                    log.debug("GET job %s: HTTP %s", self.job_id, resp.status)
                    break
            finally:
                waiter.release(self)
        if deadline is None:
            return None
        return max(0.0, deadline - time.monotonic())

    # ------------------------------------------------------------- server actions

    def cancel(self):
        with self._condition:
            if self._state in (_base.CANCELLED, _base.CANCELLED_AND_NOTIFIED):
                return True
            if self._state != _base.PENDING:
                return False
        if self.job_id is None:
            self._finish("cancelled")
            return self.cancelled()
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
                if job.get("status") == "cancelled":
                    self._finish("cancelled", job=job)
                    return self.cancelled()
                if job.get("status") in TERMINAL:  # it ended first: that is its outcome
                    self._finish(*job_outcome(job), job=job)
            return self.cancelled()
        if resp.status not in (404, 409):
            log.warning("cancel of job %s: %s", self.job_id, problem_text(resp)[0])
        return self.cancelled()

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
        return executor._track([resp.json()], defer=True)[0]

    def __repr__(self):
        return super().__repr__()[:-1] + f" job={self.job_id}>"


class _Waiter:
    """Resolves an executor's futures in the background: one thread, with POST
    /v1/jobs/wait long-polls (FIRST_COMPLETED) over the pending ids.

    A future from ``submit`` is first left to its caller (``result()`` long-polls its
    own job, one request and no hand-off between threads); the thread takes it over
    HANDOFF_SECONDS later, or at once when anything else waits for it (a callback,
    ``wait``, ``as_completed``, ``done()``) or its caller gives up. Futures of ``map``
    are the thread's from the start. The thread never dies of a job: what goes wrong
    with one job fails that future only."""

    def __init__(self, http):
        self._http = http
        self._pending = {}   # job id -> JobFuture: every unresolved future, oldest first
        self._eligible = {}  # job id -> JobFuture: those the thread polls, oldest first
        self._deferred = collections.deque()  # (due, future): left to their callers until due
        self._fetching = set()  # ids a caller's result() is long-polling
        self._inflight = set()  # ids of the thread's wait request under way
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._new = False
        self._closing = False
        self._sleep_until = 0.0  # when the thread wakes by itself next (inf: never)
        self._max_ids = MAX_WAIT_IDS
        self._thread = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        weakref.finalize(self, _close_fds, self._wake_r, self._wake_w)

    # -------------------------------------------------------------- other threads

    def _wake(self):
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _ensure_thread(self):
        # Under self._lock. A thread that ended (closing with nothing left, or after
        # failing everything) is replaced by a new one.
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="pyjobd-waiter", daemon=True)
            self._thread.start()

    def add(self, futures, defer=False):
        """Tracks futures (submitted, not finished). ``defer``: left to their caller
        for HANDOFF_SECONDS first."""
        wake = False
        with self._lock:
            due = time.monotonic() + HANDOFF_SECONDS
            for f in futures:
                self._pending[f.job_id] = f
                if defer and not self._closing:
                    f._deferred = True
                    self._deferred.append((due, f))
                else:
                    self._eligible[f.job_id] = f
                    self._new = True
                    wake = True
            if self._deferred and due < self._sleep_until:
                wake = True  # the thread sleeps longer than that: it must set its clock
            self._ensure_thread()
            if wake:
                self._cond.notify_all()
        if wake:
            self._wake()

    def _make_eligible(self, f):
        # Under self._lock.
        f._deferred = False
        jid = f.job_id
        if jid in self._pending and jid not in self._fetching and jid not in self._eligible:
            self._eligible[jid] = f
            self._new = True
            return True
        return False

    def hurry(self, f):
        with self._lock:
            if not self._make_eligible(f):
                return
            self._ensure_thread()
            self._cond.notify_all()
        self._wake()

    def claim(self, f):
        """For a caller's result(): True if it may long-poll f itself (then it must
        release(f) after), False when the thread has it in a request already or
        another caller polls it."""
        with self._lock:
            jid = f.job_id
            if jid not in self._pending or jid in self._inflight or jid in self._fetching:
                return False
            self._fetching.add(jid)
            self._eligible.pop(jid, None)
            f._deferred = False
            return True

    def release(self, f):
        with self._lock:
            self._fetching.discard(f.job_id)
            if not self._make_eligible(f):
                return  # resolved (the usual case)
            self._ensure_thread()
            self._cond.notify_all()
        self._wake()

    def forget(self, job_id):
        with self._lock:
            self._pending.pop(job_id, None)
            self._eligible.pop(job_id, None)

    def get(self, job_id):
        """The future already tracking job_id, or None."""
        with self._lock:
            return self._pending.get(job_id)

    def pending(self):
        with self._lock:
            return list(self._pending.values())

    def close(self):
        """Exit once nothing is pending (futures still pending keep resolving)."""
        with self._lock:
            self._closing = True
            while self._deferred:
                self._make_eligible(self._deferred.popleft()[1])
            if self._pending:
                self._ensure_thread()
            self._cond.notify_all()
        self._wake()

    def join(self, timeout=None):
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def unknown_job_error(self, jid, job=None):
        return UnknownJobError(
            f"the pyjobd server at {self._http.url} no longer knows job {jid} "
            "(its record expired or was deleted, or the server restarted)", job)

    # -------------------------------------------------------------- the thread

    def _promote_due(self, now):
        # Under self._lock: deferred futures whose time has come go to the thread.
        d = self._deferred
        while d and d[0][0] <= now:
            f = d.popleft()[1]
            if f._deferred:
                self._make_eligible(f)

    def _drain(self):
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:
            pass

    def _fail_all(self, exc_factory):
        with self._lock:
            futures = list(self._pending.values())
        for f in futures:
            _finish_safely(f, "exception", exc_factory(f))

    def _next_ids(self):
        """Waits until there are ids to poll; returns them, or None to exit."""
        with self._lock:
            while True:
                now = time.monotonic()
                self._promote_due(now)
                if self._eligible:
                    ids = list(itertools.islice(self._eligible, self._max_ids))
                    self._inflight = set(ids)
                    self._new = False
                    return ids
                if self._closing and not self._pending:
                    return None
                until = self._deferred[0][0] if self._deferred else None
                self._sleep_until = until if until is not None else float("inf")
                self._cond.wait(None if until is None else max(0.0, until - now))
                self._sleep_until = 0.0

    def _run(self):
        conn = None
        failing_since = None
        backoff = 0.05
        crashes = 0
        try:
            while True:
                ids = None
                try:
                    ids = self._next_ids()
                    if ids is None:
                        return
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
                    crashes = 0
                except Exception:
                    # A bug here must not leave futures pending forever: log it, go on,
                    # and after repeated failures fail what is pending and stop (a new
                    # thread starts with the next submission).
                    crashes += 1
                    log.exception("pyjobd waiter thread: unexpected error (%d in a row)", crashes)
                    if conn is not None:
                        conn.close()
                        conn = None
                    if crashes >= 5:
                        self._fail_all(lambda f: ServerError(
                            f"the pyjobd client's waiter thread failed repeatedly while waiting "
                            f"for job {f.job_id} (see the log)", url=self._http.url))
                        return
                    time.sleep(0.2 * crashes)
                finally:
                    if ids is not None:
                        with self._lock:
                            self._inflight = set()
        finally:
            if conn is not None:
                conn.close()

    def _await_answer(self, conn):
        """Waits for the long-poll's answer; False when it should be abandoned because
        new ids are to be polled (after COALESCE_SECONDS) or the executor is closing
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
            with self._lock:
                if self._deferred:
                    limit = max(0.0, min(limit, self._deferred[0][0] - now))
                self._sleep_until = now + limit  # add() wakes us for an earlier hand-off
            r, _, _ = select.select([sock, self._wake_r], [], [], limit)
            self._sleep_until = 0.0
            if sock in r:
                return True
            if self._wake_r in r:
                self._drain()
            with self._lock:
                self._promote_due(time.monotonic())
                if self._closing and not self._pending:
                    return False
                if self._new and abandon_at is None:
                    abandon_at = time.monotonic() + COALESCE_SECONDS
            if abandon_at is not None and time.monotonic() >= abandon_at:
                return False

    def _take(self, jid):
        with self._lock:
            self._eligible.pop(jid, None)
            return self._pending.get(jid)

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
                f = self._take(job.get("id"))
                if f is not None:
                    _finish_safely(f, None, job)
            for jid in data.get("unknown") or ():
                f = self._take(jid)
                if f is not None:
                    _finish_safely(f, "exception", self.unknown_job_error(jid, f.job))
            return
        if resp.status in (400, 413) and len(ids) > 1:
            # Too many ids for one request on this server: ask for fewer.
            self._max_ids = max(1, len(ids) // 2)
            return
        if resp.status in (429, 500, 502, 503, 504):
            time.sleep(1.0)
            return
        err = self._http.error("POST", "/v1/jobs/wait", resp)
        with self._lock:
            futures = [self._pending[i] for i in ids if i in self._pending]
        for f in futures:
            _finish_safely(f, "exception", ServerError(
                f"cannot wait for job {f.job_id}: {err}", status=err.status, problem=err.problem,
                url=err.url))


def _close_fds(*fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _finish_safely(f, kind, value):
    """Finishes f from the waiter thread: with kind None, value is the terminal job.
    Nothing raised here (an unpickling SystemExit, a callback's BaseException) may
    end the thread: it fails this future at most."""
    try:
        if kind is None:
            f._finish(*job_outcome(value), job=value)
        else:
            f._finish(kind, value)
    except BaseException as e:  # noqa: B902 -- see the docstring
        log.error("pyjobd: finishing the future of job %s raised %s: %s", f.job_id,
                  e.__class__.__name__, e)
        try:
            f._finish("exception", ResultError(
                f"job {f.job_id}: its outcome could not be delivered to this future: "
                f"{e.__class__.__name__}: {e}", f.job))
        except BaseException:
            pass
