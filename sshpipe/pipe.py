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
  dill where needed) and puts a DATA frame carrying a sequence number on the
  request pipe through its :class:`~sshpipe._outbox.Outbox`, which never blocks
  a caller thread in a write (what the pipe cannot take at once goes to a
  writer thread), so every timeout holds. A credit window (``queue_bound``
  messages not yet acknowledged) makes a fast producer wait instead of growing
  memory; in the other direction ``recv()`` reports the replies it took in
  CREDIT frames, and the agent's ``reply()`` waits while ``reply_window``
  replies are untaken. ``close()`` ends the input with an END frame. The first
  frame of the request pipe is SPEC: what the child needs, fixed at
  ``start()`` (:class:`~sshpipe._child.ChildSpec`). Events from the child are
  read by whichever caller thread holds the dispatch's ``reader_lock``: a
  thread waiting in ``recv()`` reads for itself (no hand-off), otherwise the
  *events thread* does (:mod:`sshpipe._dispatch`). Replies go to ``recv()``,
  acknowledgements open the window, log records are re-emitted into the
  caller's logger, and the final DONE (or BROKEN) settles ``response()``; the
  events thread then calls ``callback`` once.
- The **child** owns the SSH connection (paramiko); see :mod:`sshpipe._child`. It
  never unpickles a payload.
- The **agent** runs the handler; see :mod:`sshpipe.agent` and, for how it gets
  to the remote, :mod:`sshpipe.bootstrap`.

Ownership: the request pipe is written only by the caller's outbox (frames in
order, whole) and read only by the child; END then closing it is how the caller
ends the agent's input (end of input without END means the caller is gone).
The event pipe is written only by the child (under its ``events_lock``) and
read only under the dispatch's ``reader_lock``. Both are plain OS pipes
carrying sshpipe frames; they are made as multiprocessing connections only so
spawn and forkserver can hand them to the child. Each end not used by a
process is closed in that process, and a forked child closes the ends of
every other pipe it inherited.

This module is the public API and what the caller's threads do; the other
caller-side parts each have one module:

- :mod:`sshpipe._ledger`: the pipe's state and accounting under one condition
  (``PipeState``), and the one place that decides how a pipe ends;
- :mod:`sshpipe._dispatch`: reading the events and applying them;
- :mod:`sshpipe._response`: ``Response`` and the bounded transcript it is built from;
- :mod:`sshpipe._launch`: from the arguments to the child's spec and the event source;
- :mod:`sshpipe._process`: the Process half, safe for several threads.
"""
from __future__ import annotations

import atexit
import functools
import logging
import os
import pickle
import time
import weakref
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, TypeVar, Union, cast

from sshpipe import protocol, trust
from sshpipe._dispatch import Dispatch
from sshpipe._ends import PipeEnds
from sshpipe._launch import Launch, event_source
from sshpipe._ledger import Ledger, PipeState
from sshpipe._messages import Messages
from sshpipe._process import KILL_GRACE, ChildProcess
from sshpipe._response import OUTPUT_LIMIT, Response, Transcript
from sshpipe._transports import TRANSPORTS
from sshpipe.errors import AgentStartError, PipeBroken, PipeClosed, SSHPipeError
from sshpipe.handler import RUN_TARGET
from sshpipe.protocol import FrameKind

__all__ = ["PipeState", "Response", "SSHPipe"]

logger = logging.getLogger(__name__)

# How long start() waits for the agent's hello after the SSH session opened.
READY_TIMEOUT = 60.0
# Messages sent but not yet acknowledged before send() blocks. Large enough to keep
# the channel busy with small messages; the agent acks at least every 256.
QUEUE_BOUND = 1024
# Replies the agent may send that recv() has not taken yet, by count and bytes:
# past this the agent's reply() blocks, so a caller that does not read stops the
# handler instead of growing its own memory (the caller reports what it took in
# CREDIT frames, every quarter window).
REPLY_WINDOW = 1024
REPLY_WINDOW_BYTES = 64 << 20
# The transport of a pipe made without transport= (see sshpipe._transports):
# OpenSSH where an ssh client with multiplexing is on PATH, else paramiko (the
# whole fault matrix holds under both).
DEFAULT_TRANSPORT = "auto"


_F = TypeVar("_F", bound=Callable[..., Any])


def _names_host(method: _F) -> _F:
    """Every sshpipe error leaving a public pipe method carries ``.host``: set here,
    at the one boundary, for errors raised deeper (the protocol, the stream, the
    child) where the host is only in the message."""

    @functools.wraps(method)
    def wrapper(self: "SSHPipe", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except SSHPipeError as exc:
            if exc.host is None:
                exc.host = self.host
            raise

    return cast(_F, wrapper)  # the same signature: it only sets .host on the way out


def _label_of(pipe: "SSHPipe") -> Callable[[], str]:
    """The pipe's repr for its parts' log records, without a reference to the pipe:
    a pipe nobody holds is freed at once (and its pipe ends closed with it), not
    when the cycle collector runs."""
    ref = weakref.ref(pipe)

    def label() -> str:
        alive = ref()
        return repr(alive) if alive is not None else "<SSHPipe (gone)>"

    return label


# Every SSHPipe made in this process, for the exit hook below (weak: a pipe that
# is gone is dropped by itself).
_PIPES_IN_THIS_PROCESS: "weakref.WeakSet[SSHPipe]" = weakref.WeakSet()


def _end_input_of_live_pipes() -> None:
    """At interpreter exit: give every running non-daemon pipe its END.

    multiprocessing's own exit hook (registered before this one, so it runs
    after it) terminates daemonic children and joins the others. A non-daemon
    pipe whose agent waits for input would keep that join waiting for good; with
    END its agent handles what it was sent, exits, and the join returns. Daemon
    pipes are left to multiprocessing, as daemonic processes are.
    """
    for pipe in list(_PIPES_IN_THIS_PROCESS):
        if pipe._popen is not None and not pipe.daemon and \
                pipe._parent_pid == os.getpid() and pipe.state is PipeState.RUNNING:
            pipe._messages.end_input()


atexit.register(_end_input_of_live_pipes)


class SSHPipe(ChildProcess):
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
        target, args, kwargs: as ``multiprocessing.Process``: run
            ``target(*args, **kwargs)`` on the remote once started (sent by value
            where it must be); the pipe's ``exitcode`` is what a Process's would
            be (0, the ``sys.exit`` status, 1 with the traceback in ``stderr``).
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
        transport: ``"openssh"`` (sessions on this host's ssh client, one shared
            master connection per host, no Python relay), ``"paramiko"`` (a
            connection per pipe, relayed by the pipe's child; needs no ssh
            binary), or ``"auto"`` (the default: openssh when an ``ssh`` with
            connection multiplexing is on PATH, else paramiko; paramiko also
            when ``identity_file`` is given).
        mp_context: the ``multiprocessing`` context whose start method starts
            the pipe's child (default: the global one), as ProcessPoolExecutor's.
        warm: start the agent from the host's zygote (a warm process that
            forks fresh agents, started by the first cold start; see
            :mod:`sshpipe._zygote`), falling back to a cold start; a number is
            the zygote's idle bound in seconds (default ``WARM_IDLE``).
            ``remote_info["start"]`` says "warm" or "cold".
        trust_remote: what replies may make this process build (see
            :mod:`sshpipe.trust`): False (default) plain data, stdlib values,
            exceptions and enums; a list adds classes, functions and modules;
            True trusts the remote to run code here (plain ``pickle.loads``).
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
                 max_frame: int = protocol.DEFAULT_MAX_FRAME, daemon: Optional[bool] = None,
                 reply_window: int = REPLY_WINDOW, reply_window_bytes: int = REPLY_WINDOW_BYTES,
                 output_limit: int = OUTPUT_LIMIT, target: Optional[Callable[..., Any]] = None,
                 args: Sequence[Any] = (), kwargs: Optional[Dict[str, Any]] = None,
                 transport: Optional[str] = None,
                 mp_context: Optional[Any] = None,
                 trust_remote: trust.TrustRemote = False,
                 warm: Union[bool, float, None] = None):
        super().__init__(name=name, daemon=daemon, mp_context=mp_context)
        # What the agent is and how it is reached, until start().
        self._launch = Launch(command=command, handler=handler, handler_args=handler_args,
                              handler_kwargs=handler_kwargs, target=target, args=args,
                              kwargs=kwargs, modules=modules, python=python, cwd=cwd, env=env,
                              port=port, identity_file=identity_file,
                              connect_timeout=connect_timeout, heartbeat=heartbeat,
                              warm=warm)
        if queue_bound < 1:
            raise ValueError(f"queue_bound must be at least 1, not {queue_bound}")
        if reply_window < 1 or reply_window_bytes < 1 or output_limit < 0:
            raise ValueError("reply_window and reply_window_bytes must be at least 1, "
                             "output_limit at least 0")
        if transport is None:
            transport = DEFAULT_TRANSPORT
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, "
                             f"not {transport!r}")
        self.transport = transport  # resolved ("openssh" or "paramiko") by start()
        self.reply_window = reply_window
        self.reply_window_bytes = reply_window_bytes
        self.output_limit = output_limit
        self.host = host
        self.command = command
        self.handler = self._launch.handler
        self.user = user
        self.term_message = term_message
        self.config = config
        self.encoding = encoding
        self.callback = callback
        self.logger = logger or logging.getLogger(f"sshpipe.remote.{host}")
        self.ready_timeout = ready_timeout
        self.queue_bound = queue_bound
        # The OS pipes to and from the child (see sshpipe._ends).
        self._ends = PipeEnds()
        self._ledger = Ledger(host, Transcript(host, encoding, output_limit), _label_of(self))
        self._messages = Messages(self._ledger, max_frame, trust.policy_for(trust_remote))
        # What reads the events, from start().
        self._dispatch: Optional[Dispatch] = None
        _PIPES_IN_THIS_PROCESS.add(self)

    # The child's ends of its pipes: all of the caller object that reaches it.
    _CHILD_ENDS = frozenset({"_ends"})

    # -- introspection ----------------------------------------------------
    @property
    def state(self) -> PipeState:
        return self._ledger.state

    @property
    def remote_info(self) -> Dict[str, Any]:
        """The agent's hello: protocol, pid, host, handler, handler_id, python,
        dill; for zero-install agents also bundle_sent (False on a warm start),
        cache and bundle_hash."""
        return dict(self._ledger.hello)

    @property
    def pending(self) -> int:
        """Messages sent but not yet acknowledged as handled."""
        return self._ledger.pending()

    def __repr__(self) -> str:
        return f"<SSHPipe {self.name} host={self.host} {self._ledger.state.value}>"

    # -- life cycle -------------------------------------------------------
    @_names_host
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
        ledger = self._ledger
        with ledger.starting(f"{self!r}: start() works once, on a new pipe"):
            self.transport = self._launch.resolve(self.host, self.config, self.user,
                                                  self.transport)
            launch, bundle = self._launch.prepare(self.name, self.daemon)
            # Sent: as Process.start() drops its target (bpo-30775), the caller's
            # handler object is not kept alive by a running pipe.
            self.handler = None
        ends = self._ends
        if self.transport == "openssh":
            ends.add_control()  # the child reports there: events are the agent's stream
        # The child needs the log level, not the logger (which stays in this process).
        spec = self._launch.spec(
            transport=self.transport, launch=launch, bundle=bundle, host=self.host,
            name=self.name, user=self.user, config=self.config,
            ready_timeout=self.ready_timeout, max_frame=self._messages.max_frame,
            log_level=self.logger.getEffectiveLevel(), term_message=self.term_message,
            encoding=self.encoding, reply_window=self.reply_window,
            reply_window_bytes=self.reply_window_bytes)
        outbox = ends.open_outbox(f"sshpipe-send-{self.name}")
        spec_frame = protocol.encode(FrameKind.SPEC, pickle.dumps(spec, protocol=5))
        started_at = time.monotonic()
        super().start()  # ChildProcess.start: one child at a time, under its lock
        # Everything that writes to the request pipe comes after the fork: a SPEC
        # larger than the pipe's buffer is finished by the Outbox's writer thread,
        # which must not be running while this process forks.
        outbox.put((spec_frame,))
        source, beat = event_source(spec, launch, bundle, send=outbox.put,
                                    event_reader=ends.event_reader,
                                    control_reader=ends.control_reader)
        dispatch = self._dispatch = Dispatch(
            ledger=ledger, source=source, outbox=outbox, remote_logger=self.logger,
            name=self.name, beat=beat, ready_timeout=self.ready_timeout,
            started_at=started_at, callback=self.callback, label=self._ledger.label,
            terminate=self._terminate_child, child_status=self._child_status)
        self._messages.outbox, self._messages.dispatch = outbox, dispatch
        ends.child_started()
        dispatch.start_thread(f"sshpipe-events-{self.name}")
        deadline = time.monotonic() + self.ready_timeout + self._launch.start_timeout
        state, error = ledger.wait_started(deadline)
        if state is PipeState.RUNNING:
            if self._launch.runs_target:
                ledger.close_seq = self.send(RUN_TARGET)  # not the caller's message
            return
        if state is PipeState.STARTING:
            self._force_end("start() gave up")  # the child closes the channel as it dies
            raise AgentStartError(f"{self.host}: no hello from the agent within "
                                  f"{self.ready_timeout:g} s", self.host)
        self._wait_child(KILL_GRACE)
        if isinstance(error, SSHPipeError):
            raise error
        if error is not None:
            raise AgentStartError(f"{self.host}: {error}", self.host) from error
        transcript = ledger.transcript
        raise AgentStartError(f"{self.host}: the agent ended before saying hello", self.host,
                              ledger.done.get("exitcode") if ledger.done else None,
                              transcript.decode(transcript.stderr))

    @_names_host
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
            ValueError: the serialized object is larger than ``max_frame``
                (checked before serializing for bytes-like objects, strings
                and arrays).
            TypeError: the object is or holds something that means nothing on
                another host (an open file, a socket, a thread, a held lock, a
                generator); see :mod:`sshpipe.serial`.
        """
        return self._messages.send_object(obj, timeout, self.queue_bound, self.term_message)

    @_names_host
    def send_bytes(self, payload: bytes, timeout: Optional[float] = None) -> int:
        """Send an already serialized object (``dill.dumps``/``pickle.dumps``
        output): the handler receives the object. Serialize once, send to many."""
        return self._messages.send_bytes(payload, timeout, self.queue_bound,
                                         self.term_message)

    @_names_host
    def recv(self, timeout: Optional[float] = None) -> Any:
        """Return the next object the handler sent with ``reply()``.

        While it waits, the calling thread reads the child's events itself (when
        no other thread is reading them), so a reply reaches it without a hand-off
        from the events thread.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            PipeClosed: the pipe is not started.
            EOFError: the agent ended and every reply has been received.
            PipeBroken: the pipe failed and every reply has been received.
            ReplyDecodeError: this reply could not be loaded (UntrustedPayload:
                the trust policy refused it); the next recv() goes on.
        """
        return self._messages.recv(timeout, self.reply_window)

    def __iter__(self) -> Iterator[Any]:
        """Every reply until the agent ends (a handler's failure is raised, as from
        :meth:`recv`)."""
        while True:
            try:
                yield self.recv()
            except EOFError:
                return

    @_names_host
    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        """True when ``recv()`` would return at once."""
        return self._messages.poll(timeout)

    @_names_host
    def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until every message sent so far has been handled.

        Raises:
            TimeoutError: not all handled within ``timeout``.
            PipeBroken: the pipe failed first.
            PipeClosed: the agent ended with messages unhandled.
        """
        self._messages.flush(timeout)

    @_names_host
    def response(self, timeout: Optional[float] = None) -> Response:
        """Wait for the agent to end and return ``(exitcode, stdout, stderr)``
        (a :class:`Response`, which also lists unhandled messages and errors).

        Raises:
            TimeoutError: the agent did not end within ``timeout``.
            PipeBroken: the pipe failed, so the agent's end is not known;
                ``.unhandled`` lists the messages never handled.
            PipeClosed: the pipe was never started.
        """
        return self._ledger.wait_end(timeout)

    # The seed's close(): it ends the agent and returns the response, where
    # Process.close() takes nothing and returns None (see the docstring).
    @_names_host
    def close(  # type: ignore[override]
            self, msg: Any = None, timeout: Optional[float] = None) -> Response:
        """End the agent and return :meth:`response`.

        Sends the term message (``msg``, else the pipe's own unless a term message
        was already sent), then END: the agent's input ends there whatever it
        takes for a term message, so it finishes what it was sent and exits. If
        it has not ended within ``timeout``, the child is ended (SIGTERM, then
        SIGKILL after 1 s): the channel closes and the agent, busy or not, ends
        with its process group. close() then returns within ``timeout`` + 2 s,
        with ``exitcode`` -SIGTERM (or -SIGKILL) and the reason in
        ``Response.reason``. Allowed in any state; on a NEW pipe it only marks it
        closed.

        Raises:
            PipeBroken: the pipe failed, so how the agent ended is not known;
                ``.unhandled`` lists the messages never handled.
        """
        ledger = self._ledger
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> Optional[float]:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        with ledger.cond:
            state = ledger.state
            if state is PipeState.NEW:
                ledger.finish(PipeState.CLOSED, {"exitcode": None, "reason": "never started"},
                              None)
                self._ends.release()
                return ledger.response_locked()
        if state is PipeState.RUNNING and (msg is not None or not ledger.term_sent):
            try:
                # Not the caller's message: it is left out of Response.unhandled.
                ledger.close_seq = self.send(msg if msg is not None else self.term_message,
                                             timeout=remaining())
            except (PipeClosed, PipeBroken, TimeoutError):
                pass
        self._messages.end_input()
        try:
            return self.response(timeout=remaining())
        except TimeoutError:
            self._force_end(f"the agent did not end within {timeout:g} s of close(); "
                            f"the pipe's child was ended")
            return self.response(timeout=KILL_GRACE + 1.0)
        finally:
            if not self._wait_child(KILL_GRACE):
                self._force_end("the pipe's child did not exit after the agent ended")
            self._release_process()

    def _force_end(self, reason: str) -> None:
        """End the child now (SIGTERM, then SIGKILL after a grace); the event pipe's
        end then settles the pipe as CLOSED with ``reason``."""
        self._ledger.force(reason)
        self._end_child()

    def __enter__(self) -> "SSHPipe":
        if self.state is PipeState.NEW:
            self.start()
        return self

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        try:
            self.close()
        except PipeBroken:
            if exc_type is None:
                raise  # otherwise the exception already propagating says more

    # -- child process ----------------------------------------------------
    def run(self) -> None:
        """The child: read the SPEC frame, own the SSH connection, pump frames."""
        ends = self._ends
        ends.in_child()
        from sshpipe._child import read_spec, run_child

        try:
            spec = read_spec(ends.request_reader.fileno())
        except (EOFError, OSError, pickle.UnpicklingError):
            raise SystemExit(255) from None  # the caller is gone before it said what to run
        code = run_child(spec, ends.request_reader, ends.event_writer, ends.control_writer)
        if code < 0:
            # The agent was killed by signal -code: so is this process, so that
            # SSHPipe.exitcode reads as Process.exitcode does (-N).
            os.kill(os.getpid(), -code)
        raise SystemExit(code)
