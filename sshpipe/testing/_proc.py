"""Processes named by pid *and* start time, read from Linux ``/proc``.

A pid alone does not name a process: once a process is reaped the kernel hands
its pid to the next process that asks, within seconds on a busy machine. A test
that waits for "pid 4242 to be gone" can then wait on a stranger (and fail), and
one that checks "pid 4242 is alive" can see the stranger (and pass). So every
process here is a :class:`ProcessId`: the pid plus the process's start time
(field 22 of ``/proc/PID/stat``, clock ticks since boot), taken while the
process ran (:mod:`sshpipe._procid`, shared with the library). A ProcessId whose
pid now belongs to another process is not alive; one whose start is None had
already ended when it was identified, so it is never alive.

Stdlib only, and of sshpipe only :mod:`sshpipe._procid`: the watchdog process
(``_watchdog_process``) runs these functions with nothing else of sshpipe loaded.
"""
from __future__ import annotations

import os
import time
from typing import Dict, Iterable, List, Optional, Tuple, Union

from sshpipe._procid import ProcessId, read_stat

__all__ = ["ProcessId", "command_line", "descendants", "is_alive", "process_id",
           "process_name", "send_signal", "wait_gone"]

# How often wait_gone() looks again: often enough that a test sees an end within
# 10 ms, rarely enough that a long wait costs nothing on a shared machine.
POLL_INTERVAL = 0.01


def process_id(pid: int, *, gone_ok: bool = False) -> ProcessId:
    """The identity of the process that has ``pid`` now.

    Call it as soon as the pid is known (from a reply, a file, ``Popen.pid``):
    later, the pid may belong to another process. Raises ProcessLookupError when
    no process has ``pid``, since a wrong pid would otherwise make every "is it
    gone?" check pass; with ``gone_ok=True`` such a pid gives an identity that is
    never alive (for a process that may legitimately have ended already).
    """
    if isinstance(pid, ProcessId) or not isinstance(pid, int):
        raise TypeError(f"process_id() takes an int pid, not {pid!r}")
    stat = read_stat(pid)
    if stat is None:
        if gone_ok:
            return ProcessId(pid, None)
        raise ProcessLookupError(f"no process has pid {pid}")
    return ProcessId(pid, stat[2])


def _check(process: object) -> ProcessId:
    if not isinstance(process, ProcessId):
        raise TypeError(
            f"expected a ProcessId, not {process!r}: a bare pid may name another process "
            "by now; take process_id(pid) when the pid is learned")
    return process


def is_alive(process: ProcessId) -> bool:
    """True while ``process`` runs: its pid exists, with the same start time, and
    is not a zombie waiting to be reaped (nor dead)."""
    _check(process)
    if process.start is None:
        return False
    stat = read_stat(process.pid)
    return stat is not None and stat[2] == process.start and stat[0] not in ("Z", "X")


def _table() -> Dict[int, Tuple[int, int]]:
    """pid -> (parent pid, start time) of every process that could be read."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None and stat[0] not in ("Z", "X"):
                table[int(entry)] = (stat[1], stat[2])
    return table


def descendants(root: Union[ProcessId, int]) -> List[ProcessId]:
    """Every live descendant of ``root``, nearest first.

    ``root`` may be a plain pid where it cannot have been reused (``os.getpid()``,
    a child not yet reaped). A child cannot have started before its parent, so a
    process whose pid matches but which is older is not counted.
    """
    if isinstance(root, ProcessId):
        if not is_alive(root):
            return []
        root_pid, root_start = root.pid, root.start or 0
    else:
        stat = read_stat(root)
        if stat is None:
            return []
        root_pid, root_start = root, stat[2]
    children: Dict[int, List[Tuple[int, int]]] = {}
    for pid, (ppid, start) in _table().items():
        children.setdefault(ppid, []).append((pid, start))
    found: List[ProcessId] = []
    frontier = [(root_pid, root_start)]
    while frontier:
        parent, parent_start = frontier.pop(0)
        for pid, start in children.get(parent, []):
            if start >= parent_start:
                found.append(ProcessId(pid, start))
                frontier.append((pid, start))
    return found


def wait_gone(processes: Iterable[ProcessId], timeout: float) -> List[ProcessId]:
    """Wait up to ``timeout`` seconds for every process to end; return those still
    alive (empty when all are gone). Callers assert on the result."""
    pending = [_check(process) for process in processes]
    deadline = time.monotonic() + timeout
    while True:
        pending = [process for process in pending if is_alive(process)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(POLL_INTERVAL)


def send_signal(process: ProcessId, signum: int) -> bool:
    """Signal ``process`` if it still runs; False when it was gone (or is not
    ours to signal). The check and the kill are not atomic, but the window is
    microseconds against the seconds a pid takes to be reused."""
    if not is_alive(process):
        return False
    try:
        os.kill(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _read(process: ProcessId, name: str) -> Optional[bytes]:
    try:
        with open(f"/proc/{process.pid}/{name}", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return data if is_alive(process) else None


def process_name(process: ProcessId) -> str:
    """The process's name (``/proc/PID/comm``), or "" once it is gone."""
    data = _read(_check(process), "comm")
    return data.decode("utf-8", "replace").strip() if data is not None else ""


def command_line(process: ProcessId) -> str:
    """The process's arguments joined by spaces, or "" once it is gone."""
    data = _read(_check(process), "cmdline")
    return data.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace") if data else ""
