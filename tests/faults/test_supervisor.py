"""The loader's supervisor: whatever the agent's handler started ends with the pipe,
even a process that ignores SIGTERM, one that left the process group with
setsid(), and a daemon that double-forked, both after close() and after the
caller was SIGKILLed; for handlers, ``.py`` scripts and raw commands alike.

Processes are named by pid *and* start time (field 22 of /proc/PID/stat): a pid
seen free again may already belong to another process.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faultkit import HEARTBEAT, SLACK, make_pipe, record
from sshpipe.testing import ProcessId, is_alive, process_id, send_signal, wait_gone

AGENTS = Path(__file__).parent / "agents"
STUBBORN = str(AGENTS / "stubborn.py")
ROOT = Path(__file__).resolve().parents[2]

KINDS = ["ignore_term", "setsid", "daemon", "daemon_ignore_term"]
MODES = ["handler", "script", "exec"]
# The supervisor's SIGTERM-to-SIGKILL grace (sshpipe._supervisor.GRACE) and
# the wait after SIGKILL.
GRACE, KILL_WAIT = 2.0, 1.0


def reported(pairs):
    """The agent's [(pid, start time), ...] as ProcessIds."""
    return [ProcessId(int(pid), int(start)) for pid, start in pairs]


def wait_ended(processes, timeout):
    """Seconds until none of ``processes`` runs, or None after ``timeout``."""
    started = time.monotonic()
    if wait_gone(processes, timeout):
        return None
    return time.monotonic() - started


def kill_left(processes):
    for process in processes:
        send_signal(process, signal.SIGKILL)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One private bundle cache for the module: after the first start, warm."""
    return {"XDG_CACHE_HOME": str(tmp_path_factory.mktemp("supervisor-cache"))}


@pytest.fixture
def stubborn(monkeypatch):
    monkeypatch.syspath_prepend(str(AGENTS))
    import stubborn as module

    return module


def _pipe(sshd, mode, cache, stubborn):
    if mode == "handler":
        return make_pipe(sshd, command=None, handler=stubborn.Stubborn, modules=["stubborn"],
                         env=cache)
    if mode == "script":
        return make_pipe(sshd, command=[STUBBORN], env=cache)
    # A raw command: the program imports this tree's sshpipe, not the installed one.
    return make_pipe(sshd, command=[sshd.python, STUBBORN], env=dict(cache, PYTHONPATH=str(ROOT)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_what_the_agent_started_ends_with_close(sshd, cache, stubborn, mode, kind):
    """After close() returns, the process the handler started is gone: SIGTERM, and
    SIGKILL after the grace period for one that ignores SIGTERM; found through the
    subreaper for one that left the process group or double-forked."""
    pipe = _pipe(sshd, mode, cache, stubborn)
    pipe.start()
    procs = []
    try:
        agent = process_id(pipe.remote_info["pid"])
        pipe.send(("spawn", kind))
        procs = reported(pipe.recv(timeout=20))
        assert procs and all(is_alive(p) for p in procs), "the test's process did not start"
        started = time.monotonic()
        response = pipe.close(timeout=30)
        closing = time.monotonic() - started
        after = wait_ended(procs + [agent], GRACE + KILL_WAIT + SLACK)
    finally:
        kill_left(procs)
    record(f"supervisor: {kind} child of a {mode} agent, close()", "-",
           None if after is None else closing + after,
           f"close() {closing:.2f} s, all gone {after if after is None else round(after, 2)} "
           f"s after it")
    assert after is not None, f"left running after close(): {[p for p in procs if is_alive(p)]}"
    assert response.exitcode == 0
    if kind.endswith("ignore_term"):
        assert "ignored SIGTERM" in response.stderr
        assert GRACE - 0.2 <= closing <= GRACE + KILL_WAIT + SLACK, closing


def test_sigterm_to_the_supervisor_ends_the_agent_and_what_it_started(sshd, cache, stubborn):
    """SIGTERM (or SIGHUP) to the supervisor, say from an administrator's kill, is
    passed on to the agent; it ends with -15 and its children end with it."""
    from faultkit import settle

    pipe = make_pipe(sshd, command=None, handler=stubborn.Stubborn, modules=["stubborn"],
                     env=cache)
    pipe.start()
    procs = []
    try:
        agent = process_id(pipe.remote_info["pid"])
        with open(f"/proc/{agent.pid}/stat", "rb") as f:
            supervisor = process_id(int(f.read().rsplit(b")", 1)[1].split()[1]))
        pipe.send(("spawn", "setsid", "daemon"))
        procs = reported(pipe.recv(timeout=20)) + [agent]
        assert send_signal(supervisor, signal.SIGTERM)
        seconds, outcome = settle(pipe)
        left = wait_gone(procs + [supervisor], GRACE + KILL_WAIT + SLACK)
    finally:
        kill_left(procs)
        try:
            pipe.close(timeout=10)
        except Exception:
            pass
    record("supervisor: SIGTERM to the supervisor", "-", seconds, repr(outcome)[:60])
    assert not left, left
    assert getattr(outcome, "exitcode", None) == -signal.SIGTERM, outcome


PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
PYTHON39 = next(iter(sorted(PYENV.glob("3.9.*/bin/python3"))), None)


@pytest.mark.skipif(PYTHON39 is None, reason="no CPython 3.9 under pyenv")
def test_supervisor_runs_on_python_3_9(sshd, cache, stubborn):
    """The oldest remote Python sshpipe supports gets the same supervisor: a daemon
    that ignores SIGTERM is found (subreaper through ctypes) and SIGKILLed."""
    pipe = make_pipe(sshd, command=None, handler=stubborn.Stubborn, modules=["stubborn"],
                     python=str(PYTHON39), env=cache)
    pipe.start()
    procs = []
    try:
        assert pipe.remote_info["python"].startswith("3.9.")
        pipe.send(("spawn", "daemon_ignore_term", "setsid"))
        procs = reported(pipe.recv(timeout=20))
        assert all(is_alive(p) for p in procs)
        response = pipe.close(timeout=30)
        left = wait_gone(procs, 2)
    finally:
        kill_left(procs)
    assert not left and "ignored SIGTERM" in response.stderr


CALLER = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
import stubborn
from sshpipe import SSHPipe
mode, alias, config, python, cache = sys.argv[2:7]
kwargs = dict(config=config, python=python, heartbeat=0.5, ready_timeout=30,
              env={"XDG_CACHE_HOME": cache, "PYTHONPATH": sys.argv[7]})
if mode == "handler":
    pipe = SSHPipe(alias, handler=stubborn.Stubborn, modules=["stubborn"], **kwargs)
elif mode == "script":
    pipe = SSHPipe(alias, [stubborn.__file__], **kwargs)
else:
    pipe = SSHPipe(alias, [python, stubborn.__file__], **kwargs)
pipe.start()
pipe.send(("spawn",) + tuple(sys.argv[8:]))
procs = pipe.recv(timeout=30)
print(json.dumps({"procs": procs, "agent": pipe.remote_info["pid"]}), flush=True)
time.sleep(600)
'''


@pytest.mark.parametrize("mode", MODES)
def test_what_the_agent_started_ends_when_the_caller_is_killed(sshd, cache, mode):
    """SIGKILL the caller: the agent and every process its handler started (one of
    each kind at once) end within the dead-caller bound plus the grace period."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER, str(AGENTS), mode, sshd.alias, sshd.config_path,
         sshd.python, cache["XDG_CACHE_HOME"], str(ROOT), *KINDS],
        stdout=subprocess.PIPE, env=env, start_new_session=True)
    procs = []
    try:
        line = caller.stdout.readline()
        assert line, "the caller ended before its pipe started"
        report = json.loads(line)
        agent = process_id(report["agent"])
        procs = reported(report["procs"])
        assert len(procs) == len(KINDS) and all(is_alive(p) for p in procs)
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait(10)
        bound = 3 * HEARTBEAT + GRACE + KILL_WAIT + SLACK + 2
        gone = wait_ended(procs + [agent], bound)
    finally:
        kill_left(procs)
        try:
            os.killpg(caller.pid, signal.SIGKILL)  # the caller's SSHPipe child
        except OSError:
            pass
        caller.stdout.close()
    record(f"supervisor: {', '.join(KINDS)} of a {mode} agent, caller SIGKILLed", "-", gone,
           "all gone" if gone is not None else "LEFT RUNNING")
    assert gone is not None, f"left running: {[p for p in procs if is_alive(p)]}"


def test_supervisor_example_leaves_nothing_running(tmp_path):
    """examples/supervisor_example.py: a SIGTERM-ignoring child and a double-forked
    daemon both run until close(), and neither runs after it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "supervisor_example.py")],
                            capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                            env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("running: True") == 2 and out.count("running after close(): False") == 2
    assert "ignored SIGTERM" in out
