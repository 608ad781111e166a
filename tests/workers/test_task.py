"""Task: a callable and its arguments, serialized once, run locally or remotely."""
from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workers import Task
from workers.task import apply_chunk, load_call


def test_plain_function_uses_c_pickle_and_runs():
    """A module-level function is pickled by reference and runs with its arguments."""
    task = Task(divmod, 17, 5)
    assert task.run() == (3, 2)
    assert b"dill" not in task.fn_payload
    assert task.name == "divmod"


def test_lambda_closure_and_nested_function_are_carried_by_value():
    """Lambdas, closures and nested functions survive serialization (dill)."""
    factor = 3

    def nested(x, *, plus=0):
        return x * factor + plus

    for fn, args, kwargs, expected in [(lambda x: x + factor, (1,), {}, 4),
                                       (nested, (2,), {"plus": 1}, 7),
                                       (functools.partial(nested, plus=10), (1,), {}, 13)]:
        task = Task(fn, *args, **kwargs)
        fn_back, args_back, kwargs_back = load_call(task.fn_payload, task.args_payload)
        assert fn_back(*args_back, **kwargs_back) == expected


def test_payload_is_made_once_and_options_share_it():
    """options() copies the task with new settings and the same payload bytes."""
    task = Task(len, "abc")
    pinned = task.options(timeout=2, retries=1, host="h1", name="count")
    assert pinned.fn_payload is task.fn_payload and pinned.args_payload is task.args_payload
    assert (pinned.timeout, pinned.retries, pinned.host, pinned.name) == (2.0, 1, "h1", "count")
    assert task.timeout is None and "timeout=2.0" in repr(pinned)
    with pytest.raises(ValueError):
        task.options(timeout=0)
    with pytest.raises(ValueError):
        task.options(retries=-1)


def test_not_callable_and_unserializable_fail_at_construction():
    """A task that cannot be built fails in the caller, not on the remote."""
    with pytest.raises(TypeError):
        Task(42)
    with pytest.raises(TypeError):
        Task(print, (x for x in "a generator cannot be pickled"))


def test_function_cache_reuses_unpickled_callable():
    """Tasks of one map share a payload, unpickled once per worker."""
    payload = Task(abs, 1).fn_payload
    cache = {}
    first, _, _ = load_call(payload, pickle.dumps(((1,), {})), cache)
    second, _, _ = load_call(payload, pickle.dumps(((2,), {})), cache)
    assert first is second and len(cache) == 1


def test_apply_chunk_keeps_order():
    """A map chunk runs fn on each argument tuple, in order."""
    assert apply_chunk(pow, [(2, 3), (3, 2), (5, 0)]) == [8, 9, 1]


def test_main_module_class_instance_is_carried_by_value(tmp_path):
    """An instance of a class defined in __main__ round-trips to a process without it."""
    script = tmp_path / "make.py"
    script.write_text(textwrap.dedent("""
        import sys
        from workers import Task

        class Scale:
            def __init__(self, k):
                self.k = k
            def __call__(self, x):
                return self.k * x

        task = Task(Scale(4), 5)
        sys.stdout.buffer.write(task.fn_payload + b"\\0SPLIT\\0" + task.args_payload)
    """))
    # The repository root on the path: `workers` is found from its source tree.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    made = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60,
                          check=True, env=env)
    fn_payload, args_payload = made.stdout.split(b"\0SPLIT\0")
    fn, args, kwargs = load_call(fn_payload, args_payload)
    assert fn(*args, **kwargs) == 20 and type(fn).__name__ == "Scale"
