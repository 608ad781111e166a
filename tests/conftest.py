"""Suite-wide checks: the fixtures themselves come from the sshpipe pytest plugin."""
from __future__ import annotations

import os
import time

import pytest

from sshpipe.testing import owned_sshd_pids


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any sshd this run started is still running at its end.

    trylast: runs after the runner has torn the session-scoped fixtures down.
    Per-connection sshd processes may take a moment to notice their client left.
    """
    deadline = time.monotonic() + 5
    left = owned_sshd_pids(os.getpid())
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = owned_sshd_pids(os.getpid())
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"LEAK: sshd processes left running by the tests: {sorted(left)}",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
