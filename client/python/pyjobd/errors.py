"""Exceptions raised by the pyjobd client.

Remote exceptions raised by the job itself are re-raised with their original type;
the remote traceback is attached as ``__cause__`` (a :class:`RemoteTraceback`), as
loky does.  Everything else that can go wrong is one of the classes below.
"""

from concurrent.futures.process import BrokenProcessPool

PICKLE_BY_VALUE_HINT = (
    "Hint: cloudpickle pickles functions and classes of importable modules *by reference* "
    "(module name + qualified name), so the server's workers must be able to import that "
    "module. If they cannot, ship the code by value instead: "
    "pyjobd.Executor(url, pickle_by_value=[your_module]) "
    "(or cloudpickle.register_pickle_by_value(your_module))."
)


class PyjobdError(Exception):
    """Base class of every error raised by the pyjobd client."""


class ServerError(PyjobdError):
    """An HTTP-level failure: the server answered with an error status or could not be
    reached. ``status`` is the HTTP status (``None`` when there was no answer) and
    ``problem`` the decoded application/problem+json body (or ``None``)."""

    def __init__(self, message, status=None, problem=None, url=None):
        super().__init__(message)
        self.status = status
        self.problem = problem
        self.url = url


class ServerConnectionError(ServerError, ConnectionError):
    """The server could not be reached (connection refused, reset, DNS failure...)."""


class PayloadTooLargeError(ServerError, ValueError):
    """The server refused a request body larger than its ``--max-request-bytes`` (HTTP
    413): typically an argument too large to send (pass a path or a URL instead, or
    raise the server's limit). ``problem`` is the server's problem+json answer, and its
    detail is in the message. Nothing was queued. Also a ``ValueError``: the argument
    was not acceptable."""


class PythonVersionMismatchError(PyjobdError):
    """The server's worker Python differs (major.minor) from this client's Python.
    Pickles of code are not portable across Python versions."""

    def __init__(self, message, client_version=None, server_version=None):
        super().__init__(message)
        self.client_version = client_version
        self.server_version = server_version


class JobError(PyjobdError):
    """A job failed for a reason other than an exception raised by the callable.

    ``job`` is the job resource as returned by the server (a dict), ``job_id`` its id
    and ``error`` its ``error`` object."""

    def __init__(self, message, job=None):
        super().__init__(message)
        self.job = job
        self.job_id = (job or {}).get("id")
        self.error = (job or {}).get("error")


class JobTimeoutError(JobError, TimeoutError):
    """The job ran longer than its timeout and was killed by the server. Also a
    ``TimeoutError`` (``concurrent.futures.TimeoutError`` is the same class), so ported
    ``except TimeoutError:`` handlers catch it. Only this job failed: the executor stays
    usable."""


class WorkerCrashedError(JobError, BrokenProcessPool):
    """The worker process running the job died (signal, os._exit, OOM kill...).

    Also a ``concurrent.futures.process.BrokenProcessPool`` (like loky's
    ``TerminatedWorkerError``), so ported ``except BrokenProcessPool:`` handlers catch
    it. Unlike a local process pool, only this job failed: the server replaced the
    worker, and the executor stays usable (no need to make a new one)."""


class InvalidPayloadError(JobError, BrokenProcessPool):
    """The worker could not unpickle the callable or its arguments (typically a
    function pickled by reference to a module the server does not have: then the
    message says to use ``pickle_by_value``).

    Also a ``BrokenProcessPool``, which is what a local ``ProcessPoolExecutor`` raises
    when its worker cannot unpickle a task. Only this job failed: the executor stays
    usable."""


class ResultError(JobError):
    """The job ran but its result could not be sent back (unpicklable result, not
    JSON-encodable with result_format='json', or larger than the server's
    --max-result-bytes), or could not be decoded here."""


class ResultPicklingError(ResultError):
    """The worker could not pickle the job's return value. ``exc_type`` names the
    exception pickling raised there; when that class exists in this process too (a
    builtin such as ``TypeError``, or ``pickle.PicklingError``), the error raised is
    also an instance of it, as a local ``ProcessPoolExecutor`` raises that exception
    itself."""

    exc_type = None


class ResultUnpicklingError(ResultError, BrokenProcessPool):
    """The job succeeded, but unpickling its result here raised (a class this client
    cannot import, or a ``__reduce__`` that raises, even ``SystemExit``); ``__cause__``
    is that exception. Also a ``BrokenProcessPool``, which a local
    ``ProcessPoolExecutor`` raises then; only this future failed: the executor stays
    usable."""


class JobInterruptedError(JobError):
    """The server stopped (or the job was otherwise interrupted) before the job ended."""


class UnknownJobError(JobError):
    """The server no longer knows the job (its record expired or the server restarted)."""


class SoftTimeout(TimeoutError):
    """Raised inside a job when its ``soft_timeout`` passes (its ``timeout`` still stops
    it). In a worker, ``pyjobd`` is the worker's own small module with the same two
    classes: a job may ``except pyjobd.SoftTimeout`` to clean up, and one that lets it
    escape raises this from ``future.result()``."""


class Cancelled(BaseException):
    """Raised inside a running job cancelled with ``interrupt`` (``POST
    /v1/jobs/{id}/cancel?interrupt=S``); like ``KeyboardInterrupt``, ``except Exception``
    does not catch it. The job is killed if it has not ended S seconds later."""


class RemoteTraceback(Exception):
    """Attached as ``__cause__`` of a re-raised remote exception; its ``str`` is the
    remote traceback text (like loky's ``_RemoteTraceback``)."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


class RemoteError(PyjobdError):
    """Stands in for a remote exception that could not be unpickled here (for example
    an exception class from a module this client does not have). ``exc_type`` is the
    remote type name."""

    def __init__(self, message, exc_type=None, traceback=None):
        super().__init__(message)
        self.exc_type = exc_type
        self.traceback = traceback
