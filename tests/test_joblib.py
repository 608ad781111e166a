"""The joblib backend "sshpipe" with joblib's own semantics, against the real sshd."""
from __future__ import annotations

import gc
import multiprocessing
import subprocess
import os
import sys
import time
from pathlib import Path

import pytest

joblib = pytest.importorskip("joblib")

sys.path.insert(0, str(Path(__file__).parent))  # joblib_tasks: shipped to the hosts

import joblib_tasks  # noqa: E402
from joblib import Parallel, delayed, parallel_config  # noqa: E402

import sshpipe.joblib  # noqa: E402,F401  (registers the backend)
from sshpipe.joblib import SSHPipeBackend  # noqa: E402
from sshpipe.testing import ProcessId, descendants, process_id, wait_gone  # noqa: E402


def _options(sshd, **extra):
    options = dict(hosts=[sshd.alias], slots=2, config=sshd.config_path, python=sshd.python,
                   modules=["joblib_tasks"])
    options.update(extra)
    return options


@pytest.fixture(scope="module")
def backend(sshd):
    """One warm backend (one host, 2 slots) shared by the module's tests."""
    with SSHPipeBackend(**_options(sshd)) as made:
        yield made


def _agent(backend) -> ProcessId:
    """The host's agent process (the hosts are on this machine)."""
    executor = backend.executor
    (name,) = executor.hosts
    return process_id(executor.remote_info(name)["pid"])


def _recorded(directory: Path) -> list:
    """The processes that wrote themselves into ``directory`` (_record_self)."""
    return [ProcessId(int(path.name), int(path.read_text())) for path in directory.iterdir()]


def _max_overlap(directory: Path) -> int:
    spans = [tuple(map(float, path.read_text().split())) for path in directory.iterdir()]
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_results_in_order_computed_remotely(backend):
    """Results come back in input order, computed in the hosts' worker processes."""
    with parallel_config(backend=backend):
        results = Parallel(n_jobs=-1)(delayed(joblib_tasks.where)(i) for i in range(300))
    assert [x for x, _, _ in results] == list(range(300))
    pids = {pid for _, pid, _ in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_lambdas_and_closures_travel_by_value(backend):
    """Functions the hosts cannot import (a lambda, a closure) are sent by value."""
    offset = 7
    with parallel_config(backend=backend):
        assert Parallel(n_jobs=2)(delayed(lambda x: x + offset)(i) for i in range(5)) == \
            [7, 8, 9, 10, 11]


def test_exception_is_raised_with_the_remote_traceback(backend):
    """A task's exception aborts the call and arrives as itself, with the remote
    traceback (file, function) as its cause."""
    with parallel_config(backend=backend):
        with pytest.raises(ValueError, match="bad item 13") as caught:
            Parallel(n_jobs=-1)(delayed(joblib_tasks.fail_on)(i, 13) for i in range(40))
    remote = str(caught.value.__cause__)
    assert "joblib_tasks.py" in remote and "fail_on" in remote


def test_n_jobs_minus_one_is_every_remote_slot_and_more_is_capped(backend):
    """n_jobs=-1 means all remote slots (2 here); more is capped at them; -2
    (one slot) still counts two, so that joblib does not run it in the caller."""
    assert backend.effective_n_jobs(-1) == 2
    assert backend.effective_n_jobs(8) == 2
    assert backend.effective_n_jobs(-2) == 2
    with parallel_config(backend=backend):
        assert joblib.effective_n_jobs(-1) == 2


def test_n_jobs_one_runs_in_the_caller_and_zero_is_refused(backend):
    """As joblib does for every backend: n_jobs=1 runs sequentially in the
    caller; n_jobs=0 is an error."""
    with parallel_config(backend=backend):
        results = Parallel(n_jobs=1)(delayed(joblib_tasks.where)(i) for i in range(3))
        assert {pid for _, pid, _ in results} == {os.getpid()}
        with pytest.raises(ValueError, match="n_jobs == 0"):
            Parallel(n_jobs=0)(delayed(joblib_tasks.square)(i) for i in range(3))


def _wait_for_worker_processes(count: int, timeout: float) -> None:
    """A fresh host's worker processes may still be starting (under load, for
    seconds): run rounds of tasks until ``count`` of them answer in one round."""
    deadline = time.monotonic() + timeout
    while True:
        pids = {pid for _, pid, _ in Parallel(n_jobs=-1, batch_size=1)(
            delayed(joblib_tasks.where)(i, 0.3) for i in range(count))}
        if len(pids) == count:
            return
        assert time.monotonic() < deadline, f"only {len(pids)} worker processes answered"


def test_n_jobs_below_the_slots_limits_the_batches_running_at_once(sshd, tmp_path):
    """With 4 remote slots, n_jobs=2 never runs more than 2 tasks at once, and
    n_jobs=-1 runs 4 (-2 means 3)."""
    with SSHPipeBackend(**_options(sshd, slots=4)) as four:
        assert [four.effective_n_jobs(n) for n in (-1, -2, -3, 2, 9)] == [4, 3, 2, 2, 4]
        with parallel_config(backend=four):
            _wait_for_worker_processes(4, 30)
            for n_jobs, tasks, seconds, expected in ((2, 8, 0.3, 2), (-1, 4, 1.0, 4)):
                directory = tmp_path / f"n{n_jobs}"
                directory.mkdir()
                Parallel(n_jobs=n_jobs, batch_size=1)(
                    delayed(joblib_tasks.span)(i, seconds, str(directory)) for i in range(tasks))
                assert _max_overlap(directory) == expected, n_jobs


def test_auto_batch_size_grows_faster_than_doubling_up_to_joblibs_ideal():
    """Batches far shorter than the ideal 0.2 s grow 8x per step (each step is
    a round trip to the hosts), never past joblib's estimate of the ideal."""
    sizing = SSHPipeBackend(["unused"])
    try:
        sizing.batch_completed(1, 0.001)
        assert sizing.compute_batch_size() == 8
        sizing.batch_completed(8, 0.05)
        assert sizing.compute_batch_size() == 64      # ideal 64 (8 x 0.2 / 0.05 x 2)
        sizing.batch_completed(64, 0.5)                # within [0.2, 2] s: kept
        assert sizing.compute_batch_size() == 64
    finally:
        sizing.close()


def test_return_as_generator_yields_in_order_as_results_arrive(backend):
    """return_as="generator" yields each result in input order, before the
    whole call has finished."""
    with parallel_config(backend=backend):
        started = time.monotonic()
        results = Parallel(n_jobs=2, return_as="generator", batch_size=1)(
            delayed(joblib_tasks.sleep_then)(i, 0.4) for i in range(6))
        first = next(results)
        first_after = time.monotonic() - started
        rest = list(results)
    assert [first] + rest == list(range(6))
    assert first_after < 1.0  # 3 rounds of 0.4 s for all of them


def test_return_as_generator_unordered_yields_as_tasks_finish(backend):
    """return_as="generator_unordered" yields in completion order: a slow first
    item comes last."""
    durations = [1.0, 0.05, 0.05, 0.05, 0.05]
    with parallel_config(backend=backend):
        results = list(Parallel(n_jobs=2, return_as="generator_unordered", batch_size=1)(
            delayed(joblib_tasks.sleep_then)(i, seconds) for i, seconds in enumerate(durations)))
    assert sorted(results) == list(range(5))
    assert results[-1] == 0


def test_nested_parallel_runs_on_the_host_with_joblibs_threading_backend(backend):
    """A Parallel inside a remote task gets joblib's threading backend (as in
    joblib's own workers) and runs there, in the task's worker process."""
    with parallel_config(backend=backend):
        results = Parallel(n_jobs=2)(delayed(joblib_tasks.nested)(i) for i in range(2))
    for x, (backend_name, inner, pid) in enumerate(results):
        assert backend_name == "ThreadingBackend"
        assert inner == [(x + i) ** 2 for i in range(3)]
        assert pid != os.getpid()


def test_abort_mid_run_cancels_running_remote_tasks(backend, tmp_path):
    """An exception aborts the call: the other tasks, running on the host, are
    ended (their processes are gone) and the hosts stay in service."""
    agent = _agent(backend)
    with parallel_config(backend=backend):
        with pytest.raises(RuntimeError, match="item 0 failed"):
            Parallel(n_jobs=2, batch_size=1)(
                delayed(joblib_tasks.long_or_fail)(i, str(tmp_path)) for i in range(6))
    started = _recorded(tmp_path)
    assert started, "no long task started"
    assert wait_gone(started, 10) == []
    assert _agent(backend) == agent  # same hosts, still up
    with parallel_config(backend=backend):
        assert Parallel(n_jobs=-1)(delayed(joblib_tasks.square)(i) for i in range(4)) == \
            [0, 1, 4, 9]


def test_timeout_aborts_and_ends_the_running_tasks(backend, tmp_path):
    """Parallel(timeout=) raises joblib's TimeoutError (multiprocessing's) and
    the running tasks are ended."""
    with parallel_config(backend=backend):
        with pytest.raises(multiprocessing.TimeoutError):
            Parallel(n_jobs=2, timeout=1.0, batch_size=1)(
                delayed(joblib_tasks.long_pid)(i, str(tmp_path)) for i in range(4))
    started = _recorded(tmp_path)
    assert started and wait_gone(started, 10) == []


def test_dropping_a_generator_cancels_its_remote_tasks(backend, tmp_path):
    """A generator closed before it is exhausted aborts the call: its tasks end
    (and joblib warns that they were cancelled)."""
    with parallel_config(backend=backend), pytest.warns(UserWarning, match="cancelled"):
        results = Parallel(n_jobs=2, return_as="generator", batch_size=1)(
            delayed(joblib_tasks.long_pid)(i, str(tmp_path)) for i in range(4))
        deadline = time.monotonic() + 20
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        results.close()
    started = _recorded(tmp_path)
    assert len(started) == 2 and wait_gone(started, 10) == []


def test_hosts_stay_warm_across_parallel_calls_in_one_parallel_config(sshd):
    """Inside one parallel_config block every Parallel call uses the same agents;
    closing the backend ends them."""
    with parallel_config(backend="sshpipe", **_options(sshd)) as config:
        Parallel(n_jobs=-1)(delayed(joblib_tasks.square)(i) for i in range(4))
        active = config["backend"]
        agent = _agent(active)
        started = time.monotonic()
        assert Parallel(n_jobs=-1)(delayed(joblib_tasks.square)(i) for i in range(4)) == \
            [0, 1, 4, 9]
        warm_call = time.monotonic() - started
        assert _agent(active) == agent
        active.close()
    assert warm_call < 1.0
    assert wait_gone([agent], 10) == []


def test_idle_hosts_are_closed_after_idle_timeout_and_restarted_on_demand(sshd):
    """A backend left open closes its hosts idle_timeout seconds after the last
    call; the next call starts them again."""
    with SSHPipeBackend(**_options(sshd, idle_timeout=0.5)) as idle:
        with parallel_config(backend=idle):
            Parallel(n_jobs=2)(delayed(joblib_tasks.square)(i) for i in range(4))
        agent = _agent(idle)
        assert wait_gone([agent], 15) == []
        deadline = time.monotonic() + 10
        while idle.is_running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not idle.is_running
        with parallel_config(backend=idle):
            assert Parallel(n_jobs=2)(delayed(joblib_tasks.square)(i) for i in range(3)) == \
                [0, 1, 4]
        assert _agent(idle) != agent


def test_a_collected_backend_closes_its_hosts(sshd):
    """When nothing references the backend any more, its hosts end."""
    def run() -> int:
        with parallel_config(backend="sshpipe", **_options(sshd)) as config:
            Parallel(n_jobs=2)(delayed(joblib_tasks.square)(i) for i in range(4))
            return _agent(config["backend"])

    agent = run()
    gc.collect()
    assert wait_gone([agent], 15) == []


CALLER = """
import sys
sys.path[:0] = [{tests!r}, {root!r}]
import joblib_tasks
from joblib import Parallel, delayed, parallel_config
import sshpipe.joblib
with parallel_config(backend="sshpipe", hosts=[{alias!r}], slots=2, config={config!r},
                     python=sys.executable, modules=["joblib_tasks"]):
    Parallel(n_jobs=-1, batch_size=1)(
        delayed(joblib_tasks.long_pid)(i, {directory!r}) for i in range(4))
"""


def test_a_caller_killed_mid_call_leaves_nothing_running(sshd, tmp_path):
    """SIGKILL the caller while its remote tasks run: the SSH sessions end, and
    with them the agents and the worker processes running the tasks."""
    directory = tmp_path / "started"
    directory.mkdir()
    script = tmp_path / "caller.py"
    script.write_text(CALLER.format(tests=str(Path(__file__).parent),
                                    root=str(Path(__file__).parent.parent), alias=sshd.alias,
                                    config=sshd.config_path, directory=str(directory)))
    caller = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(list(directory.iterdir())) < 2 and time.monotonic() < deadline:
            assert caller.poll() is None, "the caller ended early"
            time.sleep(0.02)
        running = _recorded(directory)
        assert len(running) == 2
        local = descendants(caller.pid)  # its SSHPipe children
        caller.kill()
        caller.wait(10)
        assert wait_gone(running + local, 20) == []
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait(10)


def test_a_backend_without_hosts_says_how_to_give_them():
    """parallel_config(backend="sshpipe") without hosts fails with the fix."""
    with parallel_config(backend="sshpipe"):
        with pytest.raises(ValueError, match="needs hosts"):
            Parallel(n_jobs=2)(delayed(joblib_tasks.square)(i) for i in range(2))


def test_every_remote_slot_of_two_namespace_hosts_is_used(netns_hosts):
    """n_jobs=-1 on 2 hosts x 2 slots: 4 jobs, and both hosts run tasks."""
    hosts = [(host.alias, {"env": {"JOBLIB_TEST_HOST": host.alias}}) for host in netns_hosts[:2]]
    with SSHPipeBackend(hosts, slots=2, config=netns_hosts.config_path, python=sys.executable,
                        modules=["joblib_tasks"]) as two:
        assert two.effective_n_jobs(-1) == 4
        with parallel_config(backend=two):
            results = Parallel(n_jobs=-1, batch_size=2)(
                delayed(joblib_tasks.where)(i) for i in range(40))
    assert [x for x, _, _ in results] == list(range(40))
    assert {marker for _, _, marker in results} == {netns_hosts[0].alias, netns_hosts[1].alias}
