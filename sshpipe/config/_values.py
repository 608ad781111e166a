"""Value conversions OpenSSH applies while reading a config (no option table here).

Times (``convtime``), ports and service names (``a2port``), strict integers,
domain names (``valid_domain``), ``host:port`` splitting, and the algorithm
lists: what this OpenSSH build supports, its defaults, and how ``+``, ``-``
and ``^`` lists are assembled.  Each function follows the OpenSSH function
of the same name and raises :class:`BadValue` with OpenSSH's wording.
"""
from __future__ import annotations

import re
import socket
from typing import List, Optional, Sequence, Tuple

from sshpipe.config._patterns import match_pattern

__all__ = [
    "BadValue", "UNSET", "GSS_KEX", "assemble_algorithms",
    "names_valid", "convtime", "strtonum", "a2port", "valid_domain", "hpdelim", "one_arg",
    "ExtraArguments",
]


class BadValue(Exception):
    """An argument OpenSSH rejects; the message is the reason."""


UNSET = object()   # "parsed fine, but sets nothing" (e.g. ConnectTimeout none)

# ---------------------------------------------------------------- algorithms
# What each release supports and proposes lives in ``_versions``; here is how
# a configured list is checked and assembled against those.
GSS_KEX = ("gss-gex-sha1-,gss-group1-sha1-,gss-group14-sha1-,gss-group14-sha256-,"
           "gss-group16-sha512-,gss-nistp256-sha256-,gss-curve25519-sha256-")


def _match_list(name: str, patterns: str) -> bool:
    """``match_pattern_list(name, patterns, 0) == 1``."""
    hit = False
    for item in patterns.split(","):
        neg = item.startswith("!")
        if match_pattern(name, item[1:] if neg else item):
            if neg:
                return False
            hit = True
    return hit


def _names_cat(a: List[str], b: List[str]) -> List[str]:
    out = list(a)
    for n in b:
        if n not in out:
            out.append(n)
    return out


def assemble_algorithms(spec: Optional[str], default: str, supported: str) -> str:
    """``kex_assemble_names()``: apply ``+``/``-``/``^`` and filter by support.

    Raises BadValue when an explicit, ``+`` or ``^`` list ends up empty
    (OpenSSH refuses then); a ``-`` list may remove everything.
    """
    if spec is None or spec == "":
        return default
    defl = default.split(",")
    if spec[0] == "-":
        # removing from the default list is filtered already: an empty
        # result is not an error here (ssh -G prints the option empty)
        pats = spec[1:]
        return ",".join(n for n in defl if not _match_list(n, pats))
    if spec[0] == "+":
        items = _names_cat(defl, spec[1:].split(","))
    elif spec[0] == "^":
        items = spec[1:].split(",") + defl
    else:
        items = spec.split(",")
    all_names = supported.split(",")
    result: List[str] = []
    for item in items:
        if not item:
            continue
        matching = [n for n in all_names if _match_list(n, item)]
        result = _names_cat(result, matching)
    if not result:
        raise BadValue("empty algorithm list")
    return ",".join(result)


def names_valid(spec: str, supported: str, wildcard: bool) -> bool:
    names = supported.split(",")
    if spec == "":
        return False
    for item in spec.split(","):
        if item == "":
            return False
        if wildcard and ("*" in item or "?" in item):
            if not any(_match_list(n, item) for n in names):
                return False
        elif item not in names:
            return False
    return True


# ---------------------------------------------------------------- conversions
_TIME_RE = re.compile(r"([0-9]+)([sSmMhHdDwW]?)")
_TIME_MULT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def convtime(s: str) -> int:
    """OpenSSH ``convtime()``: "1h30m" -> 5400; -1 when malformed."""
    if not s:
        return -1
    total = 0
    pos = 0
    while pos < len(s):
        m = _TIME_RE.match(s, pos)
        if not m:
            return -1
        total += int(m.group(1)) * _TIME_MULT[m.group(2).lower()]
        if total > 2147483647:
            return -1
        pos = m.end()
    return total


def strtonum(s: str, lo: int, hi: int) -> Tuple[Optional[int], Optional[str]]:
    if not re.fullmatch(r"\s*[+-]?[0-9]+", s):
        return None, "invalid"
    v = int(s)
    if v < lo:
        return None, "too small"
    if v > hi:
        return None, "too large"
    return v, None


def a2port(s: str) -> int:
    """Port number or service name (``a2port()``); -1 when neither."""
    v, _ = strtonum(s, 0, 65535)
    if v is not None:  # a number in range
        return v
    try:
        return socket.getservbyname(s, "tcp")
    except (OSError, UnicodeError, ValueError):   # unknown, not encodable, a NUL
        return -1


def one_arg(args: Sequence[str]) -> str:
    if not args or args[0] == "":
        raise BadValue("Missing argument.")
    if len(args) > 1:
        raise ExtraArguments()
    return args[0]


class ExtraArguments(BadValue):
    def __init__(self) -> None:
        super().__init__("extra arguments at end of line")


def valid_domain(d: str, lower: bool = True) -> str:
    """``valid_domain()``: letters, digits, ".", "-", "_"; no "..".

    Returns the (lower-cased) name or raises BadValue with OpenSSH's reason.
    """
    if lower:
        d = d.lower()
    if not d:
        raise BadValue("empty domain name")
    if not (d[0].isascii() and d[0].isalnum()):
        raise BadValue(f'domain name "{d}" starts with invalid character')
    last = ""
    for c in d:
        cl = c.lower()
        if last == "." and cl == ".":
            raise BadValue(f'domain name "{d}" contains consecutive separators')
        if not (cl in ".-_" or (cl.isascii() and cl.isalnum())):
            raise BadValue(f'domain name "{d}" contains invalid characters')
        last = cl
    return d



def hpdelim(s: str) -> Tuple[Optional[str], Optional[str]]:
    """Split "host:port" / "[v6]:port" (``hpdelim()``); (host, rest)."""
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            return None, None
        host = s[1:end]
        after = s[end + 1:]
        if after == "":
            return host, None
        if after[0] not in ":/":
            return None, None
        return host, after[1:]
    for i, c in enumerate(s):
        if c in ":/":
            return s[:i], s[i + 1:]
    return s, None
