"""pyjobd client: run Python callables on a pyjobd server with concurrent.futures.

    import pyjobd
    with pyjobd.Executor("http://127.0.0.1:8080") as ex:
        print(list(ex.map(lambda x: x * x, range(10))))
"""

from concurrent.futures import CancelledError, as_completed, wait  # noqa: F401

from .errors import (Cancelled, InvalidPayloadError, JobError, JobInterruptedError,
                     JobTimeoutError, PyjobdError, PythonVersionMismatchError, RemoteError,
                     RemoteTraceback, ResultError, ServerConnectionError, ServerError,
                     SoftTimeout, UnknownJobError, WorkerCrashedError)
from .executor import Executor, JobFuture
from .pickling import Pickler, dump, dumps, loads, register, wrap_non_picklable_objects
from .retry import Retry

__version__ = "0.1.0"

__all__ = [
    "Executor", "JobFuture", "Retry",
    "PyjobdError", "ServerError", "ServerConnectionError", "PythonVersionMismatchError",
    "JobError", "JobTimeoutError", "WorkerCrashedError", "InvalidPayloadError", "ResultError",
    "JobInterruptedError", "UnknownJobError", "RemoteError", "RemoteTraceback",
    "SoftTimeout", "Cancelled",
    "wrap_non_picklable_objects", "register", "dump", "dumps", "loads", "Pickler",
    "CancelledError", "as_completed", "wait",
]
