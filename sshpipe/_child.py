"""The SSHPipe child process: what it is given, and which transport runs it.

The child owns the SSH session whatever the transport (it is what ``terminate()``
and ``kill()`` reach, and its end ends the session). What it does in between
depends on the transport, one module each behind :func:`run_child`:

- ``paramiko`` (:mod:`sshpipe._child_paramiko`): the child holds a paramiko
  connection and relays the bytes of both pipes, running the loader stage, the
  sync scan, PINGs and silence detection itself;
- ``openssh`` (:mod:`sshpipe._child_openssh`): the child opens a session on
  this host's ssh master and hands the caller's pipe ends to it; no Python
  touches the bytes, and the caller (:mod:`sshpipe._stream`) does what the
  paramiko child does in the byte stream. The child reports on a control pipe.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from sshpipe import protocol, serial
from sshpipe.errors import PipeBroken, ProtocolError
from sshpipe.protocol import FrameKind
from sshpipe.serial import local_python

__all__ = ["ChildSpec", "check_code_compatible", "heartbeat_of", "local_python", "read_spec",
           "run_child", "start_frame"]

# Seconds between heartbeats when ServerAliveInterval is not set; a peer is taken
# for dead after ServerAliveCountMax heartbeats without a word.
DEFAULT_HEARTBEAT = 10.0


@dataclass(frozen=True)
class ChildSpec:
    """Everything the child needs, fixed by ``SSHPipe.start()``.

    It reaches the child as the first frame of the request pipe (a local SPEC
    frame), not inside the pickled Process: under spawn and forkserver the
    Process state is written to the new interpreter through a pipe that
    multiprocessing holds open at both ends while it writes, so a state larger
    than the pipe buffer (the bundle alone is ~100 KB) blocks ``start()`` for
    good when the child dies first (as it does when the main module lacks its
    ``if __name__ == "__main__":`` guard). A frame in our own pipe has no such
    limit, and the child that dies is seen as the end of the event pipe.

    With the OpenSSH transport the child reads exactly this frame and hands the
    rest of the pipe to the master, so the caller's loader lines and frames that
    follow it are read by the master, not by Python.
    """

    transport: str                # "paramiko" or "openssh"
    host: str
    name: str
    settings: Any                 # transport.ConnectSettings (paramiko)
    remote_line: str
    launch: Optional[Tuple[str, bytes, List[str]]]
    bundle: Any                   # bootstrap.Bundle or None (paramiko: the child sends it)
    python: str
    heartbeat: Optional[float]
    ready_timeout: float
    max_frame: int
    log_level: int
    term_message: str
    encoding: str
    reply_window: int
    reply_window_bytes: int
    target: Any = None            # _openssh.Target (openssh)
    owner: Optional[int] = None   # the caller's pid: the master ends with it (openssh)
    persist: Optional[float] = None   # the master's ControlPersist (openssh)
    connect_timeout: float = 30.0
    zygote: Optional[Dict[str, Any]] = None  # warm-start options (see _startscan.request_line)


def heartbeat_of(spec: ChildSpec) -> Tuple[float, float]:
    """``(heartbeat, dead_after)``: seconds between PINGs when idle, and the silence
    after which the peer is taken for dead (both transports, both directions)."""
    settings = spec.settings
    heartbeat = spec.heartbeat or settings.server_alive_interval or DEFAULT_HEARTBEAT
    return heartbeat, heartbeat * max(settings.server_alive_count_max, 1)


def start_frame(spec: ChildSpec, heartbeat: float, dead_after: float) -> bytes:
    """The START frame: the first frame the agent reads."""
    return protocol.encode_json(FrameKind.START, {
        "heartbeat": heartbeat, "heartbeat_timeout": dead_after,
        "term_messages": [spec.term_message], "max_frame": spec.max_frame,
        "log_level": spec.log_level, "host": spec.host, "pipe": spec.name,
        "reply_window": spec.reply_window, "reply_window_bytes": spec.reply_window_bytes,
    })


def read_spec(fd: int) -> ChildSpec:
    """Read the SPEC frame at the head of the request pipe, and not a byte more
    (what follows is the caller's stream, relayed or handed on as it is)."""
    header = _read_exact(fd, 5)
    kind, size = header[0], int.from_bytes(header[1:5], "big")
    if kind != FrameKind.SPEC:
        raise ProtocolError(f"the request pipe began with frame kind {kind}, not SPEC")
    spec = pickle.loads(_read_exact(fd, size))
    if not isinstance(spec, ChildSpec):
        raise ProtocolError(f"the SPEC frame held a {type(spec).__name__}, not a ChildSpec")
    return spec


def _read_exact(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("the caller closed the request pipe before the SPEC frame")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def run_child(spec: ChildSpec, requests: Any, events: Any, control: Any) -> int:
    """Run the child's part for ``spec.transport``; return the child's exit status
    (negative: the agent was killed by that signal)."""
    if spec.transport == "openssh":
        from sshpipe._child_openssh import OpenSSHChild

        return OpenSSHChild(spec, requests, events, control).run()
    from sshpipe._child_paramiko import ChildSession

    if control is not None:
        control.close()
    return ChildSession(spec, requests, events).run()


def report_broken(emit: Any, error: BaseException) -> int:
    """Tell the caller the pipe broke (a BROKEN frame carrying ``error``) through
    ``emit``, as far as the event channel still takes it; the child's exit status."""
    try:
        payload = pickle.dumps(error)
    except Exception:  # noqa: BLE001 - any error must still reach the caller, as text
        payload = pickle.dumps(PipeBroken(f"{type(error).__name__}: {error}"))
    try:
        emit(protocol.encode(FrameKind.BROKEN, payload))
    except OSError:
        pass
    return 255


def check_code_compatible(host: str, payload: bytes, remote_python: str) -> None:
    """Raise VersionSkewError if ``payload`` carries code the remote cannot load."""
    error = serial.code_skew((payload,), remote_python, host)
    if error is not None:
        raise error
