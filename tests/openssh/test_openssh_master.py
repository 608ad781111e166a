"""Finding and starting masters: one per key under concurrency, stale sockets,
lifetime (idle, owner's end), listing and stopping, ssh's failures as typed errors."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from sshpipe._openssh import (ANY_OWNER, MasterLost, Target, ensure_master, list_masters,
                              open_session, stop_masters)
from sshpipe._openssh import _procs
from sshpipe._openssh.controldir import KeyPaths
from sshpipe._openssh.master import master_command
from sshpipe.errors import AuthenticationError, ConnectError, ConnectTimeout, HostKeyError
from sshpipe.testing import LocalSSHServer, free_port, generate_key

from openssh_kit import SessionPipes, processes_mentioning, wait_for

ROOT = str(Path(__file__).resolve().parents[2])


def key_files(control_dir: str):
    return sorted(os.listdir(control_dir))


def test_second_lookup_finds_the_running_master(target, control_dir):
    """The first call starts the master, the next one finds it (same pid)."""
    first = ensure_master(target, control_dir=control_dir)
    second = ensure_master(target, control_dir=control_dir)
    try:
        assert first.started and not second.started
        assert first.pid == second.pid and first.key == second.key
        assert _procs.is_running(first.process)
        info, = list_masters(control_dir)
        assert info.process == first.process and info.owner.pid == os.getpid()
        assert info.watchdog is not None and _procs.is_running(info.watchdog)
    finally:
        first.close()
        second.close()


def test_master_command_line(target, control_dir):
    """The master runs with exactly the options the design names, host after --."""
    paths = KeyPaths(control_dir, "0123456789abcdef")
    argv = master_command(target, paths, persist=7, env={})
    assert argv[:1] == ["ssh"] and argv[-2:] == ["--", target.host]
    text = " ".join(argv)
    for option in ("-N -M -S", "-E", "-n -T -e none", "ControlPersist=7",
                   "ClearAllForwardings=yes", "ServerAliveInterval=10", "ServerAliveCountMax=3",
                   "BatchMode=yes", f"-F {target.config}"):
        assert option in text
    assert "StrictHostKeyChecking" not in text and "UserKnownHostsFile" not in text
    with_askpass = master_command(target, paths, persist=None,
                                  env={"SSH_ASKPASS": "/bin/true", "DISPLAY": ":0"})
    assert "BatchMode=yes" not in with_askpass and "ControlPersist=yes" in with_askpass


def test_twenty_sessions_at_once_share_one_master(target, control_dir):
    """20 threads open sessions at the same moment: one master serves them all."""
    count = 20
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(index: int) -> None:
        with SessionPipes() as pipes:
            try:
                barrier.wait(10)
                session = open_session(target, "cat", control_dir=control_dir, timeout=60,
                                       **pipes.remote_fds)
                pipes.handed_over()
                payload = f"session {index}\n".encode()
                pipes.write(payload)
                echoed = pipes.read_exactly(len(payload), timeout=30)
                pipes.close_stdin()
                results[index] = (session.master_pid, echoed == payload, session.wait(30))
            except Exception as exc:  # collected and reported below
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors, errors
    assert {pid for pid, _, _ in results} == {results[0][0]}
    assert all(ok and status == 0 for _, ok, status in results)
    assert len(list_masters(control_dir)) == 1
    assert len([p for p in processes_mentioning(control_dir)
                if _cmdline(p).startswith(b"ssh\0-N")]) == 1


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def test_processes_starting_at_once_share_one_master(target, control_dir):
    """Separate processes (as SSHPipe children are) racing for one owner's master
    start one master between them: the key's lock works across processes."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        from sshpipe._openssh import Target, ensure_master
        master = ensure_master(Target({target.host!r}, config={target.config!r}),
                               owner={os.getpid()}, control_dir={control_dir!r}, timeout=60)
        print(master.pid, master.started)
    """)
    racers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(5)]
    outputs = [racer.communicate(timeout=90) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), outputs
    lines = [out.split() for out, _ in outputs]
    assert len({pid for pid, _ in lines}) == 1
    assert [started for _, started in lines].count("True") == 1


def test_stale_socket_is_replaced(target, control_dir):
    """A socket file nobody listens on (a crashed master's) is removed and a new
    master started in its place."""
    probe = ensure_master(target, control_dir=control_dir)
    probe.stop()
    assert not os.path.exists(probe.paths.socket)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(probe.paths.socket)
    dead.close()
    fresh = ensure_master(target, control_dir=control_dir)
    try:
        assert fresh.started and fresh.pid != probe.pid
        assert fresh.paths.socket == probe.paths.socket
    finally:
        fresh.close()


def test_master_killed_then_next_session_starts_a_new_master(target, control_dir):
    """SIGKILL leaves the socket behind; the next session gets a new master."""
    first = ensure_master(target, control_dir=control_dir)
    first.close()
    os.kill(first.pid, signal.SIGKILL)
    assert _procs.wait_exit(first.process, 5)
    with SessionPipes() as pipes:
        session = open_session(target, "cat", control_dir=control_dir, **pipes.remote_fds)
        pipes.handed_over()
        assert session.master_pid != first.pid
        pipes.write(b"again")
        assert pipes.read_exactly(5) == b"again"
        pipes.close_stdin()
        assert session.wait(10) == 0


def test_idle_master_exits_after_persist(target, control_dir):
    """With persist=1 the master exits about a second after its last session, and
    the watchdog then removes the key's files."""
    master = ensure_master(target, control_dir=control_dir, persist=1)
    with SessionPipes() as pipes:
        session = master.open_session("true", **pipes.remote_fds)
        pipes.handed_over()
        assert session.wait(10) == 0
    ended_by = time.monotonic()
    assert _procs.wait_exit(master.process, 10)
    assert time.monotonic() - ended_by < 8
    wait_for(lambda: key_files(control_dir) == [], 10, "the key's files retired")


def test_master_ends_when_its_owner_is_killed(target, control_dir):
    """An owner killed with SIGKILL (no cleanup of its own) takes its master with it:
    the watchdog terminates the master, which has a session open, and retires it.

    The session runs ``cat``, which ends when sshd closes its input as the
    connection goes (a command that never reads, such as ``sleep``, would run on:
    see test_close_leaves_a_command_that_ignores_eof_running)."""
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {ROOT!r})
        from sshpipe._openssh import Target, open_session
        r, w = os.pipe()
        session = open_session(Target({target.host!r}, config={target.config!r}),
                               "exec cat", stdin=r, stdout=w, stderr=w,
                               control_dir={control_dir!r}, persist=600, timeout=60)
        print(session.master_pid, flush=True)
        time.sleep(120)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        master_pid = int(owner.stdout.readline())
        master = _procs.identify(master_pid)
        assert master is not None
    finally:
        owner.kill()
        owner.wait(10)
        owner.stdout.close()
    assert _procs.wait_exit(master, 15), "the master outlived its owner"
    wait_for(lambda: key_files(control_dir) == [], 10, "the key's files retired")
    wait_for(lambda: processes_mentioning(control_dir) == [], 10, "the watchdog exited")


def test_shared_master_has_no_owner_and_no_watchdog(target, control_dir):
    """owner=None: a master with no watchdog, listed without an owner, stoppable."""
    master = ensure_master(target, owner=None, control_dir=control_dir, persist=30)
    master.close()
    info, = list_masters(control_dir)
    assert info.owner is None and info.watchdog is None and info.alive
    assert ensure_master(target, owner=None, control_dir=control_dir).pid == master.pid
    owned = ensure_master(target, control_dir=control_dir)
    owned.close()
    assert owned.pid != master.pid  # another owner, another key
    assert [m.process for m in stop_masters(control_dir, owner=None)] == [master.process]
    assert [m.process for m in list_masters(control_dir)] == [owned.process]


def test_stop_masters_stops_them_and_removes_their_files(target, control_dir):
    """stop_masters ends every master (sessions included) and leaves no files."""
    master = ensure_master(target, control_dir=control_dir)
    with SessionPipes() as pipes:
        session = master.open_session("cat", **pipes.remote_fds)
        pipes.handed_over()
        stopped = stop_masters(control_dir, owner=ANY_OWNER)
        assert [info.process for info in stopped] == [master.process]
        with pytest.raises(MasterLost):
            session.wait(10)
    assert not _procs.is_running(master.process)
    wait_for(lambda: key_files(control_dir) == [], 10, "files removed")
    assert list_masters(control_dir) == []


def test_users_own_control_settings_are_set_aside(sshd, control_dir, tmp_path):
    """A config with its own ControlMaster/ControlPath/ControlPersist for the host:
    our master uses our socket, and nothing appears at the user's ControlPath."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    config = tmp_path / "ssh_config"
    config.write_text(sshd.client_config() + f"    ControlMaster auto\n"
                      f"    ControlPath {theirs}/cm-%C\n    ControlPersist 600\n")
    target = Target(sshd.alias, config=str(config))
    master = ensure_master(target, control_dir=control_dir)
    master.close()
    with SessionPipes() as pipes:
        session = master.open_session("echo ok", **pipes.remote_fds)
        pipes.handed_over()
        assert session.wait(10) == 0
        assert pipes.read_to_eof(pipes.stdout) == b"ok\n"
    assert list(theirs.iterdir()) == []


def test_target_words_that_ssh_would_misread_are_refused():
    """A host starting with '-' or holding shell characters never reaches ssh."""
    for host in ("-oProxyCommand=x", "a b", "h;rm", ""):
        with pytest.raises(ValueError):
            Target(host)
    with pytest.raises(ValueError):
        Target("ok", port=0)
    assert Target("h", user="u", port=2222, jump="j1,j2").options() == [
        "-l", "u", "-p", "2222", "-J", "j1,j2"]


# -- ssh's failures, typed -----------------------------------------------------

def _config(sshd, tmp_path, **overrides) -> str:
    """The test server's client config with some lines replaced."""
    lines = []
    for line in sshd.client_config().splitlines():
        word = line.split()[0] if line.strip() else ""
        if word in overrides:
            if overrides[word] is not None:
                lines.append(f"    {word} {overrides.pop(word)}")
            else:
                overrides.pop(word)
            continue
        lines.append(line)
    lines += [f"    {word} {value}" for word, value in overrides.items() if value is not None]
    path = tmp_path / f"config-{len(list(tmp_path.iterdir()))}"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _assert_nothing_left(control_dir):
    assert key_files(control_dir) == []
    wait_for(lambda: processes_mentioning(control_dir) == [], 10, "nothing runs")


def test_unknown_host_key_is_host_key_error(sshd, control_dir, tmp_path):
    """StrictHostKeyChecking as configured (yes) and an empty known_hosts: HostKeyError
    in the paramiko transport's words (the key's fingerprint included), and nothing
    left running or on disk."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    target = Target(sshd.alias, config=_config(sshd, tmp_path, UserKnownHostsFile=str(empty)))
    with pytest.raises(HostKeyError, match=r"is not known \(\S+ SHA256:\S+\) and "
                                           r"StrictHostKeyChecking is yes") as caught:
        ensure_master(target, control_dir=control_dir, timeout=20)
    assert caught.value.host == sshd.alias and empty.read_text() == ""
    _assert_nothing_left(control_dir)


def test_changed_host_key_is_host_key_error(sshd, control_dir, tmp_path):
    """A known_hosts entry with another key for the server: HostKeyError."""
    other = tmp_path / "other_host_key"
    generate_key(str(other))
    kind, blob = Path(str(other) + ".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{sshd.address}]:{sshd.port} {kind} {blob}\n")
    target = Target(sshd.alias, config=_config(sshd, tmp_path, UserKnownHostsFile=str(known)))
    with pytest.raises(HostKeyError, match="has CHANGED"):
        ensure_master(target, control_dir=control_dir, timeout=20)
    _assert_nothing_left(control_dir)


def test_refused_key_is_authentication_error(sshd, control_dir, tmp_path):
    """A key the server does not accept: AuthenticationError at once (BatchMode, no
    prompt), naming the host."""
    stranger = tmp_path / "stranger"
    generate_key(str(stranger))
    target = Target(sshd.alias, config=_config(sshd, tmp_path, IdentityFile=str(stranger)))
    started = time.monotonic()
    with pytest.raises(AuthenticationError,
                       match="refused authentication.*Permission denied") as caught:
        ensure_master(target, control_dir=control_dir, timeout=20)
    assert time.monotonic() - started < 15 and caught.value.host == sshd.alias
    _assert_nothing_left(control_dir)


def test_closed_port_is_connect_error(sshd, control_dir, tmp_path):
    """Nothing listening: a plain ConnectError saying so."""
    target = Target(sshd.alias, config=_config(sshd, tmp_path, Port=free_port()))
    with pytest.raises(ConnectError, match=r"port \d+ refused") as caught:
        ensure_master(target, control_dir=control_dir, timeout=20)
    assert type(caught.value) is ConnectError
    _assert_nothing_left(control_dir)


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_silent_server_is_connect_timeout_from_ssh(sshd, control_dir, tmp_path, silent_server):
    """ConnectTimeout=1 and no banner: ssh gives up and says so: ConnectTimeout."""
    target = Target(sshd.alias, config=_config(sshd, tmp_path, Port=silent_server))
    with pytest.raises(ConnectTimeout, match="timed out"):
        ensure_master(target, control_dir=control_dir, timeout=20, connect_timeout=1)
    _assert_nothing_left(control_dir)


def test_silent_server_is_connect_timeout_from_our_bound(sshd, control_dir, tmp_path,
                                                          silent_server):
    """No ConnectTimeout in the config: our own timeout kills ssh and raises."""
    target = Target(sshd.alias, config=_config(sshd, tmp_path, Port=silent_server))
    started = time.monotonic()
    with pytest.raises(ConnectTimeout, match="timed out after 1.5 s"):
        ensure_master(target, control_dir=control_dir, timeout=1.5)
    assert time.monotonic() - started < 5
    _assert_nothing_left(control_dir)


def test_passphrase_is_asked_through_ssh_askpass(control_dir, tmp_path):
    """With SSH_ASKPASS set (and SSH_ASKPASS_REQUIRE=force) the master asks it for a
    key's passphrase instead of failing under BatchMode, and connects. (The config
    must not say BatchMode yes itself: the user's own BatchMode is honoured.)"""
    key = tmp_path / "id_pass"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(key)],
                   check=True, stdin=subprocess.DEVNULL)
    asked = tmp_path / "asked"
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho \"$1\" >> {asked}\necho s3cret\n")
    askpass.chmod(0o700)
    env = dict(os.environ, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force")
    env.pop("SSH_AUTH_SOCK", None)
    with LocalSSHServer(alias="askpass-test", client_key_path=str(key)) as server:
        target = Target(server.alias, config=_config(server, tmp_path, BatchMode=None))
        without = dict(env)
        without.pop("SSH_ASKPASS")
        with pytest.raises(AuthenticationError):
            ensure_master(target, control_dir=control_dir, env=without, timeout=20)
        assert not asked.exists()
        master = ensure_master(target, control_dir=control_dir, env=env, timeout=20)
        master.close()
        assert "passphrase" in asked.read_text().lower()
        master.stop()
