"""A client for OpenSSH's connection-multiplexing protocol (``PROTOCOL.mux``, v4).

What it is for: the caller's own pipe ends go to the ssh master over its control
socket (SCM_RIGHTS), and the master, in C, reads and writes them directly. No
Python process relays a byte of the session.

::

    this process                          ssh master (ControlMaster)         sshd
    MuxClient.connect ── HELLO, ALIVE ──> answers HELLO v4, ALIVE(pid)
    open_session ── NEW_SESSION(cmd) ───>
                 ── fd stdin  (1 byte + SCM_RIGHTS)
                 ── fd stdout (1 byte + SCM_RIGHTS)
                 ── fd stderr (1 byte + SCM_RIGHTS) ─> channel open ──────> session
                 <── SESSION_OPENED(sid) ─── open confirmed, exec sent
    MuxSession.wait <── EXIT_MESSAGE(sid, status) ─── exit-status <─────── command ends
                    <── EOF: the master closed the control connection once the
                        channel closed, i.e. after all output reached our fds

Facts from OpenSSH's mux.c (9.2, checked against the source), which this module
relies on:

- Packets are ``uint32 length, uint32 type, body``; every request but HELLO
  carries a request id that the reply echoes. The master refuses packets over
  256 KiB (``CHANNEL_MUX_MAX_PACKET``); so do we, both ways.
- The flags of NEW_SESSION are uint32 on the wire (the document says "bool").
- The master reads the three fds with a *blocking* ``recvmsg`` right after the
  request (``mm_receive_fd``), one per 1-byte message. A client that sent the
  request but not the fds would freeze the master and every session on it, so
  the fds go out immediately after the request, in one burst.
- The reply is SESSION_OPENED, sent once sshd confirmed the channel (not MUX_S_OK
  as the document says), or FAILURE / PERMISSION_DENIED with a reason. One
  session per control connection ("Multiple sessions not supported").
- The exit status arrives as EXIT_MESSAGE; an ``exit-signal`` is not forwarded,
  so a remote command killed by a signal ends its session with no status.
- The master closes the control connection when the session channel closes,
  after its output has been written to our fds. Closing the control connection
  ourselves runs ``mux_master_control_cleanup_cb``: the session channel's input
  is marked read-failed (what was already read from our stdin is still sent,
  then EOF) and its output write-failed (output not yet written to our fds is
  dropped), and the channel is closed towards sshd. sshd then closes the
  command's pipes, but does not signal it: the command sees EOF on stdin and
  EPIPE on output and must end by itself. The mux protocol cannot send signals.
  Hence :meth:`MuxSession.wait` waits for that EOF, not just the exit message:
  closing early could lose the end of the output.

Every read has a deadline; every message received is counted, and errors name
the host and the message number.

Not thread-safe: one client or session is used by one thread at a time.
"""
from __future__ import annotations

import array
import enum
import errno
import os
import select
import socket
import struct
import time
from typing import Iterable, Optional, Union

from sshpipe._openssh import _procs
from sshpipe._openssh.failures import (MasterLost, MasterNotRunning, MuxError, MuxUnavailable,
                                       NoExitStatus, SessionRefused, read_log_tail)
from sshpipe.errors import ConnectTimeout, PipeClosed

__all__ = ["MAX_PACKET", "MUX_VERSION", "MuxClient", "MuxSession", "SessionState"]

MUX_VERSION = 4

MSG_HELLO = 0x00000001
C_NEW_SESSION = 0x10000002
C_ALIVE_CHECK = 0x10000004
C_TERMINATE = 0x10000005
S_OK = 0x80000001
S_PERMISSION_DENIED = 0x80000002
S_FAILURE = 0x80000003
S_EXIT_MESSAGE = 0x80000004
S_ALIVE = 0x80000005
S_SESSION_OPENED = 0x80000006
S_TTY_ALLOC_FAIL = 0x80000008

_NAMES = {MSG_HELLO: "HELLO", S_OK: "OK", S_PERMISSION_DENIED: "PERMISSION_DENIED",
          S_FAILURE: "FAILURE", S_EXIT_MESSAGE: "EXIT_MESSAGE", S_ALIVE: "ALIVE",
          S_SESSION_OPENED: "SESSION_OPENED", S_TTY_ALLOC_FAIL: "TTY_ALLOC_FAIL"}

# The master's own limit (CHANNEL_MUX_MAX_PACKET in channels.c); its replies are a
# few dozen bytes, so anything near this is not a master talking.
MAX_PACKET = 256 * 1024

ESCAPE_NONE = 0xFFFFFFFF

# After the control connection ends without an exit status: how long to wait for
# the master process to be gone before concluding it lives on. A killed process
# closes its sockets a moment before it is reported dead.
MASTER_EXIT_GRACE = 0.5

_U32 = struct.Struct(">I")


def _name(kind: int) -> str:
    return _NAMES.get(kind, f"0x{kind:08x}")


def _string(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def _encode(value: Union[str, bytes]) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


class _Timeout(Exception):
    """Internal: the deadline passed."""


class _EOF(Exception):
    """Internal: the master closed the control connection."""


class _Reader:
    """Fields of one received packet; a short packet is the master's fault."""

    def __init__(self, data: bytes, host: str, number: int, kind: int):
        self._data = data
        self._pos = 0
        self._host = host
        self.number = number
        self.kind = kind

    def _fail(self, what: str) -> MuxError:
        return MuxError(f"{self._host}: mux message {self.number} ({_name(self.kind)}) "
                        f"from the master: {what}", self._host)

    def u32(self) -> int:
        if self._pos + 4 > len(self._data):
            raise self._fail("truncated")
        value: int = _U32.unpack_from(self._data, self._pos)[0]
        self._pos += 4
        return value

    def string(self) -> bytes:
        length = self.u32()
        if self._pos + length > len(self._data):
            raise self._fail("string runs past the end")
        value = self._data[self._pos:self._pos + length]
        self._pos += length
        return value

    def text(self) -> str:
        return self.string().decode("utf-8", "replace")


class _Channel:
    """The control connection: whole packets out and in, each bounded by a deadline.

    Ownership: created by :meth:`MuxClient.connect`, handed to the session it
    opens (then the client lets go of it); closed by whoever holds it last.
    """

    def __init__(self, sock: socket.socket, host: str):
        self.sock = sock
        self.host = host
        self.received = 0
        self._buffer = bytearray()
        self._poller = select.poll()
        self._poller.register(sock.fileno(), select.POLLIN)

    @staticmethod
    def _remaining(deadline: Optional[float]) -> Optional[float]:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Timeout()
        return left

    def _wait(self, events: int, deadline: Optional[float]) -> None:
        left = self._remaining(deadline)
        poller = self._poller if events == select.POLLIN else select.poll()
        if poller is not self._poller:
            poller.register(self.sock.fileno(), events)
        if not poller.poll(None if left is None else max(1, int(left * 1000 + 0.999))):
            self._remaining(deadline)  # raises once the deadline has passed

    def send(self, data: bytes, deadline: Optional[float]) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                self._wait(select.POLLOUT, deadline)
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise _EOF() from None
            view = view[sent:]

    def send_fd(self, fd: int, deadline: Optional[float]) -> None:
        """One byte carrying one descriptor, as ``mm_send_fd`` does."""
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
        while True:
            try:
                if self.sock.sendmsg([b"\0"], rights) == 1:
                    return
            except (BlockingIOError, InterruptedError):
                self._wait(select.POLLOUT, deadline)
            except (BrokenPipeError, ConnectionResetError):
                raise _EOF() from None

    def _fill(self, need: int, deadline: Optional[float]) -> None:
        while len(self._buffer) < need:
            try:
                chunk = self.sock.recv(max(4096, need - len(self._buffer)))
            except (BlockingIOError, InterruptedError):
                self._wait(select.POLLIN, deadline)
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise _EOF()
            self._buffer += chunk

    def recv(self, deadline: Optional[float]) -> _Reader:
        """The next whole packet, as a reader positioned after its type."""
        self._fill(4, deadline)
        (length,) = _U32.unpack_from(self._buffer, 0)
        number = self.received + 1
        if length < 4 or length > MAX_PACKET:
            raise MuxError(f"{self.host}: mux message {number} from the master claims "
                           f"{length} bytes (allowed 4..{MAX_PACKET})", self.host)
        self._fill(4 + length, deadline)
        body = bytes(self._buffer[4:4 + length])
        del self._buffer[:4 + length]
        self.received = number
        (kind,) = _U32.unpack_from(body, 0)
        reader = _Reader(body, self.host, number, kind)
        reader.u32()
        return reader

    def close(self) -> None:
        self.sock.close()


def _deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


class MuxClient:
    """One connection to a master's control socket, good for one session.

    Build it with :meth:`connect`. It can check the master (:meth:`alive_check`),
    ask it to exit (:meth:`terminate`) or open one session
    (:meth:`open_session`), which takes the connection over.

    Attributes:
        host: the name used in error messages (the target's host).
        path: the control socket.
        master: the master process (pid and start time), from its ALIVE reply.
    """

    def __init__(self, channel: _Channel, path: str, master: _procs.ProcessId,
                 log_path: Optional[str]):
        self._channel: Optional[_Channel] = channel
        self.host = channel.host
        self.path = path
        self.master = master
        self.log_path = log_path
        self._request_id = 1  # 0 went out with the ALIVE check in connect()

    @classmethod
    def connect(cls, path: str, *, host: str, timeout: Optional[float],
                log_path: Optional[str] = None) -> "MuxClient":
        """Connect to the master at ``path``, exchange HELLOs and learn its pid.

        One local round trip: HELLO and ALIVE_CHECK go out together.

        Raises:
            MasterNotRunning: no socket there, or nothing listens on it (``stale``).
            MuxUnavailable: the master speaks another protocol version.
            MuxError: the socket is served by another user, or spoke nonsense.
            ConnectTimeout: no answer within ``timeout`` seconds.
        """
        deadline = _deadline(timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            _connect_unix(sock, path, host, deadline)
            _check_peer(sock, path, host)
            channel = _Channel(sock, host)
            try:
                channel.send(_string(_U32.pack(MSG_HELLO) + _U32.pack(MUX_VERSION))
                             + _string(_U32.pack(C_ALIVE_CHECK) + _U32.pack(0)), deadline)
                hello = channel.recv(deadline)
                kind = hello.kind
                if kind != MSG_HELLO:
                    raise MuxError(f"{host}: the master at {path} answered {_name(kind)} "
                                   f"instead of HELLO", host)
                version = hello.u32()
                if version != MUX_VERSION:
                    raise MuxUnavailable(f"{host}: the master at {path} speaks mux protocol "
                                         f"version {version}; this client speaks "
                                         f"{MUX_VERSION}", host)
                alive = channel.recv(deadline)
            except _EOF:
                raise MasterNotRunning(f"{host}: the master at {path} closed the control "
                                       f"connection during the hello", host) from None
            except _Timeout:
                raise ConnectTimeout(f"{host}: the master at {path} did not answer its hello "
                                     f"within {timeout:g} s", host) from None
            pid = _expect_reply(alive, S_ALIVE, 0, host, "alive check").u32()
        except BaseException:
            sock.close()
            raise
        master = _procs.identify(pid) or _procs.ProcessId(pid, None)
        return cls(channel, path, master, log_path)

    # -- requests answered at once --------------------------------------------
    def _take_id(self) -> int:
        rid = self._request_id
        self._request_id += 1
        return rid

    def _live(self) -> _Channel:
        if self._channel is None:
            raise PipeClosed(f"{self.host}: this control connection is closed or was "
                             f"handed to a session")
        return self._channel

    def alive_check(self, timeout: Optional[float]) -> int:
        """Ask the master for its pid (MUX_C_ALIVE_CHECK); proves it serves requests."""
        channel, rid, deadline = self._live(), self._take_id(), _deadline(timeout)
        try:
            channel.send(_string(_U32.pack(C_ALIVE_CHECK) + _U32.pack(rid)), deadline)
            return _expect_reply(channel.recv(deadline), S_ALIVE, rid, self.host,
                                 "alive check").u32()
        except _EOF:
            raise MasterNotRunning(f"{self.host}: the master closed the control connection "
                                   f"before answering an alive check", self.host) from None
        except _Timeout:
            raise ConnectTimeout(f"{self.host}: no answer to an alive check within "
                                 f"{timeout:g} s", self.host) from None

    def terminate(self, timeout: Optional[float]) -> None:
        """Ask the master to exit now (MUX_C_TERMINATE), ending all its sessions.

        The master may exit before its OK reaches us (mux.c says so); the end of
        the connection counts as success. Closes this client.
        """
        channel, rid, deadline = self._live(), self._take_id(), _deadline(timeout)
        try:
            channel.send(_string(_U32.pack(C_TERMINATE) + _U32.pack(rid)), deadline)
            _expect_reply(channel.recv(deadline), S_OK, rid, self.host, "terminate request")
        except _EOF:
            pass
        except _Timeout:
            raise ConnectTimeout(f"{self.host}: the master did not answer a terminate "
                                 f"request within {timeout:g} s", self.host) from None
        finally:
            self.close()

    # -- the session ----------------------------------------------------------
    def open_session(self, command: Union[str, bytes], stdin: int, stdout: int, stderr: int,
                     *, env: Iterable[str] = (), want_agent: bool = False,
                     timeout: Optional[float]) -> "MuxSession":
        """Run ``command`` on the remote with our fds as its stdin, stdout, stderr.

        The master gets its own copies of the three fds; close yours once this
        returns (a write end you keep open means the reader never sees EOF). The
        master makes its copies non-blocking while it uses them (the flag belongs
        to the open file, so it shows on every copy) and restores them after.

        Args:
            env: ``NAME=value`` strings; the master passes on only those its
                SendEnv allows, and sshd only those its AcceptEnv allows.
            want_agent: forward the ssh agent, if the master's config allows it.
            timeout: seconds to wait for sshd to confirm the session.

        Returns:
            The running session; this client is spent (the session owns the
            connection now).

        Raises:
            SessionRefused: sshd refused the channel (MaxSessions reached).
            MuxError: the master refused the session (reason included).
            ValueError: an fd is not open, or the request would be too large.
            MasterNotRunning: the master ended before answering.
            ConnectTimeout: no answer within ``timeout``.
        """
        channel = self._live()
        for name, fd in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
            try:
                os.fstat(fd)
            except (OSError, TypeError) as exc:
                # checked first: a request whose fds never follow freezes the master
                raise ValueError(f"{name} {fd!r} is not an open file descriptor") from exc
        rid = self._take_id()
        body = bytearray()
        body += _U32.pack(C_NEW_SESSION) + _U32.pack(rid) + _string(b"")
        body += _U32.pack(0) + _U32.pack(0) + _U32.pack(1 if want_agent else 0)
        body += _U32.pack(0) + _U32.pack(ESCAPE_NONE) + _string(b"") + _string(_encode(command))
        for item in env:
            if "=" not in item:
                raise ValueError(f"environment entry {item!r} is not NAME=value")
            body += _string(_encode(item))
        if len(body) > MAX_PACKET:
            raise ValueError(f"command and environment are {len(body)} bytes; the master "
                             f"accepts at most {MAX_PACKET}")
        deadline = _deadline(timeout)
        try:
            channel.send(_string(bytes(body)), deadline)
            for fd in (stdin, stdout, stderr):
                channel.send_fd(fd, deadline)
            reply = channel.recv(deadline)
        except _EOF:
            self.close()
            raise MasterNotRunning(f"{self.host}: the master (pid {self.master.pid}) closed the "
                                   f"control connection before the session opened", self.host
                                   ) from None
        except _Timeout:
            self.close()
            raise ConnectTimeout(f"{self.host}: the session did not open within {timeout:g} s "
                                 f"(master pid {self.master.pid})", self.host) from None
        except BaseException:
            self.close()
            raise
        try:
            session_id = _expect_reply(reply, S_SESSION_OPENED, rid, self.host,
                                       "session request").u32()
        except BaseException:
            self.close()
            raise
        self._channel = None
        return MuxSession(channel, session_id, self.master, self.log_path)

    def close(self) -> None:
        """Close the control connection (idempotent)."""
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def __enter__(self) -> "MuxClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._channel is not None else "closed"
        return f"<MuxClient {self.host} master pid {self.master.pid} {state}>"


def _connect_unix(sock: socket.socket, path: str, host: str,
                  deadline: Optional[float]) -> None:
    step = 0.001
    while True:
        try:
            sock.connect(path)
            return
        except FileNotFoundError:
            raise MasterNotRunning(f"{host}: no master socket at {path}", host) from None
        except ConnectionRefusedError:
            raise MasterNotRunning(f"{host}: nothing listens on {path} (a master that "
                                   f"crashed left it)", host, stale=True) from None
        except (BlockingIOError, InterruptedError):
            pass  # the listen backlog is full: the master is busy accepting
        except OSError as exc:
            if exc.errno == errno.ENOTSOCK or exc.errno == errno.ECONNREFUSED:
                raise MasterNotRunning(f"{host}: {path} is not a listening socket", host,
                                       stale=True) from None
            raise MuxError(f"{host}: cannot connect to the master at {path}: "
                           f"{exc.strerror}", host) from exc
        if deadline is not None and time.monotonic() >= deadline:
            raise ConnectTimeout(f"{host}: the master at {path} accepted no connection "
                                 f"in time (its backlog stayed full)", host)
        time.sleep(step)
        step = min(step * 2, 0.02)


def _check_peer(sock: socket.socket, path: str, host: str) -> None:
    """Refuse a socket served by another user (the master checks us the same way).

    Only the uid is used: the kernel records a listener's credentials when it
    calls listen(), and ssh listens before it daemonizes, so the pid here is the
    foreground ssh that has long exited; the master's own pid comes from ALIVE."""
    if not hasattr(socket, "SO_PEERCRED"):
        return
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    if uid != os.geteuid():
        raise MuxError(f"{host}: the socket {path} is served by uid {uid}, not by this "
                       f"user ({os.geteuid()}); not using it", host)


def _expect_reply(reader: _Reader, kind: int, rid: int, host: str, what: str) -> _Reader:
    """Check a reply's type and request id; turn FAILURE/PERMISSION_DENIED into
    a MuxError carrying the master's reason."""
    got = reader.kind
    if got in (S_FAILURE, S_PERMISSION_DENIED):
        reader.u32()
        reason = reader.text()
        if "refused by peer" in reason:
            raise SessionRefused(f"{host}: sshd refused the {what}: {reason} (its MaxSessions, "
                                 f"10 by default, may be reached on this connection)", host)
        raise MuxError(f"{host}: the master refused the {what}: {reason}", host)
    if got != kind:
        raise MuxError(f"{host}: mux message {reader.number}: expected {_name(kind)} for the "
                       f"{what}, got {_name(got)}", host)
    reply_id = reader.u32()
    if reply_id != rid:
        raise MuxError(f"{host}: mux message {reader.number}: reply to request {reply_id}, "
                       f"expected {rid}", host)
    return reader


class SessionState(enum.Enum):
    """Where a :class:`MuxSession` is in its life."""

    RUNNING = "running"   # opened; no exit status yet
    EXITED = "exited"     # exit status received; the master may still be writing output
    ENDED = "ended"       # the master closed the session after the status: all delivered
    LOST = "lost"         # the control connection ended without an exit status
    CLOSED = "closed"     # we closed it before it ended (the remote got EOF)


class MuxSession:
    """A remote command running on a master, its stdio being the fds we passed.

    States (:class:`SessionState`): RUNNING -> EXITED -> ENDED, RUNNING -> LOST,
    and RUNNING/EXITED -> CLOSED through :meth:`close`. :meth:`wait` drives the
    first three; nothing happens in the background.

    Ownership: the session holds the control connection; :meth:`close` (or the
    end of the session) closes it. The remote command's data never passes here.

    Attributes:
        host, session_id, master: the master's names for it.
        exit_status: the remote command's exit status once known, else None.
        tty_alloc_failed: the master reported MUX_S_TTY_ALLOC_FAIL (only
            possible with a tty, which this client never asks for).
    """

    def __init__(self, channel: _Channel, session_id: int, master: _procs.ProcessId,
                 log_path: Optional[str]):
        self._channel: Optional[_Channel] = channel
        self.host = channel.host
        self.session_id = session_id
        self.master = master
        self.log_path = log_path
        self.exit_status: Optional[int] = None
        self.tty_alloc_failed = False
        self.state = SessionState.RUNNING
        self._lost: Optional[BaseException] = None

    @property
    def master_pid(self) -> int:
        return self.master.pid

    def fileno(self) -> int:
        """The control socket: readable when the master has news (for poll/select)."""
        if self._channel is None:
            raise PipeClosed(f"{self.host}: the session's control connection is closed")
        return self._channel.sock.fileno()

    def poll(self) -> Optional[int]:
        """:meth:`wait` without waiting."""
        return self.wait(0)

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Wait up to ``timeout`` seconds for the session to end.

        Returns:
            The remote exit status once the master has closed the session (so all
            output is in our fds), or None if it has not ended by then.

        Raises:
            MasterLost: the master ended under the session (log tail included).
            NoExitStatus: the session ended without a status, the master lives.
            PipeClosed: :meth:`close` was called before the session ended.
        """
        if self.state is SessionState.ENDED:
            return self.exit_status
        if self._lost is not None:
            raise self._lost
        if self.state is SessionState.CLOSED or self._channel is None:
            raise PipeClosed(f"{self.host}: session {self.session_id} was closed before it "
                             f"ended")
        deadline = _deadline(timeout)
        channel = self._channel
        while True:
            try:
                reader = channel.recv(deadline)
            except _Timeout:
                return None
            except _EOF:
                return self._ended()
            except MuxError as exc:
                self._fail(exc)
            try:
                self._handle(reader)
            except MuxError as exc:
                self._fail(exc)

    def _fail(self, exc: MuxError) -> None:
        """A protocol violation ends the session for good: close and keep the error."""
        self.close()
        self.state = SessionState.LOST
        self._lost = exc
        raise exc

    def _handle(self, reader: _Reader) -> None:
        kind = reader.kind
        if kind == S_EXIT_MESSAGE:
            self._check_sid(reader)
            status = reader.u32()
            if self.exit_status is not None:
                raise MuxError(f"{self.host}: mux message {reader.number}: a second exit "
                               f"status for session {self.session_id}", self.host)
            self.exit_status = status
            self.state = SessionState.EXITED
        elif kind == S_TTY_ALLOC_FAIL:
            self._check_sid(reader)
            self.tty_alloc_failed = True
        elif kind in (S_ALIVE, S_OK):
            pass  # a reply to a request made on this connection before the session
        else:
            raise MuxError(f"{self.host}: mux message {reader.number}: unexpected "
                           f"{_name(kind)} during session {self.session_id}", self.host)

    def _check_sid(self, reader: _Reader) -> None:
        sid = reader.u32()
        if sid != self.session_id:
            raise MuxError(f"{self.host}: mux message {reader.number}: about session {sid}, "
                           f"this is session {self.session_id}", self.host)

    def _ended(self) -> int:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()
        if self.exit_status is not None:
            self.state = SessionState.ENDED
            return self.exit_status
        self.state = SessionState.LOST
        # read now: once the master is gone, its watchdog removes the log
        tail = read_log_tail(self.log_path).strip()
        if _procs.wait_exit(self.master, MASTER_EXIT_GRACE):
            why = f"; its log ends: {tail.splitlines()[-1]}" if tail else ""
            self._lost = MasterLost(f"{self.host}: the ssh master (pid {self.master.pid}) ended "
                                    f"under session {self.session_id}{why}", self.host,
                                    self.master.pid)
        else:
            self._lost = NoExitStatus(f"{self.host}: session {self.session_id} ended without an "
                                      f"exit status (the remote command was probably killed by "
                                      f"a signal; the master, pid {self.master.pid}, still "
                                      f"runs)", self.host)
        raise self._lost

    def close(self) -> None:
        """End the session from our side: the master closes the channel (the remote
        command gets EOF; output not yet delivered is dropped). Idempotent."""
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()
            if self.state in (SessionState.RUNNING, SessionState.EXITED):
                self.state = SessionState.CLOSED

    def __enter__(self) -> "MuxSession":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        status = "" if self.exit_status is None else f" status {self.exit_status}"
        return (f"<MuxSession {self.host} session {self.session_id} master pid "
                f"{self.master.pid} {self.state.value}{status}>")

