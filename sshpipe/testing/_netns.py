"""Several real hosts on one machine: network namespaces on a private bridge.

Each host is a network namespace with one veth link to a bridge in the root
namespace and its own ``sshd`` on port 22 of its own address. Addresses come from
198.18.0.0/15, the range RFC 2544 sets aside for network tests, so they cannot
clash with a real network. Traffic never leaves the machine.

Ownership: :class:`NamespaceHosts` creates the bridge, the namespaces, the veth
pairs and the sshd processes, and removes all of them in :meth:`NamespaceHosts.stop`,
which also runs when the ``with`` block raises. Each thing it creates is handed
to a watchdog process (``_watchdog``) as soon as it exists, so when the owner dies
without stopping (SIGTERM, SIGKILL) the watchdog removes them; each host's sshd
has a watchdog of its own (see ``_sshd``). Needs root (CAP_NET_ADMIN).
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import List, Optional

from sshpipe.testing._errors import SSHServerError
from sshpipe.testing._sshd import LocalSSHServer, generate_key
from sshpipe.testing._watchdog import Watchdog

__all__ = ["NamespaceHost", "NamespaceHosts", "netns_unavailable_reason"]

# Bound on one ``ip`` command; they take milliseconds unless the kernel is stuck.
IP_TIMEOUT = 30.0


def netns_unavailable_reason() -> Optional[str]:
    """Why namespace hosts cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "network-namespace hosts need root"
    if shutil.which("ip") is None:
        return "the 'ip' command is missing: install the 'iproute2' package"
    probe = f"sshpipe-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, netns: Optional[str] = None) -> None:
    command = ["ip"] + (["netns", "exec", netns, "ip"] if netns else []) + list(args)
    result = subprocess.run(command, capture_output=True, text=True, timeout=IP_TIMEOUT)
    if result.returncode != 0:
        raise SSHServerError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def _subnet_in_use(subnet: str) -> bool:
    """Whether an interface of the root namespace has an address in ``subnet``.0/24
    (two bridges on one subnet would make routing to either host a coin toss)."""
    shown = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                           text=True, timeout=IP_TIMEOUT)
    return f" {subnet}." in shown.stdout


@dataclass
class NamespaceHost:
    """One namespace host: its alias in the shared config, address and sshd."""

    alias: str
    address: str
    netns: str
    link: str  # root-namespace end of the veth pair; down = host unreachable
    server: LocalSSHServer = field(repr=False)


class NamespaceHosts:
    """``count`` real hosts, each a namespace with its own address and sshd.

    Attributes, valid once started: ``hosts`` (a list of :class:`NamespaceHost`),
    ``config_path`` (an ssh client config naming every host by its alias, ``host0``
    to ``host<N-1>`` unless a prefix is given), ``known_hosts_path``, ``key_path``.
    """

    def __init__(self, count: int = 3, *, prefix: str = "host"):
        if not 1 <= count <= 200:
            raise ValueError(f"count must be from 1 to 200, not {count}")
        self.count = count
        self.prefix = prefix
        self._pick_names()
        self.hosts: List[NamespaceHost] = []
        self.directory: Optional[str] = None
        self._watchdog: Optional[Watchdog] = None

    def _pick_names(self) -> None:
        # From the OS's randomness, not the random module: test tools (hypothesis)
        # reseed that one, and two runs would then pick the same names.
        self.tag = secrets.token_hex(2)
        self.subnet = f"198.18.{secrets.randbelow(256)}"
        self.bridge = f"spbr{self.tag}"

    @property
    def gateway(self) -> str:
        """The bridge's address, as the hosts see the caller."""
        return f"{self.subnet}.1"

    @property
    def config_path(self) -> str:
        return os.path.join(self._dir(), "ssh_config")

    @property
    def known_hosts_path(self) -> str:
        return os.path.join(self._dir(), "known_hosts")

    @property
    def key_path(self) -> str:
        return os.path.join(self._dir(), "id_ed25519")

    def _dir(self) -> str:
        if self.directory is None:
            raise SSHServerError("the namespace hosts have not been started")
        return self.directory

    def start(self) -> "NamespaceHosts":
        if self._watchdog is not None:
            raise SSHServerError("the namespace hosts are already running")
        reason = netns_unavailable_reason()
        if reason:
            raise SSHServerError(reason)
        self._watchdog = Watchdog()
        try:
            self.directory = self._watchdog.mkdtemp("sshpipe-netns-")
            generate_key(self.key_path, comment="sshpipe-test-client")
            for _ in range(20):
                if _subnet_in_use(self.subnet):
                    self._pick_names()  # another run's hosts (e.g. an xdist worker's)
                    continue
                try:
                    _ip("link", "add", self.bridge, "type", "bridge")
                    break
                except SSHServerError as exc:
                    if "File exists" not in str(exc):
                        raise
                    self._pick_names()  # another run's bridge: take other names
            else:
                raise SSHServerError("no free bridge name and subnet after 20 tries")
            # Handed over once made (not before: a name taken by another run's
            # bridge must not be deleted on its behalf).
            self._watchdog.undo_at_stop(["ip", "link", "del", self.bridge])
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for index in range(self.count):
                self.hosts.append(self._make_host(index))
            self._write_client_files()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_host(self, index: int) -> NamespaceHost:
        netns = f"sshpipe-{self.tag}-{index}"
        link, peer = f"sp{self.tag}h{index}", f"sp{self.tag}p{index}"
        address = f"{self.subnet}.{10 + index}"
        assert self._watchdog is not None
        _ip("netns", "add", netns)
        self._watchdog.undo_at_stop(["ip", "netns", "del", netns])
        _ip("link", "add", link, "type", "veth", "peer", "name", peer)
        # Undone before the namespace (last given, first run): deleting one end
        # deletes the pair, so the namespace goes with nothing left in it.
        self._watchdog.undo_at_stop(["ip", "link", "del", link])
        _ip("link", "set", peer, "netns", netns)
        _ip("link", "set", link, "master", self.bridge)
        _ip("link", "set", link, "up")
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("addr", "add", f"{address}/24", "dev", peer, netns=netns)
        _ip("link", "set", peer, "up", netns=netns)
        directory = os.path.join(self._dir(), f"{self.prefix}{index}")
        os.mkdir(directory, 0o700)
        alias = f"{self.prefix}{index}"
        # The namespace and links are undone by the watchdog at stop() even if sshd
        # fails to come up here.
        server = LocalSSHServer(alias, address=address, port=22, directory=directory,
                                netns=netns, client_key_path=self.key_path)
        server.start()
        return NamespaceHost(alias=alias, address=address, netns=netns, link=link, server=server)

    def _write_client_files(self) -> None:
        with open(self.known_hosts_path, "w", encoding="ascii") as known:
            for host in self.hosts:
                known.write(host.server.known_hosts_entry() + "\n")
        with open(self.config_path, "w", encoding="utf-8") as config:
            for host in self.hosts:
                config.write(host.server.client_config().replace(
                    host.server.known_hosts_path, self.known_hosts_path) + "\n")

    # -- faults -----------------------------------------------------------
    def link_down(self, index: int) -> None:
        """Cut host ``index`` off: packets to it vanish, as with a dead peer."""
        _ip("link", "set", self.hosts[index].link, "down")

    def link_up(self, index: int) -> None:
        _ip("link", "set", self.hosts[index].link, "up")

    def stop(self) -> None:
        """Stop every sshd and remove the namespaces, links, bridge and files.
        Raises SSHServerError naming anything that could not be removed."""
        watchdog, self._watchdog = self._watchdog, None
        hosts, self.hosts = self.hosts, []
        if watchdog is None:
            return
        errors = []
        for host in hosts:
            try:
                host.server.stop()
            except SSHServerError as exc:
                errors.append(f"{host.alias}: {exc}")
        try:
            watchdog.stop()
        except SSHServerError as exc:
            errors.append(str(exc))
        self.directory = None
        if errors:
            raise SSHServerError("; ".join(errors))

    def __enter__(self) -> "NamespaceHosts":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, index: int) -> NamespaceHost:
        return self.hosts[index]
