"""CPython's own multiprocessing.Process tests, run against SSHPipe.

The test classes are CPython's, unmodified, from ``test._test_multiprocessing``
of the interpreter running the suite (the stdlib's own copy: exactly the
version in use). A thin adapter maps their ``self.Process(target=..., args=...)``
to an :class:`sshpipe.SSHPipe` running the target on the test sshd, once per
start method. Skipped tests, each with its reason, are listed in ``SKIPS``:
they exercise what is inherently local (the parent process's identity, the
local interpreter and forkserver, stdio inherited from the test process), not
the Process contract a remote agent can honour. Queues and events the tests
hand their targets come from a manager (CPython's own manager flavour of these
tests), since inherited pipes and semaphores cannot reach another host.
"""
from __future__ import annotations

import multiprocessing
import pickle
import unittest

import pytest

from sshpipe import SSHPipe

cpython = pytest.importorskip(
    "test._test_multiprocessing",
    reason="this interpreter ships without CPython's test package (test._test_multiprocessing)")

# Set from the sshd fixture before the classes run.
SERVER = None

SKIPS = {
    "test_current": "checks current_process() of the test process itself, not the child",
    "test_set_executable": "sets the local interpreter multiprocessing spawns; a remote "
                           "agent runs the python= given to SSHPipe",
    "test_parent_process_attributes": "parent_process() inside the target: the remote "
                                      "agent's parent is the SSH session, not the caller",
    "test_parent_process": "parent_process() inside the target: the remote agent's parent "
                           "is the SSH session, not the caller",
    "test_recursion": "its targets take a multiprocessing Pipe, a local connection pair "
                      "that no manager can proxy to another host",
    "test_process": "deliberate difference: the target reports os.getpid(), the remote "
                    "agent's pid (SSHPipe.remote_info['pid']), while Process.pid of an "
                    "SSHPipe is its local child's, the process terminate() and kill() reach "
                    "(name, args, kwargs, authkey, daemon, exitcode all pass)",
    "test_close": "deliberate difference: SSHPipe.close() keeps the seed's meaning (end the "
                  "agent, return its response; afterwards the Process half is released), "
                  "where Process.close() refuses a live process",
    "test_error_on_stdio_flush_1": "replaces sys.stdout in the test process and expects the "
                                   "child to inherit it; a remote agent's stdio is its own",
    "test_error_on_stdio_flush_2": "replaces sys.stdout in the test process and expects the "
                                   "child to inherit it; a remote agent's stdio is its own",
    "test_forkserver_sigint": "signals the local forkserver process, not a Process",
    "test_forkserver_sigkill": "signals the local forkserver process, not a Process",
}


def _run_with_authkey(authkey: bytes, call: bytes):
    """Remote side: take the test manager's authkey (as a spawned child would
    inherit it) before the queue and event proxies in the call are rebuilt (they
    connect to the manager as they are unpickled)."""
    multiprocessing.current_process().authkey = authkey
    target, args, kwargs = pickle.loads(call)
    return target(*args, **kwargs)


class SSHProcess(SSHPipe):
    """Process's constructor, mapped to a pipe running the target on the test sshd."""

    def __init__(self, group=None, target=None, name=None, args=(), kwargs=None, *,
                 daemon=None):
        assert group is None
        authkey = bytes(multiprocessing.current_process().authkey)
        call = pickle.dumps((target, tuple(args), dict(kwargs or {})))
        super().__init__(SERVER.alias, target=_run_with_authkey, args=(authkey, call),
                         name=name, daemon=daemon, config=SERVER.config_path,
                         python=SERVER.python, ready_timeout=30,
                         # the targets are classmethods of the classes below
                         modules=[__name__])


class SSHProcessesMixin(cpython.ManagerMixin):
    """CPython's manager flavour: the queues and events the tests hand their
    targets are proxies to a manager on 127.0.0.1, which a remote agent can reach
    (as any process can), where an inherited pipe or semaphore cannot."""

    TYPE = "processes"
    Process = SSHProcess
    connection = multiprocessing.connection
    current_process = staticmethod(multiprocessing.current_process)
    parent_process = staticmethod(multiprocessing.parent_process)
    active_children = staticmethod(multiprocessing.active_children)
    set_executable = staticmethod(multiprocessing.set_executable)

    @classmethod
    def tearDownClass(cls):
        cls.manager.shutdown()
        cls.manager.join()
        cls.manager = None


@pytest.fixture(autouse=True, scope="module")
def _server(sshd):
    global SERVER
    SERVER = sshd
    yield


def _make(method: str):
    def setUpClass(cls):
        cls._previous = multiprocessing.get_start_method(allow_none=True)
        multiprocessing.set_start_method(method, force=True)
        super(cls, cls).setUpClass()

    def tearDownClass(cls):
        super(cls, cls).tearDownClass()
        multiprocessing.set_start_method(cls._previous, force=True)

    namespace = {"setUpClass": classmethod(setUpClass),
                 "tearDownClass": classmethod(tearDownClass)}
    skips = dict(SKIPS)
    if method != "spawn":
        # The test starts 100 processes under fork/forkserver (5 under spawn, which
        # runs): 200 sequential SSH handshakes (~0.3 s each on an idle machine,
        # several times that on a loaded one) outrun the suite's time budget.
        skips["test_many_processes"] = ("starts 100 processes one after another: 200 "
                                        "sequential SSH sessions exceed the time budget; "
                                        "the spawn variant (5 processes) runs")
    for name, reason in skips.items():
        if hasattr(cpython._TestProcess, name):
            namespace[name] = unittest.skip(reason)(getattr(cpython._TestProcess, name))
    return type(f"TestSSHPipeProcess_{method}",
                (cpython._TestProcess, SSHProcessesMixin, unittest.TestCase), namespace)


TestSSHPipeProcess_spawn = _make("spawn")
TestSSHPipeProcess_fork = _make("fork")
TestSSHPipeProcess_forkserver = _make("forkserver")
