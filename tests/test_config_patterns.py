"""Wildcard patterns, pattern lists and CIDR lists as OpenSSH matches them."""
from __future__ import annotations

import pytest

from sshpipe.config import loads
from sshpipe.config._patterns import (
    HostPatterns, PatternList, cidr_list_match, cidr_list_valid, match_pattern,
)
from sshpipe.errors import SSHConfigError


@pytest.mark.parametrize("string, pattern, expected", [
    ("web1", "web?", True), ("web12", "web?", False), ("web12", "web*", True),
    ("a.b", "a?b", True), ("Web", "web", False), ("x", "*", True), ("", "*", True),
    ("a[1]", "a[1]", True), ("a1", "a[1]", False), ("a.b", "a.b", True), ("axb", "a.b", False),
])
def test_match_pattern(string, pattern, expected):
    """Only * and ? are special; matching is case-sensitive and whole-string."""
    assert match_pattern(string, pattern) is expected


def test_pattern_list_negation_wins():
    """A negated item beats any positive one (-1), no item gives 0."""
    pl = PatternList("*.example.com,!bad.example.com")
    assert pl.match("good.example.com") == 1
    assert pl.match("bad.example.com") == -1
    assert pl.match("other.org") == 0


def test_pattern_list_lowercases_patterns_only():
    """With lower=True the patterns, not the subject, are lower-cased."""
    pl = PatternList("WEB", lower=True)
    assert pl.match("web") == 1 and pl.match("WEB") == 0


def test_host_patterns_words_not_commas():
    """Host lines take separate words; a comma is a literal character there."""
    hp = HostPatterns(["a,b"])
    assert not hp.match("a") and hp.match("a,b")
    assert HostPatterns(["web*", "!webtest"]).match("web1")
    assert not HostPatterns(["web*", "!webtest"]).match("webtest")
    assert not HostPatterns(["!x"]).match("y")


def test_cidr_lists():
    """CIDR lists validate strictly and match with negation."""
    assert cidr_list_valid("10.0.0.0/8,!10.1.0.0/16,fe80::/10")
    assert not cidr_list_valid("10.0.0.1")
    assert cidr_list_match(["10.2.3.4"], "10.0.0.0/8,!10.1.0.0/16")
    assert not cidr_list_match(["10.1.3.4"], "10.0.0.0/8,!10.1.0.0/16")
    assert not cidr_list_match(["192.168.1.1"], "10.0.0.0/8")


def test_match_localnetwork_with_given_addresses():
    """Match localnetwork (OpenSSH 9.4+) tests the interface addresses passed in."""
    with pytest.raises(SSHConfigError, match="Unsupported Match attribute localnetwork"):
        loads("Match localnetwork 192.168.0.0/16\n  Port 2\n", openssh="9.2")
    config = loads("Match localnetwork 192.168.0.0/16\n  Port 2\n", openssh="10.0")
    assert config.resolve("x", local_addresses=["192.168.1.5"])["port"] == "2"
    assert config.resolve("x", local_addresses=["10.0.0.5"])["port"] == "22"


def test_block_skipping_keeps_first_value_semantics():
    """A thousand non-matching blocks before the match do not change the result."""
    text = "".join(f"Host h{i}\n  Port {i + 1}\n" for i in range(1000)) + "Host *\n  Port 9\n"
    config = loads(text)
    assert config.resolve("h500")["port"] == "501"
    assert config.resolve("zzz")["port"] == "9"


def test_match_localnetwork_reads_this_machine():
    """Without given addresses, loopback (on every Linux host) is found locally."""
    config = loads("Match localnetwork 127.0.0.0/8\n  Port 3\n", openssh="9.9")
    assert config.resolve("x")["port"] == "3"
