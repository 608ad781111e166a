"""Task functions for the workers tests, shipped to the remotes with modules=["wtasks"]."""
from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("wtasks")


def record_run(directory: str, key: object, seconds: float = 0.0) -> int:
    """Append one line per execution to ``directory/<key>``, sleep, return the pid."""
    with open(os.path.join(directory, str(key)), "a", encoding="ascii") as marker:
        marker.write(f"{os.getpid()}\n")
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
    """Write this process's pid to ``path``, then sleep."""
    with open(path + ".tmp", "w", encoding="ascii") as out:
        out.write(str(os.getpid()))
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
