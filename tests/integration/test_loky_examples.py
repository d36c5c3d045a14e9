"""Every usage example of loky's cloudpickle-integration documentation
(shared/reference/loky-cloudpickle-integration.md), ported to pyjobd.Executor and run
against the real server, with the results loky gives.

The port is mechanical: ``get_reusable_executor(max_workers=N)`` becomes
``pyjobd.Executor(url)``, ``wrap_non_picklable_objects`` comes from pyjobd (a no-op:
pyjobd always uses cloudpickle), ``set_loky_pickler(P)`` becomes
``Executor(url, pickler=P)`` and ``loky.backend.reduction.register/dump/dumps`` are
``pyjobd.register/dump/dumps``.

"Module-level" functions of the examples are defined at module level here too, and
shipped with ``pickle_by_value=[this module]`` (the server cannot import the test
modules); the others are defined inside the tests, as in an interactive session.
"""

import copyreg
import io
import math
import os
import pickle
import sys
import textwrap
import uuid
from functools import partial

import cloudpickle
import pytest

from conftest import REPO_ROOT

CLIENT_DIR = os.path.join(REPO_ROOT, "client", "python")
if CLIENT_DIR not in sys.path:
    sys.path.insert(0, CLIENT_DIR)

import pyjobd  # noqa: E402
from pyjobd import wrap_non_picklable_objects  # noqa: E402

THIS_MODULE = sys.modules[__name__]


@pytest.fixture
def url(server):
    return server.base_url


@pytest.fixture
def executor(url):
    """The counterpart of get_reusable_executor(): module-level code of this file is
    pickled by value."""
    ex = pyjobd.Executor(url, pickle_by_value=[THIS_MODULE])
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ Wrapping Lambda Functions


def test_wrapping_lambda_functions(executor):
    lambda_func = lambda x: x * x + 1  # noqa: E731
    wrapped_lambda = wrap_non_picklable_objects(lambda_func)
    results = list(executor.map(wrapped_lambda, range(10)))
    assert results == [1, 2, 5, 10, 17, 26, 37, 50, 65, 82]
    # and without the wrapper: pyjobd needs none
    assert list(executor.map(lambda_func, range(10))) == results


# ------------------------------------------------------------------ Interactively defined functions


def test_wrapping_interactively_defined_functions(url):
    # Defined "interactively" (inside the test, like a REPL or __main__ would): no
    # pickle_by_value needed.
    def interactive_function(x, multiplier=2):
        """This function is defined interactively and needs wrapping."""
        import math
        return math.pow(x * multiplier, 2)

    wrapped_func = wrap_non_picklable_objects(interactive_function)
    with pyjobd.Executor(url) as ex:
        results = list(ex.map(wrapped_func, [1, 2, 3, 4, 5]))
        assert results == [4.0, 16.0, 36.0, 64.0, 100.0]
        assert list(ex.map(interactive_function, [1, 2, 3, 4, 5])) == results


def test_function_defined_in_real_main_script(url, tmp_path):
    # The loky case proper: a function in a script run as __main__.
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {CLIENT_DIR!r})
        import pyjobd

        def interactive_function(x, multiplier=2):
            import math
            return math.pow(x * multiplier, 2)

        if __name__ == "__main__":
            with pyjobd.Executor(sys.argv[1]) as ex:
                print(list(ex.map(interactive_function, [1, 2, 3, 4, 5])))
    """))
    import subprocess
    r = subprocess.run(["/usr/bin/python3", str(script), url], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[4.0, 16.0, 36.0, 64.0, 100.0]"


# ------------------------------------------------------------------ Wrapping Classes


class DataProcessor:
    def __init__(self, scale_factor):
        self.scale_factor = scale_factor

    def process(self, data):
        return [x * self.scale_factor for x in data]


WrappedProcessor = wrap_non_picklable_objects(DataProcessor)


def process_with_wrapped_class(data_chunk):
    processor = WrappedProcessor(2.5)
    return processor.process(data_chunk)


def test_wrapping_classes(executor):
    data_chunks = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    results = list(executor.map(process_with_wrapped_class, data_chunks))
    assert results == [[2.5, 5.0, 7.5], [10.0, 12.5, 15.0], [17.5, 20.0, 22.5]]


def test_wrapping_classes_defined_interactively(url):
    @wrap_non_picklable_objects
    class LocalProcessor:
        def __init__(self, scale_factor):
            self.scale_factor = scale_factor

        def process(self, data):
            return [x * self.scale_factor for x in data]

    with pyjobd.Executor(url) as ex:
        # instances travel as arguments and come back as results
        out = list(ex.map(lambda p, d: (p.process(d), p), [LocalProcessor(2)] * 2, [[1], [2, 3]]))
    assert [o[0] for o in out] == [[2], [4, 6]]
    assert type(out[0][1]).__name__ == "LocalProcessor" and out[0][1].scale_factor == 2


# ------------------------------------------------------------------ Automatic Wrapping (partial)


def multiply_add(x, multiplier, addend):
    return x * multiplier + addend


def test_partial_functions(executor):
    partial_func = partial(multiply_add, multiplier=3, addend=10)
    results = list(executor.map(partial_func, range(5)))
    assert results == [10, 13, 16, 19, 22]


# ------------------------------------------------------------------ Custom Pickler Configuration


def test_function(x):  # the example's task (not a pytest test: see __test__ below)
    return x ** 2


test_function.__test__ = False


def test_custom_pickler(url):
    seen = []

    class CustomPickler(pyjobd.Pickler):
        """Custom pickler with special handling for certain types (loky's example
        overrides save_global; cloudpickle's C pickler offers reducer_override)."""

        def reducer_override(self, obj):
            if isinstance(obj, type(test_function)):
                seen.append(obj.__name__)  # "Pickling global object: ..."
            return super().reducer_override(obj)

    # set_loky_pickler(CustomPickler) -> Executor(..., pickler=CustomPickler)
    with pyjobd.Executor(url, pickler=CustomPickler, pickle_by_value=[THIS_MODULE]) as ex:
        results = list(ex.map(test_function, [1, 2, 3]))
    assert results == [1, 4, 9]
    assert "test_function" in seen
    # "reset to default pickler": a plain executor
    with pyjobd.Executor(url, pickle_by_value=[THIS_MODULE]) as ex:
        assert list(ex.map(test_function, [1, 2, 3])) == [1, 4, 9]


# ------------------------------------------------------------------ Custom Type Reduction


class CustomData:
    """Custom class that needs special serialization."""

    def __init__(self, value):
        self.value = value
        self._computed_result = None

    def compute_expensive_result(self):
        if self._computed_result is None:
            self._computed_result = self.value * 1000
        return self._computed_result


def reduce_custom_data(obj):
    """Custom reducer that only serializes the essential data."""
    return rebuild_custom_data, (obj.value,)


def rebuild_custom_data(value):
    """Rebuild CustomData from reduced form."""
    return CustomData(value)


def process_custom_data(data):
    """Task that processes CustomData objects."""
    assert data._computed_result is None, "the reducer should not have sent the cache"
    result = data.compute_expensive_result()
    return f"Processed {data.value} -> {result}"


EXPECTED_CUSTOM = [f"Processed {i} -> {i * 1000}" for i in range(5)]


def test_custom_type_reduction_with_register(executor):
    # loky.backend.reduction.register -> pyjobd.register
    pyjobd.register(CustomData, reduce_custom_data)
    try:
        custom_objects = [CustomData(i) for i in range(5)]
        for obj in custom_objects:
            obj.compute_expensive_result()  # filled cache must not travel
        results = list(executor.map(process_custom_data, custom_objects))
        assert results == EXPECTED_CUSTOM
    finally:
        pyjobd.pickling._REDUCERS.pop(CustomData, None)


def test_custom_type_reduction_with_copyreg(executor):
    copyreg.pickle(CustomData, reduce_custom_data)
    try:
        custom_objects = [CustomData(i) for i in range(5)]
        for obj in custom_objects:
            obj.compute_expensive_result()
        assert list(executor.map(process_custom_data, custom_objects)) == EXPECTED_CUSTOM
    finally:
        copyreg.dispatch_table.pop(CustomData, None)


def test_custom_type_reduction_with_pickler_dispatch_table(url):
    class Reducing(pyjobd.Pickler):
        dispatch_table = {**pyjobd.Pickler.dispatch_table, CustomData: reduce_custom_data}

    custom_objects = [CustomData(i) for i in range(5)]
    for obj in custom_objects:
        obj.compute_expensive_result()
    with pyjobd.Executor(url, pickler=Reducing, pickle_by_value=[THIS_MODULE]) as ex:
        assert list(ex.map(process_custom_data, custom_objects)) == EXPECTED_CUSTOM


# ------------------------------------------------------------------ Manual Pickling Operations


class ComplexObject:
    def __init__(self, data):
        self.data = data

    def process(self):
        return sum(self.data)


def test_manual_pickling_operations(executor):
    obj = ComplexObject([1, 2, 3, 4, 5])
    with pyjobd.pickling.pickled_by_value([THIS_MODULE]):
        serialized_bytes = pyjobd.dumps(obj)
        with io.BytesIO() as buffer:
            pyjobd.dump(obj, buffer)
            file_size = buffer.tell()
        custom_reducers = {ComplexObject: lambda o: (ComplexObject, (o.data,))}
        custom_serialized = pyjobd.dumps(obj, reducers=custom_reducers)
    assert len(serialized_bytes) > 0 and file_size == len(serialized_bytes)
    assert len(custom_serialized) > 0
    for data in (serialized_bytes, custom_serialized):
        assert pickle.loads(data).process() == 15
    # and through the server
    assert executor.submit(lambda o: o.process(), obj).result(timeout=30) == 15
    assert executor.submit(lambda b: pickle.loads(b).process(), custom_serialized).result(timeout=30) == 15


# ------------------------------------------------------------------ Handling Closures


def create_closure_function(base_value):
    """Create a closure that captures base_value."""
    def closure_func(x):
        return x + base_value
    return closure_func


def test_closures(executor):
    closure = create_closure_function(100)
    wrapped_closure = wrap_non_picklable_objects(closure)
    assert list(executor.map(wrapped_closure, range(5))) == [100, 101, 102, 103, 104]
    assert list(executor.map(closure, range(5))) == [100, 101, 102, 103, 104]


def test_closures_without_pickle_by_value(url):
    # Closures are never importable by name, so they travel by value anyway.
    def make(base_value):
        state = {"calls": 0}

        def closure_func(x):
            state["calls"] += 1
            return x + base_value + 0 * state["calls"]
        return closure_func

    with pyjobd.Executor(url) as ex:
        assert list(ex.map(make(100), range(5))) == [100, 101, 102, 103, 104]


# ------------------------------------------------------------------ Nested Function Handling


def outer_function(url):
    """Outer function that defines a nested function."""

    def nested_worker(data):
        return [x * 2 for x in data]

    with pyjobd.Executor(url) as executor:
        data_chunks = [[1, 2], [3, 4], [5, 6]]
        results = list(executor.map(nested_worker, data_chunks))
    return results


def test_nested_functions(url):
    # nested functions are pickled by value even though outer_function is module-level
    assert outer_function(url) == [[2, 4], [6, 8], [10, 12]]


# ------------------------------------------------------------------ Error Handling


def test_error_handling_fallback(url, tmp_path, monkeypatch):
    # loky: standard pickling fails -> fall back to the wrapped function.
    # pyjobd: a function of a module the server cannot import fails with
    # InvalidPayloadError, whose message names the fix; the fallback is pickle_by_value.
    name = f"lokyerr_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def problematic_function(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = __import__(name)
    problematic_function = mod.problematic_function
    messages = []
    try:
        try:
            with pyjobd.Executor(url) as ex:
                results = list(ex.map(problematic_function, [1, 2, 3]))
        except (pickle.PicklingError, AttributeError, pyjobd.InvalidPayloadError) as e:
            messages.append(str(e))
            with pyjobd.Executor(url, pickle_by_value=[mod]) as ex:
                wrapped_func = wrap_non_picklable_objects(problematic_function)
                results = list(ex.map(wrapped_func, [1, 2, 3]))
        assert results == [1, 2, 3]
        assert len(messages) == 1 and "pickle_by_value" in messages[0]
    finally:
        sys.modules.pop(name, None)


def test_error_handling_local_pickling_error(url):
    # What loky reports as a PicklingError surfaces at submit time in pyjobd.
    import threading
    with pyjobd.Executor(url) as ex:
        with pytest.raises((pickle.PicklingError, TypeError)):
            list(ex.map(lambda lock: 1, [threading.Lock()]))
        assert list(ex.map(lambda x: x, [1, 2, 3])) == [1, 2, 3]


def test_math_pow_reference_matches_local():
    # sanity: the expected values above are what the functions give locally
    assert [math.pow(x * 2, 2) for x in [1, 2, 3, 4, 5]] == [4.0, 16.0, 36.0, 64.0, 100.0]
    assert cloudpickle.loads(cloudpickle.dumps(create_closure_function(1)))(1) == 2
