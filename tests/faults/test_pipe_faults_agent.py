"""Agent-side faults: the agent killed, exiting inside each hook, and serialization
failing at each of its four points (caller dumps, agent loads, agent reply)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from faultkit import (BOUND, FAULT_AGENT, assert_gone, check_accounting, drain, make_pipe,
                      record, send_while_open, settle, unhandled_in)
from sshpipe import PipeBroken, PipeClosed, PipeState
from sshpipe.testing import process_id, send_signal, wait_gone


class FailsToPickle:
    """Raises while the caller serializes it."""

    def __reduce__(self):
        raise RuntimeError("cannot pickle this on purpose")


class FailsToUnpickle:
    """Pickles fine; raises while the agent deserializes it (int("nope"))."""

    def __reduce__(self):
        return (int, ("nope",))


class ExitsWhileUnpickled:
    """Pickles fine; unpickling calls os._exit(21) in the agent."""

    def __reduce__(self):
        return (os._exit, (21,))


def test_agent_sigkill_mid_stream(sshd, method):
    """SIGKILL of the remote agent while messages stream: the pipe ends within the
    bound, the exit code says killed, and every sent message is handled or unhandled."""
    pipe = make_pipe(sshd)
    pipe.start()
    agent_pid = pipe.remote_info["pid"]
    sent = {}
    for n in range(60):
        sent[pipe.send(("cmd", "slow_echo", n, 0.02))] = n
    first = pipe.recv(timeout=10)
    assert first == 0
    os.kill(agent_pid, signal.SIGKILL)
    killed = time.monotonic()
    for n in range(60, 80):  # still sending into the dying pipe
        try:
            sent[pipe.send(("cmd", "slow_echo", n, 0.02), timeout=5)] = n
        except (PipeBroken, PipeClosed):
            break
    seconds, outcome = settle(pipe)
    seconds = time.monotonic() - killed
    replies = [first] + drain(pipe)
    by_value = {n: seq for seq, n in sent.items()}
    replied = {by_value[n] for n in replies}
    acked = set(range(1, max(sent) - pipe.pending + 1))
    if isinstance(outcome, PipeBroken):
        unhandled, result = unhandled_in(outcome), "PipeBroken"
    else:
        unhandled, result = outcome.unhandled, f"Response exitcode={outcome.exitcode}"
    overlap = check_accounting(list(sent), acked | replied, unhandled)
    record("agent SIGKILL mid-stream", method, seconds,
           f"{result}; {len(replied)} replied, {len(unhandled)} unhandled "
           f"({len(overlap)} replied but unacked)")
    assert replied <= set(sent)
    assert not (set(unhandled) & acked), "a message was acked and reported unhandled"
    assert seconds < BOUND
    assert pipe.state in (PipeState.CLOSED, PipeState.BROKEN)
    assert not isinstance(outcome, PipeBroken), outcome
    assert outcome.exitcode not in (0, None), outcome


def test_agent_killed_by_signal_has_negative_signal_exitcode_issue_8(sshd):
    """An agent killed with SIGKILL gives response().exitcode == -9 (Process semantics)."""
    pipe = make_pipe(sshd)
    pipe.start()
    os.kill(pipe.remote_info["pid"], signal.SIGKILL)
    seconds, outcome = settle(pipe)
    assert not isinstance(outcome, PipeBroken), outcome
    assert outcome.exitcode == -signal.SIGKILL, outcome


@pytest.mark.parametrize("hook, how, status", [
    ("atstart", "os_exit", 12), ("atstart", "sys_exit", 12),
    ("handle", "os_exit", 13), ("handle", "sys_exit", 13),
    ("atexit", "os_exit", 14), ("atexit", "sys_exit", 14),
])
def test_agent_exits_inside_a_hook(sshd, method, hook, how, status):
    """An agent that exits (os._exit or sys.exit) inside atstart, handle or atexit:
    the pipe ends at once with that status and every message is accounted for."""
    fault = f"{hook}:{how}" if hook != "handle" else "none"
    pipe = make_pipe(sshd, command=[sshd.python, FAULT_AGENT, fault])
    pipe.start()
    seqs = send_while_open(pipe, range(3))  # atstart ends the agent on the first
    if hook == "handle":
        seqs.append(pipe.send(("cmd", "exit", how, status)))
        seqs += send_while_open(pipe, range(3, 5))
    if hook == "atexit":
        seqs.append(pipe.send("TERM"))
    seconds, outcome = settle(pipe)
    replies = drain(pipe)
    record(f"agent {how} in {hook}", method, seconds,
           f"exitcode={getattr(outcome, 'exitcode', outcome)!r}")
    assert not isinstance(outcome, PipeBroken), outcome
    assert outcome.exitcode == status
    # atstart exits before the first message is handled: all unhandled. handle: the
    # fatal message and those after it. atexit: every message was handled.
    expected_unhandled = {"atstart": seqs, "handle": seqs[3:], "atexit": []}[hook]
    # Nothing that was not handled may be missing from unhandled (a handled message
    # listed there too, handled without output just before the end, is at-least-once).
    assert set(expected_unhandled) <= set(outcome.unhandled)
    # os._exit loses the agent's unflushed output, so replies may be missing; those
    # messages must then be listed unhandled.
    replied = [seqs[n] for n in replies]
    assert replies == list(range(len(replies))) and len(replies) <= 3
    if hook == "atstart":
        assert replies == []
    acked = range(1, seqs[-1] - pipe.pending + 1)
    check_accounting(seqs, replied + list(acked), outcome.unhandled)
    assert seconds < BOUND


@pytest.mark.parametrize("hook", ["handle", "atexit"])
def test_handled_messages_are_not_reported_unhandled_issue_8(sshd, hook):
    """After the agent dies in a hook, response().unhandled lists no message whose
    reply arrived, nor any message when it dies in atexit (every write of the agent
    carries the ACK of what it handled; it acks before atexit). A message handled
    without output just before the death may still be listed (at least once)."""
    fault = "atexit:os_exit" if hook == "atexit" else "none"
    pipe = make_pipe(sshd, command=[sshd.python, FAULT_AGENT, fault])
    pipe.start()
    seqs = [pipe.send(n) for n in range(3)]
    # While the handler sleeps, the agent's ticker flushes the three replies.
    seqs.append(pipe.send(("cmd", "sleep", 0.5)))
    last = pipe.send(("cmd", "exit", "os_exit", 13) if hook == "handle" else "TERM")
    seconds, outcome = settle(pipe)
    assert drain(pipe) == [0, 1, 2]
    assert not set(outcome.unhandled) & set(seqs[:3])
    if hook == "handle":
        assert last in outcome.unhandled and set(outcome.unhandled) <= {seqs[3], last}
    else:
        assert list(outcome.unhandled) == []
    record(f"replied/acked not reported unhandled (os._exit in {hook})", "fork", seconds,
           f"unhandled={list(outcome.unhandled)}")


@pytest.mark.parametrize("how", ["os_exit", "sys_exit"])
def test_agent_exit_with_live_child_reports_its_status_issue_8(sshd, how):
    """An agent that exits in handle() while its child runs (holding the session's
    stderr, so no EOF comes) ends the pipe with its exit status (a Response) within
    the bound, not as a broken pipe; with sys.exit the child is ended too."""
    pipe = make_pipe(sshd, command=[sshd.python, FAULT_AGENT, "none"])
    pipe.start()
    pipe.send(("cmd", "spawn_exit", how, 13))
    child = process_id(pipe.recv(timeout=10)[1])
    try:
        seconds, outcome = settle(pipe)
        child_left = bool(wait_gone([child], BOUND))
        record(f"agent {how} in handle with a live child", "fork", seconds,
               f"exitcode={getattr(outcome, 'exitcode', outcome)!r}; handler's child "
               f"{'LEFT RUNNING' if child_left else 'gone'}")
        assert not isinstance(outcome, PipeBroken), outcome
        assert outcome.exitcode == 13
        assert seconds < BOUND
    finally:
        send_signal(child, signal.SIGKILL)
        pipe.close(timeout=10)


def test_handler_sys_exit_takes_its_children_along_issue_8(sshd):
    """sys.exit() in handle(): the agent still ends its own children (as it does on
    every orderly end) and reports the exit status."""
    pipe = make_pipe(sshd, command=[sshd.python, FAULT_AGENT, "none"])
    pipe.start()
    pipe.send(("cmd", "spawn_exit", "sys_exit", 13))
    agent, child = pipe.recv(timeout=10)
    # The agent exits 0.3 s after its reply: it may be gone before it is identified.
    agent, child = process_id(agent, gone_ok=True), process_id(child)
    try:
        assert_gone([agent], 10)
        assert_gone([child], 5)
    finally:
        send_signal(child, signal.SIGKILL)
        pipe.close(timeout=10)


@pytest.mark.parametrize("how", ["sigkill", "os_exit"])
def test_agent_dying_abruptly_takes_its_children_issue_8(sshd, how):
    """However the agent dies, the processes its handler started end with it (the
    zero-install loader's supervisor ends the agent's process group)."""
    pipe = make_pipe(sshd, command=[FAULT_AGENT, "none"])
    pipe.start()
    if how == "sigkill":
        pipe.send(("cmd", "spawn"))
        agent, child = map(process_id, pipe.recv(timeout=10))
        assert send_signal(agent, signal.SIGKILL)
    else:
        pipe.send(("cmd", "spawn_exit", "os_exit", 13))
        agent, child = pipe.recv(timeout=10)
        # The agent exits 0.3 s after its reply: it may be gone before it is identified.
        agent, child = process_id(agent, gone_ok=True), process_id(child)
    try:
        settle(pipe)
        assert_gone([agent], BOUND)
        assert_gone([child], BOUND)
    finally:
        send_signal(child, signal.SIGKILL)
        try:
            pipe.close(timeout=10)
        except PipeBroken:
            pass


def test_caller_serialization_error_raises_in_send_and_sends_nothing(sshd, method):
    """An object that fails to pickle raises its own error in send(); no sequence
    number is used up and the pipe goes on."""
    with make_pipe(sshd) as pipe:
        first = pipe.send("a")
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="on purpose"):
            pipe.send(FailsToPickle())
        seconds = time.monotonic() - started
        second = pipe.send("b")
        assert second == first + 1
        assert [pipe.recv(timeout=10), pipe.recv(timeout=10)] == ["a", "b"]
        response = pipe.close(timeout=30)
    record("exception while caller serializes", method, seconds, "RuntimeError from send()")
    assert response.exitcode == 0 and response.unhandled == () and response.errors == ()


@pytest.mark.parametrize("tolerance", [0, -1])
def test_agent_deserialization_error_is_an_error_of_that_message(sshd, method, tolerance):
    """A message that fails to unpickle in the agent is reported as an error of its
    seq (where=loads); tolerance 0 ends the agent (status 3) with the rest unhandled."""
    pipe = make_pipe(sshd, env={"FAULT_TOLERANCE": str(tolerance)})
    pipe.start()
    ok = pipe.send("before")
    bad = pipe.send(FailsToUnpickle())
    after = send_while_open(pipe, range(3))
    if tolerance:
        pipe.send("TERM")
    seconds, response = settle(pipe)
    replies = drain(pipe)
    record(f"exception while agent deserializes (tolerance {tolerance})", method, seconds,
           f"RemoteError seq {bad}, exitcode={getattr(response, 'exitcode', response)!r}")
    assert not isinstance(response, PipeBroken), response
    (error,) = response.errors
    assert error.seq == bad and "ValueError" in str(error) and "loads" in str(error)
    if tolerance == 0:
        assert response.exitcode == 3
        assert list(response.unhandled) == after and replies == ["before"]
    else:
        assert response.exitcode == 0 and response.unhandled == ()
        assert replies == ["before", 0, 1, 2]
    check_accounting([ok, bad] + after, [ok] + ([] if tolerance == 0 else after),
                     response.unhandled, [e.seq for e in response.errors])


def test_agent_exiting_while_deserializing(sshd, method):
    """A message whose unpickling kills the agent (os._exit in a reduce): the pipe ends
    with that status and the message and everything after it are unhandled."""
    pipe = make_pipe(sshd)
    pipe.start()
    ok = pipe.send("fine")
    assert pipe.recv(timeout=10) == "fine"
    rest = [pipe.send(ExitsWhileUnpickled())] + send_while_open(pipe, range(3))
    seconds, response = settle(pipe)
    record("agent exits while deserializing", method, seconds,
           f"exitcode={getattr(response, 'exitcode', response)!r}")
    assert not isinstance(response, PipeBroken), response
    assert response.exitcode == 21
    assert list(response.unhandled) == rest
    check_accounting([ok] + rest, [ok], response.unhandled)
    assert seconds < BOUND


@pytest.mark.parametrize("tolerance", [0, -1])
def test_reply_serialization_error_is_an_error_of_that_message(sshd, method, tolerance):
    """reply() of an object that cannot be pickled is an error of the message being
    handled; nothing half-written reaches the stream and later replies are intact."""
    pipe = make_pipe(sshd, env={"FAULT_TOLERANCE": str(tolerance)})
    pipe.start()
    first = pipe.send("one")
    bad = pipe.send(("cmd", "reply_unpicklable"))
    after = send_while_open(pipe, range(3))
    if tolerance:
        pipe.send("TERM")
    seconds, response = settle(pipe)
    replies = drain(pipe)
    record(f"exception while agent sends a reply (tolerance {tolerance})", method, seconds,
           f"RemoteError seq {bad}, exitcode={getattr(response, 'exitcode', response)!r}")
    assert not isinstance(response, PipeBroken), response
    assert [e.seq for e in response.errors] == [bad]
    if tolerance == 0:
        assert response.exitcode == 3 and list(response.unhandled) == after
        assert replies == ["one"]
    else:
        assert response.exitcode == 0 and replies == ["one", 0, 1, 2]
    check_accounting([first, bad] + after, [first] + (after if tolerance else []),
                     response.unhandled, [bad])

