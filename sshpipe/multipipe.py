"""SSHMultiPipe: many SSHPipes, each with its own host and agent, driven from one point.

::

     caller process
    +--------------------------------------------------------------------------+
    | SSHMultiPipe                                                             |
    |                                                                          |
    |  start():  starter thread per pipe --(start slot, per host)--> SSHPipe.start()
    |  send(name, obj):  SSHPipe.send                                          |
    |  broadcast(obj):   serial.dumps once --> SSHPipe.send_bytes, each pipe   |
    |                                                                          |
    |  reader thread per running pipe:                                         |
    |     SSHPipe.recv() --> (name, REPLY, obj) --+                            |
    |     the pipe ended --> (name, END, lost?) --+--> events queue --> recv() |
    |                                                                          |
    |  close():  closer thread per pipe --> SSHPipe.close() --> {name: result} |
    +--------------------------------------------------------------------------+
          each SSHPipe: its own child process and SSH connection (sshpipe.pipe)

Actors:

- **Starter threads** (one per pipe, only while :meth:`SSHMultiPipe.start` runs;
  :func:`sshpipe._startmany.start_pipes`, shared with ``workers.SSHExecutor``)
  call ``SSHPipe.start()`` so that the SSH handshakes and agent start-ups of all
  pipes overlap. At most ``start_per_host`` of them connect to one host at a time,
  because OpenSSH's default ``MaxStartups 10:30:100`` makes sshd drop new
  connections at random once 10 are unauthenticated. A failure is recorded for
  its pipe and never stops the others; at the deadline the late ones are killed.
- **Reader threads** (one per pipe that started) loop on ``SSHPipe.recv()`` and
  put each reply on one events queue, so :meth:`SSHMultiPipe.recv` returns
  replies in the order they arrived, whichever pipe sent them. The queue holds
  at most :data:`MAX_EVENTS` replies: past that a reader waits, so a caller that
  does not read makes the agents' ``reply()`` wait (sshpipe's reply window)
  instead of this process's memory grow. When its pipe ends, a reader puts one
  END event, last, and stops; the END says whether the pipe was *lost* (broke,
  or its agent failed before ``close()``).
- **Closer threads** (one per pipe, only while :meth:`SSHMultiPipe.close` runs)
  call ``SSHPipe.close()`` so that slow agents end in parallel; one still
  closing at the deadline is killed.

Ownership: the SSHMultiPipe creates its pipes in :meth:`~SSHMultiPipe.add` and
is the only one to start and close them. After ``start()`` the reader threads are
the only callers of the member pipes' ``recv()``; anything else (``send``,
``flush``, ``remote_info``, ``kill``) may be used on a member directly. The
events queue is written by the reader threads and read only by ``recv()``.
"""
from __future__ import annotations

import enum
import logging
import threading
import time
from collections import Counter, deque
from typing import (Any, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

from sshpipe import serial
from sshpipe._startmany import START_PER_HOST, start_pipes
from sshpipe.errors import (MemberLost, PipeBroken, PipeClosed, RemoteError, SSHPipeError,
                            StartError)
from sshpipe.handler import SSHPipeHandler
from sshpipe.pipe import PipeState, Response, SSHPipe

__all__ = ["MAX_EVENTS", "MemberLost", "MultiPipeState", "SSHMultiPipe", "START_PER_HOST",
           "StartError"]

logger = logging.getLogger(__name__)

# Replies the events queue holds for recv(); past this the readers wait (and so,
# through sshpipe's reply window, do the agents). Many replies in flight keep
# many pipes busy; each waiting one costs its size in memory.
MAX_EVENTS = 10_000
# How long close() waits for a reader thread after its pipe ended.
_READER_JOIN_TIMEOUT = 5.0
# close(timeout) gives each SSHPipe.close() this much past the timeout (its own
# escalation: closing the channel, ending the child) before it kills the pipe.
CLOSE_GRACE = 5.0

# Kinds of items on the events queue.
_REPLY = "reply"            # value: the reply object
_BAD_REPLY = "bad-reply"    # value: the exception that loading the reply raised
_END = "end"                # value: MemberLost, or None when the pipe ended cleanly
_ALL_ENDED = "all-ended"    # put back by every recv() that sees it: wakes other waiters

Result = Union[Response, BaseException]


class MultiPipeState(enum.Enum):
    """Life cycle of an SSHMultiPipe; each member pipe also has its own PipeState."""

    NEW = "new"            # pipes may be added; nothing started
    STARTING = "starting"  # start() is starting the pipes
    RUNNING = "running"    # start() returned; status() says which pipes run
    CLOSING = "closing"    # close() is ending the pipes
    CLOSED = "closed"      # every pipe ended; close()'s results are final


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else repr(error)


class SSHMultiPipe:
    """Many :class:`~sshpipe.SSHPipe` s, started, fed and closed as one.

    Each member has a name, a host, and a command or handler of its own. Members
    start concurrently; one that fails to start is reported and the others run.
    Replies from all members come out of one :meth:`recv` as ``(name, obj)``.

    Example::

        multi = SSHMultiPipe(config="ssh_config", handler=Worker)  # defaults for all
        multi.add("db1", "db1.example")
        multi.add("db2", "db2.example", command="agent.py --fast")
        failed = multi.start(timeout=60)      # {name: exception}, empty if all ran
        multi.broadcast({"job": 1})
        name, reply = multi.recv(timeout=30)
        results = multi.close()               # {name: Response or exception}

    or from a mapping, started and closed by ``with``::

        pipes = {"db1": {"host": "db1.example"}, "db2": {"host": "db2.example"}}
        with SSHMultiPipe(pipes, config="ssh_config", handler=Worker) as multi:
            multi.broadcast({"job": 1})

    Args:
        pipes: ``{name: {"host": ..., "command" or "handler": ..., other SSHPipe
            arguments}}``, added in order as if by :meth:`add`.
        start_per_host: how many pipes connect to one host (as written in
            ``host``) at once during :meth:`start`; None for no limit. See
            :data:`START_PER_HOST`.
        mp_context: the ``multiprocessing`` context that starts the members'
            local processes (default: the global start method), as
            ``ProcessPoolExecutor`` takes it.
        **defaults: SSHPipe arguments shared by every member (``config``,
            ``python``, ``handler``, ``ready_timeout`` ...); a member's own
            arguments override them.
    """

    def __init__(self, pipes: Optional[Mapping[str, Mapping[str, Any]]] = None, *,
                 start_per_host: Optional[int] = START_PER_HOST,
                 mp_context: Optional[Any] = None, **defaults: Any):
        if start_per_host is not None and start_per_host < 1:
            raise ValueError(f"start_per_host must be at least 1 or None, not {start_per_host}")
        if "name" in defaults or "host" in defaults:
            raise TypeError("'name' and 'host' are given per pipe, to add()")
        self.start_per_host = start_per_host
        self._defaults = dict(defaults)
        if mp_context is not None:
            self._defaults["mp_context"] = mp_context
        # Guards every attribute below; waited on by close() callers.
        self._cond = threading.Condition()
        self._state = MultiPipeState.NEW
        self._pipes: Dict[str, SSHPipe] = {}            # add order
        self._start_errors: Dict[str, BaseException] = {}
        self._started: List[str] = []                   # reached RUNNING in start()
        self._readers: List[threading.Thread] = []
        self._open_readers = 0     # readers whose END event recv() has not taken yet
        self._results: Optional[Dict[str, Result]] = None
        # Written by the reader threads, read by recv() only.
        self._events = _Events(MAX_EVENTS)
        for name, spec in (pipes or {}).items():
            spec = dict(spec)
            try:
                host = spec.pop("host")
            except KeyError:
                raise TypeError(f"pipe {name!r}: its mapping needs a 'host'") from None
            self.add(name, host, **spec)

    # -- members ------------------------------------------------------------
    def add(self, name: str, host: str, command: Optional[str] = None,
            **pipe_kwargs: Any) -> SSHPipe:
        """Add a pipe named ``name`` to ``host`` and return it (not started).

        ``command`` and ``pipe_kwargs`` are :class:`~sshpipe.SSHPipe`'s arguments,
        merged over the constructor's defaults; a member that gives ``command``
        or ``handler`` drops the other from the defaults. The pipe's own name is
        ``name``. Allowed in state NEW only.

        Raises:
            ValueError: a duplicate or empty name, or arguments SSHPipe refuses.
            PipeClosed: the SSHMultiPipe was already started.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a pipe's name must be a non-empty string, not {name!r}")
        if "name" in pipe_kwargs:
            raise TypeError("the pipe's name is add()'s first argument")
        kwargs = dict(self._defaults)
        if command is not None or "handler" in pipe_kwargs:
            kwargs.pop("command", None)
            kwargs.pop("handler", None)
        kwargs.update(pipe_kwargs)
        if command is not None:
            kwargs["command"] = command
        with self._cond:
            self._check_addable(name)
        pipe = SSHPipe(host, name=name, **kwargs)
        with self._cond:
            self._check_addable(name)
            self._pipes[name] = pipe
        return pipe

    def _check_addable(self, name: str) -> None:
        if self._state is not MultiPipeState.NEW:
            raise PipeClosed(f"{self!r}: pipes can be added only before start()")
        if name in self._pipes:
            raise ValueError(f"a pipe named {name!r} was already added")

    def __getitem__(self, name: str) -> SSHPipe:
        """The member pipe ``name``; do not call its ``recv()`` once started (the
        SSHMultiPipe's reader takes its replies)."""
        try:
            return self._pipes[name]
        except KeyError:
            raise KeyError(f"no pipe named {name!r}; pipes: {list(self._pipes)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._pipes

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._pipes))

    def __len__(self) -> int:
        return len(self._pipes)

    @property
    def names(self) -> List[str]:
        """Every member's name, in the order added."""
        return list(self._pipes)

    @property
    def state(self) -> MultiPipeState:
        """The SSHMultiPipe's own life-cycle state; :meth:`status` has the members'."""
        return self._state

    def status(self) -> Dict[str, PipeState]:
        """``{name: PipeState}`` of every member, now, in the order added.

        A member that failed to start is BROKEN, or NEW when it failed before its
        child process started (see :attr:`start_errors` for why)."""
        return {name: pipe.state for name, pipe in self._pipes.items()}

    @property
    def start_errors(self) -> Dict[str, BaseException]:
        """``{name: exception}`` of the members :meth:`start` could not start."""
        with self._cond:
            return dict(self._start_errors)

    @property
    def running(self) -> List[str]:
        """Names of the members whose state is RUNNING now."""
        return [name for name, pipe in self._pipes.items() if pipe.state is PipeState.RUNNING]

    def __repr__(self) -> str:
        counts = Counter(pipe.state.value for pipe in self._pipes.values())
        by_state = " ".join(f"{state.value}={counts[state.value]}" for state in PipeState
                            if counts[state.value])
        return (f"<SSHMultiPipe {self._state.value} {len(self._pipes)} pipes"
                f"{': ' + by_state if by_state else ''}>")

    # -- start --------------------------------------------------------------
    def start(self, timeout: Optional[float] = None, *,
              raise_on_error: bool = False) -> Dict[str, BaseException]:
        """Start every member concurrently; return ``{name: exception}`` for those
        that did not start (empty when all did).

        A member that fails does not stop the others: they keep running whatever
        happens, and :meth:`status` and :attr:`start_errors` say which failed.
        This differs from ``SSHPipe.start()``, which raises, on purpose: with
        many hosts a partial start is the normal case, and the caller decides
        whether the pipes that run are enough (``raise_on_error=True`` makes it
        raise instead). Allowed in state NEW only.

        Args:
            timeout: seconds for all members together (None: each member's own
                ``ready_timeout`` bounds it). Members not running by then are
                killed and reported with a ``TimeoutError``; start() returns
                within ``timeout`` plus the time a killed start takes to give
                up (bounded, see :mod:`sshpipe._startmany`).
            raise_on_error: raise :class:`StartError` instead of returning when a
                member failed; the others still run and ``close()`` ends them.

        Raises:
            PipeClosed: start() was already called.
            StartError: with ``raise_on_error``, when any member failed.
        """
        with self._cond:
            if self._state is not MultiPipeState.NEW:
                raise PipeClosed(f"{self!r}: start() works once")
            self._state = MultiPipeState.STARTING
        errors = start_pipes(self._pipes, timeout, per_host=self.start_per_host,
                             thread_prefix="sshpipe-multi-start")
        with self._cond:
            self._start_errors = {name: errors[name] for name in self._pipes if name in errors}
            self._started = [name for name in self._pipes
                             if name not in errors and self._pipes[name].state is PipeState.RUNNING]
            for name in self._started:
                reader = threading.Thread(target=self._read, args=(name, self._pipes[name]),
                                          name=f"sshpipe-multi-recv-{name}", daemon=True)
                self._readers.append(reader)
            self._open_readers = len(self._readers)
            self._state = MultiPipeState.RUNNING
            failures = dict(self._start_errors)
        for reader in self._readers:
            reader.start()
        if not self._readers:
            self._events.put_end(("", _ALL_ENDED, None))
        for name, error in failures.items():
            logger.debug("%r: pipe %r did not start: %s", self, name, error)
        if failures and raise_on_error:
            raise StartError(failures, len(self._pipes))
        return failures

    # -- sending ------------------------------------------------------------
    def send(self, name: str, obj: Any, timeout: Optional[float] = None) -> int:
        """Send ``obj`` to the member ``name``; return its sequence number there.

        Raises:
            KeyError: no member has that name.
            PipeClosed, PipeBroken, TimeoutError: as ``SSHPipe.send``.
        """
        return self[name].send(obj, timeout=timeout)

    def broadcast(self, obj: Any, timeout: Optional[float] = None, *,
                  names: Optional[Sequence[str]] = None) -> Dict[str, Union[int, BaseException]]:
        """Send ``obj`` to many members; return ``{name: seq or exception}``.

        ``obj`` is serialized once, here, and the same bytes go to every member,
        so broadcasting costs one pickling whatever the number of pipes. A member
        that cannot take it (broken, closed, window still full at the deadline)
        gets its exception in the result instead of stopping the others.

        Args:
            obj: the message; an unserializable one raises before anything is sent.
            timeout: seconds for all sends together; a member whose window is
                full waits at most until then (the sends are one after the other).
            names: the members to send to; default: every member that started.

        Raises:
            KeyError: a name in ``names`` is not a member.
            PipeClosed: the SSHMultiPipe is not started.
        """
        with self._cond:
            if self._state in (MultiPipeState.NEW, MultiPipeState.STARTING):
                raise PipeClosed(f"{self!r}: not started")
            targets = list(self._started if names is None else names)
        pipes = [(name, self[name]) for name in targets]
        payload = serial.dumps(obj)
        deadline = None if timeout is None else time.monotonic() + timeout
        results: Dict[str, Union[int, BaseException]] = {}
        for name, pipe in pipes:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                if _is_term_message(pipe, obj):
                    # Through send(), so the pipe knows its term message went out and
                    # close() does not send a second one that would stay unhandled.
                    results[name] = pipe.send(obj, timeout=remaining)
                else:
                    results[name] = pipe.send_bytes(payload, timeout=remaining)
            except (SSHPipeError, TimeoutError) as exc:
                results[name] = exc
        return results

    # -- receiving ----------------------------------------------------------
    def recv(self, timeout: Optional[float] = None) -> Tuple[str, Any]:
        """Return ``(name, obj)``: the next reply from whichever member sent first.

        Replies come out in the order they arrived. A member that ends cleanly
        (exit status 0) just stops replying; one that is *lost* before
        :meth:`close` raises :class:`MemberLost` once, after its last reply,
        and the next call goes on with the others.

        Raises:
            TimeoutError: no reply within ``timeout`` seconds.
            MemberLost: a member broke or its agent failed; ``.name`` says which.
            EOFError: every member has ended and every reply has been returned.
            PipeClosed: the SSHMultiPipe is not started.
            ReplyDecodeError: a member's reply could not be loaded here, or
                (UntrustedPayload) its trust policy refused it; ``.host`` says
                which member's host, and the next call goes on.
        """
        with self._cond:
            if self._state in (MultiPipeState.NEW, MultiPipeState.STARTING):
                raise PipeClosed(f"{self!r}: not started")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            event = self._events.get(remaining)
            if event is None:
                raise TimeoutError(f"no reply from any of {len(self._started)} pipes "
                                   f"within {timeout:g} s")
            name, kind, value = event
            if kind == _REPLY:
                return name, value
            if kind == _BAD_REPLY:
                raise value  # ReplyDecodeError (or UntrustedPayload) naming host and reply
            if kind == _ALL_ENDED:
                self._events.put_end((name, kind, value))
                raise EOFError(f"all {len(self._started)} started pipes have ended; "
                               "no more replies")
            with self._cond:  # _END: the pipe's last event
                self._open_readers -= 1
                if self._open_readers == 0:
                    self._events.put_end(("", _ALL_ENDED, None))
            if value is not None:
                raise value

    def _read(self, name: str, pipe: SSHPipe) -> None:
        """Reader thread: move the pipe's replies to the events queue, then its END."""
        lost: Optional[MemberLost] = None
        failure: Optional[RemoteError] = None
        try:
            while True:
                try:
                    obj = pipe.recv()
                except EOFError:
                    lost = self._lost_if_failed(name, pipe)
                    if lost is not None and failure is not None:
                        lost.__cause__ = failure
                    return
                except RemoteError as exc:  # the agent failed: MemberLost follows, with it
                    failure = exc
                    continue
                except PipeBroken as exc:
                    lost = self._lost_if_broken(name, pipe, exc)
                    return
                except BaseException as exc:  # loading this reply failed (SystemExit
                    # from a crafted pickle too): that reply is reported, the pipe goes on
                    self._events.put_reply((name, _BAD_REPLY, exc))
                    continue
                self._events.put_reply((name, _REPLY, obj))
        finally:
            self._events.put_end((name, _END, lost))

    def _lost_if_failed(self, name: str, pipe: SSHPipe) -> Optional[MemberLost]:
        """The agent ended: lost if it failed on its own, before close()."""
        with self._cond:
            if self._state in (MultiPipeState.CLOSING, MultiPipeState.CLOSED):
                return None
        response = pipe.response(timeout=0)
        if response.exitcode == 0:
            return None
        why = response.reason or f"the agent ended with exit status {response.exitcode}"
        return MemberLost(f"pipe {name!r} ({pipe.host}) lost: {why}", name, pipe.host, response)

    def _lost_if_broken(self, name: str, pipe: SSHPipe,
                        error: PipeBroken) -> Optional[MemberLost]:
        with self._cond:
            if self._state in (MultiPipeState.CLOSING, MultiPipeState.CLOSED):
                return None
        lost = MemberLost(f"pipe {name!r} ({pipe.host}) broke: {_first_line(error)}",
                          name, pipe.host)
        lost.__cause__ = error
        return lost

    # -- close --------------------------------------------------------------
    def close(self, msg: Any = None,
              timeout: Optional[float] = None) -> Dict[str, Result]:
        """End every member concurrently; return ``{name: Response or exception}``.

        Each member gets ``SSHPipe.close(msg, timeout)``: the term message, then
        the wait for its agent's end (escalating to closing the channel and
        ending the child past ``timeout``). A member whose close has not
        returned :data:`CLOSE_GRACE` seconds past ``timeout`` is killed and gets
        a ``TimeoutError``, so close() returns within ``timeout`` +
        :data:`CLOSE_GRACE` + a few seconds. A member that never started gets its
        start error; one that broke gets its ``PipeBroken``. Replies not yet taken
        stay available to :meth:`recv`. Allowed in every state; a second call
        returns the first one's results (waiting at most ``timeout`` for them).

        Raises:
            PipeClosed: start() is still running in another thread.
            TimeoutError: another thread's close() did not finish within ``timeout``.
        """
        with self._cond:
            if self._state is MultiPipeState.STARTING:
                raise PipeClosed(f"{self!r}: start() is still running")
            if self._state in (MultiPipeState.CLOSING, MultiPipeState.CLOSED):
                if not self._cond.wait_for(lambda: self._results is not None, timeout):
                    raise TimeoutError(f"{self!r}: the close() under way in another thread "
                                       f"did not finish within {timeout:g} s")
                return dict(self._results or {})
            never_started = self._state is MultiPipeState.NEW
            self._state = MultiPipeState.CLOSING
            start_errors = dict(self._start_errors)
        if never_started:
            self._events.put_end(("", _ALL_ENDED, None))  # recv() then raises EOFError
        # The members end now: what their readers still hold goes to the queue
        # whatever its bound, so that no reader waits for a recv() that may never come.
        self._events.release()
        results: Dict[str, Result] = {}
        threads = {name: threading.Thread(target=self._close_one,
                                          args=(name, pipe, msg, timeout, start_errors, results),
                                          name=f"sshpipe-multi-close-{name}", daemon=True)
                   for name, pipe in self._pipes.items()}
        for thread in threads.values():
            thread.start()
        deadline = None if timeout is None else time.monotonic() + timeout + CLOSE_GRACE
        for thread in threads.values():
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for name, thread in threads.items():
            if thread.is_alive():  # its agent and child did not end in time: kill it
                pipe = self._pipes[name]
                if pipe.pid is not None and not pipe.released:
                    pipe.kill()
                thread.join(_READER_JOIN_TIMEOUT)
                if name not in results:
                    results[name] = TimeoutError(
                        f"pipe {name!r} ({pipe.host}): not closed within "
                        f"{timeout:g} s (+{CLOSE_GRACE:g} s); killed")
        for reader in self._readers:
            reader.join(_READER_JOIN_TIMEOUT)
        with self._cond:
            self._results = {name: results[name] for name in self._pipes}
            self._state = MultiPipeState.CLOSED
            self._cond.notify_all()
            return dict(self._results)

    @staticmethod
    def _close_one(name: str, pipe: SSHPipe, msg: Any, timeout: Optional[float],
                   start_errors: Mapping[str, BaseException],
                   results: Dict[str, Result]) -> None:
        """Closer thread: close one pipe and record its response or error."""
        try:
            result: Result = pipe.close(msg, timeout=timeout)
        except Exception as exc:  # recorded per pipe; close() reports it
            result = exc
        results[name] = start_errors.get(name, result)

    def __enter__(self) -> "SSHMultiPipe":
        """Start (if NEW) without raising for members that fail: check
        :attr:`start_errors`, or call ``start(raise_on_error=True)`` before ``with``."""
        if self._state is MultiPipeState.NEW:
            self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class _Events:
    """The events queue: members' replies and ends, in arrival order.

    Replies are bounded (``max_replies``): a reader waits for room, unless the
    queue was released (close() ends the members, and nobody may read again).
    END events are never held back: there is one per member.
    """

    def __init__(self, max_replies: int):
        self._items: Deque[Tuple[str, str, Any]] = deque()
        self._cond = threading.Condition()
        self._max = max_replies
        self._replies = 0
        self._released = False

    def put_reply(self, item: Tuple[str, str, Any]) -> None:
        with self._cond:
            while self._replies >= self._max and not self._released:
                self._cond.wait()
            self._items.append(item)
            self._replies += 1
            self._cond.notify_all()

    def put_end(self, item: Tuple[str, str, Any]) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def get(self, timeout: Optional[float]) -> Optional[Tuple[str, str, Any]]:
        """The next event, or None after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return None
            item = self._items.popleft()
            if item[1] in (_REPLY, _BAD_REPLY):
                self._replies -= 1
            self._cond.notify_all()
            return item


def _is_term_message(pipe: SSHPipe, obj: Any) -> bool:
    return isinstance(obj, str) and (obj == pipe.term_message
                                     or obj in SSHPipeHandler.TERM_MESSAGES)
