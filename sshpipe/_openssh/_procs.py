"""Processes that are not our children, named by pid *and* start time.

A master ssh daemonizes (it is nobody's child once it runs), and the watchdog
watches a caller it did not start. A bare pid can be reused by an unrelated
process, so every pid here travels with the start time the kernel recorded for it
(``/proc/<pid>/stat`` field 22), and signals go through a pidfd opened after that
start time was checked, which cannot be redirected to a newcomer.

Linux only (``/proc``, ``pidfd_open``); elsewhere the start time is ``None`` and
checks degrade to "a process with this pid exists". :class:`ProcessId` itself is
:mod:`sshpipe._procid`'s, shared with the test bed.
"""
from __future__ import annotations

import os
import select
import signal
import time
from typing import Optional

from sshpipe._procid import ProcessId, read_stat

__all__ = ["ProcessId", "identify", "is_running", "open_pidfd", "send_signal", "wait_exit"]

# Polling step when no pidfd is available (non-Linux): the delay in noticing an
# exit, traded against wake-ups of an otherwise idle process.
_POLL_STEP = 0.05


def identify(pid: int) -> Optional[ProcessId]:
    """The identity of the running process ``pid``, or None if there is none."""
    stat = read_stat(pid)
    if stat is None:
        if os.path.isdir("/proc/self"):
            return None
        try:  # no /proc: existence is all we can know
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ProcessId(pid, None)
    if stat[0] == "Z":
        return None
    return ProcessId(pid, stat[2])


def is_running(process: ProcessId) -> bool:
    """True while ``process`` (that very one, not a successor with its pid) runs."""
    now = identify(process.pid)
    return now is not None and (process.start is None or now.start == process.start)


def open_pidfd(process: ProcessId) -> Optional[int]:
    """A pidfd for ``process``, checked to be that process; None if it has ended
    or pidfds are not available (then use :func:`is_running`)."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        fd = os.pidfd_open(process.pid)
    except (ProcessLookupError, OSError):
        return None
    # Checked after opening: the fd now pins the process, so a match means this fd
    # refers to the process we were told about.
    if not is_running(process):
        os.close(fd)
        return None
    return fd


def wait_exit(process: ProcessId, timeout: Optional[float], pidfd: Optional[int] = None) -> bool:
    """Wait up to ``timeout`` s for ``process`` to end; True if it has ended."""
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
    deadline = None if timeout is None else time.monotonic() + timeout
    while is_running(process):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_STEP)
    return True


def send_signal(process: ProcessId, signum: int, pidfd: Optional[int] = None) -> bool:
    """Signal ``process`` if it still runs; False if it had already ended."""
    if pidfd is not None and hasattr(signal, "pidfd_send_signal"):
        try:
            signal.pidfd_send_signal(pidfd, signum)
            return True
        except ProcessLookupError:
            return False
    if not is_running(process):
        return False
    try:
        os.kill(process.pid, signum)
        return True
    except ProcessLookupError:
        return False
