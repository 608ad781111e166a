"""Local facts and token expansion: ``~``, ``%x`` and ``${NAME}``, as ssh does them.

Kept apart from the resolver because two moments need them: ``ssh -G``
expands some options before printing (done by the resolver), and ssh
expands others only when it connects (:func:`expand_for_connect`, for the
transport).  Both use the same token table built from the same local facts.
"""
from __future__ import annotations

import hashlib
import socket
from typing import Dict, List, Mapping, Optional

from sshpipe.config._accounts import Accounts, SystemAccounts
from sshpipe.config._context import Context, local_context
from sshpipe.config._values import BadValue
from sshpipe.errors import SSHConfigError

__all__ = ["Context", "local_context", "expand_tokens", "tilde_expand", "expand_for_connect",
           "local_addresses", "connection_hash", "connection_tokens"]


# ---------------------------------------------------------------- expansion
def expand_tokens(value: str, tokens: Mapping[str, str], environ: Optional[Mapping[str, str]],
                  what: str) -> str:
    """``percent_expand``/``percent_dollar_expand`` in one pass.

    ``environ`` None means ``${...}`` is left alone.  Unknown ``%x`` tokens
    and unset variables raise BadValue, as OpenSSH refuses them.
    """
    out = []
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if environ is not None and c == "$" and value.startswith("${", i):
            j = value.find("}", i + 2)
            if j < 0:
                raise BadValue(f"{what}: unterminated ${{")
            name = value[i + 2:j]
            got = environ.get(name)
            if got is None:
                raise BadValue(f"{what}: env var ${{{name}}} has no value")
            out.append(got)
            i = j + 1
            continue
        if c == "%":
            if i + 1 >= n:
                raise BadValue(f"{what}: invalid format")
            t = value[i + 1]
            if t == "%":
                out.append("%")
            else:
                got = tokens.get(t)
                if got is None:
                    raise BadValue(f"{what}: unknown key %{t}")
                out.append(got)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def tilde_expand(name: str, home: str, local_user: Optional[str] = None,
                 accounts: Optional[Accounts] = None) -> str:
    """``tilde_expand()``: "~", "~/x", "~user", "~user/x" (extra slashes dropped).

    ``~`` is the local user's home (``home``); another user's home comes
    from ``accounts`` (default: this machine's password database).
    """
    if not name.startswith("~"):
        return name
    copy = name[1:]
    user = None
    if copy == "":
        path = None
    elif copy.startswith("/"):
        path = copy.lstrip("/") or None
    else:
        user, slash, rest = copy.partition("/")
        path = rest.lstrip("/") or None if slash else None
    if user is not None and user != local_user:
        pw = (accounts or SystemAccounts()).by_name(user)
        if pw is None:
            raise BadValue(f"tilde_expand: No such user {user}")
        home = pw.home
    sep = "" if home.endswith("/") else "/"
    return f"{home}{sep}{path or ''}"


def connection_hash(local_hostname: str, host: str, port: str, user: str,
                    jump: Optional[str] = None) -> str:
    """``%C``: SHA-1 of local host name, host, port, user (and, 9.9+, the jump host)."""
    data = local_hostname + host + port + user + (jump or "")
    return hashlib.sha1(data.encode("utf-8", "surrogateescape")).hexdigest()


def connection_tokens(ctx: Context, host: str, host_arg: str, port: str, user: Optional[str],
                      keyalias: str, jump: Optional[str]) -> Dict[str, str]:
    """The ``%`` tokens ssh gives its expansions (``DEFAULT_CLIENT_PERCENT_EXPAND_ARGS``).

    ``user`` None leaves out ``%r`` and ``%C`` (the set ssh 10.0 uses to
    expand User itself).
    """
    tokens = {
        "L": ctx.local_hostname.split(".", 1)[0], "i": str(ctx.uid), "k": keyalias,
        "l": ctx.local_hostname, "n": host_arg, "p": port, "d": ctx.home, "h": host,
        "u": ctx.local_user,
    }
    with_jump = ctx.version.jump_in_hash
    if with_jump:
        tokens["j"] = jump or ""
    if user is not None:
        tokens["r"] = user
        tokens["C"] = connection_hash(ctx.local_hostname, host, port, user,
                                      (jump or "") if with_jump else None)
    return tokens


def jump_host_of(proxyjump: Optional[object]) -> Optional[str]:
    """The host ssh connects through first (``%j``), from a printed ProxyJump value."""
    if not proxyjump or proxyjump == "none":
        return None
    last = str(proxyjump).rsplit(",", 1)[-1]
    last = last.rpartition("@")[2]
    if last.startswith("["):
        return last[1:last.find("]")]
    return last.split(":", 1)[0]


def expand_for_connect(settings: Mapping[str, object], value: str, kind: str = "path", *,
                       local_user: Optional[str] = None, home: Optional[str] = None,
                       local_hostname: Optional[str] = None,
                       environ: Optional[Mapping[str, str]] = None,
                       accounts: Optional[Accounts] = None, openssh: object = "auto") -> str:
    """Expand a value the way ssh does when it connects (after ``ssh -G`` prints).

    ``ssh -G`` shows IdentityFile, CertificateFile, ProxyCommand and
    LocalCommand unexpanded, because ssh expands them only when it uses them.
    ``kind`` picks the rules: ``"path"`` (IdentityFile, CertificateFile:
    ``~``, all ``%`` tokens, ``${ENV}``), ``"proxy"`` (ProxyCommand: ``%h``
    ``%n`` ``%p`` ``%r`` only) or ``"local"`` (LocalCommand: all tokens and
    ``%T`` as "NONE").  ``settings`` is a :meth:`SSHConfig.resolve` result;
    the other arguments are as for :meth:`SSHConfig.resolve`.
    """
    ctx = local_context(local_user, home, local_hostname, environ, accounts=accounts,
                        openssh=openssh)
    host = str(settings["hostname"])
    port = str(settings["port"])
    user = str(settings["user"])
    host_arg = str(settings["host"])
    if kind == "proxy":
        tokens = {"h": host, "n": host_arg, "p": port, "r": user}
        try:
            return expand_tokens(value, tokens, None, "percent_expand")
        except BadValue as exc:
            raise SSHConfigError(f"ProxyCommand {value!r}: {exc}") from None
    tokens = connection_tokens(ctx, host, host_arg, port, user,
                               str(settings.get("hostkeyalias") or host_arg),
                               jump_host_of(settings.get("proxyjump")))
    try:
        if kind == "local":
            tokens["T"] = "NONE"
            return expand_tokens(value, tokens, None, "percent_expand")
        if kind != "path":
            raise ValueError(f"unknown kind {kind!r}")
        return expand_tokens(tilde_expand(value, ctx.home, ctx.local_user, ctx.accounts), tokens,
                             ctx.environ, "percent_dollar_expand")
    except BadValue as exc:
        raise SSHConfigError(f"{value!r}: {exc}") from None


def local_addresses() -> List[str]:
    """Addresses of the local interfaces (for ``Match localnetwork``).

    Read from the kernel (``SIOCGIFADDR`` per interface, ``/proc/net/if_inet6``)
    rather than by running a program: resolving never starts processes
    unless the caller allows ``Match exec``.
    """
    out: List[str] = []
    try:
        import fcntl
        import struct
        names = [name for _, name in socket.if_nameindex()]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for name in names:
                try:
                    raw = fcntl.ioctl(sock.fileno(), 0x8915,  # SIOCGIFADDR
                                      struct.pack("256s", name[:15].encode()))
                except OSError:
                    continue
                out.append(socket.inet_ntoa(raw[20:24]))
    except (ImportError, OSError):
        pass
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                hexaddr = line.split()[0]
                out.append(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexaddr)))
    except (OSError, ValueError, IndexError):
        pass
    return out
