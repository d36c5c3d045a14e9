"""Job requests: a call and its options, as the server's JSON (``POST /v1/jobs``).

Shared by every front end (``Executor``, ``AsyncExecutor``, the joblib backend, the
CLI), so that an option means the same thing everywhere."""

import datetime
import platform

from . import pickling
from ._jobs import b64encode


def rfc3339(name, value):
    """A datetime (timezone-aware) or an RFC 3339 string, as the server reads it."""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc) "
                             f"+ timedelta(minutes=5)): the server cannot guess your zone")
        return value.isoformat()
    raise TypeError(f"{name} must be a datetime or an RFC 3339 string, got "
                    f"{type(value).__name__}")


def job_options(*, priority=None, soft_timeout=None, retry=None, max_retries=None, delay=None,
                run_at=None, expires_in=None, expires_at=None):
    """The request fields of ``submit_with``'s options (those given only)."""
    extra = {}
    if priority is not None:
        extra["priority"] = priority
    if soft_timeout is not None:
        extra["soft_timeout"] = soft_timeout
    if retry is not None:
        if max_retries is not None:
            raise ValueError("give retry=pyjobd.Retry(max=...) or max_retries, not both")
        extra["retry"] = retry.to_json()
    for name, value in (("delay", delay), ("expires_in", expires_in)):
        if value is not None:
            extra[name] = value
    for name, value in (("run_at", run_at), ("expires_at", expires_at)):
        if value is not None:
            extra[name] = rfc3339(name, value)
    return extra


class RequestBuilder:
    """Pickles calls and makes job requests with an executor's defaults.

    ``timeout``: default per-job timeout (None: the server's). ``retry``: a
    ``pyjobd.Retry`` for every job without its own. ``python_check``: send this
    Python's version with each job. ``pickle_by_value``: modules pickled by value.
    ``pickler``: a ``pyjobd.Pickler`` subclass."""

    def __init__(self, *, timeout=None, retry=None, python_check=True, pickle_by_value=None,
                 pickler=None):
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self.timeout = timeout
        self.retry = retry
        self.python_check = python_check
        self.by_value = pickling.resolve_modules(pickle_by_value)
        self.pickler = pickler

    def dumps(self, obj):
        """``obj`` pickled and base64-encoded."""
        with pickling.pickled_by_value(self.by_value):
            return b64encode(pickling.dumps(obj, pickler=self.pickler))

    def request(self, fn_b64, args=(), kwargs=None, *, timeout=None, max_retries=None,
                metadata=None, **extra):
        """A job request for the pickled callable ``fn_b64`` (see ``dumps``)."""
        req = {"callable": fn_b64}
        if args:
            req["args"] = self.dumps(tuple(args))
        if kwargs:
            req["kwargs"] = self.dumps(dict(kwargs))
        t = self.timeout if timeout is None else timeout
        if t is not None:
            req["timeout"] = t
        if max_retries is not None:
            req["max_retries"] = max_retries
        if metadata is not None:
            req["metadata"] = metadata
        if self.python_check:
            req["python"] = platform.python_version()
        if self.retry is not None and max_retries is None and "retry" not in extra:
            req["retry"] = self.retry.to_json()
        req.update(extra)
        return req
