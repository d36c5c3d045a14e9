"""pyjobd client: run Python callables on a pyjobd server with concurrent.futures.

    import pyjobd
    with pyjobd.Executor("http://127.0.0.1:8080") as ex:
        print(list(ex.map(lambda x: x * x, range(10))))
"""

from concurrent.futures import CancelledError, wait  # noqa: F401

from .errors import (Cancelled, InvalidPayloadError, JobError, JobInterruptedError,
                     JobTimeoutError, PayloadTooLargeError, PyjobdError,
                     PythonVersionMismatchError, RemoteError, RemoteTraceback, ResultError,
                     ResultPicklingError, ResultUnpicklingError, ServerConnectionError,
                     ServerError, SoftTimeout, UnknownJobError, WorkerCrashedError)
from .aio import AsyncExecutor, AsyncJobFuture, as_completed
from .executor import Executor, JobFuture
from .progress import Bar as ProgressBar, progress
from .pickling import Pickler, dump, dumps, loads, register, wrap_non_picklable_objects
from .retry import Retry

__version__ = "0.1.0"

__all__ = [
    "Executor", "JobFuture", "AsyncExecutor", "AsyncJobFuture", "Retry", "progress", "ProgressBar",
    "PyjobdError", "ServerError", "ServerConnectionError", "PythonVersionMismatchError",
    "JobError", "JobTimeoutError", "WorkerCrashedError", "InvalidPayloadError", "ResultError",
    "JobInterruptedError", "UnknownJobError", "RemoteError", "RemoteTraceback",
    "PayloadTooLargeError", "ResultPicklingError", "ResultUnpicklingError",
    "SoftTimeout", "Cancelled",
    "wrap_non_picklable_objects", "register", "dump", "dumps", "loads", "Pickler",
    "CancelledError", "as_completed", "wait",
]
