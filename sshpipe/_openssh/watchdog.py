"""The process that ends a master when its owner ends (see master.py, "Lifetime").

Started by :func:`sshpipe._openssh.master.ensure_master` as
``python -I -S <this file> --root <dir holding sshpipe> --owner PID:START ...``.
Until it reports "ready" it imports nothing but ``os``, ``select`` and ``sys``
(sshpipe's package imports, typing among them, would triple its start-up time on
the path of a first pipe, and its memory while it waits); it loads the
stop-and-retire code from the same sshpipe tree only once there is work to do.
Its stderr is the master's log.

::

    main: open pidfds of owner and master (checked against their start times)
          fork; the parent prints "ready <child pid>" and exits (the launcher
          reaps it), the child, now nobody's child, watches:
    poll(owner pidfd, master pidfd)
      owner ended  -> terminate the master (MUX_C_TERMINATE, SIGTERM, SIGKILL),
                      then as below
      master ended -> retire its files (record, stale socket, log, lock) and exit;
                      a later master for the key gets a watchdog of its own

Without pidfds (not Linux) it polls both processes every half second.

The annotations are never evaluated (``from __future__ import annotations``), so
they name builtin types only and nothing is imported for them.
"""
from __future__ import annotations

import os
import select
import sys

__all__ = ["main"]

# Without pidfds: how often to look at the owner and the master.
_POLL_INTERVAL = 0.5


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, None if the process is gone or a zombie
    (the same rule as sshpipe._openssh._procs.identify)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == b"Z" else int(fields[19])


def _running(pid: int, start: int | None) -> bool:
    now = _start_time(pid)
    return now is not None and (start is None or now == start)


def _pidfd(pid: int, start: int | None) -> int | None:
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if not _running(pid, start):  # checked after opening: the fd pins the process
        os.close(fd)
        return None
    return fd


def _say(message: str) -> None:
    try:
        os.write(2, ("sshpipe watchdog %d: %s\n" % (os.getpid(), message)).encode())
    except OSError:
        pass


def _wait_for_either(owner: tuple[int, int | None], owner_fd: int | None,
                     master: tuple[int, int | None], master_fd: int | None) -> str:
    """Block until the owner or the master ends; return which ("owner"/"master")."""
    if owner_fd is not None and master_fd is not None:
        poller = select.poll()
        poller.register(owner_fd, select.POLLIN)
        poller.register(master_fd, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if master_fd in ready:
                return "master"
            if owner_fd in ready:
                return "owner"
    import time
    while True:
        if not _running(*master):
            return "master"
        if not _running(*owner):
            return "owner"
        time.sleep(_POLL_INTERVAL)


def _pair(text: str) -> tuple[int, int | None]:
    pid, _, start = text.partition(":")
    return int(pid), (None if start in ("", "None") else int(start))


def _arguments(argv: list[str]) -> dict[str, str]:
    """``--name value`` pairs; every one of root, host, directory, key, owner,
    master is required."""
    names = ("--root", "--host", "--directory", "--key", "--owner", "--master")
    if len(argv) != 2 * len(names) or tuple(argv[0::2]) != names:
        raise SystemExit("usage: watchdog.py " + " ".join(n + " VALUE" for n in names))
    return dict(zip((n[2:] for n in names), argv[1::2]))


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    owner, master = _pair(args["owner"]), _pair(args["master"])
    owner_fd, master_fd = _pidfd(*owner), _pidfd(*master)
    owner_gone = owner_fd is None and not _running(*owner)

    child = os.fork()
    if child:
        os.write(1, b"ready %d\n" % child)
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)

    which = "owner" if owner_gone else _wait_for_either(owner, owner_fd, master, master_fd)

    sys.path.insert(0, args["root"])
    from sshpipe._openssh._procs import ProcessId
    from sshpipe._openssh.controldir import KeyPaths
    from sshpipe._openssh.registry import retire, terminate_process

    paths = KeyPaths(args["directory"], args["key"])
    master_id = ProcessId(*master)
    if which == "owner":
        _say("owner pid %d ended: stopping ssh master pid %d" % (owner[0], master[0]))
        if not terminate_process(paths.socket, master_id, args["host"]):
            _say("ssh master pid %d did not end" % master[0])
            return 1
    retire(paths, master_id, timeout=30.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
