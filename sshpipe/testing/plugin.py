"""pytest fixtures for code that talks SSH: a real sshd and namespace hosts.

Registered as the ``sshpipe`` pytest plugin through an entry point, so installing
sshpipe makes the fixtures available to any test suite:

- ``sshd``: a session-wide :class:`~sshpipe.testing.LocalSSHServer`.
- ``netns_hosts``: a module-wide :class:`~sshpipe.testing.NamespaceHosts` of three
  hosts; skipped, with the reason, where namespaces cannot be made (not root).

Both remove everything they made when their scope ends, failed tests included.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from sshpipe.testing._netns import NamespaceHosts, netns_unavailable_reason
from sshpipe.testing._sshd import LocalSSHServer

__all__ = ["netns_hosts", "sshd"]

# Three hosts are enough to tell "one host failed" from "all hosts failed".
NETNS_HOST_COUNT = 3


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
