"""What masters this user has, and how one is stopped and its files retired.

Each master started by :func:`sshpipe._openssh.master.ensure_master` is described
by ``K.json`` in the control directory (written under the key's lock, replaced
atomically). This module reads those records (:func:`list_masters`, for a
``sshpipe masters`` command), stops masters (:func:`stop_master`,
:func:`stop_masters`) and removes the files of a master that has ended
(:func:`retire`), which the watchdog calls too.

Stopping escalates: MUX_C_TERMINATE over the control socket (the master closes
its sessions and its connection and removes its socket), then SIGTERM, then
SIGKILL, each given part of the timeout; signals go through a pidfd checked
against the master's start time, never to a bare pid that may have been reused.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from sshpipe._openssh import _procs
from sshpipe._openssh.controldir import KeyLock, KeyPaths, check_private_dir, default_control_dir
from sshpipe._openssh.failures import MasterNotRunning, MuxError
from sshpipe._openssh.mux import MuxClient
from sshpipe._openssh.target import Target
from sshpipe.errors import ConnectTimeout

__all__ = ["ANY_OWNER", "MasterInfo", "list_masters", "read_meta", "retire", "stop_master",
           "stop_masters", "terminate_process", "write_meta"]

logger = logging.getLogger(__name__)

META_VERSION = 1

# Bound on a record's size: they are a few hundred bytes; a larger file is not ours.
MAX_META_BYTES = 64 * 1024

# Default time for stopping one master, spread over terminate, SIGTERM and SIGKILL.
STOP_TIMEOUT = 6.0

# Passed as ``owner`` to :func:`stop_masters`: every master, whoever owns it.
ANY_OWNER = -1


@dataclass(frozen=True)
class MasterInfo:
    """One master as its record describes it.

    Attributes:
        key: its name in the control directory.
        target: what it connects to.
        process: the master ssh (pid, start time).
        owner: the process it ends with, or None for a shared master (ends only
            when idle past ``persist``).
        watchdog: the watchdog process, if one was started.
        persist: ControlPersist in seconds (None: no idle limit).
        started: when it started (Unix time).
        socket, log: its files.
        alive: whether the master process was running when this was read.
    """

    key: str
    target: Target
    process: _procs.ProcessId
    owner: Optional[_procs.ProcessId]
    watchdog: Optional[_procs.ProcessId]
    persist: Optional[float]
    started: float
    socket: str
    log: str
    alive: bool

    @property
    def paths(self) -> KeyPaths:
        return KeyPaths(os.path.dirname(self.socket), self.key)


def _pid_pair(value: Optional[Sequence[Any]]) -> Optional[_procs.ProcessId]:
    if value is None:
        return None
    return _procs.ProcessId(int(value[0]), None if value[1] is None else int(value[1]))


def _pair(process: Optional[_procs.ProcessId]) -> Optional[List[Optional[int]]]:
    return None if process is None else [process.pid, process.start]


def write_meta(paths: KeyPaths, target: Target, process: _procs.ProcessId,
               owner: Optional[_procs.ProcessId], watchdog: Optional[_procs.ProcessId],
               persist: Optional[float]) -> None:
    """Record a master (atomically: a reader sees the old record or the new one)."""
    record = {"version": META_VERSION, "target": target.to_json(), "process": _pair(process),
              "owner": _pair(owner), "watchdog": _pair(watchdog), "persist": persist,
              "started": time.time()}
    temporary = f"{paths.meta}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    os.replace(temporary, paths.meta)


def read_meta(paths: KeyPaths) -> Optional[MasterInfo]:
    """The record of key ``paths.key``, or None if there is none or it is not ours
    (unreadable, oversized, another version: logged, never trusted)."""
    try:
        fd = os.open(paths.meta, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_META_BYTES + 1)
        if len(data) > MAX_META_BYTES:
            raise ValueError(f"larger than {MAX_META_BYTES} bytes")
        record = json.loads(data)
        if record.get("version") != META_VERSION:
            raise ValueError(f"record version {record.get('version')!r}")
        process = _pid_pair(record["process"])
        if process is None:
            raise ValueError("no master process in the record")
        return MasterInfo(
            key=paths.key, target=Target.from_json(record["target"]), process=process,
            owner=_pid_pair(record.get("owner")), watchdog=_pid_pair(record.get("watchdog")),
            persist=record.get("persist"), started=float(record["started"]),
            socket=paths.socket, log=paths.log, alive=_procs.is_running(process))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        logger.warning("ignoring master record %s: %s", paths.meta, exc)
        return None


def list_masters(control_dir: Optional[str] = None, *, prune: bool = True) -> List[MasterInfo]:
    """This user's masters in ``control_dir`` (default: the usual control dir).

    With ``prune``, records of masters that have ended are retired on the way
    (files removed), so what is returned is what runs, plus any record whose
    lock was busy (returned with ``alive`` False)."""
    directory = os.path.abspath(control_dir or default_control_dir())
    if not os.path.isdir(directory):
        return []
    check_private_dir(directory)
    found = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        info = read_meta(KeyPaths(directory, name[:-len(".json")]))
        if info is None:
            continue
        if not info.alive and prune and retire(info.paths, info.process, timeout=0):
            continue
        found.append(info)
    if prune:
        _prune_orphans(directory)
    return found


def _prune_orphans(directory: str) -> None:
    """Remove lock and log files of keys that have no record and no live socket
    (a start that failed, a master that ended with nobody to retire it)."""
    names = set(os.listdir(directory))
    keys = {name.rsplit(".", 1)[0] for name in names if name.endswith((".lock", ".log"))}
    for key in sorted(keys):
        if key + ".json" not in names:
            retire(KeyPaths(directory, key), None, timeout=0)


def terminate_process(socket_path: str, process: _procs.ProcessId, host: str,
                      timeout: float = STOP_TIMEOUT) -> bool:
    """End the master ``process``: terminate request, then SIGTERM, then SIGKILL.

    Returns True once it has ended (False only if even SIGKILL did not end it
    within the timeout, which would be a kernel problem)."""
    pidfd = _procs.open_pidfd(process)
    try:
        if pidfd is None and not _procs.is_running(process):
            return True
        step = timeout / 3
        try:
            client = MuxClient.connect(socket_path, host=host, timeout=step)
        except (MasterNotRunning, MuxError, ConnectTimeout, OSError):
            client = None
        if client is not None:
            if client.master.pid != process.pid:
                # another master answers there now: not the one we were asked to stop
                client.close()
            else:
                try:
                    client.terminate(step)
                except (MuxError, ConnectTimeout, OSError):
                    pass
                if _procs.wait_exit(process, step, pidfd):
                    return True
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if not _procs.send_signal(process, signum, pidfd):
                return True
            if _procs.wait_exit(process, step, pidfd):
                return True
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def retire(paths: KeyPaths, process: Optional[_procs.ProcessId],
           timeout: Optional[float] = 5.0) -> bool:
    """Remove the files of key ``paths.key`` whose master, ``process``, has ended
    (``process`` None: a key with no record, e.g. after a failed start).

    Takes the key's lock, so that a master being started for the key meanwhile
    is never touched (its new record names another process), and leaves alone a
    socket something still answers on. Everything goes, the log and the lock
    file included: a later start for the key makes them anew.

    Returns False if the lock was busy past ``timeout``, the master still runs,
    or a newer master owns the key.
    """
    if process is not None and _procs.is_running(process):
        return False
    lock = KeyLock(paths.lock)
    try:
        lock.acquire(timeout)
    except ConnectTimeout:
        return False
    remove = False
    try:
        info = read_meta(paths)
        if info is not None and info.process != process:
            return False
        try:
            MuxClient.connect(paths.socket, host=paths.key, timeout=1.0).close()
        except MasterNotRunning:
            _unlink(paths.socket)
        except (MuxError, ConnectTimeout, OSError):
            return False  # something answers there: leave the key alone
        else:
            return False
        _unlink(paths.meta)
        _unlink(paths.log)
        remove = True
        return True
    finally:
        lock.release(remove=remove)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def stop_master(info: MasterInfo, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop one master and retire its files; True if it has ended."""
    ended = terminate_process(info.socket, info.process, info.target.host, timeout)
    if ended:
        retire(info.paths, info.process, timeout=timeout)
    return ended


def stop_masters(control_dir: Optional[str] = None, *, owner: Optional[int] = ANY_OWNER,
                 timeout: float = STOP_TIMEOUT) -> List[MasterInfo]:
    """Stop this user's masters: all of them (``ANY_OWNER``), those of the process
    ``owner`` (a pid), or the shared ones (None). Returns those stopped.

    Raises:
        UnsafeControlDir: the control directory is not private.
    """
    stopped = []
    for info in list_masters(control_dir):
        if owner != ANY_OWNER:
            if owner is None and info.owner is not None:
                continue
            if owner is not None and (info.owner is None or info.owner.pid != owner):
                continue
        if info.alive and stop_master(info, timeout):
            stopped.append(info)
    return stopped
