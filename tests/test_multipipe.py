"""SSHMultiPipe against the real sshd (and, as root, three namespace hosts)."""
from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from sshpipe import (AgentStartError, PipeBroken, PipeClosed, PipeState, SSHMultiPipe, SSHPipe,
                     serial)
from sshpipe.multipipe import MemberLost, MultiPipeState, StartError

AGENTS = Path(__file__).parent / "agents"
ECHO = str(AGENTS / "echo_agent.py")
START_TIMEOUT = 60.0   # seconds for a start() of a few pipes on a loaded machine
REPLY_TIMEOUT = 15.0   # seconds for one reply


def make_multi(sshd, count: int = 3, **defaults) -> SSHMultiPipe:
    """A multipipe of ``count`` echo agents named p0..p<count-1>, not started."""
    defaults.setdefault("config", sshd.config_path)
    defaults.setdefault("python", sshd.python)
    defaults.setdefault("ready_timeout", 30)
    defaults.setdefault("command", ECHO)
    multi = SSHMultiPipe(**defaults)
    for index in range(count):
        multi.add(f"p{index}", sshd.alias)
    return multi


def recv_all(multi: SSHMultiPipe, count: int):
    return [multi.recv(timeout=REPLY_TIMEOUT) for _ in range(count)]


@pytest.fixture(scope="module")
def running(sshd):
    """Four echo agents started together, shared by the read-mostly tests below."""
    multi = make_multi(sshd, 4)
    assert multi.start(timeout=START_TIMEOUT) == {}
    yield multi
    multi.close(timeout=30)


# -- no SSH needed ----------------------------------------------------------
def test_add_validates_names_and_state(sshd):
    """Duplicate or empty names, per-pipe 'name', and add() after start are refused."""
    multi = SSHMultiPipe({"a": {"host": sshd.alias, "command": ECHO}}, config=sshd.config_path)
    assert multi.names == ["a"] and "a" in multi and len(multi) == 1
    assert isinstance(multi["a"], SSHPipe) and multi["a"].name == "a"
    with pytest.raises(ValueError):
        multi.add("a", sshd.alias, ECHO)
    with pytest.raises(ValueError):
        multi.add("", sshd.alias, ECHO)
    with pytest.raises(TypeError):
        multi.add("b", sshd.alias, ECHO, name="other")
    with pytest.raises(ValueError):  # SSHPipe's own check: a command or a handler
        multi.add("c", sshd.alias)
    with pytest.raises(KeyError, match="'zz'"):
        multi.send("zz", 1)
    with pytest.raises(TypeError):
        SSHMultiPipe({"x": {"command": ECHO}})
    with pytest.raises(ValueError):
        SSHMultiPipe(start_per_host=0)


def test_member_arguments_override_defaults(sshd):
    """A member's command or handler replaces the default one instead of clashing."""
    from sshpipe import SSHPipeHandler

    multi = SSHMultiPipe(config=sshd.config_path, handler=SSHPipeHandler, python="python3")
    assert multi.add("h", sshd.alias).handler is SSHPipeHandler
    with_command = multi.add("c", sshd.alias, ECHO, python="/opt/py")
    assert with_command.command == ECHO and with_command.handler is None


def test_start_error_lists_every_failure_with_its_remote_stderr():
    """StartError's message has one entry per failed pipe, remote stderr indented under it."""
    error = StartError({"a": AgentStartError("h1: ended", "h1", 7, "no config\nbye\n"),
                        "b": TimeoutError("pipe 'b' (h2): not running within 1 s")}, 3)
    assert str(error) == ("2 of 3 pipes did not start:\n"
                          "  a: AgentStartError: h1: ended (exit status 7)\n"
                          "    remote stderr:\n    no config\n    bye\n"
                          "  b: TimeoutError: pipe 'b' (h2): not running within 1 s")
    assert error.total == 3 and set(error.failures) == {"a", "b"}


def test_starts_overlap_within_the_per_host_limit(monkeypatch):
    """start() runs starts in parallel, never more than start_per_host to one host."""
    lock = threading.Lock()
    active: Counter = Counter()
    peaks: Counter = Counter()
    overall = []

    def fake_start(pipe):
        with lock:
            active[pipe.host] += 1
            peaks[pipe.host] = max(peaks[pipe.host], active[pipe.host])
            overall.append(sum(active.values()))
        time.sleep(0.2)  # how long a start takes: the overlap being measured
        with lock:
            active[pipe.host] -= 1
        raise RuntimeError(f"fake start of {pipe.name}")

    monkeypatch.setattr(SSHPipe, "start", fake_start)
    multi = SSHMultiPipe(start_per_host=2, command=ECHO)
    for index in range(5):
        multi.add(f"a{index}", "host-a")
    multi.add("b0", "host-b")
    multi.add("b1", "host-b")
    started = time.monotonic()
    failures = multi.start(timeout=10)
    assert time.monotonic() - started < 1.2  # 3 waves of 0.2 s; one by one takes 1.4 s
    assert peaks == {"host-a": 2, "host-b": 2} and max(overall) == 4
    assert set(failures) == set(multi.names)
    assert str(failures["a3"]) == "fake start of a3"
    assert multi.close() == failures


def test_unstarted_multipipe_close_and_recv(sshd):
    """Before start: send/recv/broadcast refuse; close() gives never-started responses."""
    multi = make_multi(sshd, 2)
    assert multi.state is MultiPipeState.NEW
    assert "new=2" in repr(multi)
    with pytest.raises(PipeClosed):
        multi.recv(timeout=0.1)
    with pytest.raises(PipeClosed):
        multi.broadcast("x")
    with pytest.raises(PipeClosed):
        multi.send("p0", "x")
    results = multi.close()
    assert results == {"p0": (None, "", ""), "p1": (None, "", "")}
    assert multi.close() == results
    with pytest.raises(EOFError):
        multi.recv(timeout=1)
    with pytest.raises(PipeClosed):
        multi.start()


# -- one sshd, many pipes ---------------------------------------------------
def test_start_many_concurrently(running):
    """start() runs every pipe; status and repr count them by state; each agent is its own."""
    assert running.state is MultiPipeState.RUNNING
    assert running.status() == {f"p{i}": PipeState.RUNNING for i in range(4)}
    assert running.running == running.names and running.start_errors == {}
    assert "running=4" in repr(running)
    pids = {running[name].remote_info["pid"] for name in running}
    assert len(pids) == 4


def test_broadcast_reaches_every_pipe_and_serializes_once(running, monkeypatch):
    """broadcast() pickles once and every pipe replies; recv() says which pipe replied."""
    calls = []
    real_dumps = serial.dumps

    def counting_dumps(obj):
        calls.append(obj)
        return real_dumps(obj)

    monkeypatch.setattr("sshpipe.multipipe.serial.dumps", counting_dumps)
    factor = 3
    seqs = running.broadcast(lambda x: x * factor)
    assert set(seqs) == set(running.names) and all(isinstance(s, int) for s in seqs.values())
    assert len(calls) == 1
    assert sorted(recv_all(running, 4)) == [(f"p{i}", 63) for i in range(4)]


def test_send_to_one_pipe_and_recv_in_arrival_order(running):
    """send(name) goes to that pipe only; a slow pipe's reply comes after a fast one's."""
    running.send("p2", ("cmd", "sleep", 0.5))
    running.send("p2", "slow")
    running.send("p1", "fast")
    assert recv_all(running, 2) == [("p1", "fast"), ("p2", "slow")]


def test_recv_times_out_when_nobody_replies(running):
    """recv(timeout) raises TimeoutError within its bound when no pipe replies."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        running.recv(timeout=0.2)
    assert time.monotonic() - started < 2


def test_broadcast_to_named_pipes(running):
    """broadcast(names=...) sends to those pipes only."""
    assert set(running.broadcast("some", names=["p0", "p3"])) == {"p0", "p3"}
    assert sorted(recv_all(running, 2)) == [("p0", "some"), ("p3", "some")]
    with pytest.raises(TimeoutError):
        running.recv(timeout=0.2)


def test_bad_command_fails_alone_and_others_run(sshd):
    """A pipe whose command does not exist fails start() alone; the others run and close."""
    multi = make_multi(sshd, 2)
    multi.add("bad", sshd.alias, "no-such-command-sshpipe")
    multi.add("dies", sshd.alias, str(AGENTS / "broken_agent.py"))
    with pytest.raises(StartError) as info:
        multi.start(timeout=START_TIMEOUT, raise_on_error=True)
    try:
        failures = info.value.failures
        assert set(failures) == {"bad", "dies"} and info.value.total == 4
        assert isinstance(failures["bad"], AgentStartError) and failures["bad"].exitcode == 127
        assert failures["dies"].exitcode == 7 and "missing configuration" in str(info.value)
        assert multi.start_errors == failures
        assert multi.status() == {"p0": PipeState.RUNNING, "p1": PipeState.RUNNING,
                                  "bad": PipeState.BROKEN, "dies": PipeState.BROKEN}
        assert "running=2 broken=2" in repr(multi)
        assert set(multi.broadcast("hello")) == {"p0", "p1"}
        assert sorted(recv_all(multi, 2)) == [("p0", "hello"), ("p1", "hello")]
    finally:
        results = multi.close(timeout=30)
    assert results["p0"] == (0, "", "") and results["p1"] == (0, "", "")
    assert results["bad"] is failures["bad"] and results["dies"] is failures["dies"]
    with pytest.raises(EOFError):
        multi.recv(timeout=5)


def test_start_timeout_kills_pipes_not_running_in_time(sshd):
    """A pipe whose agent never says hello is killed at start()'s timeout and reported."""
    multi = make_multi(sshd, 0)
    multi.add("silent", sshd.alias, "sleep 10")
    started = time.monotonic()
    failures = multi.start(timeout=1.5)
    assert time.monotonic() - started < 12
    assert isinstance(failures["silent"], TimeoutError)
    assert "'silent'" in str(failures["silent"])
    assert multi.status() == {"silent": PipeState.BROKEN}
    assert multi.close(timeout=10) == {"silent": failures["silent"]}
    with pytest.raises(EOFError):
        multi.recv(timeout=1)


def test_agent_dying_mid_run_is_reported_once_and_others_go_on(sshd):
    """An agent that exits mid-run raises MemberLost (name, response) once; others go on."""
    with make_multi(sshd, 3) as multi:
        multi.send("p1", ("cmd", "exit", 9))
        later = multi.send("p1", "never handled")
        with pytest.raises(MemberLost) as info:
            multi.recv(timeout=REPLY_TIMEOUT)
        lost = info.value
        assert lost.name == "p1" and lost.response.exitcode == 9
        assert later in lost.response.unhandled and isinstance(lost, PipeBroken)
        assert multi.status()["p1"] is PipeState.CLOSED
        sent = multi.broadcast("still here")
        assert isinstance(sent["p1"], PipeClosed)
        assert sorted(recv_all(multi, 2)) == [("p0", "still here"), ("p2", "still here")]
        results = multi.close(timeout=30)
    assert [results[n].exitcode for n in ("p0", "p1", "p2")] == [0, 9, 0]
    assert results["p0"].unhandled == () and results["p2"].unhandled == ()


def test_broadcast_term_then_close_leaves_nothing_unhandled(sshd):
    """Broadcasting the term message ends every agent; close() sends no second one."""
    multi = make_multi(sshd, 2)
    multi.start(timeout=START_TIMEOUT)
    multi.broadcast("x")
    multi.broadcast("TERM")
    results = multi.close(timeout=30)
    assert {name: (r.exitcode, r.unhandled) for name, r in results.items()} == \
        {"p0": (0, ()), "p1": (0, ())}
    assert sorted(recv_all(multi, 2)) == [("p0", "x"), ("p1", "x")]
    with pytest.raises(EOFError):
        multi.recv(timeout=5)


def test_killed_pipe_child_is_lost_with_cause_under_spawn(sshd):
    """Under spawn (mp_context=, the global start method untouched), killing one
    pipe's child raises MemberLost with the PipeBroken as cause."""
    before = multiprocessing.get_start_method(allow_none=True)
    with make_multi(sshd, 2, mp_context=multiprocessing.get_context("spawn")) as multi:
        assert multi["p0"].pid is not None
        multi["p0"].kill()
        with pytest.raises(MemberLost) as info:
            multi.recv(timeout=REPLY_TIMEOUT)
        assert info.value.name == "p0" and info.value.response is None
        assert isinstance(info.value.__cause__, PipeBroken)
        multi.send("p1", "ok")
        assert multi.recv(timeout=REPLY_TIMEOUT) == ("p1", "ok")
        results = multi.close(timeout=30)
    assert isinstance(results["p0"], PipeBroken) and results["p1"].exitcode == 0
    # The global method stays what it was (or the platform's default, once asked).
    assert multiprocessing.get_start_method(allow_none=True) in (before, "fork", "forkserver")


def test_second_close_honours_its_timeout_issue_11(sshd):
    """While one thread's close() waits for a stuck agent, another thread's
    close(timeout=1) raises TimeoutError in about a second instead of waiting."""
    multi = make_multi(sshd, 1)
    assert multi.start(timeout=START_TIMEOUT) == {}
    multi.send("p0", ("cmd", "sleep", 8))
    first = threading.Thread(target=multi.close, kwargs={"timeout": 3})
    first.start()
    try:
        wait_for = time.monotonic() + 5
        while multi.state is not MultiPipeState.CLOSING and time.monotonic() < wait_for:
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            multi.close(timeout=1)
        assert time.monotonic() - started < 2.5
    finally:
        first.join(60)
    assert not first.is_alive()
    assert set(multi.close(timeout=1)) == {"p0"}


def test_close_timeout_bounds_a_stuck_member_issue_11(sshd):
    """close(timeout=) returns within timeout + CLOSE_GRACE (+ a kill) even when
    an agent is stuck in its handler, and reports every member."""
    from sshpipe.multipipe import CLOSE_GRACE

    from sshpipe.testing import is_alive, process_id

    multi = make_multi(sshd, 2)
    assert multi.start(timeout=START_TIMEOUT) == {}
    agent = process_id(multi["p0"].remote_info["pid"])
    multi.send("p0", ("cmd", "sleep", 12))
    started = time.monotonic()
    results = multi.close(timeout=1)
    assert time.monotonic() - started < 1 + CLOSE_GRACE + 8
    assert set(results) == {"p0", "p1"} and results["p1"].exitcode == 0
    # A handler stuck past close() outlives its session until it returns (the
    # agent's own business, not the multipipe's): wait for it, so that nothing
    # is left running.
    deadline = time.monotonic() + 30
    while is_alive(agent) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not is_alive(agent)


def test_unread_replies_are_bounded_and_none_lost_issue_11(sshd, monkeypatch):
    """Replies nobody reads wait in a bounded queue (the readers, hence the
    agents, wait past MAX_EVENTS); once read, every one arrives, in order."""
    import sshpipe.multipipe as multipipe_module

    monkeypatch.setattr(multipipe_module, "MAX_EVENTS", 5)
    with make_multi(sshd, 1) as multi:
        for index in range(40):
            multi.send("p0", index)
        multi["p0"].flush(timeout=REPLY_TIMEOUT)
        time.sleep(0.3)  # let the reader run ahead as far as it may
        assert multi._events._replies <= 5  # the queue itself, bounded
        assert [multi.recv(timeout=REPLY_TIMEOUT) for _ in range(40)] == \
            [("p0", index) for index in range(40)]
        multi.close(timeout=30)


# -- core bugs found while building SSHMultiPipe (fixed in sshpipe/pipe.py) ----
def test_pipe_child_death_seen_while_sibling_pipe_runs(sshd):
    """Killing one pipe's child breaks that pipe even while another pipe runs (fork)."""
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("fork", force=True)
    first = SSHPipe(sshd.alias, ECHO, config=sshd.config_path, python=sshd.python)
    second = SSHPipe(sshd.alias, ECHO, config=sshd.config_path, python=sshd.python)
    try:
        first.start()
        second.start()
        second.kill()
        with pytest.raises(PipeBroken):
            second.response(timeout=2)
    finally:
        multiprocessing.set_start_method(previous, force=True)
        first.close(timeout=10)
    with pytest.raises(PipeBroken):
        second.close(timeout=10)


def test_close_after_term_sent_with_send_bytes_reports_nothing_unhandled(sshd):
    """A term message sent as bytes ends the agent; close() adds no unhandled message."""
    pipe = SSHPipe(sshd.alias, ECHO, config=sshd.config_path, python=sshd.python)
    pipe.start()
    pipe.send_bytes(serial.dumps("TERM"))
    response = pipe.close(timeout=30)
    assert response.exitcode == 0 and response.unhandled == ()


# Regression: the stderr reader used to stop at the channel's 1 s read timeout (fixed in
# 4a5dd4b); a slow agent's AgentStartError then had no stderr.
def test_late_stderr_reaches_the_caller(sshd):
    """stderr written after more than a second of silence still reaches response().stderr."""
    pipe = SSHPipe(sshd.alias, ECHO, config=sshd.config_path, python=sshd.python)
    pipe.start()
    time.sleep(1.5)  # the fault: more than a second of silence on the channel
    pipe.send(("cmd", "stderr", "late\n"))
    assert pipe.close(timeout=30).stderr == "late\n"


# -- three real hosts (root only) --------------------------------------------
@pytest.mark.netns
def test_three_namespace_hosts_and_one_link_down(netns_hosts):
    """One pipe per namespace host; cutting one host's link loses that pipe alone."""
    multi = SSHMultiPipe(config=netns_hosts.config_path, command=ECHO,
                         python=netns_hosts[0].server.python, ready_timeout=30, heartbeat=0.5)
    for host in netns_hosts:
        multi.add(host.alias, host.alias)
    try:
        assert multi.start(timeout=START_TIMEOUT) == {}
        multi.broadcast(("cmd", "pid"))
        pids = dict(recv_all(multi, 3))
        assert set(pids) == {"host0", "host1", "host2"}
        assert pids == {name: multi[name].remote_info["pid"] for name in multi}
        netns_hosts.link_down(1)
        try:
            with pytest.raises(MemberLost) as info:
                multi.recv(timeout=REPLY_TIMEOUT)
            assert info.value.name == "host1"
        finally:
            netns_hosts.link_up(1)
        multi.broadcast("after", names=["host0", "host2"])
        assert sorted(recv_all(multi, 2)) == [("host0", "after"), ("host2", "after")]
    finally:
        results = multi.close(timeout=20)
    assert results["host0"].exitcode == 0 and results["host2"].exitcode == 0
    assert isinstance(results["host1"], PipeBroken)
