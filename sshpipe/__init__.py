"""sshpipe: Python agents on remote hosts over SSH, each one a local ``Process``.

Layering: ``errors``, ``protocol`` and ``agent`` are stdlib-only (the last two are
shipped to remote hosts); ``config`` and ``transport`` build the SSH connection;
``pipe``, ``handler`` and ``multipipe`` are the process-like API on top; ``logging``
gathers records from every process and host. This module only re-exports public
names, lazily, so that importing :mod:`sshpipe` costs nothing and runs nothing.
"""
from __future__ import annotations


from sshpipe._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "AgentStartError": "errors",
    "AuthenticationError": "errors",
    "ConnectError": "errors",
    "ConnectTimeout": "errors",
    "FrameError": "errors",
    "HandshakeError": "errors",
    "HostKeyError": "errors",
    "LevelBasedFormatter": "logging",
    "MpLogger": "logging",
    "PipeBroken": "errors",
    "PipeClosed": "errors",
    "PipeState": "pipe",
    "ProtocolError": "errors",
    "RemoteError": "errors",
    "SSHConfig": "config",
    "SSHConfigError": "errors",
    "SSHMultiPipe": "multipipe",
    "SSHPipe": "pipe",
    "SSHPipeError": "errors",
    "SSHPipeHandler": "handler",
    "TimedSizedRotatingHandler": "logging",
    "VersionSkewError": "errors",
    "dump": "config",
    "dumps": "config",
    "load": "config",
    "loads": "config",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
