"""Property tests: generated configs agree with ``ssh -G``; text survives a round trip."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sshpipe.config import SSHConfig, dumps
from sshpipe.config._oracle import Oracle
from sshpipe.errors import SSHConfigError

HOSTS = ["x", "web", "db.example.com", "WEB"]

_words = st.sampled_from(["web", "db.example.com", "x", "*", "w?b", "*.example.com", "!web",
                          "!x", "WEB", "db*"])
_values = {
    "Port": st.sampled_from(["22", "2222", "0", "70000", "ssh", "x"]),
    "User": st.sampled_from(["alice", "bob", "%u", '"two words"']),
    "HostName": st.sampled_from(["%h.example.com", "web.example.com", "10.0.0.1", "UPPER.example.com"]),
    "IdentityFile": st.sampled_from(["~/.ssh/a", "~/.ssh/b", "%d/k", "~/.ssh/a"]),
    "Compression": st.sampled_from(["yes", "no", "YES", "maybe"]),
    "ServerAliveInterval": st.sampled_from(["30", "1m", "none", "5x"]),
    "StrictHostKeyChecking": st.sampled_from(["yes", "no", "ask", "accept-new", "off"]),
    "ControlPath": st.sampled_from(["~/.ssh/cm-%C", "none", "/tmp/%r@%h:%p"]),
    "ProxyJump": st.sampled_from(["gw", "u@gw:2200", "none", "a,b"]),
    "ProxyCommand": st.sampled_from(["nc %h %p", "none"]),
    "SendEnv": st.sampled_from(["LANG", "LC_*", "-LC_*"]),
    "LocalForward": st.sampled_from(["8080 localhost:80", "8080", "127.0.0.1:1 h:2"]),
    "Ciphers": st.sampled_from(["+aes128-cbc", "-chacha20*", "aes256-ctr", "bogus"]),
    "CanonicalizeHostname": st.sampled_from(["yes", "no", "always"]),
    "UserKnownHostsFile": st.sampled_from(["~/.ssh/kh %h", "none"]),
    "Bogus": st.just("1"),
    "SetEnv": st.sampled_from(["A=1", "A=1 B=2", 'C="x y"', "D"]),
    "HostKeyAlias": st.sampled_from(["Alias", "%h"]),
    "IdentityAgent": st.sampled_from(["~/a.sock", "none", "SSH_AUTH_SOCK", "$SSH_AUTH_SOCK"]),
    "ControlPersist": st.sampled_from(["yes", "0", "5m", "x"]),
    "AddKeysToAgent": st.sampled_from(["yes", "confirm", "confirm 5m", "1h", "bad"]),
    "RekeyLimit": st.sampled_from(["1G", "default none", "2M 1h", "4"]),
    "PermitRemoteOpen": st.sampled_from(["any", "h:1", "none x", "h:*"]),
    "EscapeChar": st.sampled_from(["~", "^B", "none", "ab"]),
    "TunnelDevice": st.sampled_from(["any", "1:2", "x"]),
    "ConnectTimeout": st.sampled_from(["10", "none", "0"]),
    "RemoteForward": st.sampled_from(["8080", "1:h:2", "/tmp/%h.s /tmp/b"]),
    "DynamicForward": st.sampled_from(["1080", "*:1081", "[::1]:1082"]),
    "Tunnel": st.sampled_from(["yes", "ethernet", "no"]),
    "ClearAllForwardings": st.sampled_from(["yes", "no"]),
    "IPQoS": st.sampled_from(["af11", "cs1 ef", "0x10", "300"]),
    "GlobalKnownHostsFile": st.sampled_from(["/a /b", "none"]),
    "CanonicalDomains": st.sampled_from(["example.com", "a.org b.org"]),
    "PubkeyAcceptedAlgorithms": st.sampled_from(["+ssh-rsa", "-ssh-rsa*", "ssh-ed25519*"]),
    "LogLevel": st.sampled_from(["quiet", "DEBUG1", "info"]),
    "BatchMode": st.sampled_from(["yes", "no"]),
    "UpdateHostKeys": st.sampled_from(["ask", "yes", "no"]),
    "RequestTTY": st.sampled_from(["no", "force"]),
    "RemoteCommand": st.sampled_from(["uptime %h", "none"]),
}
_sep = st.sampled_from([" ", "=", " = ", "\t", "  "])
_indent = st.sampled_from(["", "  ", "\t", "    "])
_eol = st.sampled_from(["\n", "\r\n"])


@st.composite
def _option_line(draw):
    key = draw(st.sampled_from(sorted(_values)))
    spelled = draw(st.sampled_from([key, key.lower(), key.upper()]))
    return f"{draw(_indent)}{spelled}{draw(_sep)}{draw(_values[key])}"


@st.composite
def _header_line(draw):
    if draw(st.booleans()):
        pats = draw(st.lists(_words, min_size=1, max_size=3))
        return "Host " + " ".join(pats)
    crit = draw(st.sampled_from([
        "all", "canonical", "final", "!canonical", "host web,db*", "originalhost WEB",
        "user bob", "localuser tester", "host x all", "host !x,*"]))
    return "Match " + crit


@st.composite
def configs(draw):
    lines = draw(st.lists(st.one_of(_option_line(), _header_line(),
                                    st.sampled_from(["", "# comment", "   "])),
                          min_size=1, max_size=12))
    eol = draw(_eol)
    return "".join(line + eol for line in lines)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    if not Oracle.available():
        pytest.skip("no ssh binary to compare with")
    home = tmp_path_factory.mktemp("hhome")
    (home / ".ssh").mkdir()
    o = Oracle(str(home), user="tester", local_hostname="oracle.example.com")
    yield o
    o.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=configs())
def test_generated_configs_agree_with_ssh_G(oracle, text):
    """Configs drawn from the grammar resolve exactly as ssh -G resolves them."""
    directory = tempfile.mkdtemp()
    try:
        path = Path(directory) / "config"
        path.write_bytes(text.encode())
        results = oracle.run(str(path), HOSTS)
        env = {"PATH": "/usr/bin:/bin", "HOME": oracle.home, "USER": oracle.user,
               "LOGNAME": oracle.user}
        for host, want in zip(HOSTS, results):
            try:
                got = SSHConfig(text, path=str(path)).resolve(
                    host, local_user=oracle.user, home=oracle.home,
                    local_hostname=oracle.local_hostname, environ=env)
            except SSHConfigError as exc:
                assert not want.ok, f"we rejected ({exc}) what ssh accepts for {host}"
                continue
            assert want.ok, f"ssh rejected for {host}: {want.stderr}"
            assert got == want.values
    finally:
        shutil.rmtree(directory)


_text = st.text(alphabet=st.sampled_from(list("Host Port=User\"'\\#\t\r\n *!?%${}~,ab=")),
                max_size=200)


@settings(max_examples=300, deadline=None)
@given(text=_text)
def test_any_text_round_trips(text):
    """dumps(parse(x)) == x for arbitrary text, valid or not."""
    assert dumps(SSHConfig(text)) == text


@settings(max_examples=100, deadline=None)
@given(text=configs())
def test_generated_configs_round_trip(text):
    """Grammar-shaped configs come back byte for byte."""
    assert dumps(SSHConfig(text)) == text


@settings(max_examples=100, deadline=None)
@given(text=configs(), value=st.sampled_from(["1", "two words", "~/.ssh/k"]))
def test_set_then_unset_restores_text(text, value):
    """Adding an option to a Host block and removing it again gives the same bytes."""
    config = SSHConfig(text)
    blocks = config.hosts()
    if not blocks:
        return
    host = " ".join(blocks[0])
    before = dumps(config)
    try:
        config.set(host, "HostKeyAlias", value)
    except SSHConfigError:
        return        # the generated file itself is one OpenSSH rejects
    if before.count("\n") == dumps(config).count("\n"):
        return        # an existing HostKeyAlias was replaced, nothing to undo
    assert config.unset(host, "HostKeyAlias") == 1
    assert dumps(config) == before
