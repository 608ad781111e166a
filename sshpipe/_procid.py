"""A process named by its pid *and* its start time, as Linux ``/proc`` gives them.

A pid alone does not name a process: once a process is reaped the kernel hands
its pid to the next process that asks, within seconds on a busy machine. So a
process is a :class:`ProcessId`, the pid plus the start time the kernel recorded
for it (field 22 of ``/proc/PID/stat``, clock ticks since boot), and a pid that
now has another start time is another process.

The one definition for the library (:mod:`sshpipe._openssh._procs`: masters and
their watchdog) and the test bed (:mod:`sshpipe.testing._proc`); each says what
a ``start`` of None means there. Stdlib only, no sshpipe imports: the watchdogs
run it with nothing else of sshpipe loaded.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

__all__ = ["ProcessId", "read_stat"]


class ProcessId(NamedTuple):
    """``(pid, start)``: one process for its whole life."""

    pid: int
    start: Optional[int]


def read_stat(pid: int) -> Optional[Tuple[str, int, int]]:
    """``(state, parent pid, start time)`` of ``pid`` from ``/proc/PID/stat``, or
    None when there is no such pid (or no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The name (field 2) is in parentheses and may hold spaces or ')'.
            fields = stat.read().rsplit(b")", 1)[1].split()
        # fields[0] is field 3 (state), fields[1] field 4 (ppid), fields[19] field 22.
        return fields[0].decode("ascii"), int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None
