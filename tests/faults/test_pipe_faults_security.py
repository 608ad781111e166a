"""Security: host keys, client keys, secrets kept out of logs and command lines,
private files on both ends, and nothing from the caller reaching a shell unquoted."""
from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest

from faultkit import FAULT_AGENT, HERE, make_pipe, record
from sshpipe import (AuthenticationError, HostKeyError, PipeState, SSHConfigError,
                     SSHPipe)
from sshpipe.testing import LocalSSHServer, generate_key

SECRET = "hunter2-Sup3rSecret-pw"


def _config(tmp_path, sshd, *, known_hosts, extra="", key=None, name="ssh_config"):
    path = tmp_path / name
    path.write_text(
        f"Host target\n"
        f"    HostName {sshd.address}\n"
        f"    Port {sshd.port}\n"
        f"    User {sshd.user}\n"
        f"    IdentityFile {key or sshd.key_path}\n"
        f"    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        f"    GlobalKnownHostsFile /dev/null\n"
        f"{extra}")
    return str(path)


def _refused(pipe, error_type):
    started = time.monotonic()
    with pytest.raises(error_type) as info:
        pipe.start()
    seconds = time.monotonic() - started
    assert pipe.state is PipeState.BROKEN
    if pipe.pid is not None:
        pipe.join(10)
        assert not pipe.is_alive()
    return seconds, info.value


def _sessions(server) -> int:
    return server.read_log().count("Starting session")


def test_unknown_host_key_refused_by_default(sshd, tmp_path, method):
    """No known_hosts entry and no StrictHostKeyChecking setting: start() raises
    HostKeyError, nothing is recorded and no remote command runs."""
    known = tmp_path / "known_hosts"
    known.write_text("")
    before = _sessions(sshd)
    pipe = SSHPipe("target", [sshd.python, FAULT_AGENT], config=_config(
        tmp_path, sshd, known_hosts=known), heartbeat=0.5)
    seconds, error = _refused(pipe, HostKeyError)
    record("unknown host key (default policy)", method, seconds, type(error).__name__)
    assert "not known" in str(error) and "SHA256:" in str(error)
    assert known.read_text() == "" and _sessions(sshd) == before


@pytest.mark.parametrize("policy", ["accept-new", "no"])
def test_changed_host_key_refused_even_with_accept_new(sshd, tmp_path, method, policy):
    """A host key that differs from the recorded one is refused whatever the policy;
    known_hosts is left as it was."""
    generate_key(str(tmp_path / "other"))
    kind, blob = (tmp_path / "other.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{sshd.address}]:{sshd.port} {kind} {blob}\n")
    before = known.read_text()
    pipe = SSHPipe("target", [sshd.python, FAULT_AGENT], config=_config(
        tmp_path, sshd, known_hosts=known, extra=f"    StrictHostKeyChecking {policy}\n"),
        heartbeat=0.5)
    seconds, error = _refused(pipe, HostKeyError)
    record(f"changed host key (StrictHostKeyChecking {policy})", method, seconds,
           type(error).__name__)
    assert "CHANGED" in str(error) and known.read_text() == before


def test_wrong_client_key_is_authentication_error(sshd, tmp_path, method):
    """A client key the server does not accept: AuthenticationError, no session."""
    generate_key(str(tmp_path / "stranger"))
    before = _sessions(sshd)
    pipe = SSHPipe("target", [sshd.python, FAULT_AGENT], config=_config(
        tmp_path, sshd, known_hosts=sshd.known_hosts_path, key=str(tmp_path / "stranger")),
        heartbeat=0.5)
    seconds, error = _refused(pipe, AuthenticationError)
    record("wrong client key", method, seconds, type(error).__name__)
    assert sshd.user in str(error) and _sessions(sshd) == before


def test_secret_never_logged_nor_on_a_command_line(sshd, tmp_path, method, caplog):
    """A secret given in env= and sent in a message appears in no log record (caller,
    child, paramiko, the agent's forwarded records, sshd's log) and not on the remote
    agent's command line."""
    caplog.set_level(1)
    root = logging.getLogger()
    log_file = tmp_path / "all.log"
    handler = logging.FileHandler(log_file)  # inherited by the child under fork
    handler.setLevel(1)
    root.addHandler(handler)
    previous = root.level
    root.setLevel(1)
    try:
        with make_pipe(sshd, env={"API_PASSWORD": SECRET}) as pipe:
            agent = pipe.remote_info["pid"]
            with open(f"/proc/{agent}/cmdline", "rb") as cmdline:
                argv = cmdline.read()
            pipe.send({"password": SECRET})
            assert pipe.recv(timeout=10) == {"password": SECRET}
            pipe.send(("cmd", "log_debug"))
            pipe.flush(timeout=10)
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(previous)
    texts = {"caller records": "\n".join(r.getMessage() + str(r.__dict__)
                                         for r in caplog.records),
             "child log file": log_file.read_text(errors="replace"),
             "sshd log": sshd.read_log(),
             "agent cmdline": argv.decode(errors="replace")}
    leaked = [where for where, text in texts.items() if SECRET in text]
    record("secret in env/message kept out of logs", method, None,
           f"not found in {', '.join(texts)}" if not leaked else f"LEAKED in {leaked}")
    assert caplog.records, "logging captured nothing: the check would be empty"
    assert not leaked


# -- private files ---------------------------------------------------------------
UMASK0 = 'ForceCommand umask 000; eval "$SSH_ORIGINAL_COMMAND"\n'


def _not_private(top: Path):
    bad = []
    for path in [top] + list(top.rglob("*")):
        info = path.lstat()
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            bad.append(f"{path} {oct(stat.S_IMODE(info.st_mode))}")
    return bad


def test_files_sshpipe_creates_are_private_on_both_ends(sshd, tmp_path, method):
    """The zero-install cache is a 0700 directory of the user's, nothing in it is
    writable by others, and the caller side leaves no shared file in /tmp."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    before = _tmp_entries()
    with make_pipe(sshd, env={"XDG_CACHE_HOME": str(cache)}) as pipe:
        pipe.send(("cmd", "pid"))
        pipe.recv(timeout=10)
        remote_cache = Path(pipe.remote_info["cache"])
    new_tmp = [Path("/tmp", name) for name in _tmp_entries() - before]
    info = remote_cache.lstat()
    writable = [f"{p} {oct(stat.S_IMODE(p.lstat().st_mode))}" for p in remote_cache.rglob("*")
                if stat.S_IMODE(p.lstat().st_mode) & 0o022 or p.lstat().st_uid != os.getuid()]
    sources = [p for p in remote_cache.rglob("*.py") if stat.S_IMODE(p.lstat().st_mode) & 0o077]
    bad = writable + [str(p) for p in sources] + [
        b for p in new_tmp if p.exists() for b in _not_private(p)]
    record("files created on both ends are private", method, None,
           "all private" if not bad else f"NOT private: {bad[:3]}")
    assert remote_cache == cache / "sshpipe"
    assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
    assert not bad


def test_files_private_under_remote_umask_000_issue_8(tmp_path):
    """With umask 000 on the remote, nothing sshpipe creates is writable by others."""
    cache = tmp_path / "cache"
    with LocalSSHServer(alias="umask0", extra_server_options=UMASK0) as server:
        with make_pipe(server, env={"XDG_CACHE_HOME": str(cache)}) as pipe:
            pipe.send(("cmd", "pid"))
            pipe.recv(timeout=10)
    bad = [str(p) for p in [cache] + list(cache.rglob("*"))
           if stat.S_IMODE(p.lstat().st_mode) & 0o022]
    assert not bad


def wait_gone_path(path: Path, timeout: float) -> bool:
    """True if ``path`` still exists after ``timeout`` seconds (the agent's
    supervisor removes it just after the pipe ended)."""
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.exists()


def _tmp_entries():
    # sshpipe-sshd-* and sshpipe-netns-* are the test bed's, made by other tests too.
    return {name for name in os.listdir("/tmp") if name.startswith("sshpipe")
            and not name.startswith(("sshpipe-sshd-", "sshpipe-netns-"))}


def test_fallback_cache_is_private_and_removed_issue_8(sshd, tmp_path):
    """An unsafe cache directory is not used; the private fallback is removed after."""
    cache = tmp_path / "cache"
    (cache / "sshpipe").mkdir(parents=True)
    os.chmod(cache / "sshpipe", 0o777)
    used = None
    try:
        with make_pipe(sshd, env={"XDG_CACHE_HOME": str(cache)}) as pipe:
            used = Path(pipe.remote_info["cache"])
            assert stat.S_IMODE(used.lstat().st_mode) == 0o700
        assert used != cache / "sshpipe"
        assert not wait_gone_path(used, 10)
    finally:
        if used is not None and used != cache / "sshpipe":
            shutil.rmtree(used, ignore_errors=True)


# -- quoting ------------------------------------------------------------------------
ODD = "odd host; touch PWNED1 $(touch PWNED2) `touch PWNED3` 'q' \"d\" \\ & | >x"
# Passes ssh's host name check (no shell metacharacters or spaces) but is full of
# glob and token characters.
GLOBBY = "globby*host?[x]#!~=+%%h"


def test_host_name_with_shell_metacharacters_is_refused(sshd, tmp_path, method,
                                                        monkeypatch):
    """A host name with spaces and shell metacharacters is refused as ssh refuses it
    (SSHConfigError), before anything runs."""
    monkeypatch.chdir(tmp_path)
    pipe = SSHPipe(ODD, [sshd.python, FAULT_AGENT], config=sshd.config_path, heartbeat=0.5)
    started = time.monotonic()
    with pytest.raises(SSHConfigError, match="invalid characters"):
        pipe.start()
    record("host name with shell metacharacters", method, time.monotonic() - started,
           "SSHConfigError")
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path("/tmp").glob("PWNED*"))


def test_no_caller_input_reaches_a_shell_unquoted(sshd, tmp_path, method, monkeypatch,
                                                 transport):
    """A host name full of glob and token characters (through ProxyCommand tokens), a
    script path, arguments and cwd full of spaces and shell metacharacters arrive
    verbatim (remote command line and zero-install argv) and nothing is executed.

    The ProxyCommand runs once per connection: twice under paramiko (a connection
    per pipe), once under OpenSSH, whose second pipe is a session on the first
    one's master (README, "Transports": one master per host and caller)."""
    monkeypatch.chdir(tmp_path)
    odd_dir = tmp_path / "dir with spaces; $(touch PWNED4) `touch PWNED5` 'q'"
    odd_dir.mkdir()
    script = odd_dir / "fault agent; $(touch PWNED6).py"
    shutil.copy(FAULT_AGENT, script)
    relay_log = tmp_path / "relay.log"
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host *\n"
        f"    Port {sshd.port}\n"
        f"    User {sshd.user}\n"
        f"    IdentityFile {sshd.key_path}\n"
        f"    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {sshd.known_hosts_path}\n"
        f"    GlobalKnownHostsFile /dev/null\n"
        f"    HostKeyAlias [{sshd.address}]:{sshd.port}\n"
        f"    ProxyCommand {sys.executable} {HERE / 'agents' / 'relay.py'} {relay_log} "
        f"%h %n %p\n")
    args = ["arg; touch PWNED7", "$(touch PWNED8)", "a'b\"c", "*", "~", ""]
    started = time.monotonic()
    # Not zero-install: the words go through the remote login shell.
    with SSHPipe(GLOBBY, [sshd.python, str(script), "none"] + args, config=str(config),
                 cwd=str(odd_dir), heartbeat=0.5) as pipe:
        pipe.send(("cmd", "argv"))
        argv, cwd = pipe.recv(timeout=10)
    # Zero-install: the script path and words travel in the loader's JSON.
    with SSHPipe(GLOBBY, [str(script), "none"] + args, config=str(config), python=sshd.python,
                 cwd=str(odd_dir), heartbeat=0.5) as pipe:
        pipe.send(("cmd", "argv"))
        zi_argv, zi_cwd = pipe.recv(timeout=10)
    seconds = time.monotonic() - started
    if transport == "openssh":
        from sshpipe._openssh import stop_masters
        # The master (and the ProxyCommand relay under it) would live on for
        # ControlPersist; end it with the test.
        stop_masters(owner=os.getpid())
    proxied = [json.loads(line) for line in relay_log.read_text().splitlines()]
    pwned = sorted(str(p) for p in tmp_path.rglob("PWNED*")) + sorted(
        str(p) for p in Path("/tmp").glob("PWNED*")) + sorted(
        str(p) for p in Path(os.path.expanduser("~")).glob("PWNED*"))
    record("paths/args/cwd with shell metacharacters", method, seconds,
           "verbatim, nothing executed" if not pwned else f"EXECUTED: {pwned}")
    assert argv == args and zi_argv == args
    assert cwd == str(odd_dir) and zi_cwd == str(odd_dir)
    assert proxied == [[GLOBBY, GLOBBY, str(sshd.port)]] * (1 if transport == "openssh" else 2)
    assert not pwned
