"""One worker process of a host's pool: runs tasks, ends itself on a cancel or timeout.

Stdlib only (plus sshpipe's shipped modules): shipped to remote hosts with the
agent. The pool (:mod:`workers._pool`) starts each worker as ``python -c`` with
its end of a socket pair, carried by a :class:`~workers._link.Link`.

::

    pool thread (agent)          worker process
                          +---------------------------------------------------+
    ("init", payload) --> | control thread: the only one to touch the socket  |
    ("run", [tasks])  --> |   reads: queue tasks, drop a cancelled waiting one,|
    ("cancel", tid)   --> |   end the process for the running one (cancel or   |
    ("return", n)     --> |   timeout), give back waiting tasks                |
                          |   writes: the outbox, as the socket takes it       |
                          | main thread: initializer, then tasks in order;     |
    <-- ready, done, log, |   results, log records and printed output go to    |
        out, dropped,     |   the outbox (it waits while the outbox is full)   |
        returned, ending, +---------------------------------------------------+
        initialized, init-failed

Messages to the pool: ``("ready",)`` once booted; ``("initialized",)`` or
``("init-failed", payload, traceback)`` after the initializer; ``("log", tid,
record)`` (:func:`sshpipe._logwire.to_wire`); ``("out", tid, stream, text)`` (printed
output, when echoed);
``("done", tid, ok, payload, traceback, seconds)``, where ``ok`` is True, False
(the task raised) or ``"load"`` (its call could not be unpickled here);
``("dropped", tid)`` (a cancelled task that had not started); ``("returned",
[tid, ...])`` (given back, never started); ``("ending", tid, reason)`` just
before the worker ends itself for a cancel or a timeout.

Why one thread owns the socket: a worker sending a large result while the pool
sends it a large task must not wait for the pool to read, since the pool may be
waiting for the worker to read (the deadlock of issue 11). The main thread
therefore never writes: it hands messages to the control thread through the
outbox, whose size is bounded (:data:`MAX_UNSENT`), and no lock is held while
anything waits on the socket.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from sshpipe import serial
from sshpipe._logwire import to_wire
from workers._link import Link

__all__ = ["EXIT_ENDED", "EXIT_INIT_FAILED", "worker_main"]

# How often the control thread looks at the running task's deadline.
DEADLINE_POLL = 0.05
# Exit status of a worker that ended itself for a cancel or a timeout.
EXIT_ENDED = 75
# Exit status of a worker whose initializer raised.
EXIT_INIT_FAILED = 76
# Bytes of results, records and output waiting to be sent before the task thread
# waits (a single larger message still goes: it waits until the others are sent).
MAX_UNSENT = 8 << 20
# How long a worker that ends itself tries to send what it still holds (results of
# tasks before the one ended): less than the pool's KILL_GRACE.
FLUSH_BEFORE_EXIT = 1.5
# Printed output is sent per line, or once this much is buffered.
OUTPUT_CHUNK = 8192

_PR_SET_PDEATHSIG = 1


class _Worker:
    """The worker's state, shared by its main thread and its control thread.

    ``state`` guards the queue, the running task, its deadline and the outbox.
    The main thread marks a task running and queues its result under it; the
    control thread decides under it to end the process, so it never ends it for
    a task that has already finished, nor for one that has not started. Nothing
    waits on the socket while ``state`` is held, except the final flush before
    the process ends itself.
    """

    def __init__(self, link: Link):
        self.link = link
        self.state = threading.Condition()
        self.queue: Deque[Tuple[Any, ...]] = deque()
        self.current: Optional[int] = None
        self.deadline: Optional[float] = None
        self.outbox: Deque[bytes] = deque()
        self.outbox_bytes = 0
        self.init_payload: Optional[bytes] = None
        self.init_received = False
        self.exit_code: Optional[int] = None  # set by the main thread: end, once flushed
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- any thread ---------------------------------------------------------
    def post(self, message: Tuple[Any, ...]) -> None:
        """Queue a message for the pool (pickled here, outside the lock); waits
        while the outbox is full."""
        payload = pickle.dumps(message, protocol=serial.PROTOCOL)
        with self.state:
            while self.outbox and self.outbox_bytes + len(payload) > MAX_UNSENT:
                self.state.wait()
            self.outbox.append(payload)
            self.outbox_bytes += len(payload)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # wake-ups are pending anyway

    # -- main thread --------------------------------------------------------
    def wait_init(self) -> Optional[bytes]:
        with self.state:
            while not self.init_received:
                self.state.wait()
            return self.init_payload

    def next_task(self) -> Tuple[Any, ...]:
        with self.state:
            while not self.queue:
                self.state.wait()
            task = self.queue.popleft()
            self.current = task[0]
            self.deadline = time.monotonic() + task[3] if task[3] else None
            return task

    def finish(self, reply: bytes) -> None:
        """The running task is over: queue its reply (already pickled)."""
        with self.state:
            self.current = None
            self.deadline = None
            while self.outbox and self.outbox_bytes + len(reply) > MAX_UNSENT:
                self.state.wait()
            self.outbox.append(reply)
            self.outbox_bytes += len(reply)
        self._wake()

    def flush_and_exit(self, code: int) -> None:
        """Have the control thread send everything queued (within
        FLUSH_BEFORE_EXIT) and end the process; never returns."""
        with self.state:
            self.exit_code = code
        self._wake()
        threading.Event().wait()

    # -- control thread -----------------------------------------------------
    def control_loop(self) -> None:
        link = self.link
        while True:
            with self.state:
                if self.exit_code is not None:
                    self._drain_outbox()
                    self._flush_link(time.monotonic() + FLUSH_BEFORE_EXIT)
                    os._exit(self.exit_code)
                self._drain_outbox()
                deadline = self.deadline
            wait = DEADLINE_POLL if deadline is None else min(
                DEADLINE_POLL, max(0.0, deadline - time.monotonic()))
            try:
                readable, writable, _ = select.select(
                    [link, self._wake_r], [link] if link.wants_write else [], [], wait)
                if writable:
                    link.write()
                messages: Optional[List[Any]] = []
                if link in readable:
                    messages = link.receive()
            except OSError:
                messages = None
            if messages is None:
                os._exit(0)  # the pool closed the connection: stop, even mid-task
            if self._wake_r in readable:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            for message in messages:
                self._on_message(message)
            self._check_deadline()

    def _drain_outbox(self) -> None:
        """Move queued messages to the link (under ``state``), as it has room."""
        if not self.outbox:
            return
        while self.outbox and self.link.unsent < MAX_UNSENT:
            payload = self.outbox.popleft()
            self.outbox_bytes -= len(payload)
            self.link.put_payload(payload)
        self.state.notify_all()

    def _on_message(self, message: Tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "run":
            with self.state:
                self.queue.extend(message[1])
                self.state.notify_all()
        elif kind == "cancel":
            self._cancel(message[1])
        elif kind == "return":
            self._give_back(message[1])
        elif kind == "init":
            with self.state:
                self.init_payload = message[1]
                self.init_received = True
                self.state.notify_all()

    def _cancel(self, tid: int) -> None:
        with self.state:
            if self.current == tid:
                self._end(tid, "cancelled")
            for index, task in enumerate(self.queue):
                if task[0] == tid:
                    del self.queue[index]
                    self.link.put(("dropped", tid))
                    return

    def _give_back(self, count: int) -> None:
        """Hand the last ``count`` waiting tasks back to the pool, in order."""
        with self.state:
            taken = [self.queue.pop()[0] for _ in range(min(count, len(self.queue)))]
            self.link.put(("returned", taken[::-1]))

    def _check_deadline(self) -> None:
        with self.state:
            if (self.current is not None and self.deadline is not None
                    and time.monotonic() >= self.deadline):
                self._end(self.current, "timeout")

    def _end(self, tid: int, reason: str) -> None:
        """End this process, under ``state``: task ``tid`` is running. What the
        earlier tasks produced is sent first."""
        self._drain_outbox()
        self.link.put(("ending", tid, reason))
        self._flush_link(time.monotonic() + FLUSH_BEFORE_EXIT)
        os._exit(EXIT_ENDED)

    def _flush_link(self, until: float) -> None:
        link = self.link
        while (self.outbox or link.wants_write) and time.monotonic() < until:
            self._drain_outbox()
            try:
                select.select([], [link], [], max(0.0, until - time.monotonic()))
                link.write()
            except OSError:
                return


class _RecordSender(logging.Handler):
    """Sends each record of the running task to the pool, in the wire form of
    :mod:`sshpipe._logwire` with the task's id as ``task``."""

    def __init__(self, worker: _Worker):
        super().__init__()
        self._worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tid = self._worker.current
            self._worker.post(("log", tid, to_wire(record, plain=True, extra={"task": tid})))
        except Exception:  # logging must never fail the task
            self.handleError(record)


class _EchoedOutput(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of a worker whose output the caller echoes:
    text goes to the pool per line (or per :data:`OUTPUT_CHUNK`)."""

    def __init__(self, worker: _Worker, stream: str):
        super().__init__()
        self._worker = worker
        self._stream = stream
        self._buffer: List[str] = []
        self._size = 0
        self._lock = threading.Lock()

    # typeshed has TextIOBase.encoding as a plain attribute; at run time it is a
    # read-only property, which only a property can override
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._buffer.append(text)
            self._size += len(text)
            ready = "\n" in text or self._size >= OUTPUT_CHUNK
        if ready:
            self.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            text = "".join(self._buffer)
            self._buffer.clear()
            self._size = 0
        if text:
            self._worker.post(("out", self._worker.current, self._stream, text))


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
    except BaseException:  # an exception that cannot travel: send its text instead
        return serial.dumps(RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: "
                                         f"{exc} (the exception could not be pickled)"))


def _run_initializer(worker: _Worker) -> None:
    payload = worker.wait_init()
    if payload is None:
        return
    try:
        fn, args = serial.loads(payload)
        fn(*args)
    except BaseException as exc:  # reported: the pool breaks the host with it
        worker.post(("init-failed", _exception_payload(exc), traceback.format_exc()))
        worker.flush_and_exit(EXIT_INIT_FAILED)
    worker.post(("initialized",))


def _outcome(tid: int, fn_payload: bytes, args_payload: bytes,
             cache: Dict[bytes, Any]) -> Tuple[Any, bytes, Optional[str], float]:
    """Run one task: (ok, payload, traceback, seconds) as the "done" reply wants."""
    from workers.task import load_call

    started = time.perf_counter()
    try:
        fn, args, kwargs = load_call(fn_payload, args_payload, cache)
    except BaseException as exc:  # the call could not be unpickled here
        return ("load", _exception_payload(exc), traceback.format_exc(),
                time.perf_counter() - started)
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # the task's failure is its result
        return False, _exception_payload(exc), traceback.format_exc(), time.perf_counter() - started
    seconds = time.perf_counter() - started
    try:
        return True, serial.dumps(result), None, seconds
    except BaseException as exc:  # the result cannot travel: its pickling error does
        return False, _exception_payload(exc), traceback.format_exc(), seconds


def worker_main(sock_fd: int, log_level: int, index: int, options: Dict[str, Any]) -> None:
    """A worker process: run the tasks that arrive until the pool closes the link.

    ``options``: ``initializer`` (True when an "init" message follows),
    ``max_tasks`` (end after that many tasks; None for no limit), ``echo``
    (send printed output to the caller).
    """
    _die_with_parent(os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the agent decides when a task ends
    worker = _Worker(Link(socket.socket(fileno=sock_fd)))
    root = logging.getLogger()
    root.handlers[:] = [_RecordSender(worker)]
    root.setLevel(log_level)
    if options.get("echo"):
        sys.stdout = _EchoedOutput(worker, "stdout")
        sys.stderr = _EchoedOutput(worker, "stderr")
    threading.Thread(target=worker.control_loop, name="workers-control", daemon=True).start()
    worker.post(("ready",))
    if options.get("initializer"):
        _run_initializer(worker)
    else:
        with worker.state:
            worker.init_received = True
    cache: Dict[bytes, Any] = {}
    max_tasks = options.get("max_tasks")
    done = 0
    while max_tasks is None or done < max_tasks:
        tid, fn_payload, args_payload, _ = worker.next_task()
        ok, payload, tb, seconds = _outcome(tid, fn_payload, args_payload, cache)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass  # a task closed or replaced them
        reply = pickle.dumps(("done", tid, ok, payload, tb, seconds), protocol=serial.PROTOCOL)
        worker.finish(reply)
        done += 1
    worker.flush_and_exit(0)  # max_tasks reached: the pool starts a fresh worker
