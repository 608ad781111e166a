"""The password and group databases, as ssh consults them while reading a config.

ssh reads them for ``~`` and ``~user`` (Include paths, IdentityFile,
ControlPath ...), for ``%u``/``%d``/``%i``, and for Debian's rule on
group-writable files (``secure_permissions()``: a group-writable file is
accepted when its group has exactly one member, the file's owner).  Making
the databases a parameter lets :meth:`SSHConfig.resolve` answer for another
user or another machine, and lets the tests give both sides (sshpipe and the
real ``ssh -G`` in a namespace) the same entries.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

__all__ = ["Accounts", "SystemAccounts", "StaticAccounts", "Passwd", "secure_permissions"]


@dataclass(frozen=True)
class Passwd:
    """One password-database entry (the fields ssh uses)."""

    name: str
    uid: int
    gid: int
    home: str


class Accounts:
    """Lookups ssh makes in the password and group databases."""

    def by_name(self, name: str) -> Optional[Passwd]:
        raise NotImplementedError

    def by_uid(self, uid: int) -> Optional[Passwd]:
        raise NotImplementedError

    def entries(self) -> Iterable[Passwd]:
        """Every entry, as ``getpwent()`` walks them."""
        raise NotImplementedError

    def group_members(self, gid: int) -> Optional[List[str]]:
        """Supplementary members of group ``gid``; None when there is no such group."""
        raise NotImplementedError


class SystemAccounts(Accounts):
    """This machine's databases (``pwd`` and ``grp``), as ssh itself reads them."""

    def by_name(self, name: str) -> Optional[Passwd]:
        import pwd
        try:
            pw = pwd.getpwnam(name)
        except (KeyError, ValueError):    # ValueError: a NUL in the name
            return None
        return Passwd(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)

    def by_uid(self, uid: int) -> Optional[Passwd]:
        import pwd
        try:
            pw = pwd.getpwuid(uid)
        except KeyError:
            return None
        return Passwd(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)

    def entries(self) -> Iterable[Passwd]:
        import pwd
        return [Passwd(p.pw_name, p.pw_uid, p.pw_gid, p.pw_dir) for p in pwd.getpwall()]

    def group_members(self, gid: int) -> Optional[List[str]]:
        import grp
        try:
            return list(grp.getgrgid(gid).gr_mem)
        except KeyError:
            return None


class StaticAccounts(Accounts):
    """Fixed entries, e.g. read from ``/etc/passwd``- and ``/etc/group``-style text."""

    def __init__(self, users: Iterable[Passwd], groups: Optional[Dict[int, List[str]]] = None):
        self._users = list(users)
        self._groups = dict(groups or {})

    @classmethod
    def from_text(cls, passwd: str, group: str = "") -> "StaticAccounts":
        """Entries from ``name:x:uid:gid:gecos:home:shell`` and ``name:x:gid:members`` lines."""
        users = []
        for line in passwd.splitlines():
            f = line.split(":")
            if len(f) >= 6 and f[2].isdigit() and f[3].isdigit():
                users.append(Passwd(f[0], int(f[2]), int(f[3]), f[5]))
        groups: Dict[int, List[str]] = {}
        for line in group.splitlines():
            f = line.split(":")
            if len(f) >= 4 and f[2].isdigit():
                groups[int(f[2])] = [m for m in f[3].split(",") if m]
        return cls(users, groups)

    def by_name(self, name: str) -> Optional[Passwd]:
        return next((u for u in self._users if u.name == name), None)

    def by_uid(self, uid: int) -> Optional[Passwd]:
        return next((u for u in self._users if u.uid == uid), None)

    def entries(self) -> Iterable[Passwd]:
        return list(self._users)

    def group_members(self, gid: int) -> Optional[List[str]]:
        members = self._groups.get(gid)
        return None if members is None else list(members)


def secure_permissions(st: os.stat_result, uid: int, accounts: Accounts) -> bool:
    """Debian's ``secure_permissions()``: may ssh trust a config file with this stat?

    Owned by root or ``uid``; not world-writable; group-writable only when the
    group has exactly one member, the file's owner (a user-private group).
    """
    if st.st_uid != 0 and st.st_uid != uid:
        return False
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o002:
        return False
    if mode & 0o020:
        members = accounts.group_members(st.st_gid)
        if members is None:
            return False
        count = 0
        for pw in accounts.entries():
            if pw.gid == st.st_gid:
                count += 1
                if pw.uid != uid:
                    return False
        owner = accounts.by_uid(st.st_uid)
        if owner is None:
            return False
        if members:
            count += 1
            if members[0] != owner.name or len(members) > 1:
                return False
        if count == 0:
            return False
    return True
