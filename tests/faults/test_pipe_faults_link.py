"""Connection faults: sshd killed under a live pipe, a namespace host's link cut (a
dead peer only heartbeats reveal) and restored, refused, unknown and blackholed hosts."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from faultkit import (BOUND, DEAD_BOUND, SLACK, assert_gone, check_accounting, drain,
                      make_pipe, record, settle, unhandled_in)
from sshpipe import (ConnectError, ConnectTimeout, PipeBroken, PipeState,
                     SSHPipe)
from sshpipe.testing import LocalSSHServer, free_port, owned_sshd_pids, process_id, send_signal


def _sshd_pids(server: LocalSSHServer):
    """The listener and its per-connection sshd processes (not the agent)."""
    listener = process_id(server.pid)
    return [listener] + owned_sshd_pids(listener)


def _stream(pipe, count, start=0):
    return {pipe.send(("cmd", "slow_echo", n, 0.01)): n for n in range(start, start + count)}




def _kill_sshd_mid_stream():
    """Stream into a pipe, SIGKILL its sshd; return (seconds to detect, outcome, sent,
    replied seqs, acked seqs, seconds until the agent was gone)."""
    with LocalSSHServer(alias="doomed") as server:
        pipe = make_pipe(server)
        pipe.start()
        agent = process_id(pipe.remote_info["pid"])
        sent = _stream(pipe, 100)
        assert pipe.recv(timeout=10) == 0
        for sshd in _sshd_pids(server):
            send_signal(sshd, signal.SIGKILL)
        killed = time.monotonic()
        _, outcome = settle(pipe)
        seconds = time.monotonic() - killed
        replies = [0] + drain(pipe)
        assert_gone([agent], BOUND)
        agent_gone = time.monotonic() - killed
    by_value = {n: seq for seq, n in sent.items()}
    acked = range(1, max(sent) - pipe.pending + 1)
    return seconds, outcome, sent, [by_value[n] for n in replies], acked, agent_gone


def test_sshd_killed_mid_stream_issue_8(method):
    """SIGKILL of sshd (listener and per-connection process) under a streaming pipe:
    PipeBroken within the bound, every message accounted for, and the agent gone."""
    seconds, outcome, sent, replied, acked, agent_gone = _kill_sshd_mid_stream()
    broken = isinstance(outcome, PipeBroken)
    record("sshd SIGKILL mid-stream", method, seconds,
           ("PipeBroken" if broken else f"Response exitcode={outcome.exitcode!r}")
           + f"; agent gone {agent_gone:.2f} s after the kill")
    unhandled = unhandled_in(outcome) if broken else outcome.unhandled
    check_accounting(list(sent), list(replied) + list(acked), unhandled)
    assert seconds < BOUND and agent_gone < BOUND
    # issue 8: a lost connection is a broken pipe, not an agent that exited.
    assert broken, f"a killed sshd ended the pipe as if the agent had exited: {outcome!r}"


@pytest.mark.netns
def test_link_down_is_detected_by_heartbeat_and_host_usable_after_link_up(netns_hosts,
                                                                           method):
    """Cutting a namespace host's link (no RST, no FIN: a dead peer) breaks the pipe
    within the heartbeat bound on the caller side, the agent ends on its side too, and
    the host works again once the link is back."""
    host = netns_hosts[0]
    pipe = SSHPipe(host.alias, command=[host.server.python,
                                        os.path.join(os.path.dirname(__file__), "agents",
                                                     "fault_agent.py")],
                   config=netns_hosts.config_path, heartbeat=0.5, ready_timeout=30)
    pipe.start()
    agent = process_id(pipe.remote_info["pid"])
    sent = {pipe.send(n): n for n in range(20)}
    assert [pipe.recv(timeout=10) for _ in range(20)] == list(range(20))
    pipe.flush(timeout=10)
    netns_hosts.link_down(0)
    cut = time.monotonic()
    try:
        # Sent into the void: the dead peer cannot have handled them.
        for n in range(20, 30):
            sent[pipe.send(n, timeout=5)] = n
        _, outcome = settle(pipe)
        seconds = time.monotonic() - cut
        # The agent sees no heartbeat from the caller either and ends (its own bound).
        assert_gone([agent], BOUND + 2)
        agent_gone = time.monotonic() - cut
    finally:
        netns_hosts.link_up(0)
    record("netns link down (dead peer)", method, seconds,
           f"{type(outcome).__name__}; remote agent gone {agent_gone:.2f} s after the cut")
    assert isinstance(outcome, PipeBroken), outcome
    assert "heartbeat" in str(outcome.__cause__ or outcome)
    assert DEAD_BOUND - 0.2 <= seconds < BOUND
    check_accounting(list(sent), range(1, 21), unhandled_in(outcome))
    assert unhandled_in(outcome) == list(range(21, 31))
    with pytest.raises(PipeBroken):
        pipe.send("after")
    with pytest.raises(PipeBroken):  # close() reports how the pipe ended
        pipe.close(timeout=10)
    # Link back: the same host takes a new pipe.
    restored = time.monotonic()
    with SSHPipe(host.alias, command=[host.server.python, os.path.join(
            os.path.dirname(__file__), "agents", "fault_agent.py")],
            config=netns_hosts.config_path, heartbeat=0.5, ready_timeout=30) as again:
        again.send("back")
        assert again.recv(timeout=10) == "back"
    record("netns link up again: new pipe round trip", method, time.monotonic() - restored,
           "ok")


@pytest.mark.netns
def test_short_link_outage_within_bound_is_survived(netns_hosts, method):
    """A link down for less than the heartbeat bound (TCP retransmits) is not a dead
    peer: the pipe goes on and nothing is lost."""
    host = netns_hosts[1]
    with SSHPipe(host.alias, command=[host.server.python, os.path.join(
            os.path.dirname(__file__), "agents", "fault_agent.py")],
            config=netns_hosts.config_path, heartbeat=0.5, ready_timeout=30) as pipe:
        pipe.send("before")
        assert pipe.recv(timeout=10) == "before"
        netns_hosts.link_down(1)
        try:
            for n in range(5):
                pipe.send(n)
            time.sleep(0.15)  # TCP's first retransmission (200 ms) finds it back
        finally:
            netns_hosts.link_up(1)
        started = time.monotonic()
        assert [pipe.recv(timeout=10) for _ in range(5)] == list(range(5))
        recovered = time.monotonic() - started
        response = pipe.close(timeout=30)
    record("netns link down 0.15 s (< bound), then up", method, recovered,
           f"survived, exitcode={response.exitcode}")
    assert response.exitcode == 0 and response.unhandled == ()


def _connect_failure(pipe):
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        pipe.start()
    seconds = time.monotonic() - started
    assert pipe.state is PipeState.BROKEN
    pipe.join(10)
    assert not pipe.is_alive() and pipe.exitcode is not None
    with pytest.raises(PipeBroken):
        pipe.send("x")
    return seconds, info.value


def test_connection_refused(sshd, tmp_path, method):
    """A port nobody listens on: start() raises ConnectError('refused') at once."""
    port = free_port()
    config = tmp_path / "config"
    config.write_text(open(sshd.config_path).read().replace(f"Port {sshd.port}", f"Port {port}"))
    pipe = SSHPipe(sshd.alias, ["true"], config=str(config), heartbeat=0.5)
    seconds, error = _connect_failure(pipe)
    record("connection refused", method, seconds, type(error).__name__)
    assert type(error) is ConnectError and f"port {port} refused" in str(error)
    assert error.host == sshd.alias
    assert seconds < BOUND


def test_unknown_host_name(tmp_path, method):
    """A name that does not resolve: ConnectError naming it."""
    config = tmp_path / "config"
    config.write_text("")
    pipe = SSHPipe("no-such-host.invalid", ["true"], config=str(config), heartbeat=0.5)
    seconds, error = _connect_failure(pipe)
    record("unknown host name", method, seconds, type(error).__name__)
    assert type(error) is ConnectError and "unknown host name" in str(error)
    assert seconds < BOUND


@pytest.mark.netns
def test_connect_timeout_to_blackholed_address(netns_hosts, method):
    """A namespace host that silently drops everything (blackhole route for the way
    back): start() raises ConnectTimeout after connect_timeout, not later."""
    host = netns_hosts[2]
    route = ["ip", "netns", "exec", host.netns, "ip", "route"]
    subprocess.run(route + ["add", "blackhole", f"{netns_hosts.gateway}/32"], check=True)
    try:
        pipe = SSHPipe(host.alias, ["true"], config=netns_hosts.config_path, heartbeat=0.5,
                       connect_timeout=2)
        seconds, error = _connect_failure(pipe)
    finally:
        subprocess.run(route + ["del", "blackhole", f"{netns_hosts.gateway}/32"], check=True)
    record("connect timeout (blackholed netns host, connect_timeout=2)", method, seconds,
           type(error).__name__)
    assert isinstance(error, ConnectTimeout) and "timed out after 2 s" in str(error)
    assert 1.8 <= seconds < 2 + SLACK


@pytest.mark.netns
def test_link_cut_under_a_busy_handler_ends_agent_and_children(netns_hosts, method):
    """issue 11: with handle() busy (and a child process of it running), a link cut
    longer than the heartbeat bound breaks the pipe on the caller's side and ends
    the remote agent and its child within the same bound (not TCP's ~15 min)."""
    host = netns_hosts[2]
    agent_path = os.path.join(os.path.dirname(__file__), "agents", "fault_agent.py")
    pipe = SSHPipe(host.alias, command=[host.server.python, agent_path],
                   config=netns_hosts.config_path, heartbeat=0.5, ready_timeout=30)
    pipe.start()
    pipe.send(("cmd", "spawn"))
    agent, child = map(process_id, pipe.recv(timeout=10))
    # Busy: the main thread cannot read input. The reply to the first comes once
    # it was handled, so the handler is then on its way into the sleep.
    pipe.send(("cmd", "reply", "next: busy"))
    pipe.send(("cmd", "sleep", 120))
    assert pipe.recv(timeout=10) == "next: busy"
    netns_hosts.link_down(2)
    cut = time.monotonic()
    try:
        _, outcome = settle(pipe)
        detected = time.monotonic() - cut
        assert_gone([agent, child], BOUND + 2)
        gone = time.monotonic() - cut
    finally:
        netns_hosts.link_up(2)
    record("netns link cut, handler busy", method, detected,
           f"{type(outcome).__name__}; agent and child gone {gone:.2f} s after the cut")
    assert isinstance(outcome, PipeBroken), outcome
    assert gone < BOUND + 2
