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

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    try:
        module_name = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'workers' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
