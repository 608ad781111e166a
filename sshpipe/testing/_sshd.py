"""A real OpenSSH ``sshd`` on 127.0.0.1, private to one test run.

Ownership: :class:`LocalSSHServer` starts a watchdog process (``_watchdog``)
first. Through it, it creates a private directory (mode 0700) holding the host
key, a client key pair, ``authorized_keys``, ``known_hosts`` and a client config,
and starts ``sshd -D``. ``stop()`` has the watchdog end sshd and every process
below it (per-connection sshd, remote sessions) and remove the directory; if the
owner dies first, by any signal, SIGKILL included, the watchdog does the same on
its own, so no root-accepting sshd outlives the run that started it.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import List, Optional, Union

from sshpipe.testing._errors import SSHServerError
from sshpipe.testing._proc import ProcessId, descendants, is_alive, process_name
from sshpipe.testing._watchdog import Watchdog

__all__ = ["LocalSSHServer", "SSHServerError", "find_sshd", "free_port", "generate_key",
           "owned_sshd_pids"]

# How long sshd and its sessions get to end after SIGTERM in stop(), before SIGKILL.
STOP_GRACE = 5.0

# How long sshd may take to accept SSH after being started. It is usually ready in
# about 10 ms; a loaded CI machine can be a hundred times slower.
START_TIMEOUT = 20.0

# sshd_config lines every test server gets. MaxStartups/MaxSessions are raised so
# load tests that open many connections at once are not throttled by sshd itself.
_COMMON_SERVER_OPTIONS = """\
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
MaxStartups 200:30:400
MaxSessions 200
LogLevel VERBOSE
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
"""


def _source_tree() -> Optional[str]:
    """The checkout this sshpipe was imported from (the directory holding the
    ``sshpipe`` package and ``pyproject.toml``), or None for an installed copy."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = os.path.dirname(root)
    return root if os.path.isfile(os.path.join(root, "pyproject.toml")) else None


def find_sshd() -> str:
    """Return the path of OpenSSH's ``sshd``, or raise naming the package to install."""
    for candidate in (shutil.which("sshd"), "/usr/sbin/sshd", "/usr/local/sbin/sshd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SSHServerError(
        "sshd (the OpenSSH server) is not installed: install the 'openssh-server' package "
        "(apt-get install openssh-server)")


def generate_key(path: str, comment: str = "sshpipe-test") -> str:
    """Generate an ed25519 key pair at ``path`` with ssh-keygen; return the public line."""
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise SSHServerError("ssh-keygen is not installed: install the 'openssh-client' package")
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    with open(path + ".pub", encoding="ascii") as pub:
        return pub.read().strip()


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port the kernel just gave out; a later bind may race, callers retry."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_banner(address: str, port: int, process: ProcessId, deadline: float) -> bool:
    """Poll until sshd answers with its SSH banner; False if the process died."""
    delay = 0.002
    while time.monotonic() < deadline:
        if not is_alive(process):
            return False
        try:
            with socket.create_connection((address, port), timeout=1.0) as sock:
                if sock.recv(8).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return False


class LocalSSHServer:
    """A real ``sshd`` on 127.0.0.1 with throw-away keys, as a context manager.

    Use it to test code that talks SSH without touching the machine's own sshd or
    the user's ``~/.ssh``::

        with LocalSSHServer() as server:
            client.connect(..., port=server.port, key_filename=server.key_path)

    As root it accepts logins for root; as any other user, sshd runs without
    privilege separation and accepts logins only as that user.

    Attributes, valid once started:
        alias: the Host alias in ``config_path`` that reaches the server.
        address, port: where sshd listens.
        user: the login user.
        key_path: the client private key (its ``.pub`` beside it).
        known_hosts_path: a known_hosts file holding the server's host key.
        config_path: an ssh client config with the alias, user, key and known_hosts.
        host_key_path: the server's private host key.
        directory: the private directory holding all of the above and the log.
    """

    def __init__(self, alias: str = "sshpipe-test", *, address: str = "127.0.0.1",
                 port: Optional[int] = None, extra_server_options: str = "",
                 directory: Optional[str] = None, netns: Optional[str] = None,
                 client_key_path: Optional[str] = None):
        self.alias = alias
        self.address = address
        self.port = port or 0
        self.user = getpass.getuser()
        self.extra_server_options = extra_server_options
        self.netns = netns
        self._own_directory = directory is None
        self._directory = directory
        self._client_key_path = client_key_path
        self._watchdog: Optional[Watchdog] = None
        self._sshd: Optional[ProcessId] = None

    # -- paths ------------------------------------------------------------
    @property
    def directory(self) -> str:
        if self._directory is None:
            raise SSHServerError("the server has not been started")
        return self._directory

    @property
    def key_path(self) -> str:
        return self._client_key_path or os.path.join(self.directory, "id_ed25519")

    @property
    def host_key_path(self) -> str:
        return os.path.join(self.directory, "ssh_host_ed25519_key")

    @property
    def known_hosts_path(self) -> str:
        return os.path.join(self.directory, "known_hosts")

    @property
    def config_path(self) -> str:
        return os.path.join(self.directory, "ssh_config")

    @property
    def log_path(self) -> str:
        return os.path.join(self.directory, "sshd.log")

    @property
    def python(self) -> str:
        """A remote interpreter that has sshpipe importable: the one running the tests."""
        return sys.executable

    @property
    def pid(self) -> Optional[int]:
        """The listening sshd's pid (see :attr:`process` for its identity)."""
        return self._sshd.pid if self._sshd is not None else None

    @property
    def process(self) -> Optional[ProcessId]:
        """The listening sshd, by pid and start time."""
        return self._sshd

    @property
    def watchdog(self) -> Optional[ProcessId]:
        """The watchdog process that ends this server with its owner."""
        return self._watchdog.process if self._watchdog is not None else None

    @property
    def host_key_line(self) -> str:
        with open(self.host_key_path + ".pub", encoding="ascii") as pub:
            kind, blob = pub.read().split()[:2]
        return f"{kind} {blob}"

    def known_hosts_entry(self) -> str:
        """The known_hosts line OpenSSH writes for this address and port."""
        name = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{name} {self.host_key_line}"

    def client_config(self) -> str:
        """The ``Host`` block for this server, as written to ``config_path``."""
        return (
            f"Host {self.alias}\n"
            f"    HostName {self.address}\n"
            f"    Port {self.port}\n"
            f"    User {self.user}\n"
            f"    IdentityFile {self.key_path}\n"
            f"    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {self.known_hosts_path}\n"
            f"    GlobalKnownHostsFile /dev/null\n"
            f"    StrictHostKeyChecking yes\n"
            f"    BatchMode yes\n"
        )

    # -- life cycle -------------------------------------------------------
    def start(self) -> "LocalSSHServer":
        """Create keys and config, start sshd, and return once it speaks SSH."""
        if self._watchdog is not None:
            raise SSHServerError("the server is already running")
        sshd = find_sshd()
        self._watchdog = Watchdog()
        try:
            if self._directory is None:
                self._directory = self._watchdog.mkdtemp("sshpipe-sshd-")
            os.chmod(self._directory, 0o700)
            self._prepare(sshd)
            for attempt in range(5):
                if self.netns is None and (self.port == 0 or attempt):
                    self.port = free_port(self.address)
                elif self.port == 0:
                    self.port = 22
                if self._launch(sshd):
                    break
                # A taken port is retried with another; anything else is final.
                if (self.netns is not None or attempt == 4
                        or "Address already in use" not in self._read_log()):
                    raise SSHServerError(
                        f"sshd did not start on {self.address}:{self.port}; its log:\n"
                        + self._read_log())
            self._write_client_files()
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare(self, sshd: str) -> None:
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            # Debian's sshd refuses to start as root without its privsep directory.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        if not os.path.exists(self.host_key_path):
            generate_key(self.host_key_path, comment=f"sshpipe-test-host-{self.alias}")
        if not os.path.exists(self.key_path):
            generate_key(self.key_path, comment=f"sshpipe-test-client-{self.user}")
        with open(self.key_path + ".pub", encoding="ascii") as pub:
            client_public = pub.read().strip()
        self._write_private(os.path.join(self.directory, "authorized_keys"),
                            client_public + "\n")

    def _server_config(self) -> str:
        path = os.path.join(self.directory, "sshd_config")
        text = (
            f"Port {self.port}\n"
            f"ListenAddress {self.address}\n"
            f"HostKey {self.host_key_path}\n"
            f"PidFile {os.path.join(self.directory, 'sshd.pid')}\n"
            f"AuthorizedKeysFile {os.path.join(self.directory, 'authorized_keys')}\n"
            f"AllowUsers {self.user}\n"
            + self._remote_environment()
            + _COMMON_SERVER_OPTIONS + self.extra_server_options
        )
        self._write_private(path, text)
        return path

    @staticmethod
    def _remote_environment() -> str:
        """Remote commands import the sshpipe under test, not another copy.

        Tests run from a source checkout (``PYTHONPATH=$PWD``, a git worktree) would
        otherwise have agents started as plain commands import whichever sshpipe
        the interpreter has installed, and test that one on the remote side.
        """
        tree = _source_tree()
        return f'SetEnv PYTHONPATH="{tree}"\n' if tree else ""

    def _launch(self, sshd: str) -> bool:
        config = self._server_config()
        command: List[str] = [sshd, "-D", "-e", "-f", config]
        if self.netns is not None:
            command = ["ip", "netns", "exec", self.netns] + command
        assert self._watchdog is not None
        self._sshd = self._watchdog.run(command, self.log_path)
        deadline = time.monotonic() + START_TIMEOUT
        if self.netns is None:
            ready = _wait_for_banner(self.address, self.port, self._sshd, deadline)
        else:
            ready = self._wait_in_netns(self._sshd, deadline)
        if not ready:
            left = self._watchdog.end_processes(STOP_GRACE)
            self._sshd = None
            if left:
                raise SSHServerError(f"sshd did not start and could not be ended: {left}")
        return ready

    def _wait_in_netns(self, process: ProcessId, deadline: float) -> bool:
        """sshd in a namespace: wait until its log says it listens."""
        while time.monotonic() < deadline:
            if not is_alive(process):
                return False
            if "Server listening" in self._read_log():
                return True
            time.sleep(0.01)
        return False

    def _write_client_files(self) -> None:
        self._write_private(self.known_hosts_path, self.known_hosts_entry() + "\n")
        self._write_private(self.config_path, self.client_config())

    @staticmethod
    def _write_private(path: str, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)

    def _read_log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def read_log(self) -> str:
        """sshd's own log (``-e`` output): useful when a test fails."""
        return self._read_log()

    def stop(self) -> None:
        """Stop sshd and every process below it (SIGTERM, then SIGKILL after
        STOP_GRACE seconds) and remove everything this server created. Raises
        SSHServerError naming anything that could not be ended or removed. In a
        process other than the one that started the server (a forked child), it
        does nothing: the server is not that process's to stop."""
        watchdog, self._watchdog = self._watchdog, None
        self._sshd = None
        if watchdog is None:
            return
        watchdog.stop(STOP_GRACE)
        if self._own_directory:
            self._directory = None

    def is_running(self) -> bool:
        return self._sshd is not None and is_alive(self._sshd)

    def __enter__(self) -> "LocalSSHServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running pid {self.pid}" if self.is_running() else "stopped"
        return f"<LocalSSHServer {self.alias} {self.user}@{self.address}:{self.port} {state}>"


def owned_sshd_pids(owner: Union[ProcessId, int]) -> List[ProcessId]:
    """Live sshd processes descending from process ``owner``: the listeners it
    started and their per-connection children. A server stopped properly leaves
    none (stop() ends the listener's descendants before the listener)."""
    return [process for process in descendants(owner) if process_name(process) == "sshd"]
