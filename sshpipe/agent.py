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
from typing import Any, Deque, List, Optional, Tuple, Union

from sshpipe import protocol, serial
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
# Flush once this much is buffered, whatever else is pending.
WRITE_BATCH = 256 * 1024



class _Writer:
    """The protocol output: one lock, a batch of frames, written with one writev.

    Every write ends with an ACK for what has been handled so far (when that
    changed): a reply never reaches the caller ahead of the acknowledgement of
    the message it answers, whichever thread flushes it.
    """

    def __init__(self, fd: int):
        self._fd = fd
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
            protocol.write_all(self._fd, *chunks)
        except OSError:
            self.broken = True  # the caller is gone; the reader will see EOF
        self.last_write = time.monotonic()


class _FrameLogHandler(logging.Handler):
    """Sends every log record to the caller as a LOG frame."""

    def __init__(self, writer: _Writer, handler_id: str):
        super().__init__()
        self._writer = writer
        self._handler_id = handler_id

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            exc_text = record.exc_text
            if record.exc_info and not exc_text:
                exc_text = logging.Formatter().formatException(record.exc_info)
            fields = {
                "name": record.name, "levelno": record.levelno,
                "levelname": record.levelname, "msg": message, "created": record.created,
                "msecs": record.msecs, "pathname": record.pathname,
                "filename": record.filename, "module": record.module,
                "lineno": record.lineno, "funcName": record.funcName,
                "process": record.process, "processName": record.processName,
                "thread": record.thread, "threadName": record.threadName,
                "exc_text": exc_text, "stack_info": record.stack_info,
                "handler_id": self._handler_id,
            }
            self._writer.put(protocol.encode_json(FrameKind.LOG, fields))
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


def _versions() -> dict:
    return {"python": platform.python_version(), "dill": _dill_version()}


class _Agent:
    """One serving session: the state shared by the main loop and its threads."""

    def __init__(self, handler: SSHPipeHandler, in_fd: int, out_fd: int):
        self.handler = handler
        self.in_fd = in_fd
        self.writer = _Writer(out_fd)
        self.reader = protocol.FrameReader()
        self.frames: Deque[Union[Frame, Exception]] = deque()
        # One buffer for every read: a fresh 1 MiB bytes per read cost an mmap and
        # munmap per message.
        self.read_buffer = bytearray(protocol.PIPE_BUFFER)
        self.read_view = memoryview(self.read_buffer)
        self.heartbeat = 5.0
        self.heartbeat_timeout = 30.0
        self.last_input = time.monotonic()
        self.busy = False          # the main thread is inside a handler hook
        self.stopping = threading.Event()
        self.flushed_at = 0
        self.errors = 0
        self.started = False
        self.main_thread = threading.get_ident()  # serve() builds the agent on it

    # -- output -----------------------------------------------------------
    def reply(self, obj: Any) -> None:
        # The main thread flushes when it runs out of input; a reply from any other
        # thread (a handler's own workers) may come while the main thread waits, so
        # it goes out at once.
        frame = protocol.encode(FrameKind.REPLY, serial.dumps(obj))
        self.writer.put(frame, flush=threading.get_ident() != self.main_thread)

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
    def next_frame(self) -> Union[Frame, str, Exception]:
        """The next frame from the caller, or "eof", "lost", or the parse error.

        Before it waits for input it acknowledges what was handled and flushes
        the output: that is when a batch of replies goes out.
        """
        while not self.frames:
            self.writer.flush()
            ready, _, _ = select.select([self.in_fd], [], [], self.heartbeat)
            now = time.monotonic()
            if not ready:
                if now - self.last_input > self.heartbeat_timeout:
                    return "lost"
                continue
            count = os.readv(self.in_fd, [self.read_buffer])
            self.last_input = now
            if not count:
                return "eof"
            try:
                self.frames.extend(self.reader.feed(self.read_view[:count]))
            except ProtocolError as exc:
                return exc
        return self.frames.popleft()

    # -- threads ----------------------------------------------------------
    def tick_loop(self) -> None:
        """Ticker thread: flush late frames, send heartbeats, notice a caller that
        hung up while a handler hook is busy (it cannot read the input then)."""
        poller = select.poll()
        poller.register(self.in_fd, select.POLLHUP | select.POLLERR)
        while not self.stopping.wait(FLUSH_DELAY):
            self.writer.flush(older_than=FLUSH_DELAY)
            if time.monotonic() - self.writer.last_write >= self.heartbeat:
                self.writer.put(protocol.encode(FrameKind.PING), flush=True)
            if self.busy and any(event & (select.POLLHUP | select.POLLERR)
                                 for _, event in poller.poll(0)):
                self._exit_hard_after_grace(EXIT_CALLER_LOST)
                return

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

    def _exit_hard_after_grace(self, code: int) -> None:
        """The caller hung up while a hook is busy. Nobody can receive its results,
        so after a short grace (one heartbeat, at most EXIT_GRACE) the agent and
        everything it started are ended: on a busy thread signal handlers cannot be
        changed, so the whole process group, this process included, gets SIGKILL."""
        if self.stopping.wait(min(EXIT_GRACE, self.heartbeat)):
            return
        self.writer.put(protocol.encode_json(FrameKind.EXIT, {
            "exitcode": code, "reason": "the caller hung up and the handler did not return"}),
            flush=True)
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(code)

    # -- main loop --------------------------------------------------------
    def _call(self, hook, received: Any) -> None:
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
            if item == "eof":
                break
            if item == "lost":
                code, reason = EXIT_CALLER_LOST, "no heartbeat from the caller"
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


def _read_start(in_fd: int, max_frame: int) -> Tuple[dict, bytes]:
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


def serve(handler: SSHPipeHandler) -> int:
    """Serve ``handler`` over this process's stdin/stdout; return the exit status."""
    in_fd, out_fd, capture_fd = _take_over_stdio()
    agent = _Agent(handler, in_fd, out_fd)
    hello = {"protocol": protocol.PROTOCOL_VERSION, "pid": os.getpid(),
             "host": socket.gethostname(), "handler": type(handler).__name__,
             "handler_id": handler.handler_id}
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
    agent.reader.max_frame = int(settings.get("max_frame", protocol.DEFAULT_MAX_FRAME))
    try:
        agent.frames.extend(agent.reader.feed(rest))
    except ProtocolError as exc:
        agent.frames.append(exc)  # reported through the main loop, like any bad input
    extra_terms = settings.get("term_messages") or []
    handler.term_messages = handler.term_messages | frozenset(extra_terms)
    handler._agent = agent

    log_handler = _FrameLogHandler(agent.writer, handler.handler_id)
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
    except BaseException as exc:  # the outermost loop: report, then end in order
        code, reason = EXIT_HANDLE, f"the agent failed: {exc!r}"
        traceback.print_exc()
    finally:
        handler._agent = None
        root.removeHandler(log_handler)
        sys.stdout.flush()
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
    return code
