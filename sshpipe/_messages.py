"""The message flow of one pipe, caller side: numbered DATA frames out under the
credit window, replies in with CREDIT back.

Out: each serialized object becomes one DATA frame with the next sequence
number, put on the request pipe's :class:`~sshpipe._outbox.Outbox` only while
fewer than ``queue_bound`` messages are unacknowledged, so a fast producer waits
instead of growing memory; every wait (another sender, the window, room in the
outbox) is inside the caller's timeout, and the write itself never blocks.

In: replies queue in the :class:`~sshpipe._ledger.Ledger`; a thread waiting in
``recv()`` reads the events itself (:meth:`~sshpipe._dispatch.Dispatch.read_for`)
when no other thread is, and every quarter ``reply_window`` it tells the agent
how many it took (a CREDIT frame: the agent's ``reply()`` waits while the window
is full); also once it has taken every reply, if the agent asked (a PING: see
:meth:`~sshpipe._dispatch.Dispatch.credit_asked`) or is one that does not ask
(its hello lacks ``credit_on_request``). Not after every reply: that was one
more frame across the whole path per round trip. Replies are unpickled here,
under the pipe's trust policy.

:class:`~sshpipe.pipe.SSHPipe` holds the public methods and their documentation;
this is what they do.
"""
from __future__ import annotations

import threading
import time
from typing import Any, FrozenSet, Optional, Tuple

from sshpipe import protocol, serial, trust
from sshpipe._child import check_code_compatible
from sshpipe._dispatch import Dispatch
from sshpipe._ledger import Ledger, PipeState
from sshpipe._outbox import Outbox
from sshpipe.errors import PipeBroken, PipeClosed
from sshpipe.handler import SSHPipeHandler
from sshpipe.protocol import FrameKind

__all__ = ["Messages"]

# A thread in recv() reads events for at most this long before it re-checks the
# pipe's state (and lets the events thread read).
PUMP_SLICE = 0.5


class Messages:
    """Sending and receiving on one pipe (see the module docstring).

    ``outbox`` and ``dispatch`` are set by ``SSHPipe.start()``; before that the
    ledger's state (NEW, STARTING) refuses sends and receives.
    """

    def __init__(self, ledger: Ledger, max_frame: int, policy: trust.TrustPolicy):
        self.ledger = ledger
        self.host = ledger.host
        self.max_frame = max_frame
        self.policy = policy
        self.send_lock = threading.Lock()
        self.outbox: Optional[Outbox] = None
        self.dispatch: Optional[Dispatch] = None

    def check_size(self, size: int, at_least: bool = False) -> None:
        """Refuse a message of ``size`` bytes (``at_least``: a lower bound, known
        before serializing) that the pipe's ``max_frame`` cannot carry."""
        if size + 8 > self.max_frame:
            raise ValueError(f"{self.host}: a message of {'at least ' if at_least else ''}"
                             f"{size} bytes exceeds this pipe's max_frame of "
                             f"{self.max_frame} bytes")

    def send_object(self, obj: Any, timeout: Optional[float], queue_bound: int,
                    term_message: str) -> int:
        """Serialize ``obj`` here, in the caller, and send it (see ``SSHPipe.send``)."""
        self.check_size(serial.size_floor(obj), at_least=True)  # before copying it
        parts, has_code = serial.dump_parts(obj)
        is_term = isinstance(obj, str) and obj in self.term_messages(term_message)
        return self.send(parts, has_code, timeout, queue_bound, is_term=is_term)

    def send_bytes(self, payload: bytes, timeout: Optional[float], queue_bound: int,
                   term_message: str) -> int:
        """Send an already serialized object (see ``SSHPipe.send_bytes``)."""
        payload = bytes(payload)
        is_term = len(payload) < 256 and any(
            payload == serial.dumps(message) for message in self.term_messages(term_message))
        return self.send((payload,), True, timeout, queue_bound, is_term=is_term)

    def term_messages(self, term_message: str) -> FrozenSet[Any]:
        """What the agent takes for a term message: its handler's own, as its hello
        says, and the pipe's ``term_message`` (sent in START)."""
        told = self.ledger.hello.get("term_messages")
        return frozenset(told if told is not None else SSHPipeHandler.TERM_MESSAGES) | {
            term_message}

    def send(self, parts: Tuple[Any, ...], may_carry_code: bool, timeout: Optional[float],
             queue_bound: int, is_term: bool = False) -> int:
        """Send one serialized object, given as pieces (see serial.dump_parts);
        return its sequence number.

        The timeout covers everything that can wait: another thread's send (the
        send lock), the credit window, and room in the outbox; the write itself
        never blocks (see :mod:`sshpipe._outbox`).
        """
        size = sum(len(part) for part in parts)
        self.check_size(size)
        ledger = self.ledger
        remote_python = ledger.hello.get("python")
        if may_carry_code and remote_python:
            # Scans the payload only when the two Python minor versions differ.
            check_code_compatible(self.host, b"".join(parts), remote_python)
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> Optional[float]:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        def timed_out(what: str) -> TimeoutError:
            return TimeoutError(f"{self.host}: no room to send within {timeout:g} s ({what}; "
                                f"{ledger.pending()} messages unhandled); nothing was sent")

        left = remaining()
        if not self.send_lock.acquire(timeout=-1 if left is None else left):
            raise timed_out("another thread is sending")
        try:
            with ledger.cond:
                while True:
                    ledger.raise_unless_running_locked()
                    if ledger.sent_seq - ledger.acked_seq < queue_bound:
                        break
                    left = remaining()
                    if left == 0:
                        raise timed_out("the credit window is full")
                    ledger.cond.wait(left)
            outbox = self.outbox
            assert outbox is not None
            if not outbox.wait_room(remaining()):
                raise timed_out("the request pipe is full")
            with ledger.cond:
                ledger.raise_unless_running_locked()
                ledger.sent_seq += 1
                seq = ledger.sent_seq
            try:
                outbox.put((protocol.data_head(seq, size), *parts))
            except OSError as exc:
                with ledger.cond:
                    ledger.sent_seq -= 1  # nothing of it went out; we hold the send lock
                    ledger.raise_unless_running_locked()
                raise PipeBroken(f"{self.host}: the pipe's child process is gone "
                                 f"(message {seq} not sent)") from exc
            if is_term:
                ledger.term_sent = True
        finally:
            self.send_lock.release()
        return seq

    def end_input(self) -> None:
        """No more messages: END after whatever was queued, then the request pipe
        closes (the agent reads END, then end of input). Never blocks."""
        self.ledger.end_input()
        outbox = self.outbox
        if outbox is not None:
            try:
                outbox.put((protocol.encode(FrameKind.END),))
            except OSError:
                pass
            outbox.close()

    def recv(self, timeout: Optional[float], reply_window: int) -> Any:
        """The next reply, loaded under the trust policy (see ``SSHPipe.recv``)."""
        ledger = self.ledger
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with ledger.cond:
                if ledger.replies:
                    payload = ledger.replies.popleft()
                    break
                if ledger.state is PipeState.BROKEN:
                    raise ledger.broken_locked()
                if ledger.state is PipeState.NEW:
                    raise PipeClosed(f"{self.host}: the pipe is not started; call start() first")
                if ledger.state is PipeState.CLOSED:
                    failure = ledger.failure_to_raise_locked()
                    if failure is not None:
                        raise failure
                    raise EOFError(f"{self.host}: the agent has ended; no more replies")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{self.host}: no reply within {timeout:g} s")
                wait = PUMP_SLICE if remaining is None else min(remaining, PUMP_SLICE)
                dispatch = self.dispatch
                if dispatch is None:  # start() is still building it
                    ledger.cond.wait(wait)
                    continue
                if dispatch.done:
                    # The events thread is settling the end; it will notify.
                    ledger.cond.wait(remaining)
                    continue
            dispatch.read_for(wait)
        number = self._took_reply(reply_window)
        return serial.loads(payload, self.policy, host=self.host, what=f"reply {number}",
                            seq=number)

    def _took_reply(self, reply_window: int) -> int:
        """Count a reply taken by recv(); tell the agent when due (see the module
        docstring). Returns the reply's number."""
        ledger = self.ledger
        with ledger.cond:
            ledger.replies_taken += 1
            taken = ledger.replies_taken
            due = taken - ledger.replies_credited >= max(1, reply_window // 4) or (
                not ledger.replies and (ledger.credit_asked or
                                        not ledger.hello.get("credit_on_request")))
            if due:
                ledger.replies_credited = taken
                ledger.credit_asked = False
        if due and ledger.state in (PipeState.RUNNING, PipeState.CLOSING):
            try:
                assert self.outbox is not None
                self.outbox.put((protocol.encode_seq(FrameKind.CREDIT, taken),))
            except OSError:
                pass  # the child is gone; the pipe's end says so
        return taken

    def poll(self, timeout: Optional[float]) -> bool:
        """True when a reply is queued, waiting up to ``timeout`` while the pipe runs."""
        ledger = self.ledger
        deadline = None if timeout is None else time.monotonic() + timeout
        with ledger.cond:
            while not ledger.replies and ledger.state in (PipeState.RUNNING,
                                                          PipeState.CLOSING):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                ledger.cond.wait(remaining)
            return bool(ledger.replies)

    def flush(self, timeout: Optional[float]) -> None:
        """Wait until every message sent so far has been handled (see ``SSHPipe.flush``)."""
        ledger = self.ledger
        deadline = None if timeout is None else time.monotonic() + timeout
        with ledger.cond:
            target = ledger.sent_seq
            while ledger.acked_seq < target:
                if ledger.state is PipeState.BROKEN:
                    raise ledger.broken_locked()
                if ledger.state is PipeState.CLOSED:
                    raise PipeClosed(f"{self.host}: the agent ended with "
                                     f"{target - ledger.acked_seq} messages unhandled")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{self.host}: {target - ledger.acked_seq} messages "
                                       f"still unhandled after {timeout:g} s")
                ledger.cond.wait(remaining)
