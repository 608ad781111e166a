"""pytest fixtures for code that talks SSH: a real sshd and namespace hosts.

Registered as the ``sshpipe`` pytest plugin through an entry point, so installing
sshpipe makes the fixtures available to any test suite:

- ``sshd``: a session-wide :class:`~sshpipe.testing.LocalSSHServer`.
- ``netns_hosts``: a module-wide :class:`~sshpipe.testing.NamespaceHosts` of three
  hosts; skipped, with the reason, where namespaces cannot be made (not root).

Both remove everything they made when their scope ends, failed tests included.
A run ended by SIGTERM or SIGHUP (a CI cancel, ``timeout``, a closed terminal)
is interrupted as by Ctrl-C: pytest tears the fixtures down and reports the run
as interrupted. A second such signal ends the run at once; the servers'
watchdogs then clean up, as they do when the run is SIGKILLed.
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Any, Dict, Iterator

import pytest

from sshpipe.testing._netns import NamespaceHosts, netns_unavailable_reason
from sshpipe.testing._sshd import LocalSSHServer

__all__ = ["netns_hosts", "sshd"]

# Three hosts are enough to tell "one host failed" from "all hosts failed".
NETNS_HOST_COUNT = 3

# Signals that end a run from outside; SIGINT is pytest's own (KeyboardInterrupt).
INTERRUPTING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

_previous_handlers: Dict[int, Any] = {}
_run_pid = 0  # the pytest process that installed the handlers


class TerminatedBySignal(KeyboardInterrupt):
    """The run received SIGTERM or SIGHUP. A KeyboardInterrupt, so pytest stops,
    tears every fixture down and reports the run as interrupted, and so that no
    ``except Exception`` in the code under test swallows it."""


def _interrupt(signum: int, frame: object) -> None:
    # A second signal is not caught: it ends the run at once (the watchdogs clean up).
    signal.signal(signum, signal.SIG_DFL)
    if os.getpid() != _run_pid:
        # A child forked from the run (an SSHPipe child under fork) inherited this
        # handler: it ends by the signal, as it would have without the plugin.
        os.kill(os.getpid(), signum)
        return
    raise TerminatedBySignal(f"{signal.Signals(signum).name} received: the run is "
                             f"interrupted and the test servers are torn down")


def pytest_configure(config: pytest.Config) -> None:
    """Turn SIGTERM and SIGHUP into an interruption pytest cleans up after; leave
    alone a handler someone else installed."""
    global _run_pid
    if threading.current_thread() is not threading.main_thread():
        return
    _run_pid = os.getpid()
    for signum in INTERRUPTING_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_DFL:
            _previous_handlers[signum] = signal.signal(signum, _interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _previous_handlers:
        signum, handler = _previous_handlers.popitem()
        signal.signal(signum, handler)


@pytest.fixture(scope="session")
def sshd() -> Iterator[LocalSSHServer]:
    """A real OpenSSH server on 127.0.0.1 for the whole test session."""
    with LocalSSHServer() as server:
        yield server


@pytest.fixture(scope="module")
def netns_hosts() -> Iterator[NamespaceHosts]:
    """Three real hosts in network namespaces, each with its own sshd (root only)."""
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with NamespaceHosts(NETNS_HOST_COUNT) as hosts:
        yield hosts
