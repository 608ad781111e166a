"""Errors of the task layer, on top of :mod:`sshpipe.errors`.

Stdlib only.

::

    SSHPipeError
    ├── HostLostError                 the host (its agent, SSH link or network) failed
    │                                 while it held the task; .host, cause chained
    ├── BrokenHostPool                no host is left: every pending future fails with it
    ├── WorkerDiedError               the remote worker process running the task died
    │                                 (os._exit, a signal, a crash); .host, .exitcode
    ├── TaskLoadError                 the task's call could not be unpickled in the remote
    │                                 worker; .host, the remote error as the cause
    ├── ResultLoadError               the task's result (or exception) could not be
    │                                 unpickled here; .host, cause chained
    └── TaskTimeoutError              the task ran past its timeout; its worker process
        (also TimeoutError)           was ended; .host, .timeout

The first five are also ``concurrent.futures.process.BrokenProcessPool`` (so
``BrokenExecutor``): it is what ``ProcessPoolExecutor`` raises in the same
cases, so code written for it catches them. Unlike there, only the tasks
concerned fail: the executor replaces a dead worker, and stays usable while a
host is left (until :class:`BrokenHostPool`).

An exception raised by the task itself reaches the future as it is, with the
remote traceback (text) as its ``__cause__``, as ``concurrent.futures`` does.
"""
from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool
from typing import Optional

from sshpipe.errors import SSHPipeError

__all__ = ["BrokenHostPool", "HostLostError", "ResultLoadError", "TaskLoadError",
           "TaskTimeoutError", "WorkerDiedError"]


class _HostError(SSHPipeError):
    """An error about one host: ``.host`` names it (pickling, with every attribute
    and the cause, comes from :class:`~sshpipe.errors.SSHPipeError`)."""


class HostLostError(_HostError, BrokenProcessPool):
    """The host running a task was lost and the task had no retries left.

    ``host`` names it; the cause (a :class:`~sshpipe.errors.PipeBroken` or the
    agent's end) is chained as ``__cause__``.
    """


class BrokenHostPool(_HostError, BrokenProcessPool):
    """Every host of an :class:`~workers.SSHExecutor` is lost (or none started)."""


class WorkerDiedError(_HostError, BrokenProcessPool):
    """The remote worker process died while it ran the task (not a cancel or a
    timeout): the task called ``os._exit``, was killed by a signal, or crashed.
    The host replaces the worker and stays in service."""

    def __init__(self, message: str, host: Optional[str] = None,
                 exitcode: Optional[int] = None):
        self.exitcode = exitcode
        super().__init__(message, host)


class TaskLoadError(_HostError, BrokenProcessPool):
    """The task's callable or arguments could not be unpickled in the remote
    worker (a module missing there, an object whose unpickling raises). The
    remote exception, with its traceback, is the ``__cause__``."""


class ResultLoadError(_HostError, BrokenProcessPool):
    """The task's result or exception arrived but could not be unpickled here
    (its class is not importable in the caller, its unpickling raises). The
    error that loading raised is the ``__cause__``."""


class TaskTimeoutError(_HostError, TimeoutError):
    """A task ran longer than its ``timeout``; the remote process running it was
    ended and the host stays in service."""

    def __init__(self, message: str, host: Optional[str] = None,
                 timeout: Optional[float] = None):
        self.timeout = timeout
        super().__init__(message, host)
