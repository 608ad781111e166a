"""Who is asking, and from where: the local facts a resolution reads.

OpenSSH takes them from the password database, ``gethostname()``, the
environment, the resolver and the network interfaces.  Passing them
explicitly makes results reproducible (tests, answering for another user or
machine); whatever the caller leaves out comes from this process, as ssh
takes it.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

from sshpipe.config._accounts import Accounts, SystemAccounts
from sshpipe.config._versions import OpenSSH, get_version

__all__ = ["Context", "local_context", "Resolver", "system_resolver", "ascii_lower"]

#: A name-lookup seam: ``resolver(name)`` returns None when ``name`` does not
#: resolve, else its canonical name ("" when the resolver gives none).  ssh
#: calls ``getaddrinfo(AI_CANONNAME)``; tests pass a fixed table.
Resolver = Callable[[str], Optional[str]]


def system_resolver(family: int = socket.AF_UNSPEC) -> Resolver:
    """The system resolver, as ssh's ``resolve_host()`` asks it."""
    def lookup(name: str) -> Optional[str]:
        try:
            info = socket.getaddrinfo(name.encode("utf-8", "surrogateescape"), "22", family,
                                      socket.SOCK_STREAM, 0, socket.AI_CANONNAME)
        except (OSError, UnicodeError):
            return None
        if not info:
            return None
        return info[0][3] or ""
    return lookup


def ascii_lower(s: str) -> str:
    """C ``tolower()`` byte by byte: only A-Z change (what ssh's ``lowercase()`` does)."""
    if s.isascii():
        return s.lower()
    return s.encode("utf-8", "surrogateescape").lower().decode("utf-8", "surrogateescape")


#: Seconds a ``Match exec`` command may run before it is killed.
EXEC_TIMEOUT = 30.0


@dataclass
class Context:
    """The local side of one resolution."""

    local_user: str
    home: str
    uid: int
    local_hostname: str
    environ: Mapping[str, str]
    accounts: Accounts = field(default_factory=SystemAccounts)
    version: OpenSSH = field(default_factory=get_version)
    allow_exec: bool = False
    local_addresses: Optional[Sequence[str]] = None
    resolver: Optional[Resolver] = None
    command: Optional[str] = None       # the remote command given to ssh (Match command)
    tag: Optional[str] = None           # ssh -P TAG
    exec_timeout: float = EXEC_TIMEOUT  # seconds a Match exec command may run


def local_context(local_user: Optional[str] = None, home: Optional[str] = None,
                  local_hostname: Optional[str] = None,
                  environ: Optional[Mapping[str, str]] = None, *,
                  accounts: Optional[Accounts] = None, openssh: object = "auto",
                  uid: Optional[int] = None) -> Context:
    """Fill what the caller left out from the running process, as ssh does."""
    if accounts is None:
        accounts = SystemAccounts()
    if uid is None:
        uid = os.getuid()
    if local_user is None or home is None:
        pw = accounts.by_uid(uid)
        if pw is not None:
            local_user = local_user if local_user is not None else pw.name
            home = home if home is not None else pw.home
        else:
            local_user = local_user if local_user is not None else str(uid)
            home = home if home is not None else os.path.expanduser("~")
    if local_hostname is None:
        local_hostname = socket.gethostname()
    return Context(local_user, home, uid, local_hostname,
                   os.environ if environ is None else environ, accounts,
                   get_version(openssh))
