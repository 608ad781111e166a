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
from typing import Dict, List, Optional, Tuple

__all__ = [
    "BadValue", "UNSET", "ALGORITHMS", "DEFAULT_ALGORITHMS", "GSS_KEX", "assemble_algorithms",
    "names_valid", "convtime", "strtonum", "a2port", "valid_domain", "hpdelim", "one_arg",
    "ExtraArguments",
]


class BadValue(Exception):
    """An argument OpenSSH rejects; the message is the reason."""


UNSET = object()   # "parsed fine, but sets nothing" (e.g. ConnectTimeout none)

# ---------------------------------------------------------------- algorithms
# What this OpenSSH build supports (``ssh -Q cipher|mac|kex|key|key-sig``) and
# its defaults.  Pattern lists in Ciphers/MACs/... are matched against these.
_CIPHERS = ("3des-cbc,aes128-cbc,aes192-cbc,aes256-cbc,aes128-ctr,aes192-ctr,aes256-ctr,"
            "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com")
_MACS = ("hmac-sha1,hmac-sha1-96,hmac-sha2-256,hmac-sha2-512,hmac-md5,hmac-md5-96,"
         "umac-64@openssh.com,umac-128@openssh.com,hmac-sha1-etm@openssh.com,"
         "hmac-sha1-96-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,"
         "hmac-md5-etm@openssh.com,hmac-md5-96-etm@openssh.com,umac-64-etm@openssh.com,"
         "umac-128-etm@openssh.com")
_KEX = ("diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,diffie-hellman-group14-sha256,"
        "diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,"
        "diffie-hellman-group-exchange-sha1,diffie-hellman-group-exchange-sha256,"
        "ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,curve25519-sha256,"
        "curve25519-sha256@libssh.org,sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com")
_KEYS_SIG = ("ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,sk-ssh-ed25519@openssh.com,"
             "sk-ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256,"
             "ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384,"
             "ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521,"
             "ecdsa-sha2-nistp521-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,"
             "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,webauthn-sk-ecdsa-sha2-nistp256@openssh.com,"
             "ssh-dss,ssh-dss-cert-v01@openssh.com,ssh-rsa,ssh-rsa-cert-v01@openssh.com,"
             "rsa-sha2-256,rsa-sha2-256-cert-v01@openssh.com,rsa-sha2-512,"
             "rsa-sha2-512-cert-v01@openssh.com")
_SIGS = ("ssh-ed25519,sk-ssh-ed25519@openssh.com,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,"
         "ecdsa-sha2-nistp521,sk-ecdsa-sha2-nistp256@openssh.com,"
         "webauthn-sk-ecdsa-sha2-nistp256@openssh.com,ssh-dss,ssh-rsa,rsa-sha2-256,rsa-sha2-512")
_DEF_CIPHERS = ("chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,"
                "aes128-gcm@openssh.com,aes256-gcm@openssh.com")
_DEF_MACS = ("umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,"
             "hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,"
             "umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1")
_DEF_KEX = ("sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,"
            "curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,"
            "diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,"
            "diffie-hellman-group18-sha512,diffie-hellman-group14-sha256")
_DEF_KEYS = ("ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256-cert-v01@openssh.com,"
             "ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521-cert-v01@openssh.com,"
             "sk-ssh-ed25519-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,"
             "rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,ssh-ed25519,"
             "ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com,"
             "sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256")
_DEF_CA = ("ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,"
           "sk-ssh-ed25519@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256")
_DEFGSS_KEX = ("gss-group14-sha256-,gss-group16-sha512-,gss-nistp256-sha256-,"
                "gss-curve25519-sha256-,gss-group14-sha1-,gss-gex-sha1-")
GSS_KEX = "gss-gex-sha1-,gss-group1-sha1-,gss-group14-sha1-,gss-group14-sha256-,gss-group16-sha512-,gss-nistp256-sha256-,gss-curve25519-sha256-"

# option -> (every supported name, default list)
ALGORITHMS: Dict[str, Tuple[str, str]] = {
    "ciphers": (_CIPHERS, _DEF_CIPHERS),
    "macs": (_MACS, _DEF_MACS),
    "kexalgorithms": (_KEX, _DEF_KEX),
    "hostkeyalgorithms": (_KEYS_SIG, _DEF_KEYS),
    "hostbasedacceptedalgorithms": (_KEYS_SIG, _DEF_KEYS),
    "pubkeyacceptedalgorithms": (_KEYS_SIG, _DEF_KEYS),
    "casignaturealgorithms": (_SIGS, _DEF_CA),
}
DEFAULT_ALGORITHMS = {k: v[1] for k, v in ALGORITHMS.items()}


def _glob_re(pattern: str) -> "re.Pattern[str]":
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def _match_list(name: str, patterns: str) -> bool:
    """``match_pattern_list(name, patterns, 0) == 1``."""
    hit = False
    for item in patterns.split(","):
        neg = item.startswith("!")
        if _glob_re(item[1:] if neg else item).fullmatch(name):
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

    Raises BadValue when the result would be empty (OpenSSH refuses then).
    """
    if spec is None or spec == "":
        return default
    defl = default.split(",")
    if spec[0] == "-":
        pats = spec[1:]
        out = [n for n in defl if not _match_list(n, pats)]
        if not out:
            raise BadValue("empty algorithm list")
        return ",".join(out)
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
    v, err = strtonum(s, 0, 65535)
    if err is None:
        return v  # type: ignore[return-value]
    try:
        return socket.getservbyname(s, "tcp")
    except OSError:
        return -1


def one_arg(args: List[str]) -> str:
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
