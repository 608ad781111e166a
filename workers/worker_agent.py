"""WorkerAgent: the remote side of an executor host, an sshpipe handler over a pool.

Stdlib only (plus sshpipe's shipped modules): this module travels to the remote
with ``modules=["workers"]``, so the remote needs nothing but Python. (Named
``worker_agent`` so that it is not mistaken for :mod:`sshpipe.agent`, the
protocol loop it runs inside.)

::

    caller (SSHExecutor)           agent process (this handler)               worker processes
                             +------------------------------------+
    ("hello", {})      ----> | main thread: handle()              |
    ("run", [tasks])   ----> |   appends to the inbox, wakes ---> |
    ("cancel", tid)    ----> |                                    |
                             | pool thread (workers._pool):       |  ("run", [..]) +------------+
                             |   inbox -> queue -> workers        | =============> | control    |
                             |   results, logs, output <- workers | <============= | main:      |
    <-- replies (lists) ---- |   reap, requeue, replace           |  done, log ... |  fn(*args) |
                             +------------------------------------+                +------------+

Actors:

- The agent's **main thread** (sshpipe's service loop) calls :meth:`handle` for
  every message. It never blocks there: it appends the message to the inbox and
  wakes the pool thread through a pipe. The inbox holds at most what the
  executor lets a host hold (its scheduler's capacity, in tasks and bytes).
- The **pool thread** owns the :class:`~workers._pool.Pool`: every worker, the
  local task queue, the inbox's consumer side. Its replies go out through
  ``reply()``, which blocks when the caller does not read (sshpipe's window);
  nothing else waits on it then, since the workers hold what they produce in
  bounded outboxes.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from collections import deque
from typing import Any, Deque, List, Optional

from sshpipe.handler import SSHPipeHandler
from workers._pool import STOP_GRACE, Pool, PoolBroken

__all__ = ["WorkerAgent"]

logger = logging.getLogger(__name__)


class WorkerAgent(SSHPipeHandler):
    """Runs tasks in ``slots`` worker processes on the remote host.

    Args:
        slots: worker processes; default the remote's CPU count.
        log_level: level from which task records are sent back.
        initializer: pickled ``(fn, args)``: every worker process calls
            ``fn(*args)`` once before its first task; if it raises, the host
            stops taking tasks (the caller sees why).
        max_tasks_per_child: tasks a worker process runs before it is replaced
            by a fresh one (None: no limit).
        echo: workers send what tasks print, for the caller to print.
    """

    def __init__(self, slots: Optional[int] = None, log_level: int = logging.INFO, *,
                 initializer: Optional[bytes] = None,
                 max_tasks_per_child: Optional[int] = None, echo: bool = False,
                 **kwargs: Any):
        kwargs.setdefault("tolerance", -1)
        super().__init__(**kwargs)
        if slots is not None and slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ValueError(f"max_tasks_per_child must be at least 1, not "
                             f"{max_tasks_per_child}")
        self.slots = slots
        self.log_level = log_level
        self.initializer = initializer
        self.max_tasks_per_child = max_tasks_per_child
        self.echo = echo
        self._inbox: Deque[Any] = deque()
        self._wake_r, self._wake_w = -1, -1
        self._thread: Optional[threading.Thread] = None
        self._stopping = False

    # -- main thread ------------------------------------------------------
    def atstart(self, received: Any) -> None:
        self.slots = self.slots or os.cpu_count() or 1
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._pool_loop, name="workers-pool", daemon=True)
        self._thread.start()

    def handle(self, received: Any) -> None:
        self._inbox.append(received)
        self._wake()

    def atexit(self, received: Any) -> None:
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(STOP_GRACE * 2 + 5)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the pool thread has wake-ups pending anyway

    def _take_inbox(self) -> List[Any]:
        inbox = self._inbox
        taken = []
        while inbox:
            taken.append(inbox.popleft())
        return taken

    # -- pool thread ------------------------------------------------------
    def _pool_loop(self) -> None:
        # From this (non-main) thread, reply() writes at once: "started" reaches
        # the channel before the tasks reach a worker.
        pool = Pool(self.slots or 1, self.log_level, self.reply,
                    initializer=self.initializer, max_tasks=self.max_tasks_per_child,
                    echo=self.echo)
        try:
            pool.run(self._wake_r, lambda: self._stopping, self._take_inbox)
        except BaseException as exc:  # the pool thread's outermost loop: report, end
            if not isinstance(exc, PoolBroken):
                logger.exception("the worker pool failed")
            else:
                logger.error("the worker pool cannot go on: %s", exc)
            try:
                pool.flush_events()
            finally:
                pool.stop()
                os.kill(os.getpid(), signal.SIGTERM)
        else:
            pool.stop()
