"""CPython's own concurrent.futures tests, run on pyjobd.Executor against real servers.

Debian's ``libpython3.11-testsuite`` ships ``test/test_concurrent_futures.py``. Its
executor tests are mixins (``ExecutorTest``, ``WaitTests``, ``AsCompletedTests``,
``ExecutorShutdownTest``, ``ExecutorDeadlockTest``, ...) that CPython combines with
an executor mixin (``ThreadPoolMixin``, ``ProcessPoolForkMixin``, ...): here they are
combined with ``PyjobdMixin``, whose ``executor_type`` makes a ``pyjobd.Executor``
against a server started for this module, with the worker count the test asks for
(``max_workers``; and ``max_tasks_per_child`` becomes the server's
``--max-tasks-per-worker``). The test module's functions are shipped by value
(``pickle_by_value``): the server's workers do not import the test package.

Every test of those mixins runs, except the ones listed in ``INAPPLICABLE`` with the
reason (a process-local detail: ``mp_context``, private attributes such as
``_processes``, a child interpreter importing the executor class by name from
``concurrent.futures``, ...). Every other one must pass.

The suite runs in a subprocess (this file, run as a script), bounded in time, with a
report of each test's outcome; each stdlib test is one pytest test here.
"""

import faulthandler
import importlib.util
import json
import os
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CLIENT_DIR = os.path.join(REPO, "client", "python")
if CLIENT_DIR not in sys.path:
    sys.path.insert(0, CLIENT_DIR)

PYTHON = "/usr/bin/python3"
SUITE_SECONDS = 150  # the whole run (it takes about 40 s)
TEST_SECONDS = 60    # one stdlib test; a hang dumps every thread's stack and ends the run

# The stdlib mixins run here: those CPython runs for its ProcessPoolExecutor (a pyjobd
# server is a pool of worker processes), the executor-generic ones among them.
MIXINS = ("InitializerMixin", "FailingInitializerMixin", "ExecutorShutdownTest",
          "ProcessPoolShutdownTest", "WaitTests", "AsCompletedTests", "ExecutorTest",
          "ProcessPoolExecutorTest", "ExecutorDeadlockTest")

_SUBPROCESS = "a child interpreter that imports the executor class by name from concurrent.futures"

INAPPLICABLE = {
    # Executor options pyjobd has no counterpart for (the server's own flags are).
    "InitializerMixin.test_initializer":
        "initializer=/initargs= of the executor: a pyjobd server runs --worker-init "
        "(module:function) in each of its workers instead",
    "FailingInitializerMixin.test_initializer":
        "initializer= and the private executor._broken: a server whose --worker-init "
        "fails does not start its workers",
    "ExecutorTest.test_max_workers_negative":
        "max_workers= of the executor: the server's --workers sets the pool's size",
    # Child interpreters importing the class by name from concurrent.futures.
    "ExecutorShutdownTest.test_interpreter_shutdown": _SUBPROCESS,
    "ExecutorShutdownTest.test_submit_after_interpreter_shutdown": _SUBPROCESS,
    "ExecutorShutdownTest.test_hang_gh83386": _SUBPROCESS,
    # Private attributes of ProcessPoolExecutor and multiprocessing objects.
    "ProcessPoolShutdownTest.test_processes_terminate":
        "executor._processes and an mp_context Semaphore shared with the workers",
    "ProcessPoolShutdownTest.test_context_manager_shutdown":
        "constructs futures.ProcessPoolExecutor itself and reads its _processes",
    "ProcessPoolShutdownTest.test_del_shutdown":
        "constructs futures.ProcessPoolExecutor itself and reads _processes, _call_queue, "
        "_executor_manager_thread",
    "ProcessPoolShutdownTest.test_shutdown_no_wait":
        "constructs futures.ProcessPoolExecutor itself and reads _processes, _call_queue, "
        "_executor_manager_thread",
    "ProcessPoolExecutorTest.test_max_workers_too_large": "Windows only (61 processes)",
    "ProcessPoolExecutorTest.test_killed_child":
        "kills a process from executor._processes and expects the whole pool broken; a "
        "pyjobd worker killed fails only its job (WorkerCrashedError, a BrokenProcessPool: "
        "test_client_futures.py)",
    "ProcessPoolExecutorTest.test_traceback":
        "asserts the exact private class futures.process._RemoteTraceback; pyjobd attaches "
        "a pyjobd.RemoteTraceback with the same .tb and str (test_client_futures.py runs "
        "the rest of this test)",
    "ProcessPoolExecutorTest.test_ressources_gced_in_workers":
        "a multiprocessing Manager's Event proxy: the server's workers cannot connect to "
        "this process's manager (its authkey is this process's)",
    "ProcessPoolExecutorTest.test_saturation":
        "executor._processes and an mp_context Semaphore shared with the workers",
    "ProcessPoolExecutorTest.test_idle_process_reuse_one": "executor._processes",
    "ProcessPoolExecutorTest.test_idle_process_reuse_multiple": "executor._processes",
    "ProcessPoolExecutorTest.test_max_tasks_per_child": "executor._processes",
    "ProcessPoolExecutorTest.test_max_tasks_per_child_defaults_to_spawn_context":
        "executor._mp_context",
    # pyjobd pickles a call in submit(): the error is raised there, not by result().
    "ExecutorDeadlockTest.test_error_at_task_pickle":
        "pyjobd pickles the call in submit(), which raises the PicklingError itself (the "
        "stdlib pickles in a feeder thread and fails the future); the test calls submit() "
        "outside its assertRaises",
    "ExecutorDeadlockTest.test_shutdown_deadlock_pickle":
        "executor._executor_manager_thread, and the PicklingError is raised by submit() "
        "(see test_error_at_task_pickle)",
}


def load_stdlib_tests():
    """The stdlib test module, or None when the test suite is not installed."""
    if importlib.util.find_spec("test") is None:
        return None
    try:
        from test import test_concurrent_futures as tcf
    except ImportError:
        return None
    return tcf


class _ServerStarts:
    """Stands in for a multiprocessing context: the server starts its workers."""

    @staticmethod
    def get_start_method(allow_none=False):
        return "pyjobd-server"


# ProcessPoolShutdownTest and ProcessPoolExecutorTest subclass ExecutorShutdownTest and
# ExecutorTest: only their own tests are listed under their names.
OWN_TESTS_ONLY = ("ProcessPoolShutdownTest", "ProcessPoolExecutorTest")


def stdlib_test_names(tcf, name, cls):
    names = unittest.TestLoader().getTestCaseNames(cls)
    if name in OWN_TESTS_ONLY:
        own = vars(getattr(tcf, name))
        names = [n for n in names if n in own]
    return names


def pyjobd_classes(tcf, executor_type):
    """The mixins of MIXINS combined with an executor mixin whose executor_type is
    ``executor_type``: {mixin name: TestCase class}."""

    class PyjobdMixin(tcf.ExecutorMixin):
        # No "ctx": ExecutorMixin.setUp then passes no mp_context.
        def get_context(self):
            # What the tests pass as mp_context (ignored) and ask the start method
            # of (test_max_tasks_early_shutdown skips "fork").
            return _ServerStarts()

    PyjobdMixin.executor_type = staticmethod(executor_type)
    classes = {}
    for name in MIXINS:
        mixin = getattr(tcf, name)
        classes[name] = type(f"Pyjobd{name}", (mixin, PyjobdMixin, tcf.BaseTestCase),
                             {"__module__": __name__})
    return classes


def stdlib_test_ids(tcf):
    ids = []
    for name, cls in pyjobd_classes(tcf, None).items():
        ids.extend(f"{name}.{m}" for m in stdlib_test_names(tcf, name, cls))
    return ids


# ============================================================================ the run
# (this file as a script, in a subprocess: python3 test_client_conformance.py URLS OUT)


class _Recorder(unittest.TextTestResult):
    def __init__(self, out_path, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.out_path = out_path
        self.outcomes = {}
        self._t0 = None

    @staticmethod
    def key(test):
        cls = type(test).__name__
        return f"{cls[len('Pyjobd'):] if cls.startswith('Pyjobd') else cls}.{test._testMethodName}"

    def _save(self, test, outcome, detail=""):
        self.outcomes[self.key(test)] = {
            "outcome": outcome, "detail": detail,
            "seconds": round(time.monotonic() - (self._t0 or time.monotonic()), 2)}
        with open(self.out_path + ".tmp", "w") as f:
            json.dump(self.outcomes, f, indent=1)
        os.replace(self.out_path + ".tmp", self.out_path)

    def startTest(self, test):
        self._t0 = time.monotonic()
        with open(self.out_path + ".running", "w") as f:
            f.write(self.key(test))
        faulthandler.dump_traceback_later(TEST_SECONDS, exit=True)
        super().startTest(test)

    def stopTest(self, test):
        faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._save(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._save(test, "failed", self.failures[-1][1])

    def addError(self, test, err):
        super().addError(test, err)
        self._save(test, "error", self.errors[-1][1])

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._save(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._save(test, "failed", "expected failure (not a pass)")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._save(test, "passed")


def _run(urls_json, out_path):
    import pyjobd

    tcf = load_stdlib_tests()
    urls = {tuple(json.loads(k)): v for k, v in json.loads(urls_json).items()}
    by_value = [tcf, sys.modules[__name__]]

    def executor_type(max_workers=None, mp_context=None, max_tasks_per_child=None, **kwargs):
        # mp_context: the server's workers are its own processes. Everything else the
        # stdlib's constructors take is refused (no test that passes one is run).
        if kwargs:
            raise TypeError(f"pyjobd.Executor takes no {', '.join(kwargs)}")
        key = (max_workers or tcf.ExecutorMixin.worker_count, max_tasks_per_child)
        if key not in urls:
            raise LookupError(f"no server was started for (workers, max tasks) = {key}")
        return pyjobd.Executor(urls[key], pickle_by_value=by_value)

    classes = pyjobd_classes(tcf, executor_type)
    suite = unittest.TestSuite()
    for name, cls in classes.items():
        for method in stdlib_test_names(tcf, name, cls):
            reason = INAPPLICABLE.get(f"{name}.{method}")
            if reason:
                setattr(cls, method, unittest.skip(f"inapplicable: {reason}")(getattr(cls, method)))
            suite.addTest(cls(method))
    runner = unittest.TextTestRunner(
        stream=sys.stderr, verbosity=2, buffer=True,
        resultclass=lambda *a, **k: _Recorder(out_path, *a, **k))
    runner.run(suite)
    return 0


if __name__ == "__main__":
    sys.exit(_run(sys.argv[1], sys.argv[2]))


# ============================================================================ pytest

import pytest  # noqa: E402

from conftest import start_server, stop_server  # noqa: E402

TCF = load_stdlib_tests()
IDS = stdlib_test_ids(TCF) if TCF is not None else []
# (workers, --max-tasks-per-worker) of the servers the tests ask for: ExecutorMixin's
# 5 workers, the deadlock tests' max_workers=2, test_max_tasks_early_shutdown's
# ProcessPoolExecutor(3, max_tasks_per_child=1).
SERVERS = ((5, None), (2, None), (3, 1))


def test_the_cpython_test_suite_is_installed():
    assert TCF is not None, (
        "CPython's test suite is missing: apt-get install libpython3.11-testsuite "
        "(test/test_concurrent_futures.py)")
    assert len(IDS) >= 50, IDS


def test_every_inapplicable_entry_names_a_test():
    if TCF is None:
        pytest.skip("no CPython test suite (see test_the_cpython_test_suite_is_installed)")
    stale = sorted(set(INAPPLICABLE) - set(IDS))
    assert not stale, f"INAPPLICABLE names tests the stdlib suite does not have: {stale}"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if TCF is None:
        pytest.skip("no CPython test suite")
    servers = {}
    try:
        for workers, max_tasks in SERVERS:
            args = ["--workers", str(workers), "--default-timeout", "0"]
            if max_tasks:
                args += ["--max-tasks-per-worker", str(max_tasks)]
            s = start_server(f"conformance-{workers}-{max_tasks}", *args)
            servers[(workers, max_tasks)] = s
        for s in servers.values():
            s.wait_ready()
        urls = json.dumps({json.dumps(list(k)): s.base_url for k, s in servers.items()})
        out = str(tmp_path_factory.mktemp("conformance") / "report.json")
        t0 = time.monotonic()
        try:
            proc = subprocess.run([PYTHON, os.path.abspath(__file__), urls, out],
                                  capture_output=True, text=True, timeout=SUITE_SECONDS,
                                  cwd=HERE)
            log = proc.stderr
        except subprocess.TimeoutExpired as e:
            log = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            log += f"\n[the suite did not finish within {SUITE_SECONDS} s]"
        elapsed = time.monotonic() - t0
        outcomes = {}
        if os.path.exists(out):
            with open(out) as f:
                outcomes = json.load(f)
        running = None
        if os.path.exists(out + ".running"):
            with open(out + ".running") as f:
                running = f.read()
        yield {"outcomes": outcomes, "log": log, "running": running, "seconds": elapsed}
    finally:
        for s in servers.values():
            stop_server(s)


@pytest.mark.parametrize("test_id", IDS)
def test_cpython_concurrent_futures(report, test_id):
    reason = INAPPLICABLE.get(test_id)
    got = report["outcomes"].get(test_id)
    if got is None:
        hung = report["running"] == test_id
        pytest.fail(f"{test_id} has no outcome" + (" (it was running when the suite ended: "
                    "hung or killed)" if hung else "") + "\n--- suite log (tail) ---\n"
                    + report["log"][-6000:])
    if reason:
        assert got["outcome"] == "skipped", got
        pytest.skip(f"inapplicable: {reason}")
    assert got["outcome"] == "passed", f"{test_id}: {got['outcome']}\n{got['detail']}"
