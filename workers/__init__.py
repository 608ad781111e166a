"""workers: remote tasks and a futures executor over many SSH hosts.

Layering:

- remote side, stdlib-only, shipped to the hosts (``modules=["workers"]``):
  ``worker_agent`` (the sshpipe handler), ``_pool`` (its worker processes),
  ``_worker`` (one worker process), ``_link`` (the framed socket between them),
  ``task`` (a call, serialized once);
- caller side: ``executor`` (the Executor API and the scheduling policy),
  ``_hostlink`` (one host's pipe and threads), ``_scheduler`` (pure logic:
  slots and queues), ``_future``, ``_hosts``, ``_progress``, ``errors``.

This module only re-exports public names, lazily, so that a remote worker that
imports ``workers.worker_agent`` never imports paramiko.
"""
from __future__ import annotations

from sshpipe._lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS = {
    "BrokenHostPool": "errors",
    "HostLostError": "errors",
    "HostState": "_hostlink",
    "ResultLoadError": "errors",
    "SSHExecutor": "executor",
    "Task": "task",
    "TaskFuture": "_future",
    "TaskLoadError": "errors",
    "TaskTimeoutError": "errors",
    "WorkerAgent": "worker_agent",
    "WorkerDiedError": "errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
