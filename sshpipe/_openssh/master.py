"""Find or start the one ssh ControlMaster for a target and its owner.

::

    ensure_master(target, owner)
      │ key = hash(target, owner)            (target.py)
      │ K.sock answers HELLO? ──yes──> Master (no lock taken: the common case)
      │ no: flock K.lock                     (controldir.py; waits while another
      │     K.sock answers now? ─yes─> Master  process starts the same master)
      │     stale K.sock? unlink it
      │     ssh -N -M -S K.sock ... host     the foreground ssh authenticates,
      │         exit 0 = daemonized master   listens on K.sock, forks to the
      │         255 = failure: K.log → typed error (failures.py)     background
      │     watchdog(owner, master)          (watchdog.py)
      │     K.json                           (registry.py)
      └ unlock

The master's command line: ``ssh -N -M -S K.sock -E K.log -n -T -e none -o
ControlPersist=<persist> -o ClearAllForwardings=yes -o ServerAliveInterval=..
-o ServerAliveCountMax=.. [-o BatchMode=yes] [-F config -l user -p port -J jump]
-- host``. Everything else comes from the user's ssh_config as ssh reads it
(certificates, FIDO keys, GSSAPI, Match exec, ProxyJump/ProxyCommand); options
on the command line win over the config, which is how ControlPath, ControlMaster
and ControlPersist of the user's own are set aside for this master.
StrictHostKeyChecking and known_hosts are never touched: an unknown or changed
host key fails as the user's ssh would fail, as a HostKeyError.

No prompt can hang it: ssh runs in a new session (no controlling terminal) with
stdin on /dev/null and ``BatchMode=yes``, unless ``SSH_ASKPASS`` is set and ssh
would use it (``DISPLAY`` set, or ``SSH_ASKPASS_REQUIRE=force``): then BatchMode
is left off so the user's askpass can ask for a passphrase, a password or a
second factor. Either way the start is bounded by ``timeout``, after which the
ssh (and its askpass or ProxyCommand, same process group) is killed.

Lifetime. A master ends:

- when idle for ``persist`` seconds (ssh's own ControlPersist): no session, no
  control connection;
- when its owner ends, however it ends. ControlPersist alone does not do this:
  a caller killed with SIGKILL leaves sessions whose remote commands may never
  see EOF (one that does not read stdin keeps its channel, and so the master,
  open indefinitely), and a master shared by a long ``persist`` outlives any test
  run. So each owned master gets a watchdog: a small stdlib-only Python process
  (``python -I -S``, ~10 MB) that holds pidfds of the owner and the master and
  sleeps in ``poll()``. When the owner ends it sends MUX_C_TERMINATE, then
  escalates to SIGTERM and SIGKILL; when the master ends it retires the files. If
  the watchdog itself is killed, ControlPersist is the backstop.
- when the link dies: ``ServerAliveInterval`` x ``ServerAliveCountMax`` (default
  10 s x 3) of silence from the server and ssh exits.
- when stopped: :func:`sshpipe._openssh.registry.stop_masters`.

The owner is part of the key, so a master serves one caller process (and the
processes it starts, which pass its pid): no caller can end another one's
sessions by exiting. ``owner=None`` asks for a shared master that lives by
ControlPersist alone.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from sshpipe._openssh import _procs
from sshpipe._openssh.controldir import KeyLock, KeyPaths, prepare_control_dir
from sshpipe._connect_errors import Failure, connect_error
from sshpipe._openssh.failures import (MasterNotRunning, MuxUnavailable, classify,
                                       error_from_ssh, log_facts, read_log_tail)
from sshpipe._openssh.mux import MuxClient
from sshpipe._openssh.registry import read_meta, retire, terminate_process, write_meta
from sshpipe._openssh.target import Target, master_key
from sshpipe.errors import ConnectError

if TYPE_CHECKING:  # pragma: no cover
    from sshpipe._openssh.mux import MuxSession
    from sshpipe._openssh.passenger import PassengerSession

__all__ = ["DEFAULT_PERSIST", "DEFAULT_TIMEOUT", "MIN_OPENSSH", "Master", "SELF",
           "askpass_usable", "ensure_master", "master_command", "openssh_version"]

logger = logging.getLogger(__name__)

# Idle seconds before a master exits: long enough to bridge the gaps between a
# workflow's short steps, short enough that an unused master soon goes away.
DEFAULT_PERSIST = 60.0

# Bound on starting a master (TCP, handshake, authentication), as the paramiko
# transport's DEFAULT_CONNECT_TIMEOUT: OpenSSH alone would wait for the kernel.
DEFAULT_TIMEOUT = 30.0

# Keepalives while sessions are idle: a dead link is noticed after about
# interval x count seconds, and every session on it then ends.
SERVER_ALIVE_INTERVAL = 10
SERVER_ALIVE_COUNT_MAX = 3

# An existing socket answers HELLO within microseconds; this only bounds a master
# that is wedged (e.g. stopped with SIGSTOP).
PROBE_TIMEOUT = 5.0

# Python's start-up plus a few imports; far more than needed on a quiet machine.
WATCHDOG_READY_TIMEOUT = 15.0

# Passed as ``owner``: the calling process.
SELF = 0

# The oldest client with everything used here: ``-E`` (the master's log) came in
# 6.7; ControlPersist (5.6) and mux protocol 4 are older.
MIN_OPENSSH = (6, 7)

# The watchdog runs as a script from this very sshpipe tree: -I ignores PYTHONPATH
# and the user's site, -S the site-packages (it needs only the stdlib).
_WATCHDOG_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "watchdog.py")


@functools.lru_cache(maxsize=8)
def openssh_version(ssh: str = "ssh") -> Optional[Tuple[int, int]]:
    """``(major, minor)`` of the OpenSSH client ``ssh`` (a name on PATH or a path),
    or None if there is none or it is not OpenSSH. For ``transport="auto"``: use
    masters when this is at least :data:`MIN_OPENSSH`. Cached per process."""
    path = shutil.which(ssh)
    if path is None:
        return None
    try:
        result = subprocess.run([path, "-V"], stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(rb"OpenSSH_(\d+)\.(\d+)", result.stderr + result.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else None


def askpass_usable(env: Mapping[str, str]) -> bool:
    """True if ssh, with no terminal, would ask through ``$SSH_ASKPASS`` (the rule
    of OpenSSH's read_passphrase(): DISPLAY set, or SSH_ASKPASS_REQUIRE=force)."""
    if not env.get("SSH_ASKPASS"):
        return False
    require = env.get("SSH_ASKPASS_REQUIRE", "").lower()
    if require == "force":
        return True
    return require != "never" and bool(env.get("DISPLAY"))


def _persist_option(persist: Optional[float]) -> str:
    if persist is None:
        return "yes"
    seconds = int(persist + 0.999)
    if seconds < 1:
        raise ValueError(f"persist must be at least 1 second or None, not {persist!r}")
    return str(seconds)


def master_command(target: Target, paths: KeyPaths, *, persist: Optional[float],
                   env: Mapping[str, str], ssh: str = "ssh",
                   alive_interval: Optional[int] = SERVER_ALIVE_INTERVAL,
                   alive_count_max: Optional[int] = SERVER_ALIVE_COUNT_MAX,
                   connect_timeout: Optional[int] = None,
                   extra_options: Iterable[str] = ()) -> List[str]:
    """The argv that starts ``target``'s master on ``paths.socket``.

    ``alive_*`` and ``connect_timeout`` set to None leave those to the user's
    config; ``extra_options`` are more ``-o Name=value`` words, placed first."""
    argv = [ssh]
    for option in extra_options:
        argv += ["-o", option]
    argv += ["-N", "-M", "-S", paths.socket, "-E", paths.log, "-n", "-T", "-e", "none",
             "-o", f"ControlPersist={_persist_option(persist)}",
             "-o", "ClearAllForwardings=yes"]
    if alive_interval is not None:
        argv += ["-o", f"ServerAliveInterval={int(alive_interval)}"]
    if alive_count_max is not None:
        argv += ["-o", f"ServerAliveCountMax={int(alive_count_max)}"]
    if connect_timeout is not None:
        argv += ["-o", f"ConnectTimeout={int(connect_timeout)}"]
    if not askpass_usable(env):
        argv += ["-o", "BatchMode=yes"]
    return argv + target.options() + ["--", target.host]


class Master:
    """A running ControlMaster for one target and owner.

    Build it with :func:`ensure_master`. Cheap to hold: it is a name for the
    master (socket, pid), not a connection, except for one connected control
    client kept from the lookup, which the first :meth:`open_session` uses.

    Attributes:
        target, key, paths: what and where.
        process: the master ssh (pid, start time); None if unknown (a master
            that does not speak our mux version, found without a record).
        owner: the process it ends with, None for a shared master.
        started: True if this call started it (False: it was running).
        mux_available: False when the master speaks another mux protocol
            version; sessions then go through ``ssh -S`` passengers.
    """

    def __init__(self, target: Target, key: str, paths: KeyPaths,
                 process: Optional[_procs.ProcessId], owner: Optional[_procs.ProcessId],
                 started: bool, client: Optional[MuxClient], ssh: str = "ssh"):
        self.target = target
        self.key = key
        self.paths = paths
        self.process = process
        self.owner = owner
        self.started = started
        self.mux_available = client is not None
        self.ssh = ssh
        self._spare: Optional[MuxClient] = client

    @property
    def host(self) -> str:
        return self.target.host

    @property
    def pid(self) -> Optional[int]:
        return None if self.process is None else self.process.pid

    def connect(self, timeout: Optional[float] = PROBE_TIMEOUT) -> MuxClient:
        """A control connection, HELLO done (the one kept from the lookup first).

        Raises:
            MasterNotRunning: the master has gone.
            MuxUnavailable: it speaks another mux protocol version.
        """
        client, self._spare = self._spare, None
        if client is not None:
            return client
        return MuxClient.connect(self.paths.socket, host=self.host, timeout=timeout,
                                 log_path=self.paths.log)

    def open_session(self, command: Union[str, bytes], *, stdin: int, stdout: int,
                     stderr: int, env: Iterable[str] = (), timeout: Optional[float] = 30.0,
                     mode: str = "auto") -> Union[MuxSession, PassengerSession]:
        """Run ``command`` on the target with these fds as its stdio.

        ``mode``: ``"mux"`` (our mux client; no process started), ``"passenger"``
        (an ``ssh -S`` process passes its stdio to the master and waits), or
        ``"auto"`` (mux, passenger when the master speaks another version).

        Returns a :class:`~sshpipe._openssh.mux.MuxSession` or a
        :class:`~sshpipe._openssh.passenger.PassengerSession`; both have
        ``wait(timeout)``, ``poll()``, ``fileno()``, ``close()``,
        ``exit_status`` and ``master_pid``. Close your copies of the fds after.

        Raises:
            MasterNotRunning: the master ended before the session opened (open
                again through :func:`ensure_master`, which starts a new one).
            MuxError, ConnectTimeout: refused, or not opened within ``timeout``.
        """
        if mode not in ("auto", "mux", "passenger"):
            raise ValueError(f"mode must be 'auto', 'mux' or 'passenger', not {mode!r}")
        if mode != "passenger" and self.mux_available:
            try:
                client = self.connect(timeout)
            except MuxUnavailable:
                if mode == "mux":
                    raise
                self.mux_available = False
            else:
                try:
                    return client.open_session(command, stdin, stdout, stderr, env=env,
                                               timeout=timeout)
                except BaseException:
                    client.close()
                    raise
        elif mode == "mux":
            raise MuxUnavailable(f"{self.host}: the master at {self.paths.socket} does not "
                                 f"speak mux protocol version 4", self.host)
        from sshpipe._openssh.passenger import PassengerSession
        return PassengerSession.start(self.target, self.paths.socket, command, stdin=stdin,
                                      stdout=stdout, stderr=stderr, ssh=self.ssh,
                                      master=self.process, log_path=self.paths.log)

    def stop(self, timeout: float = 6.0) -> bool:
        """End this master now (its sessions end too); True once it has ended."""
        self.close()
        if self.process is None:
            return False
        ended = terminate_process(self.paths.socket, self.process, self.host, timeout)
        if ended:
            retire(self.paths, self.process, timeout=timeout)
        return ended

    def close(self) -> None:
        """Drop the control connection kept from the lookup (the master runs on)."""
        client, self._spare = self._spare, None
        if client is not None:
            client.close()

    def __enter__(self) -> "Master":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        how = "started" if self.started else "found"
        return f"<Master {self.target.describe()} pid {self.pid} {how} key {self.key}>"


def _owner_identity(owner: Optional[int]) -> Optional[_procs.ProcessId]:
    if owner is None:
        return None
    pid = os.getpid() if owner == SELF else owner
    identity = _procs.identify(pid)
    if identity is None:
        raise ValueError(f"the owner process {pid} is not running")
    return identity


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def ensure_master(target: Target, *, owner: Optional[int] = SELF,
                  persist: Optional[float] = DEFAULT_PERSIST,
                  control_dir: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
                  ssh: str = "ssh", env: Optional[Mapping[str, str]] = None,
                  alive_interval: Optional[int] = SERVER_ALIVE_INTERVAL,
                  alive_count_max: Optional[int] = SERVER_ALIVE_COUNT_MAX,
                  connect_timeout: Optional[int] = None,
                  extra_options: Iterable[str] = (), slot: int = 0) -> Master:
    """Return the master for ``target`` and ``owner``, starting it if needed.

    Many processes or threads may call this at once for the same target and
    owner: one starts the master, the others wait on the key's lock and then
    find it.

    Args:
        owner: the pid the master ends with (``SELF``: this process; the SSHPipe
            child passes its caller's), or None for a shared master.
        persist: idle seconds before the master exits (ControlPersist); None
            for no idle limit (then only the owner's end stops it).
        control_dir: where the socket lives (default: see controldir.py).
        timeout: bound on the whole call, including a wait for the lock and the
            SSH handshake.
        env: the environment for ssh (default: this process's).
        slot: 0 for the first master of the target and owner; 1, 2 ... for more
            (when sshd's MaxSessions refuses further sessions on one).

    Raises:
        UnsafeControlDir: the control directory is not private to this user.
        HostKeyError, AuthenticationError, ConnectTimeout, ConnectError: ssh
            could not connect (mapped from its log; the message quotes it).
    """
    deadline = time.monotonic() + timeout
    owner_id = _owner_identity(owner)
    env = dict(os.environ if env is None else env)
    directory = prepare_control_dir(control_dir, target.host)
    key = master_key(target, owner_id, slot)
    paths = KeyPaths(directory, key, target.host)
    found = _find(target, key, paths, owner_id, deadline, ssh)
    if found is not None:
        return found
    lock = KeyLock(paths.lock, target.host)
    lock.acquire(_remaining(deadline))
    failed_start = False  # a start was tried and nothing runs for the key
    try:
        found = _find(target, key, paths, owner_id, deadline, ssh)
        if found is not None:
            return found
        failed_start = True
        master = _start(target, key, paths, owner_id, persist, env, deadline, timeout, ssh,
                        master_command(target, paths, persist=persist, env=env, ssh=ssh,
                                       alive_interval=alive_interval,
                                       alive_count_max=alive_count_max,
                                       connect_timeout=connect_timeout,
                                       extra_options=extra_options))
        failed_start = False
        return master
    finally:
        if failed_start:
            # nothing runs for this key: leave no files behind (the error quotes the log)
            _unlink(paths.log)
            _unlink(paths.meta)
        lock.release(remove=failed_start)


def _start(target: Target, key: str, paths: KeyPaths, owner: Optional[_procs.ProcessId],
           persist: Optional[float], env: Mapping[str, str], deadline: float, timeout: float,
           ssh: str, argv: List[str]) -> Master:
    """Start the master (key lock held) and return it, or raise why not."""
    _clear_old_master(paths, target.host, deadline)
    _run_foreground(argv, target, paths, env, deadline, timeout)
    try:
        client = MuxClient.connect(paths.socket, host=target.host,
                                   timeout=min(PROBE_TIMEOUT, _remaining(deadline) + 1),
                                   log_path=paths.log)
    except MuxUnavailable:
        client = None
    except MasterNotRunning as exc:
        raise ConnectError(f"{target.host}: the ssh master exited right after starting: "
                           f"{read_log_tail(paths.log).strip() or exc}", target.host) from exc
    process = client.master if client is not None else None
    watchdog = None
    try:
        _refuse_changed_host_key(target, paths)
        if owner is not None and process is not None:
            watchdog = _launch_watchdog(paths, target.host, owner, process)
        if process is not None:
            write_meta(paths, target, process, owner, watchdog, persist)
    except BaseException:
        if client is not None:
            client.close()
        if process is not None:
            terminate_process(paths.socket, process, target.host)
        raise
    logger.info("%s: started ssh master pid %s (key %s)", target.host,
                process.pid if process else "?", key)
    return Master(target, key, paths, process, owner, True, client, ssh)


def _refuse_changed_host_key(target: Target, paths: KeyPaths) -> None:
    """Raise HostKeyError if the master connected to a host whose key is not the
    one on record. ssh does so under StrictHostKeyChecking=no (it warns, and only
    turns password and keyboard-interactive authentication off); sshpipe refuses
    a changed key whatever the policy, as its paramiko transport does."""
    log = read_log_tail(paths.log)
    if classify(log) is Failure.HOST_KEY_CHANGED:
        raise error_from_ssh(target.host, f"starting the ssh master for {target.describe()}",
                             log)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _find(target: Target, key: str, paths: KeyPaths, owner: Optional[_procs.ProcessId],
          deadline: float, ssh: str) -> Optional[Master]:
    """The running master on ``paths.socket``, or None (stale or absent)."""
    try:
        client = MuxClient.connect(paths.socket, host=target.host,
                                   timeout=min(PROBE_TIMEOUT, max(0.001, _remaining(deadline))),
                                   log_path=paths.log)
    except MasterNotRunning:
        return None
    except MuxUnavailable:
        info = read_meta(paths)
        return Master(target, key, paths, info.process if info else None, owner, False, None,
                      ssh)
    return Master(target, key, paths, client.master, owner, False, client, ssh)


def _clear_old_master(paths: KeyPaths, host: str, deadline: float) -> None:
    """Before a start (lock held): make sure the recorded master is gone, then
    remove the socket it left. A master that is just exiting (idle) would
    otherwise unlink the socket of its successor on its way out."""
    info = read_meta(paths)
    if info is not None and _procs.is_running(info.process):
        if not _procs.wait_exit(info.process, min(1.0, _remaining(deadline))):
            logger.info("%s: stopping unresponsive ssh master pid %s", host, info.process.pid)
            terminate_process(paths.socket, info.process, host,
                              timeout=min(6.0, max(0.5, _remaining(deadline))))
    if os.path.lexists(paths.socket):
        logger.info("%s: removing the stale control socket %s", host, paths.socket)
        os.unlink(paths.socket)
    _unlink(paths.meta)


def _run_foreground(argv: List[str], target: Target, paths: KeyPaths, env: Mapping[str, str],
                    deadline: float, timeout: float) -> None:
    """Run the master's foreground ssh until it has daemonized (exit 0)."""
    log_fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
                     | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=log_fd, env=dict(env), start_new_session=True,
                                       close_fds=True)
        except OSError as exc:
            raise ConnectError(f"{target.host}: cannot run {argv[0]!r}: {exc.strerror}",
                               target.host) from exc
    finally:
        os.close(log_fd)
    try:
        status = process.wait(_remaining(deadline))
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        tail = "; ".join(line for line in read_log_tail(paths.log).splitlines() if line.strip())
        raise connect_error(Failure.TIMEOUT, target.host,
                            doing=f"connecting the ssh master to {target.describe()}",
                            # the caller's bound, less microseconds
                            after=f" after {timeout:.3g} s",
                            detail=f": {tail}" if tail else "") from None
    if status != 0:
        log = read_log_tail(paths.log)
        known = {}
        if classify(log) is Failure.HOST_KEY_UNKNOWN and "fingerprint" not in log_facts(log):
            known = _unknown_key_facts(argv[0], target, env, deadline)
        raise error_from_ssh(target.host, f"starting the ssh master for {target.describe()}",
                             log, status, **known)


def _unknown_key_facts(ssh: str, target: Target, env: Mapping[str, str],
                       deadline: float) -> Dict[str, Any]:
    """What ssh does not say when BatchMode refuses an unknown host key (it asks
    nothing, so it shows nothing): the policy, the known_hosts file and the name
    the key would be filed under (``ssh -G``), and the key's fingerprint (one more
    connection with ``-v`` that stops at the host key: BatchMode, and the "none"
    authentication method only, so no credential is offered and no session opens).
    Best effort, within what is left of the start's bound; {} if it fails."""
    facts: Dict[str, Any] = {}
    base = [ssh] + target.options()
    try:
        resolved = subprocess.run(base + ["-G", "--", target.host], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, env=dict(env),
                                  timeout=max(0.5, min(5.0, _remaining(deadline))))
        values = dict(line.partition(" ")[::2] for line in resolved.stdout.splitlines())
        policy = values.get("stricthostkeychecking")
        if policy:  # ssh -G says true/false for yes/no
            facts["policy"] = {"true": "yes", "false": "no"}.get(policy, policy)
        if values.get("userknownhostsfile"):
            facts["known_hosts"] = values["userknownhostsfile"].split()[0]
        name, port = values.get("hostname", target.host), values.get("port", "22")
        facts["name"] = values.get("hostkeyalias") or (
            name if port == "22" else f"[{name}]:{port}")
        probe = subprocess.run(
            base + ["-v", "-N", "-T", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
                    "-o", "ControlPath=none", "-o", "PreferredAuthentications=none",
                    "-o", "ClearAllForwardings=yes", "--", target.host],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=dict(env),
            start_new_session=True, timeout=max(0.5, min(10.0, _remaining(deadline))))
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return facts
    found = log_facts(probe.stderr)
    if "fingerprint" in found:
        facts["key"] = f"{found['keytype']} {found['fingerprint']}"
    return facts


def _launch_watchdog(paths: KeyPaths, host: str, owner: _procs.ProcessId,
                     master: _procs.ProcessId) -> _procs.ProcessId:
    """Start the watchdog and wait until it holds its pidfds ("ready <pid>")."""
    import sshpipe
    root = os.path.dirname(os.path.dirname(os.path.abspath(sshpipe.__file__)))
    argv = [sys.executable, "-I", "-S", _WATCHDOG_SCRIPT, "--root", root, "--host", host,
            "--directory", paths.directory, "--key", paths.key,
            "--owner", f"{owner.pid}:{owner.start}", "--master", f"{master.pid}:{master.start}"]
    log_fd = os.open(paths.log, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=log_fd, start_new_session=True, close_fds=True)
    except OSError as exc:
        raise ConnectError(f"{host}: cannot start the master's watchdog with "
                           f"{sys.executable!r}: {exc.strerror}", host) from exc
    finally:
        os.close(log_fd)
    deadline = time.monotonic() + WATCHDOG_READY_TIMEOUT
    line = b""
    assert process.stdout is not None  # stdout=PIPE
    try:
        poller = select.poll()
        poller.register(process.stdout.fileno(), select.POLLIN)
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(int(left * 1000) + 1):
                break
            chunk = os.read(process.stdout.fileno(), 64)
            if not chunk:
                break
            line += chunk
        process.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    finally:
        process.stdout.close()
    words = line.split()
    if len(words) != 2 or words[0] != b"ready":
        raise ConnectError(f"{host}: the master's watchdog did not start (exit status "
                           f"{process.returncode}); see {paths.log}", host)
    watchdog = _procs.identify(int(words[1]))
    return watchdog or _procs.ProcessId(int(words[1]), None)
