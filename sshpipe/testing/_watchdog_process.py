"""The watchdog process: what a test server started dies with its owner.

A test sshd accepts root logins. If it outlived the test run that started it
(the run killed by a CI cancel, a ``timeout`` wrapper, SIGKILL), it would go on
listening, re-parented to init. So the owner (the process that builds a
:class:`~sshpipe.testing.LocalSSHServer` or
:class:`~sshpipe.testing.NamespaceHosts`) starts this small process first, and
everything else through it:

- it runs the server's processes as its children and is a *child subreaper*
  (``PR_SET_CHILD_SUBREAPER``), so every process below it (per-connection sshd
  processes that call ``setsid()``, a remote agent's orphans) stays below it,
  however its parent ended;
- it watches the owner: the owner's end (a ``pidfd``, and ``getppid()`` as the
  fallback) or end of file on the control pipe;
- then, or when asked, it ends every process below it (SIGTERM, a grace period,
  SIGKILL until none is left), runs the undo commands it was given (``ip netns
  del`` ...), last registered first, and removes the directories it was given.

Its own children get ``PR_SET_PDEATHSIG`` (SIGKILL), so even a SIGKILL of the
watchdog itself takes the server's listener with it.

Protocol: stdin is the control pipe (the owner holds its only write end, apart
from copies in forked children, hence the pidfd). One JSON object per line in,
one JSON reply per line out on stdout; a reply with ``"error"`` is a refusal:

- ``{"op": "mkdtemp", "prefix": P}`` -> ``{"path": D}``: a private directory,
  removed at the end.
- ``{"op": "remove", "path": D}`` -> ``{}``: remove D at the end.
- ``{"op": "undo", "argv": [...]}`` -> ``{}``: run this command at the end.
- ``{"op": "run", "argv": [...], "log": L}`` -> ``{"pid": N, "start": T}``: start
  a child with stdout and stderr appended to L.
- ``{"op": "end", "grace": S}`` -> ``{"left": [[pid, start], ...]}``: end every
  process below the watchdog now (to start again, say on another port).
- ``{"op": "stop", "grace": S}`` -> ``{"left": [...], "errors": [...]}``: end the
  processes, run the undo commands, remove the directories, exit.

Started by path with the interpreter isolated (``python -I``): stdlib only, and
it imports nothing from sshpipe except the process helpers beside it.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING or __package__:  # imported (the tests read its constants)
    from sshpipe.testing._proc import ProcessId, descendants, send_signal
else:  # run as the watchdog: the helpers beside this file (and sshpipe._procid)
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [_HERE, os.path.dirname(os.path.dirname(_HERE))]
    from _proc import ProcessId, descendants, send_signal

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# How long the processes get to end after SIGTERM once the owner is gone: it is
# not waiting for anything, so this is short.
OWNER_GONE_GRACE = 1.0
# Bound on the SIGKILL rounds: a process can fork between a scan and the kill,
# so the watchdog scans and kills again until nothing is left.
KILL_ROUNDS_TIMEOUT = 5.0
# How often the loop looks at the owner when no pidfd can be had.
OWNER_POLL = 0.1
# Bound on one undo command (``ip netns del``): a hung one must not keep the rest.
UNDO_TIMEOUT = 10.0

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}, {value}): {os.strerror(errno)}")


class Watchdog:
    """The watchdog's state: what to end, undo and remove at the end."""

    def __init__(self, owner: int):
        self.owner = owner
        self.undo: List[List[str]] = []
        self.remove: List[str] = []
        self.children: List[subprocess.Popen[bytes]] = []

    # -- requests -----------------------------------------------------------
    def handle(self, request: Dict[str, Any]) -> Dict[str, Any]:
        op = request.get("op")
        if op == "mkdtemp":
            path = tempfile.mkdtemp(prefix=str(request.get("prefix", "sshpipe-")))
            self.remove.append(path)
            return {"path": path}
        if op == "remove":
            self.remove.append(str(request["path"]))
            return {}
        if op == "undo":
            self.undo.append([str(word) for word in request["argv"]])
            return {}
        if op == "run":
            return self.run([str(word) for word in request["argv"]], str(request["log"]))
        if op == "end":
            return {"left": [list(p) for p in self.end_processes(float(request["grace"]))]}
        return {"error": f"unknown request {op!r}"}

    def run(self, argv: List[str], log_path: str) -> Dict[str, Any]:
        me = os.getpid()

        def die_with_watchdog() -> None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != me:  # the watchdog ended before the prctl took effect
                os._exit(1)

        with open(log_path, "ab") as log:
            try:
                child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, preexec_fn=die_with_watchdog)
            except OSError as exc:
                return {"error": f"cannot run {argv[0]}: {exc}"}
        self.children.append(child)
        with open(f"/proc/{child.pid}/stat", "rb") as stat:
            start = int(stat.read().rsplit(b")", 1)[1].split()[19])
        return {"pid": child.pid, "start": start}

    # -- the end ------------------------------------------------------------
    def end_processes(self, grace: float) -> List[ProcessId]:
        """End every process below the watchdog; return those it could not end."""
        me = os.getpid()
        for process in descendants(me):
            send_signal(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while descendants(me) and time.monotonic() < deadline:
            reap()
            time.sleep(0.01)
        deadline = time.monotonic() + KILL_ROUNDS_TIMEOUT
        left = descendants(me)
        while left and time.monotonic() < deadline:
            for process in left:
                send_signal(process, signal.SIGKILL)
            time.sleep(0.005)
            reap()
            left = descendants(me)
        reap()
        return left

    def finish(self, grace: float) -> Dict[str, Any]:
        """End the processes, run the undo commands, remove the directories."""
        left = self.end_processes(grace)
        errors = []
        for argv in reversed(self.undo):
            try:
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=UNDO_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired) as exc:
                errors.append(f"{' '.join(argv)}: {exc}")
                continue
            if done.returncode != 0:
                errors.append(f"{' '.join(argv)}: exit status {done.returncode}: "
                              f"{done.stderr.decode(errors='replace').strip()}")
        for path in reversed(self.remove):
            shutil.rmtree(path, ignore_errors=True)
            if os.path.exists(path):
                errors.append(f"cannot remove {path}")
        return {"left": [list(p) for p in left], "errors": errors}


def reap() -> None:
    """Collect every ended child (a subreaper inherits orphans it must reap)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _owner_fd(owner: int) -> Optional[int]:
    try:
        return os.pidfd_open(owner)
    except (AttributeError, OSError):  # Python < 3.9, Linux < 5.3
        return None


def _reply(message: Dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    try:
        while data:
            data = data[os.write(1, data):]
    except OSError:  # the owner is gone: nobody to answer
        pass


def main() -> int:
    owner = os.getppid()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    watchdog = Watchdog(owner)
    owner_fd = _owner_fd(owner)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes select to reap
    control = sys.stdin.fileno()
    pending = b""
    watched = [control, wake_read] + ([owner_fd] if owner_fd is not None else [])
    while True:
        if os.getppid() != owner:
            break
        try:
            readable, _, _ = select.select(watched, [], [], OWNER_POLL)
        except InterruptedError:
            readable = []
        reap()
        if wake_read in readable:
            os.read(wake_read, 4096)
        if stopping or (owner_fd is not None and owner_fd in readable):
            break
        if control not in readable:
            continue
        chunk = os.read(control, 65536)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            if request.get("op") == "stop":
                _reply(watchdog.finish(float(request["grace"])))
                return 0
            try:
                _reply(watchdog.handle(request))
            except Exception as exc:  # a refusal the owner raises; the watchdog goes on
                _reply({"error": f"{type(exc).__name__}: {exc}"})
    # The owner is gone (or closed the pipe, or the watchdog was signalled). What it
    # wrote just before it ended is still in the pipe: take the undo commands and
    # directories from it, start nothing.
    os.set_blocking(control, False)
    try:
        while True:
            chunk = os.read(control, 65536)
            if not chunk:
                break
            pending += chunk
    except BlockingIOError:
        pass
    for line in pending.split(b"\n"):
        try:
            request = json.loads(line)
        except ValueError:  # empty, or cut short by the owner's death
            continue
        if request.get("op") in ("remove", "undo"):
            watchdog.handle(request)
    watchdog.finish(OWNER_GONE_GRACE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
