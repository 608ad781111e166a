"""Which transport a pipe uses: ``transport="auto" | "openssh" | "paramiko"``.

- ``openssh``: sessions on this host's own ssh client, one ControlMaster per
  target and caller process, the caller's pipes handed to it (no Python relay;
  see :mod:`sshpipe._child_openssh`). Needs an OpenSSH ``ssh`` with connection
  multiplexing (:data:`~sshpipe._openssh.MIN_OPENSSH`) on PATH.
- ``paramiko``: a paramiko connection per pipe, held by the pipe's child, which
  relays the bytes (:mod:`sshpipe._child_paramiko`); works with no ssh binary
  (Windows callers, minimal images).
- ``auto``: ``openssh`` when such an ``ssh`` is on PATH, else ``paramiko``.
  The probe (``ssh -V``) runs once per process. (The default is
  ``sshpipe.pipe.DEFAULT_TRANSPORT``.)
"""
from __future__ import annotations

__all__ = ["TRANSPORTS", "openssh_usable", "resolve_transport"]

TRANSPORTS = ("auto", "openssh", "paramiko")


def openssh_usable() -> bool:
    """True when ``ssh`` on PATH is an OpenSSH client with multiplexing."""
    from sshpipe._openssh import MIN_OPENSSH, openssh_version

    version = openssh_version()
    return version is not None and version >= MIN_OPENSSH


def resolve_transport(name: str) -> str:
    """``openssh`` or ``paramiko`` for a transport name (``auto`` decided here).

    Raises:
        ValueError: an unknown name, or ``openssh`` with no usable ``ssh``.
    """
    if name not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {name!r}")
    if name == "paramiko":
        return name
    if openssh_usable():
        return "openssh"
    if name == "openssh":
        raise ValueError("transport='openssh' needs an OpenSSH ssh client with connection "
                         "multiplexing (OpenSSH 6.7 or later) on PATH; none was found "
                         "(transport='paramiko' needs none)")
    return "paramiko"
