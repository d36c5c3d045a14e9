"""Serialization helpers: cloudpickle with pyjobd's reducer registry.

pyjobd always pickles with cloudpickle, so lambdas, closures, nested and
interactively defined functions and classes travel by value without any wrapping.
The loky helpers are provided so that loky code ports unchanged:

* :func:`wrap_non_picklable_objects` -- a no-op (returns its argument);
* :func:`register`, :func:`dumps`, :func:`dump` -- like ``loky.backend.reduction``.
"""

import contextlib
import copyreg
import importlib
import io
import pickle
import threading
import types
from collections import ChainMap

import cloudpickle

#: Reducers registered with :func:`register` (type -> reduce function).
_REDUCERS = {}


class Pickler(cloudpickle.Pickler):
    """cloudpickle's pickler plus the reducers registered with :func:`register`.

    Subclass it (and pass ``pickler=YourPickler`` to :class:`pyjobd.Executor`) to
    customise pickling: set ``dispatch_table`` or override ``reducer_override``."""

    dispatch_table = ChainMap(_REDUCERS, cloudpickle.Pickler.dispatch_table)


def register(type_, reduce_function):
    """Registers ``reduce_function`` for objects of ``type_`` (like
    ``loky.backend.reduction.register``). ``reduce_function(obj)`` returns a
    ``(callable, args)`` tuple as ``__reduce__`` does. ``copyreg.pickle`` works too."""
    if not isinstance(type_, type):
        raise TypeError(f"register() needs a type, got {type_!r}")
    _REDUCERS[type_] = reduce_function


def dump(obj, file, reducers=None, protocol=None, pickler=None):
    """Pickles ``obj`` to the binary ``file`` with cloudpickle (plus ``reducers``, a
    ``{type: reduce_function}`` dict used on top of the registered ones and of the
    ``pickler`` class's own ``dispatch_table``)."""
    cls = pickler or Pickler
    protocol = cloudpickle.DEFAULT_PROTOCOL if protocol is None else protocol
    if reducers:
        if not isinstance(reducers, dict):
            raise TypeError(f"reducers must be a dict {{type: reduce_function}}, got {reducers!r}")
        # The C pickler reads dispatch_table once, in __init__: an attribute set on the
        # instance afterwards is never looked at. So the instance gets its table first.
        p = cls.__new__(cls)
        p.dispatch_table = ChainMap(dict(reducers),
                                    getattr(cls, "dispatch_table", copyreg.dispatch_table))
        cls.__init__(p, file, protocol=protocol)
    else:
        p = cls(file, protocol=protocol)
    p.dump(obj)


_SCALARS = (int, float, str, bytes, bool, type(None))


def _plain(obj, depth=2):
    """Whether obj is builtin scalars, or small tuples/lists of them (e.g. the
    arguments of most calls): pickle and cloudpickle write the same bytes for it."""
    t = type(obj)
    if t in _SCALARS:
        return True
    if (t is tuple or t is list) and depth and len(obj) <= 32:
        return all(_plain(x, depth - 1) for x in obj)
    return False


def dumps(obj, reducers=None, protocol=None, pickler=None):
    """Returns the cloudpickle bytes of ``obj`` (see :func:`dump`)."""
    if not reducers and pickler is None and not _REDUCERS and _plain(obj):
        # The common case of a call's arguments: the C pickler alone, without making a
        # cloudpickle Pickler (a few microseconds a submission).
        return pickle.dumps(obj, cloudpickle.DEFAULT_PROTOCOL if protocol is None else protocol)
    buf = io.BytesIO()
    dump(obj, buf, reducers=reducers, protocol=protocol, pickler=pickler)
    return buf.getvalue()


def loads(data):
    """Unpickles bytes made by :func:`dumps` (or by a pyjobd worker)."""
    return cloudpickle.loads(data)


def wrap_non_picklable_objects(obj, keep_wrapper=True):
    """Compatibility shim for ``loky.wrap_non_picklable_objects``: returns ``obj``
    unchanged. pyjobd always uses cloudpickle, so functions, lambdas, closures and
    classes need no wrapping. Works as a decorator on functions and classes."""
    return obj


# ------------------------------------------------------------------ pickle by value

_by_value_lock = threading.RLock()


def resolve_modules(modules):
    """Turns a list of modules or module names into module objects."""
    out = []
    for m in modules or ():
        if isinstance(m, str):
            m = importlib.import_module(m)
        if not isinstance(m, types.ModuleType):
            raise TypeError(f"pickle_by_value entries must be modules or module names, got {m!r}")
        out.append(m)
    return out


def pickled_by_value(modules):
    """Within the block, cloudpickle pickles code of ``modules`` by value
    (``cloudpickle.register_pickle_by_value``); registrations made here are undone on
    exit, so one executor's choice does not leak into others."""
    if not modules:
        return _NOTHING
    return _by_value(modules)


_NOTHING = contextlib.nullcontext()


@contextlib.contextmanager
def _by_value(modules):
    with _by_value_lock:
        added = []
        try:
            for m in modules:
                if m.__name__ not in cloudpickle.list_registry_pickle_by_value():
                    cloudpickle.register_pickle_by_value(m)
                    added.append(m)
            yield
        finally:
            for m in added:
                try:
                    cloudpickle.unregister_pickle_by_value(m)
                except ValueError:
                    pass
