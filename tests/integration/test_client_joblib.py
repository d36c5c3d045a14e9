"""The joblib backend "pyjobd" (client/python/pyjobd/joblib.py) against the real server.

joblib.Parallel and scikit-learn's n_jobs under joblib.parallel_backend("pyjobd", ...):
results as local, auto-batching, n_jobs=-1, timeouts, errors with their type and the
other jobs cancelled on the server, crashes, nested parallelism, bad URL and token.

Every test runs as its own tenant of one server (a token file), so that the server's
job listing for that tenant is that test's jobs and nothing else.
"""

import multiprocessing
import os
import signal
import sys
import threading
import time

import pytest

from conftest import REPO_ROOT, start_server, stop_server

CLIENT_DIR = os.path.join(REPO_ROOT, "client", "python")
if CLIENT_DIR not in sys.path:
    sys.path.insert(0, CLIENT_DIR)

joblib = pytest.importorskip("joblib")  # Debian: python3-joblib
from joblib import Parallel, delayed  # noqa: E402

import pyjobd  # noqa: E402
import pyjobd.joblib  # noqa: E402  (registers "pyjobd")

TENANTS = 40
IS_ROOT = os.geteuid() == 0
# Tenants' workers share one uid here (as in test_tenancy.py): the server accepts that
# only when told.
ROOT_OK = (["--allow-root-workers"] if IS_ROOT else []) + ["--allow-shared-worker-uid"]
# This module's functions and classes travel by value (the workers cannot import it).
BY_VALUE = [__name__]
# The bound on any one joblib call of these tests (a hang fails, it does not block).
BOUND = 25.0

_next_tenant = iter(range(TENANTS))


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tf = tmp_path_factory.mktemp("joblib") / "tokens"
    tf.write_text("".join(f"t{i}:token-joblib-{i:02d}-xxxxxxxxxxxxxxxx\n" for i in range(TENANTS)))
    tf.chmod(0o600)
    s = start_server("joblib", "--workers", "2", "--default-timeout", "0", "--token-file", str(tf),
                     *ROOT_OK)
    try:
        yield s
    finally:
        stop_server(s)


class Tenant:
    def __init__(self, srv, i):
        self.srv = srv
        self.url = srv.base_url
        self.token = f"token-joblib-{i:02d}-xxxxxxxxxxxxxxxx"

    def backend(self, **options):
        """parallel_backend("pyjobd", ...) as this tenant (a with block)."""
        options.setdefault("pickle_by_value", BY_VALUE)
        return joblib.parallel_backend("pyjobd", url=self.url, token=self.token, **options)

    def get(self, path):
        r = self.srv.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
        assert r.status == 200, f"GET {path}: {r!r}"
        return r.json()

    def jobs(self):
        """Every job of this tenant on the server (the listing, all pages)."""
        out, cursor = [], None
        while True:
            page = self.get("/v1/jobs?limit=1000" + (f"&cursor={cursor}" if cursor else ""))
            out.extend(page["jobs"])
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def settled_jobs(self, timeout=10.0):
        """The listing once no job is queued or running (fails after timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.jobs()
            if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs):
                return jobs
            assert time.monotonic() < deadline, \
                f"jobs still queued/running {timeout}s later: {[(j['id'], j['status']) for j in jobs]}"
            time.sleep(0.05)


@pytest.fixture
def tenant(srv):
    return Tenant(srv, next(_next_tenant))


class Hang(BaseException):
    """A joblib call of a test ran past BOUND seconds."""


def bounded(fn, seconds=BOUND):
    """fn() in this thread (joblib's backend context is thread-local), failing the test
    if it has not returned within `seconds` (SIGALRM interrupts the waits)."""
    def on_alarm(signum, frame):
        raise Hang(f"joblib call still running after {seconds}s (a hang)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    except Hang as e:
        pytest.fail(str(e))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------- tasks
# (module-level, sent by value: see BY_VALUE)


class TaskFailed(Exception):
    """A task's own exception type, defined here: it must come back as this class."""


def square(x):
    return x * x


def pid_of(_):
    return os.getpid()


def fail_after(seconds, message):
    time.sleep(seconds)
    raise TaskFailed(message)


def nap(seconds):
    time.sleep(seconds)
    return seconds


def crash():
    os._exit(3)


def meet(directory, name, count, limit=15.0):
    """Writes its marker and waits until `count` markers exist: returns only when that
    many tasks ran at the same time."""
    open(os.path.join(directory, name), "w").close()
    deadline = time.monotonic() + limit
    while len(os.listdir(directory)) < count:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
    return os.getpid()


def nested(i):
    """Runs a Parallel inside the task, and one inside that: what joblib gives each."""
    import threading

    import joblib
    from joblib import Parallel, delayed

    def active():
        backend, _ = joblib.parallel.get_active_backend()
        return type(backend).__name__, backend.nesting_level

    def leaf(j):
        return active() + (j,)

    def middle(j):
        inner = Parallel(n_jobs=2)(delayed(leaf)(k) for k in range(2))
        return active() + (threading.get_ident(), inner)

    return os.getpid(), active(), Parallel(n_jobs=2)(delayed(middle)(j) for j in range(4))


def openmp_threads():
    """The OpenMP thread pools' sizes in the worker (scikit-learn loads libgomp)."""
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_info
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"]


# ----------------------------------------------------------------------------- registration


def test_importing_registers_the_backend():
    from joblib.parallel import BACKENDS
    assert BACKENDS["pyjobd"] is pyjobd.joblib.PyjobdBackend


def test_register_with_defaults_and_parallel_backend_args(tenant):
    pyjobd.joblib.register("pyjobd-test-defaults", url=tenant.url, token=tenant.token,
                           pickle_by_value=BY_VALUE)
    out = bounded(lambda: Parallel(n_jobs=2, backend="pyjobd-test-defaults")(
        delayed(square)(i) for i in range(20)))
    assert out == [i * i for i in range(20)]
    assert tenant.jobs(), "nothing ran on the server"


def test_parallel_config_helper_works_on_this_joblib(tenant):
    # pyjobd.joblib.parallel_config is joblib.parallel_config where joblib has it
    # (>= 1.3), joblib.parallel_backend otherwise (1.2).
    with pyjobd.joblib.parallel_config(url=tenant.url, token=tenant.token, pickle_by_value=BY_VALUE):
        pids = bounded(lambda: Parallel()(delayed(pid_of)(i) for i in range(8)))
    assert os.getpid() not in pids
    assert len(tenant.jobs()) >= 2


# ----------------------------------------------------------------------------- results


def test_3000_tiny_tasks_complete_in_order_with_auto_batching(tenant):
    with tenant.backend() as (backend, _):
        out = bounded(lambda: Parallel(n_jobs=2)(delayed(square)(i) for i in range(3000)))
        assert out == [i * i for i in range(3000)]
        n = backend.jobs_submitted
    jobs = tenant.settled_jobs()
    # Auto-batching: far fewer jobs than tasks, and every job is one of this backend's.
    assert 2 <= n < 600, f"{n} jobs for 3,000 tasks: auto-batching did not batch"
    assert len(jobs) == n
    assert all(j["status"] == "succeeded" for j in jobs)
    assert sum(j["metadata"]["joblib_tasks"] for j in jobs) == 3000
    assert len({j["metadata"]["joblib_call"] for j in jobs}) == 1


def test_a_fixed_batch_size_is_the_tasks_per_job(tenant):
    with tenant.backend() as (backend, _):
        out = bounded(lambda: Parallel(n_jobs=2, batch_size=7)(delayed(square)(i) for i in range(70)))
    assert out == [i * i for i in range(70)]
    sizes = [j["metadata"]["joblib_tasks"] for j in tenant.settled_jobs()]
    # joblib splits its last slices finer (to balance the end), never coarser.
    assert sum(sizes) == 70 and max(sizes) == 7 and len(sizes) < 70, sizes


def test_gridsearchcv_n_jobs_4_same_as_local(tenant):
    np = pytest.importorskip("numpy")
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    X, y = datasets.load_iris(return_X_y=True)
    grid = {"C": [0.1, 1.0, 10.0], "gamma": [0.01, 0.1, 1.0]}

    def search(n_jobs):
        return GridSearchCV(SVC(), grid, cv=3, n_jobs=n_jobs).fit(X, y)

    local = search(1)
    with tenant.backend() as (backend, _):
        remote = bounded(lambda: search(4))
        n = backend.jobs_submitted
    assert remote.best_params_ == local.best_params_
    for key in local.cv_results_:
        if "time" in key:
            continue
        a, b = local.cv_results_[key], remote.cv_results_[key]
        if key.endswith("_score"):
            np.testing.assert_array_equal(a, b, err_msg=key)
        else:
            assert list(a) == list(b), key
    # The 27 fits (9 candidates x 3 folds) ran on the server; the refit runs here.
    jobs = tenant.settled_jobs()
    assert n >= 2 and len(jobs) == n and all(j["status"] == "succeeded" for j in jobs)
    assert sum(j["metadata"]["joblib_tasks"] for j in jobs) == 27


# ----------------------------------------------------------------------------- n_jobs


def test_n_jobs_minus_one_is_the_servers_workers(tenant, tmp_path):
    with tenant.backend() as (backend, n_jobs):
        assert n_jobs == -1  # parallel_backend's default
        assert backend.effective_n_jobs(-1) == 2 == tenant.get("/v1/info")["workers"]
        assert joblib.effective_n_jobs() == 2
        # -2 would be 1, which joblib runs in this process: at least 2 stay remote.
        assert backend.effective_n_jobs(-2) == 2
        assert backend.effective_n_jobs(5) == 5
        with pytest.raises(ValueError):
            backend.effective_n_jobs(0)
        # n_jobs=-1 runs as many tasks at once as the server has workers: each task
        # returns only once both are running.
        d = tmp_path / "meet"
        d.mkdir()
        os.chmod(d, 0o777)
        pids = bounded(lambda: Parallel(batch_size=1)(
            delayed(meet)(str(d), f"m{i}", 2) for i in range(2)))
    assert None not in pids, "the two tasks never ran at the same time"
    assert len(set(pids)) == 2 and os.getpid() not in pids


def test_explicit_n_jobs_1_runs_here_as_joblib_says(tenant):
    with tenant.backend():
        pids = Parallel(n_jobs=1)(delayed(pid_of)(i) for i in range(3))
    assert pids == [os.getpid()] * 3
    assert tenant.jobs() == []


# ----------------------------------------------------------------------------- failures


def test_a_failing_task_raises_its_type_and_the_rest_is_cancelled_on_the_server(tenant):
    tasks = [delayed(fail_after)(0.5, "task 0 failed")] + [delayed(nap)(30) for _ in range(7)]
    with tenant.backend() as (backend, _):
        t0 = time.monotonic()
        with pytest.raises(TaskFailed, match="task 0 failed") as info:
            bounded(lambda: Parallel(n_jobs=4, batch_size=1)(tasks))
        elapsed = time.monotonic() - t0
        assert isinstance(info.value.__cause__, pyjobd.RemoteTraceback)
        assert "fail_after" in str(info.value.__cause__)
        assert elapsed < 15, f"the call took {elapsed:.1f}s: it waited for the 30 s naps"
        jobs = tenant.settled_jobs()
        # pre_dispatch (2 * n_jobs) had sent all 8; the naps running (one per free
        # worker) were killed, the queued ones cancelled.
        assert len(jobs) == 8, [(j["status"]) for j in jobs]
        statuses = sorted(j["status"] for j in jobs)
        assert statuses == ["cancelled"] * 7 + ["failed"], statuses
        failed = [j for j in jobs if j["status"] == "failed"][0]
        assert failed["error"]["exc_type"].endswith("TaskFailed")
        # The backend is still usable in the same block (the workers were replaced).
        assert bounded(lambda: Parallel(n_jobs=2)(delayed(square)(i) for i in range(10))) == \
            [i * i for i in range(10)]


def test_a_task_failing_behind_a_long_one_raises_at_once(tenant):
    # joblib 1.2 waits for batches in order: without the backend's help the failure of
    # the second task would surface only when the first (30 s) ends. joblib >= 1.3
    # raises the first error that arrives; the backend makes 1.2 do the same.
    with tenant.backend():
        t0 = time.monotonic()
        with pytest.raises(TaskFailed, match="second"):
            bounded(lambda: Parallel(n_jobs=2, batch_size=1)(
                [delayed(nap)(30), delayed(fail_after)(0.2, "second")]))
        assert time.monotonic() - t0 < 15
    assert sorted(j["status"] for j in tenant.settled_jobs()) == ["cancelled", "failed"]


def test_an_error_in_a_batch_dispatched_later_raises_and_does_not_hang(tenant):
    # Task 500 cannot be pickled: it is sent by a completion callback (not by the first
    # dispatch), whose failure must reach the caller rather than stall the call.
    lock = threading.Lock()
    tasks = [delayed(square)(i) for i in range(500)] + [delayed(square)(lock)] + \
            [delayed(square)(i) for i in range(500)]
    with tenant.backend():
        with pytest.raises(TypeError, match="lock"):
            bounded(lambda: Parallel(n_jobs=2, batch_size=10)(tasks))


def test_a_task_that_kills_its_worker_raises(tenant):
    with tenant.backend():
        with pytest.raises(pyjobd.WorkerCrashedError, match="exited with code 3"):
            bounded(lambda: Parallel(n_jobs=2, batch_size=1)(
                [delayed(crash)()] + [delayed(nap)(30) for _ in range(3)]))
        jobs = tenant.settled_jobs()
        assert sorted(j["status"] for j in jobs) == ["cancelled"] * 3 + ["failed"]
        assert bounded(lambda: Parallel(n_jobs=2)(delayed(square)(i) for i in range(5))) == \
            [0, 1, 4, 9, 16]


# ----------------------------------------------------------------------------- timeouts


def test_parallel_timeout_raises_timeout_error_and_cancels(tenant):
    with tenant.backend():
        t0 = time.monotonic()
        # What joblib raises with loky, in every version (>= 1.3 raises it itself).
        with pytest.raises(multiprocessing.TimeoutError) as info:
            bounded(lambda: Parallel(n_jobs=2, batch_size=1, timeout=1.0)(
                delayed(nap)(30) for _ in range(4)))
        assert time.monotonic() - t0 < 15
    if not hasattr(joblib, "parallel_config"):  # 1.2: the backend's, also a TimeoutError
        assert isinstance(info.value, TimeoutError)
    jobs = tenant.settled_jobs()
    assert [j["status"] for j in jobs] == ["cancelled"] * 4


def test_job_timeout_is_the_servers_per_job_limit(tenant):
    with tenant.backend(job_timeout=1):
        with pytest.raises(pyjobd.JobTimeoutError, match="timeout of 1 s"):
            bounded(lambda: Parallel(n_jobs=2, batch_size=1)(
                [delayed(nap)(30), delayed(nap)(0.1)]))
    jobs = tenant.settled_jobs()
    assert all(j["timeout"] == 1 for j in jobs)
    assert "failed" in [j["status"] for j in jobs]


# ----------------------------------------------------------------------------- nesting


def test_nested_parallel_uses_threads_in_the_worker_not_the_server(tenant):
    # As under loky: a task's own Parallel gets threads of its worker (nesting level 1),
    # sequential below that; it never goes back to the server, whose workers could all
    # end up waiting for jobs that have no worker left to run them.
    with tenant.backend() as (backend, _):
        out = bounded(lambda: Parallel(n_jobs=2, batch_size=1)(delayed(nested)(i) for i in range(2)))
        n = backend.jobs_submitted
    assert n == 2 and len(tenant.settled_jobs()) == 2, "a nested Parallel reached the server"
    for pid, task_backend, results in out:
        assert pid != os.getpid()
        assert task_backend == ("ThreadingBackend", 1)
        assert len(results) == 4
        for name, level, ident, inner in results:
            assert (name, level) == ("SequentialBackend", 2)
            assert inner == [("SequentialBackend", 2, 0), ("SequentialBackend", 2, 1)]


def test_inner_max_num_threads_limits_openmp_in_the_worker(tenant):
    pytest.importorskip("threadpoolctl")
    pytest.importorskip("sklearn")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: OpenMP's default is one thread already")
    with tenant.backend():
        unlimited = bounded(lambda: Parallel(n_jobs=2, batch_size=1)(
            delayed(openmp_threads)() for _ in range(2)))
    assert all(counts and max(counts) > 1 for counts in unlimited), unlimited
    with tenant.backend(inner_max_num_threads=1):
        limited = bounded(lambda: Parallel(n_jobs=2, batch_size=1)(
            delayed(openmp_threads)() for _ in range(4)))
    assert all(counts == [1] for counts in limited), limited


# ----------------------------------------------------------------------------- joblib >= 1.3


@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_return_as_generator(tenant, return_as):
    try:
        Parallel(n_jobs=2, return_as=return_as)
    except TypeError:
        pytest.skip(f"joblib {joblib.__version__} has no return_as")
    except ValueError:
        pytest.skip(f"joblib {joblib.__version__} has no return_as={return_as!r}")
    with tenant.backend():
        gen = Parallel(n_jobs=2, return_as=return_as)(delayed(square)(i) for i in range(300))
        assert not isinstance(gen, list)
        first = bounded(lambda: next(gen))
        assert first in [i * i for i in range(300)]
        rest = bounded(lambda: list(gen))
    out = [first] + rest
    if return_as == "generator":
        assert out == [i * i for i in range(300)]
    else:
        assert sorted(out) == [i * i for i in range(300)]


# ----------------------------------------------------------------------------- bad configuration


def test_wrong_url_is_a_clear_connection_error():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(pyjobd.ServerConnectionError, match=f"127.0.0.1:{port}"):
        with joblib.parallel_backend("pyjobd", url=f"http://127.0.0.1:{port}"):
            pass


def test_bad_token_is_a_clear_401(srv):
    with pytest.raises(pyjobd.ServerError) as info:
        with joblib.parallel_backend("pyjobd", url=srv.base_url, token="not-a-token"):
            pass
    assert info.value.status == 401


def test_no_url_names_the_ways_to_give_one(monkeypatch):
    monkeypatch.delenv("PYJOBD_URL", raising=False)
    with pytest.raises(ValueError, match="PYJOBD_URL"):
        with joblib.parallel_backend("pyjobd"):
            pass


def test_url_and_token_from_the_environment(tenant, monkeypatch):
    monkeypatch.setenv("PYJOBD_URL", tenant.url)
    monkeypatch.setenv("PYJOBD_TOKEN", tenant.token)
    with joblib.parallel_backend("pyjobd", pickle_by_value=BY_VALUE):
        assert bounded(lambda: Parallel()(delayed(square)(i) for i in range(6))) == \
            [0, 1, 4, 9, 16, 25]
    assert tenant.jobs()
