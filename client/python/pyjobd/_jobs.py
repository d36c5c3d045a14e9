"""Turning job resources (the server's JSON) into results and exceptions."""

import base64

from .errors import (PICKLE_BY_VALUE_HINT, InvalidPayloadError, JobError, JobInterruptedError,
                     JobTimeoutError, RemoteError, RemoteTraceback, ResultError, WorkerCrashedError)
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
        except Exception as e:  # a class this client cannot import, corrupt data, ...
            exc = ResultError(
                f"job {job.get('id')} succeeded but its result could not be unpickled by this "
                f"client: {e.__class__.__name__}: {e}", job)
            exc.__cause__ = e
            return "exception", exc
    if status == "cancelled":
        return "cancelled", None
    return "exception", job_exception(job)


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
        return InvalidPayloadError(
            f"job {jid}: the worker could not unpickle the callable or its arguments: "
            f"{message or 'invalid payload'}\n{PICKLE_BY_VALUE_HINT}", job)
    if kind in ("unpicklable_result", "unjsonable_result", "result_too_large"):
        return ResultError(f"job {jid}: {message or kind}", job)
    if kind == "interrupted":
        return JobInterruptedError(f"job {jid} was interrupted: {message or 'the server stopped'}", job)
    return JobError(f"job {jid} failed ({kind or 'unknown error'}): {message}", job)
