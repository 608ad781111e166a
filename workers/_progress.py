"""A progress bar for ``SSHExecutor.map(progress=True)``: on a terminal only.

It draws on stderr, and only when stderr is a terminal: redirected to a file or
a pipe (CI logs, tests) it writes nothing at all.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import IO, Optional

__all__ = ["ProgressBar"]

# Redraws at most this often: a terminal cannot show more, and each redraw costs.
REDRAW_INTERVAL = 0.1
BAR_WIDTH = 30


class ProgressBar:
    """Counts finished items out of ``total``; safe to advance from any thread."""

    def __init__(self, total: int, *, enabled: bool = True, label: str = "",
                 stream: Optional[IO[str]] = None):
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(enabled and total and callable(isatty) and isatty())
        self.done = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._drawn = 0.0
        self._closed = False

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
            if self.enabled and not self._closed:
                now = time.monotonic()
                if now - self._drawn >= REDRAW_INTERVAL or self.done >= self.total:
                    self._draw(now)

    def close(self) -> None:
        with self._lock:
            if self.enabled and not self._closed:
                self._draw(time.monotonic())
                self.stream.write("\n")
                self.stream.flush()
            self._closed = True

    def _draw(self, now: float) -> None:
        self._drawn = now
        fraction = min(1.0, self.done / self.total)
        filled = int(fraction * BAR_WIDTH)
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        label = f"{self.label} " if self.label else ""
        self.stream.write(f"\r{label}[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
                          f"{self.done}/{self.total} {elapsed:5.1f} s {rate:7.1f}/s")
        self.stream.flush()
