"""SSHExecutor regressions of issue 11: no deadlock, no lost work, timeouts honoured,
errors at once, a raising callback does not stop a host."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import wtasks
from workers import BrokenHostPool, HostState, SSHExecutor

from workerkit import wait_until

MIB = 1 << 20
SIZES = [1 * MIB, 4 * MIB, 16 * MIB, 64 * MIB]
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


def _causes(error):
    """The error and its chain of causes."""
    chain = []
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.__cause__
    return chain


def _kill_pipes() -> None:
    """End every executor pipe of this process (a deadlocked host never
    answers a shutdown: this lets the test fail instead of hang)."""
    for child in multiprocessing.active_children():
        if child.name.startswith("workers-"):
            child.kill()


@pytest.fixture
def one_slot(make_executor):
    executor = make_executor(slots=1, ready_timeout=60)
    yield executor
    if any(not f.done() for f in getattr(executor, "_test_futures", [])):
        _kill_pipes()


@pytest.mark.parametrize("warmup", [0, 30, 120], ids=["depth1", "depth2", "depth64"])
def test_large_arguments_and_results_cross_at_every_batch_depth_issue_11(one_slot, warmup):
    """Tasks with 1-64 MiB arguments and results, sent while results come back, all
    finish with one slot, whatever batch depth the agent reached (short tasks
    first make it hand tasks over two, then 64 at a time)."""
    executor = one_slot
    assert list(executor.map(abs, range(-warmup, 0), timeout=60)) == list(range(warmup, 0, -1))
    futures = [executor.submit(wtasks.sized, b"a" * size, size) for size in SIZES]
    futures += [executor.submit(abs, -n) for n in range(3)]  # short ones behind, as a batch
    executor._test_futures = futures
    try:
        results = [future.result(timeout=120) for future in futures[:len(SIZES)]]
    except TimeoutError:
        _kill_pipes()
        pytest.fail("large tasks did not finish within 120 s: the worker pipeline is stuck")
    assert [len(result) for result in results] == SIZES
    assert [f.result(timeout=30) for f in futures[len(SIZES):]] == [0, 1, 2]


def _run_script(tmp_path, body: str, timeout: float = 120) -> subprocess.CompletedProcess:
    script = tmp_path / "caller.py"
    script.write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [SOURCE_ROOT, str(Path(__file__).parent)])}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(tmp_path))


@pytest.mark.parametrize("ending", ["shutdown(wait=False)", "no shutdown"])
def test_script_end_waits_for_pending_tasks_issue_11(sshd, tmp_path, ending):
    """A script that ends with tasks pending (after shutdown(wait=False), or with no
    shutdown at all) exits only once they ran, and a submit from an atexit hook
    raises RuntimeError, as concurrent.futures promises."""
    out = tmp_path / "done.txt"
    call = "executor.shutdown(wait=False)" if ending != "no shutdown" else "pass"
    done = _run_script(tmp_path, f"""
        import atexit
        import wtasks
        from workers import SSHExecutor

        @atexit.register
        def late():
            try:
                executor.submit(abs, 1)
            except RuntimeError as exc:
                print("refused:", exc)

        if __name__ == "__main__":
            executor = SSHExecutor([{sshd.alias!r}], slots=2, config={sshd.config_path!r},
                                   python={sshd.python!r}, modules=["wtasks"])
            for index in range(6):
                executor.submit(wtasks.append_line, {str(out)!r}, str(index), 0.3)
            {call}
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(out.read_text().split()) == [str(i) for i in range(6)]
    assert "refused: cannot schedule new futures" in done.stdout
    assert done.stderr == "", done.stderr[-3000:]


def test_shutdown_without_wait_cancelling_futures_ends_the_script_cleanly_issue_12(sshd, tmp_path):
    """Upstream test_cancel_futures_wait_false (3.11 runs it for ThreadPoolExecutor
    only): shutdown(wait=False, cancel_futures=True) with one task running and
    others queued; the script exits 0 with nothing on stderr once the running
    task finished, and the queued ones never run."""
    out = tmp_path / "done.txt"
    done = _run_script(tmp_path, f"""
        import time

        import wtasks
        from workers import SSHExecutor

        if __name__ == "__main__":
            executor = SSHExecutor([{sshd.alias!r}], slots=1, prefetch=0,
                                   config={sshd.config_path!r}, python={sshd.python!r},
                                   modules=["wtasks"])
            running = executor.submit(wtasks.append_line, {str(out)!r}, "apple", 0.5)
            queued = [executor.submit(wtasks.append_line, {str(out)!r}, "late", 0)
                      for _ in range(3)]
            while not running.running():
                time.sleep(0.01)
            executor.shutdown(wait=False, cancel_futures=True)
            print("cancelled:", sum(f.cancelled() for f in queued))
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == "", done.stderr[-3000:]
    assert out.read_text().split() == ["apple"]
    assert "cancelled: 3" in done.stdout


def test_invalid_env_name_raises_at_once_issue_11(sshd):
    """An env name SSHPipe refuses raises ValueError from the constructor at once,
    naming the host, with SSHPipe's error chained."""
    started = time.monotonic()
    with pytest.raises(ValueError, match="NOT VALID") as caught:
        SSHExecutor([sshd.alias], config=sshd.config_path, python=sshd.python,
                    env={"NOT VALID": "x"})
    assert time.monotonic() - started < 2
    assert sshd.alias in str(caught.value) and isinstance(caught.value.__cause__, ValueError)


def test_unknown_argument_is_a_type_error_at_once_issue_12(sshd):
    """An argument neither SSHExecutor nor SSHPipe takes is a TypeError, at once."""
    started = time.monotonic()
    with pytest.raises(TypeError, match="no_such_option"):
        SSHExecutor([sshd.alias], config=sshd.config_path, no_such_option=1)
    assert time.monotonic() - started < 2


def test_shutdown_timeout_is_honoured_issue_11(make_executor):
    """shutdown(timeout=) returns by its deadline with TimeoutError while a task
    runs, and the executor still closes once the task is done."""
    executor = make_executor(slots=1)
    future = executor.submit(time.sleep, 3)
    wait_until(future.running, 30, "the task to start")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="1 futures still unresolved"):
        executor.shutdown(timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert future.result(timeout=30) is None
    wait_until(lambda: set(executor.hosts.values()) == {HostState.CLOSED}, 30,
               "the hosts to close")


def test_raising_done_callback_does_not_stop_the_host_issue_11(executor):
    """A done callback that raises (even SystemExit) leaves the host's reader alive:
    later futures resolve."""
    def bad(future):
        raise SystemExit("callback")

    def slow_abs(number):
        import time

        time.sleep(0.5)  # still running when its callback is added: the executor
        return abs(number)  # runs it (an added callback of a done future runs here)

    first = executor.submit(slow_abs, -1)
    first.add_done_callback(bad)
    assert first.result(timeout=30) == 1
    futures = [executor.submit(slow_abs, -n) for n in range(5)]
    for future in futures:
        future.add_done_callback(bad)
    assert [f.result(timeout=30) for f in futures] == [0, 1, 2, 3, 4]


def test_system_exit_while_loading_a_result_fails_only_its_future_issue_12(make_executor):
    """A result whose unpickling raises SystemExit here (trusted, so it is
    unpickled) fails its future with ResultLoadError (a BrokenProcessPool); the
    host goes on. Untrusted (the default), the same result is refused unrun."""
    from concurrent.futures.process import BrokenProcessPool

    from workers import ResultLoadError

    executor = make_executor(slots=1, trust_remote=True)
    with pytest.raises(ResultLoadError) as caught:
        executor.submit(wtasks.exits_when_loaded).result(timeout=30)
    assert isinstance(caught.value, BrokenProcessPool)
    assert any(isinstance(error, SystemExit) for error in _causes(caught.value))
    assert executor.submit(abs, -3).result(timeout=30) == 3
    untrusting = make_executor(slots=1)
    with pytest.raises(ResultLoadError) as refused:
        untrusting.submit(wtasks.exits_when_loaded).result(timeout=30)
    assert not any(isinstance(error, SystemExit) for error in _causes(refused.value))
    assert untrusting.submit(abs, -4).result(timeout=30) == 4


def test_executor_dropped_without_shutdown_is_collected_issue_12(sshd):
    """An executor nobody refers to any more is garbage-collected (its threads
    refer to its core only) and its hosts are closed."""
    import gc
    import weakref

    executor = SSHExecutor([sshd.alias], slots=1, config=sshd.config_path, python=sshd.python)
    assert executor.submit(abs, -5).result(timeout=30) == 5
    ref = weakref.ref(executor)
    core = executor._core
    del executor
    gc.collect()
    assert ref() is None
    wait_until(lambda: all(link.state.value == "closed" for link in core.links.values()), 30,
               "the dropped executor's hosts to close")


def test_printed_output_is_echoed_here_issue_12(sshd, tmp_path):
    """What a task prints reaches the caller's stdout and stderr (as a
    ProcessPoolExecutor's workers print to the shared terminal)."""
    done = _run_script(tmp_path, f"""
        import wtasks
        from workers import SSHExecutor

        if __name__ == "__main__":
            with SSHExecutor([{sshd.alias!r}], slots=1, config={sshd.config_path!r},
                             python={sshd.python!r}, modules=["wtasks"]) as executor:
                executor.submit(wtasks.say, "apple").result(timeout=60)
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "apple\n" and done.stderr == "elppa\n"


def test_broken_pool_when_every_host_fails_its_initializer_issue_12(make_executor):
    """An initializer that raises breaks its host: futures fail with
    BrokenHostPool, the initializer's error chained, and later submits raise it."""
    executor = make_executor(slots=1, initializer=wtasks.init_fails)
    future = executor.submit(abs, -1)
    with pytest.raises(BrokenHostPool) as caught:
        future.result(timeout=60)
    wait_until(lambda: executor.broken, 30, "the executor to be broken")
    causes = _causes(caught.value)
    assert any(isinstance(e, ValueError) and "no database here" in str(e) for e in causes), causes
    with pytest.raises(BrokenHostPool):
        executor.submit(abs, -1)


def test_initializer_runs_once_per_worker_process_issue_12(make_executor, tmp_path):
    """initializer(*initargs) runs in each worker process before its tasks."""
    marker = str(tmp_path / "init")
    executor = make_executor(slots=2, initializer=wtasks.init_marker, initargs=(marker,))
    results = [executor.submit(wtasks.initialized).result(timeout=30) for _ in range(4)]
    assert results == [marker] * 4
    wait_until(lambda: os.path.exists(marker) and len(open(marker).read().split()) == 2, 10,
               "both workers to run the initializer")


def test_max_tasks_per_child_replaces_workers_issue_12(make_executor):
    """With max_tasks_per_child=2, a worker process runs two tasks, then a fresh
    one takes over."""
    executor = make_executor(slots=1, max_tasks_per_child=2)
    pids = [executor.submit(os.getpid).result(timeout=30) for _ in range(6)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]
    assert len(set(pids)) == 3


def test_map_timeout_cancels_queued_calls_that_then_never_run_issue_12(make_executor, tmp_path):
    """Calls cancelled by map()'s timeout never run: neither those waiting in the
    agent nor those waiting in the worker process whose running call the same
    timeout ended (they used to be put back in the queue and run)."""
    executor = make_executor(slots=1)
    list(executor.map(abs, range(60), timeout=60))  # short tasks: handed over in batches
    results = executor.map(wtasks.record_run, [str(tmp_path)] * 4, range(4), [5.0] * 4,
                           timeout=1.0)
    with pytest.raises(TimeoutError):
        next(results)
    del results
    assert executor.submit(abs, -1).result(timeout=30) == 1  # queued after all of them
    assert wtasks.runs(str(tmp_path), 0) == 1  # it started: the timeout ended it
    assert [wtasks.runs(str(tmp_path), key) for key in (1, 2, 3)] == [0, 0, 0]
