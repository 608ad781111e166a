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

import functools
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from sshpipe.config._forwards import forward_parser, parse_proxyjump
from sshpipe.config._values import (
    GSS_KEX, UNSET, BadValue, ExtraArguments, a2port, assemble_algorithms, convtime, hpdelim,
    names_valid, one_arg, strtonum, valid_domain,
)
from sshpipe.config._versions import NEWEST, VERSIONS, OpenSSH

__all__ = [
    "BadValue",
    "Option",
    "OptionTable",
    "options_for",
    "OPTIONS",
    "KEYWORDS",
    "UNSET",
    "LIST_KEYS",
    "convtime",
    "a2port",
    "assemble_algorithms",
]

#: How an option's value is checked and converted: (words, the line's text
#: after the keyword, canonical name) -> value; BadValue when ssh rejects it.
Parser = Callable[[Sequence[str], str, str], Any]

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
    "controlmaster": _ms(("true", 1), ("yes", 1), ("false", 0), ("no", 0), ("auto", 3), ("ask", 2),
                         ("autoask", 4)),
    "requesttty": _ms(("true", 2), ("yes", 2), ("false", 1), ("no", 1), ("force", 3), ("auto", 0)),
    "sessiontype": _ms(("none", 0), ("subsystem", 1), ("default", 2)),
    "stricthostkeychecking": _ms(("true", 2), ("false", 0), ("yes", 2), ("no", 0), ("ask", 3),
                                 ("off", 0), ("accept-new", 1)),
    "tunnel": _ms(("ethernet", 2), ("point-to-point", 1), ("true", 1), ("yes", 1), ("false", 0),
                  ("no", 0)),
    "updatehostkeys": _ms(("true", 1), ("false", 0), ("yes", 1), ("no", 0), ("ask", 2)),
    "verifyhostkeydns": _ms(("true", 1), ("false", 0), ("yes", 1), ("no", 0), ("ask", 2)),
    "pubkeyauthentication": _ms(("true", 3), ("false", 0), ("yes", 3), ("no", 0), ("unbound", 1),
                                ("host-bound", 2)),
    "compression": _ms(("yes", 1), ("no", 0)),
    "fingerprinthash": _ms(("md5", 0), ("sha256", 2)),
}
_SHOW_OVERRIDE = {"fingerprinthash": {0: "MD5", 2: "SHA256"}, "compression": {0: "no", 1: "yes"}}
_ADDKEYS = _ms(("true", 1), ("false", 0), ("yes", 1), ("no", 0), ("ask", 2), ("confirm", 3))


def _p_flag(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
    v = _FLAG[0].get(arg.lower())
    if v is None:
        raise BadValue(f'unsupported option "{arg}".')
    return "yes" if v else "no"


def _p_multi(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
    parse, show = _MULTI[name]
    v = parse.get(arg.lower())
    if v is None:
        raise BadValue(f'unsupported option "{arg}".')
    return _SHOW_OVERRIDE.get(name, show).get(v) or show[v]


def _p_int(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
    v, err = strtonum(arg, 0, 2147483647)
    if err:
        raise BadValue(f"integer value {err}.")
    return str(v)


def _p_time(args: Sequence[str], rest: str, name: str) -> Any:
    if not args or args[0] == "":
        raise BadValue("missing time value.")
    arg = args[0]
    if len(args) > 1:
        raise ExtraArguments()
    if arg == "none":
        return UNSET
    v = convtime(arg)
    if v == -1:
        raise BadValue("invalid time value.")
    return str(v)


def _p_port(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
    v = a2port(arg)
    if v <= 0:
        raise BadValue(f"Bad port '{arg}'.")
    return str(v)


def _p_string(args: Sequence[str], rest: str, name: str) -> Any:
    return one_arg(args)


def _p_command(args: Sequence[str], rest: str, name: str) -> Any:
    if rest == "":
        raise BadValue("Missing argument.")
    return rest


def _p_agent_path(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
    return arg


def _p_forwardagent(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
    v = _FLAG[0].get(arg.lower())
    if v is not None:
        return ("yes" if v else "no", None)
    return ("yes", arg)


def _p_addkeys(args: Sequence[str], rest: str, name: str) -> Any:
    if not args:
        raise BadValue("Missing argument.")
    if len(args) > 2:
        raise ExtraArguments()
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


def _p_controlpersist(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
    if arg in ("no", "false"):
        return "no"
    if arg in ("yes", "true"):
        return "yes"
    t = convtime(arg)
    if t < 0:
        raise BadValue("Bad ControlPersist argument.")
    return "yes" if t == 0 else str(t)


_LOGLEVELS = {"quiet": "SILENT", "silent": "SILENT", "fatal": "FATAL", "error": "ERROR",
              "info": "INFO", "verbose": "VERBOSE", "debug": "DEBUG", "debug1": "DEBUG",
              "debug2": "DEBUG2", "debug3": "DEBUG3"}
_FACILITIES = {n.lower(): n for n in ("DAEMON", "USER", "AUTH", "AUTHPRIV", "LOCAL0", "LOCAL1",
                                      "LOCAL2", "LOCAL3", "LOCAL4", "LOCAL5", "LOCAL6", "LOCAL7")}


def _p_loglevel(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
    v = _LOGLEVELS.get(arg.lower())
    if v is None:
        raise BadValue(f"unsupported log level '{arg}'")
    return v


def _p_facility(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
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


def _p_escapechar(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
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


_TOS_DEPRECATED = frozenset({"lowdelay", "throughput", "reliability"})


def _ipqosone_arg(arg: str, v: OpenSSH) -> int:
    low = arg.lower()
    if v.ipqos_tos_ignored and low in _TOS_DEPRECATED:
        return 0x7fffffff     # Debian 10.0: the TOS names are ignored ("none")
    got = _IPQOS_PARSE.get(low)
    if got is not None:
        return got
    if v.ipqos_strict:
        n, err = strtonum(arg, 0, 255)
        n = None if err else n
    else:
        n = _strtol0(arg)
    if n is None or n < 0 or n > 255:
        raise BadValue(f"Bad IPQoS value: {arg}")
    return n


def _ipqos_show(v: int, tos_ignored: bool = False) -> str:
    if tos_ignored and v in (0x10, 0x08, 0x04):
        return "0x%02x" % v        # the TOS names are no longer in the table
    return _IPQOS_SHOW.get(v) or "0x%02x" % v


def _ipqos_parser(v: OpenSSH) -> Parser:
    def parse(args: Sequence[str], rest: str, name: str) -> Any:
        if not args:
            raise BadValue("Missing argument.")
        if len(args) > 2:
            raise ExtraArguments()
        a = _ipqosone_arg(args[0], v)
        b = _ipqosone_arg(args[1], v) if len(args) > 1 else a
        ign = v.ipqos_tos_ignored
        return f"{_ipqos_show(a, ign)} {_ipqos_show(b, ign)}"
    return parse


def _p_keystroke(args: Sequence[str], rest: str, name: str) -> Any:
    value = None
    for arg in args:
        if value is not None:
            raise BadValue("invalid arguments")
        if arg in ("yes", "true"):
            value = 20
        elif arg in ("no", "false"):
            value = 0
        elif arg.startswith("interval:"):
            n, err = strtonum(arg[9:], -2147483648, 2147483647)
            if err or n is None:
                raise BadValue(f"integer value {err}.")
            if n <= 0 or n > 1000:
                raise BadValue("value out of range.")
            value = n
        else:
            raise BadValue(f'unsupported argument "{arg}"')
    if value is None:
        raise BadValue("missing argument")
    return "no" if value == 0 else "yes" if value == 20 else str(value)


def _p_channeltimeout(args: Sequence[str], rest: str, name: str) -> Any:
    if not args:
        raise BadValue(f"no {name} specified")
    for i, arg in enumerate(args):
        if arg.lower() == "none":
            if i > 0 or len(args) > 1:
                raise BadValue(f'keyword {name} "none" argument must appear alone.')
            continue
        kind, eq, interval = arg.partition("=")
        if not eq or kind == "" or convtime(interval) < 0:
            raise BadValue(f"invalid channel timeout {arg}")
    return list(args)


def _p_version_addendum(args: Sequence[str], rest: str, name: str) -> Any:
    # 10.0 takes the rest of the line as it is: its attempt to cut a "#"
    # comment acts on a copy, so the comment stays part of the value
    if rest == "":
        raise BadValue(f"{name} missing argument.")
    if "\r" in rest:
        raise BadValue(f"Invalid {name} argument")
    return "" if rest.lower() == "none" else rest


_LLONG_MAX = (1 << 63) - 1
_SCALE_CHARS = "BKMGTPE"
_MAX_DIGITS = 21


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _scan_scaled(s: str) -> Optional[int]:
    """openbsd-compat ``scan_scaled()``: "1.5K" -> 1536; None where it fails.

    Like the C code: leading white space and one sign are taken, a fraction
    without a unit is dropped, anything may follow the unit letter but a
    letter or digit.
    """
    p = 0
    n = len(s)
    while p < n and s[p] in " \t\n\v\f\r":
        p += 1
    sign = 0
    while p < n and s[p] in "+-":
        if sign:
            return None
        sign = -1 if s[p] == "-" else 1
        p += 1
    whole = fpart = 0
    ndigits = fract = 0
    while p < n and (s[p].isascii() and s[p].isdigit() or s[p] == "."):
        c = s[p]
        p += 1
        if c == ".":
            if fract:
                return None
            fract = 1
            continue
        if fract:
            if fract >= _MAX_DIGITS - 1:
                continue
            fract += 1
            fpart = fpart * 10 + int(c)
            if fpart > _LLONG_MAX:
                return None
        else:
            ndigits += 1
            if ndigits >= _MAX_DIGITS:
                return None
            whole = whole * 10 + int(c)
            if whole > _LLONG_MAX:
                return None
    if sign:
        whole *= sign
    if p >= n:
        return whole
    unit = s[p].upper() if s[p].isascii() else ""
    i = _SCALE_CHARS.find(unit) if unit else -1
    if i < 0:
        return None
    if p + 1 < n and s[p + 1].isascii() and s[p + 1].isalnum():
        return None
    fact = 1 << (10 * i)
    if whole > _LLONG_MAX // fact or whole < -(_LLONG_MAX + 1) // fact:
        return None
    whole *= fact
    while fpart >= _LLONG_MAX // fact:
        fpart //= 10
        fract -= 1
    fpart *= fact
    for _ in range(fract - 1):
        fpart //= 10
    return whole - fpart if sign == -1 else whole + fpart


def _p_rekeylimit(args: Sequence[str], rest: str, name: str) -> Any:
    if not args:
        raise BadValue("Missing argument.")
    if len(args) > 2:
        raise ExtraArguments()
    arg = args[0]
    limit: Optional[int] = 0
    if arg != "default":
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


def _p_bindmask(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
    m = re.match(r"\s*[+-]?[0-7]+", arg)
    if not m:
        raise BadValue("Bad mask.")
    v = int(m.group().strip(), 8)
    if v < 0 or v > 0o777:
        raise BadValue("Bad mask.")
    return "0%o" % v


def _a2tunone_arg(s: str) -> str:
    if s == "any":
        return "any"
    v, err = strtonum(s, 0, 0x7fffffff - 2)
    if err:
        raise BadValue("Bad tun device.")
    return str(v)


def _p_tundev(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
    if ":" in arg:
        a, b = arg.split(":", 1)
        return f"{_a2tunone_arg(a)}:{_a2tunone_arg(b)}"
    return f"{_a2tunone_arg(arg)}:any"


def _algorithm_parser(supported: str, wildcard: bool, what: str) -> Parser:
    def parse(args: Sequence[str], rest: str, name: str) -> Any:
        arg = one_arg(args)
        if arg[0] != "-":
            body = arg[1:] if arg[0] in "+^" else arg
            if not names_valid(body, supported, wildcard):
                raise BadValue(f"Bad {what} '{arg}'.")
        return arg
    return parse


def _p_gsskex(args: Sequence[str], rest: str, name: str) -> Any:
    arg = one_arg(args)
    if not names_valid(arg, GSS_KEX, False):
        raise BadValue(f"Bad GSSAPI KexAlgorithms '{arg}'.")
    return arg


def _p_charray(args: Sequence[str], rest: str, name: str) -> Any:
    if not args:
        raise BadValue("Missing argument.")
    for i, arg in enumerate(args):
        if arg == "":
            raise BadValue(f"keyword {name} empty argument")
        if arg.lower() == "none" and (i > 0 or len(args) > 1):
            raise BadValue(f'keyword {name} "none" argument must appear alone.')
    return list(args)


def _p_logverbose(args: Sequence[str], rest: str, name: str) -> Any:
    vals = _p_charray(args, rest, name)
    # OpenSSH 9.2 keeps only the first word of the first LogVerbose line.
    return vals[:1]


def _p_canondomains(args: Sequence[str], rest: str, name: str) -> Any:
    if not args:
        raise BadValue("Missing argument.")
    out = []
    for arg in args:
        if arg == "":
            raise BadValue(f"keyword {name} empty argument")
        out.append(valid_domain(arg))
    return out


def _p_cnames(args: Sequence[str], rest: str, name: str) -> Any:
    if not args:
        raise BadValue("Missing argument.")
    out = []
    for i, arg in enumerate(args):
        if arg.lower() == "none":
            if i > 0 or len(args) > 1:
                raise BadValue(f'keyword {name} "none" argument must appear alone.')
            out.append("none:")      # set, but permits nothing; printed as "none"
            continue
        if arg == "*":
            out.append("*:*")
            continue
        arg = arg.lower()
        src, sep, dst = arg.partition(":")
        if not sep or dst == "":
            raise BadValue(f'Invalid permitted CNAME "{arg}"')
        out.append(f"{src}:{dst}")
    return out


def _p_permitremoteopen(args: Sequence[str], rest: str, name: str) -> Any:
    if not args:
        raise BadValue("Missing argument.")
    out = []
    for i, arg in enumerate(args):
        if arg.lower() in ("none", "any"):
            if i > 0 or len(args) > 1:
                raise BadValue(f'keyword {name} "{arg}" argument must appear alone.')
        else:
            host, port = hpdelim(arg)
            if host is None:
                raise BadValue(f"missing host in {name}")
            if port is None or (a2port(port) <= 0 and port != "*"):
                raise BadValue(f"bad port number in {name}")
        out.append(arg)
    return out


def _p_sendenv(args: Sequence[str], rest: str, name: str) -> Any:
    if not args:
        raise BadValue("Missing argument.")
    for arg in args:
        if arg == "" or "=" in arg:
            raise BadValue("Invalid environment name.")
    return list(args)


def _p_setenv(args: Sequence[str], rest: str, name: str) -> Any:
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


def _p_none(args: Sequence[str], rest: str, name: str) -> Any:
    return None


def _p_include(args: Sequence[str], rest: str, name: str) -> Any:
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

    __slots__ = ("name", "parse", "mode")

    def __init__(self, name: str, parse: Parser, mode: str = "first"):
        self.name = name
        self.parse = parse
        self.mode = mode


def _table(v: OpenSSH) -> Tuple[Dict[str, Option], Dict[str, str]]:
    opts: Dict[str, Option] = {}
    alias: Dict[str, str] = {}

    algos = v.algorithms

    def add(name: str, parse: Parser, mode: str = "first",
            aliases: Sequence[str] = ()) -> None:
        if not v.knows(name):
            return
        opts[name] = Option(name, parse, mode)
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
    add("controlpath", _p_string)
    add("identityagent", _p_agent_path)
    add("forwardagent", _p_forwardagent, mode="forwardagent")
    add("addkeystoagent", _p_addkeys)
    add("controlpersist", _p_controlpersist)
    add("proxycommand", _p_command)
    add("localcommand", _p_command)
    add("remotecommand", _p_command)
    add("knownhostscommand", _p_command)
    add("proxyjump", parse_proxyjump, mode="proxyjump")
    add("ciphers", _algorithm_parser(algos["ciphers"][0], False, "SSH2 cipher spec"))
    add("macs", _algorithm_parser(algos["macs"][0], False, "SSH2 MAC spec"))
    add("kexalgorithms", _algorithm_parser(algos["kexalgorithms"][0], False, "SSH2 KexAlgorithms"))
    add("hostkeyalgorithms", _algorithm_parser(algos["hostkeyalgorithms"][0], True, "key types"))
    add("hostbasedacceptedalgorithms",
        _algorithm_parser(algos["hostkeyalgorithms"][0], True, "key types"),
        aliases=("hostbasedkeytypes",))
    add("pubkeyacceptedalgorithms",
        _algorithm_parser(algos["hostkeyalgorithms"][0], True, "key types"),
        aliases=("pubkeyacceptedkeytypes",))
    add("casignaturealgorithms",
        _algorithm_parser(algos["casignaturealgorithms"][0], True, "key types"))
    add("gssapikexalgorithms", _p_gsskex)
    add("loglevel", _p_loglevel)
    add("syslogfacility", _p_facility)
    add("logverbose", _p_logverbose)
    add("escapechar", _p_escapechar)
    add("ipqos", _ipqos_parser(v))
    add("rekeylimit", _p_rekeylimit, mode="rekeylimit")
    add("streamlocalbindmask", _p_bindmask)
    add("tunneldevice", _p_tundev)
    add("identityfile", _p_string, mode="accum", aliases=("identityfile2",))
    add("certificatefile", _p_string, mode="accum")
    add("localforward", forward_parser("local"), mode="forward")
    add("remoteforward", forward_parser("remote"), mode="forward")
    add("dynamicforward", forward_parser("dynamic"), mode="forward")
    add("sendenv", _p_sendenv, mode="sendenv")
    add("setenv", _p_setenv)
    add("canonicaldomains", _p_canondomains)
    add("canonicalizepermittedcnames", _p_cnames)
    add("globalknownhostsfile", _p_charray)
    add("userknownhostsfile", _p_charray)
    add("permitremoteopen", _p_permitremoteopen)
    add("include", _p_include, mode="include")
    add("tag", _p_string)
    add("obscurekeystroketiming", _p_keystroke)
    add("channeltimeout", _p_channeltimeout)
    add("versionaddendum", _p_version_addendum)
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


class OptionTable:
    """The options one OpenSSH release knows: canonical name -> Option, keyword -> name."""

    __slots__ = ("version", "options", "keywords")

    def __init__(self, version: OpenSSH):
        self.version = version
        self.options, self.keywords = _table(version)


@functools.lru_cache(maxsize=None)
def options_for(version: OpenSSH) -> OptionTable:
    """The option table of ``version`` (built once per release record)."""
    return OptionTable(version)


# The newest release's table: every keyword sshpipe knows (for edits and lookups).
_NEWEST_TABLE = options_for(VERSIONS[NEWEST])
OPTIONS, KEYWORDS = _NEWEST_TABLE.options, _NEWEST_TABLE.keywords

# Keys whose resolved value is a list (several lines, or several words on one
# line, in ``ssh -G``); every other key maps to one string.
LIST_KEYS = frozenset({
    "identityfile", "certificatefile", "localforward", "remoteforward", "dynamicforward",
    "sendenv", "setenv", "canonicaldomains", "canonicalizepermittedcnames",
    "globalknownhostsfile", "userknownhostsfile", "logverbose", "permitremoteopen",
    "channeltimeout",
})
