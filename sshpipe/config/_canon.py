"""The host name ssh connects to: address literals, CanonicalDomains, CNAMEs.

After the first pass ssh takes HostName (``%h`` expanded) or the name as
typed and, in this order (``ssh.c``'s ``main()`` and
``resolve_canonicalize()``):

1. lower-cases it unless it is an address (``is_addr()``);
2. canonicalises an address literal whatever CanonicalizeHostname says:
   ``getaddrinfo(AI_NUMERICHOST)`` then ``getnameinfo(NI_NUMERICHOST)``, so
   ``127.1`` becomes ``127.0.0.1``, ``010.0.0.1`` ``8.0.0.1`` and
   ``2001:DB8:0::0010`` ``2001:db8::10``;
3. with CanonicalizeHostname on (and a direct connection, or ``always``):
   a name ending in "." is looked up as is; a name with at most
   CanonicalizeMaxDots dots is tried with each CanonicalDomains suffix; with
   ``CanonicalizeFallbackLocal no`` a name that resolves under no suffix is
   an error ("Could not resolve host");
4. with CanonicalizePermittedCNAMEs and nothing resolved yet, the bare name
   is looked up and its CNAME followed when a rule allows it.

Address handling uses this machine's C library, exactly as ssh does; name
lookups go through the context's resolver seam (default: the system
resolver), so tests can use a fixed table and get exact answers without DNS.
"""
from __future__ import annotations

import inspect
import socket
from typing import Any, Callable, Dict, List, Optional, Tuple

from sshpipe.config._context import Context, ascii_lower, system_resolver
from sshpipe.config._patterns import PatternList
from sshpipe.config._values import BadValue, valid_domain
from sshpipe.errors import SSHConfigError

__all__ = ["canonical_host", "is_addr", "is_addr_fast", "resolve_addr"]

_FAMILY = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "any": socket.AF_UNSPEC}


def _bytes(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def is_addr_fast(name: str) -> bool:
    """ssh's ``is_addr_fast()``: can only be an address (has % or :, or digits and dots)."""
    return "%" in name or ":" in name or all(c in "0123456789." for c in name)


def _numeric(name: str, family: int) -> Optional[List[Tuple[Any, ...]]]:
    try:
        return socket.getaddrinfo(_bytes(name), "22", family, socket.SOCK_STREAM, 0,
                                  socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
    except (OSError, UnicodeError, ValueError):
        return None


def is_addr(name: str, family: int = socket.AF_UNSPEC) -> bool:
    """ssh's ``is_addr()``: one numeric address (inet_aton forms included)."""
    if is_addr_fast(name):
        return True
    res = _numeric(name, family)
    return res is not None and len(res) == 1


def resolve_addr(name: str, family: int = socket.AF_UNSPEC) -> Optional[str]:
    """ssh's ``resolve_addr()``: the canonical text of a numeric address, else None."""
    res = _numeric(name, family)
    if not res or len(res) != 1:
        return None
    try:
        addr, _ = socket.getnameinfo(res[0][4], socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
    except OSError:
        return None
    return addr


def _has_permitted_cnames(o: Dict[str, Any]) -> bool:
    rules = o.get("canonicalizepermittedcnames")
    if not rules:
        return False
    return not (len(rules) == 1 and str(rules[0]).lower() == "none:")


def _direct(o: Dict[str, Any], ctx: Context) -> bool:
    """Not through a ProxyCommand or ProxyJump (ssh canonicalises only then, unless "always")."""
    proxy = o.get("proxycommand")
    if proxy is not None and str(proxy).lower() != "none":
        return False
    jump = o.get("_jump")
    if jump is None:
        return True
    return ctx.version.jump_none_is_direct and jump[0].lower() == "none"


def _follow_cname(o: Dict[str, Any], direct: bool, name: str, cname: Optional[str],
                  canon: str) -> str:
    """ssh's ``check_follow_cname()``: the CNAME when a rule permits it, else ``name``."""
    if not cname or not _has_permitted_cnames(o) or name == cname:
        return name
    if canon == "false":
        return name
    if not direct and canon != "always":
        return name
    for rule in o["canonicalizepermittedcnames"]:
        src, _, dst = str(rule).partition(":")
        if PatternList(src, True).match(name) == 1 and PatternList(dst, True).match(cname) == 1:
            return cname
    return name


_FAMILY_NAME: Dict[int, str] = {int(socket.AF_INET): "inet", int(socket.AF_INET6): "inet6",
                                int(socket.AF_UNSPEC): "any"}


def _takes_family(resolver: Callable[..., Optional[str]]) -> bool:
    try:
        params = inspect.signature(resolver).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _lookup(ctx: Context, family: int) -> Callable[[str], Optional[str]]:
    """The resolver as ssh asks it: ``resolver(name)``, or ``resolver(name, family)``
    ("any", "inet", "inet6": AddressFamily) when it takes a second argument."""
    resolver: Callable[[str], Optional[str]] = ctx.resolver or system_resolver(family)
    if ctx.resolver is not None and _takes_family(ctx.resolver):
        fam = _FAMILY_NAME.get(int(family), "any")
        base: Callable[..., Optional[str]] = ctx.resolver
        resolver = lambda name: base(name, fam)  # noqa: E731

    def look(name: str) -> Optional[str]:
        cname = resolver(name)
        if cname:
            try:
                valid_domain(cname, lower=False)
            except BadValue:
                cname = ""      # ssh ignores a bad CNAME
        return cname
    return look


def canonical_host(o: Dict[str, Any], host: str, ctx: Context,
                   path: Optional[str]) -> Tuple[str, bool]:
    """The name after address canonicalisation, CanonicalDomains and CNAMEs.

    ``host`` is HostName (expanded) or the name as typed.  Returns the new
    name and whether an address was found for it.  Raises SSHConfigError
    where ssh exits ("Could not resolve host", "Could not resolve hostname").
    """
    family = _FAMILY.get(str(o.get("addressfamily", "any")), socket.AF_UNSPEC)
    canon = str(o.get("canonicalizehostname", "false"))
    was_addr = is_addr(host, family)
    if not was_addr:
        host = ascii_lower(host)
    look = _lookup(ctx, family)
    found = False
    if canon != "false" or was_addr:
        host, found = _resolve_canonicalize(o, host, ctx, look, family, canon, path)
    direct = _direct(o, ctx)
    if not found and _has_permitted_cnames(o) and (direct or canon == "always"):
        cname = look(host)
        if cname is None:
            if direct:
                raise SSHConfigError(f"Could not resolve hostname {host}: Name or service "
                                     "not known", path)
        else:
            host = _follow_cname(o, direct, host, cname, canon)
            found = True
    return host, found


def _resolve_canonicalize(o: Dict[str, Any], host: str, ctx: Context,
                          look: Callable[[str], Optional[str]], family: int, canon: str,
                          path: Optional[str]) -> Tuple[str, bool]:
    addr = resolve_addr(host, family)
    if addr is not None:
        if ascii_lower(addr) != ascii_lower(host):
            host = addr
        return host, True
    if is_addr_fast(host) or canon == "false":
        return host, False
    direct = _direct(o, ctx)
    if not direct and canon != "always":
        return host, False
    if host.endswith("."):
        cname = look(host)
        if cname is not None:
            return _follow_cname(o, direct, host[:-1], cname, canon), True
    else:
        maxdots = int(str(o.get("canonicalizemaxdots", "1")))
        if host.count(".") > maxdots:
            return host, False
        for domain in o.get("canonicaldomains") or ():
            if str(domain).lower() == "none":
                break
            full = f"{host}.{domain}."
            cname = look(full)
            if cname is None:
                continue
            return _follow_cname(o, direct, full[:-1], cname, canon), True
    if str(o.get("canonicalizefallbacklocal", "yes")) == "no":
        raise SSHConfigError(f'Could not resolve host "{host}"', path)
    return host, False
