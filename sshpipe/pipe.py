"""SSHPipe: a remote agent that looks like a local ``multiprocessing.Process``.

::

     caller process                         SSHPipe child process             remote host
    +-----------------------+ request pipe +---------------------------+ SSH +--------------+
    | send(): serial.dumps, | ===========> | writer thread: relays the | ==> | loader       |
    |  DATA frame (writev), |  raw frames  |  byte stream, PING when   |     |  supervisor  |
    |  credit window        |              |  idle, EOF = end of input |     |   agent      |
    | recv(): reads events  |  event pipe  | main thread: channel      | <== |   (agent.py) |
    |  itself while waiting | <=========== |  stdout -> whole frames,  |     |  handler     |
    | events thread: acks,  |  raw frames  |  heartbeat watch, DONE    |     |              |
    |  logs, end, callback  |              | stderr thread: STDERR     |     |              |
    +-----------------------+              +---------------------------+     +--------------+

Actors:

- The **caller** serializes each object once (:mod:`sshpipe.serial`: C pickle,
  dill where needed) and writes a DATA frame carrying a sequence number to the
  request pipe. A credit window (``queue_bound`` messages not yet acknowledged)
  makes a fast producer block instead of growing memory. Events from the child
  are read by whichever caller thread holds ``_reader_lock``: a thread waiting in
  ``recv()`` reads for itself (no hand-off), otherwise the *events thread* does.
  Replies go to ``recv()``, acknowledgements open the window, log records are
  re-emitted into the caller's logger, and the final DONE (or BROKEN) settles
  ``response()``; the events thread then calls ``callback`` once.
- The **child** owns the SSH connection (paramiko); see :mod:`sshpipe._child`. It
  never unpickles a payload.
- The **agent** runs the handler; see :mod:`sshpipe.agent` and, for how it gets
  to the remote, :mod:`sshpipe.bootstrap`.

Ownership: the request pipe is written only by the caller (under ``_send_lock``)
and read only by the child's writer thread; closing it is how the caller ends
the agent's input. The event pipe is written only by the child (under its
``events_lock``) and read only under the caller's ``_reader_lock``. Both are
plain OS pipes carrying sshpipe frames; they are made as multiprocessing
connections only so spawn and forkserver can hand them to the child. Each end
not used by a process is closed in that process, and a forked child closes the
ends of every other pipe it inherited.
"""
from __future__ import annotations

import enum
import logging
import multiprocessing
import os
import pickle
import shlex
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Union

from sshpipe import bootstrap, protocol, serial
from sshpipe._child import check_code_compatible
from sshpipe.errors import AgentStartError, PipeBroken, PipeClosed, RemoteError, SSHPipeError
from sshpipe.handler import SSHPipeHandler
from sshpipe.protocol import FrameKind
from sshpipe.transport import ConnectSettings, settings_for

__all__ = ["PipeState", "Response", "SSHPipe"]

logger = logging.getLogger(__name__)

# How long start() waits for the agent's hello after the SSH session opened.
READY_TIMEOUT = 60.0
# Messages sent but not yet acknowledged before send() blocks. Large enough to keep
# the channel busy with small messages; the agent acks at least every 256.
QUEUE_BOUND = 1024
# How long close() gives the child to end after the channel closed.
_CHILD_EXIT_TIMEOUT = 10.0
# A thread in recv() reads events for at most this long before it re-checks the
# pipe's state (and lets the events thread read).
_PUMP_SLICE = 0.5
# Bytes read from the event pipe at a time: a burst of small frames in one read,
# a large reply in a few (a buffer this size is kept per pipe).
_EVENT_READ = 256 * 1024


class PipeState(enum.Enum):
    """Life cycle of an SSHPipe, as seen from the caller."""

    NEW = "new"            # constructed, start() not called
    STARTING = "starting"  # child started, waiting for the agent's hello
    RUNNING = "running"    # hello received; send()/recv() work
    CLOSING = "closing"    # close() sent the term message, waiting for the end
    CLOSED = "closed"      # the agent ended; response() is final
    BROKEN = "broken"      # connection, child or agent failed; response() raises


class Response(tuple):
    """``(exitcode, stdout, stderr)``, as the seed returned, plus the accounting.

    Attributes:
        exitcode: the agent's exit status (see :mod:`sshpipe.handler`).
        stdout: what the handler printed, decoded with the pipe's encoding.
        stderr: what the remote wrote to stderr.
        unhandled: sequence numbers of messages sent but never handled.
        errors: :class:`~sshpipe.errors.RemoteError` for each message whose
            handling raised (tolerated or not), in order.
        reason: why the agent ended, in words.
    """

    def __new__(cls, exitcode: Optional[int], stdout: str, stderr: str, *,
                unhandled: Sequence[int] = (), errors: Sequence[RemoteError] = (),
                reason: str = "") -> "Response":
        self = super().__new__(cls, (exitcode, stdout, stderr))
        self.unhandled = tuple(unhandled)
        self.errors = tuple(errors)
        self.reason = reason
        return self

    exitcode = property(lambda self: self[0])
    stdout = property(lambda self: self[1])
    stderr = property(lambda self: self[2])

    def __reduce__(self):
        return (_make_response, (tuple(self), self.unhandled, self.errors, self.reason))

    def __repr__(self) -> str:
        extra = f", unhandled={list(self.unhandled)}" if self.unhandled else ""
        if self.errors:
            extra += f", errors={len(self.errors)}"
        return f"Response(exitcode={self[0]!r}, stdout={self[1]!r}, stderr={self[2]!r}{extra})"


def _make_response(values, unhandled, errors, reason) -> Response:
    return Response(*values, unhandled=unhandled, errors=errors, reason=reason)


# Every SSHPipe made in this process, so that a forked child can close the pipe
# ends of the others (weak: a pipe that is gone is dropped by itself).
_PIPES_IN_THIS_PROCESS: "weakref.WeakSet[SSHPipe]" = weakref.WeakSet()


class SSHPipe(multiprocessing.Process):
    """A remote agent over SSH, driven like a ``multiprocessing.Process``.

    The agent is given either as a ``command`` or as a ``handler``:

    - ``handler``: an :class:`~sshpipe.SSHPipeHandler` subclass (built remotely
      with ``handler_args``/``handler_kwargs``) or instance, sent by value. The
      remote needs only Python 3.9+: sshpipe's agent code and dill travel over the
      channel once and are cached on the remote (see :mod:`sshpipe.bootstrap`).
    - ``command`` naming a ``.py`` script: runs under the remote ``python``
      with the same zero-install runtime on its path, so the script's
      ``from sshpipe import SSHPipeHandler`` works on a bare host.
    - any other ``command``: runs as it is (it must speak sshpipe's protocol,
      for example a script using an installed sshpipe).

    Args:
        host: an address, a host name or an alias in the ssh config.
        command: the remote command that runs the agent: a string, split into
            words as a shell would (quote a path with spaces), or a list of words.
            Each word reaches the remote quoted, so nothing in it is interpreted
            by the remote shell.
        handler, handler_args, handler_kwargs: the agent, sent by value, instead
            of a command.
        modules: names of local modules or packages the handler imports that the
            remote lacks; their source is shipped with the runtime.
        name: the pipe's name (logs, ``repr``); defaults to Process's.
        user: login user, overriding the config.
        term_message: the message ``close()`` sends to end the agent; the agent
            also accepts it as a term message.
        config: the OpenSSH client config file (default ``~/.ssh/config``).
        encoding: decodes the remote's stdout and stderr in ``response()``.
        callback: ``callback(exitcode, stdout, stderr)``, called exactly once in
            the caller's process, from the pipe's events thread, after the agent
            ended or the pipe broke.
        logger: where the agent's log records go; default
            ``logging.getLogger("sshpipe.remote.<host>")``.
        port, identity_file, connect_timeout: override the config's Port,
            IdentityFile (tried first) and ConnectTimeout.
        python: the remote interpreter for handlers and ``.py`` commands: a name
            on the remote PATH or a path, a virtualenv's included (default
            ``python3``).
        cwd, env: working directory and extra environment of the remote command.
        ready_timeout: seconds ``start()`` waits for the agent's hello.
        queue_bound: messages in flight before ``send()`` blocks.
        heartbeat: seconds between heartbeats (default: ServerAliveInterval, else
            10); the peer is declared dead after ServerAliveCountMax silent beats.
        max_frame: largest message accepted from either side, in bytes.
    """

    def __init__(self, host: str, command: Union[str, Sequence[str], None] = None,
                 name: Optional[str] = None,
                 user: Optional[str] = None, term_message: str = "TERM",
                 config: Optional[str] = None, encoding: str = "utf8",
                 callback: Optional[Callable[[Optional[int], str, str], Any]] = None,
                 logger: Optional[logging.Logger] = None, *,
                 handler: Any = None, handler_args: Sequence[Any] = (),
                 handler_kwargs: Optional[Dict[str, Any]] = None,
                 modules: Sequence[str] = (), python: str = "python3",
                 cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                 port: Optional[int] = None, identity_file: Optional[str] = None,
                 connect_timeout: Optional[float] = None, ready_timeout: float = READY_TIMEOUT,
                 queue_bound: int = QUEUE_BOUND, heartbeat: Optional[float] = None,
                 max_frame: int = protocol.DEFAULT_MAX_FRAME):
        super().__init__(name=name, daemon=True)
        if (command is None) == (handler is None):
            raise ValueError("give SSHPipe either a remote command or a handler, not both")
        if queue_bound < 1:
            raise ValueError(f"queue_bound must be at least 1, not {queue_bound}")
        self.host = host
        self.command = command
        self.handler = handler
        self.user = user
        self.term_message = term_message
        self.config = config
        self.encoding = encoding
        self.callback = callback
        self.logger = logger or logging.getLogger(f"sshpipe.remote.{host}")
        self.ready_timeout = ready_timeout
        self.queue_bound = queue_bound
        self._connect_options = {"port": port, "identity_file": identity_file,
                                 "connect_timeout": connect_timeout}
        self._python = python
        # Term messages as send_bytes() would get them, to notice one sent that way.
        self._term_payloads = frozenset(serial.dumps(message) for message in
                                        (term_message, *SSHPipeHandler.TERM_MESSAGES))
        self._handler_call = (handler, tuple(handler_args), dict(handler_kwargs or {}))
        self._modules = tuple(modules)
        if command is None:
            argv: List[str] = []
        elif isinstance(command, str):
            argv = shlex.split(command)
        else:
            argv = [str(word) for word in command]
        if command is not None and not argv:
            raise ValueError("the remote command is empty")
        # Handlers and .py scripts run through the zero-install loader; any other
        # command runs as it is.
        self._zero_install = handler is not None or argv[0].endswith(".py")
        self._script_argv = argv if self._zero_install else []
        words = [python, "-c", bootstrap.LOADER_SOURCE] if self._zero_install else argv
        self._remote_line = bootstrap.remote_command(words, cwd=cwd, env=env)
        self._launch: Optional[Tuple[str, bytes, List[str]]] = None
        self._settings: Optional[ConnectSettings] = None
        self._bundle: Optional[bootstrap.Bundle] = None
        self._heartbeat = heartbeat
        self._max_frame = max_frame
        self._log_level = logging.NOTSET
        # OS pipes: requests caller -> child, events child -> caller. They are made
        # as multiprocessing connections only so that spawn/forkserver can hand them
        # to the child; both ends read and write the fds directly with sshpipe's
        # own framing, so a burst of frames crosses in one read.
        self._request_reader, self._request_writer = multiprocessing.Pipe(duplex=False)
        self._event_reader, self._event_writer = multiprocessing.Pipe(duplex=False)
        for connection in (self._request_writer, self._event_writer):
            protocol.widen_pipe(connection.fileno())
        self._init_caller_state()
        _PIPES_IN_THIS_PROCESS.add(self)

    # Attributes that exist only in the caller's process and never travel to the
    # child under spawn/forkserver (locks, threads, user callbacks).
    _CALLER_ONLY = (
        "_cond", "_send_lock", "_events_thread", "_replies", "callback", "logger", "handler",
        "_handler_call", "_reader_lock", "_event_frames", "_events_done", "_event_buffer",
        "_event_view", "_state", "_hello", "_sent_seq", "_acked_seq", "_errors", "_stdout",
        "_stderr", "_done", "_broken_error", "_term_sent", "_callback_called", "_close_seq",
        "_request_writer", "_event_reader")

    def _init_caller_state(self) -> None:
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._events_thread: Optional[threading.Thread] = None
        self._replies: Deque[bytes] = deque()
        self._state = PipeState.NEW
        self._hello: Dict[str, Any] = {}
        self._sent_seq = 0
        self._acked_seq = 0
        self._errors: List[RemoteError] = []
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._done: Optional[Dict[str, Any]] = None
        self._broken_error: Optional[BaseException] = None
        self._term_sent = False
        self._close_seq = 0  # the term message close() sent on its own, if any
        self._callback_called = False
        # Whoever holds this lock reads the event connection: the events thread, or
        # a thread in recv() that reads for itself (one thread hop less per reply).
        self._reader_lock = threading.Lock()
        self._event_frames = protocol.FrameReader(self._max_frame + 64)
        self._event_buffer = bytearray(_EVENT_READ)
        self._event_view = memoryview(self._event_buffer)
        self._events_done = False

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        for name in self._CALLER_ONLY:
            state.pop(name, None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- introspection ----------------------------------------------------
    @property
    def state(self) -> PipeState:
        return self._state

    @property
    def remote_info(self) -> Dict[str, Any]:
        """The agent's hello: protocol, pid, host, handler, handler_id, python,
        dill; for zero-install agents also bundle_sent (False on a warm start),
        cache and bundle_hash."""
        return dict(self._hello)

    @property
    def pending(self) -> int:
        """Messages sent but not yet acknowledged as handled."""
        with self._cond:
            return self._sent_seq - self._acked_seq

    def __repr__(self) -> str:
        return f"<SSHPipe {self.name} host={self.host} {self._state.value}>"

    # -- life cycle -------------------------------------------------------
    def start(self) -> None:
        """Start the child, connect, and return once the agent said hello.

        Allowed in state NEW only.

        Raises:
            SSHConfigError: the ssh config file is missing (when named) or wrong.
            ConnectError: (and subclasses HostKeyError, AuthenticationError,
                ConnectTimeout) when no SSH session could be had.
            AgentStartError: the remote command ended before the agent's hello;
                carries its exit status and stderr.
            HandshakeError: something answered, but not an sshpipe agent.
            VersionSkewError: the remote Python is older than 3.9, or cannot load
                the handler's code (sent by value from another minor version).
        """
        with self._cond:
            if self._state is not PipeState.NEW:
                raise PipeClosed(f"{self!r}: start() works once, on a new pipe")
            self._state = PipeState.STARTING
        try:
            # Resolved here: a config error raises in the caller, and under fork the
            # child starts with paramiko already imported.
            self._settings = settings_for(self.host, self.config, user=self.user,
                                          **self._connect_options)
            self._prepare_launch()
        except BaseException:
            with self._cond:
                self._state = PipeState.NEW
            raise
        # The child needs the level, not the logger (which stays in this process).
        self._log_level = self.logger.getEffectiveLevel()
        super().start()
        # The child owns these ends now; holding them here would hide its death.
        self._request_reader.close()
        self._event_writer.close()
        self._events_thread = threading.Thread(target=self._events_loop,
                                               name=f"sshpipe-events-{self.name}", daemon=True)
        self._events_thread.start()
        deadline = time.monotonic() + self.ready_timeout + (
            self._connect_options["connect_timeout"] or 30.0)
        with self._cond:
            while self._state is PipeState.STARTING:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            state, error = self._state, self._broken_error
        if state is PipeState.RUNNING:
            return
        if state is PipeState.STARTING:
            self._abort()
            raise AgentStartError(f"{self.host}: no hello from the agent within "
                                  f"{self.ready_timeout:g} s", self.host)
        self.join(_CHILD_EXIT_TIMEOUT)
        if isinstance(error, SSHPipeError):
            raise error
        raise AgentStartError(f"{self.host}: the agent ended before saying hello", self.host,
                              self._done.get("exitcode") if self._done else None,
                              self._decode(self._stderr))

    def _prepare_launch(self) -> None:
        """Serialize the handler (here, so a bad one raises in the caller) and build
        the bundle the loader gets."""
        if not self._zero_install:
            return
        self._bundle = bootstrap.build_bundle(self._modules)
        if self.handler is not None:
            self._launch = ("handler", serial.dumps(self._handler_call), [])
        else:
            self._launch = ("script", b"", self._script_argv)

    def _close_inherited_ends(self) -> None:
        """In another pipe's forked child: drop this pipe's four pipe ends."""
        for end in ("_request_reader", "_request_writer", "_event_reader", "_event_writer"):
            connection = self.__dict__.get(end)
            if connection is not None:
                try:
                    connection.close()
                except OSError:
                    pass

    def _abort(self) -> None:
        """End the child at once (it closes the channel as it dies)."""
        if self.is_alive():
            self.terminate()
        self.join(_CHILD_EXIT_TIMEOUT)

    def send(self, obj: Any, timeout: Optional[float] = None) -> int:
        """Send ``obj`` to the handler; return its sequence number.

        The object is serialized here, in the caller (:mod:`sshpipe.serial`: C
        pickle, dill where needed), so an object that cannot be serialized raises
        right away. Blocks while ``queue_bound`` messages are
        unacknowledged. Allowed in state RUNNING.

        Raises:
            PipeClosed: the pipe was closed (or the agent ended) before this call.
            PipeBroken: the pipe failed.
            TimeoutError: no room in the window within ``timeout`` seconds.
            VersionSkewError: the object carries code (a function or class sent
                by value) that the remote's Python version cannot load.
            ValueError: the serialized object is larger than ``max_frame``.
        """
        parts, has_code = serial.dump_parts(obj)
        if isinstance(obj, str) and (obj == self.term_message
                                     or obj in SSHPipeHandler.TERM_MESSAGES):
            self._term_sent = True
        return self._send_payload(parts, has_code, timeout)

    def send_bytes(self, payload: bytes, timeout: Optional[float] = None) -> int:
        """Send an already serialized object (``dill.dumps``/``pickle.dumps``
        output): the handler receives the object. Serialize once, send to many."""
        payload = bytes(payload)
        if len(payload) < 64 and payload in self._term_payloads:
            self._term_sent = True
        return self._send_payload((payload,), True, timeout)

    def _send_payload(self, parts: Tuple[Any, ...], may_carry_code: bool,
                      timeout: Optional[float]) -> int:
        """Send one serialized object, given as pieces (see serial.dump_parts)."""
        size = sum(len(part) for part in parts)
        if size + 8 > self._max_frame:
            raise ValueError(f"{self.host}: a message of {size} bytes exceeds this "
                             f"pipe's max_frame of {self._max_frame} bytes")
        remote_python = self._hello.get("python")
        if may_carry_code and remote_python:
            # Scans the payload only when the two Python minor versions differ.
            check_code_compatible(self.host, b"".join(parts), remote_python)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._send_lock:
            with self._cond:
                while True:
                    self._raise_unless_running()
                    if self._sent_seq - self._acked_seq < self.queue_bound:
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(f"{self.host}: {self.pending} messages unhandled; "
                                           f"no room to send within {timeout:g} s")
                    self._cond.wait(remaining)
                self._sent_seq += 1
                seq = self._sent_seq
            try:
                protocol.write_all(self._request_writer.fileno(), protocol.data_head(seq, size),
                                   *parts)
            except OSError as exc:
                raise PipeBroken(f"{self.host}: the pipe's child process is gone "
                                 f"(message {seq} not sent)") from exc
        return seq

    def _raise_unless_running(self) -> None:
        state = self._state
        if state is PipeState.RUNNING:
            return
        if state is PipeState.BROKEN:
            raise self._broken()
        if state in (PipeState.NEW, PipeState.STARTING):
            raise PipeClosed(f"{self.host}: the pipe is not started")
        raise PipeClosed(f"{self.host}: the pipe is {state.value}")

    def recv(self, timeout: Optional[float] = None) -> Any:
        """Return the next object the handler sent with ``reply()``.

        While it waits, the calling thread reads the child's events itself (when
        no other thread is reading them), so a reply reaches it without a hand-off
        from the events thread.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            EOFError: the agent ended and every reply has been received.
            PipeBroken: the pipe failed and every reply has been received.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if self._replies:
                    payload = self._replies.popleft()
                    break
                if self._state is PipeState.BROKEN:
                    raise self._broken()
                if self._state is PipeState.CLOSED or self._state is PipeState.NEW:
                    raise EOFError(f"{self.host}: the agent has ended; no more replies")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{self.host}: no reply within {timeout:g} s")
                if self._events_done:
                    # The events thread is settling the end; it will notify.
                    self._cond.wait(remaining)
                    continue
            wait = _PUMP_SLICE if remaining is None else min(remaining, _PUMP_SLICE)
            if self._reader_lock.acquire(timeout=wait):
                try:
                    if not self._replies:
                        self._pump(wait)
                finally:
                    self._reader_lock.release()
        return serial.loads(payload)

    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        """True when ``recv()`` would return at once."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._replies and self._state in (PipeState.RUNNING, PipeState.CLOSING):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            return bool(self._replies)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until every message sent so far has been handled.

        Raises:
            TimeoutError: not all handled within ``timeout``.
            PipeBroken: the pipe failed first.
            PipeClosed: the agent ended with messages unhandled.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._sent_seq
            while self._acked_seq < target:
                if self._state is PipeState.BROKEN:
                    raise self._broken()
                if self._state is PipeState.CLOSED:
                    raise PipeClosed(f"{self.host}: the agent ended with "
                                     f"{target - self._acked_seq} messages unhandled")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{self.host}: {target - self._acked_seq} messages "
                                       f"still unhandled after {timeout:g} s")
                self._cond.wait(remaining)

    def response(self, timeout: Optional[float] = None) -> Response:
        """Wait for the agent to end and return ``(exitcode, stdout, stderr)``
        (a :class:`Response`, which also lists unhandled messages and errors).

        Raises:
            TimeoutError: the agent did not end within ``timeout``.
            PipeBroken: the pipe failed, so the agent's end is not known;
                ``.unhandled`` lists the messages never handled.
            PipeClosed: the pipe was never started.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._state is PipeState.NEW:
                raise PipeClosed(f"{self.host}: the pipe was never started")
            while self._state not in (PipeState.CLOSED, PipeState.BROKEN):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{self.host}: the agent did not end within {timeout:g} s")
                self._cond.wait(remaining)
            if self._state is PipeState.BROKEN:
                raise self._broken()
            return self._response_locked()

    def _unhandled_locked(self) -> List[int]:
        return [seq for seq in range(self._acked_seq + 1, self._sent_seq + 1)
                if seq != self._close_seq]

    def _broken(self) -> PipeBroken:
        """The error for a call on a broken pipe: why, and what was never handled."""
        unhandled = self._unhandled_locked()
        error = PipeBroken(f"{self.host}: the pipe is broken ({self._broken_error}); "
                           f"unhandled messages: {unhandled or 'none'}", unhandled)
        error.__cause__ = self._broken_error
        return error

    def _response_locked(self) -> Response:
        done = self._done or {}
        return Response(done.get("exitcode"), self._decode(self._stdout),
                        self._decode(self._stderr), unhandled=self._unhandled_locked(),
                        errors=self._errors, reason=done.get("reason", ""))

    def close(self, msg: Any = None, timeout: Optional[float] = None) -> Response:
        """Send the term message (``msg`` or the pipe's own) unless one was sent,
        wait for the agent to end, and return :meth:`response`.

        If the agent has not ended within ``timeout`` the channel is closed (the
        agent then exits, its children with it) and the child process ended.
        Allowed in any state; on a NEW pipe it only marks it closed.

        Raises:
            PipeBroken: the pipe failed, so how the agent ended is not known;
                ``.unhandled`` lists the messages never handled.
        """
        with self._cond:
            state = self._state
            if state is PipeState.NEW:
                self._state = PipeState.CLOSED
                self._done = {"exitcode": None, "reason": "never started"}
                return self._response_locked()
        if state is PipeState.RUNNING and (msg is not None or not self._term_sent):
            try:
                # Not the caller's message: it is left out of Response.unhandled.
                self._close_seq = self.send(msg if msg is not None else self.term_message,
                                            timeout=timeout)
            except (PipeClosed, PipeBroken, TimeoutError):
                pass
        with self._cond:
            if self._state is PipeState.RUNNING:
                self._state = PipeState.CLOSING
        try:
            return self.response(timeout=timeout)
        except TimeoutError:
            self._request_close()
            try:
                return self.response(timeout=_CHILD_EXIT_TIMEOUT)
            except TimeoutError:
                self._abort()
                return self.response(timeout=_CHILD_EXIT_TIMEOUT)
        finally:
            self.join(_CHILD_EXIT_TIMEOUT)
            if self.is_alive():
                self._abort()

    def _request_close(self) -> None:
        """End the agent's input: closing the request pipe makes the child shut the
        channel's write side, so the agent reads end of input and exits."""
        with self._send_lock:
            self._request_writer.close()

    def terminate(self) -> None:
        """End the child process (SIGTERM); its SSH connection closes, so the agent
        sees end of input and exits, taking its children with it."""
        super().terminate()

    def kill(self) -> None:
        """Like :meth:`terminate`, with SIGKILL."""
        super().kill()

    def __enter__(self) -> "SSHPipe":
        if self._state is PipeState.NEW:
            self.start()
        return self

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        try:
            self.close()
        except PipeBroken:
            if exc_type is None:
                raise  # otherwise the exception already propagating says more

    # -- caller: events thread --------------------------------------------
    def _decode(self, data: bytes) -> str:
        return bytes(data).decode(self.encoding, errors="replace")

    def _pump(self, timeout: float) -> None:
        """Read and dispatch one event if one comes within ``timeout``.

        The caller holds ``_reader_lock``: the events thread, or a thread in
        ``recv()`` reading on its own behalf.
        """
        if self._events_done:
            return
        connection = self._event_reader
        try:
            if not connection.poll(timeout):
                return
            count = os.readv(connection.fileno(), [self._event_buffer])
        except (EOFError, OSError):
            count = 0
        if not count:
            self._events_done = True
            return
        for frame in self._event_frames.feed(self._event_view[:count]):
            if self._on_event(frame):
                self._events_done = True
                return

    def _events_loop(self) -> None:
        """Read the child's events until it is gone; settle the pipe's end."""
        connection = self._event_reader
        try:
            while not self._events_done:
                try:
                    # Wait without the lock, so a thread in recv() can read first.
                    connection.poll(None)
                except (EOFError, OSError):
                    break
                with self._reader_lock:
                    self._pump(0)
        finally:
            with self._reader_lock:
                self._events_done = True
                connection.close()
                self._request_writer.close()
            self._settle_if_open()
            self._run_callback()

    def _settle_if_open(self) -> None:
        """The child died without saying DONE: the pipe is broken."""
        with self._cond:
            if self._state in (PipeState.CLOSED, PipeState.BROKEN):
                return
        self.join(_CHILD_EXIT_TIMEOUT)
        error = PipeBroken(f"{self.host}: the pipe's child process ended unexpectedly "
                           f"(exit code {self.exitcode})")
        self._finish(PipeState.BROKEN, {"exitcode": None, "reason": str(error)}, error)

    def _on_event(self, frame: protocol.Frame) -> bool:
        """Dispatch one event; True once the pipe's end is settled."""
        kind = frame.kind
        if kind == FrameKind.REPLY:
            with self._cond:
                self._replies.append(frame.payload)
                self._cond.notify_all()
        elif kind == FrameKind.ACK:
            seq, _ = protocol.split_seq(frame.payload)
            with self._cond:
                self._acked_seq = max(self._acked_seq, seq)
                self._cond.notify_all()
        elif kind == FrameKind.LOG:
            self._emit_log(protocol.decode_json(frame))
        elif kind == FrameKind.STDOUT:
            self._stdout += frame.payload
            self._emit_stdout(frame.payload)
        elif kind == FrameKind.STDERR:
            self._stderr += frame.payload
        elif kind == FrameKind.ERROR:
            self._record_error(protocol.decode_json(frame))
        elif kind == FrameKind.CONNECTED:
            self._hello.update(protocol.decode_json(frame))
        elif kind == FrameKind.HELLO:
            with self._cond:
                self._hello.update(protocol.decode_json(frame))
                if self._state is PipeState.STARTING:
                    self._state = PipeState.RUNNING
                self._cond.notify_all()
        elif kind == FrameKind.EXIT:
            pass  # the child reports the final status in DONE
        elif kind == FrameKind.DONE:
            self._finish(PipeState.CLOSED, protocol.decode_json(frame), None)
            return True
        elif kind == FrameKind.BROKEN:
            error = pickle.loads(frame.payload)
            self._finish(PipeState.BROKEN, {"exitcode": None, "reason": str(error)}, error)
            return True
        return False

    def _finish(self, state: PipeState, done: Dict[str, Any],
                error: Optional[BaseException]) -> None:
        with self._cond:
            if self._state in (PipeState.CLOSED, PipeState.BROKEN):
                return
            self._state = state
            self._done = done
            self._broken_error = error
            self._cond.notify_all()
        if error is not None:
            logger.debug("%r broke: %s", self, error)

    def _run_callback(self) -> None:
        """Call the user's callback once, from the events thread, after the end."""
        if self._callback_called or self.callback is None:
            return
        self._callback_called = True
        done = self._done or {}
        try:
            self.callback(done.get("exitcode"), self._decode(self._stdout),
                          self._decode(self._stderr))
        except Exception:
            logger.exception("%r: the pipe's callback raised", self)

    def _emit_log(self, fields: Dict[str, Any]) -> None:
        levelno = int(fields.get("levelno", logging.INFO))
        if not self.logger.isEnabledFor(levelno):
            return
        record = logging.makeLogRecord(fields)
        record.remote_name = fields.get("name")
        record.name = self.logger.name
        record.host = self.host
        record.pipe = self.name
        self.logger.handle(record)

    def _emit_stdout(self, data: bytes) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        for line in self._decode(data).splitlines():
            record = self.logger.makeRecord(self.logger.name, logging.INFO, "(remote)", 0,
                                            "stdout: %s", (line,), None,
                                            extra={"host": self.host, "pipe": self.name})
            self.logger.handle(record)

    def _record_error(self, info: Dict[str, Any]) -> None:
        seq = info.get("seq")
        error = RemoteError(f"{self.host}: message {seq}: {info.get('where')} raised "
                            f"{info.get('type')}: {info.get('message')}", self.host,
                            remote_traceback=info.get("traceback", ""))
        error.seq = seq
        with self._cond:
            self._errors.append(error)
        self.logger.error("%s", error, extra={"host": self.host, "pipe": self.name})

    # -- child process ----------------------------------------------------
    def run(self) -> None:
        """The child: own the SSH connection and pump frames both ways."""
        # Under fork the caller's ends are copies here; close them so the child sees
        # EOF when the caller goes away. Close every other pipe's ends as well: a
        # copy held here would keep that pipe's caller from seeing its own child die.
        for end in ("_request_writer", "_event_reader"):
            connection = self.__dict__.get(end)
            if connection is not None:
                connection.close()
        for other in list(_PIPES_IN_THIS_PROCESS):
            if other is not self:
                other._close_inherited_ends()
        from sshpipe._child import ChildSession

        code = ChildSession(self).run()
        if code < 0:
            # The agent was killed by signal -code: so is this process, so that
            # SSHPipe.exitcode reads as Process.exitcode does (-N).
            os.kill(os.getpid(), -code)
        raise SystemExit(code)
