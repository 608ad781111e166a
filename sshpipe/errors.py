"""Every exception sshpipe raises, in one tree.

::

    SSHPipeError                           .host on every error (None when no host is involved)
    ├── SSHConfigError (also ValueError)   a config file OpenSSH would reject; .path, .line
    │   └── ConfigFileNotFoundError        a config file named explicitly does not exist
    │       (also FileNotFoundError)
    ├── ConnectError                       could not get a working SSH session to .host
    │   ├── HostKeyError                   unknown, changed or revoked host key (never
    │   │                                  silently accepted)
    │   ├── AuthenticationError            the server refused every credential offered
    │   └── ConnectTimeout (also TimeoutError)
    ├── ProtocolError                      the byte stream from the agent is not sshpipe's protocol
    │   ├── HandshakeError                 no valid hello, or incompatible versions
    │   └── FrameError                     a malformed or oversized frame; .frame_no
    ├── PayloadError = ReplyDecodeError    a message from the remote could not be loaded;
    │   │  (also pickle.UnpicklingError)   .what, .seq (.reply_no); the cause chained
    │   └── UntrustedPayload               the trust policy refused it (it would run code
    │                                      or build something not allowed); .refused
    ├── AgentStartError                    the remote command ended or failed before hello;
    │                                      .exitcode, .stderr
    ├── VersionSkewError                   the two ends' Pythons cannot share this code;
    │                                      .local, .remote
    ├── StartError                         some pipes of an SSHMultiPipe did not start;
    │                                      .failures, .total
    ├── PipeClosed                         you closed the pipe, then used it
    ├── PipeBroken                         the agent, channel or network failed; cause chained
    │   └── MemberLost                     a member of an SSHMultiPipe was lost; .name, .response
    └── RemoteError                        a failure reported back; .exitcode, remote
                                           traceback text as the __cause__

``workers`` adds ``HostLostError``, ``BrokenHostPool``, ``TaskTimeoutError`` and
``WorkerDiedError`` on top of this tree.

Messages always name the thing at fault: the host, the file and line, the frame
or message number, so that a log line alone is enough to find it.

Stdlib only: shipped to remote hosts, which raise and pickle these too. Every
error pickles the same way (:meth:`SSHPipeError.__reduce__`): its class, then its
attributes, ``args`` and ``__cause__`` restored without calling ``__init__``, so a
subclass may take whatever arguments it likes and still cross a process or host
boundary whole, the cause included (as text if the cause itself cannot pickle).
"""
from __future__ import annotations

import copyreg
import pickle
import traceback
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

# type.__flags__: set on classes made by a class statement (CPython's object.h).
_HEAPTYPE = 1 << 9
# The stdlib's helper that rebuilds an instance without calling __init__ (the
# one object.__reduce_ex__ uses below protocol 2); typeshed omits private names.
_RECONSTRUCTOR = copyreg._reconstructor  # type: ignore[attr-defined]

__all__ = [
    "AgentStartError",
    "AuthenticationError",
    "ConfigFileNotFoundError",
    "ConnectError",
    "ConnectTimeout",
    "FrameError",
    "HandshakeError",
    "HostKeyError",
    "MemberLost",
    "PayloadError",
    "PipeBroken",
    "PipeClosed",
    "ProtocolError",
    "RemoteError",
    "RemoteTraceback",
    "ReplyDecodeError",
    "SSHConfigError",
    "SSHPipeError",
    "StartError",
    "UntrustedPayload",
    "VersionSkewError",
]


class RemoteTraceback(Exception):
    """Holds a traceback (or an exception that could not travel) as text, so it
    shows up under the local one."""

    def __init__(self, tb: str):
        self.tb = tb
        super().__init__(tb)

    def __str__(self) -> str:
        return self.tb


def _portable_cause(cause: BaseException) -> BaseException:
    """``cause`` if it pickles, else its text: a cause that cannot travel must not
    stop the error it explains from travelling."""
    try:
        pickle.dumps(cause, pickle.HIGHEST_PROTOCOL)
        return cause
    except Exception:  # whatever its own __reduce__ raises
        text = "".join(traceback.format_exception_only(type(cause), cause)).strip()
        return RemoteTraceback(f"{type(cause).__module__}.{text}")


class SSHPipeError(Exception):
    """Base class of every error raised by sshpipe.

    Attributes:
        host: the host the error concerns, as the caller named it (None when no
            host is involved, e.g. a config file error).
    """

    host: Optional[str] = None

    def __init__(self, message: str = "", host: Optional[str] = None):
        super().__init__(message)
        if host is not None:  # else the class default, or what a subclass set first
            self.host = host

    def __reduce__(self) -> Tuple[Any, ...]:
        # Rebuilt by copyreg._reconstructor (the stdlib's own helper, which the
        # trust policy allows): the instance is made by the builtin exception base
        # that holds its layout, without calling __init__, then given back its
        # attributes, args and cause (BaseException.__setstate__). So no subclass
        # writes __reduce__, whatever its __init__ takes. The layout base, not
        # cls.__new__: for a class that is also an OSError (ConfigFileNotFoundError)
        # only OSError.__new__ is safe.
        cls = type(self)
        base: type = cls
        while base.__flags__ & _HEAPTYPE and base.__base__ is not None:  # object: not heap
            base = base.__base__
        state: Dict[str, Any] = dict(self.__dict__)
        state["args"] = self.args
        if self.__cause__ is not None:
            state["__cause__"] = _portable_cause(self.__cause__)
        return (_RECONSTRUCTOR, (cls, base, None), state)


class SSHConfigError(SSHPipeError, ValueError):
    """A problem in an OpenSSH client config, located by file and line.

    ``str()`` reads ``"<path>:<line>: <reason>"`` so editors and terminals can jump to
    it; ``path`` is ``None`` for text given to :func:`sshpipe.loads`.
    """

    def __init__(self, reason: str, path: Optional[str] = None, line: Optional[int] = None,
                 host: Optional[str] = None):
        where = path if path is not None else "<string>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {reason}", host)
        self.reason = reason
        self.path = path
        self.line = line


class ConfigFileNotFoundError(SSHConfigError, FileNotFoundError):
    """An explicitly named config file does not exist (``ssh -F`` refuses it too)."""


class ConnectError(SSHPipeError):
    """No working SSH session could be had to ``host``."""


class HostKeyError(ConnectError):
    """The server's host key is unknown, differs from the one on record, or is
    marked ``@revoked`` in known_hosts."""


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

    def __init__(self, message: str, frame_no: Optional[int] = None,
                 host: Optional[str] = None):
        super().__init__(f"frame {frame_no}: {message}" if frame_no is not None else message,
                         host)
        self.frame_no = frame_no
        self.reason = message


class PayloadError(SSHPipeError, pickle.UnpicklingError):
    """A message from the remote arrived whole but could not be loaded here: its
    class is missing, it is not a valid pickle, or building it raised.

    The messages after it are not affected. ``SSHPipe.recv()`` raises it (under
    its other name, :data:`ReplyDecodeError`) for a reply.

    Attributes:
        what: which message, in words ("reply 3", "the result of task 17 (fn)").
        seq: its number (the reply's rank on its pipe, counted from 1, or the task
            id), if known; ``reply_no`` is the same number.
    """

    def __init__(self, message: str, host: Optional[str] = None, *, what: str = "",
                 seq: Optional[int] = None):
        super().__init__(message, host)
        self.what = what
        self.seq = seq

    @property
    def reply_no(self) -> int:
        return self.seq or 0


# What SSHPipe.recv() raises for a reply that cannot be loaded: the same class, so
# ``except ReplyDecodeError`` also catches a reply the trust policy refused.
ReplyDecodeError = PayloadError


class UntrustedPayload(PayloadError):
    """The trust policy refused a message from the remote: loading it would have
    called something that is not plain data (a function, a class not allowed, a
    code object) or changed an existing class.

    Nothing of the message was run. ``refused`` names what was refused, as
    ``module.name`` for a global; allow it with ``trust_remote=[...]`` if the
    remote is trusted with it.
    """

    def __init__(self, message: str, host: Optional[str] = None, *, what: str = "",
                 seq: Optional[int] = None, refused: str = ""):
        super().__init__(message, host, what=what, seq=seq)
        self.refused = refused


class AgentStartError(SSHPipeError):
    """The remote command failed before the agent said hello.

    Carries what the remote left behind so the caller sees *why*: a missing
    interpreter, an ImportError, a shell error.
    """

    def __init__(self, message: str, host: Optional[str] = None,
                 exitcode: Optional[int] = None, stderr: str = ""):
        text = message
        if exitcode is not None:
            text += f" (exit status {exitcode})"
        if stderr.strip():
            text += "\nremote stderr:\n" + stderr.rstrip()
        super().__init__(text, host)
        self.message = message
        self.exitcode = exitcode
        self.stderr = stderr


class VersionSkewError(SSHPipeError):
    """The caller's and the remote's Python (or dill) versions cannot work together
    for this payload: code objects only load on the minor version that made them."""

    def __init__(self, message: str, host: Optional[str] = None, *,
                 local: str = "", remote: str = ""):
        super().__init__(message, host)
        self.local = local
        self.remote = remote


class StartError(SSHPipeError):
    """Some pipes of an SSHMultiPipe did not start (``start(raise_on_error=True)``).

    The pipes that did start keep running; ``close()`` ends them.

    Attributes:
        failures: ``{name: exception}`` for each pipe that did not start.
        total: how many pipes ``start()`` tried.
    """

    def __init__(self, failures: Mapping[str, BaseException], total: int):
        failures = dict(failures)
        # Each failure in full, indented: an AgentStartError's remote stderr is the why.
        lines = [f"  {name}: {type(error).__name__}: "
                 + str(error).strip().replace("\n", "\n    ")
                 for name, error in failures.items()]
        hosts = {getattr(error, "host", None) for error in failures.values()}
        super().__init__(f"{len(failures)} of {total} pipes did not start:\n"
                         + "\n".join(lines), hosts.pop() if len(hosts) == 1 else None)
        self.failures = failures
        self.total = total


class PipeClosed(SSHPipeError):
    """The pipe was closed by its own side and then used again."""


class PipeBroken(SSHPipeError):
    """The agent, the SSH channel or the network failed under a live pipe.

    ``unhandled`` holds the sequence numbers of the messages sent but never
    acknowledged as handled, when the raiser knows them (``response()``,
    ``close()``, ``flush()``); the failure itself is chained as ``__cause__``.
    """

    def __init__(self, message: str, unhandled: Sequence[int] = (),
                 host: Optional[str] = None):
        super().__init__(message, host)
        self.unhandled = tuple(unhandled)


class MemberLost(PipeBroken):
    """A member pipe ended before ``close()``: it broke, or its agent failed.

    ``SSHMultiPipe.recv()`` raises it once per lost pipe, after that pipe's last
    reply, and the other pipes go on. For a broken pipe the pipe's own error is
    the ``__cause__``.

    Attributes:
        name: the member's name in the SSHMultiPipe.
        host: its host.
        response: the agent's :class:`~sshpipe.pipe.Response` when it ended with a
            non-zero exit status; None when the pipe broke (the end is unknown).
    """

    def __init__(self, message: str, name: str, host: str, response: Any = None):
        super().__init__(message, host=host)
        self.name = name
        self.response = response


class RemoteError(SSHPipeError):
    """A failure on the remote side, reported back over the pipe.

    The remote traceback, as text, is attached as ``__cause__`` (a
    :class:`RemoteTraceback`) so that printing the error shows both stacks.
    ``seq`` is the number of the message whose handling raised, when known.
    """

    seq: Optional[int] = None

    def __init__(self, message: str, host: Optional[str] = None,
                 exitcode: Optional[int] = None, remote_traceback: str = ""):
        super().__init__(message, host)
        self.exitcode = exitcode
        self.remote_traceback = remote_traceback
        if remote_traceback:
            self.__cause__ = RemoteTraceback(remote_traceback)
