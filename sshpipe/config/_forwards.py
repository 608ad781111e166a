"""Forwarding specs and ProxyJump/ssh:// targets, read as OpenSSH reads them.

``parse_forward`` follows ``parse_forward()``/``parse_fwd_field()`` (fields
split on ":" unless escaped, "[...]" literal, a "/" makes a Unix socket
path); the ProxyJump parser follows ``parse_jump()``, ``parse_ssh_uri()`` and
``parse_user_host_port()``.  Both return plain tuples that the resolver
formats the way ``ssh -G`` prints them.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from sshpipe.config._values import BadValue, ExtraArguments, a2port, hpdelim, valid_domain

__all__ = ["parse_forward", "forward_parser", "forward_spec", "parse_forward_spec",
           "parse_proxyjump", "parse_ssh_uri", "FWDARG_BYTES"]


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


NI_MAXHOST = 1025
PATH_MAX_SUN = 108

# (listen_host, listen_port|path, connect_host, connect_port|path,
#  listen_is_path, connect_is_path), as parse_forward() returns it.
Forward = Tuple[Optional[str], Union[str, int], Optional[str], Union[str, int], bool, bool]
# (user, host, port): port -1 when not given.
UserHostPort = Tuple[Optional[str], str, int]


def _port_of(s: str) -> int:
    return a2port(s) if s != "" else -1


def parse_forward(spec: str, dynamic: bool, remote: bool) -> Optional[Forward]:
    """``parse_forward()``: (listen_host, listen_port|path, connect_host, connect_port|path)."""
    fields = _fwd_fields(spec.lstrip())
    if fields is None:
        return None
    n = len(fields)
    lh: Optional[str] = None
    lpath: Optional[str] = None
    ch: Optional[str] = None
    cpath: Optional[str] = None
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
    # NI_MAXHOST for host names, sizeof(sun_path) for socket paths (in bytes)
    for value, limit in ((ch, NI_MAXHOST), (cpath, PATH_MAX_SUN), (lh, NI_MAXHOST),
                         (lpath, PATH_MAX_SUN)):
        if value is not None and len(value.encode("utf-8", "surrogateescape")) >= limit:
            return None
    return (lh, lpath if lpath is not None else lport, ch, cpath if cpath is not None else cport,
            lpath is not None, cpath is not None)


# readconf.c builds the spec in ``char fwdarg[256]``: longer specs are cut.
FWDARG_BYTES = 255


def forward_spec(args: Sequence[str], kind: str) -> Tuple[str, bool, bool]:
    """The spec string ssh hands ``parse_forward()``: (spec, dynamic, remote).

    ``"LocalForward A B"`` becomes ``"A:B"``; like ssh, the result is cut to
    255 bytes (its ``fwdarg[256]`` buffer).
    """
    if not args or args[0] == "":
        raise BadValue("Missing argument.")
    remote = kind == "remote"
    dynamic = kind == "dynamic"
    if dynamic:
        if len(args) > 1:
            raise ExtraArguments()
        spec = args[0]
    else:
        if len(args) > 2:
            raise ExtraArguments()
        if len(args) < 2 or args[1] == "":
            if remote:
                dynamic = True
                spec = args[0]
            else:
                raise BadValue("Missing target argument.")
        else:
            spec = f"{args[0]}:{args[1]}"
    raw = spec.encode("utf-8", "surrogateescape")
    if len(raw) > FWDARG_BYTES:
        spec = raw[:FWDARG_BYTES].decode("utf-8", "surrogateescape")
    return spec, dynamic, remote


def parse_forward_spec(spec: str, dynamic: bool, remote: bool) -> Forward:
    """``parse_forward()`` of an already ``${ENV}``-expanded spec; BadValue if bad."""
    fwd = parse_forward(spec, dynamic, remote)
    if fwd is None:
        raise BadValue("Bad forwarding specification.")
    return fwd


def forward_parser(kind: str) -> Callable[[Sequence[str], str, str], Any]:
    def parse(args: Sequence[str], rest: str, name: str) -> Any:
        spec, dynamic, remote = forward_spec(args, kind)
        if "${" in spec:
            return ("env", spec, dynamic, remote)
        return parse_forward_spec(spec, dynamic, remote)
    return parse


def _parse_user_host_port(s: str) -> Optional[UserHostPort]:
    user = None
    tmp = s
    at = tmp.rfind("@")
    if at >= 0:
        user = tmp[:at]
        if user == "":
            return None
        tmp = tmp[at + 1:]
    host, port_s = hpdelim(tmp)
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


def parse_ssh_uri(s: str) -> Union[int, None, UserHostPort]:
    """``parse_ssh_uri()``: 1 when not a URI, None when bad, else (user, host, port)."""
    if not s.lower().startswith("ssh://"):
        return 1
    tmp = s[6:]
    user: Optional[str] = None
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
        valid_domain(host, lower=False)
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


def _jump_one(spec: str) -> Optional[UserHostPort]:
    r = parse_ssh_uri(spec)
    if isinstance(r, int):  # 1: not a URI
        return _parse_user_host_port(spec)
    return r


def parse_proxyjump(
    args: Sequence[str], rest: str, name: str
) -> Tuple[str, Optional[str], int, Optional[str]]:
    if rest == "":
        raise BadValue("Missing argument.")
    s = rest
    body = s.split("#", 1)[0].rstrip(" \t\r\n")
    if s.lower() == "none":
        # the literal "none" (port 0); "none # comment" is a host named none
        return ("none", None, 0, None)
    parts = body.split(",")
    last = parts[-1]
    parsed = _jump_one(last)
    if parsed is None:
        raise BadValue(f'Invalid ProxyJump "{s}"')
    for p in parts[:-1]:
        if _jump_one(p) is None:
            raise BadValue(f'Invalid ProxyJump "{s}"')
    user, host, port = parsed
    cut = body.rfind(",")
    extra = body[:cut] if cut > 0 else None
    return (host, user, port, extra)
