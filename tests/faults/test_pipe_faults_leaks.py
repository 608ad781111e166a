"""Leaks: many start/close cycles and many messages leave no process, thread or file
descriptor behind on either end; memory stays bounded when the caller outpaces the
agent."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from faultkit import (FAULT_AGENT, alive, fd_count, make_pipe, record, rss_kib, wait_until)
from sshpipe.testing import descendants, process_id, process_name

# Cycles per start method: fork is cheap (~0.3 s a cycle), spawn starts a Python
# interpreter per pipe (~1 s), so it gets fewer, and forkserver (a fork from the
# server, but a round trip to it) sits between; 4 threads overlap network waits.
CYCLES = {"fork": 200, "spawn": 24, "forkserver": 48}
THREADS = 4


def _own_processes():
    """This process's live descendants that are not sshd (the test bed's)."""
    found = []
    for process in descendants(os.getpid()):
        name = process_name(process)
        if name not in ("sshd", ""):
            found.append((process.pid, name))
    return found


def _sshd_sessions(sshd):
    return descendants(process_id(sshd.pid))


def _snapshot(sshd):
    return {"fds": fd_count(), "threads": threading.active_count(),
            "processes": len(_own_processes()), "sshd sessions": len(_sshd_sessions(sshd))}


def _settled(sshd, before, timeout):
    """Wait until every count is back to at most its value before."""
    def ok():
        now = _snapshot(sshd)
        return all(now[key] <= before[key] for key in before)
    try:
        wait_until(ok, timeout, "counts to return to their values before the cycles")
    except BaseException:
        pass
    return _snapshot(sshd)


def _warm_baseline(sshd):
    """Counts after one pipe has run: what the first pipe of a start method creates
    for good (spawn's resource tracker and its fd, imports) is not a leak."""
    with make_pipe(sshd, command=[sshd.python, FAULT_AGENT]) as pipe:
        pipe.send(0)
        pipe.recv(timeout=10)
    return _settled(sshd, _snapshot(sshd), 5)


# 200 cycles of the remote login shell (~0.3-0.9 s each here) take ~90 s on a quiet
# machine and over 120 s (the suite's hang bound) under a load of 10; each call in
# a cycle has its own bound.
@pytest.mark.timeout(300)
def test_start_close_cycles_leave_nothing_behind(sshd, method):
    """Many start/send/recv/close cycles (several threads at once): afterwards the
    caller has the same fds, threads and child processes as before, and no agent or
    sshd session is left on the remote side."""
    cycles = CYCLES[method]
    command = [sshd.python, FAULT_AGENT]
    before = _warm_baseline(sshd)
    agents = []
    lock = threading.Lock()

    def cycle(n):
        pipe = make_pipe(sshd, command=command)
        pipe.start()
        agent = process_id(pipe.remote_info["pid"])
        try:
            pipe.send(n)
            assert pipe.recv(timeout=30) == n
        finally:
            response = pipe.close(timeout=30)
        assert response.exitcode == 0 and response.unhandled == ()
        with lock:
            agents.append(agent)

    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(cycle, range(cycles)))
    seconds = time.monotonic() - started
    after = _settled(sshd, before, 10)
    left_agents = [pid for pid in agents if alive(pid)]
    record(f"{cycles} start/close cycles, {THREADS} threads", method, seconds,
           f"before {before} after {after}; agents left {len(left_agents)}")
    assert len(agents) == cycles and not left_agents
    assert after["fds"] <= before["fds"], (before, after)
    assert after["threads"] <= before["threads"], (before, after)
    assert after["processes"] <= before["processes"], (before, after, _own_processes())
    assert after["sshd sessions"] <= before["sshd sessions"], (before, after)


def test_ten_thousand_messages_leave_nothing_behind(sshd, method):
    """10,000 messages through one pipe: all replied in order, none unhandled, and
    the pipe leaves no fd, thread or process behind."""
    before = _warm_baseline(sshd)
    started = time.monotonic()
    with make_pipe(sshd, command=[sshd.python, FAULT_AGENT]) as pipe:
        agent = process_id(pipe.remote_info["pid"])
        received = []

        def reader():
            for _ in range(10_000):
                received.append(pipe.recv(timeout=30))

        thread = threading.Thread(target=reader)
        thread.start()
        for n in range(10_000):
            pipe.send(n)
        thread.join(60)
        response = pipe.close(timeout=30)
    seconds = time.monotonic() - started
    after = _settled(sshd, before, 10)
    record("10,000 messages through one pipe", method, seconds,
           f"before {before} after {after}")
    assert received == list(range(10_000))
    assert response.exitcode == 0 and response.unhandled == () and response.errors == ()
    assert not alive(agent)
    assert all(after[k] <= before[k] for k in before), (before, after)


def test_memory_bounded_when_caller_outpaces_agent(sshd, method):
    """A caller sending 64 kB messages much faster than the agent handles them (1 ms
    each) with queue_bound=8: send() blocks instead of buffering, so the caller, its
    SSHPipe child and the agent stay within a few MB of where they started."""
    blob = os.urandom(64 * 1024)
    count = 1500  # ~96 MB in total; at most 8 x 64 kB in flight
    peaks = {"caller": 0, "child": 0, "agent": 0}
    with make_pipe(sshd, queue_bound=8) as pipe:
        pids = {"caller": os.getpid(), "child": pipe.pid, "agent": pipe.remote_info["pid"]}
        pipe.send(("cmd", "sink", 0.0, blob))
        pipe.flush(timeout=10)
        base = {name: rss_kib(pid) for name, pid in pids.items()}
        stop = threading.Event()

        def sample():
            while not stop.wait(0.05):
                for name, pid in pids.items():
                    peaks[name] = max(peaks[name], rss_kib(pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        try:
            for _ in range(count):
                pipe.send(("cmd", "sink", 0.001, blob), timeout=30)
                assert pipe.pending <= 8
            pipe.flush(timeout=60)
        finally:
            stop.set()
            sampler.join()
        seconds = time.monotonic() - started
        response = pipe.close(timeout=30)
    growth = {name: (peaks[name] - base[name]) // 1024 for name in peaks}
    record("memory: fast caller, slow agent, queue_bound=8", method, seconds,
           f"RSS growth MB {growth} for {count * 64 // 1024} MB sent")
    assert response.exitcode == 0 and response.unhandled == ()
    assert all(mb < 48 for mb in growth.values()), growth
