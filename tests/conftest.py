"""Suite-wide checks: the fixtures themselves come from the sshpipe pytest plugin."""
from __future__ import annotations

import os
from typing import Set

import pytest


def _sshd_pids() -> Set[int]:
    """Pids of every live sshd process (listeners and per-connection); zombies
    waiting for init to reap them are not running and do not count."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as stat:
                head, tail = stat.read().rsplit(")", 1)
        except OSError:
            continue
        if head.split("(", 1)[1] == "sshd" and tail.split()[0] != "Z":
            pids.add(int(entry))
    return pids


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BASELINE] = _sshd_pids()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any sshd the tests started is still running at the end."""
    # trylast: runs after the runner has torn the session-scoped fixtures down.
    baseline = session.config.stash.get(_BASELINE, set())
    left = _sshd_pids() - baseline
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"LEAK: sshd processes left running by the tests: {sorted(left)}",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BASELINE = pytest.StashKey[Set[int]]()
