"""openssh= picks what a release reads and prints; 9.9 (no binary to ask) against its source.

9.2 and 10.0 are compared with real ``ssh -G`` in test_config_resolve.py.
No Debian release shipped 9.9, so these tests pin what upstream 9.9p2's
readconf.c and ssh.c do where 9.9 differs from its neighbours.
"""
from __future__ import annotations

import pytest

from sshpipe.config import SSHConfig
from sshpipe.config._versions import SUPPORTED, get_version
from sshpipe.errors import SSHConfigError

KW = dict(local_user="me", home="/home/me", local_hostname="box.example.com",
          environ={"HOME": "/home/me", "R": "eu"})


def resolve(text: str, version: str, host: str = "web", **kw):
    return SSHConfig(text, openssh=version).resolve(host, **KW, **kw)


def test_supported_releases():
    """The three families, oldest first; each has its own release string."""
    assert SUPPORTED == ("9.2", "9.9", "10.0")
    assert [get_version(v).release for v in SUPPORTED] == [
        "OpenSSH_9.2p1", "OpenSSH_9.9p2", "OpenSSH_10.0p2"]
    assert get_version("OpenSSH_9.9p1").name == "9.9"
    assert get_version("OpenSSH_10.2p1").name == "10.0"      # newest not newer than it


@pytest.mark.parametrize("version, ipqos, kex_head, has_dsa", [
    ("9.2", "lowdelay throughput", "sntrup761x25519-sha512", True),
    ("9.9", "af21 cs1", "sntrup761x25519-sha512", False),
    ("10.0", "ef cs1", "mlkem768x25519-sha256", False),
])
def test_defaults_per_release(version, ipqos, kex_head, has_dsa):
    """IPQoS, KexAlgorithms order and the default identities follow the release."""
    got = resolve("", version)
    assert got["ipqos"] == ipqos
    assert got["kexalgorithms"].split(",")[0] == kex_head
    assert ("~/.ssh/id_dsa" in got["identityfile"]) is has_dsa
    assert ("obscurekeystroketiming" in got) is (version != "9.2")
    assert ("channeltimeout" in got) is (version != "9.2")


def test_99_knows_tag_and_localnetwork_but_not_version_or_addendum():
    """9.9 has Tag, Match tagged/localnetwork, ChannelTimeout; not VersionAddendum or version."""
    got = resolve("Tag t\nMatch tagged t\n  Port 2\nChannelTimeout session=1m\n", "9.9")
    assert got["port"] == "2" and got["tag"] == "t" and got["channeltimeout"] == ["session=1m"]
    assert resolve("Match localnetwork 10.0.0.0/8\n  Port 3\n", "9.9",
                   local_addresses=["10.1.1.1"])["port"] == "3"
    for text in ("VersionAddendum x\n", "Match version *\n  Port 4\n",
                 "Match sessiontype shell\n  Port 4\n", "Match command x\n  Port 4\n"):
        with pytest.raises(SSHConfigError):
            resolve(text, "9.9")


def test_99_expands_include_and_revokedhostkeys_but_not_user_or_setenv():
    """9.9 expands %tokens in Include and RevokedHostKeys; User and SetEnv only from 10.0."""
    text = "User %h-u\nSetEnv A=%h\nRevokedHostKeys ~/rev-%h\n"
    old = resolve(text, "9.9")
    assert old["user"] == "%h-u" and old["setenv"] == ["A=%h"]
    assert old["revokedhostkeys"] == "/home/me/rev-web"
    new = resolve(text, "10.0")
    assert new["user"] == "web-u" and new["setenv"] == ["A=web"]
    assert resolve(text, "9.2")["revokedhostkeys"] == "~/rev-%h"


def test_99_hashes_the_jump_host_into_percent_c():
    """From 9.9, %C includes the ProxyJump host and %j names it; 9.2 knows neither."""
    text = "ProxyJump gw.example.com\nControlPath /c/%C\n"
    c92 = resolve(text, "9.2")["controlpath"]
    c99 = resolve(text, "9.9")["controlpath"]
    assert c92 != c99 and c99 == resolve(text, "10.0")["controlpath"]
    assert resolve("ProxyJump gw.example.com\nControlPath /c/%j\n", "9.9")["controlpath"] == \
        "/c/gw.example.com"
    with pytest.raises(SSHConfigError):
        resolve("ControlPath /c/%j\n", "9.2")


def test_99_ipqos_numbers_are_decimal_and_tos_names_still_mean_tos():
    """9.9 reads IPQoS numbers as decimal only (as 10.0) but keeps lowdelay as 0x10 (10.0: none)."""
    with pytest.raises(SSHConfigError):
        resolve("IPQoS 0x10\n", "9.9")
    assert resolve("IPQoS lowdelay\n", "9.9")["ipqos"] == "lowdelay lowdelay"
    assert resolve("IPQoS lowdelay\n", "10.0")["ipqos"] == "none none"
    assert resolve("IPQoS 0x10\n", "9.2")["ipqos"] == "lowdelay lowdelay"


def test_canonical_domains_limit_is_9_2_only():
    """9.2 refuses more than 32 CanonicalDomains where it would take them; 9.9 has no limit."""
    text = "CanonicalDomains " + " ".join(f"d{i}.example" for i in range(33)) + "\n"
    with pytest.raises(SSHConfigError, match="too many hostname suffixes"):
        resolve(text, "9.2")
    assert len(resolve(text, "9.9")["canonicaldomains"]) == 33
