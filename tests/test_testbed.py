"""The test bed is real: OpenSSH servers on loopback and in network namespaces."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time

import paramiko
import pytest

from sshpipe.testing import LocalSSHServer, descendants


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
    pids = [server.pid] + descendants(server.pid)
    assert len(pids) >= 2, "a live connection has its own sshd process"
    directory = server.directory
    server.stop()
    client.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.01)
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")]
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
    from sshpipe.testing import owned_sshd_pids

    with LocalSSHServer(alias="tracked") as server:
        client = _connect(server.address, server.port, server.user, server.key_path,
                          server.known_hosts_path)
        try:
            everything = set(owned_sshd_pids(os.getpid()))
            assert server.pid in everything
            owned = {server.pid} | (set(descendants(server.pid)) & everything)
            assert len(owned) >= 2, "connection sshd not found"
        finally:
            client.close()
    deadline = time.monotonic() + 10
    while owned & set(owned_sshd_pids(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not owned & set(owned_sshd_pids(os.getpid()))
