"""Local process faults: the caller killed (the remote must clean up by itself) and
the SSHPipe child killed (the caller must raise, never hang)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from faultkit import (BOUND, FAULT_AGENT, HERE, alive, assert_gone, check_accounting,
                      make_pipe, record, unhandled_in, wait_blocked)
from sshpipe import PipeBroken, PipeState
from sshpipe.testing import process_id, send_signal, wait_gone


def _run_caller(sshd, method, busy, timeout=15.0):
    """Run a caller, SIGKILL it; return the seconds until the remote agent and its
    child were gone and until the caller's SSHPipe child was gone (None: not within
    ``timeout``). Whatever is left is killed afterwards."""
    caller = subprocess.Popen(
        [sys.executable, str(HERE / "agents" / "caller.py"), method, sshd.alias,
         sshd.config_path, sshd.python, FAULT_AGENT, "busy" if busy else "idle"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = {}
    try:
        line = caller.stdout.readline()
        assert line, caller.stderr.read()
        pids = {name: process_id(pid) for name, pid in json.loads(line).items()}
        assert all(alive(pid) for pid in pids.values())
        caller.kill()
        killed = time.monotonic()
        caller.wait(10)
        remote = [pids["agent"], pids["child"]]
        left = wait_gone(remote, timeout)
        agent_gone = None if left else time.monotonic() - killed
        left = wait_gone([pids["pipe_child"]], max(0.0, timeout - (time.monotonic() - killed)))
        child_gone = None if left else time.monotonic() - killed
        return agent_gone, child_gone
    finally:
        for pid in pids.values():
            send_signal(pid, signal.SIGKILL)
        if caller.poll() is None:
            caller.kill()
            caller.wait(10)
        caller.stdout.close()
        caller.stderr.close()


def test_caller_killed_remote_agent_and_children_go(sshd, method):
    """SIGKILL of the caller: its SSHPipe child ends, and the remote agent and the
    process it started are gone within the heartbeat bound."""
    agent_gone, child_gone = _run_caller(sshd, method, busy=False)
    record("caller SIGKILL (agent idle)", method, agent_gone,
           f"agent+its child gone; SSHPipe child gone after {child_gone:.2f} s")
    assert agent_gone is not None and agent_gone < BOUND
    assert child_gone is not None and child_gone < BOUND


def test_caller_killed_while_handler_busy_issue_8(sshd, method):
    """SIGKILL of the caller while the handler is inside handle(): the agent and its
    child still end within the heartbeat bound."""
    agent_gone, child_gone = _run_caller(sshd, method, busy=True, timeout=BOUND)
    record("caller SIGKILL (handler busy)", method, agent_gone,
           f"agent gone: {agent_gone is not None}; SSHPipe child gone after "
           f"{child_gone} s")
    assert agent_gone is not None and agent_gone < BOUND


def test_pipe_child_killed_every_caller_call_raises(sshd, method):
    """SIGKILL of the SSHPipe child with messages in flight, a send() blocked on a full
    window and a recv() waiting: each raises PipeBroken within the bound, response()
    lists the unhandled messages, and the remote agent ends."""
    pipe = make_pipe(sshd, queue_bound=4)
    pipe.start()
    agent = process_id(pipe.remote_info["pid"])
    pipe.send(("cmd", "spawn"))
    grandchild = process_id(pipe.recv(timeout=10)[1])
    sent = [1] + [pipe.send(("cmd", "sleep", 0.5)) for _ in range(4)]  # window full
    outcomes = {}

    def blocked(name, call):
        started = time.monotonic()
        try:
            call()
            outcomes[name] = ("returned", time.monotonic() - started)
        except BaseException as exc:  # recorded for the assertions below
            outcomes[name] = (exc, time.monotonic())

    threads = [threading.Thread(target=blocked, args=("send", lambda: pipe.send("x", timeout=30))),
               threading.Thread(target=blocked, args=("recv", lambda: pipe.recv(timeout=30))),
               threading.Thread(target=blocked, args=("flush", lambda: pipe.flush(timeout=30)))]
    for thread in threads:
        thread.start()
    wait_blocked(threads, 10)  # really blocked, each inside its call
    pipe.kill()
    killed = time.monotonic()
    for thread in threads:
        thread.join(BOUND + 5)
    try:
        pipe.response(timeout=30)
        pytest.fail("response() returned on a pipe whose child was killed")
    except PipeBroken as exc:
        broken = exc
    seconds = time.monotonic() - killed
    for name, (exc, when) in outcomes.items():
        assert isinstance(exc, PipeBroken), (name, exc)
        assert when - killed < BOUND, name
    assert set(outcomes) == {"send", "recv", "flush"}
    assert pipe.state is PipeState.BROKEN
    check_accounting(sent, [1], unhandled_in(broken))
    assert_gone([agent, grandchild], BOUND)
    agent_gone = time.monotonic() - killed
    record("SSHPipe child SIGKILL (send/recv/flush blocked)", method, seconds,
           f"PipeBroken in send, recv, flush, response; agent gone after {agent_gone:.2f} s")
    assert seconds < BOUND and agent_gone < BOUND
