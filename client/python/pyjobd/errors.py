"""Exceptions raised by the pyjobd client.

Remote exceptions raised by the job itself are re-raised with their original type;
the remote traceback is attached as ``__cause__`` (a :class:`RemoteTraceback`), as
loky does.  Everything else that can go wrong is one of the classes below.
"""


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
    """The job ran longer than its timeout and was killed by the server."""


class WorkerCrashedError(JobError):
    """The worker process running the job died (signal, os._exit, OOM kill...).
    Like loky's TerminatedWorkerError, but only this job fails."""


class InvalidPayloadError(JobError):
    """The worker could not unpickle the callable or its arguments (typically a
    function pickled by reference to a module the server does not have)."""


class ResultError(JobError):
    """The job ran but its result could not be sent back (unpicklable result, not
    JSON-encodable with result_format='json', or larger than the server's
    --max-result-bytes), or could not be decoded here."""


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
