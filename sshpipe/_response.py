"""What a pipe reports at its end: :class:`Response`, built from a :class:`Transcript`.

The remote's stdout and stderr and the errors its handler raised arrive as
events over the pipe's whole life. The transcript keeps them within stated
bounds (``output_limit`` bytes per stream, :data:`ERRORS_KEPT` errors) and
counts what it did not keep, so nothing is dropped without a number in
``Response.dropped``; every line and error still reaches the pipe's logger
(:mod:`sshpipe._dispatch`), only what ``response()`` holds in memory is bounded.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from sshpipe.errors import RemoteError

__all__ = ["ERRORS_KEPT", "OUTPUT_LIMIT", "Response", "Transcript"]

# Bytes of the remote's stdout and stderr kept for response(), each; the rest is
# counted in Response.dropped (every line still reaches the pipe's logger).
OUTPUT_LIMIT = 16 << 20
# Remote errors kept for Response.errors; the rest are counted (and logged).
ERRORS_KEPT = 1000


# The builtin generic: Response's bases stay (tuple, object), as the seed's were
# (typing.Tuple would add typing.Generic).
class Response(tuple[Optional[int], str, str]):
    """``(exitcode, stdout, stderr)``, as the seed returned, plus the accounting.

    Attributes:
        exitcode: the agent's exit status (see :mod:`sshpipe.handler`).
        stdout: what the handler printed, decoded with the pipe's encoding.
        stderr: what the remote wrote to stderr.
        unhandled: sequence numbers of messages sent but never handled.
        errors: :class:`~sshpipe.errors.RemoteError` for each message whose
            handling raised (tolerated or not), in order.
        reason: why the agent ended, in words.
        dropped: what was not kept, by stream: bytes of ``stdout``/``stderr``
            past the pipe's ``output_limit`` and ``errors`` past 1000 (all of it
            still went to the pipe's logger).
    """

    unhandled: Tuple[int, ...]
    errors: Tuple[RemoteError, ...]
    reason: str
    dropped: Dict[str, int]

    def __new__(cls, exitcode: Optional[int], stdout: str, stderr: str, *,
                unhandled: Sequence[int] = (), errors: Sequence[RemoteError] = (),
                reason: str = "", dropped: Optional[Dict[str, int]] = None) -> "Response":
        self = super().__new__(cls, (exitcode, stdout, stderr))
        self.unhandled = tuple(unhandled)
        self.errors = tuple(errors)
        self.reason = reason
        self.dropped = dict(dropped or {})
        return self

    @property
    def exitcode(self) -> Optional[int]:
        return self[0]

    @property
    def stdout(self) -> str:
        return self[1]

    @property
    def stderr(self) -> str:
        return self[2]

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_make_response, (tuple(self), self.unhandled, self.errors, self.reason,
                                 self.dropped))

    def __repr__(self) -> str:
        extra = f", unhandled={list(self.unhandled)}" if self.unhandled else ""
        if self.errors:
            extra += f", errors={len(self.errors)}"
        return f"Response(exitcode={self[0]!r}, stdout={self[1]!r}, stderr={self[2]!r}{extra})"


def _make_response(values: Tuple[Optional[int], str, str], unhandled: Sequence[int],
                   errors: Sequence[RemoteError], reason: str,
                   dropped: Optional[Dict[str, int]] = None) -> Response:
    return Response(*values, unhandled=unhandled, errors=errors, reason=reason,
                    dropped=dropped)


class Transcript:
    """One pipe's remote stdout, stderr and errors, kept for its :class:`Response`.

    Written only by whichever caller thread reads the pipe's events; ``errors``
    and ``dropped`` are changed and read under the pipe's condition (the
    methods do not lock: their callers hold it where it matters).
    """

    def __init__(self, host: str, encoding: str, output_limit: int):
        self.host = host
        self.encoding = encoding
        self.output_limit = output_limit
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.errors: List[RemoteError] = []
        self.dropped: Dict[str, int] = {}

    def decode(self, data: Union[bytes, bytearray]) -> str:
        return bytes(data).decode(self.encoding, errors="replace")

    def keep_output(self, stream: str, data: bytes) -> None:
        """Keep up to ``output_limit`` bytes of ``stream`` ("stdout" or "stderr");
        count the rest."""
        kept = self.stdout if stream == "stdout" else self.stderr
        room = self.output_limit - len(kept)
        if room > 0:
            kept += data[:room]
        if len(data) > room:
            self.dropped[stream] = self.dropped.get(stream, 0) + len(data) - max(room, 0)

    def remote_error(self, info: Dict[str, Any]) -> RemoteError:
        """The error an ERROR event describes (its fields, as the agent sent them)."""
        seq = info.get("seq")
        error = RemoteError(f"{self.host}: message {seq}: {info.get('where')} raised "
                            f"{info.get('type')}: {info.get('message')}", self.host,
                            remote_traceback=info.get("traceback", ""))
        error.seq = seq
        return error

    def keep_error(self, error: RemoteError) -> None:
        """Keep ``error`` for Response.errors, or count it past ERRORS_KEPT."""
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(error)
        else:
            self.dropped["errors"] = self.dropped.get("errors", 0) + 1

    def response(self, done: Optional[Dict[str, Any]], unhandled: Sequence[int]) -> Response:
        """The Response for the end ``done`` (the DONE fields, or None: not known)."""
        done = done or {}
        return Response(done.get("exitcode"), self.decode(self.stdout),
                        self.decode(self.stderr), unhandled=unhandled, errors=self.errors,
                        reason=done.get("reason", ""), dropped=self.dropped)
