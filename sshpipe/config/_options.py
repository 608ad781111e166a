"""The OpenSSH client option table: keyword -> how its value is read and kept.

This mirrors ``readconf.c`` of OpenSSH 9.2 (Debian's build, which adds the
GSSAPI key exchange options): for every keyword, which canonical option it
sets (aliases such as ``IdentityFile2`` or ``PubkeyAcceptedKeyTypes`` map to
their current name), how its arguments are checked, and how a value joins the
values already obtained (first one wins; a few accumulate).

Values are checked and converted once, when a file is loaded, into the form
``ssh -G`` prints (``"true"``, ``"3600"``, ``"[host]:port"`` ...): resolving a
host then only has to pick values, never to parse.  A parser raises
:class:`BadValue` with OpenSSH's own wording of the problem.
"""
from __future__ import annotations

import re
import socket
from typing import Callable, Dict, List, Optional, Tuple

__all__ = [
    "BadValue",
    "Option",
    "OPTIONS",
    "KEYWORDS",
    "UNSET",
    "LIST_KEYS",
    "DUMP_ORDER",
    "ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "convtime",
    "a2port",
    "assemble_algorithms",
    "percent_tokens_ok",
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
_DEF_GSS_KEX = ("gss-group14-sha256-,gss-group16-sha512-,gss-nistp256-sha256-,"
                "gss-curve25519-sha256-,gss-group14-sha1-,gss-gex-sha1-")
_GSS_KEX = "gss-gex-sha1-,gss-group1-sha1-,gss-group14-sha1-,gss-group14-sha256-,gss-group16-sha512-,gss-nistp256-sha256-,gss-curve25519-sha256-"

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


def _names_valid(spec: str, supported: str, wildcard: bool) -> bool:
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


def _strtonum(s: str, lo: int, hi: int) -> Tuple[Optional[int], Optional[str]]:
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
    v, err = _strtonum(s, 0, 65535)
    if err is None:
        return v  # type: ignore[return-value]
    try:
        return socket.getservbyname(s, "tcp")
    except OSError:
        return -1


# ---------------------------------------------------------------- multistate
def _ms(*pairs: Tuple[str, int]) -> Tuple[Dict[str, int], Dict[int, str]]:
    parse: Dict[str, int] = {}
    show: Dict[int, str] = {}
    for name, val in pairs:
        parse[name] = val
        show.setdefault(val, name)
    return parse, show


_FLAG = _ms(("true", 1), ("false", 0), ("yes", 1), ("no", 0))
_MULTI = {
    "addressfamily": _ms(("inet", 2), ("inet6", 10), ("any", 0)),
    "canonicalizehostname": _ms(("true", 1), ("false", 0), ("yes", 1), ("no", 0), ("always", 2)),
    "controlmaster": _ms(("true", 1), ("yes", 1), ("false", 0), ("no", 0), ("auto", 3), ("ask", 2), ("autoask", 4)),
    "requesttty": _ms(("true", 2), ("yes", 2), ("false", 1), ("no", 1), ("force", 3), ("auto", 0)),
    "sessiontype": _ms(("none", 0), ("subsystem", 1), ("default", 2)),
    "stricthostkeychecking": _ms(("true", 2), ("false", 0), ("yes", 2), ("no", 0), ("ask", 3), ("off", 0), ("accept-new", 1)),
    "tunnel": _ms(("ethernet", 2), ("point-to-point", 1), ("true", 1), ("yes", 1), ("false", 0), ("no", 0)),
    "updatehostkeys": _ms(("true", 1), ("false", 0), ("yes", 1), ("no", 0), ("ask", 2)),
    "verifyhostkeydns": _ms(("true", 1), ("false", 0), ("yes", 1), ("no", 0), ("ask", 2)),
    "pubkeyauthentication": _ms(("true", 3), ("false", 0), ("yes", 3), ("no", 0), ("unbound", 1), ("host-bound", 2)),
    "compression": _ms(("yes", 1), ("no", 0)),
    "fingerprinthash": _ms(("md5", 0), ("sha256", 2)),
}
_SHOW_OVERRIDE = {"fingerprinthash": {0: "MD5", 2: "SHA256"}, "compression": {0: "no", 1: "yes"}}
_ADDKEYS = _ms(("true", 1), ("false", 0), ("yes", 1), ("no", 0), ("ask", 2), ("confirm", 3))


def _one(args: List[str]) -> str:
    if not args or args[0] == "":
        raise BadValue("Missing argument.")
    if len(args) > 1:
        raise _Extra()
    return args[0]


class _Extra(BadValue):
    def __init__(self) -> None:
        super().__init__("extra arguments at end of line")


def _p_flag(args, rest, name):
    arg = _one(args)
    v = _FLAG[0].get(arg.lower())
    if v is None:
        raise BadValue(f'unsupported option "{arg}".')
    return "yes" if v else "no"


def _p_multi(args, rest, name):
    arg = _one(args)
    parse, show = _MULTI[name]
    v = parse.get(arg.lower())
    if v is None:
        raise BadValue(f'unsupported option "{arg}".')
    return _SHOW_OVERRIDE.get(name, show).get(v) or show[v]


def _p_int(args, rest, name):
    arg = _one(args)
    v, err = _strtonum(arg, 0, 2147483647)
    if err:
        raise BadValue(f"integer value {err}.")
    return str(v)


def _p_time(args, rest, name):
    if not args or args[0] == "":
        raise BadValue("missing time value.")
    arg = args[0]
    if len(args) > 1:
        raise _Extra()
    if arg == "none":
        return UNSET
    v = convtime(arg)
    if v == -1:
        raise BadValue("invalid time value.")
    return str(v)


def _p_port(args, rest, name):
    arg = _one(args)
    v = a2port(arg)
    if v <= 0:
        raise BadValue(f"Bad port '{arg}'.")
    return str(v)


def _p_string(args, rest, name):
    return _one(args)


def _p_command(args, rest, name):
    if rest == "":
        raise BadValue("Missing argument.")
    return rest


def _valid_env_name(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name))


def _p_agent_path(args, rest, name):
    arg = _one(args)
    return arg


def _p_forwardagent(args, rest, name):
    arg = _one(args)
    v = _FLAG[0].get(arg.lower())
    if v is not None:
        return ("yes" if v else "no", None)
    return ("yes", arg)


def _p_addkeys(args, rest, name):
    if not args:
        raise BadValue("Missing argument.")
    if len(args) > 2:
        raise _Extra()
    arg = args[0]
    arg2 = args[1] if len(args) > 1 else None
    value = _ADDKEYS[0].get(arg.lower(), -1)
    life = 0
    if value == 3 and arg2 is not None:
        life = convtime(arg2)
        if life == -1:
            raise BadValue("invalid time value.")
    elif value == -1 and arg2 is None:
        life = convtime(arg)
        if life == -1:
            raise BadValue(f'unsupported option "{arg}".')
        value = 1
    elif value == -1 or arg2 is not None:
        raise BadValue(f'unsupported option "{arg}".')
    if life <= 0:
        return _ADDKEYS[1][value]
    return ("confirm " if value == 3 else "") + str(life)


def _p_controlpersist(args, rest, name):
    arg = _one(args)
    if arg in ("no", "false"):
        return "no"
    if arg in ("yes", "true"):
        return "yes"
    t = convtime(arg)
    if t < 0:
        raise BadValue("Bad ControlPersist argument.")
    return "yes" if t == 0 else str(t)


_LOGLEVELS = {"quiet": "QUIET", "fatal": "FATAL", "error": "ERROR", "info": "INFO",
              "verbose": "VERBOSE", "debug": "DEBUG", "debug1": "DEBUG", "debug2": "DEBUG2",
              "debug3": "DEBUG3"}
_FACILITIES = {n.lower(): n for n in ("DAEMON", "USER", "AUTH", "AUTHPRIV", "LOCAL0", "LOCAL1", "LOCAL2",
                                      "LOCAL3", "LOCAL4", "LOCAL5", "LOCAL6", "LOCAL7")}


def _p_loglevel(args, rest, name):
    arg = _one(args)
    v = _LOGLEVELS.get(arg.lower())
    if v is None:
        raise BadValue(f"unsupported log level '{arg}'")
    return v


def _p_facility(args, rest, name):
    arg = _one(args)
    v = _FACILITIES.get(arg.lower())
    if v is None:
        raise BadValue(f"unsupported log facility '{arg}'")
    return v


def _vis(c: int) -> str:
    if 0x21 <= c <= 0x7e:
        return "\\\\" if c == 0x5c else chr(c)
    if (c & 0x7f) == 0x20:
        return "\\%03o" % c
    out = "\\"
    if c & 0x80:
        c &= 0x7f
        out += "M"
    if c < 0x20 or c == 0x7f:
        return out + "^" + ("?" if c == 0x7f else chr(c + 64))
    return out + "-" + chr(c)


def _p_escapechar(args, rest, name):
    arg = _one(args)
    raw = arg.encode("utf-8", "surrogateescape")
    if len(raw) == 1:
        return _vis(raw[0])
    if len(raw) == 3 - 1 + 0 and raw[:1] == b"^" and 64 <= raw[1] < 128:
        return _vis(raw[1] & 31)
    if arg == "none":
        return "none"
    raise BadValue("Bad escape character.")


_IPQOS = [("none", 0x7fffffff), ("af11", 0x28), ("af12", 0x30), ("af13", 0x38), ("af21", 0x48),
          ("af22", 0x50), ("af23", 0x58), ("af31", 0x68), ("af32", 0x70), ("af33", 0x78),
          ("af41", 0x88), ("af42", 0x90), ("af43", 0x98), ("cs0", 0x00), ("cs1", 0x20),
          ("cs2", 0x40), ("cs3", 0x60), ("cs4", 0x80), ("cs5", 0xa0), ("cs6", 0xc0),
          ("cs7", 0xe0), ("ef", 0xb8), ("le", 0x01), ("lowdelay", 0x10), ("throughput", 0x08),
          ("reliability", 0x04)]
_IPQOS_PARSE = {n: v for n, v in _IPQOS}
_IPQOS_SHOW: Dict[int, str] = {}
for _n, _v in _IPQOS:
    _IPQOS_SHOW.setdefault(_v, _n)


def _strtol0(s: str) -> Optional[int]:
    m = re.fullmatch(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", s)
    if not m:
        return None
    body = m.group(2)
    if body[:2] in ("0x", "0X"):
        v = int(body, 16)
    elif body.startswith("0"):
        v = int(body, 8)
    else:
        v = int(body)
    return -v if m.group(1) == "-" else v


def _ipqos_one(arg: str) -> int:
    v = _IPQOS_PARSE.get(arg.lower())
    if v is not None:
        return v
    n = _strtol0(arg)
    if n is None or n < 0 or n > 255:
        raise BadValue(f"Bad IPQoS value: {arg}")
    return n


def _ipqos_show(v: int) -> str:
    return _IPQOS_SHOW.get(v) or "0x%02x" % v


def _p_ipqos(args, rest, name):
    if not args:
        raise BadValue("Missing argument.")
    if len(args) > 2:
        raise _Extra()
    a = _ipqos_one(args[0])
    b = _ipqos_one(args[1]) if len(args) > 1 else a
    return f"{_ipqos_show(a)} {_ipqos_show(b)}"


_SCALE = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}


def _scan_scaled(s: str) -> Optional[int]:
    m = re.fullmatch(r"\s*([+-]?)([0-9]+)(?:\.([0-9]+))?([bBkKmMgGtTpPeE]?)", s)
    if not m:
        return None
    if m.group(1) == "-":
        return None
    whole = int(m.group(2))
    frac = m.group(3) or ""
    unit = _SCALE[m.group(4).lower()]
    v = whole * unit
    if frac:
        if unit == 1:
            return None
        v += int(frac) * unit // (10 ** len(frac))
    if v >= 1 << 63:
        return None
    return v


def _p_rekeylimit(args, rest, name):
    if not args:
        raise BadValue("Missing argument.")
    if len(args) > 2:
        raise _Extra()
    arg = args[0]
    if arg == "default":
        limit = 0
    else:
        limit = _scan_scaled(arg)
        if limit is None:
            raise BadValue(f"Bad number '{arg}': invalid")
        if limit != 0 and limit < 16:
            raise BadValue("RekeyLimit too small")
    interval = None
    if len(args) > 1:
        if args[1] != "none":
            iv = _p_time(args[1:], "", name)
            interval = None if iv is UNSET else iv
    return (str(limit), interval)


def _p_bindmask(args, rest, name):
    arg = _one(args)
    m = re.match(r"\s*[+-]?[0-7]+", arg)
    if not m:
        raise BadValue("Bad mask.")
    v = int(m.group().strip(), 8)
    if v < 0 or v > 0o777:
        raise BadValue("Bad mask.")
    return "0%o" % v


def _a2tun_one(s: str) -> str:
    if s == "any":
        return "any"
    v, err = _strtonum(s, 0, 0x7fffffff - 2)
    if err:
        raise BadValue("Bad tun device.")
    return str(v)


def _p_tundev(args, rest, name):
    arg = _one(args)
    if ":" in arg:
        a, b = arg.split(":", 1)
        return f"{_a2tun_one(a)}:{_a2tun_one(b)}"
    return f"{_a2tun_one(arg)}:any"


def _algorithm_parser(supported: str, wildcard: bool, what: str):
    def parse(args, rest, name):
        arg = _one(args)
        if arg[0] != "-":
            body = arg[1:] if arg[0] in "+^" else arg
            if not _names_valid(body, supported, wildcard):
                raise BadValue(f"Bad {what} '{arg}'.")
        return arg
    return parse


def _p_gsskex(args, rest, name):
    arg = _one(args)
    if not _names_valid(arg, _GSS_KEX, False):
        raise BadValue(f"Bad GSSAPI KexAlgorithms '{arg}'.")
    return arg


def _p_charray(args, rest, name):
    if not args:
        raise BadValue("Missing argument.")
    for i, arg in enumerate(args):
        if arg == "":
            raise BadValue(f"keyword {name} empty argument")
        if arg.lower() == "none" and (i > 0 or len(args) > 1):
            raise BadValue(f'keyword {name} "none" argument must appear alone.')
    return list(args)


def _p_logverbose(args, rest, name):
    vals = _p_charray(args, rest, name)
    # OpenSSH 9.2 keeps only the first word of the first LogVerbose line.
    return vals[:1]


def _valid_domain(d: str, lower: bool = True) -> str:
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


def _p_canondomains(args, rest, name):
    if not args:
        raise BadValue("Missing argument.")
    out = []
    for arg in args:
        if arg == "":
            raise BadValue(f"keyword {name} empty argument")
        out.append(_valid_domain(arg))
    return out


def _p_cnames(args, rest, name):
    if not args:
        raise BadValue("Missing argument.")
    out = []
    for arg in args:
        if arg == "*":
            out.append("*:*")
            continue
        arg = arg.lower()
        src, sep, dst = arg.partition(":")
        if not sep or dst == "":
            raise BadValue(f'Invalid permitted CNAME "{arg}"')
        out.append(f"{src}:{dst}")
    return out


def _p_permitremoteopen(args, rest, name):
    if not args:
        raise BadValue("Missing argument.")
    out = []
    for i, arg in enumerate(args):
        if arg.lower() in ("none", "any"):
            if i > 0 or len(args) > 1:
                raise BadValue(f'keyword {name} "{arg}" argument must appear alone.')
        else:
            host, port = _hpdelim(arg)
            if host is None:
                raise BadValue(f"missing host in {name}")
            if port is None or (a2port(port) <= 0 and port != "*"):
                raise BadValue(f"bad port number in {name}")
        out.append(arg)
    return out


def _p_sendenv(args, rest, name):
    if not args:
        raise BadValue("Missing argument.")
    for arg in args:
        if arg == "" or "=" in arg:
            raise BadValue("Invalid environment name.")
    return list(args)


def _p_setenv(args, rest, name):
    if not args:
        raise BadValue("Missing argument.")
    out: List[str] = []
    seen = set()
    for arg in args:
        if "=" not in arg:
            raise BadValue("Invalid SetEnv.")
        key = arg.split("=", 1)[0]
        if key in seen:
            continue
        seen.add(key)
        out.append(arg)
    return out


def _p_multi_path(args, rest, name):
    return _one(args)


# ---------------------------------------------------------------- forwards
def _hpdelim(s: str) -> Tuple[Optional[str], Optional[str]]:
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


def _fwd_fields(spec: str) -> Optional[List[Tuple[str, bool]]]:
    """Split a forwarding spec into (field, is_path) like ``parse_fwd_field()``.

    ":" separates fields unless escaped with a backslash; "[...]" is taken
    literally; a "/" anywhere makes the field a Unix socket path.
    """
    out: List[Tuple[str, bool]] = []
    cp = spec
    while len(out) < 4 and cp != "":
        if cp[0] == "[":
            end = cp.find("]")
            if end < 0 or (end + 1 < len(cp) and cp[end + 1] != ":"):
                return None
            field = cp[1:end]
            out.append((field, "/" in field))
            cp = cp[end + 2:]
            continue
        buf = []
        ispath = False
        i = 0
        while i < len(cp):
            c = cp[i]
            if c == "\\":
                if i + 1 >= len(cp):
                    return None
                buf.append(cp[i + 1])
                i += 2
                continue
            if c == ":":
                i += 1
                break
            if c == "/":
                ispath = True
            buf.append(c)
            i += 1
        out.append(("".join(buf), ispath))
        cp = cp[i:]
    if cp != "":
        return None
    return out


def _port_of(s: str) -> int:
    return a2port(s) if s != "" else -1


def parse_forward(spec: str, dynamic: bool, remote: bool):
    """``parse_forward()``: (listen_host, listen_port|path, connect_host, connect_port|path)."""
    fields = _fwd_fields(spec.lstrip())
    if fields is None:
        return None
    n = len(fields)
    lh = lp = lpath = ch = cpath = None
    cport = 0
    lport = 0
    if n == 1:
        if fields[0][1]:
            lpath = fields[0][0]
        else:
            lport = _port_of(fields[0][0])
        ch = "socks"
    elif n == 2:
        if fields[0][1] and fields[1][1]:
            lpath, cpath = fields[0][0], fields[1][0]
        elif fields[1][1]:
            lport = _port_of(fields[0][0])
            cpath = fields[1][0]
        else:
            lh = fields[0][0]
            lport = _port_of(fields[1][0])
            ch = "socks"
    elif n == 3:
        if fields[0][1]:
            lpath = fields[0][0]
            ch = fields[1][0]
            cport = _port_of(fields[2][0])
        elif fields[2][1]:
            lh = fields[0][0]
            lport = _port_of(fields[1][0])
            cpath = fields[2][0]
        else:
            lport = _port_of(fields[0][0])
            ch = fields[1][0]
            cport = _port_of(fields[2][0])
    elif n == 4:
        lh = fields[0][0]
        lport = _port_of(fields[1][0])
        ch = fields[2][0]
        cport = _port_of(fields[3][0])
    else:
        return None
    if dynamic:
        if n not in (1, 2):
            return None
    else:
        if n not in (3, 4):
            if cpath is None and lpath is None:
                return None
        if cport <= 0 and cpath is None:
            return None
    if (lport < 0 and lpath is None) or (not remote and lport == 0 and lpath is None):
        return None
    return (lh, lpath if lpath is not None else lport, ch, cpath if cpath is not None else cport,
            lpath is not None, cpath is not None)


def _p_forward(kind: str):
    def parse(args, rest, name):
        if not args or args[0] == "":
            raise BadValue("Missing port argument.")
        remote = kind == "remote"
        dynamic = kind == "dynamic"
        if dynamic:
            if len(args) > 1:
                raise _Extra()
            spec = args[0]
        else:
            if len(args) > 2:
                raise _Extra()
            if len(args) < 2 or args[1] == "":
                if remote:
                    dynamic = True
                    spec = args[0]
                else:
                    raise BadValue("Missing target argument.")
            else:
                spec = f"{args[0]}:{args[1]}"
        fwd = parse_forward(spec, dynamic, remote)
        if fwd is None:
            raise BadValue("Bad forwarding specification.")
        return fwd
    return parse


# ---------------------------------------------------------------- proxyjump
def _parse_user_host_port(s: str):
    user = None
    tmp = s
    at = tmp.rfind("@")
    if at >= 0:
        user = tmp[:at]
        if user == "":
            return None
        tmp = tmp[at + 1:]
    host, port_s = _hpdelim(tmp)
    if host is None or host == "":
        return None
    port = -1
    if port_s is not None and port_s != "":
        port = a2port(port_s)
        if port <= 0:
            return None
    return user, host, port


def _urldecode(s: str) -> Optional[str]:
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "%":
            h = s[i + 1:i + 3]
            if len(h) < 2 or not all(x in "0123456789abcdefABCDEF" for x in h):
                return None
            out.append(chr(int(h, 16)))
            i += 3
            continue
        if c == "+":
            c = " "
        out.append(c)
        i += 1
    return "".join(out)


def _parse_ssh_uri(s: str):
    """``parse_ssh_uri()``: 1 when not a URI, None when bad, else (user, host, port)."""
    if not s.lower().startswith("ssh://"):
        return 1
    tmp = s[6:]
    user = None
    at = tmp.find("@")
    if at >= 0:
        user = tmp[:at].split(";", 1)[0]
        if user == "":
            return None
        user = _urldecode(user)
        if user is None:
            return None
        tmp = tmp[at + 1:]
    if tmp.startswith("["):
        end = tmp.find("]")
        if end < 0:
            return None
        host = tmp[1:end]
        tmp = tmp[end + 1:]
        delim = tmp[:1]
        tmp = tmp[1:]
        if delim not in ("", ":", "/"):
            return None
    else:
        cut = min([i for i in (tmp.find(":"), tmp.find("/")) if i >= 0], default=-1)
        if cut < 0:
            host, delim, tmp = tmp, "", ""
        else:
            host, delim, tmp = tmp[:cut], tmp[cut], tmp[cut + 1:]
    if host == "":
        return None
    try:
        _valid_domain(host, lower=False)
    except BadValue:
        return None
    port = -1
    if tmp:
        if delim == ":":
            portpart, slash, rest = tmp.partition("/")
            port = a2port(portpart)
            if port <= 0:
                return None
            tmp = rest if slash else ""
        if tmp:
            return None   # a path is not allowed
    return user, host, port


def _jump_one(spec: str):
    r = _parse_ssh_uri(spec)
    if r is None:
        return None
    if r == 1:
        return _parse_user_host_port(spec)
    return r


def _p_proxyjump(args, rest, name):
    if rest == "":
        raise BadValue("Missing argument.")
    s = rest
    body = s.split("#", 1)[0].rstrip(" \t\r\n")
    if s.lower() == "none":
        return ("none", None, None, None)
    parts = body.split(",")
    last = parts[-1]
    parsed = _jump_one(last)
    if parsed is None:
        raise BadValue(f'Invalid ProxyJump "{s}"')
    for p in parts[:-1]:
        if _jump_one(p) is None:
            raise BadValue(f'Invalid ProxyJump "{s}"')
    user, host, port = parsed
    cut = s.rfind(",")
    extra = s[:cut] if cut > 0 else None
    return (host, user, port, extra)


def _p_none(args, rest, name):
    return None


def _p_include(args, rest, name):
    if not args:
        raise BadValue("Missing argument.")
    for a in args:
        if a == "":
            raise BadValue(f"keyword {name} empty argument")
    return list(args)


# ---------------------------------------------------------------- the table
class Option:
    """How one canonical option is read and combined.

    ``mode`` is how a new value joins what is already there: ``first``
    (first value wins), ``accum`` (append, skip duplicates), ``forward``
    (append unless an equal forward is there), or a special name handled by
    the resolver (``sendenv``, ``setenv``, ``proxyjump``, ``forwardagent``,
    ``rekeylimit``, ``always``, ``include``, ``host``, ``match``, ``ignore``,
    ``deprecated``, ``unsupported``).
    """

    __slots__ = ("name", "parse", "mode", "tokens")

    def __init__(self, name: str, parse: Callable, mode: str = "first", tokens: str = ""):
        self.name = name
        self.parse = parse
        self.mode = mode
        self.tokens = tokens


def _table() -> Tuple[Dict[str, Option], Dict[str, str]]:
    opts: Dict[str, Option] = {}
    alias: Dict[str, str] = {}

    def add(name, parse, mode="first", aliases=(), tokens=""):
        opts[name] = Option(name, parse, mode, tokens)
        alias[name] = name
        for a in aliases:
            alias[a] = name

    for n in ("forwardx11", "forwardx11trusted", "exitonforwardfailure", "gatewayports",
              "passwordauthentication", "hostbasedauthentication", "identitiesonly", "batchmode",
              "checkhostip", "clearallforwardings", "enablesshkeysign",
              "nohostauthenticationforlocalhost", "hashknownhosts", "permitlocalcommand",
              "visualhostkey", "proxyusefdpass", "canonicalizefallbacklocal",
              "streamlocalbindunlink", "stdinnull", "forkafterauthentication",
              "gssapiauthentication", "gssapidelegatecredentials", "gssapikeyexchange",
              "gssapitrustdns", "gssapirenewalforcesrekey", "enableescapecommandline"):
        add(n, _p_flag)
    add("kbdinteractiveauthentication", _p_flag,
        aliases=("challengeresponseauthentication", "skeyauthentication", "tisauthentication"))
    add("tcpkeepalive", _p_flag, aliases=("keepalive",))
    for n in _MULTI:
        add(n, _p_multi, aliases=("dsaauthentication",) if n == "pubkeyauthentication" else ())
    for n in ("connectionattempts", "numberofpasswordprompts", "serveralivecountmax",
              "canonicalizemaxdots", "requiredrsasize"):
        add(n, _p_int)
    add("connecttimeout", _p_time)
    # Debian's keepalive patch: ProtocolKeepAlives and SetupTimeOut are aliases
    add("serveraliveinterval", _p_time, aliases=("protocolkeepalives", "setuptimeout"))
    add("forwardx11timeout", _p_time)
    add("port", _p_port)
    for n in ("hostname", "user", "hostkeyalias", "preferredauthentications", "bindaddress",
              "bindinterface", "securitykeyprovider", "xauthlocation", "kbdinteractivedevices",
              "revokedhostkeys", "ignoreunknown", "gssapiclientidentity", "gssapiserveridentity"):
        add(n, _p_string)
    add("pkcs11provider", _p_string, aliases=("smartcarddevice",))
    add("controlpath", _p_string, tokens="%$~")
    add("identityagent", _p_agent_path, tokens="%$~")
    add("forwardagent", _p_forwardagent, mode="forwardagent", tokens="%$~")
    add("addkeystoagent", _p_addkeys)
    add("controlpersist", _p_controlpersist)
    add("proxycommand", _p_command)
    add("localcommand", _p_command)
    add("remotecommand", _p_command, tokens="%")
    add("knownhostscommand", _p_command)
    add("proxyjump", _p_proxyjump, mode="proxyjump")
    add("ciphers", _algorithm_parser(_CIPHERS, False, "SSH2 cipher spec"))
    add("macs", _algorithm_parser(_MACS, False, "SSH2 MAC spec"))
    add("kexalgorithms", _algorithm_parser(_KEX, False, "SSH2 KexAlgorithms"))
    add("hostkeyalgorithms", _algorithm_parser(_KEYS_SIG, True, "key types"))
    add("hostbasedacceptedalgorithms", _algorithm_parser(_KEYS_SIG, True, "key types"),
        aliases=("hostbasedkeytypes",))
    add("pubkeyacceptedalgorithms", _algorithm_parser(_KEYS_SIG, True, "key types"),
        aliases=("pubkeyacceptedkeytypes",))
    add("casignaturealgorithms", _algorithm_parser(_SIGS, True, "key types"))
    add("gssapikexalgorithms", _p_gsskex)
    add("loglevel", _p_loglevel)
    add("syslogfacility", _p_facility)
    add("logverbose", _p_logverbose)
    add("escapechar", _p_escapechar)
    add("ipqos", _p_ipqos)
    add("rekeylimit", _p_rekeylimit, mode="rekeylimit")
    add("streamlocalbindmask", _p_bindmask)
    add("tunneldevice", _p_tundev)
    add("identityfile", _p_string, mode="accum", aliases=("identityfile2",))
    add("certificatefile", _p_string, mode="accum")
    add("localforward", _p_forward("local"), mode="forward", tokens="%")
    add("remoteforward", _p_forward("remote"), mode="forward", tokens="%")
    add("dynamicforward", _p_forward("dynamic"), mode="forward", tokens="%")
    add("sendenv", _p_sendenv, mode="sendenv")
    add("setenv", _p_setenv)
    add("canonicaldomains", _p_canondomains)
    add("canonicalizepermittedcnames", _p_cnames)
    add("globalknownhostsfile", _p_charray)
    add("userknownhostsfile", _p_charray, tokens="%$~")
    add("permitremoteopen", _p_permitremoteopen)
    add("include", _p_include, mode="include")
    add("host", _p_none, mode="host")
    add("match", _p_none, mode="match")
    add("protocol", _p_none, mode="ignore")
    for n in ("cipher", "fallbacktorsh", "globalknownhostsfile2", "rhostsauthentication",
              "userknownhostsfile2", "useroaming", "usersh", "useprivilegedport",
              "useblacklistedkeys"):
        add(n, _p_none, mode="deprecated")
    for n in ("afstokenpassing", "kerberosauthentication", "kerberostgtpassing",
              "rsaauthentication", "rhostsrsaauthentication", "compressionlevel"):
        add(n, _p_none, mode="unsupported")
    return opts, alias


OPTIONS, KEYWORDS = _table()

# Keys whose resolved value is a list (several lines, or several words on one
# line, in ``ssh -G``); every other key maps to one string.
LIST_KEYS = frozenset({
    "identityfile", "certificatefile", "localforward", "remoteforward", "dynamicforward",
    "sendenv", "setenv", "canonicaldomains", "canonicalizepermittedcnames",
    "globalknownhostsfile", "userknownhostsfile", "logverbose", "permitremoteopen",
})

# Output order of ``ssh -G`` (OpenSSH 9.2, Debian).
DUMP_ORDER = tuple("""
host user hostname port addressfamily batchmode canonicalizefallbacklocal canonicalizehostname
checkhostip compression controlmaster enablesshkeysign clearallforwardings exitonforwardfailure
fingerprinthash forwardx11 forwardx11trusted gatewayports gssapiauthentication gssapikeyexchange
gssapidelegatecredentials gssapitrustdns gssapirenewalforcesrekey gssapiclientidentity
gssapiserveridentity gssapikexalgorithms hashknownhosts hostbasedauthentication identitiesonly
kbdinteractiveauthentication nohostauthenticationforlocalhost passwordauthentication
permitlocalcommand proxyusefdpass pubkeyauthentication requesttty sessiontype stdinnull
forkafterauthentication streamlocalbindunlink stricthostkeychecking tcpkeepalive tunnel
verifyhostkeydns visualhostkey updatehostkeys enableescapecommandline canonicalizemaxdots
connectionattempts forwardx11timeout numberofpasswordprompts serveralivecountmax
serveraliveinterval requiredrsasize bindaddress bindinterface ciphers controlpath
hostkeyalgorithms hostkeyalias hostbasedacceptedalgorithms identityagent ignoreunknown
kbdinteractivedevices kexalgorithms casignaturealgorithms localcommand remotecommand loglevel
macs pkcs11provider securitykeyprovider preferredauthentications pubkeyacceptedalgorithms
revokedhostkeys xauthlocation knownhostscommand dynamicforward localforward remoteforward
identityfile canonicaldomains certificatefile globalknownhostsfile userknownhostsfile sendenv
setenv logverbose permitremoteopen addkeystoagent forwardagent connecttimeout tunneldevice
canonicalizepermittedcnames controlpersist escapechar ipqos rekeylimit streamlocalbindmask
syslogfacility proxycommand proxyjump
""".split())


def percent_tokens_ok(s: str, allowed: str) -> Optional[str]:
    """None when every ``%x`` in ``s`` is in ``allowed``; else the bad token."""
    i = 0
    while i < len(s):
        if s[i] == "%":
            if i + 1 >= len(s):
                return "%"
            c = s[i + 1]
            if c != "%" and c not in allowed:
                return "%" + c
            i += 2
        else:
            i += 1
    return None
