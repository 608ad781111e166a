"""Promises of the pipe's API that no other test pins down: a failed agent's error
from recv() and iteration, a handler without stdout, a raising callback, the
handler dropped after start(), and timeouts held while another thread waits."""
from __future__ import annotations

import gc
import threading
import time
import weakref
from pathlib import Path

import pytest

from sshpipe import RemoteError, SSHPipe
from sshpipe import agent as _agent
from sshpipe.testing import descendants, process_name, wait_gone

from pipe_transports import transport  # noqa: F401 (autouse: each test per transport)

AGENTS = Path(__file__).parent / "agents"
ECHO = str(AGENTS / "echo_agent.py")
BOUND = 1.0  # what a timed call may take past its timeout on a loaded machine


@pytest.fixture
def zi_handlers(monkeypatch):
    """The handlers' module, importable here so that modules= can ship it."""
    monkeypatch.syspath_prepend(str(AGENTS))
    import zi_handlers

    return zi_handlers


@pytest.fixture
def no_stdout(zi_handlers):
    return zi_handlers.NoStdout


def make_pipe(sshd, command=ECHO, **kwargs) -> SSHPipe:
    kwargs.setdefault("python", sshd.python)
    kwargs.setdefault("ready_timeout", 30)
    return SSHPipe(sshd.alias, command, config=sshd.config_path, **kwargs)


def test_recv_raises_the_agents_failure_once_then_eof(sshd):
    """After the replies sent before a handler failed, recv() raises the failure
    (RemoteError with the remote traceback) once, then EOFError as after a clean end."""
    with make_pipe(sshd) as pipe:
        pipe.send("before")
        pipe.send(("cmd", "raise", "on purpose"))
        assert pipe.recv(timeout=10) == "before"
        with pytest.raises(RemoteError) as caught:
            pipe.recv(timeout=10)
        assert "on purpose" in str(caught.value.remote_traceback)
        assert caught.value.host == sshd.alias
        with pytest.raises(EOFError):
            pipe.recv(timeout=10)
        assert pipe.join(30) is None and pipe.exitcode not in (0, None)


def test_iterating_a_pipe_yields_every_reply_then_ends(sshd):
    """``for reply in pipe`` yields each reply and stops when the agent ends."""
    with make_pipe(sshd, term_message="TERM") as pipe:
        for item in range(5):
            pipe.send(item)
        pipe.send("TERM")
        assert list(pipe) == list(range(5))


def test_iterating_a_failed_pipe_raises_its_failure(sshd):
    """Iteration raises the agent's failure after the replies that preceded it."""
    with make_pipe(sshd) as pipe:
        pipe.send(1)
        pipe.send(("cmd", "raise", "mid-stream"))
        seen = []
        with pytest.raises(RemoteError):
            for reply in pipe:
                seen.append(reply)
        assert seen == [1]


@pytest.mark.parametrize("how", ["none", "closed"])
def test_a_handler_without_stdout_still_replies_and_ends_cleanly(sshd, how, no_stdout):
    """A handler that set sys.stdout to None or closed it keeps its pipe: the
    protocol does not ride on sys.stdout, and the agent's own flushes at its end
    do not fail it."""
    pipe = SSHPipe(sshd.alias, handler=no_stdout, modules=["zi_handlers"],
                   config=sshd.config_path, python=sshd.python, ready_timeout=30)
    pipe.start()
    pipe.send(how)
    if how == "none":
        assert pipe.recv(timeout=10) == how
        pipe.send("again")
        assert pipe.recv(timeout=10) == "again"
        response = pipe.close(timeout=30)
        assert response.exitcode == 0, response
    else:  # print() to a closed file raises: a handler error, reported as one
        with pytest.raises(RemoteError) as caught:
            pipe.recv(timeout=10)
        assert "closed file" in str(caught.value.remote_traceback)
        response = pipe.close(timeout=30)
        assert response.exitcode not in (0, None)


def test_a_thread_left_by_the_handler_does_not_keep_the_agent(sshd, zi_handlers):
    """A non-daemon thread that would keep the interpreter from exiting (600 s)
    costs close() the agent's SHUTDOWN_GRACE, not its timeout: the agent then
    ends hard with its own status, names the thread on stderr, and nothing of
    it is left on the host."""
    before = set(descendants(sshd.process))
    pipe = SSHPipe(sshd.alias, handler=zi_handlers.LeavesAThread, modules=["zi_handlers"],
                   config=sshd.config_path, python=sshd.python, ready_timeout=30)
    pipe.start()
    pipe.send("x")
    assert pipe.recv(timeout=10) == "x"
    started = time.monotonic()
    response = pipe.close(timeout=30)
    took = time.monotonic() - started
    assert response.exitcode == 0, response
    assert "forgotten-sleeper" in response.stderr
    assert _agent.SHUTDOWN_GRACE - 0.5 < took < _agent.SHUTDOWN_GRACE + 3 * BOUND
    left = [p for p in descendants(sshd.process) if p not in before]
    assert wait_gone([p for p in left if not process_name(p).startswith("sshd")], 5) == []


def test_a_raising_callback_does_not_break_the_pipe(sshd):
    """An exception in callback= is logged, not raised into the pipe: the end is
    still reported, response() and join() work."""
    called = threading.Event()

    def callback(exitcode, stdout, stderr):
        called.set()
        raise RuntimeError("callback failed on purpose")

    pipe = make_pipe(sshd, callback=callback)
    pipe.start()
    pipe.send("x")
    assert pipe.recv(timeout=10) == "x"
    response = pipe.close(timeout=30)
    assert response.exitcode == 0
    assert called.wait(10)
    assert pipe.exitcode == 0


def test_the_handler_instance_is_not_kept_after_start(sshd, no_stdout):
    """Like Process with its target (bpo-30775): once start() sent the handler,
    the pipe holds no reference to it, so the caller's object can be freed."""
    handler = no_stdout()
    ref = weakref.ref(handler)
    pipe = SSHPipe(sshd.alias, handler=handler, modules=["zi_handlers"],
                   config=sshd.config_path, python=sshd.python, ready_timeout=30)
    pipe.start()
    try:
        del handler
        gc.collect()
        assert ref() is None
        pipe.send("ok")
        assert pipe.recv(timeout=10) == "ok"
    finally:
        pipe.close(timeout=30)


def _timed(call, *args, **kwargs):
    start = time.monotonic()
    try:
        call(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 (the error is part of the result)
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


def test_recv_flush_and_join_hold_their_timeouts_while_another_thread_waits(sshd):
    """With a second thread blocked in recv() (no timeout) on a busy agent, this
    thread's recv(), poll(), flush() and join() each return or raise within
    their timeout plus a small bound."""
    with make_pipe(sshd) as pipe:
        pipe.send(("cmd", "sleep", 30))  # busy: no reply, nothing handled for 30 s
        blocked = threading.Thread(target=_timed, args=(pipe.recv,), daemon=True)
        blocked.start()
        time.sleep(0.2)  # let it take the reply side
        took, error = _timed(pipe.recv, timeout=0.5)
        assert isinstance(error, TimeoutError) and took < 0.5 + BOUND, (took, error)
        took, error = _timed(pipe.poll, 0.5)
        assert error is None and took < 0.5 + BOUND, (took, error)
        took, error = _timed(pipe.flush, timeout=0.5)
        assert isinstance(error, TimeoutError) and took < 0.5 + BOUND, (took, error)
        took, error = _timed(pipe.join, 0.5)
        assert error is None and took < 0.5 + BOUND and pipe.is_alive(), (took, error)
        took, error = _timed(pipe.close, timeout=1)
        assert took < 1 + 2 * BOUND + 2.0, (took, error)  # + the supervisor's grace
        blocked.join(10)
        assert not blocked.is_alive()


def test_response_keeps_1000_errors_and_counts_the_rest(sshd):
    """An agent that survives every failing message (tolerance -1): response()
    keeps the first ERRORS_KEPT errors and counts the others in dropped."""
    from sshpipe._response import ERRORS_KEPT

    extra = 7
    pipe = make_pipe(sshd, env={"ECHO_TOLERANCE": "-1"})
    pipe.start()
    for index in range(ERRORS_KEPT + extra):
        pipe.send(("cmd", "raise", f"failure {index}"))
    pipe.send("after")
    assert pipe.recv(timeout=60) == "after"
    response = pipe.close(timeout=30)
    assert response.exitcode == 0
    assert len(response.errors) == ERRORS_KEPT
    assert "failure 0" in str(response.errors[0].remote_traceback)
    assert response.dropped.get("errors") == extra


def test_a_forked_child_keeps_its_ends_when_another_pipes_fd_number_is_reused(sshd):
    """Another pipe's end that a caller's thread was closing as the fork happened
    (its fd closed, its Connection not yet told) may name, by the time the child
    runs, one of the new pipe's own ends: the child closes that other pipe's
    copies only where the number still holds them, so the new pipe starts."""
    import multiprocessing
    import os

    from sshpipe import _ends

    other = make_pipe(sshd)  # never started: its ends exist in this process
    half_closed = other._ends.event_reader
    number = half_closed.fileno()
    os.close(number)  # Connection.close() closes the fd first, then drops the handle
    try:
        pipe = make_pipe(sshd, mp_context=multiprocessing.get_context("fork"))
        ends = pipe._ends
        assert number in [getattr(ends, name).fileno() for name in
                          ("request_reader", "request_writer", "event_reader", "event_writer")]
        with pipe:
            pipe.send("alive")
            assert pipe.recv(timeout=10) == "alive"
    finally:
        _ends._forget(half_closed)
        other.close()


def test_pipes_started_at_once_under_fork_close_without_waiting_for_each_other(sshd):
    """Children forked by threads starting pipes at once do not inherit each
    other's sentinel: each close() sees its own child exit at once, instead of
    waiting out its grace (then SIGTERM, SIGKILL: 3 s) for a child long gone."""
    import multiprocessing

    from sshpipe import _process

    context = multiprocessing.get_context("fork")
    pipes = [make_pipe(sshd, mp_context=context) for _ in range(10)]
    threads = [threading.Thread(target=pipe.start) for pipe in pipes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    slow = []
    for pipe in pipes:
        started = time.monotonic()
        response = pipe.close(timeout=30)
        took = time.monotonic() - started
        assert response.exitcode == 0, response
        if took > _process.KILL_GRACE + BOUND:
            slow.append(round(took, 2))
    assert slow == []
