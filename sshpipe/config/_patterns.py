"""OpenSSH wildcard patterns, compiled once into regular expressions.

OpenSSH's ``match_pattern()`` knows only ``*`` (any run of characters) and
``?`` (one character); everything else is literal and matching is
case-sensitive.  Pattern *lists* (``match_pattern_list()``) are
comma-separated, a ``!`` prefix negates an item, and a negated match wins over
any positive one.  Host lines are different: their patterns are separate
words, not comma lists.  Compiling each list to one regex is what makes
resolving many host names against a large file cheap.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from typing import Iterable, List, Optional, Sequence

__all__ = [
    "glob_to_regex",
    "match_pattern",
    "PatternList",
    "HostPatterns",
    "cidr_list_valid",
    "cidr_list_match",
]


def glob_to_regex(pattern: str) -> str:
    """Regex source (no anchors) for one OpenSSH wildcard pattern."""
    out = []
    for c in pattern:
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        else:
            out.append(re.escape(c))
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> "re.Pattern[str]":
    return re.compile(glob_to_regex(pattern), re.S)


def match_pattern(string: str, pattern: str) -> bool:
    """True when ``string`` matches one wildcard ``pattern`` (case-sensitive)."""
    return _compiled(pattern).fullmatch(string) is not None


def _alternation(patterns: Iterable[str]) -> Optional["re.Pattern[str]"]:
    parts = [glob_to_regex(p) for p in patterns]
    if not parts:
        return None
    return re.compile("(?:" + "|".join(parts) + ")", re.S)


class PatternList:
    """A comma-separated pattern list with ``!`` negation.

    ``match()`` returns 1 (a positive item matched and no negated one did),
    0 (nothing matched) or -1 (a negated item matched), as
    ``match_pattern_list()`` does.  ``lower`` lower-cases the patterns (not the
    subject), as OpenSSH's ``dolower`` flag does.
    """

    __slots__ = ("source", "_pos", "_neg")

    def __init__(self, source: str, lower: bool = False):
        self.source = source
        pos: List[str] = []
        neg: List[str] = []
        for item in source.split(","):
            if lower:
                item = item.lower()
            if item.startswith("!"):
                neg.append(item[1:])
            else:
                pos.append(item)
        self._pos = _alternation(pos)
        self._neg = _alternation(neg)

    def match(self, string: str) -> int:
        if self._neg is not None and self._neg.fullmatch(string):
            return -1
        if self._pos is not None and self._pos.fullmatch(string):
            return 1
        return 0


class HostPatterns:
    """The patterns of one ``Host`` line: separate words, each maybe negated.

    A block applies when some positive pattern matches the name and no
    negated one does (OpenSSH stops at the first negated match).
    """

    __slots__ = ("patterns", "_pos", "_neg", "_literals", "_has_neg")

    def __init__(self, patterns: Sequence[str]):
        self.patterns = list(patterns)
        pos = [p for p in patterns if not p.startswith("!")]
        neg = [p[1:] for p in patterns if p.startswith("!")]
        self._has_neg = bool(neg)
        # Plain names (no wildcard) are looked up in a set: the common case
        # in big files, and much cheaper than a regex.
        literal = [p for p in pos if "*" not in p and "?" not in p]
        wild = [p for p in pos if "*" in p or "?" in p]
        self._literals = frozenset(literal)
        self._pos = _alternation(wild)
        self._neg = _alternation(neg)

    def match(self, host: str) -> bool:
        if self._neg is not None and self._neg.fullmatch(host):
            return False
        if host in self._literals:
            return True
        return self._pos is not None and self._pos.fullmatch(host) is not None


def _parse_cidr(item: str):
    if "/" not in item:
        return None
    try:
        return ipaddress.ip_network(item, strict=True)
    except ValueError:
        return None


def cidr_list_valid(source: str) -> bool:
    """True when every comma-separated item is an address/masklen network."""
    items = source.split(",")
    for item in items:
        if item.startswith("!"):
            item = item[1:]
        if _parse_cidr(item) is None:
            return False
    return True


def cidr_list_match(addresses: Iterable[str], source: str) -> bool:
    """True when one of ``addresses`` lies in the (negatable) CIDR list."""
    nets = []
    for item in source.split(","):
        neg = item.startswith("!")
        net = _parse_cidr(item[1:] if neg else item)
        if net is not None:
            nets.append((neg, net))
    for addr in addresses:
        try:
            ip = ipaddress.ip_address(addr.split("%", 1)[0])
        except ValueError:
            continue
        hit = 0
        for neg, net in nets:
            if ip.version == net.version and ip in net:
                if neg:
                    hit = -1
                    break
                hit = 1
        if hit == 1:
            return True
    return False
