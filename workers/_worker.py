"""The worker process of a WorkerAgent: runs tasks, ends itself on a cancel or timeout.

Stdlib only (plus sshpipe's shipped modules): shipped to remote hosts with the
agent. A worker is started by :class:`workers.agent.WorkerAgent` as ``python -c``
with its end of a socket pair; :class:`Link` frames the messages both ways.

Messages from the agent: ``("run", [(tid, fn_payload, args_payload, timeout), ...])``,
``("cancel", tid)`` and ``("return", n)`` (give back up to n waiting tasks). To
the agent: ``("ready",)``, ``("log", tid, fields)``, ``("done", tid, ok,
payload, traceback, seconds)``, ``("dropped", tid)`` (a cancelled task that had
not started), ``("returned", [tid, ...])`` (given back, never started) and
``("ending", tid, reason)`` just before the worker ends itself for a cancel or a
timeout.
"""
from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, Deque, Dict, List, Optional

from sshpipe import serial

__all__ = ["Link", "worker_main"]

# How often a worker's control thread looks at the running task's deadline.
DEADLINE_POLL = 0.05
# Exit status of a worker that ended itself for a cancel or a timeout.
EXIT_ENDED = 75

_PR_SET_PDEATHSIG = 1


class Link:
    """Pickled messages over a socket, each behind a 4-byte length.

    One ``receive()`` takes everything that has arrived (one system call for a
    burst of results), which ``multiprocessing.connection.Connection`` would read
    with two calls per message. Both the agent and its workers use it.
    """

    _HEADER = struct.Struct("!I")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, protocol=serial.PROTOCOL)
        self.sock.sendall(self._HEADER.pack(len(data)) + data)

    def poll(self, timeout: Optional[float]) -> bool:
        return bool(select.select([self.sock], [], [], timeout)[0])

    def receive(self) -> Optional[List[Any]]:
        """The messages that have arrived (waits for one read); None at the end."""
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            return None
        buffer = self._buffer
        buffer += chunk
        messages = []
        offset = 0
        header = self._HEADER
        while len(buffer) - offset >= header.size:
            (size,) = header.unpack_from(buffer, offset)
            end = offset + header.size + size
            if end > len(buffer):
                break
            messages.append(pickle.loads(memoryview(buffer)[offset + header.size:end]))
            offset = end
        del buffer[:offset]
        return messages

    def close(self) -> None:
        self.sock.close()


class _RecordSender(logging.Handler):
    """In a worker: sends each record of the running task to the agent."""

    def __init__(self, tasks: "_TaskQueue"):
        super().__init__()
        self._tasks = tasks

    def emit(self, record: logging.LogRecord) -> None:
        try:
            exc_text = record.exc_text
            if record.exc_info and not exc_text:
                exc_text = logging.Formatter().formatException(record.exc_info)
            fields = {
                "name": record.name, "levelno": record.levelno, "levelname": record.levelname,
                "msg": record.getMessage(), "args": None, "created": record.created,
                "msecs": record.msecs, "pathname": record.pathname, "filename": record.filename,
                "module": record.module, "lineno": record.lineno, "funcName": record.funcName,
                "process": record.process, "processName": record.processName,
                "thread": record.thread, "threadName": record.threadName, "exc_text": exc_text,
            }
            self._tasks.send(("log", self._tasks.current, fields))
        except Exception:  # logging must never fail the task
            self.handleError(record)


class _TaskQueue:
    """A worker's tasks and its control thread, which alone reads the connection.

    The worker's main thread runs the tasks in order. The control thread takes
    new batches, drops a cancelled task that waits, and ends the process
    (``os._exit``) when the *running* task is cancelled or runs out of time.
    ``state`` orders the two: the main thread marks a task running and reports
    its result under it, and the control thread decides under it, so it never
    ends the process for a task that has already finished, and never for one
    that has not started.
    """

    def __init__(self, conn: Any):
        self.conn = conn
        self.send_lock = threading.Lock()
        self.state = threading.Condition()
        self.queue: Deque[tuple] = deque()
        self.current: Optional[int] = None
        self.deadline: Optional[float] = None

    def send(self, message: tuple) -> None:
        with self.send_lock:
            self.conn.send(message)

    def next_task(self) -> tuple:
        with self.state:
            while not self.queue:
                self.state.wait()
            task = self.queue.popleft()
            self.current = task[0]
            self.deadline = time.monotonic() + task[3] if task[3] else None
            return task

    def finish(self, reply: tuple) -> None:
        with self.state:
            self.current = None
            self.deadline = None
            self.send(reply)

    def control_loop(self) -> None:
        while True:
            with self.state:
                deadline = self.deadline
            wait = DEADLINE_POLL if deadline is None else min(
                DEADLINE_POLL, max(0.0, deadline - time.monotonic()))
            try:
                if not self.conn.poll(wait):
                    self._check_deadline()
                    continue
                messages = self.conn.receive()
            except OSError:
                messages = None
            if messages is None:
                os._exit(0)  # the agent closed the connection: stop, even mid-task
            for message in messages:
                if message[0] == "run":
                    with self.state:
                        self.queue.extend(message[1])
                        self.state.notify()
                elif message[0] == "cancel":
                    self._cancel(message[1])
                elif message[0] == "return":
                    self._give_back(message[1])

    def _cancel(self, tid: int) -> None:
        with self.state:
            if self.current == tid:
                self._end(tid, "cancelled")
            for index, task in enumerate(self.queue):
                if task[0] == tid:
                    del self.queue[index]
                    self.send(("dropped", tid))
                    return

    def _give_back(self, count: int) -> None:
        """Hand the last ``count`` waiting tasks back to the agent, in order."""
        with self.state:
            taken = [self.queue.pop()[0] for _ in range(min(count, len(self.queue)))]
            self.send(("returned", taken[::-1]))

    def _check_deadline(self) -> None:
        with self.state:
            if (self.current is not None and self.deadline is not None
                    and time.monotonic() >= self.deadline):
                self._end(self.current, "timeout")

    def _end(self, tid: int, reason: str) -> None:
        """End this process, under ``state``: task ``tid`` is running."""
        try:
            self.send(("ending", tid, reason))
        finally:
            os._exit(EXIT_ENDED)


def _die_with_parent(parent: int) -> None:
    """End this worker when the agent ends, however it ends."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="workers-watchdog", daemon=True).start()


def _exception_payload(exc: BaseException) -> bytes:
    try:
        payload = serial.dumps(exc)
        serial.loads(payload)
        return payload
    except Exception:  # an exception that cannot travel: send its text instead
        return serial.dumps(RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: "
                                         f"{exc} (the exception could not be pickled)"))


def worker_main(conn: Any, log_level: int, index: int) -> None:
    """A worker process: run the tasks that arrive on ``conn`` until it closes."""
    _die_with_parent(os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the agent decides when a task ends
    tasks = _TaskQueue(conn)
    root = logging.getLogger()
    root.handlers[:] = [_RecordSender(tasks)]
    root.setLevel(log_level)
    cache: Dict[bytes, Any] = {}
    from workers.task import load_call

    threading.Thread(target=tasks.control_loop, name="workers-control", daemon=True).start()
    tasks.send(("ready",))
    while True:
        tid, fn_payload, args_payload, _ = tasks.next_task()
        started = time.perf_counter()
        try:
            fn, args, kwargs = load_call(fn_payload, args_payload, cache)
            result = fn(*args, **kwargs)
            seconds = time.perf_counter() - started
            try:
                reply = ("done", tid, True, serial.dumps(result), None, seconds)
            except Exception as exc:
                raise TypeError(f"the result of task {tid} ({type(result).__name__}) could "
                                f"not be serialized: {exc}") from exc
        except BaseException as exc:  # the task's failure is its result
            reply = ("done", tid, False, _exception_payload(exc), traceback.format_exc(),
                     time.perf_counter() - started)
        sys.stdout.flush()
        try:
            tasks.finish(reply)
        except OSError:
            return
