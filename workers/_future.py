"""TaskFuture: a Future that knows where its task ran and can stop it there.

Owned by :mod:`workers.executor`, which creates each future and drives it through
the methods in "for the executor" below. Only ``Future``'s public methods are
used, so nothing here depends on ``concurrent.futures``' private state:

- A future stays PENDING (as ``Future`` sees it) until its result arrives; the
  executor then calls :meth:`TaskFuture.settle_result` or
  :meth:`~TaskFuture.settle_exception`, which move it through RUNNING to
  FINISHED at once. :meth:`running` is True from the moment the host reported
  the task handed to a worker process (:meth:`mark_started`).
- So :meth:`cancel` works on a running task too (it is PENDING underneath): the
  future is cancelled, the executor's hook stops the task on its host and tells
  the waiters at once (:meth:`TaskFuture.notify_cancelled`). A TaskFuture of no
  executor cancels exactly as a ``Future`` does. This is a deliberate extension of
  ``concurrent.futures``, where ``cancel()`` of a running call returns False.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any, Callable, List, Optional

__all__ = ["TaskFuture"]


class TaskFuture(Future[Any]):
    """A Future that knows where its task ran, and can stop it there.

    Attributes:
        host: the host that ran (or runs) the task; None while it waits.
        hosts: every host the task was handed to, in order (retries add to it).
        logs: the ``logging.LogRecord`` objects the task emitted, once done.
        retries_used: how many times the task was run again because the host
            running it was lost (requeues of tasks that never started are free).
        task_id: the executor's number for the task.
    """

    def __init__(self, task_id: int = 0,
                 on_cancel: Optional[Callable[["TaskFuture"], None]] = None):
        super().__init__()
        self.task_id = task_id
        self.host: Optional[str] = None
        self.hosts: List[str] = []
        self.logs: List[logging.LogRecord] = []
        self.retries_used = 0
        self._started = False
        self._on_cancel = on_cancel
        # Orders cancel() against settle_*(): only one of them moves the future out
        # of PENDING and tells its waiters.
        self._transition = threading.RLock()
        self._notified = False

    def running(self) -> bool:
        """True while the task runs (or waits in a worker process) on its host."""
        return super().running() or (self._started and not self.done())

    def cancel(self) -> bool:
        """Cancel the task; False only when the future is already done.

        Unlike ``concurrent.futures``, a *running* task is cancelled too: its
        worker process on the remote is ended (the host stays in service). A
        task that has not reached a worker process yet never runs.
        """
        with self._transition:
            if self.cancelled():
                return True  # cancelled before: nothing more to do
            if not super().cancel():
                return False
        if self._on_cancel is not None:
            self._on_cancel(self)  # the executor stops the task, then notify_cancelled()
        return True

    def notify_cancelled(self) -> None:
        """Tell the waiters (``wait()``, ``as_completed()``) that the future was
        cancelled: the executor calls it as soon as it took the task back or
        asked its host to stop it, not when the host confirms."""
        with self._transition:
            if self.cancelled() and not self._notified:
                self._notified = True
                try:
                    self.set_running_or_notify_cancel()
                except RuntimeError:
                    pass  # someone else called it already: the waiters know

    # -- for the executor -------------------------------------------------
    def mark_started(self, host: str) -> None:
        """The host handed the task to a worker process."""
        self.host = host
        self._started = True

    def assign(self, host: str) -> None:
        """The task was handed to ``host`` (again, for a retry)."""
        self.host = host
        self.hosts.append(host)
        self._started = False

    def settle_result(self, result: Any) -> bool:
        """Finish with ``result``; False if the future was cancelled or done."""
        if not self._to_running():
            return False
        self.set_result(result)
        return True

    def settle_exception(self, exception: BaseException) -> bool:
        """Finish with ``exception``; False if the future was cancelled or done."""
        if not self._to_running():
            return False
        self.set_exception(exception)
        return True

    def _to_running(self) -> bool:
        with self._transition:
            if self.cancelled():
                self.notify_cancelled()
                return False
            if self.done() or super().running():
                return False  # finished, or being finished by another call
            return self.set_running_or_notify_cancel()

    def __repr__(self) -> str:
        if self.cancelled():
            state = "cancelled"
        elif self.done():
            error = self.exception(0)
            state = (f"finished raised {type(error).__name__}" if error is not None
                     else f"finished returned {type(self.result(0)).__name__}")
        elif self.running():
            state = "running"
        else:
            state = "pending"
        where = f" host={self.host}" if self.host else ""
        return f"<TaskFuture at {id(self):#x} state={state} task={self.task_id}{where}>"
