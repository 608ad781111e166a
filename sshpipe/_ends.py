"""The OS pipes between an SSHPipe's caller and its child, and which process holds
which end.

Each pipe goes one way: requests (caller -> child), events (child -> caller)
and, with the OpenSSH transport, control (child -> caller: the child's own
reports, since the event pipe then carries the agent's raw stream, written by
the ssh master). They are made as multiprocessing connections only so that
spawn and forkserver can hand the child's ends over; both sides read and write
the fds directly with sshpipe's own framing, so a burst of frames crosses in
one read.

Ownership: ``SSHPipe.__init__`` makes the request and event pipes, ``start()``
the control pipe. From ``start()`` on the request pipe's write end belongs to
the pipe's :class:`~sshpipe._outbox.Outbox` (which closes it: that is the
agent's end of input). Every end is closed in the process that does not use
it, as soon as the other process holds it: the caller closes the child's ends
once the child started (holding them would hide the child's death), the child
closes the caller's (so it sees end of file when the caller goes away), and a
forked child closes the ends of every other pipe it inherited (a copy held
there would keep that pipe's caller from seeing its own child die), each only
where its fd number still holds that end. Only the
child's ends travel to a spawned child.
"""
from __future__ import annotations

import fcntl
import multiprocessing
import os
import weakref
from multiprocessing.connection import Connection
from typing import Any, Dict, Optional, Tuple

from sshpipe import protocol
from sshpipe._outbox import Outbox

__all__ = ["PipeEnds"]

# Every PipeEnds made in this process, so that a forked child can close the ends
# of the others (weak: the ends of a pipe that is gone are dropped by themselves).
_IN_THIS_PROCESS: "weakref.WeakSet[PipeEnds]" = weakref.WeakSet()

# The ends the child uses: all that is pickled for a spawned child.
_CHILD_ENDS = ("request_reader", "event_writer", "control_writer")
_ALL_ENDS = ("request_reader", "request_writer", "event_reader", "event_writer",
             "control_reader", "control_writer")


class PipeEnds:
    """The request, event and (OpenSSH) control pipes of one SSHPipe."""

    def __init__(self) -> None:
        # The child's ends are always there; the caller's are None in a spawned child.
        self.request_reader: Connection[Any, Any]
        self.event_writer: Connection[Any, Any]
        self.request_writer: Optional[Connection[Any, Any]]
        self.event_reader: Optional[Connection[Any, Any]]
        self.request_reader, self.request_writer = multiprocessing.Pipe(duplex=False)
        self.event_reader, self.event_writer = multiprocessing.Pipe(duplex=False)
        for connection in (self.request_writer, self.event_writer):
            protocol.widen_pipe(connection.fileno())
        self.control_reader: Optional[Connection[Any, Any]] = None
        self.control_writer: Optional[Connection[Any, Any]] = None
        self.outbox: Optional[Outbox] = None
        # What each end's fd is, so that a forked child closes an inherited end
        # only if its number still means that end (see release_in_child).
        self._identities: Dict[str, Tuple[int, int, int]] = {}
        self._remember("request_reader", "request_writer", "event_reader", "event_writer")
        _IN_THIS_PROCESS.add(self)

    def _remember(self, *names: str) -> None:
        for name in names:
            connection = getattr(self, name)
            self._identities[name] = _identity(connection.fileno())

    def __getstate__(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in _CHILD_ENDS}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.request_writer = self.event_reader = self.control_reader = None
        self.outbox = None
        self.__dict__.update(state)

    def add_control(self) -> None:
        """Make the control pipe (OpenSSH transport)."""
        self.control_reader, self.control_writer = multiprocessing.Pipe(duplex=False)
        self._remember("control_reader", "control_writer")

    def open_outbox(self, name: str) -> Outbox:
        """Hand the request pipe's write end to an Outbox (a dup: the Connection
        object is closed, so only one thing ever closes the fd)."""
        writer = self.request_writer
        if writer is None:  # only a spawned child lacks it, and it has no outbox
            raise RuntimeError("the request pipe's write end is not in this process")
        self.outbox = Outbox(os.dup(writer.fileno()), name=name)
        writer.close()
        return self.outbox

    def child_started(self) -> None:
        """In the caller: the child owns its ends now; close this process's copies."""
        for connection in (self.request_reader, self.event_writer, self.control_writer):
            if connection is not None:
                connection.close()

    def release(self) -> None:
        """Close every end this process still holds (a pipe that never started)."""
        for name in _ALL_ENDS:
            connection = getattr(self, name)
            if connection is not None:
                try:
                    connection.close()
                except OSError:
                    pass

    def release_in_child(self) -> None:
        """In a forked child, for another pipe's ends: close each inherited copy,
        but only where its fd number still holds that end. Another thread of
        the caller may have been closing one as the fork happened: the fd was
        closed, and its number maybe reused for this child's own pipe, while
        the Connection still held it; closing it then would close the child's
        own end (its control pipe, say), which it would take for its caller
        gone. Every Connection is left holding nothing, so that its collection
        here closes nothing either."""
        for name in _ALL_ENDS:
            connection = getattr(self, name)
            if connection is None or connection.closed:
                continue
            fd = connection.fileno()
            try:
                same = _identity(fd) == self._identities.get(name)
            except OSError:  # closed as the fork happened
                same = False
            if same:
                connection.close()
            else:
                _forget(connection)

    def in_child(self) -> None:
        """In the child: close the caller's ends (copies here under fork), and
        every end of every other pipe this process inherited."""
        for connection in (self.event_reader, self.control_reader):
            if connection is not None:
                connection.close()
        if self.outbox is not None:
            self.outbox.forget_in_child()
        for other in list(_IN_THIS_PROCESS):
            if other is not self:
                other.release_in_child()
                if other.outbox is not None:
                    other.outbox.forget_in_child()


def _identity(fd: int) -> Tuple[int, int, int]:
    """(device, inode, access mode) of ``fd``: a pipe's two ends share an inode,
    the mode tells them apart."""
    status = os.fstat(fd)
    return status.st_dev, status.st_ino, fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def _forget(connection: "Connection[Any, Any]") -> None:
    """Make ``connection`` hold no fd, without closing the number it held
    (which now belongs to something else). multiprocessing has no public call
    for it: its handle attribute is what close() and collection act on."""
    connection._handle = None  # type: ignore[attr-defined]
