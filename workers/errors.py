"""Errors of the task layer, on top of :mod:`sshpipe.errors`.

Stdlib only: shipped to remote hosts with the worker agent.

::

    SSHPipeError
    ├── HostLostError                 the host (its agent, SSH link or network) failed
    │                                 while it held the task; .host, cause chained
    ├── BrokenHostPool                no host is left: every pending future fails with it
    │   (also concurrent.futures.BrokenExecutor)
    ├── TaskTimeoutError              the task ran past its timeout; its worker process
    │   (also TimeoutError)           was ended; .host, .timeout
    └── WorkerDiedError               the remote worker process running the task died
                                      (os._exit, a signal, a crash); .host, .exitcode

An exception raised by the task itself reaches the future as it is, with the
remote traceback (text) as its ``__cause__``, as ``concurrent.futures`` does.
"""
from __future__ import annotations

from concurrent.futures import BrokenExecutor
from typing import Optional

from sshpipe.errors import SSHPipeError

__all__ = ["BrokenHostPool", "HostLostError", "TaskTimeoutError", "WorkerDiedError"]


class HostLostError(SSHPipeError):
    """The host running a task was lost and the task had no retries left.

    ``host`` names it; the cause (a :class:`~sshpipe.errors.PipeBroken` or the
    agent's end) is chained as ``__cause__``.
    """

    def __init__(self, message: str, host: Optional[str] = None):
        self.host = host
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.args[0], self.host))


class BrokenHostPool(SSHPipeError, BrokenExecutor):
    """Every host of an :class:`~workers.SSHExecutor` is lost (or none started)."""


class TaskTimeoutError(SSHPipeError, TimeoutError):
    """A task ran longer than its ``timeout``; the remote process running it was
    ended and the host stays in service."""

    def __init__(self, message: str, host: Optional[str] = None,
                 timeout: Optional[float] = None):
        self.host = host
        self.timeout = timeout
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.args[0], self.host, self.timeout))


class WorkerDiedError(SSHPipeError):
    """The remote worker process died while it ran the task (not a cancel or a
    timeout): the task called ``os._exit``, was killed by a signal, or crashed."""

    def __init__(self, message: str, host: Optional[str] = None,
                 exitcode: Optional[int] = None):
        self.host = host
        self.exitcode = exitcode
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.args[0], self.host, self.exitcode))
