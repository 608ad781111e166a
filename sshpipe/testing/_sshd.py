"""A real OpenSSH ``sshd`` on 127.0.0.1, private to one test run.

Ownership: :class:`LocalSSHServer` creates a private directory (mode 0700) holding
the host key, a client key pair, ``authorized_keys``, ``known_hosts`` and a client
config; it starts ``sshd -D`` as its own child process and is the only one that
stops it (by pid) and removes the directory.
"""
from __future__ import annotations

import getpass
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterable, List, Optional

from sshpipe.errors import SSHPipeError

__all__ = ["LocalSSHServer", "SSHServerError", "descendants", "find_sshd", "free_port",
           "generate_key", "is_alive", "owned_sshd_pids", "wait_gone"]

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


class SSHServerError(SSHPipeError):
    """The test sshd could not be set up or did not come up."""


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
        return sock.getsockname()[1]


def _wait_for_banner(address: str, port: int, process: subprocess.Popen,
                     deadline: float) -> bool:
    """Poll until sshd answers with its SSH banner; False if the process died."""
    delay = 0.002
    while time.monotonic() < deadline:
        if process.poll() is not None:
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
        self._process: Optional[subprocess.Popen] = None

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
        return self._process.pid if self._process is not None else None

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
        if self._process is not None:
            raise SSHServerError("the server is already running")
        sshd = find_sshd()
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="sshpipe-sshd-")
        os.chmod(self._directory, 0o700)
        try:
            self._prepare(sshd)
            for attempt in range(5):
                if self.netns is None and (self.port == 0 or attempt):
                    self.port = free_port(self.address)
                elif self.port == 0:
                    self.port = 22
                if self._launch(sshd):
                    break
                # A taken port is retried with another; anything else is final.
                if self.netns is not None or attempt == 4 or "Address already in use" not in self._read_log():
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
            + _COMMON_SERVER_OPTIONS + self.extra_server_options
        )
        self._write_private(path, text)
        return path

    def _launch(self, sshd: str) -> bool:
        config = self._server_config()
        command: List[str] = [sshd, "-D", "-e", "-f", config]
        if self.netns is not None:
            command = ["ip", "netns", "exec", self.netns] + command
        log = open(self.log_path, "ab")
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=log, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        if self.netns is None:
            ready = _wait_for_banner(self.address, self.port, self._process, deadline)
        else:
            ready = self._wait_in_netns(deadline)
        if not ready:
            self._terminate_process()
        return ready

    def _wait_in_netns(self, deadline: float) -> bool:
        """sshd in a namespace: wait until its log says it listens."""
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
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

    def _terminate_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # Each connection gets an sshd child that calls setsid(), so signalling the
        # listener's group is not enough: find its descendants before it goes.
        victims = [process.pid] + descendants(process.pid)
        for pid in victims:
            _signal(pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(is_alive(pid) for pid in victims[1:]):
            time.sleep(0.01)
        for pid in victims:
            _signal(pid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(timeout=5)

    def stop(self) -> None:
        """Stop sshd (by pid) and remove everything this server created."""
        self._terminate_process()
        if self._own_directory and self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> "LocalSSHServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running pid {self.pid}" if self.is_running() else "stopped"
        return f"<LocalSSHServer {self.alias} {self.user}@{self.address}:{self.port} {state}>"


def login_shell(user: Optional[str] = None) -> str:
    """The login shell sshd will run commands under for ``user``."""
    return pwd.getpwnam(user or getpass.getuser()).pw_shell


def descendants(pid: int) -> List[int]:
    """Pids of every live descendant of ``pid`` (Linux /proc), children first."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: List[int] = []
    frontier = [pid]
    while frontier:
        kids = children.get(frontier.pop(), [])
        found.extend(kids)
        frontier.extend(kids)
    return found


def is_alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def wait_gone(pids: Iterable[int], timeout: float) -> List[int]:
    """Wait up to ``timeout`` seconds for every process in ``pids`` to end; return
    those still alive (empty when all are gone)."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        pending = [pid for pid in pending if is_alive(pid)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.01)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def owned_sshd_pids(owner: int) -> List[int]:
    """Live sshd processes descending from process ``owner``: the listeners it
    started and their per-connection children. A server stopped properly leaves
    none (stop() ends the listener's descendants before the listener)."""
    found = []
    for pid in descendants(owner):
        try:
            with open(f"/proc/{pid}/comm", "rb") as comm:
                if comm.read().strip() == b"sshd" and is_alive(pid):
                    found.append(pid)
        except OSError:
            continue
    return found
