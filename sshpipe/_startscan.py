"""The agent's stream up to its first frame, read the same way by both transports.

Before the agent speaks frames, the remote's stdout carries whatever the login
shell prints, then (zero-install) the sshpipe loader's status line, which is
answered with the bundle and the launch line, then more output and the SYNC
marker the agent writes before its first frame. :class:`StartScan` reads that
part, fed as it arrives, by the paramiko child (which reads the channel,
:mod:`sshpipe._child_paramiko`) and by the caller under OpenSSH (which reads
the master's writes into its event pipe, :mod:`sshpipe._stream`):

- what precedes a marker is the remote's output (STDOUT frames for the caller),
  bounded by MAX_PREAMBLE;
- a remote that sends our own first bytes back (``cat``, a shell echoing its
  input) is not an agent: HandshakeError at once, not after the ready timeout;
- the loader's status line is bounded (STATUS_LINE_MAX) and parsed by
  :func:`sshpipe.bootstrap.loader_status`; a remote Python that cannot load the
  code sent by value is a VersionSkewError.

It only parses and says what to send; the caller of :meth:`StartScan.feed`
writes it, on the channel or the request pipe.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from sshpipe import bootstrap, protocol
from sshpipe._child import check_code_compatible, local_python
from sshpipe.errors import HandshakeError, ProtocolError, VersionSkewError
from sshpipe.protocol import Frame, FrameKind

__all__ = ["StartScan", "frame_json"]

# How much of the head of what we sent is looked for in what comes back.
_PROBE = 64


def frame_json(host: str, kind: FrameKind, payload: Any) -> Any:
    """A HELLO, EXIT or DONE payload as JSON; ProtocolError naming the host if not."""
    try:
        return json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"{host}: {kind.name} payload is not valid JSON: {exc}") from None


def request_line(digest: str, zygote: Optional[Dict[str, Any]]) -> bytes:
    """The loader's first line: the bundle's hash, and for a warm start what a
    zygote started by this session is to do (``idle``, ``tie``; see
    :mod:`sshpipe._zygote`). The hash comes first: the warm-start client reads
    it without a JSON parser."""
    request: Dict[str, Any] = {"hash": digest}
    if zygote:
        request["zygote"] = zygote
    return json.dumps(request).encode() + b"\n"


class StartScan:
    """The loader stage and the SYNC scan of one session (see the module doc)."""

    LOADER, SYNC, SYNCED = range(3)

    def __init__(self, *, host: str, python: str, launch: Any, bundle: Any, start: bytes):
        self.host = host
        self.python = python
        self.launch = launch              # (mode, body, argv); None: not zero-install
        self.bundle = bundle
        self.start_frame = start
        self.state = self.LOADER if launch is not None else self.SYNC
        self.pending = b""                # LOADER: read, status line not complete yet
        self.sent_probes: List[bytes] = []  # heads of what we sent, to recognise an echo
        self.scanner = protocol.SyncScanner()
        self.zygote: Optional[Dict[str, Any]] = None  # warm-start options (the pipe's warm=)

    @property
    def at_loader(self) -> bool:
        """True until the loader's status line was read (zero-install only)."""
        return self.state == self.LOADER

    def begin(self) -> bytes:
        """The first bytes the remote reads: the loader's hash line, or START."""
        if self.launch is not None:
            first = request_line(self.bundle.digest, self.zygote)
        else:
            first = self.start_frame
        self.sent_probes.append(first[:_PROBE])
        return first

    def feed(self, data: bytes, out: List[Frame]) -> Tuple[List[bytes], Optional[bytes]]:
        """Scan ``data``; append the frames it makes for the caller (STDOUT,
        CONNECTED) to ``out``, even when it raises.

        Returns ``(send, rest)``: the pieces to write to the remote now (the
        answer to the loader: bundle if it lacks it, launch line, START), and,
        once the SYNC marker was found, the bytes that follow it (the first
        frames; None while the scan goes on).

        Raises:
            HandshakeError: too much output before a marker, our own request
                echoed back, a bad or too long loader status line.
            VersionSkewError: the remote cannot load what is sent to it.
        """
        send: List[bytes] = []
        if self.state == self.LOADER:
            data = self._loader(data, out, send)
            if self.state == self.LOADER:
                return send, None
        if self.state == self.SYNCED:
            return send, data
        try:
            found = self.scanner.feed(data)
        except HandshakeError as exc:
            raise HandshakeError(f"{self.host}: {exc}") from None
        if self.scanner.preamble:
            out.append(Frame(FrameKind.STDOUT, self.scanner.preamble, 0))
            self.scanner.preamble = b""
        if found is None:
            self.check_preamble(self.scanner.head)
            return send, None
        self.state = self.SYNCED
        return send, found

    def _loader(self, data: bytes, out: List[Frame], send: List[bytes]) -> bytes:
        """Scan for the loader's status line; once read, answer it and return what
        followed it."""
        self.pending += data
        pending = self.pending
        marker = bootstrap.LOADER_SYNC
        start = pending.find(marker)
        if start < 0:
            self.check_preamble(pending)
            return b""
        end = pending.find(b"\n", start)
        if end < 0:
            if len(pending) - start > bootstrap.STATUS_LINE_MAX:
                raise HandshakeError(f"{self.host}: the loader's status line is longer "
                                     f"than 64 KiB")
            return b""
        if start:
            out.append(Frame(FrameKind.STDOUT, pending[:start], 0))
        status = bootstrap.loader_status(self.host, pending[start + len(marker):end])
        rest = pending[end + 1:]
        self.pending = b""
        self.state = self.SYNC
        bundle = self.bundle
        remote_python = str(status.get("python", "?"))
        out.append(Frame(FrameKind.CONNECTED, json.dumps({
            "bundle_sent": bool(status.get("need")), "cache": status.get("cache"),
            "bundle_hash": bundle.digest, "start": status.get("start", "cold"),
            "warm": status.get("warm")}).encode(), 0))
        if status.get("error"):
            raise VersionSkewError(f"{self.host}: {status['error']}", self.host,
                                   local=local_python(), remote=remote_python)
        mode, body, argv = self.launch
        check_code_compatible(self.host, body, remote_python)
        if status.get("need"):
            send += [json.dumps({"size": bundle.size}).encode() + b"\n", bundle.data]
        send += [json.dumps({"mode": mode, "size": len(body), "argv": argv}).encode()
                 + b"\n", body, self.start_frame]
        self.sent_probes.append(self.start_frame[:_PROBE])
        self.launch = self.bundle = None  # sent; nothing keeps a copy
        return rest

    def check_preamble(self, output: bytes) -> None:
        """Fail fast on output that cannot lead to an agent: too much of it, or our
        own request coming back (``cat``, a shell echoing its input)."""
        host = self.host
        if len(output) > protocol.MAX_PREAMBLE:
            raise HandshakeError(f"{host}: no sshpipe agent answered: {len(output)} bytes of "
                                 f"other output (the bound is {protocol.MAX_PREAMBLE}); it "
                                 f"began with {output[:200]!r}")
        if any(probe in output for probe in self.sent_probes):
            raise HandshakeError(f"{host}: the remote program echoed sshpipe's request back: "
                                 f"it does not speak the sshpipe protocol (is the remote "
                                 f"command or python= right?); it printed {output[:200]!r}")
