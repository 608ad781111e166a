"""The paramiko transport's child: owns the SSH connection and relays bytes.

It never unpickles a payload. The caller's request stream goes to the channel as
it comes (a :class:`~sshpipe.protocol.FrameTracker` only says where frames end,
so that a PING can be slipped in between two of them); the agent's output goes
to the caller in whole frames, one piece per read, looking only into HELLO and
EXIT.

Threads, each with what it alone touches:

- main: connects, runs the loader stage (zero-install), reads the channel's
  stdout, watches the agent's heartbeat, and reports the end (DONE or BROKEN);
- writer: reads the request pipe and writes the channel; at the pipe's end it
  shuts the channel's write side, so the agent reads end of input;
- stderr: forwards the channel's stderr to the caller as it arrives.

The event pipe is shared by the three threads under ``events_lock``.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from sshpipe import protocol
from sshpipe._child import DEFAULT_HEARTBEAT, ChildSpec, heartbeat_of, report_broken, start_frame
from sshpipe._startscan import StartScan, frame_json
from sshpipe.errors import (AgentStartError, FrameError, HandshakeError, PipeBroken,
                            ProtocolError, SSHPipeError)
from sshpipe.protocol import BytesLike, Frame, FrameKind

if TYPE_CHECKING:  # pragma: no cover
    import paramiko  # imported with sshpipe.transport, in run()

__all__ = ["ChildSession"]

# Frames forwarded to the channel in one write when the caller sends faster than
# the channel drains.
BATCH_BYTES = 256 * 1024
# How much of the remote's stderr is kept to explain a failed start.
STDERR_KEPT = 64 * 1024


class ChildSession:
    """Everything the SSHPipe child does, with state it alone owns."""

    def __init__(self, spec: ChildSpec, requests: Any, events: Any):
        self.spec = spec
        self.requests = requests
        self.events = events
        self.events_lock = threading.Lock()
        self.transport: Optional[paramiko.Transport] = None
        self.channel: Optional[paramiko.Channel] = None
        self.last_heard = time.monotonic()
        self.closing = threading.Event()
        self.exit_info: Optional[Dict[str, Any]] = None
        self.stderr = bytearray()
        self.heartbeat = DEFAULT_HEARTBEAT
        self.dead_after = DEFAULT_HEARTBEAT * 3
        self.started = time.monotonic()

    # -- events to the caller ---------------------------------------------
    def emit(self, data: bytes) -> None:
        """Write whole frames to the caller; the lock keeps pieces from interleaving."""
        with self.events_lock:
            protocol.write_all(self.events.fileno(), data)

    def broken(self, error: BaseException) -> int:
        return report_broken(self.emit, error)

    def _stderr_text(self) -> str:
        return bytes(self.stderr).decode(self.spec.encoding, errors="replace")

    # -- life -------------------------------------------------------------
    def run(self) -> int:
        from sshpipe.transport import connect, open_command

        spec = self.spec
        try:
            settings = spec.settings
            self.transport = transport = connect(settings)
            self.heartbeat, self.dead_after = heartbeat_of(spec)
            self.channel = channel = open_command(transport, spec.remote_line, settings)
            channel.settimeout(min(self.heartbeat, 1.0))
        except SSHPipeError as exc:  # transport.py translated paramiko's and the socket's
            return self._close_with(self.broken(exc))
        stderr_thread = threading.Thread(target=self._stderr_loop, daemon=True)
        stderr_thread.start()
        try:
            rest = self._start_agent()
            code = self._read_agent(stderr_thread, rest)
        except SSHPipeError as exc:
            code = self.broken(exc)
        except (OSError, EOFError) as exc:
            broken = PipeBroken(f"{spec.host}: the SSH connection failed: {exc!r}", host=spec.host)
            broken.__cause__ = exc
            code = self.broken(broken)
        except Exception as exc:  # a bug here must still say what happened, with its cause
            error = ProtocolError(f"{spec.host}: the pipe's child failed: {exc!r}")
            error.__cause__ = exc
            code = self.broken(error)
        return self._close_with(code)

    def _close_with(self, code: int) -> int:
        self.closing.set()
        if self.transport is not None:
            self.transport.close()
        try:
            self.events.close()
        except OSError:
            pass
        return code

    def _open_channel(self) -> paramiko.Channel:
        """The session's channel: every caller runs after run() opened it."""
        channel = self.channel
        if channel is None:
            raise ProtocolError(f"{self.spec.host}: the SSH channel is not open")
        return channel

    def _active_transport(self) -> bool:
        return self.transport is not None and self.transport.is_active()

    # -- reading the channel ----------------------------------------------
    def _recv(self, synced: bool) -> bytes:
        """Next bytes from the agent's stdout (b"" at its end).

        The channel has a timeout so that silence can be timed; writers therefore
        go through :meth:`_send`, which retries a send that timed out waiting for
        window space rather than giving up.
        """
        spec = self.spec
        channel = self._open_channel()
        while True:
            try:
                data = channel.recv(1 << 20)
            except socket.timeout:
                now = time.monotonic()
                if self.exit_info is not None or channel.exit_status_ready():
                    # The agent has exited; a process it left behind may hold the
                    # session's output open, so no EOF will come: this silence
                    # (one read timeout) is the end.
                    return b""
                if not synced and now - self.started > spec.ready_timeout:
                    raise HandshakeError(f"{spec.host}: no hello from the agent within "
                                         f"{spec.ready_timeout:g} s") from None
                if synced and now - self.last_heard > self.dead_after:
                    raise PipeBroken(f"{spec.host}: no heartbeat from the agent for "
                                     f"{now - self.last_heard:.1f} s (bound "
                                     f"{self.dead_after:g} s): host or network down"
                                     ) from None
                continue
            except (OSError, EOFError) as exc:
                raise PipeBroken(f"{spec.host}: the SSH connection failed: {exc!r}") from exc
            self.last_heard = time.monotonic()
            return data

    def _send(self, data: BytesLike) -> None:
        """sendall() that survives the channel's read timeout: a full window (a
        busy agent) only means waiting longer, until the session closes."""
        channel = self._open_channel()
        view = memoryview(data)
        while view:
            try:
                # paramiko sends any buffer (a view: no copy); its stubs say bytes
                sent = channel.send(view)  # type: ignore[arg-type]
            except socket.timeout:
                if self.closing.is_set() or channel.closed:
                    raise OSError("the channel closed while sending") from None
                continue
            if sent == 0:
                raise OSError("the channel is closed")
            view = view[sent:]

    def _start_agent(self) -> bytes:
        """From the first bytes sent to the SYNC marker (:class:`StartScan`: the
        loader stage when zero-install, the preamble bound, echo detection); return
        the bytes that followed the marker."""
        spec = self.spec
        scan = StartScan(host=spec.host, python=spec.python, launch=spec.launch,
                         bundle=spec.bundle,
                         start=start_frame(spec, self.heartbeat, self.dead_after))
        scan.zygote = spec.zygote
        self._send(scan.begin())
        while True:
            data = self._recv(synced=False)
            if not data:
                self._wait_remote_exit()
                if scan.at_loader:
                    raise AgentStartError(
                        f"{spec.host}: the remote Python ({spec.python}) ended before the "
                        f"sshpipe loader answered", spec.host, self._exit_status(),
                        self._stderr_text())
                return b""  # _read_agent says the agent never said hello
            out: List[Frame] = []
            try:
                answer, rest = scan.feed(data, out)
            finally:
                for frame in out:
                    self.emit(protocol.encode(frame.kind, frame.payload))
            for piece in answer:
                self._send(piece)
            if rest is not None:
                return rest

    def _read_agent(self, stderr_thread: threading.Thread, rest: bytes) -> int:
        spec = self.spec
        reader = protocol.FrameReader(spec.max_frame + 64)
        writer = None
        data = rest
        while True:
            if not data:
                data = self._recv(synced=True)
                if not data:
                    break
            if self.exit_info is not None:
                # After EXIT the agent is done: whatever still comes (a logout
                # script, a wrapper's echo) is output, not frames.
                noise = reader.take_buffered() + bytes(data)
                self.emit(protocol.encode(FrameKind.STDOUT, noise))
                data = b""
                continue
            try:
                # Whole frames are forwarded as they came, in one piece per read;
                # only HELLO and EXIT are looked into.
                piece, spans = reader.cut(data)
            except FrameError as exc:
                raise FrameError(f"{spec.host}: {exc.reason}", exc.frame_no) from exc
            data = b""
            for kind, start, end in spans:
                if kind == FrameKind.HELLO:
                    protocol.check_hello(frame_json(spec.host, kind, piece[start:end]))
                    writer = threading.Thread(target=self._write_requests, daemon=True)
                    writer.start()
                elif kind == FrameKind.EXIT:
                    self.exit_info = frame_json(spec.host, kind, piece[start:end])
            if piece:
                self.emit(piece)
            if self.exit_info is not None and reader.buffered:
                # What followed EXIT in the same read is output too.
                self.emit(protocol.encode(FrameKind.STDOUT, reader.take_buffered()))
        # The agent closed its output: collect the exit status.
        self._wait_remote_exit()
        stderr_thread.join(timeout=2.0)
        exitcode = self._exit_status()
        if writer is None:
            raise AgentStartError(f"{spec.host}: the remote command ended before the agent "
                                  f"said hello", spec.host, exitcode, self._stderr_text())
        if self.exit_info is None and not self._active_transport():
            # No EXIT frame and the connection itself is gone: sshd or the network
            # died, so how the agent ended is not known.
            raise PipeBroken(f"{spec.host}: the SSH connection closed before the agent "
                             f"reported its end")
        if self.exit_info is None and reader.buffered:
            raise FrameError(f"{spec.host}: the agent's output ended inside a frame "
                             f"({reader.buffered} bytes of it came)", reader.frames_seen + 1)
        info = self.exit_info or {}
        if self.exit_info is None and spec.launch is not None and exitcode and exitcode > 128:
            # The loader's supervisor reports an agent killed by signal N as 128+N;
            # like Process.exitcode, the pipe says -N.
            exitcode = 128 - exitcode
            reason = f"the agent was killed by signal {-exitcode}"
        elif exitcode == -1 and self.exit_info is None:
            reason = ("the agent ended without an exit status (killed by a signal; "
                      "paramiko does not report which)")
        else:
            reason = info.get("reason") or f"the agent exited with status {exitcode}"
        self.emit(protocol.encode_json(FrameKind.DONE, {"exitcode": exitcode, "reason": reason}))
        if exitcode is not None and exitcode < -1:
            return exitcode  # killed by a signal: SSHPipe.run() mirrors it
        return exitcode if exitcode is not None and 0 <= exitcode < 256 else 255

    def _wait_remote_exit(self, timeout: float = 5.0) -> None:
        channel = self._open_channel()
        deadline = time.monotonic() + timeout
        while not channel.exit_status_ready() and time.monotonic() < deadline:
            if channel.closed or not self._active_transport():
                break
            time.sleep(0.002)

    def _exit_status(self) -> Optional[int]:
        channel = self._open_channel()
        if channel.exit_status_ready():
            return channel.recv_exit_status()
        return None

    # -- other threads ----------------------------------------------------
    def _stderr_loop(self) -> None:
        channel = self._open_channel()
        while True:
            try:
                data = channel.recv_stderr(65536)
            except socket.timeout:
                continue  # the channel timeout times stdout silence; stderr may be quiet
            except (OSError, EOFError):
                return
            if not data:
                return
            if len(self.stderr) < STDERR_KEPT:
                self.stderr += data
            try:
                self.emit(protocol.encode(FrameKind.STDERR, data))
            except OSError:
                return

    def _write_requests(self) -> None:
        """Writer thread: the caller's frames to the channel, relayed as they come,
        as many as are waiting in one write; PING (between frames) when the caller
        is idle. The end of the request pipe (the caller closed it, or died) ends
        the agent's input."""
        fd = self.requests.fileno()
        tracker = protocol.FrameTracker()
        buffer = bytearray(BATCH_BYTES)
        view = memoryview(buffer)
        try:
            while not self.closing.is_set():
                if not self.requests.poll(self.heartbeat):
                    if tracker.at_boundary:
                        self._send(protocol.encode(FrameKind.PING))
                    continue
                count = os.readv(fd, [buffer])
                if not count:
                    self._open_channel().shutdown_write()
                    return
                tracker.advance(view[:count])
                self._send(view[:count])
        except (OSError, EOFError):
            self._open_channel().close()

