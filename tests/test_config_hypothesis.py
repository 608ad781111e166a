"""Property tests: generated configs agree with ``ssh -G``; text survives a round trip."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config_oracle import differences, make_oracle, resolve_like
from sshpipe.config import SSHConfig, dumps
from sshpipe.errors import SSHConfigError

HOSTS = ["x", "web", "db.example.com", "WEB", "127.1", "web.example.com"]
ENV = {"LP": "8080", "U": "envuser"}

_words = st.sampled_from(["web", "db.example.com", "x", "*", "w?b", "*.example.com", "!web",
                          "!x", "WEB", "db*"])
_values = {
    "Port": st.sampled_from(["22", "2222", "0", "70000", "ssh", "x"]),
    "User": st.sampled_from(["alice", "bob", "%u", '"two words"', "%n-x", "${U}"]),
    "HostName": st.sampled_from(["%h.example.com", "web.example.com", "10.0.0.1",
                                 "UPPER.example.com", "127.1", "010.0.0.1", "2001:DB8:0::10",
                                 "%h"]),
    "IdentityFile": st.sampled_from(["~/.ssh/a", "~/.ssh/b", "%d/k", "~/.ssh/a"]),
    "Compression": st.sampled_from(["yes", "no", "YES", "maybe"]),
    "ServerAliveInterval": st.sampled_from(["30", "1m", "none", "5x"]),
    "StrictHostKeyChecking": st.sampled_from(["yes", "no", "ask", "accept-new", "off"]),
    "ControlPath": st.sampled_from(["~/.ssh/cm-%C", "none", "/tmp/%r@%h:%p"]),
    "ProxyJump": st.sampled_from(["gw", "u@gw:2200", "none", "a,b"]),
    "ProxyCommand": st.sampled_from(["nc %h %p", "none"]),
    "SendEnv": st.sampled_from(["LANG", "LC_*", "-LC_*"]),
    "LocalForward": st.sampled_from(["8080 localhost:80", "8080", "127.0.0.1:1 h:2",
                                     "${LP} localhost:80", "${NOPE} x:1"]),
    "Ciphers": st.sampled_from(["+aes128-cbc", "-chacha20*", "aes256-ctr", "bogus"]),
    "CanonicalizeHostname": st.sampled_from(["yes", "no", "always"]),
    "UserKnownHostsFile": st.sampled_from(["~/.ssh/kh %h", "none"]),
    "Bogus": st.just("1"),
    "SetEnv": st.sampled_from(["A=1", "A=1 B=2", 'C="x y"', "D", "E=%h-${U}"]),
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
    "IPQoS": st.sampled_from(["af11", "cs1 ef", "0x10", "300", "lowdelay", "16"]),
    "GlobalKnownHostsFile": st.sampled_from(["/a /b", "none"]),
    "CanonicalDomains": st.sampled_from(["example.com", "a.org b.org", "nowhere.test example.com"]),
    "CanonicalizeFallbackLocal": st.sampled_from(["yes", "no"]),
    "CanonicalizePermittedCNAMEs": st.sampled_from(["*.example.com:*.example.net", "none"]),
    "Tag": st.sampled_from(["prod", "dev"]),
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
        "user bob", "localuser tester", "host x all", "host !x,*", "tagged prod", "host=web",
        "version OpenSSH_10*", "canonical host web.example.com", "!final host 127.0.0.1"]))
    return "Match " + crit


@st.composite
def configs(draw):
    lines = draw(st.lists(st.one_of(_option_line(), _header_line(),
                                    st.sampled_from(["", "# comment", "   "])),
                          min_size=1, max_size=12))
    eol = draw(_eol)
    return "".join(line + eol for line in lines)


@pytest.fixture(scope="module", params=["9.2", pytest.param("10.0", marks=pytest.mark.openssh10)])
def oracle(request, tmp_path_factory):
    home = tmp_path_factory.mktemp("hhome")
    (home / ".ssh").mkdir()
    o = make_oracle(request.param, str(home))
    yield o
    o.close()


@pytest.mark.timeout(900)     # one ssh -G run per example: slow on a loaded machine
@settings(max_examples=int(os.environ.get("SSHPIPE_HYPOTHESIS_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=configs())
def test_generated_configs_agree_with_ssh_G(oracle, text):
    """Configs drawn from the grammar resolve exactly as ssh -G resolves them (both releases)."""
    directory = tempfile.mkdtemp()
    try:
        path = Path(directory) / "config"
        path.write_bytes(text.encode())
        results = oracle.run(str(path), HOSTS, env=ENV)
        for host, want in zip(HOSTS, results):
            try:
                got = resolve_like(oracle, SSHConfig(text, path=str(path)), host, env=ENV)
            except SSHConfigError as exc:
                assert not want.ok, f"we rejected ({exc}) what ssh accepts for {host}"
                continue
            assert want.ok, f"ssh rejected for {host}: {want.stderr}"
            assert differences(got, want.values) == {}, host
    finally:
        shutil.rmtree(directory)


_pieces = st.sampled_from(list("Host Match Port=User\"'\\#\t\r\n *!?%${}~,ab=:[]/@\x00\xe9\udce9")
                         + ["ProxyJump ", "LocalForward ", "Include ", "CanonicalizeHostname yes\n",
                            "HostName ", "ssh://", "127.1", "::1", "exec ", "final", "Tag ",
                            "IPQoS ", "SetEnv ", "RemoteForward ", "CanonicalDomains "])
_hostile = st.lists(_pieces, max_size=60).map("".join)


@pytest.mark.timeout(600)
@settings(max_examples=300, deadline=None)
@given(text=_hostile, version=st.sampled_from(["9.2", "9.9", "10.0"]))
def test_hostile_text_never_crashes(text, version):
    """Whatever the text, loading and resolving raise SSHConfigError or succeed: no other error."""
    config = SSHConfig(text, openssh=version)
    try:
        config.validate(home="/nonexistent")
    except SSHConfigError:
        pass
    for host in ("x", "u@web", "127.1", "ssh://h:2"):
        try:
            config.resolve(host, local_user="u", home="/nonexistent", local_hostname="l.example",
                           environ={}, resolver=lambda name: None)
        except SSHConfigError:
            pass


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
    if "hostkeyalias" in before.lower():
        return        # an existing HostKeyAlias was replaced, nothing to undo
    assert config.unset(host, "HostKeyAlias") == 1
    assert dumps(config) == before
