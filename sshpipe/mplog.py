"""Multiprocess logging: every process's records through one queue to one writer.

::

     process that called start()                            child processes (any start method)
    +-----------------------------------------------+      +-------------------------------+
    | start() logger ---+                           |      | get_logger(info) logger --+   |
    | "sshpipe" logger -+-> QueueHandler ---+       |      | "sshpipe" logger ---------+   |
    |   ^ remote agents' records, re-emitted|       |      |             QueueHandler  |   |
    |     as sshpipe.remote.<host>          v       |      +---------------------------|---+
    |                       records queue (spawn ctx) <--------------------------------+
    |                                       |       |
    |  listener thread: route by process key|       |
    |    +-> <prefix><name[.key...]><suffix>.log   (one per process key)
    |    +-> <prefix><MpLogger name><suffix>.log   (consolidate=True)
    |    +-> stderr                                 (console=True, or no logdir)
    +-----------------------------------------------+

Actors:

- ``MpLogger`` (the process that calls :meth:`MpLogger.start`) creates the records
  queue, the listener thread and the files, attaches a queue handler to the
  logger it returns and to the ``sshpipe`` logger (remote agents' records are
  re-emitted under ``sshpipe.remote.<host>``), and in :meth:`MpLogger.stop`
  detaches them, puts the end marker, waits for the listener and closes
  everything. Only that process may stop it.
- The queue handler (in any process) puts each record, message and arguments
  merged, on the queue; the queue's feeder thread pickles it and writes it to the
  pipe. A child's feeder is flushed when the child exits normally, so records
  logged up to the last moment arrive before ``join()`` returns.
- The listener thread is the only reader of the queue and the only writer of the
  files: lines are never interleaved. It formats each record once
  (:class:`LevelBasedFormatter`) and writes it to the record's process-key file,
  the consolidated file and the console, as configured.
- :meth:`MpLogger.get_logger` (in a child) attaches a queue handler for the
  queue named in :meth:`MpLogger.logger_info`, once per process and logger chain.

Log files are created with mode 0600, in ``logdir`` (created with mode 0700 if
missing). There is no default directory: without ``logdir`` records go to the
console only.
"""
from __future__ import annotations

import enum
import logging
import logging.handlers
import multiprocessing
import os
import queue as queue_module
import re
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from sshpipe._logfiles import TimedSizedRotatingHandler
from sshpipe._logformat import LevelBasedFormatter
from sshpipe._logqueue import QueueHandler, attach, detach_all
from sshpipe._logwire import from_wire

__all__ = [
    "LevelBasedFormatter",
    "LoggerInfo",
    "MpLogger",
    "MpLoggerState",
    "TimedSizedRotatingHandler",
]

_log = logging.getLogger(__name__)

# Name of the main logger and of the consolidated file when neither the
# constructor nor start() names one.
DEFAULT_NAME = "mplogger"
# Remote agents' records are re-emitted into "sshpipe.remote.<host>"; attaching
# here also brings sshpipe's own records (those its loggers let through) to the files.
CAPTURE_LOGGER = "sshpipe"
# SSHPipe re-emits a remote record only if this logger is enabled for its level;
# MpLogger sets it to logging_level when the user has not set a level on it.
REMOTE_LOGGER = "sshpipe.remote"
# Keyword arguments passed on to each file's TimedSizedRotatingHandler.
HANDLER_KWARGS = frozenset(
    ["maxBytes", "backupCount", "encoding", "delay", "when", "interval", "utc", "atTime", "errors"])
# A directory MpLogger creates is the caller's alone.
DIR_MODE = 0o700
# Put on the queue by stop(): the listener writes what came before it and ends.
_END = None
# Files are flushed this often (seconds) by the flusher thread, not after every
# record: one write per buffer-full or per interval, so lines reach the disk at
# most this late. (Noticing an empty queue instead costs a selector per record.)
FLUSH_INTERVAL = 0.1
# Characters kept in a file name taken from record fields; others become "_",
# so a logger name or host from a remote agent cannot leave logdir.
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


class MpLoggerState(enum.Enum):
    """Lifecycle of an :class:`MpLogger`; :meth:`MpLogger.start` and
    :meth:`MpLogger.stop` are the only transitions."""
    NEW = "new"          # constructed; nothing created yet
    RUNNING = "running"  # queue, listener thread and handlers in place
    STOPPED = "stopped"  # everything written and closed; cannot start again


@dataclass(frozen=True)
class LoggerInfo:
    """What a child process needs to log through a running :class:`MpLogger`.

    Pass it to the child as an argument of the ``Process`` (or pool initializer):
    it holds a :class:`multiprocessing.Queue`, which can reach another process
    only while that process is being started, under spawn, fork or forkserver.
    """
    queue: Any
    token: str            # identifies this MpLogger's handlers in a logger chain
    logging_level: int
    name: str             # the main logger's name; default for get_logger()


def _safe_part(value: Any) -> str:
    text = _UNSAFE.sub("_", str(value)).lstrip(".")
    return text


class _OnceFormatter(logging.Formatter):
    """Formats each record once for all the listener's handlers (file, consolidated,
    console). Used by the listener thread only."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self._inner = inner
        self._last: Tuple[Optional[logging.LogRecord], str] = (None, "")

    def format(self, record: logging.LogRecord) -> str:
        last, text = self._last
        if last is not record:
            text = self._inner.format(record)
            self._last = (record, text)
        return text


class _Listener:
    """Reads the records queue and writes the files (see the module docstring).

    Created, started and closed by MpLogger in the process that called start();
    every handler it holds is used by its thread only, until close().
    """

    def __init__(self, records: Any, formatter: logging.Formatter, key_fields: Sequence[str],
                 logdir: Optional[str], consolidated: Optional[str], console: bool,
                 file_prefix: str, file_suffix: str, file_mode: str,
                 handler_kwargs: Mapping[str, Any]):
        self._records = records
        self._formatter = _OnceFormatter(formatter)
        self._key_fields = tuple(key_fields)
        self._logdir = logdir
        self._consolidated = consolidated
        self._prefix = file_prefix
        self._suffix = file_suffix
        self._file_mode = file_mode
        self._handler_kwargs = dict(handler_kwargs)
        self._console: Optional[logging.Handler] = None
        if console or logdir is None:
            self._console = logging.StreamHandler(sys.stderr)
            self._console.setFormatter(self._formatter)
        self._files: Dict[str, TimedSizedRotatingHandler] = {}       # path -> handler
        self._routes: Dict[Tuple[str, ...], List[logging.Handler]] = {}  # key -> handlers
        self.failures = 0       # records that could not be read or routed
        self.last_failure: Optional[BaseException] = None
        self.written = 0        # records dispatched, for the flusher to notice new ones
        self._stopping = threading.Event()   # set by _run when it has read the end marker
        self._thread = threading.Thread(target=self._run, name="sshpipe-mplogger", daemon=True)
        self._flusher = threading.Thread(target=self._flush_loop, name="sshpipe-mplogger-flush",
                                         daemon=True)

    def path_for(self, stem: str) -> str:
        """The file for records whose process key (or consolidated name) is ``stem``."""
        assert self._logdir is not None
        return os.path.join(self._logdir, f"{self._prefix}{stem}{self._suffix}.log")

    def start(self) -> None:
        self._thread.start()
        self._flusher.start()

    def join(self, timeout: Optional[float]) -> bool:
        """Wait for both threads to end; True if they did."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._flusher.join(timeout)
        return not self._flusher.is_alive()

    def _run(self) -> None:
        get = self._records.get
        while True:
            try:
                item = get()
            except (EOFError, OSError):
                break                       # the queue was closed under us
            except Exception as exc:        # a record that cannot be unpickled here
                self._failed(exc)
                continue
            if item is _END:
                break
            self._dispatch(item)
        # Records that were already in the pipe behind the end marker (from a
        # process still running when stop() was called).
        while True:
            try:
                item = self._records.get_nowait()
            except (queue_module.Empty, EOFError, OSError):
                break
            except Exception as exc:
                self._failed(exc)
                continue
            if item is not _END:
                self._dispatch(item)
        self._stopping.set()

    def _flush_loop(self) -> None:
        written = -1
        while not self._stopping.wait(FLUSH_INTERVAL):
            if written != self.written:
                written = self.written
                self._flush()

    def _flush(self) -> None:
        # Handler.flush takes the handler's lock: safe against a write in _run.
        for handler in list(self._files.values()):
            handler.flush()

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_failure = exc

    def _dispatch(self, item: Any) -> None:
        try:
            record = from_wire(item)
            key = tuple(_safe_part(getattr(record, field, "")) for field in self._key_fields)
            handlers = self._routes.get(key)
            if handlers is None:
                handlers = self._routes[key] = self._route(key)
            for handler in handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
            self.written += 1
        except Exception as exc:            # a broken record or an unopenable file
            self._failed(exc)

    def _route(self, key: Tuple[str, ...]) -> List[logging.Handler]:
        handlers: List[logging.Handler] = []
        if self._logdir is not None:
            stems = [".".join(part for part in key if part) or DEFAULT_NAME]
            if self._consolidated is not None:
                stems.append(self._consolidated)
            # The main process's file may be the consolidated one: write it once.
            for path in dict.fromkeys(self.path_for(stem) for stem in stems):
                handlers.append(self._file(path))
        if self._console is not None:
            handlers.append(self._console)
        return handlers

    def _file(self, path: str) -> TimedSizedRotatingHandler:
        handler = self._files.get(path)
        if handler is None:
            handler = TimedSizedRotatingHandler(path, mode=self._file_mode, **self._handler_kwargs)
            handler.setFormatter(self._formatter)
            handler.flush_every_record = False    # _flush_loop flushes every FLUSH_INTERVAL
            self._files[path] = handler
        return handler

    def close(self) -> None:
        """Flush and close every file (after the thread has ended)."""
        for handler in self._files.values():
            handler.close()
        if self._console is not None:
            self._console.flush()
        self._files.clear()
        self._routes.clear()


def _enable_remote(level: int) -> bool:
    """Let remote records of ``level`` and above through; True if the level was set here."""
    remote = logging.getLogger(REMOTE_LOGGER)
    if remote.level != logging.NOTSET:
        return False                        # the user's choice stands
    remote.setLevel(level)
    return True


def _key_fields(process_key: Union[None, str, Sequence[str]]) -> List[str]:
    if process_key is None:
        extra: Sequence[str] = ()
    elif isinstance(process_key, str):
        extra = [process_key]
    else:
        extra = list(process_key)
    return ["name"] + [field for field in extra if field != "name"]


def _prepare_logdir(logdir: Union[str, "os.PathLike[str]"]) -> str:
    path = os.path.abspath(os.fspath(logdir))
    try:
        os.makedirs(path, mode=DIR_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise NotADirectoryError(f"logdir {path} exists and is not a directory") from None
    return path


class MpLogger:
    """Logging for many processes into one set of files, through one queue.

    Args:
        name: the consolidated file's name and the main process's logger name when
            :meth:`start` gets none; ``'mplogger'`` if neither says.
        logging_level: level of the loggers MpLogger sets up and of its handlers:
            records below it (remote agents' included) are dropped.
        level_formats: formats by level, see :class:`LevelBasedFormatter`.
        datefmt: date format; ``%f`` is microseconds.
        consolidate: also write every record to ``<name>.log``.
        process_key: record attribute(s) appended to the logger name to name a
            record's file, e.g. ``'processName'``; the logger name alone by default.
        file_prefix, file_suffix: put around every file name (before ``.log``).
        file_mode: ``'a'`` appends to existing files, ``'w'`` truncates them.
        logdir: directory for the files, created with mode 0700 if missing. None
            writes no files, and records go to the console (stderr).
        console: also write records to stderr.
        **handler_kwargs: ``maxBytes``, ``backupCount``, ``encoding`` (default
            utf-8), ``errors``, ``delay``, ``when``, ``interval``, ``utc``,
            ``atTime``: passed to each file's :class:`TimedSizedRotatingHandler`.

    Raises:
        TypeError: an unknown keyword argument.
        ValueError: a bad ``file_mode``, or a prefix or suffix holding a path separator.
    """

    def __init__(self, name: Optional[str] = None, logging_level: int = logging.INFO,
                 level_formats: Optional[Mapping[Any, str]] = None, datefmt: Optional[str] = None,
                 consolidate: bool = False, process_key: Union[None, str, Sequence[str]] = None,
                 file_prefix: str = "", file_suffix: str = "", file_mode: str = "a",
                 logdir: Union[None, str, "os.PathLike[str]"] = None, console: bool = False,
                 **handler_kwargs: Any):
        unknown = sorted(set(handler_kwargs) - HANDLER_KWARGS)
        if unknown:
            raise TypeError(f"MpLogger got unexpected keyword argument(s): {', '.join(unknown)}")
        if file_mode not in ("a", "w"):
            raise ValueError(f"file_mode must be 'a' or 'w', not {file_mode!r}")
        for label, text in (("file_prefix", file_prefix), ("file_suffix", file_suffix)):
            if os.sep in text or (os.altsep and os.altsep in text):
                raise ValueError(f"{label} must not contain a path separator: {text!r}")
        self.name = name
        self.logging_level = logging_level
        self.level_formats = level_formats
        self.datefmt = datefmt
        self.consolidate = consolidate
        self.process_key = process_key
        self.file_prefix = file_prefix
        self.file_suffix = file_suffix
        self.file_mode = file_mode
        self.logdir = logdir
        self.console = console
        self.handler_kwargs = {"encoding": "utf-8", **handler_kwargs}
        self._state = MpLoggerState.NEW
        self._lock = threading.Lock()      # guards state transitions
        self._owner_pid: Optional[int] = None
        self._info: Optional[LoggerInfo] = None
        self._listener: Optional[_Listener] = None
        self._end_sent = False
        self._remote_level_set = False     # start() set the sshpipe.remote level

    def __repr__(self) -> str:
        return (f"<MpLogger name={self.name!r} state={self._state.value} "
                f"logdir={self.logdir!r}>")

    @property
    def state(self) -> MpLoggerState:
        """Where this MpLogger is in its lifecycle."""
        return self._state

    @property
    def failures(self) -> int:
        """Records the listener could not read or route (0 when all is well)."""
        return self._listener.failures if self._listener is not None else 0

    def file_path(self, key: str) -> str:
        """The file records with process key ``key`` (dot-joined, e.g. ``'main.MainProcess'``)
        go to; ``key=self.name`` gives the consolidated file.

        Raises:
            RuntimeError: no ``logdir``, or not started.
        """
        if self._listener is None or self.logdir is None:
            raise RuntimeError("file_path() needs a started MpLogger with a logdir")
        return self._listener.path_for(".".join(_safe_part(p) for p in key.split(".")))

    def start(self, name: Optional[str] = None) -> logging.Logger:
        """Start the listener and return the logger of this (the main) process.

        Allowed in state NEW only.

        Args:
            name: the main process's logger name; the constructor's ``name`` (or
                ``'mplogger'``) when None.

        Returns:
            ``logging.getLogger(name)``, set to ``logging_level``, whose records
            (and those of the ``sshpipe`` loggers, remote agents' included) go to
            the listener.

        Raises:
            RuntimeError: already started or stopped.
        """
        with self._lock:
            if self._state is not MpLoggerState.NEW:
                raise RuntimeError(f"start() needs a new MpLogger; {self!r}")
            main_name = name or self.name or DEFAULT_NAME
            logdir = _prepare_logdir(self.logdir) if self.logdir is not None else None
            # Owned by this process: read only by the listener, closed by stop().
            # Children get it through LoggerInfo and only put. A spawn-context queue,
            # because its locks may be shared with children of every start method.
            records = multiprocessing.get_context("spawn").Queue()
            formatter = LevelBasedFormatter(self.level_formats, self.datefmt)
            listener = _Listener(
                records, formatter, _key_fields(self.process_key), logdir,
                (self.name or DEFAULT_NAME) if self.consolidate else None, self.console,
                self.file_prefix, self.file_suffix, self.file_mode, self.handler_kwargs)
            listener.start()
            info = LoggerInfo(records, uuid.uuid4().hex, self.logging_level, main_name)
            handler = QueueHandler(records, info.token, self.logging_level)
            logger = logging.getLogger(main_name)
            logger.setLevel(self.logging_level)
            attach(handler, [CAPTURE_LOGGER, main_name])
            self._remote_level_set = _enable_remote(self.logging_level)
            self._listener, self._info = listener, info
            self._owner_pid = os.getpid()
            self._state = MpLoggerState.RUNNING
            _log.debug("mplogger.started name=%s logdir=%s", main_name, logdir)
            return logger

    def logger_info(self) -> LoggerInfo:
        """What a child process passes to :meth:`get_logger`. Allowed in state RUNNING.

        Raises:
            RuntimeError: not running.
        """
        if self._state is not MpLoggerState.RUNNING or self._info is None:
            raise RuntimeError(f"logger_info() needs a running MpLogger; {self!r}")
        return self._info

    @classmethod
    def get_logger(cls, logger_info: LoggerInfo, name: Optional[str] = None) -> logging.Logger:
        """Return a logger, in any process, whose records go to the MpLogger.

        Also routes the process's ``sshpipe`` loggers (remote agents' records) there.
        Calling it again, or in a forked child that inherited the handlers, adds
        no second handler.

        Args:
            logger_info: from :meth:`logger_info` of the running MpLogger.
            name: the logger name (and so the file) for this process; the main
                logger's name when None.

        Returns:
            ``logging.getLogger(name)`` set to the MpLogger's level.

        Raises:
            TypeError: ``logger_info`` is not a :class:`LoggerInfo`.
        """
        if not isinstance(logger_info, LoggerInfo):
            raise TypeError(f"logger_info must come from MpLogger.logger_info(), "
                            f"not {type(logger_info).__name__}")
        name = name or logger_info.name
        handler = QueueHandler(logger_info.queue, logger_info.token, logger_info.logging_level)
        attach(handler, [CAPTURE_LOGGER, name])
        _enable_remote(logger_info.logging_level)
        logger = logging.getLogger(name)
        logger.setLevel(logger_info.logging_level)
        return logger

    def stop(self, timeout: Optional[float] = None) -> None:
        """Write every record queued so far, close the files and detach the handlers.

        Join the child processes first: a child that has exited has delivered all
        its records. Allowed in any state; only RUNNING does anything.

        Args:
            timeout: seconds to wait for the listener to write what is queued;
                None waits until it has.

        Raises:
            RuntimeError: called in a process other than the one that started it.
            TimeoutError: the listener did not finish within ``timeout``; the
                MpLogger stays RUNNING and stop() may be called again.
        """
        with self._lock:
            if self._state is not MpLoggerState.RUNNING:
                return
            if os.getpid() != self._owner_pid:
                raise RuntimeError("stop() must be called in the process that called start()")
            assert self._listener is not None and self._info is not None
            # Those start() attached, and any get_logger() in this process added.
            detach_all(self._info.token)
            if self._remote_level_set:
                logging.getLogger(REMOTE_LOGGER).setLevel(logging.NOTSET)
                self._remote_level_set = False
            if not self._end_sent:
                self._info.queue.put(_END)
                self._end_sent = True
            if not self._listener.join(timeout):
                raise TimeoutError(f"MpLogger listener still writing after {timeout}s")
            self._listener.close()
            self._info.queue.close()
            self._info.queue.join_thread()
            self._state = MpLoggerState.STOPPED
            if self._listener.failures:
                _log.warning("mplogger.stop: %d record(s) could not be written; last error: %r",
                             self._listener.failures, self._listener.last_failure)

    def __enter__(self) -> "MpLogger":
        if self._state is MpLoggerState.NEW:
            self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
