"""SSHPipe against the real sshd: a remote agent that behaves like a local Process."""
from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import pytest

from sshpipe import AgentStartError, PipeBroken, PipeClosed, PipeState, SSHPipe, protocol
from sshpipe.testing import is_alive, process_id, wait_gone

from pipe_transports import transport  # noqa: F401 (autouse: each test per transport)

AGENTS = Path(__file__).parent / "agents"
ECHO = str(AGENTS / "echo_agent.py")


def make_pipe(sshd, command=ECHO, **kwargs) -> SSHPipe:
    kwargs.setdefault("python", sshd.python)
    kwargs.setdefault("ready_timeout", 30)
    return SSHPipe(sshd.alias, command, config=sshd.config_path, **kwargs)


@pytest.fixture
def pipe(sshd):
    with make_pipe(sshd) as running:
        yield running


def test_start_returns_after_hello_with_remote_details(sshd):
    """start() returns once the agent said hello: its pid, host and versions are known."""
    pipe = make_pipe(sshd)
    assert pipe.state is PipeState.NEW
    pipe.start()
    try:
        info = pipe.remote_info
        assert pipe.state is PipeState.RUNNING
        assert info["protocol"] == protocol.PROTOCOL_VERSION and info["handler"] == "EchoAgent"
        assert info["python"].startswith("3.") and is_alive(process_id(info["pid"]))
        assert pipe.is_alive()
        assert "running" in repr(pipe)
    finally:
        response = pipe.close(timeout=30)
    assert response == (0, "", "")
    assert pipe.state is PipeState.CLOSED
    assert pipe.exitcode == 0
    # close() released the Process half, as Process.close() does.
    for call in (pipe.is_alive, pipe.join, pipe.terminate):
        with pytest.raises(ValueError):
            call()


def test_objects_round_trip_in_order(pipe):
    """Objects sent come back from the handler's reply() in order and intact."""
    items = [None, 1, "text", b"\x00\xff" * 50, {"nested": [1, (2, 3)]}, 1.5, list(range(1000))]
    for item in items:
        pipe.send(item)
    assert [pipe.recv(timeout=10) for _ in items] == items


def test_lambda_is_shipped_by_value(pipe):
    """A lambda (not picklable by reference) is carried by value and runs remotely."""
    factor = 2
    pipe.send(lambda x: x * factor)
    assert pipe.recv(timeout=10) == 42


def test_unserializable_object_raises_at_send(pipe):
    """An object that cannot be serialized raises in send(), and nothing is sent."""
    with pytest.raises(TypeError):
        pipe.send(x for x in range(3))
    pipe.send("still fine")
    assert pipe.recv(timeout=10) == "still fine"
    assert pipe.close(timeout=30).unhandled == ()


def test_send_bytes_sends_preserialized_object(pipe):
    """send_bytes() takes serialized bytes; the handler gets the object."""
    import pickle

    pipe.send_bytes(pickle.dumps({"k": "v"}))
    assert pipe.recv(timeout=10) == {"k": "v"}


def test_prints_reach_response_stdout_without_corrupting_frames(sshd):
    """print(), sys.stdout and raw fd 1 writes go to response().stdout, not into the frames."""
    pipe = make_pipe(sshd)
    pipe.start()
    pipe.send(("cmd", "print", "hello", "world"))
    pipe.send("after prints")
    assert pipe.recv(timeout=10) == "after prints"
    pipe.send(("cmd", "stderr", "to stderr\n"))
    response = pipe.close(timeout=30)
    assert response.exitcode == 0
    assert set(response.stdout.splitlines()) == {"hello world", "via sys.stdout",
                                                 "straight to fd 1"}
    assert response.stderr == "to stderr\n"


def test_remote_log_records_reach_caller_logger(sshd, caplog):
    """logging in the handler arrives in the caller's logger with the host attached."""
    caplog.set_level(logging.DEBUG)
    pipe = make_pipe(sshd)
    pipe.start()
    pipe.send(("cmd", "log", "xyz"))
    pipe.flush(timeout=10)
    pipe.close(timeout=30)
    records = [r for r in caplog.records if "remote warning xyz" in r.getMessage()]
    assert len(records) == 1
    record = records[0]
    assert record.name == f"sshpipe.remote.{sshd.alias}"
    assert record.host == sshd.alias and record.remote_name == "echo_agent"
    assert record.levelno == logging.WARNING


def test_handler_error_with_zero_tolerance_ends_agent_and_reports_unhandled(sshd):
    """A failing handle() with tolerance 0 ends the agent (status 3); later messages
    are reported unhandled and the error carries the remote traceback."""
    pipe = make_pipe(sshd)
    pipe.start()
    pipe.send("first")
    failing = pipe.send(("cmd", "raise", "bad input"))
    after = [pipe.send(n) for n in range(3)]
    response = pipe.response(timeout=30)
    assert response.exitcode == 3
    assert pipe.recv(timeout=5) == "first"
    assert response.unhandled == tuple(after)
    (error,) = response.errors
    assert error.seq == failing and "bad input" in str(error)
    assert "ValueError: bad input" in str(error.__cause__)
    with pytest.raises(PipeClosed):
        pipe.send("too late")
    pipe.close(timeout=10)


def test_tolerance_minus_one_survives_errors(sshd):
    """With tolerance -1 every failing message is reported and the agent goes on."""
    pipe = make_pipe(sshd, env={"ECHO_TOLERANCE": "-1"})
    pipe.start()
    for n in range(3):
        pipe.send(("cmd", "raise", f"bad {n}"))
    pipe.send("alive")
    assert pipe.recv(timeout=10) == "alive"
    response = pipe.close(timeout=30)
    assert response.exitcode == 0
    assert [str(e).rsplit(": ", 1)[1] for e in response.errors] == ["bad 0", "bad 1", "bad 2"]


def test_unserializable_reply_is_reported_as_message_error(sshd):
    """A reply that cannot be serialized is an error of the message being handled."""
    pipe = make_pipe(sshd, env={"ECHO_TOLERANCE": "-1"})
    pipe.start()
    seq = pipe.send(("cmd", "unpicklable_reply"))
    response = pipe.close(timeout=30)
    assert [e.seq for e in response.errors] == [seq]


@pytest.mark.parametrize("hook, status", [("atstart", 2), ("atexit", 4)])
def test_failing_hooks_give_documented_exit_status(sshd, hook, status):
    """atstart and atexit failures end the agent with statuses 2 and 4."""
    pipe = make_pipe(sshd, command=f"{AGENTS / 'hooks_agent.py'} {hook}")
    pipe.start()
    pipe.send("one")
    response = pipe.close(timeout=30)
    assert response.exitcode == status
    assert pipe.exitcode == status
    assert f"{hook} failed on purpose" in str(response.errors[0])


def test_hooks_order_and_term_message(sshd):
    """atstart sees the first message, which is then handled; atexit gets the term message."""
    pipe = make_pipe(sshd, command=f"{AGENTS / 'hooks_agent.py'} none", term_message="BYE")
    pipe.start()
    pipe.send("one")
    response = pipe.close(timeout=30)
    assert response.exitcode == 0 and response.unhandled == ()
    assert [pipe.recv(timeout=5), pipe.recv(timeout=5)] == [("handled", "one"), ("atexit", "BYE")]
    with pytest.raises(EOFError):
        pipe.recv(timeout=5)


def test_seed_style_explicit_term_then_close(sshd):
    """Sending "TERM" yourself and then close() ends cleanly, without a second term."""
    pipe = make_pipe(sshd)
    pipe.start()
    pipe.send("x")
    pipe.send("TERM")
    response = pipe.close(timeout=30)
    assert response.exitcode == 0 and response.unhandled == ()
    assert response.reason == "term message 'TERM'"


def test_missing_command_raises_with_status_and_stderr(sshd):
    """A remote command that does not exist fails start() with status 127 and stderr."""
    pipe = make_pipe(sshd, command="no-such-command-sshpipe --flag")
    with pytest.raises(AgentStartError) as info:
        pipe.start()
    assert info.value.exitcode == 127
    assert "no-such-command-sshpipe" in info.value.stderr
    assert pipe.state is PipeState.BROKEN


def test_agent_dying_before_hello_raises_with_its_stderr(sshd):
    """An agent that exits before hello fails start() with its status and stderr."""
    pipe = make_pipe(sshd, command=str(AGENTS / "broken_agent.py"))
    with pytest.raises(AgentStartError) as info:
        pipe.start()
    assert info.value.exitcode == 7
    assert "missing configuration" in info.value.stderr
    assert "missing configuration" in str(info.value)


def test_callback_called_once_with_response(sshd):
    """callback(exitcode, stdout, stderr) runs exactly once when the agent ends."""
    calls = []
    done = threading.Event()

    def callback(*args):
        calls.append(args)
        done.set()

    pipe = make_pipe(sshd, callback=callback)
    pipe.start()
    pipe.send(("cmd", "print", "bye"))
    pipe.close(timeout=30)
    assert done.wait(10)
    assert calls == [(0, "bye\nvia sys.stdout\nstraight to fd 1\n", "")]


def test_send_blocks_when_window_full_and_times_out(sshd):
    """With queue_bound messages unhandled, send() blocks and honours its timeout."""
    pipe = make_pipe(sshd, queue_bound=2)
    pipe.start()
    pipe.send(("cmd", "sleep", 1.0))
    pipe.send("queued")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        pipe.send("no room", timeout=0.2)
    assert 0.15 <= time.monotonic() - started < 0.9
    pipe.send("room again", timeout=10)
    response = pipe.close(timeout=30)
    assert response.exitcode == 0 and response.unhandled == ()


def test_flush_waits_until_all_handled(pipe):
    """flush() returns once every message sent so far has been handled."""
    for n in range(500):
        pipe.send(n)
    pipe.flush(timeout=30)
    assert pipe.pending == 0


def test_recv_times_out(pipe):
    """recv(timeout) raises TimeoutError when nothing arrives."""
    with pytest.raises(TimeoutError):
        pipe.recv(timeout=0.1)


def test_no_signal_handlers_installed_in_caller(sshd):
    """Starting and closing a pipe leaves the caller's signal handlers untouched."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD)
    before = [signal.getsignal(s) for s in signals]
    with make_pipe(sshd) as pipe:
        pipe.send(1)
        pipe.recv(timeout=10)
    assert [signal.getsignal(s) for s in signals] == before


def test_killing_child_process_ends_remote_agent_and_its_children(sshd):
    """If the SSHPipe child dies, the agent sees its input end and exits with its children;
    the caller's calls raise instead of hanging."""
    pipe = make_pipe(sshd)
    pipe.start()
    agent = process_id(pipe.remote_info["pid"])
    pipe.send(("cmd", "spawn"))
    grandchild = process_id(pipe.recv(timeout=10))
    assert is_alive(grandchild)
    pipe.kill()
    assert not wait_gone([agent], 10), "agent still running"
    assert not wait_gone([grandchild], 10), "agent's child still running"
    with pytest.raises(PipeBroken):
        pipe.response(timeout=10)
    with pytest.raises(PipeBroken):
        pipe.send("x")
    with pytest.raises(PipeBroken):
        pipe.recv(timeout=5)


def test_agent_killed_breaks_pipe_and_reports_unhandled(sshd):
    """An agent that dies mid-stream ends the pipe; unsent work is reported unhandled."""
    pipe = make_pipe(sshd)
    pipe.start()
    pipe.send(1)
    assert pipe.recv(timeout=10) == 1
    pipe.send(("cmd", "exit", 9))
    later = pipe.send("never handled")
    response = pipe.response(timeout=30)
    assert response.exitcode == 9
    assert later in response.unhandled


@pytest.mark.parametrize("method", ["spawn", "fork", "forkserver"])
def test_works_under_every_start_method(sshd, method):
    """The pipe starts, round-trips and closes under spawn, fork and forkserver."""
    import multiprocessing

    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(method, force=True)
    try:
        with make_pipe(sshd) as pipe:
            pipe.send({"method": method})
            assert pipe.recv(timeout=10) == {"method": method}
        assert pipe.exitcode == 0
    finally:
        multiprocessing.set_start_method(previous, force=True)


def test_close_on_new_pipe_and_double_start(sshd):
    """close() on a never-started pipe is harmless; start() twice is refused."""
    pipe = make_pipe(sshd)
    assert pipe.close() == (None, "", "")
    with pytest.raises(PipeClosed):
        pipe.start()


def test_command_as_word_list_keeps_spaces_in_paths(sshd, tmp_path):
    """A command given as a list of words keeps a path with spaces as one word."""
    import shutil

    spaced = tmp_path / "dir with spaces"
    spaced.mkdir()
    shutil.copy(ECHO, spaced / "echo agent.py")
    with SSHPipe(sshd.alias, [str(spaced / "echo agent.py")], config=sshd.config_path,
                 python=sshd.python) as pipe:
        pipe.send("spaced")
        assert pipe.recv(timeout=10) == "spaced"
