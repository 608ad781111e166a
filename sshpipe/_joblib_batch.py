"""The remote half of the joblib backend: runs one batch of joblib calls.

Stdlib only: shipped to the remote hosts with the worker agent (the caller's
:mod:`sshpipe.joblib` names it in ``modules``), so that a batch can run where
joblib is not installed. joblib is needed there only by calls that use it
themselves (a nested ``Parallel``); those then run under the nested backend
joblib would give them in one of its own worker processes.

A batch arrives as a task whose callable is :func:`run_same` (every call of the
batch uses one function, the usual case: the function is serialized once per
``Parallel`` call and unpickled once per worker) or :func:`run_calls` (a batch
mixing functions).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = ["NestedSpec", "run_calls", "run_same"]

# (nesting level, n_jobs) of the backend nested Parallel calls get: joblib's
# threading backend at level 1, its sequential one deeper (what joblib's own
# process backends give), or None for none at all.
NestedSpec = Optional[Tuple[int, Optional[int]]]


def run_same(func: Callable[..., Any], nested: NestedSpec,
             arguments: Sequence[Tuple[Tuple[Any, ...], Dict[str, Any]]]) -> List[Any]:
    """``[func(*args, **kwargs) for each (args, kwargs)]``, in order."""
    with _nested_backend(nested):
        return [func(*args, **kwargs) for args, kwargs in arguments]


def run_calls(nested: NestedSpec,
              calls: Sequence[Tuple[Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]]
              ) -> List[Any]:
    """``[func(*args, **kwargs) for each (func, args, kwargs)]``, in order."""
    with _nested_backend(nested):
        return [func(*args, **kwargs) for func, args, kwargs in calls]


@contextlib.contextmanager
def _nested_backend(nested: NestedSpec) -> Iterator[None]:
    """Make joblib (if this Python has it) give a nested Parallel the backend
    the caller chose, as joblib's BatchedCalls does in its own workers."""
    config = _parallel_config(nested)
    if config is None:
        yield
        return
    with config:
        yield


def _parallel_config(nested: NestedSpec) -> Any:
    if nested is None:
        return None
    try:
        from joblib.parallel import SequentialBackend, ThreadingBackend, parallel_config
    except ImportError:
        return None  # no joblib here: no call of this batch can use it
    level, n_jobs = nested
    backend = (ThreadingBackend if level <= 1 else SequentialBackend)(nesting_level=level)
    return parallel_config(backend=backend, n_jobs=n_jobs)
