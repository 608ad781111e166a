"""The caller's side of the request pipe: frames go out without blocking a caller.

``send()`` must honour its timeout even when the child is slow to drain the
pipe (a busy agent, a full SSH window) or when another thread is in the middle
of a large message, and ``recv()`` must be able to post reply credit at any
time. So no caller thread ever blocks in a write: the pipe's write end is
non-blocking, a frame is written directly while nothing is queued (the common
case: one ``writev``, no thread hop), and whatever the pipe does not take at
once is queued, in order, for a writer thread that waits for the pipe.

A frame that comes within :data:`CORK` of the last write is queued as well, for
the writer thread to write with whatever follows it in one ``writev``: a
stream of small messages then wakes the pipe's reader once a batch rather than
once a message (1 KiB messages: about twice the rate on a loaded 2-core host).
A frame after a pause, the next of a round trip, still goes at once; a frame
that is corked goes out after CORK plus the writer thread's turn at the
interpreter (up to its switch interval, 5 ms, while another thread computes).

The queue is bounded in bytes (``limit``): :meth:`Outbox.wait_room` lets a
sender wait, under its own deadline, before it commits to a message. Frames
are queued whole (a CREDIT frame never lands inside a DATA frame), and
:meth:`Outbox.close` closes the pipe once everything queued before it is
written: that is the agent's end of input.
"""
from __future__ import annotations

import os
import select
import threading
import time
from collections import deque
from typing import Deque, List, Optional, Sequence

__all__ = ["Outbox", "OUTBOX_LIMIT"]

# Bytes queued for the writer thread before senders wait (messages admitted by the
# credit window; a single larger message is admitted when the queue is empty).
OUTBOX_LIMIT = 8 << 20
# writev() takes at most IOV_MAX (1024 on Linux) pieces per call.
_MAX_PIECES = 512
# A frame put within this long of the last write waits for the writer thread,
# which writes all that came meanwhile in one writev: a stream of small messages
# then wakes the pipe's reader (the ssh master, the child) once a batch instead
# of once a message. A frame after a pause (the next of a round trip) goes at once.
CORK = 0.0002


class Outbox:
    """Ordered, non-blocking writes of whole frames to one pipe fd."""

    def __init__(self, fd: int, limit: int = OUTBOX_LIMIT, name: str = "sshpipe-outbox"):
        os.set_blocking(fd, False)
        self._fd = fd
        self._limit = limit
        self._name = name
        self._cond = threading.Condition()
        self._queue: Deque[memoryview] = deque()
        self._queued = 0          # bytes in _queue and in the writer's hands
        self._writing = False     # the writer thread holds a batch
        self._closing = False     # close() asked: close the fd once drained
        self._closed = False
        self._abandoned = False
        self.error: Optional[OSError] = None
        self._thread: Optional[threading.Thread] = None
        self._last_write = 0.0    # monotonic time of the last write
        self._cork_until = 0.0    # the writer waits until then before it writes
        # When the last frame was put: the OpenSSH transport's caller PINGs the
        # agent when it has been idle for a heartbeat (a put is always whole
        # frames, so a PING never lands inside one).
        self.last_put = time.monotonic()

    @property
    def closing(self) -> bool:
        return self._closing or self.error is not None

    @property
    def queued(self) -> int:
        return self._queued

    def wait_room(self, timeout: Optional[float]) -> bool:
        """Wait until a new message may be queued; False if ``timeout`` passed."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._queued < self._limit or self.error is not None
                or self._closing, timeout)

    def put(self, parts: Sequence[bytes]) -> None:
        """Write one frame (given as pieces) after everything queued before it.

        Never blocks beyond a non-blocking write; raises the pipe's OSError once
        the reader is gone (the frame is then not sent).
        """
        with self._cond:
            if self.error is not None:
                raise self.error
            if self._closing:
                raise BrokenPipeError("the request pipe is closed")
            views = [memoryview(part).cast("B") for part in parts if len(part)]
            now = self.last_put = time.monotonic()
            if not self._queue and not self._writing:
                if now - self._last_write < CORK:
                    self._cork_until = self._last_write + CORK
                else:
                    self._last_write = now
                    try:
                        _write_some(self._fd, views)
                    except OSError as exc:
                        self.error = exc
                        raise
            if views:
                self._queue.extend(views)
                self._queued += sum(len(view) for view in views)
                self._wake_writer()

    def close(self) -> None:
        """Close the pipe after everything queued so far (never blocks)."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            if not self._queue and not self._writing:
                self._close_fd()
            else:
                self._wake_writer()
            self._cond.notify_all()

    def abandon(self) -> None:
        """Close now, dropping what is queued (the child is gone or being ended)."""
        with self._cond:
            self._closing = True
            self._abandoned = True
            self._queue.clear()
            self._queued = 0
            if not self._writing:
                self._close_fd()
            self._cond.notify_all()

    def forget_in_child(self) -> None:
        """In a forked child: close this process's copy of the fd (no thread here).
        Only while the parent still had it open: a closed fd's number may already
        belong to something else."""
        self._close_fd()

    def _close_fd(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                os.close(self._fd)
            except OSError:
                pass

    def _wake_writer(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_loop, name=self._name,
                                            daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _write_loop(self) -> None:
        """Writer thread: drain the queue in order, waiting for the pipe as needed."""
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:  # closing, and everything is written
                    self._close_fd()
                    return
                delay = self._cork_until - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # what comes meanwhile joins the batch
            with self._cond:
                if not self._queue:
                    continue
                batch = list(self._queue)
                self._queue.clear()
                self._writing = True
            error: Optional[OSError] = None
            try:
                while batch and not self._abandoned:
                    select.select([], [self._fd], [], 0.5)
                    written = _write_some(self._fd, batch)
                    with self._cond:
                        self._last_write = time.monotonic()
                        self._queued -= written
                        self._cond.notify_all()
            except (OSError, ValueError) as exc:  # ValueError: the fd was closed
                error = exc if isinstance(exc, OSError) else BrokenPipeError(str(exc))
            with self._cond:
                self._writing = False
                if self._abandoned:
                    self._close_fd()
                    return
                if error is not None:
                    self.error = error
                    self._queue.clear()
                    self._queued = 0
                    self._close_fd()
                    self._cond.notify_all()
                    return
                self._cond.notify_all()


def _write_some(fd: int, views: List[memoryview]) -> int:
    """writev as much of ``views`` as the pipe takes now, dropping what was written
    from the list (in place); return the number of bytes written."""
    total = 0
    while views:
        try:
            written = os.writev(fd, views[:_MAX_PIECES])
        except BlockingIOError:
            return total
        total += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]
            return total  # the pipe is full: the rest waits
    return total
