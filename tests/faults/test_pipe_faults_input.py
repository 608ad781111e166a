"""Bad input on every edge: oversized frames both ways, random bytes instead of
frames, shell noise around the agent, a handler printing, unpicklable objects and a
broken config file."""
from __future__ import annotations

import pickle
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faultkit import (BOUND, FAULT_AGENT, check_accounting, drain, make_pipe,
                      record, settle, unhandled_in)
from sshpipe import (AgentStartError, FrameError, PipeBroken, PipeState, ProtocolError,
                     SSHConfigError, SSHPipe, SSHPipeError, SSHPipeHandler, protocol)
from sshpipe.testing import LocalSSHServer

MAX_FRAME = 64 * 1024




# -- oversized frames ----------------------------------------------------------------
def test_oversized_message_is_refused_in_send_issue_8(sshd, method):
    """A message over max_frame raises in send() before it takes a sequence number;
    the pipe goes on and nothing is unhandled."""
    with make_pipe(sshd, max_frame=MAX_FRAME) as pipe:
        first = pipe.send("small")
        started = time.monotonic()
        with pytest.raises((FrameError, ValueError), match="max_frame"):
            pipe.send(b"x" * (2 * MAX_FRAME))
        seconds = time.monotonic() - started
        assert pipe.send("still fine") == first + 1
        assert [pipe.recv(timeout=10), pipe.recv(timeout=10)] == ["small", "still fine"]
        response = pipe.close(timeout=30)
    record("oversized frame caller->agent", method, seconds, "ValueError from send()")
    assert response.exitcode == 0 and response.unhandled == () and response.errors == ()


def test_oversized_reply_is_refused_by_the_agent(sshd, method):
    """A reply over max_frame: the agent's reply() refuses it before it is sent (the
    caller would have to break the pipe), so that message fails with the reason and
    the agent ends by its tolerance, every message accounted for."""
    pipe = make_pipe(sshd, max_frame=MAX_FRAME)
    pipe.start()
    ok = pipe.send("small")
    assert pipe.recv(timeout=10) == "small"
    began = time.monotonic()
    big = pipe.send(("cmd", "bytes", 2 * MAX_FRAME))
    response = pipe.response(timeout=BOUND)
    seconds = time.monotonic() - began
    record("oversized reply agent->caller", method, seconds,
           f"exit {response.exitcode}, {len(response.errors)} error")
    assert response.exitcode == 3 and "max_frame" in str(response.errors[0])
    assert response.errors[0].seq == big and response.unhandled == ()
    assert ok < big


# -- random bytes instead of frames ----------------------------------------------------
FAKE_AGENT = r"""
import os, sys, time
os.write(1, bytes.fromhex(sys.argv[1]))
time.sleep(float(sys.argv[2]))
"""


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=3000), after_hello=st.booleans())
def test_random_bytes_from_remote_give_typed_error(sshd, method, garbage, after_hello):
    """Random bytes where the agent's frames should be (alone, or right after a valid
    hello): start() or response() ends with a typed sshpipe error or the remote's exit,
    within the bound; never a hang, never another exception."""
    hello = protocol.SYNC + protocol.encode_json(protocol.FrameKind.HELLO, {
        "protocol": protocol.PROTOCOL_VERSION, "pid": 0, "host": "fake"}) if after_hello \
        else b""
    pipe = SSHPipe(sshd.alias, [sshd.python, "-c", FAKE_AGENT, (hello + garbage).hex(), "0.2"],
                   config=sshd.config_path, heartbeat=0.5, ready_timeout=5)
    started = time.monotonic()
    try:
        pipe.start()
    except SSHPipeError as exc:
        assert isinstance(exc, (AgentStartError, ProtocolError)), exc
        result = type(exc).__name__
    else:
        try:
            response = pipe.response(timeout=15)
            result = f"Response exitcode={response.exitcode}"
        except PipeBroken as exc:
            assert isinstance(exc.__cause__, ProtocolError) or "heartbeat" in str(exc), exc
            result = "PipeBroken"
    seconds = time.monotonic() - started
    pipe.join(10)
    assert not pipe.is_alive()
    record("random bytes from remote (hypothesis)", method, seconds, result)
    assert seconds < 0.2 + BOUND


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary(),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=5), children, max_size=4), max_leaves=10)


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(st.one_of(
    st.binary(min_size=0, max_size=200),
    _VALUES.map(lambda value: pickle.dumps(value, protocol=5)),
    st.tuples(_VALUES, st.integers(1, 40)).map(
        lambda pair: pickle.dumps(pair[0], protocol=5)[:-pair[1]])),  # truncated
    min_size=1, max_size=25))
def test_random_payloads_are_replied_or_errors(sshd, method, payloads):
    """Random bytes, valid pickles and truncated pickles as message payloads
    (send_bytes): the agent (tolerance -1) answers each with a reply or a per-message
    error and goes on; none is lost."""
    with make_pipe(sshd, env={"FAULT_TOLERANCE": "-1"}) as pipe:
        seqs = [pipe.send_bytes(payload) for payload in payloads]
        pipe.send("end of random payloads")
        started = time.monotonic()
        replies = []
        while True:
            reply = pipe.recv(timeout=15)
            if isinstance(reply, str) and reply == "end of random payloads":
                break
            replies.append(reply)
        seconds = time.monotonic() - started
        response = pipe.close(timeout=30)
    errored = [error.seq for error in response.errors]
    record("random payload bytes (hypothesis)", method, seconds,
           f"{len(replies)} replied, {len(errored)} errors of {len(seqs)}")
    assert response.exitcode == 0 and response.unhandled == ()
    assert len(replies) + len(errored) == len(seqs) and set(errored) <= set(seqs)


# -- shell noise ------------------------------------------------------------------------
NOISY = ('ForceCommand echo "Welcome to $(hostname)"; printf "rc noise\\0\\1\\n"; '
         'eval "$SSH_ORIGINAL_COMMAND"\n')
NOISY_AFTER = 'ForceCommand sh -c "$SSH_ORIGINAL_COMMAND"; echo "logout noise"\n'
LATE = ('ForceCommand (sleep 1; echo "late noise from a background job") & '
        'eval "$SSH_ORIGINAL_COMMAND"\n')


@pytest.fixture(scope="module")
def noisy_sshd():
    with LocalSSHServer(alias="noisy", extra_server_options=NOISY) as server:
        yield server


def test_login_shell_noise_before_agent_is_skipped(noisy_sshd, method):
    """Output of the login shell before the agent starts is skipped and kept as
    stdout; the frames after it are intact."""
    pipe = make_pipe(noisy_sshd, command=[noisy_sshd.python, FAULT_AGENT])
    pipe.start()
    pipe.send("through the noise")
    assert pipe.recv(timeout=10) == "through the noise"
    pipe.send("TERM")
    seconds, outcome = settle(pipe)
    record("login shell prints before the agent", method, seconds,
           f"{type(outcome).__name__}")
    assert not isinstance(outcome, PipeBroken), outcome
    assert outcome.exitcode == 0
    assert "Welcome to" in outcome.stdout and "rc noise" in outcome.stdout


def test_login_shell_noise_after_agent_exit_is_stdout_issue_8(method):
    """Output after the agent's EXIT frame (a logout script) does not break an agent
    that ended well: it is kept as stdout."""
    with LocalSSHServer(alias="noisy-after", extra_server_options=NOISY_AFTER) as server:
        pipe = make_pipe(server, command=[server.python, FAULT_AGENT])
        pipe.start()
        started = time.monotonic()
        response = pipe.close(timeout=30)
    record("login shell prints after the agent", method, time.monotonic() - started,
           f"Response exitcode={response.exitcode}")
    assert response.exitcode == 0
    assert "logout noise" in response.stdout


def test_background_noise_mid_stream_breaks_pipe_with_frame_error(method):
    """A background job of the login shell writing into the stream while the agent
    runs corrupts it: the pipe breaks at once with a FrameError, never hands garbage
    to recv(), and every message is accounted for."""
    with LocalSSHServer(alias="late", extra_server_options=LATE) as server:
        pipe = make_pipe(server)
        pipe.start()
        sent, replies = [], []
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                sent.append(pipe.send(len(sent)))
                replies.append(pipe.recv(timeout=10))
                time.sleep(0.05)
        except PipeBroken:
            pass
        seconds, outcome = settle(pipe)
        replies += drain(pipe)
    record("shell background job prints mid-stream", method, None,
           f"{type(outcome).__name__} from {type(outcome.__cause__).__name__}")
    assert replies == list(range(len(replies)))
    assert isinstance(outcome, PipeBroken) and isinstance(outcome.__cause__, ProtocolError)
    check_accounting(sent, sent[:len(replies)], unhandled_in(outcome))


# -- the handler prints -----------------------------------------------------------------
def test_handler_prints_to_stdout_and_fd1_without_corrupting_frames(sshd, method):
    """print(), sys.stdout, raw fd 1 (with bytes that look like the sync marker and an
    EXIT frame), a child process and 200 kB of output: all of it ends in stdout and
    every reply is intact."""
    with make_pipe(sshd) as pipe:
        pipe.send(("cmd", "print", 200_000))
        for n in range(50):
            pipe.send(n)
        started = time.monotonic()
        assert pipe.recv(timeout=10) == "printed"
        assert [pipe.recv(timeout=10) for _ in range(50)] == list(range(50))
        seconds = time.monotonic() - started
        response = pipe.close(timeout=30)
    record("handler prints to stdout, fd 1 and a child", method, seconds, "replies intact")
    assert response.exitcode == 0 and response.unhandled == ()
    out = response.stdout
    assert "via print\nvia sys.stdout\n" in out and "from a child\n" in out
    assert protocol.SYNC.decode("latin-1") in out.encode("utf-8", "replace").decode("latin-1") \
        or "sshpipe-sync" in out
    assert out.count("z" * 1000 + "\n") == 200_000 // 1001


# -- unpicklable objects ----------------------------------------------------------------
class HoldsGenerator(SSHPipeHandler):
    def __init__(self):
        super().__init__()
        self.source = (n for n in range(3))


def test_unpicklable_handler_fails_start_in_caller(sshd, method):
    """A handler that cannot be serialized fails start() in the caller, before any
    process or connection exists; the pipe stays NEW."""
    pipe = SSHPipe(sshd.alias, handler=HoldsGenerator(), config=sshd.config_path,
                   python=sshd.python, heartbeat=0.5)
    started = time.monotonic()
    with pytest.raises(TypeError, match="generator"):
        pipe.start()
    seconds = time.monotonic() - started
    record("unpicklable handler", method, seconds, "TypeError from start()")
    assert pipe.state is PipeState.NEW and pipe.pid is None
    assert pipe.close() == (None, "", "")


def test_unpicklable_message_raises_and_pipe_goes_on(sshd, method):
    """send() of an object neither pickle nor dill can carry raises TypeError; no seq is
    used and the pipe keeps working."""
    with make_pipe(sshd) as pipe:
        first = pipe.send(1)
        gen = (n for n in range(3))
        with pytest.raises(TypeError):
            pipe.send({"payload": gen})
        with pytest.raises(TypeError):
            pipe.send(lambda: next(gen))
        assert pipe.send(2) == first + 1
        assert [pipe.recv(timeout=10), pipe.recv(timeout=10)] == [1, 2]
        response = pipe.close(timeout=30)
    record("unpicklable message", method, 0.0, "TypeError from send()")
    assert response.unhandled == () and response.errors == ()


# -- config file with errors -------------------------------------------------------------
@pytest.mark.parametrize("text, line, reason", [
    ("Host x\n    HostName 127.0.0.1\n    Port notanumber\n", 3, "Bad port"),
    ("Host x\n    HostName 127.0.0.1\n    Bogus yes\n", 3, "Bad configuration option"),
])
def test_config_file_with_errors(tmp_path, method, text, line, reason):
    """start() raises SSHConfigError with the file and line, from the child, intact."""
    path = tmp_path / "bad config"
    path.write_text(text)
    pipe = SSHPipe("x", ["true"], config=str(path), heartbeat=0.5)
    started = time.monotonic()
    with pytest.raises(SSHConfigError) as info:
        pipe.start()
    seconds = time.monotonic() - started
    record(f"config error: {reason}", method, seconds, f"SSHConfigError line {info.value.line}")
    assert info.value.path == str(path) and info.value.line == line
    assert reason in str(info.value) and str(info.value).startswith(f"{path}:{line}: ")
    if pipe.pid is not None:
        pipe.join(10)
    assert not pipe.is_alive()
    assert seconds < BOUND


def test_missing_config_file(tmp_path, method):
    """A config path that does not exist is an SSHConfigError naming it."""
    path = tmp_path / "nope"
    pipe = SSHPipe("x", ["true"], config=str(path), heartbeat=0.5)
    with pytest.raises(SSHConfigError, match="not found") as info:
        pipe.start()
    assert info.value.path == str(path)
