"""What the caller reads: frames, from the child (paramiko) or from the agent's raw
stream plus the child's control pipe (OpenSSH).

Both event sources offer the same three calls to :class:`~sshpipe.pipe.SSHPipe`
(``wait``, ``read``, ``close``), so pipe.py only speaks frames:

- :class:`ChildEvents` (paramiko): one pipe of whole frames written by the
  child, which already did the loader stage, the sync scan and the HELLO/EXIT
  checks.
- :class:`OpenSSHEvents`: the event pipe carries what the agent's stdout
  carried, written by the ssh master; :class:`AgentStream` does here what the
  paramiko child does (:mod:`sshpipe._child_paramiko`), with the same code for
  the start (:class:`~sshpipe._startscan.StartScan`: the loader handshake, its
  answer written through the caller's outbox ahead of any frame, the
  LOADER_SYNC and SYNC scans under the MAX_PREAMBLE bound with echo detection),
  then the HELLO/EXIT inspection. The child's control pipe
  brings CONNECTED, STDERR and the session's end; the final DONE is made here
  from the two, once the master delivered all output (the event pipe's end),
  so no reply is left behind a DONE.

PINGs when the caller is idle and the agent's silence are timed by the pipe's
events thread (:meth:`sshpipe._dispatch.Dispatch.tick`), from :attr:`OpenSSHEvents.last_heard`.
"""
from __future__ import annotations

import json
import os
import pickle
import select
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from sshpipe import protocol
from sshpipe._startscan import StartScan, frame_json
from sshpipe.errors import AgentStartError, FrameError, PipeBroken
from sshpipe.protocol import Frame, FrameKind

__all__ = ["AgentStream", "ChildEvents", "OpenSSHEvents"]

# After the session's end is known, how long the event pipe may take to reach
# its end (the master closes it as it frees the channel, right before it reports).
END_GRACE = 5.0
# Bytes read at a time from either pipe.
_READ = 256 * 1024


class ChildEvents:
    """Frames from the paramiko child's event pipe."""

    def __init__(self, connection: Any, max_frame: int, host: str):
        self.connection = connection
        self.fd = connection.fileno()
        self.host = host
        self.frames = protocol.FrameReader(max_frame + 64)
        self.buffer = bytearray(_READ)
        self.view = memoryview(self.buffer)
        self.last_heard = time.monotonic()

    def wait(self, timeout: Optional[float]) -> bool:
        try:
            return bool(self.connection.poll(timeout))
        except (EOFError, OSError):
            return True

    def read(self) -> Optional[List[Frame]]:
        """The frames that came (maybe none); None at the end of the pipe."""
        try:
            count = os.readv(self.fd, [self.buffer])
        except OSError:
            count = 0
        if not count:
            return None
        try:
            return self.frames.feed(self.view[:count])
        except FrameError as exc:  # the child wrote something that is not frames
            error = PipeBroken(f"{self.host}: bad event stream from the pipe's child: {exc}")
            raise error from exc

    def close(self) -> None:
        self.connection.close()


class AgentStream:
    """The agent's raw stdout, read by the caller: loader stage and sync (the
    paramiko child's own :class:`~sshpipe._startscan.StartScan`), then frames.

    ``send`` puts whole pieces on the request pipe (the outbox); what the loader
    stage writes goes ahead of the caller's first message because the pipe is
    not RUNNING before the agent's HELLO.
    """

    LOADER, SYNC, FRAMES, AFTER_EXIT = range(4)

    def __init__(self, *, host: str, python: str, launch: Any, bundle: Any, start: bytes,
                 max_frame: int, send: Callable[[Sequence[bytes]], None]):
        self.host = host
        self.python = python
        self.send = send
        self.scan: Optional[StartScan] = StartScan(host=host, python=python, launch=launch,
                                                   bundle=bundle, start=start)
        self.state = self.LOADER if launch is not None else self.SYNC
        self.reader = protocol.FrameReader(max_frame + 64)
        self.hello: Optional[Dict[str, Any]] = None
        self.exit_info: Optional[Dict[str, Any]] = None

    def begin(self) -> None:
        """The first bytes the remote reads: the loader's hash line, or START."""
        assert self.scan is not None
        self.send((self.scan.begin(),))

    def feed(self, data: bytes) -> List[Frame]:
        """The frames ``data`` completes; raises the typed error of a bad stream."""
        out: List[Frame] = []
        scan = self.scan
        if scan is not None:
            answer, rest = scan.feed(data, out)
            if answer:
                try:
                    self.send(answer)
                except OSError:
                    pass  # the session is gone: its end says why
            if rest is None:
                self.state = self.LOADER if scan.at_loader else self.SYNC
                return out
            self.scan = None  # synced: the scan is done with
            self.state = self.FRAMES
            data = rest
        if self.state == self.AFTER_EXIT:
            if data:
                out.append(Frame(FrameKind.STDOUT, bytes(data), 0))
            return out
        try:
            frames = self.reader.feed(data)
        except FrameError as exc:
            raise FrameError(f"{self.host}: {exc.reason}", exc.frame_no) from exc
        for frame in frames:
            out.append(frame)
            if frame.kind == FrameKind.HELLO:
                self.hello = frame_json(self.host, frame.kind, frame.payload)
                protocol.check_hello(self.hello)
            elif frame.kind == FrameKind.EXIT:
                self.exit_info = frame_json(self.host, frame.kind, frame.payload)
        if self.exit_info is not None:
            # After EXIT the agent is done: what still comes is output, not frames.
            self.state = self.AFTER_EXIT
            noise = self.reader.take_buffered()
            if noise:
                out.append(Frame(FrameKind.STDOUT, noise, 0))
        return out

    # -- the end ----------------------------------------------------------
    def final(self, status: Optional[int], stderr: str) -> Frame:
        """The DONE frame for a session that ended with ``status`` (None: without
        one), once all its output was read; raises what the paramiko child raises
        for the same end."""
        host = self.host
        if self.hello is None:
            if self.state == self.LOADER:
                raise AgentStartError(f"{host}: the remote Python ({self.python}) ended "
                                      f"before the sshpipe loader answered", host, status,
                                      stderr)
            raise AgentStartError(f"{host}: the remote command ended before the agent said "
                                  f"hello", host, status, stderr)
        info = self.exit_info
        if info is None and self.reader.buffered:
            raise FrameError(f"{host}: the agent's output ended inside a frame "
                             f"({self.reader.buffered} bytes of it came)",
                             self.reader.frames_seen + 1)
        exitcode = status
        if info is None and status is None:
            exitcode = -1
            reason = ("the agent ended without an exit status (killed by a signal; the ssh "
                      "mux protocol does not report which)")
        elif info is None and self.supervised and status is not None and status > 128:
            exitcode = 128 - status
            reason = f"the agent was killed by signal {-exitcode}"
        else:
            reason = (info or {}).get("reason") or f"the agent exited with status {exitcode}"
        payload = json.dumps({"exitcode": exitcode, "reason": reason}).encode()
        return Frame(FrameKind.DONE, payload, 0)

    supervised = False  # set by the pipe: the loader's supervisor runs the agent


class OpenSSHEvents:
    """Frames made from the agent's raw stream and the child's control pipe."""

    def __init__(self, events: Any, control: Any, stream: AgentStream, host: str,
                 encoding: str = "utf8"):
        self.encoding = encoding
        self.events = events
        self.control = control
        self.stream = stream
        self.host = host
        self.event_fd: Optional[int] = events.fileno()
        self.control_fd: Optional[int] = control.fileno()
        self.control_frames = protocol.FrameReader(protocol.DEFAULT_MAX_FRAME)
        self.buffer = bytearray(_READ)
        self.view = memoryview(self.buffer)
        self.last_heard = time.monotonic()
        self.stderr = bytearray()
        self.verdict: Optional[Frame] = None      # the child's DONE or BROKEN
        self.verdict_at: Optional[float] = None
        self.finished = False
        self._ready: Optional[List[int]] = None  # the last wait()'s ready fds, for read()

    def _fds(self) -> List[int]:
        return [fd for fd in (self.event_fd, self.control_fd) if fd is not None]

    def _due(self) -> bool:
        """The end can be settled now (or must be: the grace has passed)."""
        if self.verdict is None:
            return self.control_fd is None
        verdict_at = self.verdict_at  # set with the verdict
        return self.event_fd is None or (
            verdict_at is not None and time.monotonic() - verdict_at > END_GRACE)

    def wait(self, timeout: Optional[float]) -> bool:
        if self.finished or self._due():
            return True
        if self.verdict_at is not None:
            left = END_GRACE - (time.monotonic() - self.verdict_at) + 0.01
            timeout = left if timeout is None else min(timeout, left)
        try:
            ready, _, _ = select.select(self._fds(), [], [], timeout)
        except (OSError, ValueError):
            return True
        # read() takes this rather than asking again: a ready fd stays ready until
        # it is read, which only a holder of the dispatch's reader lock does.
        self._ready = ready
        return bool(ready) or self._due()

    def read(self) -> Optional[List[Frame]]:
        """The frames that came (maybe none); None once everything was given."""
        if self.finished:
            return None
        ready, self._ready = self._ready, None
        if ready is None:
            try:
                ready, _, _ = select.select(self._fds(), [], [], 0)
            except (OSError, ValueError):
                ready = []
        out: List[Frame] = []
        if self.event_fd is not None and self.event_fd in ready:
            data = self._read(self.event_fd)
            if data is None:
                self.event_fd = None
            else:
                self.last_heard = time.monotonic()
                out += self.stream.feed(data)
        if self.control_fd is not None and self.control_fd in ready:
            data = self._read(self.control_fd)
            if data is None:
                self.control_fd = None
            else:
                for frame in self.control_frames.feed(data):
                    if frame.kind in (FrameKind.DONE, FrameKind.BROKEN):
                        if self.verdict is None:
                            self.verdict, self.verdict_at = frame, time.monotonic()
                    else:
                        if frame.kind == FrameKind.STDERR:
                            self.stderr += frame.payload[:max(0, 65536 - len(self.stderr))]
                        out.append(frame)
        if self._due():
            last = self._settle()
            if last is not None:
                out.append(last)
        return out

    def _read(self, fd: int) -> Optional[bytes]:
        try:
            count = os.readv(fd, [self.buffer])
        except BlockingIOError:
            return b""
        except OSError:
            count = 0
        return bytes(self.view[:count]) if count else None

    def _settle(self) -> Optional[Frame]:
        """The last frame: DONE, or the error that ended the pipe (raised)."""
        self.finished = True
        verdict = self.verdict
        if verdict is None:
            # The child ended without a word (killed, or it failed): the pipe sees
            # its death and says so.
            return None
        if verdict.kind == FrameKind.BROKEN:
            raise pickle.loads(verdict.payload)
        status = frame_json(self.host, verdict.kind, verdict.payload).get("status")
        return self.stream.final(status, bytes(self.stderr).decode(self.encoding, "replace"))

    def close(self) -> None:
        for connection in (self.events, self.control):
            try:
                connection.close()
            except OSError:
                pass
