"""Log files for :mod:`sshpipe.mplog`: private creation and rollover by time or size.

:class:`TimedSizedRotatingHandler` is a :class:`logging.handlers.TimedRotatingFileHandler`
that also rolls over when the file would grow past ``maxBytes``: whichever comes
first. Both triggers use one naming scheme, so a size rollover inside a time
interval never overwrites a backup::

    app.log                                 the file being written
    app.log.2026-11-27_22-00-00             a backup, named by the time it was started
    app.log.2026-11-27_22-00-00.1           a second backup started in the same second

Backups sort by name in the order they were written; ``backupCount`` keeps that
many of the newest (0 keeps all, as :class:`~logging.handlers.TimedRotatingFileHandler`
does). Files are created with mode 0600 whatever the umask; an existing file is
appended to (or truncated with ``mode='w'``) and keeps its mode.
"""
from __future__ import annotations

import datetime
import io
import locale
import logging
import logging.handlers
import os
import re
import time
from typing import Callable, List, Literal, Optional

__all__ = ["TimedSizedRotatingHandler", "open_private"]

# Log files may hold host names, commands and payload excerpts: owner-only.
FILE_MODE = 0o600
# Backup suffix: the local (or UTC) time the backed-up file was started.
# Fixed-width fields, so sorting names sorts by time.
BACKUP_STAMP = "%Y-%m-%d_%H-%M-%S"
_BACKUP_RE = r"(\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})(?:\.(\d+))?"


def open_private(path: str, mode: Literal["a", "w"] = "a", encoding: Optional[str] = None,
                 errors: Optional[str] = None) -> io.TextIOWrapper:
    """Open a text file for writing, creating it with mode 0600 if it does not exist.

    Args:
        path: file to open.
        mode: ``'a'`` (append) or ``'w'`` (truncate).
        encoding, errors: as for :func:`open`.

    Returns:
        The open text stream.
    """
    return open(path, mode, encoding=encoding, errors=errors,
                opener=lambda name, flags: os.open(name, flags, FILE_MODE))


class TimedSizedRotatingHandler(logging.handlers.TimedRotatingFileHandler):
    """A file handler that rolls over on a time interval or a size limit, whichever first.

    Args:
        filename: the log file.
        mode: ``'a'`` appends to an existing file, ``'w'`` truncates it.
        maxBytes: roll over before a record would take the file past this many
            bytes; 0 means no size limit. A single record larger than the limit
            still goes into a file of its own.
        backupCount: how many backups to keep; 0 keeps all.
        encoding, errors: as for :func:`open`; the encoding also counts the bytes.
        delay: open the file at the first record rather than now.
        when, interval, utc, atTime: the time interval, exactly as for
            :class:`logging.handlers.TimedRotatingFileHandler`.
        clock: a function returning the current time in seconds since the epoch;
            :func:`time.time` by default. Tests pass a controlled clock.

    Each record is flushed to the file as it is written; set
    ``flush_every_record = False`` on an instance to leave flushing to the caller
    (MpLogger's listener does, and flushes whenever its queue runs empty).

    A custom ``namer`` changes backup names, but then ``backupCount`` cannot find
    them to delete; use ``rotator`` (e.g. to compress) with the default names.
    """

    flush_every_record = True

    def __init__(self, filename: str, mode: str = "a", maxBytes: int = 0, backupCount: int = 0,
                 encoding: Optional[str] = None, delay: bool = False, when: str = "h",
                 interval: int = 1, utc: bool = False, atTime: Optional[datetime.time] = None,
                 errors: Optional[str] = None, *, clock: Optional[Callable[[], float]] = None):
        if mode not in ("a", "w"):
            raise ValueError(f"mode must be 'a' or 'w', not {mode!r}")
        if maxBytes < 0 or backupCount < 0:
            raise ValueError("maxBytes and backupCount must not be negative")
        self._clock: Callable[[], float] = clock or time.time
        filename = os.path.abspath(os.fspath(filename))
        existed = os.path.exists(filename)
        # Opened below, once mode and the size counter are set.
        super().__init__(filename, when=when, interval=interval, backupCount=backupCount,
                         encoding=encoding, delay=True, utc=utc, atTime=atTime, errors=errors)
        self.mode = mode
        self.delay = delay
        self.maxBytes = maxBytes
        self._byte_encoding = encoding or locale.getpreferredencoding(False)
        self._size = 0
        self._backup_re = re.compile(
            re.escape(os.path.basename(filename)) + r"\." + _BACKUP_RE + "$")
        now = self._clock()
        started = os.stat(filename).st_mtime if existed and mode == "a" else now
        self._started = started
        # From an existing file's last write, as TimedRotatingFileHandler does: a
        # file last written intervals ago rolls over at its first new record.
        self.rolloverAt = self.computeRollover(int(started))
        if not delay:
            self.stream = self._open()

    # -- file handling ---------------------------------------------------------

    def _open(self) -> io.TextIOWrapper:
        mode: Literal["a", "w"] = "w" if self.mode == "w" else "a"
        stream = open_private(self.baseFilename, mode, self.encoding, self.errors)
        # 'w' truncates what was there before this handler; a reopen (after
        # close(), or of a fresh file after rollover) must not truncate again.
        self.mode = "a"
        # Text-mode tell() is slow; count bytes ourselves from here on.
        self._size = stream.seek(0, os.SEEK_END)
        return stream

    def _nbytes(self, text: str) -> int:
        if text.isascii():
            return len(text)
        return len(text.encode(self._byte_encoding, self.errors or "strict"))

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record, rolling over first if the interval has passed or the
        record would take the file past ``maxBytes``."""
        try:
            text = self.format(record) + self.terminator
            size = self._nbytes(text) if self.maxBytes else 0
            if self.stream is None:
                self.stream = self._open()
            if self._clock() >= self.rolloverAt or (
                    self.maxBytes and self._size and self._size + size > self.maxBytes):
                self.doRollover()
                if self.stream is None:
                    self.stream = self._open()
            self.stream.write(text)
            self._size += size
            if self.flush_every_record:
                self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        """True if the next write of ``record`` should go to a fresh file."""
        if self._clock() >= self.rolloverAt:
            return True
        if not self.maxBytes:
            return False
        if self.stream is None:
            self.stream = self._open()
        size = self._nbytes(self.format(record) + self.terminator)
        return bool(self._size) and self._size + size > self.maxBytes

    # -- rollover --------------------------------------------------------------

    def _next_rollover(self, start: int, now: float) -> int:
        at = self.computeRollover(start)
        while at <= now:
            at += self.interval
        if (self.when == "MIDNIGHT" or self.when.startswith("W")) and not self.utc:
            # A DST change before the next rollover moves local midnight by an hour.
            dst_now = time.localtime(int(now))[-1]
            dst_then = time.localtime(at)[-1]
            if dst_now != dst_then:
                at += 3600 if dst_now else -3600
        return at

    def _backup_name(self) -> str:
        stamp_time = time.gmtime(self._started) if self.utc else time.localtime(self._started)
        base = f"{self.baseFilename}.{time.strftime(BACKUP_STAMP, stamp_time)}"
        name, n = base, 0
        while os.path.exists(self.rotation_filename(name)):
            n += 1
            name = f"{base}.{n}"
        return self.rotation_filename(name)

    def doRollover(self) -> None:
        """Close the file, rename it to a backup, delete backups past ``backupCount``."""
        if self.stream:
            self.stream.close()
            self.stream = None
        now = self._clock()
        if os.path.exists(self.baseFilename):
            self.rotate(self.baseFilename, self._backup_name())
        if self.backupCount > 0:
            for path in self.getFilesToDelete():
                os.remove(path)
        self._started = now
        self._size = 0
        self.rolloverAt = self._next_rollover(int(now), now)
        if not self.delay:
            self.stream = self._open()

    def backups(self) -> List[str]:
        """Paths of this handler's backups, oldest first."""
        folder = os.path.dirname(self.baseFilename)
        found = []
        for entry in os.listdir(folder):
            match = self._backup_re.match(entry)
            if match:
                found.append((match.group(1), int(match.group(2) or 0),
                              os.path.join(folder, entry)))
        return [path for _, _, path in sorted(found)]

    def getFilesToDelete(self) -> List[str]:
        """The oldest backups beyond ``backupCount``."""
        backups = self.backups()
        if len(backups) <= self.backupCount:
            return []
        return backups[:len(backups) - self.backupCount]
