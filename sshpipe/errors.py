"""Every exception sshpipe raises, in one tree.

::

    SSHPipeError
    ├── SSHConfigError (also ValueError)   a config file OpenSSH would reject; .path, .line
    ├── ConnectError                       could not get a working SSH session to .host
    │   ├── HostKeyError                   unknown or changed host key (never silently accepted)
    │   ├── AuthenticationError            the server refused every credential offered
    │   └── ConnectTimeout (also TimeoutError)
    ├── ProtocolError                      the byte stream from the agent is not sshpipe's protocol
    │   ├── HandshakeError                 no valid hello, or incompatible versions
    │   └── FrameError                     a malformed or oversized frame; .frame_no
    ├── AgentStartError                    the remote command ended or failed before hello;
    │                                      .host, .exitcode, .stderr
    ├── VersionSkewError                   the two ends' Pythons cannot share this code;
    │                                      .host, .local, .remote
    ├── PipeClosed                         you closed the pipe, then used it
    ├── PipeBroken                         the agent, channel or network failed; cause chained
    └── RemoteError                        a remote failure reported back; .host, .exitcode,
                                           remote traceback text as the __cause__

``workers`` adds ``HostLostError`` and ``BrokenHostPool`` on top of this tree.

Messages always name the thing at fault: the host, the file and line, or the frame
number, so that a log line alone is enough to find it.
"""
from __future__ import annotations

from typing import Optional, Sequence

__all__ = [
    "AgentStartError",
    "AuthenticationError",
    "ConnectError",
    "ConnectTimeout",
    "FrameError",
    "HandshakeError",
    "HostKeyError",
    "PipeBroken",
    "PipeClosed",
    "ProtocolError",
    "RemoteError",
    "RemoteTraceback",
    "SSHConfigError",
    "SSHPipeError",
    "VersionSkewError",
]


class SSHPipeError(Exception):
    """Base class of every error raised by sshpipe."""


class SSHConfigError(SSHPipeError, ValueError):
    """A problem in an OpenSSH client config, located by file and line.

    ``str()`` reads ``"<path>:<line>: <reason>"`` so editors and terminals can jump to
    it; ``path`` is ``None`` for text given to :func:`sshpipe.loads`.
    """

    def __init__(self, reason: str, path: Optional[str] = None, line: Optional[int] = None):
        self.reason = reason
        self.path = path
        self.line = line
        where = path if path is not None else "<string>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        return (type(self), (self.reason, self.path, self.line))


class ConnectError(SSHPipeError):
    """No working SSH session could be had to ``host``."""

    def __init__(self, message: str, host: Optional[str] = None):
        self.host = host
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.args[0], self.host))


class HostKeyError(ConnectError):
    """The server's host key is unknown or differs from the one on record."""


class AuthenticationError(ConnectError):
    """The server refused every key or password offered."""


class ConnectTimeout(ConnectError, TimeoutError):
    """The TCP connection or SSH handshake did not finish in ConnectTimeout."""


class ProtocolError(SSHPipeError):
    """What came back from the agent is not sshpipe's frame protocol."""


class HandshakeError(ProtocolError):
    """No valid hello from the agent, or the two ends cannot work together."""


class FrameError(ProtocolError):
    """A malformed, unknown or oversized frame; ``frame_no`` counts from 1."""

    def __init__(self, message: str, frame_no: Optional[int] = None):
        self.frame_no = frame_no
        self.reason = message
        if frame_no is not None:
            message = f"frame {frame_no}: {message}"
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.reason, self.frame_no))


class AgentStartError(SSHPipeError):
    """The remote command failed before the agent said hello.

    Carries what the remote left behind so the caller sees *why*: a missing
    interpreter, an ImportError, a shell error.
    """

    def __init__(self, message: str, host: Optional[str] = None,
                 exitcode: Optional[int] = None, stderr: str = ""):
        self.host = host
        self.exitcode = exitcode
        self.stderr = stderr
        text = message
        if exitcode is not None:
            text += f" (exit status {exitcode})"
        if stderr.strip():
            text += "\nremote stderr:\n" + stderr.rstrip()
        super().__init__(text)
        self.message = message

    def __reduce__(self):
        return (type(self), (self.message, self.host, self.exitcode, self.stderr))


class VersionSkewError(SSHPipeError):
    """The caller's and the remote's Python (or dill) versions cannot work together
    for this payload: code objects only load on the minor version that made them."""

    def __init__(self, message: str, host: Optional[str] = None, *,
                 local: str = "", remote: str = ""):
        self.host = host
        self.local = local
        self.remote = remote
        super().__init__(message)

    def __reduce__(self):
        return (_rebuild_version_skew, (self.args[0], self.host, self.local, self.remote))


def _rebuild_version_skew(message: str, host: Optional[str], local: str,
                          remote: str) -> VersionSkewError:
    return VersionSkewError(message, host, local=local, remote=remote)


class PipeClosed(SSHPipeError):
    """The pipe was closed by its own side and then used again."""


class PipeBroken(SSHPipeError):
    """The agent, the SSH channel or the network failed under a live pipe.

    ``unhandled`` holds the sequence numbers of the messages sent but never
    acknowledged as handled, when the raiser knows them (``response()``,
    ``close()``, ``flush()``); the failure itself is chained as ``__cause__``.
    """

    def __init__(self, message: str, unhandled: Sequence[int] = ()):
        self.unhandled = tuple(unhandled)
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.args[0], self.unhandled))


class RemoteTraceback(Exception):
    """Holds a remote traceback as text, so it shows up under the local one."""

    def __init__(self, tb: str):
        self.tb = tb
        super().__init__(tb)

    def __str__(self) -> str:
        return self.tb


class RemoteError(SSHPipeError):
    """A failure on the remote side, reported back over the pipe.

    The remote traceback, as text, is attached as ``__cause__`` (a
    :class:`RemoteTraceback`) so that printing the error shows both stacks.
    """

    def __init__(self, message: str, host: Optional[str] = None,
                 exitcode: Optional[int] = None, remote_traceback: str = ""):
        self.host = host
        self.exitcode = exitcode
        self.remote_traceback = remote_traceback
        super().__init__(message)
        if remote_traceback:
            self.__cause__ = RemoteTraceback(remote_traceback)

    def __reduce__(self):
        return (type(self), (self.args[0], self.host, self.exitcode, self.remote_traceback))
