"""The joblib backend ``"pyjobd"``: ``joblib.Parallel`` (and scikit-learn's ``n_jobs``)
running on a pyjobd server.

    import joblib
    import pyjobd.joblib                      # registers the backend "pyjobd"

    with joblib.parallel_backend("pyjobd", url="http://127.0.0.1:8080"):
        print(joblib.Parallel()(joblib.delayed(pow)(2, i) for i in range(10)))

Importing this module registers the backend (as joblib's Dask backend registers on the
import of its module); ``register()`` registers it again, under another name, with
defaults, or as joblib's default backend.

Each batch of tasks joblib makes is one job. When a task fails (or ``Parallel``'s
``timeout`` passes), the batches still queued or running on the server are cancelled
there, the running ones by killing their workers (``POST /v1/jobs/{id}/cancel?force=true``),
as loky kills its workers. Works with joblib 1.2 (Debian 12) and later; with joblib 1.3
and later also ``parallel_config`` and ``Parallel(return_as="generator")``.
"""

import concurrent.futures
import functools
import logging
import multiprocessing
import os
import queue
import threading
import time
import uuid
import weakref

import joblib
from joblib._parallel_backends import FallbackToBackend, SequentialBackend, ThreadingBackend
from joblib.parallel import AutoBatchingMixin, ParallelBackendBase

from ._http import HTTPClient, problem_text
from .errors import ServerError
from .executor import Executor

log = logging.getLogger("pyjobd")

__all__ = ["PyjobdBackend", "ParallelTimeoutError", "register", "parallel_config"]

#: How long the server's worker count (for ``n_jobs=-1``) is reused before asking again.
WORKERS_TTL = 1.0

# joblib >= 1.3 takes results through completion callbacks and raises the first error
# as soon as it arrives. joblib 1.2 waits for the batches in order: a task failing in
# batch 5 would be raised only once batches 0-4 end, however long they run. Here the
# batches still pending then fail with that error too, so that 1.2 raises it at once
# (and aborts the rest) as later versions do.
_FAIL_FAST = not hasattr(ParallelBackendBase, "supports_retrieve_callback")


class ParallelTimeoutError(multiprocessing.TimeoutError, TimeoutError):
    """``Parallel(timeout=...)`` passed while waiting for a batch (joblib 1.2; later
    joblib versions raise their own). Both joblib's ``multiprocessing.TimeoutError``
    and the builtin ``TimeoutError``, so either ``except`` catches it."""


def _make_runners():
    # Defined in a function so that cloudpickle ships them by value: the server's
    # workers do not have the pyjobd package (and need not have joblib either, unless
    # the tasks themselves use it). Each job carries its runner: keep them small.
    def run_tasks(tasks, nesting_level):
        try:
            import joblib
            from joblib._parallel_backends import SequentialBackend, ThreadingBackend
        except ImportError:
            return [fn(*args, **kwargs) for fn, args, kwargs in tasks]
        # A Parallel inside a task uses threads of this worker (sequential deeper
        # down), as under loky; never the server again, whose workers could all end up
        # waiting for jobs that no worker is left to run.
        cls = ThreadingBackend if nesting_level <= 1 else SequentialBackend
        config = getattr(joblib, "parallel_config", None) or joblib.parallel_backend
        with config(cls(nesting_level=nesting_level), n_jobs=None):
            return [fn(*args, **kwargs) for fn, args, kwargs in tasks]

    def run_tasks_limited(tasks, nesting_level, threads):
        # inner_max_num_threads: thread pools loaded already (by the unpickling of the
        # arguments) through threadpoolctl, those the tasks load through the variables
        # they read (as loky sets them for its workers). Both restored afterwards.
        import contextlib
        import os
        names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS",
                 "NUMEXPR_NUM_THREADS")
        saved = {name: os.environ.get(name) for name in names}
        try:
            os.environ.update({name: str(threads) for name in names})
            try:
                from threadpoolctl import threadpool_limits
                limits = threadpool_limits(limits=threads)
            except ImportError:
                limits = contextlib.nullcontext()
            with limits:
                return run_tasks(tasks, nesting_level)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    return run_tasks, run_tasks_limited


_run_tasks, _run_tasks_limited = _make_runners()


class _Batch(concurrent.futures.Future):
    """What ``apply_async``/``submit`` answer: a Future with the ``get`` of
    ``multiprocessing``'s AsyncResult, which joblib 1.2 calls."""

    job_id = None

    def get(self, timeout=None):
        try:
            return self.result(timeout)
        except concurrent.futures.TimeoutError:
            if self.done():
                raise  # the job's own timeout (pyjobd.JobTimeoutError), not Parallel's
            raise ParallelTimeoutError(
                f"joblib.Parallel(timeout={timeout}): no result from pyjobd job {self.job_id} "
                f"within {timeout} s; the other jobs of this call are cancelled") from None


class _Callbacks:
    """Runs joblib's completion callbacks in order on a thread of their own: they
    dispatch the next batches (HTTP requests), which must not hold up the executor's
    waiter thread that resolves every future."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queue = None

    def put(self, fn, arg):
        with self._lock:
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                threading.Thread(target=_callback_loop, args=(self._queue,), daemon=True,
                                 name="pyjobd-joblib-callbacks").start()
            self._queue.put((fn, arg))

    def stop(self):
        """The thread ends after the callbacks already queued."""
        with self._lock:
            if self._queue is not None:
                self._queue.put(None)
                self._queue = None


def _callback_loop(q):
    while True:
        item = q.get()
        if item is None:
            return
        fn, arg = item
        try:
            fn(arg)
        except BaseException:  # joblib's callback failing must not stop the others
            log.exception("pyjobd joblib backend: a joblib completion callback failed")
        del item, fn, arg


class PyjobdBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib backend that runs each batch of tasks as one pyjobd job.

    ``url``: the server (default ``$PYJOBD_URL``). ``token``: its bearer token (default
    ``$PYJOBD_TOKEN``). ``job_timeout``: seconds after which the server kills a job,
    i.e. one *batch* of tasks (``Parallel(batch_size=1)`` for one task per job).
    ``priority``, ``max_retries``, ``retry``, ``metadata``: as in
    ``Executor.submit_with``, for every job. ``pickle_by_value``, ``pickler``,
    ``python_check``: as in ``pyjobd.Executor``.

    ``n_jobs=-1`` (joblib's default under ``parallel_backend``) is the server's worker
    count (``GET /v1/info``), ``-2`` one less, and so on; at least 2, because joblib
    runs ``n_jobs=1`` in the calling process, as it does for every backend (an explicit
    ``n_jobs=1`` does that here too). A larger ``n_jobs`` than the server has workers
    keeps that many batches queued there.
    """

    supports_timeout = True
    supports_retrieve_callback = True  # joblib >= 1.3: results come through callbacks
    supports_return_generator = True
    supports_inner_max_num_threads = True
    supports_sharedmem = False
    uses_threads = False
    default_n_jobs = -1

    def __init__(self, url=None, token=None, *, job_timeout=None, priority=None,
                 max_retries=None, retry=None, metadata=None, pickle_by_value=None,
                 pickler=None, python_check=True, nesting_level=None,
                 inner_max_num_threads=None):
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
        url = url or os.environ.get("PYJOBD_URL")
        if not url:
            raise ValueError(
                "the joblib backend 'pyjobd' needs the server's URL: "
                "joblib.parallel_backend('pyjobd', url='http://HOST:PORT'), or set PYJOBD_URL")
        if token is None:
            token = os.environ.get("PYJOBD_TOKEN") or None
        if retry is not None and max_retries is not None:
            raise ValueError("give retry=pyjobd.Retry(max=...) or max_retries, not both")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        self._executor = Executor(url, token, timeout=job_timeout, python_check=python_check,
                                  pickle_by_value=pickle_by_value, pickler=pickler, retry=retry)
        self.url = self._executor.url
        self._http = HTTPClient(url, token)  # for the forced cancels
        self._options = {"priority": priority, "max_retries": max_retries}
        self._metadata = dict(metadata or {})
        self._lock = threading.Lock()
        self._pending = {}  # job id -> (JobFuture, _Batch), oldest first
        self._generation = 0  # +1 at each abort: callbacks of older jobs are dropped
        self._refusing = False  # after an abort, until the next Parallel call starts
        self._call_id = None
        self._workers = None
        self._workers_at = 0.0
        self._callbacks = _Callbacks()
        weakref.finalize(self, self._callbacks.stop)
        #: Jobs this backend has submitted (each one a batch of tasks).
        self.jobs_submitted = 0
        # A wrong URL or token fails here, with the server's answer, not at the first task.
        self._server_workers()

    def __repr__(self):
        return f"{type(self).__name__}(url={self.url!r})"

    def __reduce__(self):
        raise TypeError("the pyjobd joblib backend holds a connection to its server and "
                        "cannot be pickled; inside a task, joblib uses threads of the worker")

    # ------------------------------------------------------------------ sizes

    def _server_workers(self):
        now = time.monotonic()
        if self._workers is None or now - self._workers_at > WORKERS_TTL:
            info = self._executor.info() or {}
            workers = info.get("workers")
            if not isinstance(workers, int):
                raise ServerError(f"GET {self.url}/v1/info: no worker count in {info!r}",
                                  url=self.url)
            self._workers, self._workers_at = workers, now
        return self._workers

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        n_jobs = int(n_jobs)
        if n_jobs < 0:
            return max(self._server_workers() + 1 + n_jobs, 2)
        return n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, **backend_args):
        if n_jobs == 1:
            # joblib's meaning of n_jobs=1 (no parallelism, in this process), which
            # joblib >= 1.3 applies itself whatever the backend.
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.parallel = parallel
        return self.effective_n_jobs(n_jobs)

    def _nested_level(self):
        return (self.nesting_level or 0) + 1

    def get_nested_backend(self):
        level = self._nested_level()
        cls = ThreadingBackend if level <= 1 else SequentialBackend
        return cls(nesting_level=level), None

    # ------------------------------------------------------------------ calls

    def start_call(self):
        with self._lock:
            self._refusing = False
            self._call_id = uuid.uuid4().hex

    def stop_call(self):
        pass

    def terminate(self):
        self._callbacks.stop()
        self.reset_batch_stats()

    def close(self):
        """Cancels what is still running for this backend and releases its connections
        (the backend is not usable afterwards)."""
        self.abort_everything(ensure_ready=False)
        self._callbacks.stop()
        self._executor.shutdown(wait=False)
        self._http.close()

    def apply_async(self, func, callback=None):
        """joblib < 1.5 calls this; see ``submit``."""
        return self.submit(func, callback)

    def submit(self, func, callback=None):
        """Submits one batch as a job; ``callback`` runs when it ends (in order, on the
        backend's callback thread). Never raises: a batch that cannot be submitted
        (pickling, the server) fails with that error, which joblib raises."""
        batch = _Batch()
        with self._lock:
            generation = self._generation
            refused = self._refusing
            call_id = self._call_id
        if refused:  # joblib dispatched after an abort: nothing is sent
            batch.cancel()
            return batch
        items = getattr(func, "items", None)
        if isinstance(items, list) and self.inner_max_num_threads is None:
            fn, args = _run_tasks, (items, self._nested_level())
        elif isinstance(items, list):
            fn, args = _run_tasks_limited, (items, self._nested_level(), self.inner_max_num_threads)
        else:  # not joblib's BatchedCalls: sent as it is (the worker needs joblib)
            fn, args = func, ()
        metadata = dict(self._metadata)
        metadata.update(joblib_call=call_id, joblib_tasks=len(items) if isinstance(items, list) else None)
        try:
            fut = self._executor.submit_with(fn, args, metadata=metadata, **self._options)
        except BaseException as e:
            batch.set_exception(e)
            if callback is not None:
                self._callbacks.put(callback, batch)
            return batch
        batch.job_id = fut.job_id
        with self._lock:
            late = generation != self._generation
            if not late:
                self._pending[fut.job_id] = (fut, batch)
                self.jobs_submitted += 1
        if late:  # aborted while this one was being sent: it goes too
            self._cancel_on_server([fut.job_id])
        fut.add_done_callback(functools.partial(self._job_done, batch, callback, generation))
        return batch

    def _job_done(self, batch, callback, generation, fut):
        # On the executor's waiter thread: resolve the batch, hand joblib's callback
        # (which dispatches more batches) to the callback thread.
        with self._lock:
            self._pending.pop(fut.job_id, None)
            current = generation == self._generation
            others = [b for _, b in self._pending.values()] if _FAIL_FAST and current else ()
        exc = None
        try:
            if fut.cancelled():
                batch.cancel()
            else:
                exc = fut.exception()
                if exc is None:
                    batch.set_result(fut.result())
                else:
                    batch.set_exception(exc)
        except BaseException as e:  # a state race: the batch says what happened
            if not batch.done():
                batch.set_exception(e)
        if exc is not None:
            for other in others:  # joblib 1.2 raises it from whichever batch it waits for
                try:
                    other.set_exception(exc)
                except concurrent.futures.InvalidStateError:
                    pass
        if current and callback is not None:
            self._callbacks.put(callback, batch)

    def retrieve_result_callback(self, out):
        """joblib >= 1.3, on the callback thread: the batch's results (or its error)."""
        return out.result()

    # ------------------------------------------------------------------ aborting

    def abort_everything(self, ensure_ready=True):
        """A task failed (or Parallel's timeout passed): every job of this backend still
        queued or running on the server is cancelled there, running ones by killing
        their worker, newest first (so that workers freed meanwhile take nothing that is
        about to be cancelled). No callback of those jobs reaches joblib, and nothing
        more is submitted until the next Parallel call."""
        with self._lock:
            self._generation += 1
            self._refusing = True
            ids = list(self._pending)
            self._pending.clear()
        self._cancel_on_server(ids)
        self.reset_batch_stats()

    def _cancel_on_server(self, ids):
        for jid in reversed(ids):
            try:
                resp = self._http.request("POST", f"/v1/jobs/{jid}/cancel?force=true")
            except ServerError as e:
                log.warning("pyjobd joblib backend: cannot cancel job %s: %s", jid, e)
                continue
            if resp.status not in (200, 404, 409):  # 409: it ended meanwhile
                log.warning("pyjobd joblib backend: cancel of job %s: HTTP %s: %s", jid,
                            resp.status, problem_text(resp)[0])


def register(name="pyjobd", make_default=False, **defaults):
    """Registers the backend with joblib as ``name`` (importing this module has done it
    for ``"pyjobd"``). ``defaults`` (``url``, ``token``, any ``PyjobdBackend`` option)
    apply where ``parallel_backend``/``Parallel(backend=name)`` do not give them;
    ``make_default=True`` makes it joblib's default backend, so that every
    ``Parallel(n_jobs=...)`` without a backend runs on the server."""
    factory = functools.partial(PyjobdBackend, **defaults) if defaults else PyjobdBackend
    joblib.register_parallel_backend(name, factory, make_default=make_default)


def parallel_config(n_jobs=-1, **backend_params):
    """A ``with`` block whose ``Parallel`` calls run on the server, on every joblib:
    ``joblib.parallel_config(backend="pyjobd", ...)`` where joblib has it (1.3 and
    later), else ``joblib.parallel_backend("pyjobd", ...)``. ``backend_params``: ``url``,
    ``token``, ``inner_max_num_threads`` and the ``PyjobdBackend`` options."""
    config = getattr(joblib, "parallel_config", None)
    if config is not None:
        return config(backend="pyjobd", n_jobs=n_jobs, **backend_params)
    return joblib.parallel_backend("pyjobd", n_jobs=n_jobs, **backend_params)


register()
