"""Task functions for the workers tests, shipped to the remotes with modules=["wtasks"]."""
from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("wtasks")


def identity() -> str:
    """This process as "pid:start time" (field 22 of /proc/self/stat): the tests
    tell it from a later process that the kernel gives the same pid."""
    with open("/proc/self/stat", "rb") as stat:
        start = stat.read().rsplit(b")", 1)[1].split()[19].decode("ascii")
    return f"{os.getpid()}:{start}"


def record_run(directory: str, key: object, seconds: float = 0.0) -> int:
    """Append one line per execution (this process's identity()) to
    ``directory/<key>``, sleep, return the pid."""
    with open(os.path.join(directory, str(key)), "a", encoding="ascii") as marker:
        marker.write(identity() + "\n")
    time.sleep(seconds)
    return os.getpid()


def runs(directory: str, key: object) -> int:
    """How many times record_run ran for ``key``."""
    try:
        with open(os.path.join(directory, str(key)), encoding="ascii") as marker:
            return len(marker.read().split())
    except FileNotFoundError:
        return 0


def pid_then_sleep(path: str, seconds: float) -> int:
    """Write this process's identity() to ``path``, then sleep."""
    with open(path + ".tmp", "w", encoding="ascii") as out:
        out.write(identity())
    os.rename(path + ".tmp", path)
    time.sleep(seconds)
    return os.getpid()


def chatty(name: str) -> str:
    """Log at two levels and return."""
    log.info("step %s starting", name)
    log.warning("step %s done", name)
    return name


class Unpicklable(Exception):
    """An exception holding a lock, which pickle refuses."""

    def __init__(self):
        import threading

        super().__init__("holds a lock")
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise Unpicklable()


def sized(data: bytes, size: int) -> bytes:
    """Take ``data`` (any size) and return ``size`` bytes: large both ways."""
    return bytes(size) if len(data) >= 0 else b""


def append_line(path: str, text: str, seconds: float = 0.0) -> str:
    """Sleep, then append ``text`` as a line to ``path``; return it."""
    time.sleep(seconds)
    with open(path, "a", encoding="utf-8") as out:
        out.write(text + "\n")
    return text


def say(text: str, seconds: float = 0.0) -> None:
    """Sleep, then print ``text`` (stdout) and ``text`` reversed (stderr)."""
    import sys

    time.sleep(seconds)
    print(text)
    print(text[::-1], file=sys.stderr)


def init_marker(path: str) -> None:
    """An initializer: records this process in ``path`` (one line per call)."""
    global INITIALIZED
    INITIALIZED = path
    with open(path, "a", encoding="ascii") as out:
        out.write(f"{os.getpid()}\n")


INITIALIZED = None


def initialized() -> object:
    """What init_marker set in this worker process (None if it did not run)."""
    return INITIALIZED


def init_fails() -> None:
    """An initializer that raises."""
    raise ValueError("no database here")


class ExitsWhenLoaded:
    """Pickles fine; unpickling it calls sys.exit (CPython's ExitAtUnpickle)."""

    def __reduce__(self):
        import sys

        return sys.exit, ("unpickled",)


def exits_when_loaded() -> ExitsWhenLoaded:
    return ExitsWhenLoaded()
