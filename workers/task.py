"""Task: a callable and its arguments, serialized once.

Stdlib only (dill is used through :mod:`sshpipe.serial` when needed): shipped
to remote hosts with the worker agent, which calls :func:`load_call`.

A task carries two payloads, made when it is built and never again:

- ``fn_payload``: the callable (C pickle by reference when the remote can import
  it, dill by value for lambdas, closures, nested functions and anything from
  ``__main__``);
- ``args_payload``: ``(args, kwargs)``.

They are kept apart so that the tasks of one ``map()`` share a single
``fn_payload``: the callable is serialized once for all of them, and the remote
worker unpickles it once (it caches recent callables by payload).
"""
from __future__ import annotations

import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from sshpipe import serial

__all__ = ["Task", "apply_chunk", "load_call"]


class Task:
    """``fn(*args, **kwargs)`` to run on a remote host.

    Built with the call's arguments; options for the executor are set with
    :meth:`options`, which returns a copy sharing the payloads::

        Task(fn, 1, b=2).options(timeout=5.0, host="db1", retries=1)

    Raises:
        Exception: whatever dill raises for an object it cannot serialize, at
            construction, in the caller.
    """

    __slots__ = ("fn_payload", "args_payload", "name", "timeout", "retries", "host")

    def __init__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any):
        if not callable(fn):
            raise TypeError(f"a task needs a callable, not {type(fn).__name__}")
        self.fn_payload = _fn_payload(fn)
        self.args_payload = serial.dumps((args, kwargs)) if args or kwargs else _NO_ARGUMENTS
        self.name = getattr(fn, "__qualname__", None) or type(fn).__name__
        self.timeout: Optional[float] = None
        self.retries: Optional[int] = None
        self.host: Optional[str] = None

    @classmethod
    def from_payloads(cls, fn_payload: bytes, args_payload: bytes, name: str = "task") -> "Task":
        """A task from payloads already made (``map()`` shares one ``fn_payload``)."""
        task = cls.__new__(cls)
        task.fn_payload = fn_payload
        task.args_payload = args_payload
        task.name = name
        task.timeout = None
        task.retries = None
        task.host = None
        return task

    def options(self, *, timeout: Optional[float] = None, retries: Optional[int] = None,
                host: Optional[str] = None, name: Optional[str] = None) -> "Task":
        """A copy with executor options; None keeps the current value.

        Args:
            timeout: seconds the task may run on the remote; past it the worker
                process running it is ended and the future fails with
                :class:`~workers.TaskTimeoutError`.
            retries: how many times the task is resubmitted when the host running
                it is lost (default: the executor's ``retries``).
            host: run only on this host (its name in the executor's host list).
            name: shown in logs and ``repr``.
        """
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if retries is not None and retries < 0:
            raise ValueError(f"retries must be 0 or more, not {retries!r}")
        copy = Task.from_payloads(self.fn_payload, self.args_payload, name or self.name)
        copy.timeout = self.timeout if timeout is None else float(timeout)
        copy.retries = self.retries if retries is None else retries
        copy.host = self.host if host is None else host
        return copy

    @property
    def carries_code(self) -> bool:
        """True when the task holds code sent by value (a lambda, a closure, a
        ``__main__`` function): it loads only on the caller's Python minor."""
        return serial.carries_code(self.fn_payload) or serial.carries_code(self.args_payload)

    def run(self) -> Any:
        """Run the task here, in this process (as a worker would)."""
        fn, args, kwargs = load_call(self.fn_payload, self.args_payload)
        return fn(*args, **kwargs)

    def __repr__(self) -> str:
        extra = "".join(f" {key}={getattr(self, key)!r}" for key in ("timeout", "retries", "host")
                        if getattr(self, key) is not None)
        return f"<Task {self.name}{extra} {len(self.fn_payload) + len(self.args_payload)} bytes>"


_NO_ARGUMENTS = serial.dumps(((), {}))
# Payloads of callables pickled by reference (a module-level function, a builtin, a
# class): they depend on the name alone, so a task submitted in a loop reuses one.
# Anything carried by value (dill) is serialized again each time, since a closure's
# variables may change between two tasks.
_BY_NAME: Dict[Any, bytes] = {}
_BY_NAME_SIZE = 256
_NAMED_TYPES = (types.FunctionType, types.BuiltinFunctionType, type)


def _fn_payload(fn: Callable[..., Any]) -> bytes:
    cacheable = type(fn) in _NAMED_TYPES or isinstance(fn, type)
    if cacheable:
        try:
            return _BY_NAME[fn]
        except (KeyError, TypeError):
            pass
    payload = serial.dumps(fn)
    if cacheable and b"dill" not in payload:
        if len(_BY_NAME) >= _BY_NAME_SIZE:
            _BY_NAME.clear()
        try:
            _BY_NAME[fn] = payload
        except TypeError:  # unhashable
            pass
    return payload


def load_call(fn_payload: bytes, args_payload: bytes,
              cache: Optional[Dict[bytes, Any]] = None
              ) -> Tuple[Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]:
    """Unpickle a task's callable (from ``cache`` when it holds it) and arguments."""
    fn = cache.get(fn_payload) if cache is not None else None
    if fn is None:
        fn = serial.loads(fn_payload)
        if cache is not None:
            if len(cache) >= _FN_CACHE_SIZE:
                cache.pop(next(iter(cache)))
            cache[fn_payload] = fn
    args, kwargs = serial.loads(args_payload)
    return fn, args, kwargs


# Callables a worker keeps unpickled: a map() reuses one, a workflow a few dozen.
_FN_CACHE_SIZE = 64


def apply_chunk(fn: Callable[..., Any], chunk: Sequence[Tuple[Any, ...]]) -> List[Any]:
    """Run ``fn(*args)`` for each argument tuple of a ``map()`` chunk, in order."""
    return [fn(*args) for args in chunk]
