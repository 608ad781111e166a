"""Long-lived pipes under volume: 2 GiB one way across paramiko's rekeys, no stall."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from sshpipe import SSHPipe

from pipe_transports import transport  # noqa: F401 (autouse: each test per transport)

SINK = str(Path(__file__).parent / "agents" / "sink_agent.py")
MIB = 1 << 20


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_gib_one_way_without_stalling(sshd):
    """2 GiB in 1 MiB messages crosses paramiko's 512 MiB rekey points without a stall:
    every 128 MiB is handled within a bounded time and the agent counts every byte."""
    chunk = b"\xab" * MIB
    stall_bound = 60.0  # seconds for 128 MiB: ~20x slower than a loaded CI machine
    with SSHPipe(sshd.alias, SINK, config=sshd.config_path, python=sshd.python,
                 queue_bound=64) as pipe:
        slowest = 0.0
        for _block in range(16):
            started = time.monotonic()
            for _ in range(128):
                pipe.send(chunk, timeout=stall_bound)
            pipe.flush(timeout=stall_bound)
            slowest = max(slowest, time.monotonic() - started)
        pipe.send("total?")
        count, total = pipe.recv(timeout=60)
        response = pipe.close(timeout=60)
    assert (count, total) == (2048, 2048 * MIB)
    assert response.exitcode == 0 and response.unhandled == ()
    assert slowest < stall_bound
