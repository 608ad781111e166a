"""TaskFuture: a Future that knows where its task ran and can stop it there.

Owned by :mod:`workers.executor`: the executor creates each future, sets it
running, resolves it and gives it the hook that stops a running task remotely.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future
from concurrent.futures import _base as _futures_base  # Future's state constants
from typing import Callable, List, Optional

__all__ = ["TaskFuture"]


class TaskFuture(Future):
    """A Future that knows where its task ran, and can stop it there.

    Attributes:
        host: the host that ran (or runs) the task; None while it waits.
        hosts: every host the task was handed to, in order (retries add to it).
        logs: the ``logging.LogRecord`` objects the task emitted, once done.
        retries_used: how many times the task was run again because the host
            running it was lost (requeues of tasks that never started are free).
        task_id: the executor's number for the task.
    """

    def __init__(self, task_id: int = 0):
        super().__init__()
        self.task_id = task_id
        self.host: Optional[str] = None
        self.hosts: List[str] = []
        self.logs: List[logging.LogRecord] = []
        self.retries_used = 0
        self._stop_remote: Optional[Callable[["TaskFuture"], None]] = None

    def cancel(self) -> bool:
        """Cancel the task. Unlike ``concurrent.futures``, a *running* task is
        cancelled too: its worker process on the remote is ended (the host stays
        in service). Returns False only when the future is already finished."""
        with self._condition:
            if self._state != _futures_base.RUNNING or self._stop_remote is None:
                return super().cancel()
            # Same end state as a pending future that was cancelled and noticed.
            self._state = _futures_base.CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
            stop_remote = self._stop_remote
        stop_remote(self)
        self._invoke_callbacks()
        return True

    def __repr__(self) -> str:
        where = f" host={self.host}" if self.host else ""
        return super().__repr__()[:-1] + f" task={self.task_id}{where}>"
