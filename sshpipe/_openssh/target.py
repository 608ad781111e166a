"""Where a master connects, said the way ssh's command line says it.

A :class:`Target` is what the caller asked for (an alias or host name, and the
overrides ``-l``, ``-p``, ``-J``, ``-F``), not what the config resolves it to:
ssh itself resolves it when the master starts, so Match exec, certificates,
ProxyCommand and the rest behave exactly as in the user's own ``ssh``. The same
request always finds the same master. Two spellings of one host (an alias and its
address) get a master each; resolving on every lookup would cost an ``ssh -G``
(about 10 ms) on the path of every session, which a later pipe cannot afford.

A master also belongs to an *owner*, the caller process it ends with (see
:mod:`sshpipe._openssh.master`), so the key hashes the owner's identity too.
"""
from __future__ import annotations

import hashlib
import json
import os
import pwd
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from sshpipe._openssh._procs import ProcessId

__all__ = ["Target", "config_for_ssh", "master_key"]

# Characters ssh would read as something else on its command line or in a
# ControlPath, or that have no place in a host or user name.
_FORBIDDEN = set(" \t\r\n\0'\"\\`$;&|<>")


def _check_word(kind: str, value: str) -> None:
    if not value:
        raise ValueError(f"{kind} must not be empty")
    if value.startswith("-"):
        raise ValueError(f"{kind} {value!r} starts with '-' (ssh would read an option)")
    bad = sorted(set(value) & _FORBIDDEN)
    if bad or any(ord(ch) < 32 for ch in value):
        raise ValueError(f"{kind} {value!r} holds characters not allowed in it: {bad}")


@dataclass(frozen=True)
class Target:
    """An SSH destination as ``ssh [-F config] [-l user] [-p port] [-J jump] host``.

    Attributes:
        host: an alias of the ssh config, a host name or an address.
        user, port, jump: overrides; None leaves them to the config.
        config: the ssh config file (``-F``); None means ssh's own defaults
            (``~/.ssh/config`` and ``/etc/ssh/ssh_config``). Made absolute.
    """

    host: str
    user: Optional[str] = None
    port: Optional[int] = None
    jump: Optional[str] = None
    config: Optional[str] = None

    def __post_init__(self) -> None:
        _check_word("host", self.host)
        if self.user is not None:
            _check_word("user", self.user)
        if self.jump is not None:
            for hop in self.jump.split(","):
                _check_word("jump host", hop)
        if self.port is not None:
            if isinstance(self.port, bool) or not 0 < int(self.port) < 65536:
                raise ValueError(f"port {self.port!r} is not a TCP port")
            object.__setattr__(self, "port", int(self.port))
        if self.config is not None:
            object.__setattr__(self, "config",
                               os.path.abspath(os.path.expanduser(os.fspath(self.config))))

    def options(self) -> List[str]:
        """The ssh options that select this target (everything but the host)."""
        args: List[str] = []
        if self.config is not None:
            args += ["-F", self.config]
        if self.user is not None:
            args += ["-l", self.user]
        if self.port is not None:
            args += ["-p", str(self.port)]
        if self.jump is not None:
            args += ["-J", self.jump]
        return args

    def describe(self) -> str:
        """``user@host:port via jump`` with only the parts given."""
        text = (f"{self.user}@" if self.user else "") + self.host
        if self.port is not None:
            text += f":{self.port}"
        if self.jump:
            text += f" via {self.jump}"
        return text

    def to_json(self) -> Dict[str, Any]:
        return {"host": self.host, "user": self.user, "port": self.port, "jump": self.jump,
                "config": self.config}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Target":
        return cls(data["host"], user=data.get("user"), port=data.get("port"),
                   jump=data.get("jump"), config=data.get("config"))


def config_for_ssh(config: Optional[str]) -> Optional[str]:
    """The ``-F`` file for a master that reads the config sshpipe resolved.

    Without ``config=`` sshpipe reads ``~/.ssh/config`` with ``~`` from ``$HOME``
    (as Python's expanduser does), while ssh takes the home directory from the
    passwd entry and ignores ``$HOME``. Where the two differ (HOME pointed
    elsewhere, as test harnesses and some batch systems do) the master is given
    sshpipe's file (``/dev/null`` if there is none): ssh then skips
    ``/etc/ssh/ssh_config`` as well, which sshpipe's resolution does not read
    either. Elsewhere None: ssh's own defaults.
    """
    if config is not None:
        return config
    home = os.environ.get("HOME")
    try:
        own = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        own = None
    if not home or (own and os.path.realpath(home) == os.path.realpath(own)):
        return None
    path = os.path.join(home, ".ssh", "config")
    return path if os.path.exists(path) else os.devnull


def master_key(target: Target, owner: Optional[ProcessId], slot: int = 0) -> str:
    """The name of ``target``'s master for ``owner`` (None: a shared master):
    16 hex digits of a SHA-256, short enough for a socket path. ``slot`` numbers
    the extra masters opened when sshd's MaxSessions fills one connection."""
    data = json.dumps([1, target.to_json(),
                       None if owner is None else [owner.pid, owner.start], slot],
                      sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]
