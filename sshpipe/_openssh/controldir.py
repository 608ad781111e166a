"""The private directory holding the masters' control sockets, and a lock per key.

Why this is strict: a control socket accepts file descriptors. Whoever can put a
socket where we look for ours receives the caller's pipes and can inject frames
into them. So the directory must be writable by this user alone, and so must every
directory above it, as OpenSSH's ``StrictModes`` demands of ``~/.ssh``
(``safe_path()`` in misc.c): each parent owned by root or by us and writable by
no one else. One deliberate difference: a parent that is world-writable *with the
sticky bit* (``/tmp``) is accepted, because there nobody else can rename or remove
our entry; our own directory must still be ours with mode 0700.

Where: ``$XDG_RUNTIME_DIR/sshpipe`` when the session has a runtime directory
(private, on tmpfs, removed at logout), else ``<tempdir>/sshpipe-<uid>``.

Files, one set per master key ``K`` (see :mod:`sshpipe._openssh.master`)::

    K.sock   the master's control socket (created by ssh, mode 0600)
    K.lock   flock()ed while a process looks for, starts or retires K's master
    K.json   what the master is: target, owner, pid (written under the lock)
    K.log    the master's own log (ssh -E), quoted in errors

Lock files are removed only by a holder of the lock, and a process that acquires
a lock checks that the path still names the file it locked (else it retries), so
removing one can never let two processes hold "the" lock at once.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
import time
from typing import Iterator, Optional

from sshpipe._openssh.failures import UnsafeControlDir
from sshpipe.errors import ConnectTimeout

__all__ = ["KeyLock", "KeyPaths", "MAX_SOCKET_PATH", "check_private_dir", "default_control_dir",
           "prepare_control_dir"]

# sun_path holds 108 bytes with the NUL; ssh first binds "<path>.<16 random
# characters>" and then links it into place (muxserver_listen in mux.c), so our
# own path must leave room for those 17.
MAX_SOCKET_PATH = 107 - 17

# Backoff while another process holds a key's lock: short first steps because the
# holder usually only checks a live socket (well under a millisecond), longer ones
# while it waits for an SSH handshake.
_LOCK_FIRST_STEP = 0.001
_LOCK_MAX_STEP = 0.05


def default_control_dir() -> str:
    """``$XDG_RUNTIME_DIR/sshpipe`` if that runtime directory is ours, else
    ``<tempdir>/sshpipe-<uid>``; not created here (see :func:`prepare_control_dir`)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        try:
            info = os.lstat(runtime)
        except OSError:
            info = None
        if (info is not None and stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
                and not info.st_mode & 0o077):
            return os.path.join(runtime, "sshpipe")
    return os.path.join(tempfile.gettempdir(), f"sshpipe-{os.geteuid()}")


def _refuse(path: str, why: str, host: Optional[str]) -> UnsafeControlDir:
    prefix = f"{host}: " if host else ""
    return UnsafeControlDir(f"{prefix}refusing control directory {path}: {why}", host, path)


def _check_parents(directory: str, host: Optional[str]) -> None:
    """Every directory from ``directory`` up to ``/`` must be owned by root or us
    and writable by nobody else (or be sticky, as /tmp is)."""
    uid = os.geteuid()
    current = os.path.realpath(directory)
    while True:
        try:
            info = os.stat(current)
        except OSError as exc:
            raise _refuse(directory, f"cannot inspect {current}: {exc.strerror}", host) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise _refuse(directory, f"{current} is not a directory", host)
        if info.st_uid not in (0, uid):
            raise _refuse(directory, f"parent {current} belongs to uid {info.st_uid}", host)
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise _refuse(directory, f"parent {current} is writable by other users "
                                     f"(mode {stat.S_IMODE(info.st_mode):04o})", host)
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


def check_private_dir(path: str, host: Optional[str] = None) -> None:
    """Raise :class:`UnsafeControlDir` unless ``path`` is a real directory (not a
    symlink) owned by this user, mode 0700 or stricter, under safe parents."""
    _check_parents(os.path.dirname(os.path.abspath(path)), host)
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise _refuse(path, exc.strerror or str(exc), host) from exc
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(path, "it is a symbolic link", host)
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(path, "it is not a directory", host)
    if info.st_uid != os.geteuid():
        raise _refuse(path, f"it belongs to uid {info.st_uid}, not {os.geteuid()}", host)
    if info.st_mode & 0o077:
        raise _refuse(path, f"its mode is {stat.S_IMODE(info.st_mode):04o}; it must be "
                            f"0700 (chmod 700 {path})", host)


def prepare_control_dir(path: Optional[str] = None, host: Optional[str] = None) -> str:
    """Create the control directory (mode 0700) if needed, check it, and return
    its absolute path. An existing directory is never loosened or fixed: one with
    the wrong owner or mode is refused, since someone else may have made it."""
    path = os.path.abspath(os.path.expanduser(path or default_control_dir()))
    _check_parents(os.path.dirname(path), host)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _refuse(path, f"cannot create it: {exc.strerror}", host) from exc
    check_private_dir(path, host)
    return path


class KeyPaths:
    """The files of one master key inside a checked control directory."""

    def __init__(self, directory: str, key: str, host: Optional[str] = None):
        self.directory = directory
        self.key = key
        self.socket = os.path.join(directory, key + ".sock")
        self.lock = os.path.join(directory, key + ".lock")
        self.meta = os.path.join(directory, key + ".json")
        self.log = os.path.join(directory, key + ".log")
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise _refuse(directory, f"the socket path {self.socket} is longer than "
                                     f"{MAX_SOCKET_PATH} bytes (a Unix socket limit); "
                                     f"choose a shorter control directory", host)

    def __repr__(self) -> str:
        return f"<KeyPaths {self.directory}/{self.key}.*>"


class KeyLock:
    """An exclusive ``flock`` on one key's lock file, with a deadline.

    Ownership: the process (or thread) that acquired it holds the fd and is the
    only one that releases it; the fd is close-on-exec so ssh and the watchdog
    never inherit it. Not reentrant.
    """

    def __init__(self, path: str, host: Optional[str] = None):
        self.path = path
        self.host = host
        self._fd: Optional[int] = None

    def acquire(self, timeout: Optional[float]) -> None:
        """Take the lock, waiting up to ``timeout`` seconds (None: no limit).

        Raises:
            ConnectTimeout: another process held it all that time.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this KeyLock")
        deadline = None if timeout is None else time.monotonic() + timeout
        step = _LOCK_FIRST_STEP
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                            raise
                    if deadline is not None and time.monotonic() >= deadline:
                        raise ConnectTimeout(
                            f"{self.host or self.path}: another process held the master "
                            f"lock {self.path} for more than {timeout:g} s", self.host)
                    time.sleep(step)
                    step = min(step * 2, _LOCK_MAX_STEP)
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if same:
                    self._fd, fd = fd, -1
                    return
                # the holder before us removed the file: lock the new one instead
            finally:
                if fd != -1:
                    os.close(fd)

    def release(self, remove: bool = False) -> None:
        """Let go of the lock; with ``remove``, delete the lock file first (only a
        holder may, see the module docstring). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if remove:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    @contextlib.contextmanager
    def hold(self, timeout: Optional[float]) -> Iterator["KeyLock"]:
        """``with lock.hold(timeout):`` acquire, and release however the block ends."""
        self.acquire(timeout)
        try:
            yield self
        finally:
            self.release()
