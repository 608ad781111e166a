"""Event dispatch: the caller side's reading of one pipe's events.

Frames come from the pipe's event source (:mod:`sshpipe._stream`: the paramiko
child's whole frames, or the agent's raw stream and the OpenSSH child's control
pipe) and each becomes its effect on the pipe's :class:`~sshpipe._ledger.Ledger`
and :class:`~sshpipe._response.Transcript`: replies queue for ``recv()``,
acknowledgements open the credit window, the hello makes the pipe RUNNING, log
records, stdout lines and remote errors are re-emitted into the pipe's logger,
and DONE or BROKEN settles the end.

Whoever holds :attr:`Dispatch.reader_lock` reads the events: a thread waiting
in ``recv()`` reads for itself (:meth:`Dispatch.read_for`, one thread hop less
per reply), otherwise the pipe's events thread (:meth:`Dispatch.loop`) does.
The events thread also times, for the OpenSSH transport, what the paramiko
child times in the byte stream (:meth:`Dispatch.tick`), and when the source
ends it settles an end the agent never told (the child died) and calls the
user's callback, once.
"""
from __future__ import annotations

import logging
import pickle
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from sshpipe import _supervisor, protocol
from sshpipe._ledger import ENDED, Ledger, PipeState
from sshpipe._logwire import reemit
from sshpipe._outbox import Outbox
from sshpipe.errors import FrameError, HandshakeError, PipeBroken, SSHPipeError
from sshpipe.protocol import FrameKind

__all__ = ["Dispatch"]

# The pipe's own records, whichever of its modules they come from.
logger = logging.getLogger("sshpipe.pipe")
# While a thread in recv() reads the events, the events thread looks again this
# often (its timing duties, and what comes after that recv() returned).
PARK = 0.02


def _nothing() -> None:
    pass


def _no_status() -> Tuple[Optional[int], str]:
    return None, ""


class Dispatch:
    """Reads one pipe's events and applies them (see the module docstring).

    Args:
        ledger: the pipe's state and accounting.
        source: the event source (``wait``, ``read``, ``close``; OpenSSH's also
            ``last_heard``).
        outbox: the request pipe's writer (PINGs; abandoned when the events end).
        remote_logger: where the agent's records and stdout lines go.
        name: the pipe's name, on those records.
        beat: ``(heartbeat, dead_after)`` the caller times (OpenSSH), or zeros.
        ready_timeout, started_at: the hello's bound, from the moment the child
            was asked to connect (OpenSSH).
        callback: the user's ``callback(exitcode, stdout, stderr)``, or None.
        label: the pipe's ``repr``, for log records.
        terminate: ends the child (SIGTERM), which ends the session.
        child_status: waits a moment for the child to exit; returns its exit
            code and the start method that ran it.
    """

    def __init__(self, *, ledger: Ledger, source: Any, outbox: Outbox,
                 remote_logger: logging.Logger, name: str, beat: Tuple[float, float],
                 ready_timeout: float, started_at: float,
                 callback: Optional[Callable[[Optional[int], str, str], Any]],
                 label: Callable[[], str], terminate: Callable[[], None],
                 child_status: Callable[[], Tuple[Optional[int], str]]):
        self.ledger = ledger
        self.transcript = ledger.transcript
        self.host = ledger.host
        self.source = source
        self.outbox = outbox
        self.remote_logger = remote_logger
        self.name = name
        self.beat = beat
        self.ready_timeout = ready_timeout
        self.started_at = started_at
        self.callback = callback
        self.label = label
        self.terminate = terminate
        self.child_status = child_status
        self.reader_lock = threading.Lock()
        self.done = False  # the source ended or the end is settled: read no more
        self.error: Optional[BaseException] = None  # a bug that stopped the reading
        self.agent_exited = False  # its EXIT frame came (see tick)
        self._callback_called = False
        self.thread: Optional[threading.Thread] = None

    def start_thread(self, name: str) -> None:
        """Start the events thread (:meth:`loop`; a daemon: it ends with the
        event pipe, and never holds up the interpreter's exit)."""
        self.thread = threading.Thread(target=self.loop, name=name, daemon=True)
        self.thread.start()

    # -- reading ------------------------------------------------------------
    def read_for(self, wait: float) -> None:
        """For a thread in ``recv()``: read events for up to ``wait`` seconds,
        unless another thread is reading them or a reply is already queued."""
        if self.reader_lock.acquire(timeout=wait):
            try:
                if not self.ledger.replies:
                    self.pump(wait)
            finally:
                self.reader_lock.release()

    def pump(self, timeout: float) -> None:
        """Read and dispatch one event if one comes within ``timeout``.

        The caller holds ``reader_lock``: the events thread, or a thread in
        ``recv()`` reading on its own behalf.
        """
        if self.done:
            return
        source = self.source
        try:
            if not source.wait(timeout):
                return
            frames = source.read()
        except SSHPipeError as error:  # the stream is not what an agent sends
            self.fail(error)
            self.done = True
            return
        if frames is None:
            self.done = True
            return
        for frame in frames:
            try:
                settled = self._on_event(frame)
            except FrameError as exc:
                broken = PipeBroken(f"{self.host}: bad {frame.kind.name} event: {exc}")
                broken.__cause__ = exc
                self.ledger.break_with(broken)
                settled = True
            if settled:
                self.done = True
                return

    def fail(self, error: BaseException) -> None:
        """The caller found the pipe broken (OpenSSH: a bad stream, the agent's
        silence): settle with ``error`` and end the child, which ends the session."""
        self.ledger.break_with(error)
        self.terminate()

    def tick(self) -> None:
        """OpenSSH: what the paramiko child times in the byte stream, done here: no
        hello within ready_timeout, the agent's silence past the heartbeat bound,
        and a PING (between two frames) when the caller has been idle a heartbeat."""
        heartbeat, dead_after = self.beat
        state, now = self.ledger.state, time.monotonic()
        if state is PipeState.STARTING:
            if now - self.started_at > self.ready_timeout:
                self.fail(HandshakeError(f"{self.host}: no hello from the agent within "
                                         f"{self.ready_timeout:g} s"))
            return
        if state not in (PipeState.RUNNING, PipeState.CLOSING):
            return
        silent = now - self.source.last_heard
        if self.agent_exited:  # the loader's supervisor may take this long more
            dead_after += _supervisor.GRACE + _supervisor.KILL_WAIT
        if silent > dead_after:
            self.fail(PipeBroken(f"{self.host}: no heartbeat from the agent for "
                                 f"{silent:.1f} s (bound {dead_after:g} s): host or "
                                 f"network down"))
            return
        outbox = self.outbox
        if not outbox.closing and now - outbox.last_put >= heartbeat:
            try:
                outbox.put((protocol.encode(FrameKind.PING),))
            except OSError:
                pass

    def loop(self) -> None:
        """The events thread: read the events until the source ends; settle the
        pipe's end and call the callback."""
        source = self.source
        tick = None if self.beat[0] <= 0 else min(1.0, self.beat[0] / 4)
        try:
            while not self.done:
                if self.reader_lock.locked():
                    # A thread in recv() reads the events itself: keep off the
                    # pipe meanwhile (waking on the same fd and queueing for the
                    # lock were two thread switches per reply).
                    time.sleep(PARK)
                    ready = False
                else:
                    # Wait without the lock, so a thread in recv() can read first.
                    ready = source.wait(tick)
                if tick is not None:
                    self.tick()
                if (ready or self.done) and self.reader_lock.acquire(blocking=False):
                    try:
                        self.pump(0)
                    finally:
                        self.reader_lock.release()
        except Exception as exc:  # a bug in dispatch: settle with it as the cause
            self.error = exc
            logger.exception("%s: reading the pipe's events failed", self.label())
        finally:
            with self.reader_lock:
                self.done = True
                source.close()
            self.outbox.abandon()
            self._settle_if_open()
            self._run_callback()
            # Done with the pipe: drop the calls into it, so that (as its events
            # thread did) the dispatch holds the pipe only while the thread runs.
            self.terminate, self.child_status = _nothing, _no_status

    def credit_asked(self) -> None:
        """A PING from the agent: its reply window may be full (it asks before it
        waits). Tell it how many replies were taken, now if none is left to take,
        else once that is so (``credit_asked`` stays set for recv(): a reply
        already off the queue but not yet counted is then told as it is counted)."""
        ledger = self.ledger
        with ledger.cond:
            ledger.credit_asked = True
            taken = ledger.replies_taken
            due = not ledger.replies and taken != ledger.replies_credited
            if due:
                ledger.replies_credited = taken
            running = ledger.state in (PipeState.RUNNING, PipeState.CLOSING)
        if due and running:
            try:
                self.outbox.put((protocol.encode_seq(FrameKind.CREDIT, taken),))
            except OSError:
                pass  # the child is gone; the pipe's end says so

    def _settle_if_open(self) -> None:
        """The child died without saying DONE: the ledger decides what end that is."""
        ledger = self.ledger
        with ledger.cond:
            if ledger.state in ENDED:
                return
        code, start_method = self.child_status()
        ledger.child_ended(code, start_method, self.error)

    # -- one event ------------------------------------------------------------
    def _on_event(self, frame: protocol.Frame) -> bool:
        """Dispatch one event; True once the pipe's end is settled."""
        kind, ledger = frame.kind, self.ledger
        if kind == FrameKind.REPLY:
            with ledger.cond:
                ledger.replies.append(frame.payload)
                ledger.cond.notify_all()
        elif kind == FrameKind.ACK:
            seq, _ = protocol.split_seq(frame.payload)
            with ledger.cond:
                ledger.acked_seq = max(ledger.acked_seq, seq)
                ledger.cond.notify_all()
        elif kind == FrameKind.LOG:
            self._guarded(self._emit_log, protocol.decode_json(frame))
        elif kind == FrameKind.STDOUT:
            self.transcript.keep_output("stdout", frame.payload)
            self._guarded(self._emit_stdout, frame.payload)
        elif kind == FrameKind.STDERR:
            self.transcript.keep_output("stderr", frame.payload)
        elif kind == FrameKind.ERROR:
            self._record_error(protocol.decode_json(frame))
        elif kind == FrameKind.CONNECTED:
            ledger.hello.update(protocol.decode_json(frame))
        elif kind == FrameKind.HELLO:
            with ledger.cond:
                ledger.hello.update(protocol.decode_json(frame))
                if ledger.state is PipeState.STARTING:
                    ledger.state = PipeState.RUNNING
                ledger.cond.notify_all()
        elif kind == FrameKind.PING:
            self.credit_asked()
        elif kind == FrameKind.EXIT:
            # The child reports the final status in DONE, once the loader's
            # supervisor has ended what the agent left: silence allowed for that.
            self.agent_exited = True
        elif kind == FrameKind.DONE:
            ledger.finish(PipeState.CLOSED, protocol.decode_json(frame), None)
            return True
        elif kind == FrameKind.BROKEN:
            ledger.break_with(pickle.loads(frame.payload))
            return True
        return False

    def _guarded(self, emit: Callable[[Any], None], value: Any) -> None:
        """Run a re-emit into the user's logging: a failing handler or filter there
        must not take down the thread that reads the pipe's events."""
        try:
            emit(value)
        except Exception:  # noqa: BLE001 - reported, and the pipe goes on
            try:
                logger.exception("%s: re-emitting a remote record failed", self.label())
            except Exception:  # noqa: BLE001 - even our own logger may be the culprit
                pass

    def _run_callback(self) -> None:
        """Call the user's callback once, from the events thread, after the end."""
        if self._callback_called or self.callback is None:
            return
        self._callback_called = True
        done = self.ledger.done or {}
        transcript = self.transcript
        try:
            self.callback(done.get("exitcode"), transcript.decode(transcript.stdout),
                          transcript.decode(transcript.stderr))
        except Exception:
            logger.exception("%s: the pipe's callback raised", self.label())

    def _emit_log(self, item: Any) -> None:
        reemit(item, self.remote_logger, host=self.host, pipe=self.name)

    def _emit_stdout(self, data: bytes) -> None:
        target = self.remote_logger
        if not target.isEnabledFor(logging.INFO):
            return
        for line in self.transcript.decode(data).splitlines():
            record = target.makeRecord(target.name, logging.INFO, "(remote)", 0,
                                       "stdout: %s", (line,), None,
                                       extra={"host": self.host, "pipe": self.name})
            target.handle(record)

    def _record_error(self, info: Dict[str, Any]) -> None:
        error = self.transcript.remote_error(info)
        with self.ledger.cond:
            self.transcript.keep_error(error)
        self._guarded(lambda e: self.remote_logger.error(
            "%s", e, extra={"host": self.host, "pipe": self.name}), error)
