"""sshpipe: Python agents on remote hosts over SSH, each one a local ``Process``.

Layering: ``errors``, ``protocol`` and ``agent`` are stdlib-only (the last two are
shipped to remote hosts); ``config`` and ``transport`` build the SSH connection;
``trust`` decides what a remote may make the caller unpickle;
``pipe``, ``handler`` and ``multipipe`` are the process-like API on top; ``logging``
gathers records from every process and host. This module only re-exports public
names, lazily, so that importing :mod:`sshpipe` costs nothing and runs nothing.
"""
from __future__ import annotations


from sshpipe._lazy import lazy_exports

__version__ = "1.0.0"

# public name -> submodule that defines it
_EXPORTS = {
    "AgentStartError": "errors",
    "AuthenticationError": "errors",
    "ConfigFileNotFoundError": "errors",
    "ConnectError": "errors",
    "ConnectTimeout": "errors",
    "FrameError": "errors",
    "HandshakeError": "errors",
    "HostKeyError": "errors",
    "LevelBasedFormatter": "mplog",
    "LoggerInfo": "mplog",
    "MemberLost": "errors",
    "MpLogger": "mplog",
    "MpLoggerState": "mplog",
    "MultiPipeState": "multipipe",
    "PayloadError": "errors",
    "PipeBroken": "errors",
    "PipeClosed": "errors",
    "PipeState": "pipe",
    "ProtocolError": "errors",
    "RemoteError": "errors",
    "RemoteTraceback": "errors",
    "ReplyDecodeError": "errors",
    "Response": "pipe",
    "SSHConfig": "config",
    "SSHConfigError": "errors",
    "SSHMultiPipe": "multipipe",
    "SSHPipe": "pipe",
    "SSHPipeClient": "handler",
    "SSHPipeError": "errors",
    "SSHPipeHandler": "handler",
    "StartError": "errors",
    "TimedSizedRotatingHandler": "mplog",
    "TrustPolicy": "trust",
    "UntrustedPayload": "errors",
    "VersionSkewError": "errors",
    "dump": "config",
    "dumps": "config",
    "load": "config",
    "loads": "config",
    "stop_zygotes": "_zygote",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
