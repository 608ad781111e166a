"""CPython's own concurrent.futures tests, run against SSHExecutor.

The test classes are CPython's, unmodified, for the Python in use: found in its
``test`` package or fetched at set-up from Debian's ``libpython3.X-testsuite``
(see :mod:`cpython_futures`; never kept in this repository). A thin adapter
(:mod:`cpython_futures_adapter`) maps ProcessPoolExecutor's constructor to an
SSHExecutor with one host, the test sshd, and each generic mixin runs under the
spawn, fork and forkserver start methods (``mp_context=``):

- ``ExecutorTest`` with ``ProcessPoolExecutorTest``'s own tests, ``WaitTests``,
  ``AsCompletedTests``, ``ExecutorDeadlockTest``, ``ExecutorShutdownTest``,
  ``InitializerMixin``, ``FailingInitializerMixin``;
- ``FutureTests``, once, with their futures made as :class:`~workers.TaskFuture`.

Left out whole: ``ProcessPoolShutdownTest`` and the ``ThreadPool*`` classes,
which test ProcessPoolExecutor's and ThreadPoolExecutor's own internals
(``_processes``, ``_call_queue``, ``_threads``) or those classes by name.

The snippets some tests run in a fresh Python (``assert_python_ok``) import
their executor from ``concurrent.futures``: the adapter starts that Python with
the overlay on its path and the sshd named in its environment, so it finds
``concurrent.futures.SSHProcessPool``. That is the only thing changed around
them. Each skipped test is listed in :data:`SKIPS` with its reason.
"""
from __future__ import annotations

import functools
import importlib
import logging
import multiprocessing
import os
import pkgutil
import unittest
import unittest.mock
from pathlib import Path
from types import ModuleType
from typing import List

import pytest

import cpython_futures
import cpython_futures_adapter
from cpython_futures_adapter import SSHProcessPool
from workers import TaskFuture

OVERLAY, WHY = cpython_futures.prepare()
if OVERLAY is None:
    pytest.skip(f"CPython's concurrent.futures tests cannot be had: {WHY}",
                allow_module_level=True)
cpython_futures.install(OVERLAY)

START_METHODS = ["fork", "forkserver", "spawn"]
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
HERE = str(Path(__file__).resolve().parent)

# test name -> why it is skipped (for every start method).
SKIPS = {
    # ProcessPoolExecutor's internals, which an SSH executor does not have.
    "test_killed_child": "kills one of ProcessPoolExecutor._processes; a killed remote "
                         "worker is tested in test_executor (WorkerDiedError, host stays)",
    "test_saturation": "counts ProcessPoolExecutor._processes, and hands the tasks a "
                       "semaphore of the test process, which cannot reach another host",
    "test_idle_process_reuse_one": "counts ProcessPoolExecutor._processes",
    "test_idle_process_reuse_multiple": "counts ProcessPoolExecutor._processes",
    "test_max_tasks_per_child": "counts ProcessPoolExecutor._processes and expects fork to "
                                "be refused (remote workers are fresh interpreters under "
                                "any start method); test_reliability covers the feature",
    "test_max_tasks_per_child_defaults_to_spawn_context": "reads "
                                                          "ProcessPoolExecutor._mp_context",
    "test_shutdown_deadlock_pickle": "joins ProcessPoolExecutor._executor_manager_thread",
    "test_ressources_gced_in_workers": "hands the task a manager proxy, which needs the "
                                       "test process's authkey on the remote",
    # Deliberate differences, documented in workers' README section.
    "test_traceback": "the remote traceback is sshpipe's RemoteTraceback (it names the host), "
                      "not concurrent.futures.process._RemoteTraceback; test_executor checks it",
    "test_repr": "TaskFuture's repr names its class, task and host",
    "test_multiple_set_result": "InvalidStateError is raised (test_executor checks it); its "
                                "message embeds TaskFuture's repr, which names its class",
    "test_multiple_set_exception": "InvalidStateError is raised (test_executor checks it); its "
                                   "message embeds TaskFuture's repr, which names its class",
}

# Upstream classes run here, by name.
EXECUTOR_MIXINS = ["ProcessPoolExecutorTest", "WaitTests", "AsCompletedTests",
                   "ExecutorDeadlockTest", "ExecutorShutdownTest", "InitializerMixin",
                   "FailingInitializerMixin"]


def _upstream_modules() -> List[ModuleType]:
    """The tests' module (3.11) or the modules of their package (3.12 and later)."""
    top = importlib.import_module("test.test_concurrent_futures")
    modules = [top]
    if hasattr(top, "__path__"):
        for info in pkgutil.iter_modules(top.__path__):
            modules.append(importlib.import_module(f"{top.__name__}.{info.name}"))
    return modules


MODULES = _upstream_modules()


def _find(name: str):
    for module in MODULES:
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"CPython's futures tests have no {name}")


ExecutorMixin = _find("ExecutorMixin")
BaseTestCase = _find("BaseTestCase")


class SSHExecutorMixin(ExecutorMixin):
    """ExecutorMixin over the adapter, with ``mp_context`` from ``start_method``."""

    executor_type = SSHProcessPool
    start_method = "spawn"

    def get_context(self):
        return multiprocessing.get_context(self.start_method)

    def setUp(self):
        self.executor_kwargs = {**self.executor_kwargs, "mp_context": self.get_context()}
        super().setUp()


def _skipped(cls):
    for name in dir(cls):
        if name.startswith("test") and name in SKIPS:
            setattr(cls, name, unittest.skip(SKIPS[name])(getattr(cls, name)))
    return cls


def _strip(name: str) -> str:
    for suffix in ("Mixin", "Tests", "Test"):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


for _name in EXECUTOR_MIXINS:
    for _method in START_METHODS:
        _cls_name = f"{_strip(_name)}SSH{_method.capitalize()}Test"
        globals()[_cls_name] = _skipped(type(_cls_name, (_find(_name), SSHExecutorMixin,
                                                         BaseTestCase),
                                             {"start_method": _method}))


@_skipped
class FutureSSHTest(_find("FutureTests")):
    """CPython's Future tests with every future made as a TaskFuture."""

    def setUp(self):
        super().setUp()
        # Two tests read a raising callback's log line from stderr, where logging's
        # last-resort handler writes when no handler is configured (unittest's
        # case); pytest's log capture configures one: set it aside meanwhile.
        root = logging.getLogger()
        saved, root.handlers[:] = root.handlers[:], []
        self.addCleanup(root.handlers.extend, saved)
        for module in MODULES:
            if getattr(module, "Future", None) is not None:
                patcher = unittest.mock.patch.object(module, "Future", TaskFuture)
                patcher.start()
                self.addCleanup(patcher.stop)


del _name, _method, _cls_name


@pytest.fixture(autouse=True, scope="module")
def _server(sshd):
    """Point the adapter at the test sshd; let the tests' subprocesses find it."""
    cpython_futures_adapter.SERVER.update(
        alias=sshd.alias, config=sshd.config_path, python=sshd.python, overlay=str(OVERLAY))
    env = {**cpython_futures_adapter.environment(), "__isolated": False,
           "PYTHONPATH": os.pathsep.join([str(OVERLAY), HERE, SOURCE_ROOT])}
    patches = []
    for module in MODULES:
        for helper in ("assert_python_ok", "assert_python_failure"):
            original = getattr(module, helper, None)
            if original is not None:
                patches.append(unittest.mock.patch.object(
                    module, helper, functools.partial(original, **env)))
    for patcher in patches:
        patcher.start()
    yield
    for patcher in patches:
        patcher.stop()
    cpython_futures_adapter.SERVER.clear()


def test_every_skip_names_an_upstream_test():
    """Each listed skip is a test CPython's suite has (a rename would hide one)."""
    names = {name for module in MODULES for value in vars(module).values()
             if isinstance(value, type) for name in dir(value) if name.startswith("test")}
    assert sorted(set(SKIPS) - names) == []


def test_origin_is_recorded():
    """Where the CPython tests came from is written next to them."""
    assert (OVERLAY / "ORIGIN").read_text().strip()

