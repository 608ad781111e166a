"""workers: remote tasks and a futures executor over many SSH hosts.

Layering: ``task``, ``agent``, ``_worker`` and ``errors`` are stdlib-only and are
shipped to remote hosts (``modules=["workers"]``), where ``agent`` runs inside an
sshpipe agent and ``_worker`` in its worker processes; ``_scheduler`` is pure
logic; ``executor`` (with ``_hosts``, ``_future``, ``_progress``) builds on
:class:`sshpipe.SSHPipe`.
This module only re-exports public names, lazily, so that a remote worker that
imports ``workers.agent`` never imports paramiko.
"""
from __future__ import annotations

from sshpipe._lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS = {
    "BrokenHostPool": "errors",
    "HostLostError": "errors",
    "HostState": "_hosts",
    "SSHExecutor": "executor",
    "Task": "task",
    "TaskFuture": "_future",
    "TaskTimeoutError": "errors",
    "WorkerAgent": "agent",
    "WorkerDiedError": "errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
