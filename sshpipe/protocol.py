"""The wire format between the SSHPipe child process and the remote agent.

Stdlib only: this module is shipped to remote hosts as source.

A *frame* is a 5-byte header (kind: 1 byte, payload length: 4 bytes big-endian)
followed by the payload. A length of ``0xFFFFFFFF`` is an escape: the real length
follows as 8 bytes, for payloads of 4 GiB and more. Every frame is checked against
a maximum size before its payload is read, so a corrupt length cannot make either
end allocate without bound.

Before its first frame the agent writes :data:`SYNC`. Whatever a login shell
prints before the agent starts (banners, rc-file echoes) comes first on the same
stream; the reader skips everything up to the marker instead of parsing it.

Conversation::

    caller child                                 agent
    START {settings}            ------------>
                                <------------    SYNC, HELLO {pid, host, versions}
    DATA seq+payload ...        ------------>    handler.handle()
                                <------------    REPLY payload / LOG / STDOUT / ERROR
                                <------------    ACK seq (all <= seq handled)
    PING (idle heartbeat)       <----------->    PING
    (stdin EOF, or DATA with a term message)
                                <------------    EXIT {exitcode, reason}

The same framing carries messages between the caller process and its SSHPipe
child over a multiprocessing connection; the kinds marked *local* never reach the
remote.
"""
from __future__ import annotations

import enum
import json
import os
import struct
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

from sshpipe.errors import FrameError, HandshakeError

# What the readers take: bytes, or a view into a read buffer (not copied).
BytesLike = Union[bytes, bytearray, memoryview]

__all__ = [
    "DEFAULT_MAX_FRAME",
    "Frame",
    "FrameKind",
    "FrameReader",
    "FrameTracker",
    "PIPE_BUFFER",
    "PROTOCOL_VERSION",
    "SYNC",
    "SyncScanner",
    "check_hello",
    "data_head",
    "decode_json",
    "encode",
    "encode_data",
    "encode_json",
    "encode_seq",
    "split_seq",
    "widen_pipe",
    "write_all",
]

# Bumped on any incompatible change; the handshake refuses a mismatch.
PROTOCOL_VERSION = 2

# Unlikely to be printed by a shell by accident; the version is part of it so an
# old agent's marker is not mistaken for a new one.
SYNC = b"\x00\x01sshpipe-sync-%d\x01\x00" % PROTOCOL_VERSION

# Largest payload accepted by default. Large enough for real data sets sent as one
# object, small enough that a corrupt header cannot exhaust memory.
DEFAULT_MAX_FRAME = 1 << 30

# How much a login shell may print before the agent's marker. Beyond this the
# stream is taken as not being sshpipe at all.
MAX_PREAMBLE = 1 << 20

_HEADER = struct.Struct(">BI")
_LONG_LENGTH = struct.Struct(">Q")
_SEQ = struct.Struct(">Q")
_DATA_HEAD = struct.Struct(">BIQ")
_ESCAPE = 0xFFFFFFFF


class FrameKind(enum.IntEnum):
    """Every kind of frame, with its direction (c = caller side, a = agent)."""

    START = 1     # c->a  JSON settings for the agent; first frame from the caller
    HELLO = 2     # a->c  JSON: protocol, pid, host, python and dill versions
    DATA = 3      # c->a  8-byte sequence number + serialized object
    ACK = 4       # a->c  8-byte sequence number: every message up to it is handled
    REPLY = 5     # a->c  serialized object from handler.reply()
    LOG = 6       # a->c  JSON log record
    STDOUT = 7    # a->c  bytes the handler wrote to stdout / fd 1
    ERROR = 8     # a->c  JSON: a handler error (seq, type, message, traceback)
    EXIT = 9      # a->c  JSON: exit status and reason, last frame from the agent
    PING = 10     # both  heartbeat when idle
    CREDIT = 11   # c->a  8-byte count: replies the caller has taken so far (reply window)
    END = 12      # c->a  the caller will send nothing more (close()); end of input
                  #       without END means the caller is gone
    # local kinds: between the caller process and its SSHPipe child only
    CONNECTED = 64   # child->caller  JSON: connection details
    STDERR = 65      # child->caller  bytes the remote wrote to stderr
    BROKEN = 66      # child->caller  pickled exception: the pipe failed
    DONE = 67        # child->caller  JSON: exit status; the channel is closed
    SPEC = 68        # caller->child  pickled ChildSpec, first frame of the request pipe


# Code -> kind without an enum call per frame (the hot path of every reader).
_KIND_BY_CODE = {int(kind): kind for kind in FrameKind}


class Frame(NamedTuple):
    kind: FrameKind
    payload: bytes
    number: int  # position in its stream, from 1, for error messages

    def __repr__(self) -> str:
        return f"<Frame #{self.number} {self.kind.name} {len(self.payload)} bytes>"


def encode(kind: int, payload: bytes = b"") -> bytes:
    """Header and payload as one bytes object (one write, no Nagle stall)."""
    size = len(payload)
    if size < _ESCAPE:
        return _HEADER.pack(kind, size) + payload
    return _HEADER.pack(kind, _ESCAPE) + _LONG_LENGTH.pack(size) + payload


def data_head(seq: int, payload_size: int) -> bytes:
    """The bytes of a DATA frame before its payload (header and sequence number),
    so a writer can send them and the payload without joining them."""
    size = payload_size + _SEQ.size
    if size < _ESCAPE:
        return _DATA_HEAD.pack(FrameKind.DATA, size, seq)
    return _HEADER.pack(FrameKind.DATA, _ESCAPE) + _LONG_LENGTH.pack(size) + _SEQ.pack(seq)


def encode_data(seq: int, payload: bytes) -> bytes:
    """A DATA frame: the sequence number goes before the serialized object."""
    return data_head(seq, len(payload)) + payload


def split_seq(payload: bytes) -> Tuple[int, memoryview]:
    """Inverse of the DATA/ACK payload layout: (sequence number, rest). The rest
    is a view, not a copy: a large message is unpickled straight from the frame."""
    return _SEQ.unpack_from(payload)[0], memoryview(payload)[_SEQ.size:]


def encode_seq(kind: int, seq: int) -> bytes:
    return encode(kind, _SEQ.pack(seq))


def encode_json(kind: int, value: Any) -> bytes:
    return encode(kind, json.dumps(value, separators=(",", ":")).encode("utf-8"))


def decode_json(frame: Frame) -> Any:
    try:
        return json.loads(frame.payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"{frame.kind.name} payload is not valid JSON: {exc}",
                         frame.number) from None


# Buffer asked for the OS pipes frames cross (Linux): a large message then passes
# in a few wake-ups instead of one per 64 KiB. 1 MiB is the default ceiling for
# unprivileged processes (fs.pipe-max-size).
PIPE_BUFFER = 1 << 20
# writev() takes at most IOV_MAX (1024 on Linux) pieces per call.
_MAX_PIECES = 512


def widen_pipe(fd: int, size: int = PIPE_BUFFER) -> None:
    """Ask for a ``size`` buffer on a pipe; anything else (a socket, another OS,
    a size over the system's limit) keeps its default."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError):
        pass


def write_all(fd: int, *parts: bytes) -> None:
    """Write all of ``parts``, in order, to a blocking fd with writev: pieces (a
    header and a large payload, a batch of frames) go out without being joined.

    Raises:
        OSError: the fd's reader is gone (EPIPE) or the write failed.
    """
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(fd, views[:_MAX_PIECES])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


class FrameReader:
    """Incremental frame parser: :meth:`feed` bytes, get whole frames back.

    Bytes may arrive split anywhere. The maximum frame size is checked as soon as a
    header is complete, before any payload is buffered.

    With ``direct`` set, a frame with at least that many payload bytes still to
    come gets a buffer of its own, of its announced size: :meth:`into` tells where
    its next bytes go, so that the owner reads them there straight from the fd
    (then :meth:`filled`) instead of through :meth:`feed`, which costs two copies
    of every byte (into the reader's buffer, out of it into the frame). Such a
    frame's payload is that ``bytearray``. Only frames up to ``direct_max`` bytes
    are read so: the buffer is taken whole at the header, and zeroing a large one
    holds the interpreter's lock (200 MiB: half a second here, long enough to
    miss a heartbeat), where the ordinary path grows as the bytes come. This is
    for a peer that is trusted to send what it announces (the agent's caller).
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, direct: Optional[int] = None,
                 direct_max: int = 16 << 20):
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._count = 0
        # A bad header found after good frames in the same input: those frames are
        # returned first, the error is raised by the next call.
        self._error: Optional[FrameError] = None
        self._direct = direct
        self._direct_max = direct_max
        self._big: Optional[bytearray] = None   # the large frame being read, if any
        self._big_have = 0
        self._big_head = b""
        self._big_kind = FrameKind.DATA

    def take_buffered(self) -> bytes:
        """Give up parsing: return the unparsed bytes (and forget any pending error),
        for a reader that knows the stream has ended and what follows is not frames."""
        rest = bytes(self._buffer)
        if self._big is not None:
            rest = self._big_head + bytes(self._big[:self._big_have]) + rest
            self._drop_big()
        self._buffer.clear()
        self._error = None
        return rest

    @property
    def buffered(self) -> int:
        if self._big is not None:
            return len(self._big_head) + self._big_have + len(self._buffer)
        return len(self._buffer)

    def into(self) -> Optional[memoryview]:
        """Where the next bytes of the large frame being read go (see the class
        docstring), or None when the next bytes go to :meth:`feed`."""
        if self._big is None:
            return None
        return memoryview(self._big)[self._big_have:]

    def filled(self, count: int) -> List[Frame]:
        """``count`` bytes were read into :meth:`into`'s view: the frame, once whole."""
        self._big_have += count
        big = self._big
        if big is None or self._big_have < len(big):
            return []
        self._count += 1
        # The payload stays a bytearray: bytes() of it would be the copy saved.
        frame = Frame(self._big_kind, big, self._count)  # type: ignore[arg-type]
        self._drop_big()
        return [frame]

    def _drop_big(self) -> None:
        self._big = None
        self._big_have = 0
        self._big_head = b""

    def _feed_big(self, data: Any) -> Tuple[List[Frame], Any]:
        """Feed's share of ``data`` for the large frame being read: the frame if it
        is now whole, and the bytes after it."""
        big = self._big
        assert big is not None
        with memoryview(data) as view:
            view = view.cast("B")
            take = min(len(view), len(big) - self._big_have)
            big[self._big_have:self._big_have + take] = view[:take]
            rest = bytes(view[take:])
        return self.filled(take), rest

    def _start_big(self) -> None:
        """After a scan: if the frame at the front is large and mostly still to
        come, move what is here of it into a buffer of its own."""
        buffer = self._buffer
        have = len(buffer)
        if self._error is not None or have < 5:
            return
        code, size = _HEADER.unpack_from(buffer, 0)
        header = 5
        if size == _ESCAPE:
            if have < 13:
                return
            size = _LONG_LENGTH.unpack_from(buffer, 5)[0]
            header = 13
        # The scan checked this header (kind, max_frame) before it stopped here.
        direct = self._direct or 0
        if size - (have - header) < direct or size > self._direct_max:
            return
        big = bytearray(size)
        with memoryview(buffer) as view:
            big[:have - header] = view[header:]
        self._big, self._big_have = big, have - header
        self._big_head = bytes(buffer[:header])
        self._big_kind = _KIND_BY_CODE[code]
        buffer.clear()

    @property
    def frames_seen(self) -> int:
        """Whole frames parsed so far (the next one is number frames_seen + 1)."""
        return self._count

    def feed(self, data: BytesLike) -> List[Frame]:
        """Add ``data``; return every frame now complete, in order."""
        first: List[Frame] = []
        if self._big is not None:
            first, data = self._feed_big(data)
            if self._big is not None or not data:
                return first
        buffer = self._buffer
        if buffer:
            buffer += data
            source: Any = buffer
        else:
            # Nothing held back: parse the input where it is, and keep only what
            # follows its last whole frame (one copy of each payload, not two).
            source = data
        try:
            spans, consumed = self._scan(source)
        except FrameError:
            if source is not buffer:
                buffer += data  # held, as if it had been buffered first
            raise
        # Through a view: slicing the bytearray itself would copy each payload twice.
        with memoryview(source) as view:
            frames = [Frame(kind, bytes(view[start:end]), number)
                      for kind, start, end, number in spans]
            if source is not buffer:
                buffer += view[consumed:]
        if consumed and source is buffer:
            del buffer[:consumed]
        if self._direct is not None and buffer:
            self._start_big()
        return first + frames if first else frames

    def cut(self, data: bytes) -> Tuple[bytes, List[Tuple[FrameKind, int, int]]]:
        """Add ``data``; return the bytes of every frame now complete, as one piece,
        with (kind, payload start, payload end) for each, offsets into that piece.

        For a relay that forwards whole frames without copying each one out.
        """
        buffer = self._buffer
        buffer += data
        spans, consumed = self._scan(buffer)
        if not consumed:
            return b"", []
        with memoryview(buffer) as view:
            piece = bytes(view[:consumed])
        del buffer[:consumed]
        return piece, [(kind, start, end) for kind, start, end, _ in spans]

    def _scan(self, buffer: Any) -> Tuple[List[Tuple[FrameKind, int, int, int]], int]:
        """Find the complete frames at the front of ``buffer``: their spans and how
        many bytes they take. Checks kinds and sizes as soon as a header is whole."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        spans: List[Tuple[FrameKind, int, int, int]] = []
        offset = 0
        end = len(buffer)
        kinds = _KIND_BY_CODE
        try:
            self._scan_into(buffer, spans, offset, end, kinds)
        except FrameError as exc:
            if not spans:
                raise
            self._error = exc
        return spans, (spans[-1][2] if spans else 0)

    def _scan_into(self, buffer: Any, spans: List[Tuple[FrameKind, int, int, int]],
                   offset: int, end: int, kinds: Dict[int, FrameKind]) -> None:
        while end - offset >= 5:
            code, size = _HEADER.unpack_from(buffer, offset)
            header = 5
            if size == _ESCAPE:
                if end - offset < 13:
                    break
                size = _LONG_LENGTH.unpack_from(buffer, offset + 5)[0]
                header = 13
            number = self._count + 1
            kind = kinds.get(code)
            if kind is None:
                raise FrameError(f"unknown frame kind {code}", number)
            if size > self.max_frame:
                raise FrameError(f"{kind.name} frame of {size} bytes exceeds the "
                                 f"{self.max_frame}-byte limit", number)
            if end - offset - header < size:
                break
            start = offset + header
            spans.append((kind, start, start + size, number))
            self._count = number
            offset = start + size


class FrameTracker:
    """Follows frame boundaries in a stream that is relayed as it comes.

    A relay forwards bytes without waiting for whole frames (no payload is copied
    or held); this only tells it whether the stream stands between two frames,
    the one place it may insert a frame of its own.
    """

    def __init__(self) -> None:
        self._remaining = 0        # payload bytes of the current frame still due
        self._head = bytearray()   # a header split across reads

    @property
    def at_boundary(self) -> bool:
        return not self._remaining and not self._head

    def advance(self, data: BytesLike) -> None:
        view = memoryview(data)
        position, end = 0, len(view)
        while position < end:
            if self._remaining:
                step = min(self._remaining, end - position)
                self._remaining -= step
                position += step
                continue
            take = min(13 - len(self._head), end - position)
            self._head += view[position:position + take]
            position += take
            if len(self._head) < 5:
                continue
            size = int.from_bytes(self._head[1:5], "big")
            header = 5
            if size == _ESCAPE:
                if len(self._head) < 13:
                    continue
                size = int.from_bytes(self._head[5:13], "big")
                header = 13
            # Bytes taken past the header belong to the payload.
            extra = len(self._head) - header
            self._head.clear()
            self._remaining = size - extra
            if self._remaining < 0:  # past this frame: re-read the surplus
                position += self._remaining
                self._remaining = 0


class SyncScanner:
    """Skips what precedes :data:`SYNC` on the agent's stdout.

    :meth:`feed` returns None until the marker has been seen, then the bytes after
    it (to be given to a :class:`FrameReader`), and from then on its input as is.
    ``preamble`` keeps what was skipped, so it can be shown as the remote's output.
    """

    def __init__(self, limit: int = MAX_PREAMBLE):
        self.limit = limit
        self.preamble = b""   # skipped bytes not yet taken by the reader
        self.skipped = 0      # every byte skipped so far: what the limit bounds
        self.head = b""       # the first bytes skipped, to show in an error
        self.synced = False
        self._pending = b""

    def feed(self, data: bytes) -> Optional[bytes]:
        if self.synced:
            return data
        pending = self._pending + data
        index = pending.find(SYNC)
        if index >= 0:
            self._skip(pending[:index])
            self._pending = b""
            self.synced = True
            return pending[index + len(SYNC):]
        # Keep a tail that could be the start of a split marker.
        keep = len(SYNC) - 1
        skipped = pending[:-keep] if len(pending) > keep else b""
        self._pending = pending[-keep:] if len(pending) > keep else pending
        self._skip(skipped)
        return None

    def _skip(self, data: bytes) -> None:
        self.preamble += data
        self.skipped += len(data)
        if len(self.head) < 200:
            self.head += data[:200 - len(self.head)]
        if self.skipped > self.limit:
            raise HandshakeError(
                f"no sshpipe agent answered: {self.skipped} bytes of other output "
                f"(the bound is {self.limit}) and no sync marker; output began with "
                f"{self.head!r}")


def check_hello(info: Dict[str, Any]) -> None:
    """Raise HandshakeError unless ``info`` is a hello this side can work with."""
    version = info.get("protocol")
    if version != PROTOCOL_VERSION:
        raise HandshakeError(
            f"agent speaks sshpipe protocol {version!r}, this side speaks {PROTOCOL_VERSION}")
