"""Functions the joblib backend tests run remotely (shipped with modules=["joblib_tasks"])."""
from __future__ import annotations

import os
import time


def square(x):
    return x * x


def where(x, seconds=0.0):
    """(x, worker pid, the host's marker from the environment), after ``seconds``."""
    time.sleep(seconds)
    return x, os.getpid(), os.environ.get("JOBLIB_TEST_HOST", "")


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def span(x, seconds, directory):
    """Sleep ``seconds``; record (start, end) so the test can count overlaps."""
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    with open(os.path.join(directory, f"{x}-{os.getpid()}"), "w") as out:
        out.write(f"{start} {end}")
    return x


def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


def _record_self(directory):
    """A file named by this process's pid holding its start time (field 22 of
    /proc/self/stat): with both, the test names this process and no other."""
    with open("/proc/self/stat", "rb") as stat:
        start = stat.read().rsplit(b")", 1)[1].split()[19].decode()
    with open(os.path.join(directory, str(os.getpid())), "w") as out:
        out.write(start)


def long_or_fail(x, directory):
    """Item 0 fails once another has started; the others record their pid and
    sleep long (an abort must end them)."""
    if x == 0:
        deadline = time.time() + 30
        while not os.listdir(directory) and time.time() < deadline:
            time.sleep(0.01)
        raise RuntimeError("item 0 failed on purpose")
    _record_self(directory)
    time.sleep(60)
    return x


def long_pid(x, directory):
    _record_self(directory)
    time.sleep(60)
    return x


def nested(x):
    """A Parallel inside a remote task: which backend it got, where it ran."""
    from joblib import Parallel, delayed
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    inner = Parallel(n_jobs=2)(delayed(square)(x + i) for i in range(3))
    return type(backend).__name__, inner, os.getpid()
