"""Module-level job functions for the benchmark (importable by the bench process, by
loky/PPE workers, and by pyjobd workers started with --worker-cwd bench/, whose
directory the worker puts on sys.path), so that
cloudpickle sends them *by reference*: the 'module-level' case of the benchmark."""

import os
import time


def inc(x):
    return x + 1


def now():
    """time.time() in the worker: when the job started, on the shared clock."""
    return time.time()


def crash(path):
    """Records the crash moment in path, then dies without cleanup (like a segfault)."""
    with open(path, "w") as f:
        f.write(repr(time.time()))
    os._exit(1)


def sleep(s):
    time.sleep(s)
    return s


def call_pickled(blob, x):
    """ProcessPoolExecutor cannot pickle a __main__ closure; this lets it run one
    shipped as cloudpickle bytes (what loky does for you)."""
    import cloudpickle
    return cloudpickle.loads(blob)(x)


def inc_ready():
    """--worker-init hook: pyjobd puts --worker-cwd (bench/) on the worker's sys.path
    when it runs an init function, so this module is importable by reference there."""
