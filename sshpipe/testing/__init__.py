"""Test against a real SSH server: fixtures and helpers shipped with sshpipe.

- :class:`LocalSSHServer`: a real OpenSSH ``sshd`` on 127.0.0.1 with throw-away
  keys, known_hosts and a client config, as a context manager.
- :class:`NamespaceHosts`: several real hosts made of network namespaces, each with
  its own address and sshd (root only).
- A pytest plugin, registered through the ``pytest11`` entry point, with the
  fixtures ``sshd`` (one server for the session) and ``netns_hosts`` (three
  namespace hosts, skipped with the reason when not root).
- Processes named by pid and start time (:class:`ProcessId`, :func:`process_id`,
  :func:`is_alive`, :func:`wait_gone`, :func:`descendants`), so that a check on a
  process cannot be fooled by the kernel reusing its pid.
"""
from sshpipe.testing._errors import SSHServerError
from sshpipe.testing._netns import NamespaceHost, NamespaceHosts, netns_unavailable_reason
from sshpipe.testing._proc import (ProcessId, command_line, descendants, is_alive, process_id,
                                   process_name, send_signal, wait_gone)
from sshpipe.testing._sshd import LocalSSHServer, free_port, generate_key, owned_sshd_pids

__all__ = [
    "LocalSSHServer",
    "NamespaceHost",
    "NamespaceHosts",
    "ProcessId",
    "SSHServerError",
    "command_line",
    "descendants",
    "free_port",
    "generate_key",
    "is_alive",
    "netns_unavailable_reason",
    "owned_sshd_pids",
    "process_id",
    "process_name",
    "send_signal",
    "wait_gone",
]
