"""The test bed is real: OpenSSH servers on loopback and in network namespaces."""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import threading
import time

import paramiko
import pytest

from sshpipe.testing import (LocalSSHServer, ProcessId, command_line, descendants, is_alive,
                             owned_sshd_pids, process_id, send_signal, wait_gone)


def _connect(host: str, port: int, user: str, key_path: str,
             known_hosts: str, timeout: float = 10) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host, port=port, username=user, key_filename=key_path,
                   look_for_keys=False, allow_agent=False, timeout=timeout)
    return client


def _run(client: paramiko.SSHClient, command: str):
    _, stdout, stderr = client.exec_command(command, timeout=10)
    out = stdout.read().decode()
    err = stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


def test_paramiko_runs_command_on_sshd_fixture(sshd):
    """paramiko reaches the fixture with its key and known_hosts; output and status come back."""
    client = _connect(sshd.address, sshd.port, sshd.user, sshd.key_path, sshd.known_hosts_path)
    try:
        status, out, err = _run(client, "echo out; echo err >&2; exit 7")
    finally:
        client.close()
    assert (status, out, err) == (7, "out\n", "err\n")


def test_generated_client_config_works_with_openssh(sshd):
    """OpenSSH's own client logs in through the generated config alias alone."""
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client")
    result = subprocess.run(["ssh", "-F", sshd.config_path, sshd.alias, "echo", "via-alias"],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "via-alias\n"


def test_unknown_host_key_is_refused(sshd, tmp_path):
    """Without the known_hosts entry the client refuses the server."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _connect(sshd.address, sshd.port, sshd.user, sshd.key_path, str(empty))


def test_server_files_are_private(sshd):
    """Keys, config and directory are readable by the owner only."""
    assert stat.S_IMODE(os.stat(sshd.directory).st_mode) == 0o700
    for path in (sshd.key_path, sshd.host_key_path, sshd.known_hosts_path, sshd.config_path):
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path


def test_stop_kills_listener_and_connection_processes():
    """stop() ends sshd and the per-connection sshd children, and removes its files."""
    server = LocalSSHServer(alias="short-lived").start()
    client = _connect(server.address, server.port, server.user, server.key_path,
                      server.known_hosts_path)
    listener = process_id(server.pid)
    processes = [listener] + descendants(listener)
    assert len(processes) >= 2, "a live connection has its own sshd process"
    directory = server.directory
    server.stop()
    client.close()
    assert not wait_gone(processes, 10)
    assert not os.path.exists(directory)


def test_missing_sshd_names_the_package(monkeypatch):
    """Without sshd the error says which package to install."""
    import sshpipe.testing._sshd as sshd_module

    monkeypatch.setattr(sshd_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(sshd_module.os, "access", lambda path, mode: False)
    with pytest.raises(sshd_module.SSHServerError, match="openssh-server"):
        LocalSSHServer().start()


@pytest.mark.netns
def test_each_namespace_host_answers_on_its_own_address(netns_hosts):
    """Every namespace host is reached by its own address and runs in its own namespace."""
    seen = set()
    for host in netns_hosts:
        client = _connect(host.address, 22, host.server.user, netns_hosts.key_path,
                          netns_hosts.known_hosts_path)
        try:
            status, out, _ = _run(client, "ip -4 -o addr show")
        finally:
            client.close()
        assert status == 0
        assert host.address in out
        others = {h.address for h in netns_hosts if h is not host}
        assert not any(address in out for address in others)
        seen.add(host.address)
    assert len(seen) == len(netns_hosts) == 3


@pytest.mark.netns
def test_namespace_link_down_makes_host_unreachable(netns_hosts):
    """Taking a host's link down cuts it off; bringing it up restores it."""
    host = netns_hosts[1]
    netns_hosts.link_down(1)
    try:
        with pytest.raises((OSError, paramiko.SSHException)):
            _connect(host.address, 22, host.server.user, netns_hosts.key_path,
                     netns_hosts.known_hosts_path, timeout=1).close()
    finally:
        netns_hosts.link_up(1)
    client = _connect(host.address, 22, host.server.user, netns_hosts.key_path,
                      netns_hosts.known_hosts_path)
    client.close()


def test_owned_sshd_pids_finds_listener_and_connection_processes():
    """The leak check finds a server's listener and its per-connection sshd by owner."""
    with LocalSSHServer(alias="tracked") as server:
        client = _connect(server.address, server.port, server.user, server.key_path,
                          server.known_hosts_path)
        try:
            listener = process_id(server.pid)
            everything = set(owned_sshd_pids(os.getpid()))
            assert listener in everything
            owned = {listener} | (set(descendants(listener)) & everything)
            assert len(owned) >= 2, "connection sshd not found"
        finally:
            client.close()
    assert not wait_gone(owned, 10)
    assert not owned & set(owned_sshd_pids(os.getpid()))


# -- processes by pid and start time --------------------------------------------------
def test_a_reused_pid_is_not_the_process_that_had_it():
    """A ProcessId whose pid now belongs to another process (another start time) is
    neither alive nor signalled; a bare pid is refused rather than trusted."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        me = process_id(child.pid)
        assert is_alive(me) and me.start is not None
        impostor = ProcessId(child.pid, me.start - 1)  # same pid, another process
        assert not is_alive(impostor)
        assert not send_signal(impostor, signal.SIGKILL) and is_alive(me)
        with pytest.raises(TypeError, match="process_id"):
            is_alive(child.pid)
        with pytest.raises(TypeError, match="process_id"):
            wait_gone([child.pid], 1)
    finally:
        child.kill()
        child.wait(10)
    assert not is_alive(me)
    with pytest.raises(ProcessLookupError):
        process_id(child.pid)
    assert not is_alive(process_id(child.pid, gone_ok=True))


def test_a_zombie_is_not_alive_and_wait_gone_reports_what_is_left():
    """An ended child not yet reaped is not alive; wait_gone returns the processes
    still running at its deadline, and nothing once they ended."""
    quick = subprocess.Popen(["true"])
    slow = subprocess.Popen(["sleep", "30"])
    try:
        quick_id, slow_id = process_id(quick.pid), process_id(slow.pid)
        assert wait_gone([quick_id], 10) == []  # still a zombie here: not reaped yet
        assert quick.returncode is None
        assert wait_gone([quick_id, slow_id], 0.05) == [slow_id]
        assert send_signal(slow_id, signal.SIGTERM)
        assert wait_gone([slow_id], 10) == []
    finally:
        slow.kill()
        for process in (quick, slow):
            process.wait(10)


def test_descendants_are_found_with_their_start_times():
    """descendants() lists a grandchild with its identity, nearest first; a root
    identity that no longer matches its pid has none."""
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    shell_id, sleeper = process_id(shell.pid), None
    try:
        deadline = time.monotonic() + 10
        while not descendants(shell_id) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling with a deadline: sh forks when it gets to it
        (sleeper,) = descendants(shell_id)
        assert sleeper.start >= shell_id.start and is_alive(sleeper)
        mine = descendants(os.getpid())
        assert mine.index(shell_id) < mine.index(sleeper)
        assert descendants(ProcessId(shell.pid, shell_id.start - 1)) == []
    finally:
        if sleeper is not None:
            send_signal(sleeper, signal.SIGKILL)
        shell.kill()
        shell.wait(10)


# -- nothing outlives its owner ---------------------------------------------------------
# The owner runs in a process of its own, so that the test can end it as a CI cancel,
# a `timeout` wrapper or the OOM killer would, and then look for what is left.
OWNER = r"""
import json, os, sys
from sshpipe.testing import LocalSSHServer, NamespaceHosts

def identity(process):
    return list(process) if process is not None else None

if sys.argv[1] == "server":
    server = LocalSSHServer(alias="orphan").start()
    info = {"address": server.address, "port": server.port, "user": server.user,
            "key": server.key_path, "known_hosts": server.known_hosts_path,
            "directory": server.directory, "pid": server.pid,
            "watchdog": identity(getattr(server, "watchdog", None))}
else:
    hosts = NamespaceHosts(1).start()
    host = hosts[0]
    info = {"bridge": hosts.bridge, "netns": host.netns, "link": host.link,
            "directory": hosts.directory, "pid": host.server.pid,
            "address": host.address, "port": 22, "user": host.server.user,
            "key": hosts.key_path, "known_hosts": hosts.known_hosts_path}
print(json.dumps(info), flush=True)
sys.stdin.read()  # until the test ends this process
"""


def _start_owner(kind: str):
    """The owner process and what it printed about its server(s)."""
    import json
    import select
    import sys

    import sshpipe

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(sshpipe.__file__)))
    owner = subprocess.Popen([sys.executable, "-c", OWNER, kind], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env)
    if not select.select([owner.stdout], [], [], 60)[0]:
        owner.kill()
        pytest.fail("the owner did not report its server within 60 s")
    line = owner.stdout.readline()
    assert line, f"the owner failed (exit status {owner.wait(10)})"
    return owner, json.loads(line)


def _session_on(info):
    """A connection held by *this* process running a long command: its sshd and the
    command must end with the owner even though the client lives on."""
    client = _connect(info["address"], info["port"], info["user"], info["key"],
                      info["known_hosts"])
    _, stdout, _ = client.exec_command("echo $$; exec sleep 600", timeout=30)
    command = process_id(int(stdout.readline()))
    return client, command


def _refused(address: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((address, port), timeout=2).close()
    except OSError:
        return True
    return False


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # polling with a deadline: the watchdog works on its own
    return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_server_dies_with_its_owner(signum):
    """The owner of a LocalSSHServer ends by SIGTERM or SIGKILL, with no chance to
    call stop(): the listener, the per-connection sshd of a session another process
    still holds, that session's command and the watchdog are all gone within 10 s,
    the port refuses connections and the server's directory is removed."""
    owner, info = _start_owner("server")
    client = None
    processes = []
    try:
        listener = process_id(info["pid"])
        client, command = _session_on(info)
        connections = owned_sshd_pids(listener)
        assert connections, "the session has its own sshd processes"
        processes = [listener, *connections, command]
        if info["watchdog"]:
            processes.append(ProcessId(*info["watchdog"]))
        owner.send_signal(signum)
        assert owner.wait(10) == -signum
        left = wait_gone(processes, 10)
        assert not left, f"left running after the owner's {signal.Signals(signum).name}: " + \
            ", ".join(f"{p.pid} {command_line(p)[:60]!r}" for p in left)
        assert _refused(info["address"], info["port"])
        assert _wait_for(lambda: not os.path.exists(info["directory"]), 10), info["directory"]
    finally:
        if client is not None:
            client.close()
        for process in processes:
            send_signal(process, signal.SIGKILL)
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
        shutil.rmtree(info["directory"], ignore_errors=True)


def _ip_object_exists(*args: str) -> bool:
    return subprocess.run(["ip", *args], capture_output=True, timeout=30).returncode == 0


@pytest.mark.netns
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_namespace_hosts_die_with_their_owner(signum):
    """The owner of NamespaceHosts ends by SIGTERM or SIGKILL: each host's sshd (and
    a session on it) ends, and the namespace, its veth link and the bridge are
    removed, within 10 s."""
    from sshpipe.testing import netns_unavailable_reason

    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    owner, info = _start_owner("netns")
    client = None
    processes = []
    netns_exists = lambda: info["netns"] in subprocess.run(  # noqa: E731
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout.split()
    try:
        listener = process_id(info["pid"])
        client, command = _session_on(info)
        processes = [listener, *owned_sshd_pids(listener), command]
        owner.send_signal(signum)
        assert owner.wait(10) == -signum
        left = [f"{p.pid} {command_line(p)[:40]!r}" for p in wait_gone(processes, 10)]
        if not _wait_for(lambda: not netns_exists(), 10):
            left.append(f"namespace {info['netns']}")
        for link in (info["link"], info["bridge"]):
            if not _wait_for(lambda link=link: not _ip_object_exists("link", "show", link), 10):
                left.append(f"link {link}")
        if not _wait_for(lambda: not os.path.exists(info["directory"]), 10):
            left.append(info["directory"])
        assert not left, f"left after the owner's {signal.Signals(signum).name}: {left}"
    finally:
        if client is not None:
            client.close()
        for process in processes:
            send_signal(process, signal.SIGKILL)
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
        for args in (["link", "del", info["link"]], ["netns", "del", info["netns"]],
                     ["link", "del", info["bridge"]]):
            subprocess.run(["ip", *args], capture_output=True, timeout=30)
        shutil.rmtree(info["directory"], ignore_errors=True)


INNER_RUN = r"""
import json, os, threading
import pytest

@pytest.fixture
def teardown_marker():
    yield
    with open(os.environ["TORN_DOWN"], "w") as out:
        out.write("fixtures torn down")

def test_waits_for_the_signal(sshd, teardown_marker):
    with open(os.environ["READY"] + ".tmp", "w") as out:
        json.dump({"pid": sshd.pid, "directory": sshd.directory, "port": sshd.port}, out)
    os.rename(os.environ["READY"] + ".tmp", os.environ["READY"])
    threading.Event().wait(120)  # until the outer test signals this run
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_pytest_run_cleans_up_when_signalled(tmp_path, signum):
    """A pytest run using the sshd fixture gets SIGTERM, SIGHUP or SIGINT mid-test:
    it tears its fixtures down (the function fixture's teardown runs, the session
    sshd stops), reports the run as interrupted (exit status 2, not killed by the
    signal) and leaves no sshd and no server directory."""
    import json
    import sys

    import sshpipe

    (tmp_path / "test_inner.py").write_text(INNER_RUN)
    ready, torn_down = tmp_path / "ready", tmp_path / "torn_down"
    env = dict(os.environ, READY=str(ready), TORN_DOWN=str(torn_down),
               PYTHONPATH=os.path.dirname(os.path.dirname(sshpipe.__file__)))
    # The signal as a terminal or CI delivers it: restored to its default, in case
    # this run inherited it ignored (a run started under nohup, or in the
    # background without job control); the plugin leaves an ignored signal ignored.
    # The fixtures come from the plugin's entry point (pytest11), as in any project.
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(tmp_path / "test_inner.py")],
                           cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT,
                           preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    listener = None
    try:
        assert _wait_for(lambda: ready.exists() or run.poll() is not None, 60)
        assert ready.exists(), run.communicate(timeout=30)[0].decode()
        info = json.loads(ready.read_text())
        listener = process_id(info["pid"])
        run.send_signal(signum)
        output = run.communicate(timeout=60)[0].decode()
        assert run.returncode == pytest.ExitCode.INTERRUPTED, (run.returncode, output)
        assert torn_down.exists(), output
        assert not wait_gone([listener], 10)
        assert not os.path.exists(info["directory"])
        assert _refused("127.0.0.1", info["port"])
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=30)
        if listener is not None:
            send_signal(listener, signal.SIGKILL)


def _wait_forever(ready) -> None:
    ready.set()
    threading.Event().wait(60)


def test_a_forked_child_still_dies_by_sigterm():
    """The plugin's SIGTERM handler is the run's only: a child forked from the run
    (an SSHPipe child under fork inherits the handler) still ends by the signal,
    exit code -15, and does not tear down anything."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=_wait_forever, args=(ready,))
    child.start()
    try:
        assert ready.wait(30)
        child.terminate()
        child.join(30)
        assert child.exitcode == -signal.SIGTERM
    finally:
        if child.is_alive():
            child.kill()
            child.join(10)
