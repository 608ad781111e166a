"""Suite-wide checks: the fixtures themselves come from the sshpipe pytest plugin.

The leak check: nothing this run started may outlive it. Two places look:

- at the end of each test module (after its fixtures are torn down, before the
  session's are), every
  process that started during the module and still runs: a remote agent or its
  children (below one of the run's sshd), or a local process of the run (an
  SSHPipe child, an ssh client); test-bed processes (sshd, watchdogs) and
  multiprocessing's own helpers (forkserver, resource tracker) are not counted;
- at the end of the session, after the session's servers stopped, anything of
  the run still running: any sshd, watchdog, agent, ssh master. "Of the run" is
  a descendant of this process, or a process whose environment carries this
  run's ``SSHPIPE_TEST_RUN`` mark (ssh masters detach from their parent but
  inherit the environment).

Each offender is reported with the test that was running when it started (from
its start time) and fails the run.
"""
from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pytest
import smoke

from sshpipe import _supervisor
from sshpipe import agent as _agent
from sshpipe.testing import (ProcessId, command_line, descendants, process_id, process_name,
                             wait_gone)

RUN_MARK = "SSHPIPE_TEST_RUN"
# How long processes get to end after their test (or the session) ended: an
# agent whose pipe was closed exits at once, sshd's per-connection processes
# notice their client left within a moment; a busy agent whose caller's child
# was killed ends after its documented grace (the agent's EXIT_GRACE, then the
# supervisor's GRACE and KILL_WAIT for what it started), as does one whose exit
# a lingering thread holds (SHUTDOWN_GRACE), plus a margin.
LEAK_GRACE = (max(_agent.EXIT_GRACE, _agent.SHUTDOWN_GRACE) + _supervisor.GRACE
              + _supervisor.KILL_WAIT + 2.0)
# Processes that live as long as the interpreter by design.
_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")
_WATCHDOGS = ("_watchdog_process.py", "_openssh/watchdog.py")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class _Run:
    """What the leak check knows about this run."""

    mark: str
    tests: List[Tuple[float, float, str]] = field(default_factory=list)  # ticks, nodeid
    module_start: Optional[float] = None
    current: Optional[Tuple[float, str]] = None  # the test running now: first tick, nodeid
    leaks: Dict[ProcessId, str] = field(default_factory=dict)


_run = _Run(mark=f"{os.getpid()}-{secrets.token_hex(4)}")


def _now_ticks() -> float:
    """Now, on the clock of /proc/PID/stat start times (ticks since boot)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) * _TICKS


def _test_at(start: Optional[int]) -> str:
    """The test that was running when a process started."""
    tests = list(_run.tests)
    if _run.current is not None:  # a module's check runs inside its last test's teardown
        tests.append((_run.current[0], _now_ticks(), _run.current[1]))
    for first, last, nodeid in reversed(tests):
        if start is not None and first <= start <= last + 1:
            return nodeid
    return "between tests (a fixture set up or torn down outside a test)"


def _marked(process: ProcessId) -> bool:
    try:
        with open(f"/proc/{process.pid}/environ", "rb") as environ:
            return f"{RUN_MARK}={_run.mark}".encode() in environ.read().split(b"\0")
    except OSError:
        return False


def _every_process() -> List[ProcessId]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found.append(process_id(int(entry)))
            except ProcessLookupError:
                continue
    return found


def _side(process: ProcessId) -> str:
    """Where a process runs: "remote" below one of the run's sshd, "remote,
    orphaned" below a watchdog (its sshd session ended without it), or "local"."""
    pid = process.pid
    for _ in range(64):  # bound: a process tree is not deeper than this
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                pid = int(stat.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                words = cmdline.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            break
        if words[0].startswith(b"sshd"):
            return "remote"
        if any(watchdog.encode() in b" ".join(words) for watchdog in _WATCHDOGS):
            return "remote, orphaned: its sshd session ended without it"
        if pid <= 1:
            break
    return "local"


def _of_this_run(session_end: bool) -> List[ProcessId]:
    """Processes of this run that should not be running now (see the module doc)."""
    me = os.getpid()
    candidates = set(descendants(me))
    candidates |= {p for p in _every_process() if p.pid != me and _marked(p)}
    found = []
    for process in candidates:
        line = command_line(process)
        if any(helper in line for helper in _HELPERS):
            continue
        if not session_end:
            if process.start is None or process.start < (_run.module_start or 0):
                continue
            if process_name(process) == "sshd" or any(w in line for w in _WATCHDOGS):
                continue  # the test bed's own: checked at the end of the session
            if process_name(process) == "ssh" and " -M " in f" {line} ":
                continue  # a shared ssh master may outlive a module: checked at the end
        found.append(process)
    return found


def _describe(process: ProcessId) -> str:
    line = command_line(process)
    where = _side(process)
    if where == "local" and line == command_line(process_id(os.getpid())):
        where = "local, a fork of the test process (an SSHPipe child?)"
    return f"pid {process.pid} ({where}, {process_name(process)}): {' '.join(line.split())[:100]}"


def _collect(session_end: bool) -> None:
    """Record what is still running LEAK_GRACE seconds from now."""
    left = wait_gone(_of_this_run(session_end), LEAK_GRACE)
    for process in left:
        if process not in _run.leaks:
            _run.leaks[process] = f"{_test_at(process.start)}: {_describe(process)}"


def pytest_configure(config: pytest.Config) -> None:
    os.environ[RUN_MARK] = _run.mark
    smoke.configure(config)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    smoke.mark(items, os.path.dirname(os.path.abspath(__file__)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]):
    """Note when each test ran (setup to teardown), to name a leak's test."""
    first = _now_ticks()
    _run.current = (first, item.nodeid)
    yield
    _run.current = None
    _run.tests.append((first, _now_ticks(), item.nodeid))


@pytest.fixture(scope="module", autouse=True)
def _nothing_left_running_after_module():
    """The module-end check. Autouse: set up before the module's other fixtures,
    so torn down after them, and before the session's servers stop."""
    _run.module_start = _now_ticks()
    yield
    _collect(session_end=False)
    _run.module_start = None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if anything it started still runs at its end (see the module doc).

    trylast: runs after the runner has torn the session-scoped fixtures down.
    """
    _collect(session_end=True)
    if not _run.leaks:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "LEAK: processes left running by the tests", red=True)
        for line in sorted(_run.leaks.values()):
            reporter.write_line(f"  {line}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
