"""Shared pieces of the fault matrix: bounds, pipes, waits, accounting, the record.

Every case measures how long the fault took to reach the caller as a typed error
and records it with :func:`record`; ``conftest.py`` prints the whole matrix at the
end of the run (and writes it as JSON to ``$SSHPIPE_FAULTS_REPORT`` when set).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set

import pytest

from sshpipe import PipeBroken, SSHPipe
from sshpipe.testing import is_alive

HERE = Path(__file__).parent
FAULT_AGENT = str(HERE / "agents" / "fault_agent.py")

# Heartbeat of every pipe in the matrix; a silent peer is declared dead after
# ServerAliveCountMax (3, the default) silent beats.
HEARTBEAT = 0.5
DEAD_BOUND = 3 * HEARTBEAT
# Added to every bound: a 2-core machine shared with other test runs can stall a
# process for a second or two.
SLACK = 2.5
BOUND = DEAD_BOUND + SLACK

MATRIX: List[Dict[str, object]] = []
_lock = threading.Lock()


def record(case: str, method: str, seconds: Optional[float], result: str) -> None:
    """Add one row to the matrix report."""
    with _lock:
        MATRIX.append({"case": case, "method": method,
                       "seconds": None if seconds is None else round(seconds, 3),
                       "result": result})


def make_pipe(server, command=FAULT_AGENT, **kwargs) -> SSHPipe:
    """A pipe to ``server`` (a LocalSSHServer) with the matrix's heartbeat."""
    kwargs.setdefault("python", server.python)
    kwargs.setdefault("ready_timeout", 30)
    kwargs.setdefault("heartbeat", HEARTBEAT)
    return SSHPipe(kwargs.pop("alias", server.alias), command, config=server.config_path,
                   **kwargs)


# A process is alive until it ends (a zombie waiting to be reaped is not).
alive = is_alive


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate``; return the seconds it took, fail the test after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def wait_gone(pids: Iterable[int], timeout: float) -> float:
    pids = list(pids)
    return wait_until(lambda: not any(alive(pid) for pid in pids), timeout,
                      f"processes {pids} to end")


def settle(pipe, timeout: float = 30.0):
    """(seconds, outcome): how long until the pipe's end was known, and the end
    itself: its Response, or the PipeBroken that response() raised."""
    started = time.monotonic()
    try:
        result = pipe.response(timeout=timeout)
    except PipeBroken as exc:
        result = exc
    return time.monotonic() - started, result


def unhandled_in(error: BaseException) -> List[int]:
    """The sequence numbers a PipeBroken from response() lists as unhandled."""
    assert isinstance(error, PipeBroken), error
    return list(error.unhandled)


def check_accounting(sent: Sequence[int], handled: Iterable[int], unhandled: Iterable[int],
                     errored: Iterable[int] = ()) -> Set[int]:
    """Every sent seq is handled, unhandled or errored; nothing else is claimed.
    Returns the seqs claimed both handled and unhandled (at-least-once overlap)."""
    handled, unhandled, errored = set(handled), set(unhandled), set(errored)
    claimed = handled | unhandled | errored
    assert set(sent) == claimed, (f"unaccounted: {sorted(set(sent) - claimed)}; "
                                  f"unknown: {sorted(claimed - set(sent))}")
    return handled & unhandled


def drain(pipe: SSHPipe, timeout: float = 5.0) -> list:
    """Every reply still to come, until EOF or the pipe broke."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            out.append(pipe.recv(timeout=max(0.01, deadline - time.monotonic())))
        except (EOFError, TimeoutError):
            break
        except Exception:  # PipeBroken: replies before the break are all returned first
            break
    return out


def proc_children(pid: int) -> List[int]:
    from sshpipe.testing import descendants

    return [p for p in descendants(pid) if alive(p)]


def fd_count(pid: int = 0) -> int:
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
