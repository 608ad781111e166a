"""The SSHPipe child process: owns the SSH connection and relays bytes.

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

import json
import os
import pickle
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from sshpipe import bootstrap, protocol, serial
from sshpipe.errors import (AgentStartError, ConnectError, FrameError, HandshakeError,
                            PipeBroken, ProtocolError, SSHPipeError, VersionSkewError)
from sshpipe.protocol import FrameKind

if TYPE_CHECKING:  # pragma: no cover
    from sshpipe.pipe import SSHPipe

__all__ = ["ChildSession"]

# Seconds between heartbeats when ServerAliveInterval is not set; a peer is taken
# for dead after ServerAliveCountMax heartbeats without a word.
DEFAULT_HEARTBEAT = 10.0
# Frames forwarded to the channel in one write when the caller sends faster than
# the channel drains.
BATCH_BYTES = 256 * 1024
# How much of the remote's stderr is kept to explain a failed start.
STDERR_KEPT = 64 * 1024



class ChildSession:
    """Everything the SSHPipe child does, with state it alone owns."""

    def __init__(self, pipe: "SSHPipe"):
        self.pipe = pipe
        self.requests = pipe._request_reader
        self.events = pipe._event_writer
        self.events_lock = threading.Lock()
        self.transport: Any = None
        self.channel: Any = None
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
        try:
            self.emit(protocol.encode(FrameKind.BROKEN, pickle.dumps(error)))
        except (OSError, pickle.PicklingError, TypeError):
            pass
        return 255

    def _stderr_text(self) -> str:
        return bytes(self.stderr).decode(self.pipe.encoding, errors="replace")

    # -- life -------------------------------------------------------------
    def run(self) -> int:
        from sshpipe.transport import connect

        pipe = self.pipe
        try:
            settings = pipe._settings
            self.transport = connect(settings)
            self.heartbeat = (pipe._heartbeat or settings.server_alive_interval
                              or DEFAULT_HEARTBEAT)
            self.dead_after = self.heartbeat * max(settings.server_alive_count_max, 1)
            self.channel = self.transport.open_session(timeout=settings.connect_timeout or 30)
            self.channel.exec_command(pipe._remote_line)
            self.channel.settimeout(min(self.heartbeat, 1.0))
        except SSHPipeError as exc:
            return self._close_with(self.broken(exc))
        except Exception as exc:  # paramiko failures after connecting
            return self._close_with(self.broken(ConnectError(
                f"{pipe.host}: could not start the remote command: {exc!r}", pipe.host)))
        stderr_thread = threading.Thread(target=self._stderr_loop, daemon=True)
        stderr_thread.start()
        try:
            rest = self._load() if pipe._launch is not None else b""
            self._send_start()
            code = self._read_agent(stderr_thread, rest)
        except SSHPipeError as exc:
            code = self.broken(exc)
        except (OSError, EOFError) as exc:
            code = self.broken(PipeBroken(f"{pipe.host}: the SSH connection failed: {exc!r}"))
        return self._close_with(code)

    def _send_start(self) -> None:
        pipe = self.pipe
        self._send(protocol.encode_json(FrameKind.START, {
            "heartbeat": self.heartbeat, "heartbeat_timeout": self.dead_after,
            "term_messages": [pipe.term_message], "max_frame": pipe._max_frame,
            "log_level": pipe._log_level, "host": pipe.host, "pipe": pipe.name,
        }))

    def _close_with(self, code: int) -> int:
        self.closing.set()
        if self.transport is not None:
            self.transport.close()
        try:
            self.events.close()
        except OSError:
            pass
        return code

    # -- reading the channel ----------------------------------------------
    def _recv(self, synced: bool) -> bytes:
        """Next bytes from the agent's stdout (b"" at its end).

        The channel has a timeout so that silence can be timed; writers therefore
        go through :meth:`_send`, which retries a send that timed out waiting for
        window space rather than giving up.
        """
        pipe = self.pipe
        channel = self.channel
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
                if not synced and now - self.started > pipe.ready_timeout:
                    raise HandshakeError(f"{pipe.host}: no hello from the agent within "
                                         f"{pipe.ready_timeout:g} s")
                if synced and now - self.last_heard > self.dead_after:
                    raise PipeBroken(f"{pipe.host}: no heartbeat from the agent for "
                                     f"{now - self.last_heard:.1f} s (bound "
                                     f"{self.dead_after:g} s): host or network down")
                continue
            except (OSError, EOFError) as exc:
                raise PipeBroken(f"{pipe.host}: the SSH connection failed: {exc!r}") from exc
            self.last_heard = time.monotonic()
            return data

    def _send(self, data: bytes) -> None:
        """sendall() that survives the channel's read timeout: a full window (a
        busy agent) only means waiting longer, until the session closes."""
        channel = self.channel
        view = memoryview(data)
        while view:
            try:
                sent = channel.send(view)
            except socket.timeout:
                if self.closing.is_set() or channel.closed:
                    raise OSError("the channel closed while sending") from None
                continue
            if sent == 0:
                raise OSError("the channel is closed")
            view = view[sent:]

    def _load(self) -> bytes:
        """Zero-install stage: give the loader the bundle (if it lacks it) and what to
        run; return the bytes read past the loader's status line."""
        pipe = self.pipe
        bundle = pipe._bundle
        self._send(json.dumps({"hash": bundle.digest}).encode() + b"\n")
        pending = b""
        marker = bootstrap.LOADER_SYNC
        while True:
            data = self._recv(synced=False)
            if not data:
                self._wait_remote_exit()
                raise AgentStartError(
                    f"{pipe.host}: the remote Python ({pipe._python}) ended before the "
                    f"sshpipe loader answered", pipe.host, self._exit_status(),
                    self._stderr_text())
            pending += data
            start = pending.find(marker)
            if start < 0:
                continue
            end = pending.find(b"\n", start)
            if end < 0:
                continue
            if start:
                self.emit(protocol.encode(FrameKind.STDOUT, pending[:start]))
            status = json.loads(pending[start + len(marker):end].decode("utf-8"))
            rest = pending[end + 1:]
            break
        remote_python = status.get("python", "?")
        self.emit(protocol.encode_json(FrameKind.CONNECTED, {
            "bundle_sent": bool(status.get("need")), "cache": status.get("cache"),
            "bundle_hash": bundle.digest}))
        if status.get("error"):
            raise VersionSkewError(f"{pipe.host}: {status['error']}", pipe.host,
                                   local=_local_python(), remote=remote_python)
        check_code_compatible(pipe.host, pipe._launch[1], remote_python)
        if status.get("need"):
            self._send(json.dumps({"size": bundle.size}).encode() + b"\n")
            self._send(bundle.data)
        mode, body, argv = pipe._launch
        self._send(json.dumps({"mode": mode, "size": len(body), "argv": argv})
                             .encode() + b"\n" + body)
        return rest

    def _read_agent(self, stderr_thread: threading.Thread, rest: bytes) -> int:
        pipe = self.pipe
        scanner = protocol.SyncScanner()
        reader = protocol.FrameReader(pipe._max_frame + 64)
        synced = False
        writer = None
        data = rest
        while True:
            if not data:
                data = self._recv(synced)
                if not data:
                    break
            if not synced:
                found = scanner.feed(data)
                if scanner.preamble:
                    self.emit(protocol.encode(FrameKind.STDOUT, scanner.preamble))
                    scanner.preamble = b""
                if found is None:
                    data = b""
                    continue
                synced = True
                data = found
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
                raise FrameError(f"{pipe.host}: {exc.reason}", exc.frame_no) from exc
            data = b""
            for kind, start, end in spans:
                if kind == FrameKind.HELLO:
                    protocol.check_hello(_json(pipe.host, kind, piece[start:end]))
                    writer = threading.Thread(target=self._write_requests, daemon=True)
                    writer.start()
                elif kind == FrameKind.EXIT:
                    self.exit_info = _json(pipe.host, kind, piece[start:end])
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
            raise AgentStartError(f"{pipe.host}: the remote command ended before the agent "
                                  f"said hello", pipe.host, exitcode, self._stderr_text())
        if self.exit_info is None and not self.transport.is_active():
            # No EXIT frame and the connection itself is gone: sshd or the network
            # died, so how the agent ended is not known.
            raise PipeBroken(f"{pipe.host}: the SSH connection closed before the agent "
                             f"reported its end")
        info = self.exit_info or {}
        if self.exit_info is None and pipe._launch is not None and exitcode and exitcode > 128:
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
        channel = self.channel
        deadline = time.monotonic() + timeout
        while not channel.exit_status_ready() and time.monotonic() < deadline:
            if channel.closed or not self.transport.is_active():
                break
            time.sleep(0.002)

    def _exit_status(self) -> Optional[int]:
        if self.channel.exit_status_ready():
            return self.channel.recv_exit_status()
        return None

    # -- other threads ----------------------------------------------------
    def _stderr_loop(self) -> None:
        channel = self.channel
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
                    self.channel.shutdown_write()
                    return
                tracker.advance(view[:count])
                self._send(view[:count])
        except (OSError, EOFError):
            self.channel.close()


def _json(host: str, kind: FrameKind, payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"{host}: {kind.name} payload is not valid JSON: {exc}") from None


def _local_python() -> str:
    import platform

    return platform.python_version()


def _minor(version: str) -> Tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_code_compatible(host: str, payload: bytes, remote_python: str) -> None:
    """Raise VersionSkewError if ``payload`` carries code the remote cannot load."""
    local = _local_python()
    if _minor(local) != _minor(remote_python) and serial.carries_code(payload):
        raise VersionSkewError(
            f"{host}: this object carries Python code (a function or class sent by value) "
            f"made by Python {local}, which Python {remote_python} on the remote cannot "
            f"load; define it in a module shipped with modules=[...] or use the same "
            f"Python minor version on both ends", host, local=local, remote=remote_python)
