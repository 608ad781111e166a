"""SSHPipe over the OpenSSH transport: sessions on a shared master, no relay."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sshpipe import PipeBroken, SSHPipe

AGENTS = Path(__file__).parent.parent / "agents"
ECHO = str(AGENTS / "echo_agent.py")


def make_pipe(sshd, command=ECHO, **kwargs) -> SSHPipe:
    kwargs.setdefault("python", sshd.python)
    kwargs.setdefault("ready_timeout", 30)
    kwargs.setdefault("transport", "openssh")
    return SSHPipe(sshd.alias, command, config=sshd.config_path, **kwargs)


def test_round_trip_over_a_master(sshd):
    with make_pipe(sshd) as pipe:
        assert pipe.transport == "openssh"
        for value in (1, "two", b"3" * 100000):
            pipe.send(value)
            assert pipe.recv(timeout=10) == value
        response = pipe.close(timeout=10)
    assert response.exitcode == 0, response


def _my_masters(alias: str):
    from sshpipe._openssh import list_masters

    return [info for info in list_masters() if info.alive and info.target.host == alias
            and info.owner is not None and info.owner.pid == os.getpid()]


@pytest.fixture
def no_masters(sshd):
    """Start without this process's masters for the test sshd; stop them after."""
    from sshpipe._openssh import stop_masters

    stop_masters(owner=os.getpid())
    yield
    stop_masters(owner=os.getpid())
    assert not _my_masters(sshd.alias)


def test_pipes_share_one_master_and_a_later_pipe_starts_fast(sshd, no_masters):
    with make_pipe(sshd) as first:
        first.send("a")
        assert first.recv(timeout=10) == "a"
        master, = _my_masters(sshd.alias)
        began = time.monotonic()
        with make_pipe(sshd) as second:
            later = time.monotonic() - began
            second.send("b")
            assert second.recv(timeout=10) == "b"
            assert [m.process for m in _my_masters(sshd.alias)] == [master.process]
        assert first.remote_info["pid"] != second.remote_info["pid"]
    # bounded by the remote login shell, not by a handshake (paramiko: 150-300 ms more)
    assert later < 10.0


def test_twenty_pipes_starting_at_once_share_one_master(sshd, no_masters):
    pipes = [make_pipe(sshd) for _ in range(20)]
    errors = []

    def start(pipe):
        try:
            pipe.start()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(pipe,)) for pipe in pipes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    try:
        assert not errors, errors
        assert len(_my_masters(sshd.alias)) == 1
        for index, pipe in enumerate(pipes):
            pipe.send(index)
        assert [pipe.recv(timeout=20) for pipe in pipes] == list(range(20))
    finally:
        for pipe in pipes:
            pipe.close(timeout=20)
    assert all(pipe.exitcode == 0 for pipe in pipes)


def test_master_killed_under_live_pipes_breaks_them_typed_and_next_pipe_gets_new_one(
        sshd, no_masters):
    from sshpipe._openssh import MasterLost

    pipes = [make_pipe(sshd, heartbeat=1.0) for _ in range(3)]
    for pipe in pipes:
        pipe.start()
    master, = _my_masters(sshd.alias)
    os.kill(master.process.pid, signal.SIGKILL)
    killed = time.monotonic()
    for pipe in pipes:
        with pytest.raises(PipeBroken) as caught:
            pipe.response(timeout=10)
        assert isinstance(caught.value.__cause__, MasterLost) or "master" in str(caught.value)
    # the bound: the heartbeat's (1 s x ServerAliveCountMax 3) plus slack
    assert time.monotonic() - killed < 3.0 + 2.0
    for pipe in pipes:
        with pytest.raises(PipeBroken):
            pipe.close(timeout=5)  # close() reports a broken pipe too
    with make_pipe(sshd) as pipe:
        pipe.send("again")
        assert pipe.recv(timeout=10) == "again"
        fresh, = _my_masters(sshd.alias)
        assert fresh.process != master.process


def test_host_with_its_own_control_path_is_left_alone(sshd, no_masters, tmp_path):
    """The user's ControlMaster/ControlPath/ControlPersist are set aside for our
    master (the command line wins): nothing appears at their ControlPath."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    config = tmp_path / "config"
    config.write_text(f"Host {sshd.alias}\n    ControlMaster auto\n"
                      f"    ControlPath {theirs}/%C\n    ControlPersist yes\n\n"
                      + Path(sshd.config_path).read_text())
    with SSHPipe(sshd.alias, ECHO, config=str(config), python=sshd.python,
                 transport="openssh", ready_timeout=30) as pipe:
        pipe.send("x")
        assert pipe.recv(timeout=10) == "x"
        assert not list(theirs.iterdir())
        assert len([m for m in _my_masters(sshd.alias) if m.target.config == str(config)]) == 1
    assert pipe.exitcode == 0
    from sshpipe._openssh import stop_masters

    stop_masters(owner=os.getpid())


def test_master_ends_with_the_caller_that_owns_it(sshd, tmp_path):
    """A caller killed with SIGKILL leaves no master: its watchdog ends it."""
    script = tmp_path / "caller.py"
    script.write_text(
        "import os, sys\n"
        "from sshpipe import SSHPipe\n"
        "from sshpipe._openssh import list_masters\n"
        "if __name__ == '__main__':\n"
        f"    pipe = SSHPipe({sshd.alias!r}, {ECHO!r}, config={sshd.config_path!r},\n"
        f"                   python={sshd.python!r}, transport='openssh')\n"
        "    pipe.start()\n"
        "    pids = [m.process.pid for m in list_masters()\n"
        "            if m.owner is not None and m.owner.pid == os.getpid()]\n"
        "    print(*pids, flush=True)\n"
        "    os.kill(os.getpid(), 9)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60, env=env)
    pids = [int(word) for word in result.stdout.split()]
    assert len(pids) == 1, (result.stdout, result.stderr)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pids[0]}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pids[0]}"), "the master outlived its owner"


def test_cli_lists_and_stops_masters(sshd, no_masters, capsys):
    from sshpipe.cli import main

    with make_pipe(sshd) as pipe:
        pipe.send(1)
        assert pipe.recv(timeout=10) == 1
        master, = _my_masters(sshd.alias)
    assert main(["masters"]) == 0
    listing = capsys.readouterr().out
    line, = [row for row in listing.splitlines() if row.split()[:1] == [str(master.process.pid)]]
    assert sshd.alias in line and str(os.getpid()) in line
    # --owner: other callers of this user (other test runs) keep their masters
    assert main(["masters", "--stop", "--owner", str(os.getpid())]) == 0
    assert f"pid {master.process.pid}" in capsys.readouterr().out
    assert not _my_masters(sshd.alias)
