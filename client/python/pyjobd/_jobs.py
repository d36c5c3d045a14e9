"""Turning job resources (the server's JSON) into results and exceptions."""

import base64
import builtins
import sys
import threading

from .errors import (PICKLE_BY_VALUE_HINT, InvalidPayloadError, JobError, JobInterruptedError,
                     JobTimeoutError, RemoteError, RemoteTraceback, ResultError,
                     ResultPicklingError, ResultUnpicklingError, WorkerCrashedError)
from .pickling import loads

TERMINAL = ("succeeded", "failed", "cancelled")


def b64encode(data):
    return base64.b64encode(data).decode("ascii")


def b64decode(text):
    return base64.b64decode(text, validate=True)


def job_outcome(job):
    """Returns ("result", value) or ("exception", exc) or ("cancelled", None) for a
    terminal job."""
    status = job.get("status")
    if status == "succeeded":
        try:
            if job.get("result") is not None:
                return "result", loads(b64decode(job["result"]))
            return "result", job.get("result_json")
        except BaseException as e:
            # A class this client cannot import, corrupt data, or a __reduce__ that
            # raises SystemExit: whatever unpickling raises fails this future only.
            if isinstance(e, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
                raise  # Ctrl-C while the caller's thread unpickles: the caller's own
            exc = ResultUnpicklingError(
                f"job {job.get('id')} succeeded but its result could not be unpickled by this "
                f"client: unpickling raised {e.__class__.__name__}"
                + (f": {e}" if str(e) else "") + _by_reference_hint(e), job)
            exc.__cause__ = e
            return "exception", exc
    if status == "cancelled":
        return "cancelled", None
    return "exception", job_exception(job)


def _pickled_by_reference(exc_type, message):
    """Whether an unpickling failure is a name pickled by reference that cannot be
    found where it is unpickled: a module that cannot be imported, or a module-level
    name missing from it (pickle's "Can't get attribute 'f' on <module 'm' ...>")."""
    base = (exc_type or "").rsplit(".", 1)[-1]
    if base in ("ModuleNotFoundError", "ImportError"):
        return True
    return base == "AttributeError" and "Can't get attribute" in (message or "")


def _by_reference_hint(exc):
    if _pickled_by_reference(type(exc).__name__, str(exc)):
        return ("\nHint: the result refers to a module or class of the worker's that this "
                "client cannot import: install that module here too.")
    return ""


def _local_exception_class(name):
    """The exception class a worker names ("TypeError", "_pickle.PicklingError"), when
    it is a builtin or in a module this process has already imported (none is
    imported for it); None otherwise. KeyboardInterrupt and GeneratorExit never."""
    if not name:
        return None
    module, _, qualname = name.rpartition(".")
    obj = sys.modules.get(module) if module else builtins
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if (isinstance(obj, type) and issubclass(obj, BaseException)
            and not issubclass(obj, (KeyboardInterrupt, GeneratorExit))):
        return obj
    return None


_ALSO = {}


def _reduce_to_base(self):
    return (type(self).__bases__[0], (str(self), self.job))


def _also_a(base, exc_type):
    """base, or a subclass of base that is also the worker's exception class exc_type
    (so that ``except TypeError:`` catches a result that failed to pickle with a
    TypeError, as with a local pool)."""
    cls = _local_exception_class(exc_type)
    if cls is None or issubclass(base, cls):
        return base
    key = (base, cls)
    sub = _ALSO.get(key)
    if sub is None:
        try:
            sub = type(base.__name__, (base, cls), {
                "__module__": base.__module__, "__qualname__": base.__qualname__,
                "__reduce__": _reduce_to_base, "__init__": base.__init__,
                "__str__": base.__str__})
        except TypeError:  # incompatible layouts or MRO: the base class alone
            sub = base
        _ALSO[key] = sub
    return sub


def _describe_crash(job, err):
    parts = []
    if err.get("signal"):
        parts.append(f"killed by signal {err['signal']}")
    if err.get("exit_code") is not None:
        parts.append(f"exited with code {err['exit_code']}")
    how = " and ".join(parts) or "died"
    pid = job.get("worker_pid")
    who = f"the worker process (pid {pid})" if pid else "the worker process"
    text = f"job {job.get('id')}: {who} running it {how}"
    if err.get("max_rss_bytes"):
        text += f" (peak memory {err['max_rss_bytes'] / 1048576:.1f} MiB)"
    return text


def job_exception(job):
    """The exception that represents a failed job."""
    err = job.get("error") or {}
    kind = err.get("type")
    message = (err.get("message") or "").strip()
    jid = job.get("id")
    if kind == "exception":
        exc = None
        load_error = None
        if err.get("exception"):
            try:
                exc = loads(b64decode(err["exception"]))
            except Exception as e:
                load_error = e
        if not isinstance(exc, BaseException):
            exc_type = err.get("exc_type") or "Exception"
            text = message or exc_type
            if load_error is not None:
                text += (f" (the remote {exc_type} could not be unpickled here: "
                         f"{load_error.__class__.__name__}: {load_error})")
            exc = RemoteError(text, exc_type=exc_type, traceback=err.get("traceback"))
        tb = err.get("traceback")
        if tb:
            exc.__cause__ = RemoteTraceback(f'\n"""\n{tb.rstrip()}\n"""')
        return exc
    if kind == "timeout":
        limit = job.get("timeout")
        text = f"job {jid} exceeded its timeout" + (f" of {limit:g} s" if isinstance(limit, (int, float)) else "")
        return JobTimeoutError(f"{text} and was killed. {message}".rstrip(), job)
    if kind == "worker_crashed":
        text = _describe_crash(job, err)
        if message:
            text += f". Server: {message}"
        return WorkerCrashedError(text, job)
    if kind == "invalid_payload":
        text = (f"job {jid}: the worker could not unpickle the callable or its arguments: "
                f"{message or 'invalid payload'}")
        if _pickled_by_reference(err.get("exc_type"), message):
            text += f"\n{PICKLE_BY_VALUE_HINT}"
        return InvalidPayloadError(text, job)
    if kind == "unpicklable_result":
        cls = _also_a(ResultPicklingError, err.get("exc_type"))
        exc = cls(f"job {jid}: {message or kind}", job)
        exc.exc_type = err.get("exc_type")
        if isinstance(exc, SystemExit):
            exc.code = str(exc)  # uncaught: the message on stderr and exit status 1
        if err.get("traceback"):
            exc.__cause__ = RemoteTraceback(f'\n"""\n{err["traceback"].rstrip()}\n"""')
        return exc
    if kind in ("unjsonable_result", "result_too_large"):
        return ResultError(f"job {jid}: {message or kind}", job)
    if kind == "interrupted":
        return JobInterruptedError(f"job {jid} was interrupted: {message or 'the server stopped'}", job)
    return JobError(f"job {jid} failed ({kind or 'unknown error'}): {message}", job)
