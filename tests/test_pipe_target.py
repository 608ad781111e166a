"""SSHPipe(target=...): a remote function run the way multiprocessing.Process runs one."""
from __future__ import annotations

import signal
import sys

import pytest

from sshpipe import SSHPipe

from pipe_transports import transport  # noqa: F401 (autouse: each test per transport)


def make(sshd, target, *args, **kwargs):
    return SSHPipe(sshd.alias, target=target, args=args, config=sshd.config_path,
                   python=sshd.python, **kwargs)


@pytest.mark.parametrize("body, code", [
    ("pass", 0), ("raise SystemExit(7)", 7), ("raise SystemExit('why')", 1),
    ("raise ValueError('boom')", 1), ("raise SystemExit(None)", 0),
])
def test_exit_status_is_what_a_process_would_have(sshd, body, code):
    """The target's end gives Process's exit status; a message or traceback goes to
    stderr as Process prints it."""
    namespace: dict = {}
    exec(f"def target():\n    {body}\n", namespace)  # a function sent by value
    pipe = make(sshd, namespace["target"])
    pipe.start()
    pipe.join(30)
    assert pipe.exitcode == code
    response = pipe.response(timeout=10)
    assert response.exitcode == code
    if "why" in body:
        assert "why" in response.stderr
    if "boom" in body:
        assert "ValueError: boom" in response.stderr and "Traceback" in response.stderr


def test_terminate_a_running_target(sshd):
    """terminate() ends a long target; exitcode is -SIGTERM, as for a Process."""
    import time as _time

    pipe = make(sshd, _time.sleep, 60)
    pipe.start()
    assert pipe.is_alive()
    pipe.terminate()
    pipe.join(10)
    assert pipe.exitcode == -signal.SIGTERM and not pipe.is_alive()


def test_target_and_handler_are_exclusive(sshd):
    """One of command, handler or target."""
    with pytest.raises(ValueError):
        SSHPipe("h", target=print, command=sys.executable)


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_terminate_and_kill_race_no_join(sshd, method):
    """Many pipes ended at once with terminate() or kill() while other threads
    join them: each exitcode is exactly -SIGTERM or -SIGKILL (never 255, never
    None after join), under each start method (the join race of issue 12)."""
    import multiprocessing
    import threading
    import time as _time

    context = multiprocessing.get_context(method)
    pipes = [make(sshd, _time.sleep, 60, mp_context=context) for _ in range(8)]
    for pipe in pipes:
        pipe.start()
    joiners = [threading.Thread(target=pipe.join, args=(30,)) for pipe in pipes]
    for joiner in joiners:
        joiner.start()
    for index, pipe in enumerate(pipes):
        (pipe.terminate if index % 2 == 0 else pipe.kill)()
    for joiner in joiners:
        joiner.join(40)
    codes = [pipe.exitcode for pipe in pipes]
    expected = [-signal.SIGTERM if index % 2 == 0 else -signal.SIGKILL
                for index in range(len(pipes))]
    assert codes == expected
    assert not any(pipe.is_alive() for pipe in pipes)
