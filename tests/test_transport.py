"""Connecting as OpenSSH would: config settings, host keys, authentication, proxies."""
from __future__ import annotations

import os
import shutil
import socket
import stat

import paramiko
import pytest

from sshpipe.errors import AuthenticationError, ConnectError, ConnectTimeout, HostKeyError
from sshpipe.testing import free_port, generate_key
from sshpipe.transport import connect, settings_for


def write_config(tmp_path, sshd, *, known_hosts=None, extra="", alias="target",
                 key_path=None) -> str:
    known_hosts = known_hosts if known_hosts is not None else sshd.known_hosts_path
    path = tmp_path / "ssh_config"
    path.write_text(
        f"Host {alias}\n"
        f"    HostName {sshd.address}\n"
        f"    Port {sshd.port}\n"
        f"    User {sshd.user}\n"
        f"    IdentityFile {key_path or sshd.key_path}\n"
        f"    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        f"    GlobalKnownHostsFile /dev/null\n"
        f"    ConnectTimeout 5\n"
        f"{extra}")
    return str(path)


def run(transport: paramiko.Transport, command: str) -> str:
    channel = transport.open_session()
    channel.exec_command(command)
    data = b""
    while True:
        chunk = channel.recv(65536)
        if not chunk:
            break
        data += chunk
    channel.recv_exit_status()
    return data.decode()


def test_settings_come_from_the_resolved_config(sshd, tmp_path):
    """HostName, Port, User, IdentityFile and timeouts come from resolving the alias."""
    config = write_config(tmp_path, sshd, extra="    ServerAliveInterval 7\n    Compression yes\n")
    settings = settings_for("target", config)
    assert (settings.hostname, settings.port, settings.user) == (sshd.address, sshd.port,
                                                                 sshd.user)
    assert settings.identity_files[0] == sshd.key_path and settings.identities_only
    assert settings.connect_timeout == 5 and settings.server_alive_interval == 7
    assert settings.compression is True
    assert settings.known_hosts_name == f"[{sshd.address}]:{sshd.port}"


def test_connects_runs_command_and_uses_fast_nodelay_socket(sshd, tmp_path):
    """connect() gives an authenticated transport over a TCP_NODELAY socket with AES-GCM."""
    transport = connect(settings_for("target", write_config(tmp_path, sshd)))
    try:
        assert transport.is_authenticated()
        assert transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert transport.local_cipher == "aes128-gcm@openssh.com"
        assert run(transport, "echo ok") == "ok\n"
    finally:
        transport.close()


def test_unknown_host_key_is_refused_by_default(sshd, tmp_path):
    """With no known_hosts entry and the default StrictHostKeyChecking, connect refuses,
    naming the host and the key's fingerprint."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = write_config(tmp_path, sshd, known_hosts=str(empty))
    with pytest.raises(HostKeyError, match=r"target: host key for .* is not known .*SHA256:"):
        connect(settings_for("target", config))
    assert empty.read_text() == ""


def test_accept_new_records_unknown_key_privately(sshd, tmp_path):
    """StrictHostKeyChecking accept-new records a new key (file mode 0600) and connects."""
    known = tmp_path / "new" / "known_hosts"
    config = write_config(tmp_path, sshd, known_hosts=str(known),
                          extra="    StrictHostKeyChecking accept-new\n")
    connect(settings_for("target", config)).close()
    assert sshd.host_key_line in known.read_text()
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    assert stat.S_IMODE(known.parent.stat().st_mode) == 0o700
    connect(settings_for("target", config)).close()
    assert known.read_text().count("\n") == 1


@pytest.mark.parametrize("policy", ["yes", "accept-new", "no"])
def test_changed_host_key_is_refused_whatever_the_policy(sshd, tmp_path, policy):
    """A key that differs from the recorded one is refused, even with accept-new or no."""
    other = tmp_path / "other_host_key"
    generate_key(str(other))
    kind, blob = (tmp_path / "other_host_key.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{sshd.address}]:{sshd.port} {kind} {blob}\n")
    config = write_config(tmp_path, sshd, known_hosts=str(known),
                          extra=f"    StrictHostKeyChecking {policy}\n")
    with pytest.raises(HostKeyError, match="CHANGED"):
        connect(settings_for("target", config))


def test_wrong_client_key_is_an_authentication_error(sshd, tmp_path):
    """A key the server does not know gives AuthenticationError naming user and host."""
    stranger = tmp_path / "stranger"
    generate_key(str(stranger))
    config = write_config(tmp_path, sshd, key_path=str(stranger))
    with pytest.raises(AuthenticationError, match=f"{sshd.user}@{sshd.address}.*ssh-ed25519"):
        connect(settings_for("target", config))


def test_refused_connection_names_host_and_port(sshd, tmp_path):
    """A closed port gives ConnectError 'refused' with host and port."""
    port = free_port()
    config = write_config(tmp_path, sshd).replace(f"Port {sshd.port}", f"Port {port}")
    path = tmp_path / "refused_config"
    path.write_text(open(config).read().replace(f"Port {sshd.port}", f"Port {port}"))
    with pytest.raises(ConnectError, match=f"port {port} refused"):
        connect(settings_for("target", str(path)))


def test_unknown_host_name_is_a_connect_error(tmp_path):
    """A name that does not resolve gives ConnectError naming it."""
    with pytest.raises(ConnectError, match="unknown host name 'no-such-host.invalid'"):
        empty = tmp_path / "empty_config"
        empty.write_text("")
        connect(settings_for("no-such-host.invalid", str(empty)))


def test_silent_server_times_out(tmp_path):
    """A server that accepts TCP but never speaks SSH hits ConnectTimeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    config = tmp_path / "config"
    config.write_text(f"Host mute\n HostName 127.0.0.1\n Port {port}\n ConnectTimeout 1\n")
    try:
        with pytest.raises(ConnectTimeout, match="mute"):
            connect(settings_for("mute", str(config)))
    finally:
        listener.close()


def test_proxyjump_through_a_jump_host(sshd, tmp_path):
    """ProxyJump reaches the target through a jump host's direct-tcpip channel."""
    base = write_config(tmp_path, sshd, alias="jump")
    text = open(base).read()
    text += text.replace("Host jump", "Host behind").replace(
        "    ConnectTimeout 5\n", "    ConnectTimeout 5\n    ProxyJump jump\n")
    config = tmp_path / "jump_config"
    config.write_text(text)
    settings = settings_for("behind", str(config))
    assert settings.proxy_jump == "jump"
    transport = connect(settings)
    try:
        assert run(transport, "echo jumped") == "jumped\n"
    finally:
        transport.close()


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client")
def test_proxycommand_is_used_with_tokens_expanded(sshd, tmp_path):
    """ProxyCommand (here ssh -W %h:%p) carries the connection."""
    config = write_config(tmp_path, sshd)
    text = open(config).read() + (
        f"    ProxyCommand ssh -F {sshd.config_path} -W %h:%p {sshd.alias}\n")
    path = tmp_path / "proxy_config"
    path.write_text(text)
    transport = connect(settings_for("target", str(path)))
    try:
        assert run(transport, "echo proxied") == "proxied\n"
    finally:
        transport.close()


def test_explicit_overrides_win_over_config(sshd, tmp_path):
    """user=, port= and identity_file= passed in win, as on ssh's command line."""
    path = tmp_path / "override_config"
    path.write_text(open(write_config(tmp_path, sshd)).read()
                    .replace(f"User {sshd.user}", "User nobody")
                    .replace(f"Port {sshd.port}", "Port 1")
                    .replace(f"IdentityFile {sshd.key_path}", "IdentityFile ~/no_such_key"))
    settings = settings_for("target", str(path), user=sshd.user, port=sshd.port,
                            identity_file=sshd.key_path)
    assert (settings.user, settings.port) == (sshd.user, sshd.port)
    assert settings.identity_files[0] == sshd.key_path
    connect(settings).close()


@pytest.mark.skipif(shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None,
                    reason="no ssh-agent")
def test_keys_from_ssh_agent_are_used(sshd, tmp_path, monkeypatch):
    """With no IdentityFile usable, a key held by ssh-agent (SSH_AUTH_SOCK) logs in."""
    import subprocess

    socket_path = str(tmp_path / "agent.sock")
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", socket_path], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(socket_path):
                break
            __import__("time").sleep(0.01)
        added = subprocess.run(["ssh-add", sshd.key_path], env={"SSH_AUTH_SOCK": socket_path},
                               capture_output=True, text=True, timeout=30)
        assert added.returncode == 0, added.stderr
        monkeypatch.setenv("SSH_AUTH_SOCK", socket_path)
        config = write_config(tmp_path, sshd, key_path=str(tmp_path / "no_such_key"))
        path = tmp_path / "agent_config"
        path.write_text(open(config).read().replace("IdentitiesOnly yes", "IdentitiesOnly no"))
        transport = connect(settings_for("target", str(path)))
        try:
            assert run(transport, "echo via-agent") == "via-agent\n"
        finally:
            transport.close()
    finally:
        agent.terminate()
        agent.wait(timeout=10)


# -- known_hosts as OpenSSH reads it (markers, patterns, hashes) ----------------------

def other_key(tmp_path, name="other") -> str:
    """``type base64`` of a freshly generated key that is not the server's."""
    path = tmp_path / name
    generate_key(str(path))
    return " ".join((tmp_path / f"{name}.pub").read_text().split()[:2])


def connect_with(tmp_path, sshd, known_hosts_text: str, extra: str = ""):
    known = tmp_path / "known_hosts_under_test"
    known.write_text(known_hosts_text)
    return connect(settings_for("target", write_config(tmp_path, sshd, known_hosts=str(known),
                                                       extra=extra)))


def test_markers_and_junk_for_other_hosts_do_not_break_plain_keys_issue_11(sshd, tmp_path):
    """@cert-authority and @revoked lines, unknown markers and malformed lines for other
    hosts are skipped (paramiko's own parser crashed on them); the plain key works."""
    other = other_key(tmp_path)
    text = (f"# comment\n\n"
            f"@cert-authority *.example.com {other}\n"
            f"@revoked old.example.com {other}\n"
            f"@unknown-marker {sshd.known_hosts_entry()}\n"
            f"@revoked @cert-authority * {other}\n"
            f"broken line\n"
            f"bad.example.com ssh-ed25519 not-base64!\n"
            f"odd.example.com ssh-unknown-type AAAA\n"
            f"  {sshd.known_hosts_entry()} trailing comment\n")
    connect_with(tmp_path, sshd, text).close()


@pytest.mark.parametrize("policy", ["yes", "accept-new", "no"])
def test_revoked_host_key_is_refused_whatever_the_policy(sshd, tmp_path, policy):
    """A server key marked @revoked (for a pattern matching the host) is refused with
    REVOKED HOST KEY naming the file and line, even next to a plain entry for it."""
    text = f"{sshd.known_hosts_entry()}\n@revoked * {sshd.host_key_line}\n"
    with pytest.raises(HostKeyError, match=r"REVOKED HOST KEY.*known_hosts_under_test:2"):
        connect_with(tmp_path, sshd, text, extra=f"    StrictHostKeyChecking {policy}\n")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="no ssh-keygen")
def test_hashed_entries_made_by_ssh_keygen_match(sshd, tmp_path):
    """A known_hosts file hashed by ``ssh-keygen -H`` (HashKnownHosts) still matches."""
    import subprocess

    known = tmp_path / "hashed_known_hosts"
    known.write_text(sshd.known_hosts_entry() + "\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, timeout=30,
                   capture_output=True)
    assert known.read_text().startswith("|1|")
    config = write_config(tmp_path, sshd, known_hosts=str(known))
    connect(settings_for("target", config)).close()


def test_patterns_wildcards_and_negation(sshd, tmp_path):
    """Wildcards match the [host]:port name; a negated pattern wins over a positive one."""
    wildcard = f"[{sshd.address}]:* {sshd.host_key_line}\n"
    connect_with(tmp_path, sshd, wildcard).close()
    negated = f"*,![{sshd.address}]:{sshd.port} {sshd.host_key_line}\n"
    with pytest.raises(HostKeyError, match="is not known"):
        connect_with(tmp_path, sshd, negated)


def test_cert_authority_is_not_a_host_key(sshd, tmp_path):
    """A @cert-authority line for the host does not make its key known (it signs host
    certificates); the error says so."""
    text = f"@cert-authority [{sshd.address}]:{sshd.port} {sshd.host_key_line}\n"
    with pytest.raises(HostKeyError, match="is not known.*@cert-authority"):
        connect_with(tmp_path, sshd, text)


def test_a_fifo_named_as_known_hosts_is_skipped_not_read(sshd, tmp_path):
    """A FIFO (or device) given as a known_hosts file is skipped at once, with a
    warning, not read forever; the next file still counts."""
    import time

    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    real = tmp_path / "kh"
    real.write_text(sshd.known_hosts_entry() + "\n")
    config = write_config(tmp_path, sshd, known_hosts=f"{fifo} {real}")
    started = time.monotonic()
    connect(settings_for("target", config)).close()
    assert time.monotonic() - started < 10


# -- private keys as OpenSSH loads them -----------------------------------------------

def copy_key(sshd, tmp_path, mode: int) -> str:
    path = tmp_path / f"client_key_{mode:o}"
    shutil.copyfile(sshd.key_path, path)
    os.chmod(path, mode)
    return str(path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660], ids=lambda mode: f"{mode:o}")
def test_private_key_others_can_read_is_refused_issue_11(sshd, tmp_path, mode):
    """A key file of this user with any group or other permission is ignored, as
    OpenSSH ignores it; the error says UNPROTECTED PRIVATE KEY FILE and the mode."""
    key = copy_key(sshd, tmp_path, mode)
    config = write_config(tmp_path, sshd, key_path=key)
    with pytest.raises(AuthenticationError,
                       match=rf"UNPROTECTED PRIVATE KEY FILE: permissions 0{mode:o}"):
        connect(settings_for("target", config))


def test_private_key_mode_600_and_400_are_used(sshd, tmp_path):
    """Owner-only keys (0600, 0400) log in."""
    for mode in (0o600, 0o400):
        config = write_config(tmp_path, sshd, key_path=copy_key(sshd, tmp_path, mode))
        connect(settings_for("target", config)).close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the key another owner")
def test_private_key_of_another_owner_is_not_checked(sshd, tmp_path):
    """As sshkey_perm_ok(): only a key owned by this user is checked for its mode."""
    key = copy_key(sshd, tmp_path, 0o644)
    os.chown(key, 65534, 65534)
    connect(settings_for("target", write_config(tmp_path, sshd, key_path=key))).close()


def test_silent_port_puts_the_banner_timeout_in_the_error_not_on_stderr(tmp_path):
    """A port that accepts and never speaks SSH gives ConnectTimeout whose message
    says so; paramiko's banner traceback is not printed (run with no logging set up,
    as a user's script would be)."""
    import subprocess
    import sys

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    config = tmp_path / "config"
    config.write_text(f"Host mute\n HostName 127.0.0.1\n Port {port}\n ConnectTimeout 1\n"
                      f" UserKnownHostsFile /dev/null\n GlobalKnownHostsFile /dev/null\n")
    script = ("from sshpipe.transport import connect, settings_for\n"
              "from sshpipe.errors import ConnectTimeout\n"
              "try:\n"
              f"    connect(settings_for('mute', {str(config)!r}))\n"
              "except ConnectTimeout as exc:\n"
              "    print('CAUGHT', exc, '|', repr(exc.__cause__))\n")
    try:
        run_result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                    text=True, timeout=60,
                                    env={**os.environ, "PYTHONPATH": os.getcwd()})
    finally:
        listener.close()
    assert run_result.stdout.startswith("CAUGHT mute: SSH handshake with"), run_result
    assert "timed out after 1 s" in run_result.stdout
    assert "banner" in run_result.stdout.lower()
    assert run_result.stderr == "", run_result.stderr
