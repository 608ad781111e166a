"""Frame protocol: framing, limits, sync marker; the agent over plain pipes."""
from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sshpipe import protocol
from sshpipe.errors import FrameError, HandshakeError
from sshpipe.protocol import SYNC, FrameKind, FrameReader, SyncScanner

KINDS = st.sampled_from(list(FrameKind))


def test_frames_round_trip_with_number():
    """Encoded frames come back with kind, payload and their position in the stream."""
    data = protocol.encode(FrameKind.REPLY, b"abc") + protocol.encode_data(7, b"xyz")
    frames = FrameReader().feed(data)
    assert [(f.kind, f.payload, f.number) for f in frames] == [
        (FrameKind.REPLY, b"abc", 1), (FrameKind.DATA, struct.pack(">Q", 7) + b"xyz", 2)]
    assert protocol.split_seq(frames[1].payload) == (7, b"xyz")


def test_escaped_long_length_is_understood():
    """The 0xFFFFFFFF escape with an 8-byte length parses (large-message path)."""
    data = struct.pack(">BI", FrameKind.REPLY, 0xFFFFFFFF) + struct.pack(">Q", 3) + b"big"
    (frame,) = FrameReader().feed(data)
    assert frame.payload == b"big"


def test_oversized_frame_is_refused_before_its_payload():
    """A header announcing more than max_frame raises FrameError naming the frame number."""
    reader = FrameReader(max_frame=1000)
    reader.feed(protocol.encode(FrameKind.PING))
    with pytest.raises(FrameError) as info:
        reader.feed(struct.pack(">BI", FrameKind.DATA, 5000))
    assert info.value.frame_no == 2 and "5000" in str(info.value) and "1000" in str(info.value)


def test_unknown_kind_is_refused():
    """A frame kind outside the table raises FrameError."""
    with pytest.raises(FrameError, match="unknown frame kind 200"):
        FrameReader().feed(struct.pack(">BI", 200, 0))


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.tuples(KINDS, st.binary(max_size=300)), max_size=20),
       cuts=st.lists(st.integers(min_value=0, max_value=7000), max_size=10))
def test_any_split_of_a_stream_gives_the_same_frames(frames, cuts):
    """However the bytes are split, the reader yields the same frames in order."""
    stream = b"".join(protocol.encode(kind, payload) for kind, payload in frames)
    points = sorted({c for c in cuts if c < len(stream)} | {0, len(stream)})
    reader = FrameReader()
    got = []
    for start, end in zip(points, points[1:]):
        got.extend(reader.feed(stream[start:end]))
    assert [(f.kind, f.payload) for f in got] == [(FrameKind(k), p) for k, p in frames]
    assert reader.buffered == 0


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.tuples(KINDS, st.binary(max_size=300)), max_size=20),
       cuts=st.lists(st.integers(min_value=0, max_value=7000), max_size=10),
       direct=st.integers(min_value=1, max_value=200),
       reads=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=20))
def test_direct_reads_give_the_same_frames(frames, cuts, direct, reads):
    """A reader in direct mode (large frames read straight into their own buffer,
    as the agent reads) yields the same frames, numbered alike, however the bytes
    come and whichever of feed() or into()/filled() takes them."""
    stream = b"".join(protocol.encode(kind, payload) for kind, payload in frames)
    points = set(c for c in cuts if c < len(stream))
    reader = FrameReader(direct=direct)
    got, position, turn = [], 0, 0
    while position < len(stream):
        into = reader.into()
        if into is not None:
            count = min(len(into), reads[turn % len(reads)], len(stream) - position)
            turn += 1
            into[:count] = stream[position:position + count]
            got.extend(reader.filled(count))
        else:
            end = min([p for p in points if p > position] + [len(stream)])
            got.extend(reader.feed(memoryview(stream)[position:end]))
            count = end - position
        position += count
        assert reader.buffered <= len(stream) - sum(len(f.payload) + 5 for f in got)
    assert [(f.kind, bytes(f.payload), f.number) for f in got] == [
        (FrameKind(k), p, n) for n, (k, p) in enumerate(frames, 1)]
    assert reader.buffered == 0 and reader.into() is None


def test_direct_read_keeps_the_frame_for_take_buffered():
    """The part of a large frame read so far is still "buffered" output."""
    data = protocol.encode(FrameKind.STDOUT, b"x" * 1000)
    reader = FrameReader(direct=100)
    assert reader.feed(data[:300]) == [] and reader.into() is not None
    assert reader.buffered == 300
    assert reader.take_buffered() == data[:300] and reader.buffered == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_give_frames_or_frame_error_only(data):
    """Random input never raises anything but FrameError, and never over-allocates."""
    reader = FrameReader(max_frame=4096)
    try:
        reader.feed(data)
    except FrameError:
        return
    assert reader.buffered <= 4096 + 13


def test_sync_scanner_skips_shell_output_even_when_marker_is_split():
    """Output before the marker is kept as preamble; the marker may arrive in pieces."""
    scanner = SyncScanner()
    stream = b"Welcome!\nlast login\n" + SYNC + b"frames"
    results = [scanner.feed(stream[i:i + 3]) for i in range(0, len(stream), 3)]
    after = b"".join(r for r in results if r is not None)
    assert after == b"frames"
    assert scanner.preamble == b"Welcome!\nlast login\n"


def test_sync_scanner_gives_up_on_endless_output():
    """Too much output without the marker is a HandshakeError that quotes its start."""
    scanner = SyncScanner(limit=100)
    with pytest.raises(HandshakeError, match="no sshpipe agent answered.*garbage"):
        for _ in range(10):
            scanner.feed(b"garbage " * 10)


def test_hello_with_another_protocol_version_is_refused():
    """A hello from another protocol version raises HandshakeError naming both."""
    protocol.check_hello({"protocol": protocol.PROTOCOL_VERSION})
    with pytest.raises(HandshakeError, match="protocol 99"):
        protocol.check_hello({"protocol": 99})


# -- the agent over plain pipes (no SSH: the protocol alone) --------------------

AGENT = textwrap.dedent("""
    from sshpipe import SSHPipeHandler
    class Echo(SSHPipeHandler):
        def handle(self, received):
            self.reply(received)
    Echo(tolerance=-1).service_loop()
""")


def _agent() -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(protocol.__file__)))
    return subprocess.Popen([sys.executable, "-c", AGENT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _frames(output: bytes):
    scanner = SyncScanner()
    rest = scanner.feed(output)
    assert rest is not None, output
    return FrameReader().feed(rest)


def _start() -> bytes:
    return protocol.encode_json(FrameKind.START, {"heartbeat": 5, "heartbeat_timeout": 30})


def test_agent_answers_frames_over_pipes():
    """The agent says hello, handles DATA, replies, acks and exits 0 at end of input."""
    agent = _agent()
    stdin = _start() + protocol.encode_data(1, pickle.dumps("hi"))
    out, err = agent.communicate(stdin, timeout=30)
    assert agent.returncode == 0, err
    frames = _frames(out)
    kinds = [f.kind for f in frames]
    assert kinds[0] == FrameKind.HELLO and kinds[-1] == FrameKind.EXIT
    reply = next(f for f in frames if f.kind == FrameKind.REPLY)
    assert pickle.loads(reply.payload) == "hi"
    ack = next(f for f in frames if f.kind == FrameKind.ACK)
    assert protocol.split_seq(ack.payload)[0] == 1


@settings(max_examples=15, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_agent_given_random_bytes_exits_with_protocol_status(garbage):
    """Random bytes after START make the agent exit 0 (clean end) or 1 (protocol
    error) with an EXIT frame; it never hangs or crashes."""
    agent = _agent()
    out, err = agent.communicate(_start() + garbage, timeout=30)
    assert agent.returncode in (0, 1, 3), err
    frames = _frames(out)
    assert frames[-1].kind == FrameKind.EXIT


def test_agent_refuses_stream_without_start():
    """Input that does not begin with START ends the agent with status 1."""
    agent = _agent()
    out, err = agent.communicate(protocol.encode_data(1, b"x"), timeout=30)
    assert agent.returncode == 1
    assert b"expected START" in err


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.tuples(KINDS, st.binary(max_size=40)), min_size=1, max_size=12),
       cuts=st.lists(st.integers(min_value=0, max_value=800), max_size=12))
def test_frame_tracker_knows_boundaries_however_the_stream_is_split(frames, cuts):
    """FrameTracker says 'between frames' exactly at frame ends, for any split."""
    pieces = [protocol.encode(kind, payload) for kind, payload in frames]
    stream = b"".join(pieces)
    ends = set()
    total = 0
    for piece in pieces:
        total += len(piece)
        ends.add(total)
    points = sorted({c for c in cuts if 0 < c < len(stream)} | {len(stream)})
    tracker = protocol.FrameTracker()
    previous = 0
    for point in points:
        tracker.advance(stream[previous:point])
        assert tracker.at_boundary == (point in ends), point
        previous = point
