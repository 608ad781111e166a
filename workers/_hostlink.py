"""HostLink: one executor host's SSH pipe, its sender and reader threads, its outbox.

::

    executor (any thread)             HostLink                              remote
    post_runs(entries) ---> outbox (own lock) ---> sender thread ---> SSHPipe.send ===> WorkerAgent
    post_cancel(tid)   --->   in order: a cancel never precedes its run
                              (an idle host's lone task is sent by the posting
                               thread itself: no hop through the sender)
    listener.on_events <--- reader thread <--------------------------- SSHPipe.recv <===
    listener.on_end    <---   when the pipe ends: why, and whether the agent's whole
                              output arrived (then "never started" is known for sure)

The reader thread never sends and never waits for anything but its pipe: what
it learns goes to the listener (the executor), whose handlers only take the
executor's lock briefly and post to outboxes. So replies keep being read
however full the send direction is, which is what keeps the agent's replies
(and sshpipe's reply window) flowing.

Ownership: the executor creates the link, starts it (``start`` runs in a starter
thread of :func:`sshpipe._startmany.start_pipes`) and closes it. ``state``,
``info``, ``error`` and ``run_time`` are the executor's record of the host, read
and written under the executor's lock; the outbox is guarded by the link's own.
"""
from __future__ import annotations

import enum
import logging
import threading
import time
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

from sshpipe.errors import PayloadError, PipeBroken, PipeClosed, RemoteError, SSHPipeError
from sshpipe.pipe import SSHPipe

__all__ = ["Entry", "HostLink", "HostState", "Listener"]

logger = logging.getLogger(__name__)

# The largest "run" message the sender makes of several tasks: a burst of tasks
# with large arguments must not become one huge frame.
MESSAGE_BYTES = 4 << 20
# How long close() waits for the reader thread once the pipe ended.
READER_JOIN = 5.0

# One task as it travels: (tid, fn_payload, args_payload, timeout).
Entry = Tuple[int, bytes, bytes, Optional[float]]


class HostState(enum.Enum):
    """Life cycle of one host in an executor."""

    STARTING = "starting"  # SSH session and agent being started
    READY = "ready"        # the agent's worker pool is up; takes tasks
    LOST = "lost"          # failed to start, or its agent/link failed; never used again
    CLOSED = "closed"      # shut down by the executor


class Listener(Protocol):
    """What a HostLink reports to (the executor); called from its threads."""

    def on_events(self, link: "HostLink", events: List[Tuple[Any, ...]]) -> None: ...

    def on_end(self, link: "HostLink", cause: Optional[BaseException], clean: bool) -> None: ...

    def on_unsendable(self, link: "HostLink", tids: Sequence[int],
                      error: BaseException) -> None: ...


class HostLink:
    """One host of an executor and the threads that talk to it.

    Args:
        name: the host's name in the executor.
        pipe: its SSHPipe (running the worker agent), not started.
        listener: told of events, of the end, of tasks that cannot be sent.
    """

    def __init__(self, name: str, pipe: SSHPipe, listener: Listener):
        self.name = name
        self.pipe = pipe
        self._listener = listener
        # The executor's record of the host (under the executor's lock).
        self.state = HostState.STARTING
        self.info: Dict[str, Any] = {}
        self.error: Optional[BaseException] = None
        self.run_time: Optional[float] = None  # moving average of its tasks' run time
        self.init_failed = False  # its agent's initializer raised (it started, then broke)
        self.ready = threading.Event()   # READY, or gave up
        # Messages for the host, in order: ("run", entry) and ("cancel", tid).
        self._outbox: List[Tuple[str, Any]] = []
        self._out_cond = threading.Condition()
        self._out_closed = False
        self._sending = False  # a thread is sending for this host: keeps messages in order
        self._sender: Optional[threading.Thread] = None
        self._reader: Optional[threading.Thread] = None

    def __repr__(self) -> str:
        return f"<host {self.name} {self.state.value}>"

    # -- start (in a starter thread) -----------------------------------------
    def start(self, deadline: Optional[float]) -> None:
        """Start the reader and sender, greet the agent, and wait (until
        ``deadline``) for its pool to be ready. The pipe is started already.

        Raises:
            TimeoutError: not ready by the deadline.
            SSHPipeError: the host was lost while starting (its error).
        """
        self._reader = threading.Thread(target=self._read_loop, name=f"workers-reader-{self.name}",
                                        daemon=True)
        self._reader.start()
        self._sender = threading.Thread(target=self._send_loop, name=f"workers-sender-{self.name}",
                                        daemon=True)
        self._sender.start()
        self.post("hello", {})
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self.ready.wait(remaining):
            raise TimeoutError(f"{self.name}: the worker agent's pool was not ready in time")
        if self.state is not HostState.READY and self.error is not None and not self.init_failed:
            raise self.error

    # -- output -------------------------------------------------------------
    def post(self, kind: str, payload: Any) -> None:
        with self._out_cond:
            if self._out_closed:
                return
            self._outbox.append((kind, payload))
            if len(self._outbox) == 1:
                self._out_cond.notify_all()

    def post_cancel(self, tid: int) -> None:
        """Ask the host to stop task ``tid`` (after its own "run", never before)."""
        self.post("cancel", tid)

    def post_runs(self, entries: List[Entry], direct: bool = False) -> None:
        """Send tasks to the host. ``direct``: the host held nothing before, so a
        lone task (the latency case) is sent from this thread, skipping the hop
        to the sender thread; a burst still goes through it in batches. Never
        ``direct`` from the reader thread, which must not wait on a send."""
        with self._out_cond:
            if self._out_closed:
                return
            direct = direct and not self._outbox and not self._sending
            if direct:
                self._sending = True
            else:
                notify = not self._outbox
                self._outbox.extend(("run", entry) for entry in entries)
                if notify:
                    self._out_cond.notify_all()
        if direct:
            try:
                self._send_runs(entries)
            finally:
                self._end_sending()

    def _end_sending(self) -> None:
        with self._out_cond:
            self._sending = False
            self._out_cond.notify_all()

    def _send_loop(self) -> None:
        """Sender thread: the outbox to the pipe, runs of tasks batched."""
        while True:
            with self._out_cond:
                while self._sending or (not self._outbox and not self._out_closed):
                    self._out_cond.wait()
                if not self._outbox:
                    return
                batch, self._outbox = self._outbox, []
                self._sending = True
            try:
                runs: List[Entry] = []
                for kind, payload in batch:
                    if kind == "run":
                        runs.append(payload)
                        continue
                    if runs:
                        self._send_runs(runs)
                        runs = []
                    self._send((kind, payload))
                if runs:
                    self._send_runs(runs)
            finally:
                self._end_sending()

    def _send(self, message: Tuple[Any, ...]) -> None:
        try:
            self.pipe.send(message)
        except (PipeBroken, PipeClosed):
            pass  # the reader thread sees the end and settles the host's tasks

    def _send_runs(self, entries: List[Entry]) -> None:
        start = 0
        while start < len(entries):
            size, end = 0, start
            while end < len(entries) and (
                    end == start or size + _size(entries[end]) <= MESSAGE_BYTES):
                size += _size(entries[end])
                end += 1
            chunk = entries[start:end]
            start = end
            try:
                self.pipe.send(("run", chunk))
            except (PipeBroken, PipeClosed):
                return  # the reader thread settles them
            except Exception as exc:  # cannot go to this host (too large, version skew)
                self._listener.on_unsendable(self, [entry[0] for entry in chunk], exc)

    # -- input --------------------------------------------------------------
    def _read_loop(self) -> None:
        """Reader thread: the host's replies, until its pipe ends."""
        pipe = self.pipe
        clean = False
        cause: Optional[BaseException] = None
        failure: Optional[RemoteError] = None
        while True:
            try:
                events = pipe.recv()
            except EOFError:
                clean = True
                break
            except RemoteError as exc:  # the agent failed; its end follows
                failure = exc
                continue
            except (PipeBroken, PipeClosed) as exc:
                # recv() raises "the pipe is broken" from what broke it: keep the latter.
                cause = exc.__cause__ if isinstance(exc.__cause__, SSHPipeError) else exc
                break
            except PayloadError as exc:
                # Its events cannot be read (refused by the trust policy, or broken):
                # the tasks they settle would never resolve, so the host is lost.
                cause = exc
                pipe.kill()
                break
            try:
                self._listener.on_events(self, events)
            except BaseException:  # a bug or a callback's SystemExit: never end the reader
                logger.exception("%s: handling the host's events failed", self.name)
        if clean:
            try:
                response = pipe.response(timeout=5.0)
                reason = response.reason or "no reason given"
                cause = PipeBroken(f"{self.name}: the worker agent ended ({reason}"
                                   f", exit status {response.exitcode})"
                                   + (f"; remote stderr: {response.stderr.strip()[-500:]}"
                                      if response.stderr.strip() else ""))
            except (SSHPipeError, TimeoutError) as exc:
                cause = exc
            if failure is not None and cause is not None and cause.__cause__ is None:
                cause.__cause__ = failure
        try:
            self._listener.on_end(self, cause, clean)
        finally:
            self.ready.set()

    # -- end ----------------------------------------------------------------
    def close(self, timeout: float) -> None:
        """Send what is queued, end the agent, wait for the threads (each wait
        bounded by ``timeout``)."""
        with self._out_cond:
            self._out_closed = True
            self._out_cond.notify_all()
        if self._sender is not None:
            self._sender.join(timeout)
        try:
            self.pipe.close(timeout=timeout)
        except SSHPipeError as exc:
            logger.debug("%s: closing: %s", self.name, exc)
        if self._reader is not None:
            self._reader.join(READER_JOIN)

    def kill(self) -> None:
        """End the host's pipe at once (its child, hence its SSH session)."""
        with self._out_cond:
            self._out_closed = True
            self._out_cond.notify_all()
        if self.pipe.pid is not None and not self.pipe.released:
            self.pipe.kill()


def _size(entry: Entry) -> int:
    return len(entry[1]) + len(entry[2])
