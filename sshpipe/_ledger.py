"""The caller's record of one pipe: its state, what was sent, handled and replied,
and how it ended, all under one condition.

Both halves of the caller side work on it: the public API
(:mod:`sshpipe.pipe`, the caller's threads) and event dispatch
(:mod:`sshpipe._dispatch`, whichever thread reads the pipe's events). Every
field is read and written under ``cond``; methods named ``*_locked`` expect it
held, the others take it.

One place decides how a pipe ends: :meth:`Ledger.finish` is the only way into
CLOSED or BROKEN (the first end wins, later ones are ignored), and
:meth:`Ledger.child_ended` decides what the child's death without the agent's
DONE means: the end close() forced, or a broken pipe.
"""
from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple

from sshpipe._response import Response, Transcript
from sshpipe.errors import PipeBroken, PipeClosed, RemoteError

__all__ = ["Ledger", "PipeState"]

# The pipe's own records, whichever of its modules they come from.
logger = logging.getLogger("sshpipe.pipe")


class PipeState(enum.Enum):
    """Life cycle of an SSHPipe, as seen from the caller."""

    NEW = "new"            # constructed, start() not called
    STARTING = "starting"  # child started, waiting for the agent's hello
    RUNNING = "running"    # hello received; send()/recv() work
    CLOSING = "closing"    # close() sent the term message, waiting for the end
    CLOSED = "closed"      # the agent ended; response() is final
    BROKEN = "broken"      # connection, child or agent failed; response() raises


ENDED = (PipeState.CLOSED, PipeState.BROKEN)


class Ledger:
    """State and accounting of one pipe (see the module docstring).

    Args:
        host: names the pipe in errors.
        transcript: the remote's output and errors, for the Response.
        label: the pipe's ``repr``, for log records.
    """

    def __init__(self, host: str, transcript: Transcript, label: Callable[[], str]):
        self.host = host
        self.transcript = transcript
        self.label = label
        self.cond = threading.Condition()
        self.state = PipeState.NEW
        self.hello: Dict[str, Any] = {}
        self.sent_seq = 0                 # the last message send() numbered
        self.acked_seq = 0                # the last message the agent handled
        self.replies: Deque[bytes] = deque()  # replies recv() has not taken
        self.replies_taken = 0
        self.replies_credited = 0         # taken replies the agent was told of (CREDIT)
        self.credit_asked = False         # the agent PINGed: it may wait for CREDIT
        self.done: Optional[Dict[str, Any]] = None  # the end's exitcode and reason
        self.broken_error: Optional[BaseException] = None
        self.term_sent = False
        self.close_seq = 0  # the term message close() sent on its own, if any
        self.forced: Optional[str] = None  # why close() ended the child by signal
        self.failure_raised = False

    @contextlib.contextmanager
    def starting(self, refusal: str) -> Iterator[None]:
        """NEW becomes STARTING for the block (else PipeClosed with ``refusal``);
        back to NEW if the block raises, so start() may be tried again."""
        with self.cond:
            if self.state is not PipeState.NEW:
                raise PipeClosed(refusal)
            self.state = PipeState.STARTING
        try:
            yield
        except BaseException:
            with self.cond:
                self.state = PipeState.NEW
            raise

    # -- the end ------------------------------------------------------------
    def finish(self, state: PipeState, done: Dict[str, Any],
               error: Optional[BaseException]) -> None:
        """Settle the pipe's end (``state`` CLOSED or BROKEN), unless already settled."""
        with self.cond:
            if self.state in ENDED:
                return
            self.state = state
            self.done = done
            self.broken_error = error
            self.cond.notify_all()
        if error is not None:
            logger.debug("%s broke: %s", self.label(), error)

    def break_with(self, error: BaseException) -> None:
        """Settle the end as BROKEN because of ``error``."""
        self.finish(PipeState.BROKEN, {"exitcode": None, "reason": str(error)}, error)

    def force(self, reason: str) -> None:
        """close() or start() is ending the child by signal: the end it causes is
        CLOSED with ``reason`` (see :meth:`child_ended`), unless already settled."""
        with self.cond:
            if self.forced is None and self.state not in ENDED:
                self.forced = reason

    def child_ended(self, code: Optional[int], start_method: str,
                    cause: Optional[BaseException]) -> None:
        """The child exited (status ``code``) and the agent's end was never told:
        CLOSED if the end was forced, else BROKEN (``cause``: a bug that stopped
        reading the events)."""
        with self.cond:
            if self.state in ENDED:
                return
            state, forced = self.state, self.forced
        if forced is not None:
            self.finish(PipeState.CLOSED, {"exitcode": code, "reason": forced}, None)
            return
        hint = ""
        if code == 1 and state is PipeState.STARTING and \
                start_method in ("spawn", "forkserver"):
            hint = ("; under the spawn and forkserver start methods the child imports "
                    "your main module again: keep the code that starts pipes under "
                    "'if __name__ == \"__main__\":'")
        error = PipeBroken(f"{self.host}: the pipe's child process ended unexpectedly "
                           f"(exit code {code}){hint}")
        error.__cause__ = cause
        self.break_with(error)

    def end_input(self) -> None:
        """close() ends the agent's input: RUNNING becomes CLOSING, and senders
        waiting for the window give up."""
        with self.cond:
            if self.state is PipeState.RUNNING:
                self.state = PipeState.CLOSING
            self.cond.notify_all()

    def wait_started(self, deadline: float) -> Tuple[PipeState, Optional[BaseException]]:
        """Wait until the pipe is past STARTING or ``deadline`` (a monotonic time)
        passed; returns the state and, broken, why."""
        with self.cond:
            while self.state is PipeState.STARTING:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
            return self.state, self.broken_error

    def wait_end(self, timeout: Optional[float]) -> Response:
        """Wait for the end and return the Response (see ``SSHPipe.response``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            if self.state is PipeState.NEW:
                raise PipeClosed(f"{self.host}: the pipe was never started")
            while self.state not in ENDED:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{self.host}: the agent did not end within {timeout:g} s")
                self.cond.wait(remaining)
            if self.state is PipeState.BROKEN:
                raise self.broken_locked()
            return self.response_locked()

    # -- what callers are told ----------------------------------------------
    def pending(self) -> int:
        """Messages sent but not yet acknowledged as handled."""
        with self.cond:
            return self.sent_seq - self.acked_seq

    def raise_unless_running_locked(self) -> None:
        state = self.state
        if state is PipeState.RUNNING:
            return
        if state is PipeState.BROKEN:
            raise self.broken_locked()
        if state in (PipeState.NEW, PipeState.STARTING):
            raise PipeClosed(f"{self.host}: the pipe is not started")
        raise PipeClosed(f"{self.host}: the pipe is {state.value}")

    def unhandled_locked(self) -> List[int]:
        return [seq for seq in range(self.acked_seq + 1, self.sent_seq + 1)
                if seq != self.close_seq]

    def broken_locked(self) -> PipeBroken:
        """The error for a call on a broken pipe: why, and what was never handled."""
        unhandled = self.unhandled_locked()
        error = PipeBroken(f"{self.host}: the pipe is broken ({self.broken_error}); "
                           f"unhandled messages: {unhandled or 'none'}", unhandled)
        error.__cause__ = self.broken_error
        return error

    def response_locked(self) -> Response:
        return self.transcript.response(self.done, self.unhandled_locked())

    def failure_to_raise_locked(self) -> Optional[RemoteError]:
        """Once, after a failed agent's last reply: the error that ended it (as
        execnet's receive() raises the remote error before the end)."""
        done = self.done or {}
        errors = self.transcript.errors
        if self.failure_raised or not errors or not done.get("exitcode"):
            return None
        self.failure_raised = True
        return errors[-1]
