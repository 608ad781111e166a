"""The ``smoke`` marker: a few minutes of the suite that touch every concern a
caller meets (pipes, the executor, multipipe, config, logging) under the spawn,
fork and forkserver start methods. ``scripts/smoke.sh`` runs it with the oldest
and newest supported Pythons as the caller.

The tests are chosen here, by file and name, rather than marked in each file:
one list to read and to change. tests/conftest.py applies it at collection
(:func:`mark`). A name no longer defined in its file fails the run, so the
list cannot rot silently.

``SSHPIPE_TEST_START_METHOD`` (fork, spawn, forkserver) sets the default start
method of the test process, as ``multiprocessing.set_start_method`` would: the
smoke run uses forkserver, the default on Linux from Python 3.14.

``SSHPIPE_TEST_FORK_CHECK=1`` fails the run when the test process forks while
one of sshpipe's own threads runs (what Python 3.12+ warns about: "This process
is multi-threaded, use of fork() may lead to deadlocks in the child"). The
warning itself cannot be turned into an error: ``os.fork`` clears the exception
``-W error`` would raise. So an ``os.register_at_fork`` hook looks at the
threads instead, and the end of the run lists each such fork with its test and
the threads. :data:`FORK_TOLERATED` names the threads that are known to be
there by design, each with the reason.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any, Dict, List, Sequence, Set, Tuple

import pytest

START_METHOD_ENV = "SSHPIPE_TEST_START_METHOD"
FORK_CHECK_ENV = "SSHPIPE_TEST_FORK_CHECK"
# Thread name -> why a fork while it runs is accepted.
FORK_TOLERATED = {
    "sshpipe-mplogger": "MpLogger's listener is a thread of the process that started it "
                        "by design; a child forked there does not use the listener's locks "
                        "(multiprocessing re-makes a queue's state after a fork, logging "
                        "re-creates its handlers' locks)",
    "sshpipe-mplogger-flush": "MpLogger's file flusher, as its listener",
}

# file (under tests/) -> test names in it (every parametrization), or () for all.
SMOKE: Dict[str, Tuple[str, ...]] = {
    "test_pipe.py": (
        "test_start_returns_after_hello_with_remote_details",
        "test_objects_round_trip_in_order",
        "test_lambda_is_shipped_by_value",
        "test_remote_log_records_reach_caller_logger",
        "test_hooks_order_and_term_message",
        "test_agent_killed_breaks_pipe_and_reports_unhandled",
        "test_works_under_every_start_method",          # spawn, fork, forkserver
    ),
    "workers/test_executor.py": (
        "test_submit_runs_remotely_and_records_host",
        "test_exception_carries_remote_traceback_as_cause",
        "test_map_keeps_order_with_and_without_chunks",
        "test_task_logs_come_back_with_the_future",
        "test_executor_works_under_other_start_methods",  # spawn, forkserver
    ),
    "test_multipipe.py": (
        "test_start_many_concurrently",
        "test_broadcast_reaches_every_pipe_and_serializes_once",
        "test_bad_command_fails_alone_and_others_run",
        "test_killed_pipe_child_is_lost_with_cause_under_spawn",
    ),
    "test_config_parse.py": (),
    "test_config_patterns.py": (),
    "test_config_errors.py": (),
    "test_config_resolve.py": (
        "test_get_keeps_seed_contract",
        "test_expand_for_connect_rules",
        "test_openssh_auto_follows_the_local_ssh",
    ),
    "test_logging.py": (
        "test_children_of_every_start_method_reach_the_files",  # fork, forkserver, spawn
        "test_fork_child_with_inherited_handler_logs_each_record_once",
        "test_extra_attributes_travel_with_the_record",
        "test_remote_records_land_in_the_files_with_their_host",
    ),
    "test_logging_remote.py": (),
    "test_logwire.py": (),
    "test_serial.py": (),
    "test_smoke.py": (),
}


def paths() -> str:
    """The listed files, as pytest arguments (collecting only them saves half a minute)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return " ".join(os.path.join(here, path) for path in SMOKE)


def configure(config: pytest.Config) -> None:
    """Register the marker; apply ``SSHPIPE_TEST_START_METHOD``."""
    config.addinivalue_line(
        "markers", "smoke: the caller-version smoke subset (tests/smoke.py, scripts/smoke.sh)")
    method = os.environ.get(START_METHOD_ENV)
    if method:
        multiprocessing.set_start_method(method, force=True)
    if os.environ.get(FORK_CHECK_ENV):
        check = _ForkCheck()
        os.register_at_fork(before=check.before_fork)
        config.pluginmanager.register(check, "sshpipe-fork-check")


def _is_ours(thread: threading.Thread) -> bool:
    target = getattr(thread, "_target", None)
    module = getattr(target, "__module__", None) or type(thread).__module__
    return module.split(".")[0] in ("sshpipe", "workers") or thread.name.startswith(
        ("sshpipe-", "workers-"))


class _ForkCheck:
    """Notes every fork of the test process made while sshpipe's threads run."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.forks: List[Tuple[str, str, List[str]]] = []  # test, forking thread, threads

    def before_fork(self) -> None:
        if os.getpid() != self.pid:
            return
        current = threading.current_thread()
        ours = sorted(t.name for t in threading.enumerate()
                      if t is not current and t.is_alive() and _is_ours(t))
        if ours:
            test = os.environ.get("PYTEST_CURRENT_TEST", "(between tests)").rsplit(" ", 1)[0]
            self.forks.append((test, current.name, ours))

    def failures(self) -> List[Tuple[str, str, List[str]]]:
        return [fork for fork in self.forks
                if any(name not in FORK_TOLERATED for name in fork[2])]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.forks:
            terminalreporter.write_line("fork check: no fork while sshpipe's threads ran")
            return
        terminalreporter.write_sep("=", "fork check: forks while sshpipe's threads ran")
        for test, forker, threads in self.forks:
            tolerated = all(name in FORK_TOLERATED for name in threads)
            terminalreporter.write_line(
                f"  {'tolerated' if tolerated else 'FAILED'}: {test}: fork from {forker} "
                f"while {', '.join(threads)} ran", red=not tolerated)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.failures():
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def mark(items: Sequence[pytest.Item], tests_dir: str) -> None:
    """Add the ``smoke`` marker to the listed tests among ``items``.

    Raises:
        pytest.UsageError: a listed name is not defined in its file, though the
            file was collected (renamed or removed: fix the list).
    """
    missing: Set[str] = set()
    for item in items:
        path = os.path.relpath(str(item.path), tests_dir)
        names = SMOKE.get(path)
        if names is None:
            continue
        module = getattr(item, "module", None)
        missing.update(f"{path}::{name}" for name in names if not hasattr(module, name))
        if not names or getattr(item, "originalname", item.name) in names:
            item.add_marker(pytest.mark.smoke)
    if missing:
        raise pytest.UsageError("tests/smoke.py lists tests that do not exist: "
                                + ", ".join(sorted(missing)))
