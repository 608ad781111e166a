"""Shared pieces of the fault matrix: bounds, pipes, waits, accounting, the record.

Every case measures how long the fault took to reach the caller as a typed error
and records it with :func:`record`; ``conftest.py`` prints the whole matrix at the
end of the run (and writes it as JSON to ``$SSHPIPE_FAULTS_REPORT`` when set).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set

import pytest

from sshpipe import PipeBroken, PipeClosed, SSHPipe
from sshpipe import testing
from sshpipe.testing import ProcessId, is_alive

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


def write_matrix(write, rows: List[Dict[str, object]]) -> None:
    """Print the matrix's rows (``write`` prints one line); with
    SSHPIPE_FAULTS_REPORT=<path> also write them there as JSON."""
    if not rows:
        return
    path = os.environ.get("SSHPIPE_FAULTS_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1)
    write("")
    write(f"fault matrix (detection bound {DEAD_BOUND:g} s + {SLACK:g} s "
          f"slack){'; written to ' + path if path else ''}")
    write(f"{'case':58} {'method':7} {'seconds':>8}  result")
    for row in sorted(rows, key=lambda r: (str(r["case"]), str(r["method"]))):
        seconds = "-" if row["seconds"] is None else f"{row['seconds']:.3f}"
        write(f"{row['case']:58} {row['method']:7} {seconds:>8}  {row['result']}")


def make_pipe(server, command=FAULT_AGENT, **kwargs) -> SSHPipe:
    """A pipe to ``server`` (a LocalSSHServer) with the matrix's heartbeat."""
    kwargs.setdefault("python", server.python)
    kwargs.setdefault("ready_timeout", 30)
    kwargs.setdefault("heartbeat", HEARTBEAT)
    return SSHPipe(kwargs.pop("alias", server.alias), command, config=server.config_path,
                   **kwargs)


def send_while_open(pipe: SSHPipe, items: Iterable[object]) -> List[int]:
    """Send each item after a message that ends the agent; stop at the first
    PipeClosed. A fast machine can see the agent's end between two sends, and
    send() then refuses (the caller knows those were never sent), so only what was
    sent is the pipe's to account for. Returns the sequence numbers sent."""
    seqs = []
    for item in items:
        try:
            seqs.append(pipe.send(item))
        except PipeClosed:
            break
    return seqs


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


# Where a thread blocked in a pipe call waits: a condition or lock, a selector, a
# multiprocessing connection's poll, a queue.
_WAITING_MODULES = ("threading.py", "selectors.py", "connection.py", "queue.py")
# sshpipe's own waits in a C call (select.select), so the frame on top is sshpipe's:
# (module, function). The OpenSSH transport's caller reads the agent's stream itself,
# and a recv() with no events thread to wait on selects in OpenSSHEvents.wait.
_WAIT_POINTS = {("_stream.py", "wait")}


def _is_waiting(frame) -> bool:
    code = frame.f_code
    if code.co_filename.endswith(_WAITING_MODULES):
        return True
    return (os.path.basename(code.co_filename), code.co_name) in _WAIT_POINTS


def _blocked_in_sshpipe(thread: threading.Thread) -> bool:
    """True if ``thread`` waits (in one of _WAITING_MODULES or at one of
    _WAIT_POINTS) inside a call into sshpipe: blocked in the call, not on its way
    to it."""
    frame = sys._current_frames().get(thread.ident)
    if frame is None or not _is_waiting(frame):
        return False
    while frame is not None:
        if f"{os.sep}sshpipe{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def wait_blocked(threads: Iterable[threading.Thread], timeout: float) -> float:
    """Wait until every thread is blocked inside an sshpipe call; fail the test
    after ``timeout``. Returns the seconds it took."""
    threads = list(threads)
    return wait_until(lambda: all(_blocked_in_sshpipe(t) for t in threads), timeout,
                      f"threads {[t.name for t in threads]} to block in their calls")


def assert_gone(processes: Iterable[ProcessId], timeout: float) -> float:
    """Wait for every process to end; fail the test naming those still running after
    ``timeout``. Returns the seconds it took."""
    started = time.monotonic()
    left = testing.wait_gone(processes, timeout)
    assert not left, f"still running {timeout:g} s later: {left}"
    return time.monotonic() - started


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


def fd_count(pid: int = 0) -> int:
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
