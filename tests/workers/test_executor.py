"""SSHExecutor against the real sshd: the concurrent.futures contract, remotely."""
from __future__ import annotations

import io
import logging
import os
import time
from concurrent.futures import (FIRST_COMPLETED, CancelledError, Executor, as_completed,
                                wait)

import pytest

import workers
import wtasks
from sshpipe.errors import RemoteTraceback
from sshpipe.testing import free_port
from workers import (BrokenHostPool, HostLostError, HostState, SSHExecutor, Task, TaskFuture,
                     TaskTimeoutError, WorkerDiedError)
from workers._progress import ProgressBar
from workers._scheduler import Scheduler

from workerkit import alive, parse_identity, wait_until


def test_exports_match_all():
    """Every name in workers.__all__ resolves, and nothing public is missing."""
    for name in workers.__all__:
        assert getattr(workers, name) is not None
    assert sorted(workers.__all__) == workers.__all__
    with pytest.raises(AttributeError):
        workers.NoSuchThing  # noqa: B018


def test_submit_runs_remotely_and_records_host(executor, sshd):
    """submit() runs a closure on the host and the future names the host."""
    offset = 40
    future = executor.submit(lambda x: x + offset, 2)
    assert isinstance(executor, Executor) and isinstance(future, TaskFuture)
    assert future.result(timeout=30) == 42
    assert future.host == sshd.alias and future.hosts == [sshd.alias]
    pid = executor.submit(os.getpid).result(timeout=30)
    assert pid != os.getpid() and pid != executor.remote_info(sshd.alias)["pid"]


def test_exception_carries_remote_traceback_as_cause(executor, sshd):
    """A task's exception arrives as itself, with the remote traceback as __cause__."""
    def fails():
        raise KeyError("missing-key")

    with pytest.raises(KeyError) as caught:
        executor.submit(fails).result(timeout=30)
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert f"[on {sshd.alias}]" in str(cause) and "in fails" in str(cause)


def test_unpicklable_exception_arrives_as_text(executor):
    """An exception that cannot be pickled becomes a RuntimeError naming it."""
    with pytest.raises(RuntimeError, match="Unpicklable: holds a lock"):
        executor.submit(wtasks.raise_unpicklable).result(timeout=30)


def test_map_keeps_order_with_and_without_chunks(executor):
    """map() yields results in input order, for any chunksize."""
    data = list(range(23))
    assert list(executor.map(lambda x, y: x * y, data, data, timeout=60)) == [x * x for x in data]
    assert list(executor.map(abs, [-x for x in data], chunksize=5, timeout=60)) == data
    assert list(executor.map(abs, [])) == []


def test_map_timeout_raises_and_cancels_the_rest(executor):
    """map(timeout=) raises TimeoutError when results are late and cancels the rest."""
    results = executor.map(time.sleep, [5.0] * 4, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        next(results)
    assert time.monotonic() - started < 5.0
    # The cancelled tasks' workers were ended: the host is free again at once.
    assert executor.submit(abs, -1).result(timeout=30) == 1


def test_as_completed_and_wait(executor):
    """Futures work with as_completed() and wait(FIRST_COMPLETED)."""
    # 2 s: longer than a replacement worker takes to boot on a loaded machine, so
    # the short task is taken back from behind the long one even then.
    futures = [executor.submit(time.sleep, delay) for delay in (2.0, 0.05)]
    done, _ = wait(futures, timeout=30, return_when=FIRST_COMPLETED)
    assert futures[1] in done
    assert set(as_completed(futures, timeout=30)) == set(futures)


def test_task_logs_come_back_with_the_future(executor, sshd, caplog):
    """Records a task logs are on future.logs and reach sshpipe.remote.<host>."""
    caplog.set_level(logging.INFO, logger=f"sshpipe.remote.{sshd.alias}")
    future = executor.submit(wtasks.chatty, "s1")
    assert future.result(timeout=30) == "s1"
    assert [(r.name, r.levelname, r.getMessage()) for r in future.logs] == [
        ("wtasks", "INFO", "step s1 starting"), ("wtasks", "WARNING", "step s1 done")]
    wait_until(lambda: any("step s1 done" in r.getMessage() for r in caplog.records), 10,
               "the live record in the caller's logger")


def test_cancel_pending_future_never_runs(executor, tmp_path):
    """A future cancelled before a host took it is cancelled and never runs."""
    blockers = [executor.submit(time.sleep, 0.3) for _ in range(6)]  # slots + prefetch + more
    last = executor.submit(wtasks.record_run, str(tmp_path), "late")
    assert last.cancel() and last.cancelled()
    wait(blockers, timeout=30)
    # Something that must not happen has no event to wait for: a task wrongly
    # dispatched would run right after the blockers, so 0.2 s is ample to see it.
    time.sleep(0.2)
    assert wtasks.runs(str(tmp_path), "late") == 0


def test_cancel_running_task_ends_its_process_and_host_stays(executor, tmp_path):
    """cancel() on a running task kills the remote process running it; slots survive."""
    marker = str(tmp_path / "pid")
    future = executor.submit(wtasks.pid_then_sleep, marker, 60)
    wait_until(lambda: os.path.exists(marker), 30, "the task to start")
    worker = parse_identity(open(marker).read())
    assert future.running() and future.cancel()
    assert future.cancelled()
    with pytest.raises(CancelledError):
        future.result(timeout=1)
    wait_until(lambda: not alive(worker), 10, f"worker {worker} to be ended")
    # Both slots work again, in parallel, in processes other than the ended one.
    started = time.monotonic()
    # 2 s each: the replacement worker boots meanwhile (slowly on a loaded
    # machine) and takes the second task back from behind the first.
    pids = set(executor.map(wtasks.record_run, [str(tmp_path)] * 2, ["a", "b"], [2.0] * 2,
                            timeout=30))
    assert len(pids) == 2 and worker.pid not in pids and time.monotonic() - started < 8


def test_task_timeout_ends_process_and_fails_future(executor, tmp_path):
    """A task past its timeout fails with TaskTimeoutError; its process is ended."""
    marker = str(tmp_path / "pid")
    future = executor.submit(Task(wtasks.pid_then_sleep, marker, 60).options(timeout=0.5))
    with pytest.raises(TaskTimeoutError) as caught:
        future.result(timeout=30)
    assert caught.value.host == future.host and caught.value.timeout == 0.5
    worker = parse_identity(open(marker).read())
    wait_until(lambda: not alive(worker), 10, "the timed-out worker to end")
    assert executor.submit(abs, -3).result(timeout=30) == 3


def test_worker_process_death_fails_only_its_task(executor):
    """A task that kills its own process fails with WorkerDiedError; the host serves on."""
    with pytest.raises(WorkerDiedError, match="exit code 7"):
        executor.submit(os._exit, 7).result(timeout=30)
    assert executor.submit(abs, -5).result(timeout=30) == 5


def test_pinned_task_runs_on_its_host(executor, sshd):
    """Task.options(host=) pins a task; an unknown host is refused at submit()."""
    future = executor.submit(Task(os.getpid).options(host=sshd.alias))
    assert future.result(timeout=30) > 0 and future.host == sshd.alias
    with pytest.raises(ValueError, match="not one of"):
        executor.submit(Task(os.getpid).options(host="elsewhere"))


def test_progress_bar_only_on_a_terminal(executor, monkeypatch, capfd):
    """map(progress=True) draws on a terminal and prints nothing otherwise."""
    assert list(executor.map(abs, [-1, -2], progress=True, timeout=30)) == [1, 2]
    assert capfd.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert list(executor.map(abs, range(-6, 0), chunksize=2, progress=True, timeout=30)) == [
        6, 5, 4, 3, 2, 1]
    drawn = terminal.getvalue()
    assert "6/6" in drawn and drawn.endswith("\n")


def test_progress_bar_counts_without_drawing_off_terminal():
    """ProgressBar on a non-terminal stream counts but writes nothing."""
    stream = io.StringIO()
    bar = ProgressBar(3, stream=stream)
    bar.advance(3)
    bar.close()
    assert bar.done == 3 and stream.getvalue() == ""


def test_shutdown_refuses_new_tasks_and_cancels_waiting(make_executor, tmp_path):
    """shutdown(cancel_futures=True) cancels what waits; later submits are refused."""
    executor = make_executor(slots=1, prefetch=0)
    running = executor.submit(time.sleep, 0.5)
    waiting = [executor.submit(wtasks.record_run, str(tmp_path), i) for i in range(3)]
    executor.shutdown(wait=True, cancel_futures=True)
    assert running.result(timeout=1) is None
    assert all(f.cancelled() for f in waiting)
    assert all(wtasks.runs(str(tmp_path), i) == 0 for i in range(3))
    assert set(executor.hosts.values()) == {HostState.CLOSED}
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(abs, 1)


def test_balanced_across_hosts_by_free_slots(make_executor, sshd):
    """With two one-slot hosts, parallel tasks are spread one per host."""
    executor = make_executor([sshd.alias, {"host": sshd.alias, "name": "second"}], slots=1,
                             prefetch=0)
    futures = [executor.submit(time.sleep, 0.4) for _ in range(4)]
    wait(futures, timeout=30)
    assert sorted(f.host for f in futures) == sorted([sshd.alias, sshd.alias, "second", "second"])


def test_host_that_cannot_start_is_lost_others_serve(make_executor, sshd):
    """A host that fails to start is LOST; the executor runs on the others."""
    executor = make_executor([sshd.alias, ("127.0.0.1", {"port": free_port()})], slots=1)
    assert executor.hosts == {sshd.alias: HostState.READY, "127.0.0.1": HostState.LOST}
    assert executor.submit(abs, -2).result(timeout=30) == 2
    future = executor.submit(Task(abs, -2).options(host="127.0.0.1"))
    with pytest.raises(HostLostError, match="127.0.0.1"):
        future.result(timeout=5)


def test_no_host_starting_raises_broken_pool(sshd):
    """When no host starts, the constructor raises BrokenHostPool with the cause."""
    with pytest.raises(BrokenHostPool) as caught:
        SSHExecutor([("127.0.0.1", {"port": free_port()})], config=sshd.config_path)
    assert caught.value.__cause__ is not None and "127.0.0.1" in str(caught.value)


def test_scheduler_balances_by_free_slots_and_honours_pins():
    """Scheduler: most free slots first, capacity = slots + prefetch, pins respected."""
    scheduler: Scheduler[str] = Scheduler()
    scheduler.add_host("big", 3, prefetch=0)
    scheduler.add_host("small", 1, prefetch=1)
    for tid in range(1, 7):
        scheduler.push(tid, f"t{tid}")
    scheduler.push(7, "pinned", host="small")
    handed = scheduler.assign()
    by_host = {}
    for host, tid, _ in handed:
        by_host.setdefault(host, []).append(tid)
    assert len(by_host["big"]) == 3 and len(by_host["small"]) == 2
    assert 7 in by_host["small"] and scheduler.waiting_count == 2
    scheduler.release("big", by_host["big"][0])
    assert [h for h, _, _ in scheduler.assign()] == ["big"]
    inflight, pinned = scheduler.remove_host("small")
    assert sorted(inflight) == sorted(by_host["small"]) and pinned == []
    assert scheduler.remove_host("small") == ({}, [])


def test_task_holding_the_gil_is_still_timed_out(executor):
    """A task holding the GIL in C code is killed by the agent after the grace period."""
    import re

    from workers._pool import KILL_GRACE

    stuck = Task(re.match, r"(a+)+$", "a" * 40 + "b").options(timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError):
        executor.submit(stuck).result(timeout=30)
    assert time.monotonic() - started < 0.3 + KILL_GRACE + 5
    assert executor.submit(abs, -4).result(timeout=30) == 4


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_executor_works_under_other_start_methods(sshd, tmp_path, method):
    """A caller whose multiprocessing start method is spawn or forkserver works."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    script = tmp_path / "caller.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing, sys
        from workers import SSHExecutor

        if __name__ == "__main__":
            multiprocessing.set_start_method({method!r})
            with SSHExecutor([{sshd.alias!r}], slots=1, config={sshd.config_path!r},
                             python={sshd.python!r}) as executor:
                print(executor.submit(lambda x: x * 3, 14).result(timeout=60))
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=90, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "42"


def test_shutdown_without_wait_returns_at_once_and_closes_later(make_executor):
    """shutdown(wait=False) returns while tasks run; the hosts close once they end."""
    executor = make_executor(slots=1)
    future = executor.submit(time.sleep, 0.5)
    started = time.monotonic()
    executor.shutdown(wait=False)
    assert time.monotonic() - started < 0.3
    assert future.result(timeout=30) is None
    wait_until(lambda: set(executor.hosts.values()) == {HostState.CLOSED}, 20,
               "the host to be closed")


def test_zero_install_host_runs_lambdas_and_logs(make_executor, bare_python, tmp_path):
    """On a Python without sshpipe, workers or dill, lambdas, logs and timeouts work."""
    executor = make_executor(python=bare_python, slots=2,
                             env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    scale = 7
    assert executor.submit(lambda x: x * scale, 6).result(timeout=30) == 42
    assert executor.submit(wtasks.chatty, "z").result(timeout=30) == "z"
    stuck = executor.submit(Task(time.sleep, 30).options(timeout=0.3))
    with pytest.raises(TaskTimeoutError):
        stuck.result(timeout=30)
    assert list(executor.map(abs, range(-5, 0), chunksize=2, timeout=30)) == [5, 4, 3, 2, 1]


def test_short_tasks_behind_a_long_one_are_taken_back(executor):
    """Short tasks batched behind a long one are taken back by an idle worker."""
    list(executor.map(abs, range(200), timeout=30))  # the host now sees short tasks
    long_one = executor.submit(time.sleep, 2.0)
    shorts = [executor.submit(abs, -i) for i in range(40)]
    done, not_done = wait(shorts, timeout=1.2)
    assert not not_done, f"{len(not_done)} short tasks waited behind the long one"
    assert not long_one.done()
    assert long_one.result(timeout=30) is None


def test_code_for_another_python_fails_its_future_not_the_host(make_executor, tmp_path):
    """A lambda sent to a host on another Python minor fails with VersionSkewError;
    builtins and shipped functions still run there."""
    from pathlib import Path

    from sshpipe import VersionSkewError

    candidates = sorted(Path.home().glob(".pyenv/versions/3.9.*/bin/python3"))
    if not candidates:
        pytest.skip("no CPython 3.9 under ~/.pyenv")
    executor = make_executor(python=str(candidates[0]), slots=1,
                             env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    with pytest.raises(VersionSkewError):
        executor.submit(lambda: 1).result(timeout=30)
    assert executor.submit(abs, -9).result(timeout=30) == 9
    assert executor.submit(wtasks.chatty, "old").result(timeout=30) == "old"


def test_large_arguments_and_results_round_trip(executor):
    """Tasks with megabytes of arguments and results, many at once, all come back."""
    blobs = [bytes([i]) * (3 << 20) for i in range(6)]
    results = list(executor.map(lambda blob: blob[::-1], blobs, timeout=60))
    assert results == blobs


def test_task_future_set_twice_raises_invalid_state_issue_12():
    """A TaskFuture refuses a second result or exception, as Future does; the
    executor's own settle_*() report False instead of raising."""
    from concurrent.futures import InvalidStateError

    future = TaskFuture(7)
    assert future.settle_result(1) and future.result(0) == 1
    with pytest.raises(InvalidStateError):
        future.set_result(2)
    with pytest.raises(InvalidStateError):
        future.set_exception(ValueError())
    assert not future.settle_exception(ValueError()) and future.result(0) == 1


def test_cancel_of_a_bare_task_future_is_future_cancel_issue_12():
    """With no executor behind it, a TaskFuture cancels as a Future does, and a
    result arriving later is refused (its waiters are told of the cancel)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    future = TaskFuture()
    assert future.cancel() and future.cancelled() and not future.running()
    assert not future.settle_result(1)
    done, _ = wait([future], timeout=1, return_when=FIRST_COMPLETED)
    assert done == {future}


def test_start_failure_names_the_host_once_issue_18(sshd):
    """An executor whose only host cannot start says so naming the host once (it
    read 'web1: web1: ...')."""
    from workers import BrokenHostPool, SSHExecutor

    with pytest.raises(BrokenHostPool) as info:
        SSHExecutor(["no-such-host.invalid"], config=sshd.config_path, ready_timeout=10)
    assert str(info.value).count("no-such-host.invalid:") == 1, str(info.value)


def test_a_task_keeps_at_most_1000_log_records_and_says_how_many_more(executor):
    """A task logging in a tight loop: future.logs holds the first 1,000 records
    and one more that counts the rest (issue 11: every input has a bound)."""
    from workers._pool import MAX_RECORDS_PER_TASK

    def flood(count):
        import logging as remote_logging

        log = remote_logging.getLogger("flood")
        for index in range(count):
            log.warning("record %d", index)
        return count

    extra = 25
    future = executor.submit(flood, MAX_RECORDS_PER_TASK + extra)
    assert future.result(timeout=60) == MAX_RECORDS_PER_TASK + extra
    logs = future.logs
    assert len(logs) == MAX_RECORDS_PER_TASK + 1
    assert logs[MAX_RECORDS_PER_TASK - 1].getMessage() == f"record {MAX_RECORDS_PER_TASK - 1}"
    assert logs[-1].getMessage() == f"{extra} more records of this task were dropped"
