"""Helpers shared by the workers tests (a module of its own: every test directory
has a ``conftest``, so importing helpers from one is ambiguous)."""
from __future__ import annotations

import time
from typing import Callable

import pytest

from sshpipe.testing import ProcessId, is_alive

__all__ = ["alive", "parse_identity", "wait_until"]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


alive = is_alive  # a zombie waiting to be reaped does not count


def parse_identity(text: str) -> ProcessId:
    """The process a task described with wtasks.identity() ("pid:start")."""
    pid, start = text.strip().split(":")
    return ProcessId(int(pid), int(start))
