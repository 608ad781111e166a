"""The remote agent: runs an SSHPipeHandler over the frame protocol.

Stdlib only (dill is used when a message needs it): this module is shipped to
remote hosts as source.

::

    fd 0 (SSH stdin) ---frames---> main thread: atstart / handle / atexit
                                       |
    fd 1 (SSH stdout) <-- writer <-----+  REPLY, ACK, ERROR, EXIT (batched, flushed
                     (lock, batch)     |  whenever the main thread is about to wait)
                       <--             +- LOG     (logging handler, any thread)
                       <--             +- STDOUT  (capture thread reads the fd 1 pipe)
                       <--             +- PING    (ticker thread, when idle)

Ownership: :func:`serve` takes fds 0 and 1 over for the protocol, then points fd 0
at /dev/null and fd 1 at a pipe read by the capture thread, so nothing the handler
or its children print can corrupt frames. The main thread alone reads the input
and calls the handler hooks, with no hand-off between threads on the way, which
keeps a round trip short. The writer is shared by all threads under its lock;
frames from the main thread are batched and flushed when it has no more input,
so a burst of small messages costs few channel writes; the ticker flushes
anything left longer than :data:`FLUSH_DELAY`, sends heartbeats, and ends the
agent if the caller hangs up while a handler is stuck.
"""
from __future__ import annotations

import importlib.util
import io
import logging
import os
import platform
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

from sshpipe import protocol, serial
from sshpipe._logwire import to_wire
from sshpipe.errors import ProtocolError
from sshpipe.handler import (EXIT_ATEXIT, EXIT_ATSTART, EXIT_CALLER_LOST, EXIT_HANDLE, EXIT_OK,
                             EXIT_PROTOCOL, SSHPipeHandler)
from sshpipe.protocol import Frame, FrameKind

__all__ = ["serve"]

# Frames written outside the main loop (logs, captured stdout) wait at most this
# long before the ticker flushes them: short enough for live logs, long enough to
# batch a burst.
FLUSH_DELAY = 0.02
# Ack at the latest after this many handled messages, so a caller streaming
# without pause still sees progress (and its send window reopens).
ACK_EVERY = 256
# A caller that asks to end gets this long for the handler to finish its current
# message before the agent exits hard (the handler may be stuck).
EXIT_GRACE = 5.0
# Once serve() has sent EXIT, what is left of the process (atexit handlers, a
# library's non-daemon threads, whatever code follows service_loop) gets this
# long; then the agent ends hard, saying on stderr which threads kept it. The
# caller saw the end already: a process lingering past it would be a leak.
SHUTDOWN_GRACE = 5.0
# Flush once this much is buffered, whatever else is pending.
WRITE_BATCH = 256 * 1024
# Replies the caller may leave untaken before reply() blocks, unless the caller's
# START says otherwise: a caller that does not read stops the handler, instead of
# its own memory growing without bound.
REPLY_WINDOW = 1024
REPLY_WINDOW_BYTES = 64 << 20
# A message with at least this much still to come is read straight into a buffer
# of its own (protocol.FrameReader's direct mode): a copy less of every byte.
DIRECT_READ = 128 * 1024
# Made once: the ticker's heartbeat and the reply window's request for credit.
_PING = protocol.encode(FrameKind.PING)
# While a hook is busy the ticker reads the caller's input, so that heartbeats and
# reply credit still arrive and a lost caller is noticed; it stops taking more
# input once this many bytes of messages wait to be handled (the caller is then
# taken for alive: it sent them).
BUSY_INPUT_LIMIT = 64 << 20



class _Writer:
    """The protocol output: one lock, a batch of frames, written with one writev.

    Every write ends with an ACK for what has been handled so far (when that
    changed): a reply never reaches the caller ahead of the acknowledgement of
    the message it answers, whichever thread flushes it.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self._lock = threading.Lock()
        self._chunks: List[bytes] = []
        self._size = 0
        self._oldest = 0.0
        self.last_write = time.monotonic()
        self.broken = False
        self.handled_seq = 0   # set by the main thread once handle() returned
        self._acked_seq = 0

    def put(self, frame: bytes, flush: bool = False) -> None:
        with self._lock:
            if not self._chunks:
                self._oldest = time.monotonic()
            self._chunks.append(frame)
            self._size += len(frame)
            if flush or self._size >= WRITE_BATCH:
                self._flush_locked()

    def flush(self, older_than: float = 0.0) -> None:
        with self._lock:
            if self._acked_seq != self.handled_seq and not older_than:
                self._flush_locked()
            elif self._chunks and time.monotonic() - self._oldest >= older_than:
                self._flush_locked()

    def _flush_locked(self) -> None:
        handled = self.handled_seq
        if handled != self._acked_seq:
            self._chunks.append(protocol.encode_seq(FrameKind.ACK, handled))
            self._acked_seq = handled
        chunks, self._chunks = self._chunks, []
        self._size = 0
        if self.broken:
            return
        try:
            protocol.write_all(self.fd, *chunks)
        except OSError:
            self.broken = True  # the caller is gone; the reader will see EOF
        self.last_write = time.monotonic()


class _ReplyWindow:
    """Replies sent but not yet taken by the caller's ``recv()``.

    ``reserve()`` blocks while the window is full (by count or by bytes; one
    reply larger than the byte bound still goes when nothing else is pending).
    The caller reports what it has taken in CREDIT frames, not after every reply
    (that was one more frame across the whole path per message) but every quarter
    window and whenever the agent asks: before it waits, ``reserve()`` calls
    ``ask`` (the agent flushes its batch and sends a PING, which a caller whose
    hello said ``credit_on_request`` answers with its count), and again every
    second while it waits. Once the caller has ended its input the window no
    longer limits (nobody will take more, and the replies must still reach the
    caller before the agent's end).
    """

    def __init__(self, count: int = REPLY_WINDOW, size: int = REPLY_WINDOW_BYTES):
        self.count = count
        self.size = size
        self._cond = threading.Condition()
        self._pending: Deque[int] = deque()  # sizes of untaken replies, oldest first
        self._bytes = 0
        self._taken = 0
        self._unlimited = False

    def _full(self, size: int) -> bool:
        return bool(self._pending) and not self._unlimited and (
            len(self._pending) >= self.count or self._bytes + size > self.size)

    def reserve(self, size: int, ask: Any) -> None:
        with self._cond:
            while self._full(size):
                self._cond.release()
                try:
                    ask()  # what is batched reaches the caller first, then the PING
                finally:
                    self._cond.acquire()
                if self._full(size):
                    self._cond.wait(1.0)
            self._pending.append(size)
            self._bytes += size

    def taken(self, total: int) -> None:
        with self._cond:
            while self._taken < total and self._pending:
                self._bytes -= self._pending.popleft()
                self._taken += 1
            self._cond.notify_all()

    def unlimit(self) -> None:
        with self._cond:
            self._unlimited = True
            self._cond.notify_all()


class _FrameLogHandler(logging.Handler):
    """Sends every log record to the caller as a LOG frame (:mod:`sshpipe._logwire`)."""

    def __init__(self, writer: _Writer):
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.put(protocol.encode_json(FrameKind.LOG, to_wire(record, plain=True)))
        except Exception:  # logging must never take the agent down
            self.handleError(record)


def _dill_version() -> Optional[str]:
    """dill's version without importing it (the import costs tens of ms, and an
    agent whose messages are plain data never needs dill)."""
    loaded = sys.modules.get("dill")
    if loaded is not None:
        return getattr(loaded, "__version__", None)
    spec = importlib.util.find_spec("dill")
    if spec is None or not spec.origin:
        return None
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "__info__.py"),
                  encoding="utf-8") as info:
            for line in info:
                if line.startswith("__version__"):
                    return line.split("=", 1)[1].strip().strip("'\"")
    except OSError:
        pass
    return None


def _versions() -> Dict[str, Optional[str]]:
    return {"python": platform.python_version(), "dill": _dill_version()}


class _Agent:
    """One serving session: the state shared by the main loop and its threads."""

    def __init__(self, handler: SSHPipeHandler, in_fd: int, out_fd: int):
        self.handler = handler
        self.in_fd = in_fd
        self.writer = _Writer(out_fd)
        self.reader = protocol.FrameReader(direct=DIRECT_READ)
        self.frames: Deque[Union[Frame, Exception]] = deque()
        self.queued_bytes = 0      # payload bytes in self.frames
        # Whoever reads the input holds this: the main thread while it waits for a
        # message, the ticker while a hook is busy.
        self.input_lock = threading.Lock()
        self.input_ended = False   # END or end of input seen (frames may still wait)
        self.caller_said_end = False
        # One buffer for every read: a fresh 1 MiB bytes per read cost an mmap and
        # munmap per message.
        self.read_buffer = bytearray(protocol.PIPE_BUFFER)
        self.read_view = memoryview(self.read_buffer)
        # Registered once (select() builds its fd sets on every call); used only
        # under input_lock, as poll() must not run in two threads at once.
        self._poller = select.poll()
        self._poller.register(in_fd, select.POLLIN)
        self.heartbeat = 5.0
        self.heartbeat_timeout = 30.0
        self.max_frame = protocol.DEFAULT_MAX_FRAME
        self.window = _ReplyWindow()
        self.last_input = time.monotonic()
        self.busy = False          # the main thread is inside a handler hook
        self.stopping = threading.Event()
        self.flushed_at = 0
        self.errors = 0
        self.started = False
        self.main_thread = threading.get_ident()  # serve() builds the agent on it

    # -- output -----------------------------------------------------------
    def reply(self, obj: Any) -> None:
        payload = serial.dumps(obj)
        if len(payload) > self.max_frame:
            raise ValueError(f"a reply of {len(payload)} bytes exceeds the pipe's max_frame "
                             f"of {self.max_frame} bytes")
        self.window.reserve(len(payload), self._ask_for_credit)
        # The main thread flushes when it runs out of input; a reply from any other
        # thread (a handler's own workers) may come while the main thread waits, so
        # it goes out at once.
        self.writer.put(protocol.encode(FrameKind.REPLY, payload),
                        flush=threading.get_ident() != self.main_thread)

    def _ask_for_credit(self) -> None:
        """The reply window is full: flush, and PING the caller for its count."""
        self.writer.put(_PING, flush=True)

    def _report_error(self, seq: int, where: str, exc: BaseException) -> None:
        self.writer.put(protocol.encode_json(FrameKind.ERROR, {
            "seq": seq, "where": where, "type": type(exc).__name__,
            "message": str(exc), "traceback": traceback.format_exc(),
        }))

    @property
    def handled_seq(self) -> int:
        return self.writer.handled_seq

    @handled_seq.setter
    def handled_seq(self, seq: int) -> None:
        self.writer.handled_seq = seq

    # -- input ------------------------------------------------------------
    def _read_input(self, timeout: float) -> bool:
        """Read what the caller sent within ``timeout`` (the caller holds
        ``input_lock``): CREDIT, PING and END are acted on here, messages are queued
        for the main thread. False if nothing came."""
        if not self._poller.poll(timeout * 1000):
            return False
        # The rest of a large message is read straight into its own buffer.
        into = self.reader.into()
        count = os.readv(self.in_fd, [self.read_buffer if into is None else into])
        self.last_input = time.monotonic()
        if not count:
            self._end_input()
        elif into is None:
            self.ingest(self.read_view[:count])
        else:
            self._take(self.reader.filled(count))
        return True

    def ingest(self, data: Any) -> None:
        """Parse input bytes (under ``input_lock``, or before the threads start)."""
        try:
            frames = self.reader.feed(data)
        except ProtocolError as exc:
            self.frames.append(exc)
            self._end_input()
            return
        self._take(frames)

    def _take(self, frames: List[Frame]) -> None:
        """Act on the caller's control frames; queue its messages."""
        for frame in frames:
            kind = frame.kind
            if kind == FrameKind.CREDIT:
                self.window.taken(protocol.split_seq(frame.payload)[0])
            elif kind == FrameKind.PING:
                continue
            elif kind == FrameKind.END:
                self.caller_said_end = True
                self._end_input()
            else:
                self.frames.append(frame)
                self.queued_bytes += len(frame.payload)

    def _end_input(self) -> None:
        self.input_ended = True
        # Nobody will take replies any more before the end: let them all go out.
        self.window.unlimit()

    def next_frame(self) -> Union[Frame, str, Exception]:
        """The next frame from the caller, or "eof", "lost", or the parse error.

        Before it waits for input it acknowledges what was handled and flushes
        the output: that is when a batch of replies goes out.
        """
        while not self.frames:
            if self.input_ended:
                return "eof"
            self.writer.flush()
            with self.input_lock:
                if self.frames or self.input_ended:
                    continue  # the ticker read while a hook was busy
                got = self._read_input(self.heartbeat)
            if not got and time.monotonic() - self.last_input > self.heartbeat_timeout:
                return "lost"
        item = self.frames.popleft()
        if isinstance(item, Frame):
            self.queued_bytes -= len(item.payload)
        return item

    # -- threads ----------------------------------------------------------
    def tick_loop(self) -> None:
        """Ticker thread: flush late frames, send heartbeats, and while a hook is
        busy read the caller's input (credit, heartbeats), so that a caller that
        hung up or went silent past the bound ends the agent even then."""
        while not self.stopping.wait(FLUSH_DELAY):
            self.writer.flush(older_than=FLUSH_DELAY)
            if time.monotonic() - self.writer.last_write >= self.heartbeat:
                self.writer.put(_PING, flush=True)
            if not self.busy:
                continue
            if self.queued_bytes >= BUSY_INPUT_LIMIT:
                self.last_input = time.monotonic()  # it sent that much: it is there
            elif not self.input_ended and self.input_lock.acquire(blocking=False):
                try:
                    if self.busy:
                        self._read_input(0)
                finally:
                    self.input_lock.release()
            if not self.busy:
                continue
            if self.writer.broken or self._output_gone() or (
                    self.input_ended and not self.caller_said_end):
                self._exit_hard_after_grace(
                    EXIT_CALLER_LOST, "the caller hung up and the handler did not return")
                continue
            silent = time.monotonic() - self.last_input
            if silent > self.heartbeat_timeout:
                self._exit_hard_after_grace(
                    EXIT_CALLER_LOST, f"no heartbeat from the caller for {silent:.1f} s "
                    f"(bound {self.heartbeat_timeout:g} s) while the handler was busy")
                continue

    def _output_gone(self) -> bool:
        """The session's reader of our output is gone (the SSH session closed: the
        caller's child was ended, sshd or the link died). Seen at once, without
        waiting for the next heartbeat's write to fail."""
        try:
            poller = select.poll()
            poller.register(self.writer.fd, select.POLLOUT)
            return any(event & (select.POLLERR | select.POLLHUP)
                       for _, event in poller.poll(0))
        except (OSError, ValueError):
            return True

    def capture_loop(self, fd: int) -> None:
        """Capture thread: what the handler prints becomes STDOUT frames."""
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.writer.put(protocol.encode(FrameKind.STDOUT, data))

    def _exit_hard_after_grace(self, code: int, reason: str) -> None:
        """The caller is gone while a hook is busy. Nobody can receive its results,
        so after a short grace (one heartbeat, at most EXIT_GRACE) the agent and
        everything it started are ended: on a busy thread signal handlers cannot be
        changed, so the whole process group, this process included, gets SIGKILL."""
        if self.stopping.wait(min(EXIT_GRACE, self.heartbeat)) or not self.busy:
            return
        self.writer.put(protocol.encode_json(FrameKind.EXIT, {
            "exitcode": code, "reason": reason}), flush=True)
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(code)

    # -- main loop --------------------------------------------------------
    def _call(self, hook: Callable[[Any], Any], received: Any) -> None:
        self.busy = True
        try:
            hook(received)
        finally:
            self.busy = False

    def run(self) -> Tuple[int, str]:
        """Call the handler hooks on each message; return (exit status, reason)."""
        handler = self.handler
        last: Any = None
        code, reason = EXIT_OK, "closed by the caller"
        while True:
            item = self.next_frame()
            if isinstance(item, str):  # "eof" or "lost"
                if item == "lost":
                    code, reason = EXIT_CALLER_LOST, "no heartbeat from the caller"
                elif not self.caller_said_end:
                    reason = "end of input without END: the caller went away"
                break
            if isinstance(item, Exception):
                code, reason = EXIT_PROTOCOL, f"bad input from the caller: {item}"
                break
            if item.kind == FrameKind.PING:
                continue
            if item.kind != FrameKind.DATA:
                code, reason = EXIT_PROTOCOL, f"unexpected {item.kind.name} frame #{item.number}"
                break
            seq, payload = protocol.split_seq(item.payload)
            try:
                received = serial.loads(payload)
            except Exception as exc:
                self._report_error(seq, "loads", exc)
                self.handled_seq = seq
                if self._over_tolerance():
                    code, reason = EXIT_HANDLE, f"message {seq} could not be read: {exc!r}"
                    break
                continue
            if not self.started:
                self.started = True
                try:
                    self._call(handler.atstart, received)
                except Exception as exc:
                    self._report_error(seq, "atstart", exc)
                    code, reason = EXIT_ATSTART, f"atstart failed: {exc!r}"
                    last = received
                    break
            if handler.is_term_message(received):
                self.handled_seq = seq
                last = received
                reason = f"term message {received!r}"
                break
            try:
                self._call(handler.handle, received)
            except Exception as exc:
                self._report_error(seq, "handle", exc)
                if self._over_tolerance():
                    self.handled_seq = seq
                    code, reason = EXIT_HANDLE, f"handle failed on message {seq}: {exc!r}"
                    break
            self.handled_seq = seq
            if seq - self.flushed_at >= ACK_EVERY:
                # A caller streaming without pause still sees progress.
                self.flushed_at = seq
                self.writer.flush()
        # What was handled is acknowledged before atexit, which may not return.
        self.writer.flush()
        if code != EXIT_CALLER_LOST or self.started:
            try:
                self._call(handler.atexit, last)
            except Exception as exc:
                self._report_error(self.handled_seq, "atexit", exc)
                if code == EXIT_OK:
                    code, reason = EXIT_ATEXIT, f"atexit failed: {exc!r}"
        self.writer.flush()
        return code, reason

    def _over_tolerance(self) -> bool:
        self.errors += 1
        tolerance = self.handler.tolerance
        return tolerance != -1 and self.errors > tolerance


def _read_start(in_fd: int, max_frame: int) -> Tuple[Dict[str, Any], bytes]:
    """Block until the caller's START frame; return its settings and the bytes after
    it (which are not parsed here: bad input there is the main loop's to report)."""
    pending = b""
    while True:
        data = os.read(in_fd, 65536)
        if not data:
            raise EOFError("the caller closed the pipe before sending START")
        pending += data
        if len(pending) < 5:
            continue
        kind, size = pending[0], int.from_bytes(pending[1:5], "big")
        if kind != FrameKind.START:
            raise ProtocolError(f"expected START, got frame kind {kind} first")
        if size > max_frame:
            raise ProtocolError(f"START frame of {size} bytes is too large")
        if len(pending) < 5 + size:
            continue
        (start,) = protocol.FrameReader(max_frame).feed(pending[:5 + size])
        return protocol.decode_json(start), pending[5 + size:]


def _kill_children() -> None:
    """End every process this agent started: they must not outlive the pipe."""
    if os.getpgrp() != os.getpid():
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(os.getpid(), signal.SIGTERM)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _take_over_stdio() -> Tuple[int, int, int]:
    """Move the protocol off fds 0/1; return (in_fd, out_fd, capture_read_fd)."""
    sys.stdout.flush()
    protocol.widen_pipe(0)
    protocol.widen_pipe(1)
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    capture_read, capture_write = os.pipe()
    os.dup2(capture_write, 1)
    os.close(capture_write)
    sys.stdin = open(os.devnull, encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True,
                                  write_through=True)
    return in_fd, out_fd, capture_read


def _quietly(action: Any) -> None:
    """Run a best-effort step of the agent's own exit path."""
    try:
        action()
    except Exception:  # noqa: BLE001 - a handler's stdio may be None or closed
        pass


def serve(handler: SSHPipeHandler) -> int:
    """Serve ``handler`` over this process's stdin/stdout; return the exit status."""
    in_fd, out_fd, capture_fd = _take_over_stdio()
    agent = _Agent(handler, in_fd, out_fd)
    hello = {"protocol": protocol.PROTOCOL_VERSION, "pid": os.getpid(),
             "host": socket.gethostname(), "handler": type(handler).__name__,
             "handler_id": handler.handler_id,
             # What this handler takes for a term message (the caller's own is
             # added from START): the caller need not guess.
             "term_messages": sorted(str(m) for m in handler.term_messages),
             # The caller may hold its CREDIT until a PING asks for it (see
             # _ReplyWindow): one frame less per message.
             "credit_on_request": True}
    hello.update(_versions())
    # The marker and hello go out before START is read: the caller sends START
    # without waiting, so start-up costs one round trip, not two.
    agent.writer.put(protocol.SYNC + protocol.encode_json(FrameKind.HELLO, hello), flush=True)
    try:
        settings, rest = _read_start(in_fd, protocol.DEFAULT_MAX_FRAME)
    except (EOFError, ProtocolError, OSError) as exc:
        sys.stderr.write(f"sshpipe agent: {exc}\n")
        return EXIT_PROTOCOL
    agent.heartbeat = float(settings.get("heartbeat", agent.heartbeat))
    agent.heartbeat_timeout = float(settings.get("heartbeat_timeout", agent.heartbeat_timeout))
    agent.max_frame = int(settings.get("max_frame", protocol.DEFAULT_MAX_FRAME))
    agent.reader.max_frame = agent.max_frame
    agent.window = _ReplyWindow(int(settings.get("reply_window", REPLY_WINDOW)),
                                int(settings.get("reply_window_bytes", REPLY_WINDOW_BYTES)))
    agent.ingest(rest)  # bad input there is reported through the main loop
    extra_terms = settings.get("term_messages") or []
    handler.term_messages = handler.term_messages | frozenset(extra_terms)
    handler._agent = agent

    log_handler = _FrameLogHandler(agent.writer)
    root = logging.getLogger()
    root.addHandler(log_handler)
    root.setLevel(int(settings.get("log_level", logging.DEBUG)))

    threads = [
        threading.Thread(target=agent.tick_loop, name="sshpipe-ticker", daemon=True),
        threading.Thread(target=agent.capture_loop, args=(capture_fd,), name="sshpipe-capture",
                         daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        code, reason = agent.run()
    except SystemExit as exc:
        # A hook called sys.exit(): honour the status, end in order all the same.
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        reason = f"the handler called sys.exit({exc.code!r})"
        if not isinstance(exc.code, (int, type(None))):
            text = f"{exc.code}\n"  # read while exc is bound (Python unbinds it after)
            _quietly(lambda: (sys.stderr.write(text), sys.stderr.flush()))
    except BaseException as exc:  # the outermost loop: report, then end in order
        code, reason = EXIT_HANDLE, f"the agent failed: {exc!r}"
        traceback.print_exc()
    finally:
        handler._agent = None
        root.removeHandler(log_handler)
        _quietly(lambda: sys.stdout.flush())  # the handler may have set it to None or closed it
    # Children go first: one that holds fd 1 (the capture pipe) or the session's
    # stdout would otherwise keep the capture thread, and the channel, open.
    _kill_children()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # our own last write end of the capture pipe
    os.close(devnull)
    threads[1].join(timeout=1.0)
    agent.writer.put(protocol.encode_json(FrameKind.EXIT, {"exitcode": code, "reason": reason}),
                     flush=True)
    agent.stopping.set()
    _end_within(SHUTDOWN_GRACE, code)
    return code


def _end_within(grace: float, code: int) -> None:
    """End the process with ``code`` if it still runs ``grace`` seconds from now.

    A daemon thread, so it also runs while the interpreter waits for non-daemon
    threads at exit (a thread pool's busy worker, a handler's forgotten thread),
    which would otherwise keep the agent, and its session, forever.
    """
    def end() -> None:
        time.sleep(grace)
        names = sorted(thread.name for thread in threading.enumerate()
                       if not thread.daemon and thread is not threading.main_thread())
        kept = f"threads still running: {', '.join(names)}" if names else "its exit did not return"
        _quietly(lambda: os.write(2, f"sshpipe agent: ended {grace:g} s after its EXIT ({kept})"
                                     "\n".encode()))
        os._exit(code)

    threading.Thread(target=end, name="sshpipe-shutdown-bound", daemon=True).start()
