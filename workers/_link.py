"""Link: pickled messages over a local socket, as sshpipe frames, never blocking.

Stdlib only (plus sshpipe's shipped modules): shipped to remote hosts with the
worker agent, where it joins the agent's pool thread to each worker process.

Each message is one DATA frame of :mod:`sshpipe.protocol` (the same header, the
same size check before a payload is buffered) whose sequence number counts the
messages of its direction, so an error names the message that broke the stream.

The socket is non-blocking in both directions, and that is the point: the two
ends each run one thread that owns the socket and waits for it in ``select``.
:meth:`Link.put` only queues bytes; :meth:`Link.write` sends what the socket takes
now and returns. A large message going one way can then never stop the same
thread from reading a large message coming the other way, which is how a pool
thread and a worker used to block each other in ``sendall`` with 4 MiB each way.
"""
from __future__ import annotations

import pickle
import socket
from collections import deque
from typing import Any, Deque, Iterator, List, Optional

from sshpipe import protocol
from sshpipe.errors import FrameError
from sshpipe.protocol import FrameKind

__all__ = ["Link", "MAX_MESSAGE"]

# The largest message either end accepts: past it the stream is taken as corrupt
# and the link fails with FrameError. Tasks and results bigger than this are
# refused before they are sent (see the executor's own max_frame).
MAX_MESSAGE = 1 << 30
# Bytes read per receive(): a burst of small results in one call, a large one in
# a few.
READ_CHUNK = 1 << 20
# writev() takes at most IOV_MAX (1024 on Linux) pieces per call.
_MAX_PIECES = 512


class Link:
    """One end of a socket pair carrying pickled messages, owned by one thread.

    Args:
        sock: a connected stream socket; it is made non-blocking.
        max_message: the largest message accepted from the other end.
    """

    def __init__(self, sock: socket.socket, max_message: int = MAX_MESSAGE):
        sock.setblocking(False)
        self.sock = sock
        self.max_message = max_message
        self._frames = protocol.FrameReader(max_message + 8)
        self._out: Deque[memoryview] = deque()
        self.unsent = 0          # bytes queued by put() and not yet written
        self._sent_messages = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    # -- output -------------------------------------------------------------
    def put(self, message: Any) -> int:
        """Queue ``message`` (pickled here); nothing is written. Returns its size."""
        return self.put_payload(pickle.dumps(message, protocol=5))

    def put_payload(self, payload: bytes) -> int:
        """Queue an already pickled message."""
        if len(payload) > self.max_message:
            raise ValueError(f"a message of {len(payload)} bytes exceeds the link's "
                             f"limit of {self.max_message} bytes")
        self._sent_messages += 1
        head = protocol.data_head(self._sent_messages, len(payload))
        self._out.append(memoryview(head))
        if payload:
            self._out.append(memoryview(payload))
        self.unsent += len(head) + len(payload)
        return len(payload)

    @property
    def wants_write(self) -> bool:
        return bool(self._out)

    def write(self) -> None:
        """Send as much of the queue as the socket takes now.

        Raises:
            OSError: the other end is gone (EPIPE, ECONNRESET).
        """
        out = self._out
        while out:
            try:
                written = self.sock.sendmsg(list(_head(out)))
            except (BlockingIOError, InterruptedError):
                return
            self.unsent -= written
            while out and written >= len(out[0]):
                written -= len(out[0])
                out.popleft()
            if out and written:
                out[0] = out[0][written:]

    # -- input --------------------------------------------------------------
    def receive(self) -> Optional[List[Any]]:
        """The messages that have arrived (one read, may be none); None at the end.

        Raises:
            FrameError: the stream is not well-formed frames, or a message is
                larger than ``max_message``.
            OSError: the socket failed.
        """
        try:
            chunk = self.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return []
        if not chunk:
            if self._frames.buffered:
                raise FrameError(f"the link ended inside a message "
                                 f"({self._frames.buffered} bytes of it arrived)")
            return None
        messages = []
        for frame in self._frames.feed(chunk):
            if frame.kind is not FrameKind.DATA:
                raise FrameError(f"unexpected {frame.kind.name} frame on a worker link",
                                 frame.number)
            _, payload = protocol.split_seq(frame.payload)
            messages.append(pickle.loads(payload))
        return messages

    def close(self) -> None:
        self.sock.close()


def _head(out: Deque[memoryview]) -> Iterator[memoryview]:
    for index, view in enumerate(out):
        if index == _MAX_PIECES:
            return
        yield view
