"""Faults on namespace hosts: an agent killed, a link cut, every host lost.

Each run submits tasks that append a line to a marker file per execution, so
that "no task ran twice unless it was retried" can be checked from the files.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import wait

import pytest

import wtasks
from workers import BrokenHostPool, HostLostError, HostState, SSHExecutor, Task

from workerkit import alive, parse_identity, wait_until

pytestmark = pytest.mark.netns

# Heartbeat of the tests' pipes: a cut link is noticed after 3 silent beats.
HEARTBEAT = 0.5
# Every future must resolve within this after the fault.
RESOLVE_BOUND = 30.0


@pytest.fixture
def fleet(netns_hosts):
    """An executor over the three namespace hosts, two slots each."""
    with SSHExecutor([host.alias for host in netns_hosts], slots=2,
                     config=netns_hosts.config_path, python=sys.executable,
                     modules=["wtasks"], heartbeat=HEARTBEAT, ready_timeout=60) as executor:
        yield executor


def _submit(executor, directory, count, seconds, retries_of):
    return [executor.submit(Task(wtasks.record_run, directory, i, seconds)
                            .options(retries=retries_of(i)))
            for i in range(count)]


def _wait_running_on(futures, host, directory):
    wait_until(lambda: any(f.host == host and f.running() and wtasks.runs(directory, i)
                           for i, f in enumerate(futures)), 20, f"a task running on {host}")


def _check_outcomes(futures, directory, lost_host):
    """Every future resolved; each task ran at most once per retry it used."""
    done, not_done = wait(futures, timeout=RESOLVE_BOUND)
    assert not not_done, f"{len(not_done)} futures never resolved"
    retried = failed = 0
    for i, future in enumerate(futures):
        runs = wtasks.runs(directory, i)
        assert runs <= 1 + future.retries_used, (i, runs, future.hosts, future.retries_used)
        retried += future.retries_used
        if future.exception() is None:
            assert runs >= 1 and future.host != lost_host
        else:
            error = future.exception()
            assert isinstance(error, HostLostError), repr(error)
            assert error.host == lost_host and lost_host in str(error)
            assert error.__cause__ is not None
            assert future.retries_used == 0 or runs <= 1 + future.retries_used
            failed += 1
    return retried, failed


def test_killed_agent_retries_or_fails_each_task_it_ran(fleet, netns_hosts, tmp_path):
    """A killed agent's tasks rerun elsewhere or fail with HostLostError, never twice."""
    directory = str(tmp_path)
    victim = netns_hosts[1].alias
    futures = _submit(fleet, directory, 36, 0.3, retries_of=lambda i: i % 2)
    _wait_running_on(futures, victim, directory)
    os.kill(fleet.remote_info(victim)["pid"], signal.SIGKILL)
    retried, failed = _check_outcomes(futures, directory, victim)
    assert fleet.hosts[victim] is HostState.LOST
    assert retried + failed >= 1
    # Only tasks that were running there (two slots) can fail: the ones waiting
    # in the agent provably never started and went elsewhere for free.
    assert failed <= 2
    # The workers of the killed agent died with it (none is left running a task).
    orphans = [parse_identity(run) for i, f in enumerate(futures) if f.exception() is not None
               for run in open(os.path.join(directory, str(i))).read().split()]
    wait_until(lambda: not any(alive(pid) for pid in orphans), 10,
               "the killed agent's workers to die")
    # Only tasks without retries failed, and the pool is still serving.
    assert all(futures[i].exception() is None for i in range(1, 36, 2))
    assert fleet.submit(abs, -1).result(timeout=30) == 1


def test_link_down_mid_run_is_detected_and_tasks_resolve(fleet, netns_hosts, tmp_path):
    """A cut link is noticed within the heartbeat bound; its tasks retry or fail."""
    directory = str(tmp_path)
    index = 2
    victim = netns_hosts[index].alias
    futures = _submit(fleet, directory, 36, 0.3, retries_of=lambda i: i % 2)
    _wait_running_on(futures, victim, directory)
    cut = time.monotonic()
    netns_hosts.link_down(index)
    try:
        wait_until(lambda: fleet.hosts[victim] is HostState.LOST, 10 * HEARTBEAT * 3,
                   "the cut host to be declared lost")
        assert time.monotonic() - cut < 10 * HEARTBEAT * 3
        retried, failed = _check_outcomes(futures, directory, victim)
        assert retried + failed >= 1
        assert all(futures[i].exception() is None for i in range(1, 36, 2))
        assert "heartbeat" in str(fleet.remote_info(victim)["error"])
    finally:
        netns_hosts.link_up(index)


def test_every_host_lost_breaks_the_pool_at_once(fleet, netns_hosts, tmp_path):
    """Losing the last host fails every future at once and breaks the executor."""
    directory = str(tmp_path)
    futures = _submit(fleet, directory, 40, 0.5, retries_of=lambda i: 3)
    _wait_running_on(futures, netns_hosts[0].alias, directory)
    for host in netns_hosts:
        os.kill(fleet.remote_info(host.alias)["pid"], signal.SIGKILL)
    done, not_done = wait(futures, timeout=RESOLVE_BOUND)
    assert not not_done
    errors = [f.exception() for f in futures if f.exception() is not None]
    assert errors and all(isinstance(e, (BrokenHostPool, HostLostError)) for e in errors)
    assert any(isinstance(e, BrokenHostPool) for e in errors)
    assert fleet.broken
    with pytest.raises(BrokenHostPool):
        fleet.submit(abs, 1)
    for i, future in enumerate(futures):
        assert wtasks.runs(directory, i) <= 1 + future.retries_used
