"""The worker's half of retry policies (issue 17 item 2): a job frame's RETRY_ON /
RETRY_NOT_ON (exception class names, '\\n'-separated) against the MRO of what the job
raised, answered by RETRYABLE in the "exception" reply (pool/worker/retry_match.c).

Drives build/pyjobd-worker directly over its fd-3 socketpair (worker_driver.py), without
the server; every test runs on a worker that runs jobs itself and on one that runs each
in a horse (the job frame's ISOLATE, as under --isolation job).
"""

import os
import sys

import cloudpickle
import pytest

from worker_driver import (FRAME_ERROR, FRAME_JOB, FRAME_RESULT, TAG_CALLABLE, TAG_ERROR_TYPE,
                           TAG_RESULT, WorkerDriver, encode_frame)

# The jobs below are functions of this module, which workers cannot import.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.environ.get("PYJOBD_WORKER", os.path.join(ROOT, "build", "pyjobd-worker"))

# include/pyjobd/frame.h
TAG_ISOLATE, TAG_SOFT_TIMEOUT = 7, 9
TAG_RETRY_ON, TAG_RETRY_NOT_ON = 12, 13
TAG_RETRYABLE = 35
MAX_NAMES, MAX_NAME_BYTES, MAX_MRO = 64, 256, 256  # pool/worker/retry_match.h


class TransientError(Exception):
    """Pickled by value (no module "mymod" exists), so the worker sees it as mymod's."""
    __module__ = "mymod"


@pytest.fixture(scope="module", params=["shared", "isolated"])
def worker(request):
    w = WorkerDriver(WORKER)
    w.isolated = request.param == "isolated"
    yield w
    assert w.close() == 0


def names(*items):
    return "\n".join(items).encode()


def send(w, fn, on=None, not_on=None, extra=()):
    """Runs fn() with the policy (lists of names, or raw bytes); returns (type, fields)."""
    fields = [(TAG_CALLABLE, cloudpickle.dumps(fn))]
    if w.isolated:
        fields.append((TAG_ISOLATE, b""))
    for tag, value in ((TAG_RETRY_ON, on), (TAG_RETRY_NOT_ON, not_on)):
        if value is not None:
            fields.append((tag, value if isinstance(value, bytes) else names(*value)))
    fields.extend(extra)
    w.send_raw(encode_frame(FRAME_JOB, fields))
    return w.read_frame()


def retryable(w, fn, on=None, not_on=None, extra=(), error_type=b"exception"):
    """Whether the reply to fn() is marked RETRYABLE; checks it is an error of error_type."""
    ftype, fields = send(w, fn, on, not_on, extra)
    assert ftype == FRAME_ERROR, fields
    assert fields[TAG_ERROR_TYPE] == error_type, fields
    value = fields.get(TAG_RETRYABLE)
    assert value in (None, b"1"), value
    return value is not None


def still_serves(w):
    """The worker answers the next job correctly, with no exception left over from the last."""
    def probe():
        return sys.exc_info()[0] is None and 2 ** 10

    ftype, fields = send(w, probe, on=["Exception"])
    assert ftype == FRAME_RESULT, fields
    assert cloudpickle.loads(fields[TAG_RESULT]) == 1024
    assert TAG_RETRYABLE not in fields


def raise_reset():
    raise ConnectionResetError("peer went away")


def raise_transient():
    raise TransientError("try again")


def test_a_base_class_by_bare_name(worker):
    assert retryable(worker, raise_reset, on=["ConnectionError"])
    assert retryable(worker, raise_reset, on=["OSError"])
    assert retryable(worker, raise_reset, on=["ConnectionResetError"])
    assert not retryable(worker, raise_reset, on=["ValueError"])
    assert not retryable(worker, raise_reset, on=["TimeoutError", "KeyError"])


def test_not_on_wins(worker):
    assert not retryable(worker, raise_reset, on=["ConnectionError"],
                         not_on=["ConnectionResetError"])
    # Also when the excluded class comes after the one named in RETRY_ON in the MRO.
    assert not retryable(worker, raise_reset, on=["ConnectionResetError"], not_on=["OSError"])
    assert retryable(worker, raise_reset, on=["ConnectionError"], not_on=["ValueError"])
    assert retryable(worker, raise_reset, on=["ConnectionError"], not_on=[])


def test_a_qualified_name(worker):
    assert retryable(worker, raise_reset, on=["builtins.ConnectionError"])
    assert not retryable(worker, raise_reset, on=["socket.ConnectionError"])
    assert not retryable(worker, raise_reset, on=["builtins.ConnectionResetError"],
                         not_on=["builtins.ConnectionError"])
    # Whole names only: no prefix, suffix or other separator.
    assert not retryable(worker, raise_reset, on=["Connection", "Error", "builtins",
                                                  "builtins.", "ConnectionErrorX",
                                                  "builtins:ConnectionError",
                                                  " ConnectionError"])


def test_a_class_of_the_job(worker):
    assert retryable(worker, raise_transient, on=["mymod.TransientError"])
    assert retryable(worker, raise_transient, on=["TransientError"])
    assert not retryable(worker, raise_transient, on=["othermod.TransientError"])
    assert not retryable(worker, raise_transient, on=["mymod.Transient"])
    assert not retryable(worker, raise_transient, on=["mymod.TransientError"],
                         not_on=["TransientError"])


def test_a_nested_class_by_qualname_and_name(worker):
    def raise_nested():
        class Outer:
            class Flaky(Exception):
                pass

        raise Outer.Flaky()

    qualname = "test_a_nested_class_by_qualname_and_name.<locals>.raise_nested.<locals>.Outer.Flaky"
    assert retryable(worker, raise_nested, on=["Flaky"])
    assert retryable(worker, raise_nested, on=[qualname])
    assert retryable(worker, raise_nested, on=[f"{__name__}.{qualname}"])
    assert not retryable(worker, raise_nested, on=["Outer.Flaky.x", "Outer"])


def test_no_retry_on_is_never_retryable(worker):
    assert not retryable(worker, raise_reset)
    assert not retryable(worker, raise_reset, not_on=["ValueError"])
    assert not retryable(worker, raise_reset, on=[])
    assert not retryable(worker, raise_reset, on=b"\n\n")


def test_pyjobd_exceptions_by_name(worker):
    def raise_cancelled():
        import pyjobd

        raise pyjobd.Cancelled()

    def sleep_past_soft_timeout():
        import time

        time.sleep(10)

    soft = [(TAG_SOFT_TIMEOUT, (50).to_bytes(4, "little"))]
    assert retryable(worker, sleep_past_soft_timeout, on=["pyjobd.SoftTimeout"], extra=soft)
    assert retryable(worker, sleep_past_soft_timeout, on=["SoftTimeout"], extra=soft)
    assert retryable(worker, sleep_past_soft_timeout, on=["TimeoutError"], extra=soft)
    assert not retryable(worker, sleep_past_soft_timeout, on=["TimeoutError"],
                         not_on=["pyjobd.SoftTimeout"], extra=soft)
    assert retryable(worker, raise_cancelled, on=["pyjobd.Cancelled"])
    assert retryable(worker, raise_cancelled, on=["Cancelled"])
    assert not retryable(worker, raise_cancelled, on=["Exception"])


def test_only_exception_replies_carry_it(worker):
    everything = ["BaseException", "Exception", "UnpicklingError", "_pickle.UnpicklingError",
                  "TypeError", "ValueError"]
    # Not a pickle at all: invalid_payload.
    fields = [(TAG_CALLABLE, b"not a pickle"), (TAG_RETRY_ON, names(*everything))]
    if worker.isolated:
        fields.append((TAG_ISOLATE, b""))
    worker.send_raw(encode_frame(FRAME_JOB, fields))
    ftype, reply = worker.read_frame()
    assert ftype == FRAME_ERROR and reply[TAG_ERROR_TYPE] == b"invalid_payload", reply
    assert TAG_RETRYABLE not in reply

    def return_a_lock():
        import threading

        return threading.Lock()

    assert not retryable(worker, return_a_lock, on=everything, error_type=b"unpicklable_result")
    # ... while the same policy does mark an exception.
    assert retryable(worker, raise_reset, on=everything)
    still_serves(worker)


def test_the_first_64_names_are_looked_at(worker):
    # The server refuses longer lists; a worker sent one anyway ignores the names after
    # the 64th, so a match in 100th place does not count.
    others = [f"mymod.Other{i}" for i in range(100)]
    assert retryable(worker, raise_transient, on=others[:MAX_NAMES - 1] + ["TransientError"])
    assert not retryable(worker, raise_transient, on=others[:MAX_NAMES] + ["TransientError"])
    assert not retryable(worker, raise_transient, on=others[:99] + ["TransientError"])
    # Empty names count as names.
    assert not retryable(worker, raise_transient, on=[""] * MAX_NAMES + ["TransientError"])
    # The same bound for RETRY_NOT_ON.
    assert not retryable(worker, raise_transient, on=["Exception"],
                         not_on=others[:MAX_NAMES - 1] + ["TransientError"])
    assert retryable(worker, raise_transient, on=["Exception"],
                     not_on=others[:MAX_NAMES] + ["TransientError"])


def raise_named(name):
    def job():
        raise type(name, (Exception,), {})()

    return job


def test_names_longer_than_256_bytes_are_ignored(worker):
    longest = "E" * MAX_NAME_BYTES
    assert retryable(worker, raise_named(longest), on=[longest])
    assert not retryable(worker, raise_named(longest + "E"), on=[longest + "E"])
    # A long name does not hide the names after it.
    assert retryable(worker, raise_reset, on=["x" * 100000, "ConnectionError"])
    # Bytes, not characters: 128 two-byte characters are 256 bytes, 129 are 258.
    assert retryable(worker, raise_named("\u00e9" * 128), on=["\u00e9" * 128])
    assert not retryable(worker, raise_named("\u00e9" * 129), on=["\u00e9" * 129])


def test_the_first_256_classes_of_the_mro_are_looked_at(worker):
    def raise_deep():
        cls = Exception
        for i in range(300):
            cls = type(f"Level{i}", (cls,), {})
        raise cls()

    # The MRO: Level299, Level298, ..., Level0, Exception, BaseException, object.
    assert retryable(worker, raise_deep, on=["Level299"])
    assert retryable(worker, raise_deep, on=[f"Level{300 - MAX_MRO}"])
    assert not retryable(worker, raise_deep, on=[f"Level{299 - MAX_MRO}"])
    assert not retryable(worker, raise_deep, on=["Exception"])


def test_a_field_that_is_not_utf8_matches_nothing(worker):
    assert not retryable(worker, raise_reset, on=b"ConnectionError\n\xff")
    assert not retryable(worker, raise_reset, on=b"ConnectionError\n\xed\xa0\x80")  # surrogate
    assert retryable(worker, raise_reset, on=b"ConnectionError\n\xc3\xa9")
    # A malformed RETRY_NOT_ON excludes nothing either.
    assert retryable(worker, raise_reset, on=["ConnectionError"], not_on=b"ConnectionError\xff")


def hostile(kind):
    """A job raising Hostile, a subclass of Base (both of the metaclass Meta), whose
    metaclass makes `kind` hostile for Hostile only; "none": harmless. Base's names are
    read through Meta's Python code, after Hostile's."""
    def job():
        class Sly(str):
            def __eq__(self, other):
                raise RuntimeError("compared")

            __hash__ = str.__hash__

        class Meta(type):
            def __getattribute__(cls, attr):
                if not type.__getattribute__(cls, "__dict__").get("hostile"):
                    pass
                elif kind == "module_raises" and attr == "__module__":
                    raise RuntimeError("no module for you")
                elif kind == "module_not_str" and attr == "__module__":
                    return 42
                elif kind == "qualname_raises_base" and attr == "__qualname__":
                    raise KeyboardInterrupt
                elif kind == "name_not_str" and attr == "__name__":
                    return b"Hostile"
                elif kind == "name_str_subclass" and attr == "__name__":
                    return Sly("Hostile")
                elif kind == "mro_lies" and attr == "__mro__":
                    return (ConnectionError, 42, "x")
                elif kind == "mro_raises" and attr == "__mro__":
                    raise SystemExit(3)
                return super().__getattribute__(attr)

        class Base(Exception, metaclass=Meta):
            pass

        if kind == "body_module_not_str":
            Hostile = Meta("Hostile", (Base,), {"__module__": 5})  # noqa: N806
        else:
            class Hostile(Base):
                hostile = True

        raise Hostile("boom")

    return job


def test_hostile_classes_match_nothing(worker):
    # The control: the same class, harmless, does match.
    assert retryable(worker, hostile("none"), on=["Hostile"])
    for kind in ("module_raises", "module_not_str", "qualname_raises_base", "name_not_str",
                 "body_module_not_str"):
        assert not retryable(worker, hostile(kind), on=["Hostile"]), kind
        still_serves(worker)
        # Its bases still match (no error is left pending while their names are read).
        assert retryable(worker, hostile(kind), on=["Base"]), kind
        assert retryable(worker, hostile(kind), on=["Exception"]), kind
        # Nor does it shield its bases from RETRY_NOT_ON.
        assert not retryable(worker, hostile(kind), on=["Exception"], not_on=["Base"]), kind
        still_serves(worker)
    # A str subclass is a str, and its __eq__ is never called.
    assert retryable(worker, hostile("name_str_subclass"), on=["Hostile"])
    still_serves(worker)


def test_the_mro_is_the_real_one(worker):
    # What `except` matches against, not what a metaclass makes __mro__ answer.
    assert not retryable(worker, hostile("mro_lies"), on=["ConnectionError"])
    assert retryable(worker, hostile("mro_lies"), on=["Hostile"])
    assert retryable(worker, hostile("mro_lies"), on=["Base"])
    still_serves(worker)
    assert retryable(worker, hostile("mro_raises"), on=["Base"])
    still_serves(worker)


def test_a_class_whose_bases_change_while_its_names_are_read(worker):
    def job():
        junk = []

        class Meta(type):
            def __getattribute__(cls, attr):
                if attr == "__qualname__":
                    # Replaces the MRO tuple being walked, which is freed unless the
                    # matcher holds it; the tuples made next (of the sizes both MROs
                    # have) would then take its memory, from the tuple free list.
                    bases = type.__getattribute__(cls, "__bases__")
                    cls.__bases__ = (KeyError,) if bases == (ValueError,) else (ValueError,)
                    junk.append(tuple([ArithmeticError] * 5))
                    junk.append(tuple([ArithmeticError] * 6))
                return super().__getattribute__(attr)

        class Shifty(ValueError, metaclass=Meta):
            pass

        raise Shifty()

    assert retryable(worker, job, on=["Exception"])
    assert not retryable(worker, job, on=["ArithmeticError"])
    still_serves(worker)
