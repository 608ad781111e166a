"""Reliability regressions (issue 11): ending a pipe never depends on guessing the
agent's term messages, every timeout is honoured under contention, replies the
caller leaves unread are bounded, and bad streams fail fast with typed errors."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import faultkit
from faultkit import record
from sshpipe import (FrameError, HandshakeError, PipeClosed, ReplyDecodeError, SSHPipe,
                     protocol)
from sshpipe.testing import process_id, wait_gone

AGENT = str(Path(__file__).parent / "agents" / "reliability_agent.py")
# What a timeout may overrun by: one scheduling stall on a loaded 2-core machine.
OVERRUN = 1.0


def make_pipe(sshd, **kwargs) -> SSHPipe:
    return faultkit.make_pipe(sshd, kwargs.pop("command", AGENT), **kwargs)


def test_close_ends_a_handler_whose_term_messages_differ(sshd, method):
    """A handler whose only term message is BYE takes STOP as data; close() still
    ends it (END after the term message), promptly and with status 0."""
    pipe = make_pipe(sshd, env={"RELIABILITY_TERMS": "BYE"})
    pipe.start()
    assert pipe.remote_info["term_messages"] == ["BYE"]
    pipe.send("STOP")
    assert pipe.recv(timeout=10) == "STOP"  # data, echoed
    began = time.monotonic()
    response = pipe.close(timeout=10)
    took = time.monotonic() - began
    record("close: handler's term messages differ from the caller's guess", method, took,
           f"exit {response.exitcode}")
    assert response.exitcode == 0 and not response.unhandled
    assert took < 5


def test_close_after_a_term_send_that_timed_out(sshd, method):
    """send("TERM", timeout) that times out (window full behind a busy handler)
    sent nothing; close() then ends the agent anyway, within its timeout."""
    pipe = make_pipe(sshd, queue_bound=1)
    pipe.start()
    pipe.send(("cmd", "sleep", 1.5))
    with pytest.raises(TimeoutError):
        pipe.send("TERM", timeout=0.2)
    began = time.monotonic()
    response = pipe.close(timeout=15)
    took = time.monotonic() - began
    record("close after a timed-out term send", method, took, f"exit {response.exitcode}")
    assert response.exitcode == 0 and took < 10


def test_send_timeout_is_honoured_while_another_thread_sends(sshd, method):
    """A thread's send(timeout=1) returns within its timeout while another thread
    is in the middle of a 200 MB message to a busy handler."""
    pipe = make_pipe(sshd)
    pipe.start()
    try:
        pipe.send(("cmd", "sleep", 8))
        big = threading.Thread(target=lambda: pipe.send(b"b" * (200 << 20)), daemon=True)
        big.start()
        time.sleep(0.3)  # let the big send take the pipe (the fault being injected)
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            pipe.send("small", timeout=1)
        took = time.monotonic() - began
        record("send(timeout=1) while another thread sends 200 MB", method, took, "TimeoutError")
        assert took < 1 + OVERRUN
    finally:
        began = time.monotonic()
        response = pipe.close(timeout=1)
        took = time.monotonic() - began
    record("close(timeout=1) with a busy handler", method, took, f"exit {response.exitcode}")
    assert took < 1 + 2 + OVERRUN
    assert response.exitcode in (-15, -9) and "did not end within" in response.reason


def test_close_timeout_ends_a_busy_agent_and_its_process(sshd, method):
    """close(timeout=1) on a handler busy for 60 s returns in about a second and the
    remote agent is gone soon after (the channel closed under it)."""
    pipe = make_pipe(sshd)
    pipe.start()
    pipe.send(("cmd", "pid"))
    pid = process_id(pipe.recv(timeout=10))
    pipe.send(("cmd", "sleep", 60))
    began = time.monotonic()
    response = pipe.close(timeout=1)
    assert time.monotonic() - began < 1 + 2 + OVERRUN
    assert response.exitcode in (-15, -9)
    left = wait_gone([pid], faultkit.BOUND + 5)
    record("busy agent after close(timeout=1)", method, time.monotonic() - began,
           "gone" if not left else f"left {left}")
    assert not left


def test_forced_close_ends_a_busy_agent_before_its_next_heartbeat(sshd):
    """With a 10 s heartbeat, a handler busy for 120 s is gone within close()'s
    timeout plus the agent's grace (min(5 s, heartbeat)) of the forced close: the
    agent sees its session's output go, it does not wait for a heartbeat write."""
    pipe = make_pipe(sshd, heartbeat=10)
    pipe.start()
    pipe.send(("cmd", "pid"))
    agent = process_id(pipe.recv(timeout=10))
    pipe.send(("cmd", "sleep", 120))
    began = time.monotonic()
    assert pipe.close(timeout=1).exitcode in (-15, -9)
    assert not wait_gone([agent], 1 + 5 + faultkit.SLACK + 2)
    record("busy agent after close(timeout=1), heartbeat 10 s", "fork",
           time.monotonic() - began, "gone")


def test_unread_replies_block_the_handler_not_the_callers_memory(sshd, method):
    """200 replies of 1 MB with an 8 MiB reply window: the caller's memory stays
    bounded while it does not read, and every reply arrives, in order, when it does."""
    pipe = make_pipe(sshd, reply_window_bytes=8 << 20)
    pipe.start()
    try:
        pipe.send(("cmd", "replies", 200, 1 << 20))
        time.sleep(2)  # the caller "does not read" for a while (the fault)
        with pipe._ledger.cond:
            waiting = sum(len(r) for r in pipe._ledger.replies)
        assert waiting <= 10 << 20, waiting
        assert pipe.pending == 1  # the handler is blocked in reply(), not done
        got = [pipe.recv(timeout=30) for _ in range(201)]
        assert [item[0] for item in got[:200]] == list(range(200)) and got[200] == "all sent"
    finally:
        assert pipe.close(timeout=30).exitcode == 0
    record("200 x 1 MB replies unread", method, None, f"at most {waiting >> 20} MiB buffered")


def test_close_releases_replies_that_were_never_read(sshd, method):
    """A handler blocked on a full reply window does not block close()."""
    pipe = make_pipe(sshd, reply_window=4)
    pipe.start()
    pipe.send(("cmd", "replies", 50, 10))
    began = time.monotonic()
    response = pipe.close(timeout=15)
    assert response.exitcode == 0 and time.monotonic() - began < 10


def test_a_reply_the_caller_cannot_load_is_typed_and_the_next_arrives(sshd):
    """A reply of a class only the remote has raises ReplyDecodeError naming the host
    and the reply's number; the reply after it is not lost."""
    with make_pipe(sshd) as pipe:
        pipe.send(("cmd", "only_here"))
        pipe.send("after")
        with pytest.raises(ReplyDecodeError) as info:
            pipe.recv(timeout=10)
        assert info.value.host == sshd.alias and info.value.reply_no == 1
        assert sshd.alias in str(info.value) and "reply 1" in str(info.value)
        assert pipe.recv(timeout=10) == "after"


def test_a_reply_larger_than_max_frame_is_an_error_of_that_message(sshd):
    """The agent refuses to send a reply over the pipe's max_frame (the caller would
    have to break the pipe): that message fails, the pipe goes on."""
    pipe = make_pipe(sshd, max_frame=1 << 20)
    pipe.start()
    pipe.send(("cmd", "bytes", 2 << 20))
    pipe.send("next")
    assert pipe.recv(timeout=10) == "next"
    response = pipe.close(timeout=10)
    assert response.errors and "max_frame" in str(response.errors[0])


def test_remote_that_echoes_its_input_fails_fast(sshd, method, tmp_path):
    """A "python" that is really cat (it ignores its arguments and echoes its
    input) fails with HandshakeError within seconds, not the ready timeout,
    saying what came back."""
    fake = tmp_path / "python-that-is-cat"
    fake.write_text("#!/bin/sh\nexec cat\n")
    fake.chmod(0o755)
    pipe = make_pipe(sshd, python=str(fake), ready_timeout=60)
    began = time.monotonic()
    with pytest.raises(HandshakeError) as info:
        pipe.start()
    took = time.monotonic() - began
    record("python= a program that echoes (cat)", method, took, type(info.value).__name__)
    assert "echoed" in str(info.value) and sshd.alias in str(info.value)
    assert took < 10


def test_raw_command_that_is_not_an_agent_fails_fast(sshd):
    """A raw command (cat) that echoes START back fails with HandshakeError at once."""
    pipe = make_pipe(sshd, command=["/bin/cat"], ready_timeout=60)
    began = time.monotonic()
    with pytest.raises(HandshakeError):
        pipe.start()
    assert time.monotonic() - began < 10


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake_agent.py"
    path.write_text(textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def test_endless_banner_is_bounded(sshd, tmp_path):
    """A remote that prints 5 MB and no marker gets HandshakeError past MAX_PREAMBLE,
    naming the host and showing the first bytes, well before the ready timeout."""
    script = _script(tmp_path, """\
        import os, sys
        os.write(1, b"BANNER " * ((5 << 20) // 7))
        sys.stdin.buffer.read()  # then wait for the end of input
        """)
    pipe = make_pipe(sshd, command=[sys.executable, script], ready_timeout=60)
    began = time.monotonic()
    with pytest.raises(HandshakeError) as info:
        pipe.start()
    assert "BANNER" in str(info.value) and sshd.alias in str(info.value)
    assert time.monotonic() - began < 15


def test_malformed_loader_reply_is_a_handshake_error(sshd, tmp_path):
    """A 'python' that answers the loader's marker with junk is a HandshakeError."""
    from sshpipe import bootstrap
    script = _script(tmp_path, f"""\
        #!{sys.executable}
        import os, sys, time
        sys.stdin.readline()
        os.write(1, {bootstrap.LOADER_SYNC!r} + b"not json at all\\n")
        sys.stdin.buffer.read()  # then wait for the end of input
        """)
    pipe = make_pipe(sshd, python=script)
    with pytest.raises(HandshakeError) as info:
        pipe.start()
    assert "status line" in str(info.value)


def test_stream_ending_inside_a_frame_is_not_a_clean_exit(sshd, tmp_path):
    """An agent whose output stops halfway through a reply (status 0) is a
    FrameError, never exit status 0 with the reply silently dropped."""
    script = _script(tmp_path, f"""\
        import json, os, sys
        sys.path.insert(0, {str(Path(protocol.__file__).parent.parent)!r})
        from sshpipe import protocol
        hello = protocol.encode_json(protocol.FrameKind.HELLO, {{
            "protocol": protocol.PROTOCOL_VERSION, "pid": os.getpid(), "host": "fake"}})
        os.write(1, protocol.SYNC + hello)
        os.read(0, 65536)
        os.write(1, protocol.encode(protocol.FrameKind.REPLY, b"x" * 1000)[:500])
        """)
    pipe = make_pipe(sshd, command=[sys.executable, script])
    pipe.start()
    with pytest.raises(Exception) as info:
        pipe.recv(timeout=10)
    assert isinstance(info.value.__cause__, FrameError) or "inside a frame" in str(info.value)


def test_a_failing_log_handler_does_not_break_the_pipe(sshd):
    """A user handler that raises on every record does not kill the events thread."""
    import logging

    class Exploding(logging.Handler):
        def emit(self, record):
            raise RuntimeError("handler bug")

        def handle(self, record):
            raise RuntimeError("handler bug")

    remote = logging.getLogger("sshpipe.remote.exploding-test")
    remote.addHandler(Exploding())
    remote.setLevel(logging.INFO)
    remote.propagate = False
    try:
        with make_pipe(sshd, logger=remote) as pipe:
            pipe.send(("cmd", "print", 100))
            assert pipe.recv(timeout=10) == "printed"
            pipe.send("still there")
            assert pipe.recv(timeout=10) == "still there"
    finally:
        remote.handlers.clear()


def test_output_kept_for_response_is_bounded(sshd):
    """stdout past output_limit is counted in Response.dropped, not kept."""
    pipe = make_pipe(sshd, output_limit=1000)
    pipe.start()
    pipe.send(("cmd", "print", 10_000))
    assert pipe.recv(timeout=10) == "printed"
    response = pipe.close(timeout=10)
    assert len(response.stdout) == 1000
    assert response.dropped["stdout"] == 9000


def test_send_after_close_is_refused(sshd):
    """After close() a send raises PipeClosed (it would otherwise land after END)."""
    pipe = make_pipe(sshd)
    pipe.start()
    pipe.close(timeout=10)
    with pytest.raises(PipeClosed):
        pipe.send("late")


def test_spawn_without_main_guard_fails_fast(sshd, tmp_path):
    """A spawn-method script without the __main__ guard fails start() quickly with an
    error that says what to do (it used to hang for good in Process.start())."""
    script = tmp_path / "noguard.py"
    script.write_text(textwrap.dedent(f"""\
        import multiprocessing
        multiprocessing.set_start_method("spawn", force=True)
        from sshpipe import SSHPipe
        pipe = SSHPipe({sshd.alias!r}, {AGENT!r}, config={sshd.config_path!r},
                       python={sshd.python!r}, ready_timeout=20)
        try:
            pipe.start()
        except Exception as exc:
            print("RAISED", type(exc).__name__, exc, flush=True)
        """))
    began = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    took = time.monotonic() - began
    record("spawn without the __main__ guard", "spawn", took, "raised" if "RAISED" in
           done.stdout else "no error")
    assert "RAISED" in done.stdout and "__main__" in done.stdout, done.stdout + done.stderr
    assert took < 30


def test_daemon_follows_process_rules(sshd):
    """daemon= is accepted; by default a pipe inherits the creating process's flag."""
    assert SSHPipe("h", AGENT, daemon=True).daemon is True
    assert SSHPipe("h", AGENT, daemon=False).daemon is False
    assert SSHPipe("h", AGENT).daemon is False  # the main process is not daemonic


def test_every_error_from_a_pipe_names_its_host(sshd, tmp_path):
    """Errors raised from deep inside (protocol, stream, child) carry .host once they
    leave a pipe's public method, whatever raised them."""
    from sshpipe import PipeBroken, SSHPipeError

    errors = []
    fake = tmp_path / "python-that-is-cat"
    fake.write_text("#!/bin/sh\nexec cat\n")
    fake.chmod(0o755)
    with pytest.raises(SSHPipeError) as info:  # HandshakeError from the stream
        make_pipe(sshd, python=str(fake)).start()
    errors.append(info.value)
    pipe = make_pipe(sshd)
    with pytest.raises(SSHPipeError) as info:  # PipeClosed: not started
        pipe.recv(timeout=1)
    errors.append(info.value)
    pipe.start()
    pipe.send(("cmd", "pid"))
    agent = pipe.recv(timeout=10)
    os_kill = __import__("os").kill
    os_kill(agent, 9)
    with pytest.raises(SSHPipeError) as info:  # the agent is gone: EOF or broken
        pipe.send("x")
        pipe.flush(timeout=10)
    errors.append(info.value)
    with pytest.raises(SSHPipeError) as info:
        pipe.send("after the end")
    errors.append(info.value)
    assert all(error.host == sshd.alias for error in errors), [
        (type(error).__name__, error.host) for error in errors]
    assert not isinstance(errors[0], PipeBroken)
