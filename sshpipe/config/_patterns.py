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
from typing import Iterable, List, Optional, Sequence, Union

__all__ = [
    "glob_to_regex",
    "match_pattern",
    "PatternList",
    "HostPatterns",
    "GlobSet",
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


# Above this many patterns of one list, matching walks the patterns one by one
# instead of compiling one alternation (re.compile is ~10 us per branch, so a
# 1 MB Host line would take seconds to compile; ssh itself walks the list).
_ALTERNATION_LIMIT = 64


def _segments_match(string: str, pattern: str) -> bool:
    """Glob match without a regex: ``*``-separated segments placed leftmost-first.

    Each segment has a fixed length (``?`` is one character), so placing each
    middle segment at its leftmost possible position is optimal.
    """
    parts = pattern.split("*")
    if len(parts) == 1:
        return len(string) == len(pattern) and _seg_at(string, 0, pattern)
    first, last = parts[0], parts[-1]
    if len(first) + len(last) > len(string):
        return False
    if not _seg_at(string, 0, first) or not _seg_at(string, len(string) - len(last), last):
        return False
    pos = len(first)
    end = len(string) - len(last)
    for seg in parts[1:-1]:
        if not seg:
            continue
        if "?" not in seg:
            i = string.find(seg, pos, end)
            if i < 0:
                return False
            pos = i + len(seg)
            continue
        i = pos
        while i + len(seg) <= end and not _seg_at(string, i, seg):
            i += 1
        if i + len(seg) > end:
            return False
        pos = i + len(seg)
    return True


def _seg_at(string: str, at: int, seg: str) -> bool:
    if "?" not in seg:
        return string.startswith(seg, at)
    if at + len(seg) > len(string):
        return False
    for k, c in enumerate(seg):
        if c != "?" and string[at + k] != c:
            return False
    return True


class GlobSet:
    """"Does any of these wildcard patterns match?", built lazily and cheaply.

    Patterns are sorted by shape when first used: exact names go into a
    set, ``prefix*`` and ``*suffix`` into tuples for ``str.startswith`` and
    ``str.endswith`` (loops in C), ``*`` alone matches everything, and the
    rest are matched by one compiled alternation (small lists) or one by one
    (large lists).  Building is linear in the total pattern length.
    """

    __slots__ = ("_patterns", "_ready", "_all", "_exact", "_prefix", "_suffix", "_other",
                 "_regex")

    def __init__(self, patterns: Sequence[str]):
        self._patterns = list(patterns)
        self._ready = False

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def _build(self) -> None:
        exact = set()
        prefix: List[str] = []
        suffix: List[str] = []
        other: List[str] = []
        match_all = False
        for p in self._patterns:
            if "?" not in p:
                stars = p.count("*")
                if stars == 0:
                    exact.add(p)
                    continue
                if p == "*" * len(p):
                    match_all = True
                    continue
                if stars == 1 and p.endswith("*"):
                    prefix.append(p[:-1])
                    continue
                if stars == 1 and p.startswith("*"):
                    suffix.append(p[1:])
                    continue
            other.append(p)
        self._all = match_all
        self._exact = exact
        self._prefix = tuple(prefix)
        self._suffix = tuple(suffix)
        self._other = other
        self._regex = None
        wild = len(prefix) + len(suffix) + len(other)
        if wild and wild <= _ALTERNATION_LIMIT and not match_all:
            # few wildcards: one compiled alternation answers in one call
            self._regex = re.compile("(?:" + "|".join(
                glob_to_regex(p) for p in self._patterns if "*" in p or "?" in p) + ")", re.S)
            self._prefix = self._suffix = ()
            self._other = []
        self._ready = True

    def search(self, string: str) -> bool:
        """True when some pattern matches the whole of ``string``."""
        if not self._ready:
            self._build()
        if self._all or string in self._exact:
            return True
        regex = self._regex
        if regex is not None:
            return regex.fullmatch(string) is not None
        if self._prefix and string.startswith(self._prefix):
            return True
        if self._suffix and string.endswith(self._suffix):
            return True
        if self._other:
            return any(_segments_match(string, p) for p in self._other)
        return False


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
        for item in (source.lower() if lower else source).split(","):
            if item.startswith("!"):
                neg.append(item[1:])
            else:
                pos.append(item)
        self._pos = GlobSet(pos)
        self._neg = GlobSet(neg)

    def match(self, string: str) -> int:
        if self._neg._patterns and self._neg.search(string):
            return -1
        if self._pos._patterns and self._pos.search(string):
            return 1
        return 0


class HostPatterns:
    """The patterns of one ``Host`` line: separate words, each maybe negated.

    A block applies when some positive pattern matches the name and no
    negated one does (OpenSSH stops at the first negated match).  Nothing is
    sorted or compiled until the first match, and then in linear time.
    """

    __slots__ = ("patterns", "_pos", "_neg")

    def __init__(self, patterns: Sequence[str]):
        self.patterns = list(patterns)
        self._pos: Optional[GlobSet] = None
        self._neg: Optional[GlobSet] = None

    def match(self, host: str) -> bool:
        pos, neg = self._pos, self._neg
        if pos is None or neg is None:
            pats = self.patterns
            neg = self._neg = GlobSet([p[1:] for p in pats if p.startswith("!")])
            pos = self._pos = GlobSet([p for p in pats if not p.startswith("!")])
        if neg._patterns and neg.search(host):
            return False
        return bool(pos._patterns) and pos.search(host)


def _parse_cidr(item: str) -> Union[ipaddress.IPv4Network, ipaddress.IPv6Network, None]:
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
