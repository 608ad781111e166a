"""Test against a real SSH server: fixtures and helpers shipped with sshpipe.

- :class:`LocalSSHServer`: a real OpenSSH ``sshd`` on 127.0.0.1 with throw-away
  keys, known_hosts and a client config, as a context manager.
- :class:`NamespaceHosts`: several real hosts made of network namespaces, each with
  its own address and sshd (root only).
- A pytest plugin, registered through the ``pytest11`` entry point, with the
  fixtures ``sshd`` (one server for the session) and ``netns_hosts`` (three
  namespace hosts, skipped with the reason when not root).
"""
from sshpipe.testing._netns import NamespaceHost, NamespaceHosts, netns_unavailable_reason
from sshpipe.testing._sshd import (LocalSSHServer, SSHServerError, descendants, free_port,
                                   generate_key, is_alive, owned_sshd_pids, wait_gone)

__all__ = [
    "LocalSSHServer",
    "NamespaceHost",
    "NamespaceHosts",
    "SSHServerError",
    "descendants",
    "free_port",
    "generate_key",
    "is_alive",
    "netns_unavailable_reason",
    "owned_sshd_pids",
    "wait_gone",
]
