"""Fixtures for the OpenSSH transport's building blocks (sshpipe._openssh).

Every test gets its own control directory, short enough for socket paths; when
the test ends every master in it is stopped and the test fails if any master,
watchdog or passenger naming that directory is still running.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from sshpipe._openssh import Target, stop_masters

sys.path.insert(0, str(Path(__file__).parent))  # openssh_kit

from openssh_kit import processes_mentioning  # noqa: E402


@pytest.fixture
def target(sshd) -> Target:
    """The test sshd as a Target, through its own client config."""
    return Target(sshd.alias, config=sshd.config_path)


@pytest.fixture
def control_dir() -> Iterator[str]:
    """A fresh private control directory; nothing may run for it afterwards."""
    path = tempfile.mkdtemp(prefix="spx-")
    try:
        yield path
    finally:
        left: List[int] = []
        try:
            stop_masters(path, timeout=6.0)
        finally:
            deadline = time.monotonic() + 10
            left = processes_mentioning(path)
            while left and time.monotonic() < deadline:
                time.sleep(0.02)
                left = processes_mentioning(path)
            os.chmod(path, 0o700)
            shutil.rmtree(path, ignore_errors=True)
        assert not left, f"processes still running for {path}: {left}"
