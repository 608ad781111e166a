"""The remote supervisor: runs the agent in a child process and, however the agent
ends, ends everything it started before reporting its status.

Shipped in the zero-install bundle (stdlib only, Python 3.9+) and imported by the
loader (:data:`sshpipe.bootstrap.LOADER_SOURCE`) once the bundle is verified, so
the loader itself stays small. :func:`run` forks:

- the child becomes the leader of a new process group, gets back the login's
  umask (the loader's 077 is for sshpipe's own files only) and runs the agent:
  a handler (``mode`` "handler"), a ``.py`` script ("script") or any program,
  exec'd with the loader's argv ("exec": it speaks the protocol itself on fds
  0 and 1);
- the parent, the supervisor, is made a *child subreaper* first (Linux
  ``PR_SET_CHILD_SUBREAPER``), so that every descendant orphaned by its parent,
  including a daemon that double-forked and called ``setsid()``, is re-parented
  to it rather than to init. It waits for the agent, then ends every process
  left: SIGTERM to the agent's process group and to each descendant, up to
  :data:`GRACE` seconds for them to go, then SIGKILL to whatever is left,
  reaping all of them. After at most GRACE + :data:`KILL_WAIT` seconds it exits
  with the agent's status, or 128+N when signal N killed the agent (the SSH
  ``exit-signal`` message never reaches paramiko; an exit status does).

A signal that asks the supervisor itself to end (SIGTERM, SIGHUP) is passed on to
the agent's process group; if the agent is still there GRACE seconds later it
gets SIGKILL, and the cleanup above runs as usual.

Where a piece is missing it degrades rather than fails: without the subreaper
(not Linux, no ctypes) orphans re-parented to init are reached only through the
process group; without /proc only the process group and the supervisor's own
children are reached.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

if TYPE_CHECKING:  # pragma: no cover
    import ctypes
    import socket

__all__ = ["GRACE", "KILL_WAIT", "run"]

# Seconds between SIGTERM and SIGKILL for what the agent left behind (and for an
# agent asked to end through its supervisor).
GRACE = 2.0
# Seconds to wait for SIGKILLed processes to go (one in uninterruptible sleep
# may take longer; the supervisor then exits without it).
KILL_WAIT = 1.0
_POLL = 0.01

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _libc() -> Optional[ctypes.CDLL]:
    """libc through ctypes, or None (not Linux, or a Python built without ctypes)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None


def run(launch: Dict[str, Any], body: bytes, umask: int,
        scratch: Optional[str] = None, link: Optional["socket.socket"] = None) -> None:
    """Run the agent that ``launch`` describes under a supervisor; never returns.

    ``launch`` is the loader's launch line: ``mode``, ``argv``; ``body`` the
    handler call (mode "handler"); ``umask`` the login's umask; ``scratch`` a
    temporary directory of the loader's, removed once everything has ended.
    ``link``: for an agent forked by the zygote, its socket to the session's
    client, which stands for the session: the agent's group is killed when it
    closes, and the exit status goes back over it (``EXIT <code>``).
    """
    libc = _libc()
    subreaper = libc is not None and libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    supervisor = os.getpid()
    pid = os.fork()
    if pid == 0:
        if link is not None:
            link.close()
        _agent(launch, body, umask, libc, supervisor)  # does not return
    try:
        os.setpgid(pid, pid)  # also done by the child: whichever runs first
    except OSError:
        pass  # the child did it already and has exec'd
    if link is not None:
        _kill_when_closed(link, pid)
    code = _Supervisor(pid, subreaper).run()
    if link is not None:
        try:
            link.sendall(b"EXIT %d\n" % code)
        except OSError:
            pass
    if scratch:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    os._exit(code)


def _kill_when_closed(link: "socket.socket", group: int) -> None:
    """A thread that kills the agent's group once ``link`` closes (the session's
    client, so the session, is gone)."""
    import threading

    def watch() -> None:
        try:
            while link.recv(64):
                pass
        except OSError:
            pass
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass

    threading.Thread(target=watch, daemon=True).start()


# -- the agent's side ---------------------------------------------------------
def _agent(launch: Dict[str, Any], body: bytes, umask: int, libc: Optional[ctypes.CDLL],
           supervisor: int) -> None:
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    if libc is not None:
        # Should the supervisor be SIGKILLed, the agent goes too.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != supervisor:
            os._exit(1)
    os.umask(umask)
    mode = launch["mode"]
    argv = [str(word) for word in launch.get("argv") or []]
    if mode == "exec":
        _exec(argv)
    if mode == "script":
        import runpy

        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
        sys.exit(0)
    from sshpipe import agent, serial

    handler, args, kwargs = serial.loads(body)
    if isinstance(handler, type):
        handler = handler(*args, **kwargs)
    sys.exit(agent.serve(handler))


def _exec(argv: List[str]) -> None:
    """Replace this process with ``argv`` (looked up on PATH, as the shell would)."""
    # Python ignores these at start-up and exec keeps ignored signals ignored: give
    # the program the defaults it would have had from the shell.
    for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except (OSError, IndexError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "empty command"
        try:
            os.write(2, ("sshpipe: cannot run %r: %s\n" % (argv[:1], reason)).encode())
        except OSError:
            pass
        missing = isinstance(exc, OSError) and exc.errno == errno.ENOENT
        os._exit(127 if missing or not argv else 126)


# -- the supervisor's side ----------------------------------------------------
class _Supervisor:
    """Waits for the agent, then ends and reaps every descendant, in bounded time."""

    def __init__(self, agent: int, subreaper: bool):
        self.agent = agent
        self.subreaper = subreaper
        self.me = os.getpid()
        self.children_files = os.path.exists("/proc/%d/task/%d/children" % (self.me, self.me))

    def run(self) -> int:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._pass_on)
        signal.signal(signal.SIGALRM, self._kill_agent)
        status = self._wait_agent()
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
            signal.signal(signum, signal.SIG_IGN)
        self._end_descendants()
        if status is None:
            return 255
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
        return os.WEXITSTATUS(status)

    def _pass_on(self, signum: int, frame: Optional[FrameType]) -> None:
        """Asked to end: ask the agent, and SIGKILL it if still there after GRACE."""
        self._signal_group(signal.SIGTERM)
        if signal.getitimer(signal.ITIMER_REAL)[0] == 0:
            signal.setitimer(signal.ITIMER_REAL, GRACE)

    def _kill_agent(self, signum: int, frame: Optional[FrameType]) -> None:
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.agent, signum)
        except OSError:
            pass

    def _wait_agent(self) -> Optional[int]:
        """The agent's wait status; orphans re-parented here meanwhile are reaped."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return None
            if pid == self.agent:
                return status

    # -- after the agent ----------------------------------------------------
    def _end_descendants(self) -> None:
        """SIGTERM everything left, GRACE seconds, SIGKILL, KILL_WAIT seconds."""
        if self._gone():
            return
        termed: Set[Tuple[int, bytes]] = set()
        self._signal_all(signal.SIGTERM, termed)
        deadline = time.monotonic() + GRACE
        while time.monotonic() < deadline:
            time.sleep(_POLL)
            if self._gone():
                return
            self._signal_all(signal.SIGTERM, termed)  # started since: a SIGTERM too
        killed: Set[Tuple[int, bytes]] = set()
        deadline = time.monotonic() + KILL_WAIT
        while True:
            self._signal_all(signal.SIGKILL, killed)
            if self._gone() or time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        try:
            os.write(2, ("sshpipe: what the agent left running ignored SIGTERM for %g s "
                         "and was killed (pids %s)\n"
                         % (GRACE, sorted(pid for pid, _ in killed) or "in its group")).encode())
        except OSError:
            pass

    def _gone(self) -> bool:
        """Reap what has ended; True when no child (hence, being the subreaper, no
        descendant) and nobody in the agent's process group is left."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                return False
        try:
            os.killpg(self.agent, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return True  # EPERM: what is left belongs to another user, out of reach
        return False

    def _signal_all(self, signum: int, done: Set[Tuple[int, bytes]]) -> None:
        """``signum`` to the agent's process group and to each descendant that has
        not had it yet (``done`` holds (pid, start time) of those that have)."""
        self._signal_group(signum)
        family = self._descendants()
        for pid in family:
            start = _start_time(pid)
            if start is None or (pid, start) in done:
                continue
            if _send(pid, signum, family, self.me):
                done.add((pid, start))

    def _descendants(self) -> List[int]:
        """Pids below the supervisor (Linux /proc), children first; [] without /proc."""
        if self.children_files:
            found: List[int] = []
            frontier = [self.me]
            while frontier:
                parent = frontier.pop()
                try:
                    tasks = os.listdir("/proc/%d/task" % parent)
                except OSError:
                    continue
                for task in tasks:
                    try:
                        with open("/proc/%d/task/%s/children" % (parent, task), "rb") as f:
                            kids = [int(word) for word in f.read().split()]
                    except OSError:
                        continue
                    found.extend(kids)
                    frontier.extend(kids)
            return found
        return _scan_descendants(self.me)


def _scan_descendants(root: int) -> List[int]:
    """Descendants of ``root`` from every /proc/PID/stat (kernels without the
    per-task children files)."""
    children: Dict[int, List[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(int(entry))
    found: List[int] = []
    frontier = [root]
    while frontier:
        kids = children.get(frontier.pop(), [])
        found.extend(kids)
        frontier.extend(kids)
    return found


def _stat(pid: int) -> Optional[List[bytes]]:
    """/proc/PID/stat fields after the command name (state first), or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> Optional[bytes]:
    """The start time of ``pid`` (field 22 of /proc/PID/stat): with the pid, it
    names one process, since pids are reused."""
    stat = _stat(pid)
    return None if stat is None or len(stat) < 20 else stat[19]


def _send(pid: int, signum: int, family: List[int], me: int) -> bool:
    """Signal ``pid`` only if it is still a descendant: through a pidfd (opened,
    then checked to still have a parent among ``family``) where the kernel has
    them, so a pid reused meanwhile by another process is never signalled."""
    opener = getattr(os, "pidfd_open", None)
    sender = getattr(signal, "pidfd_send_signal", None)
    if opener is None or sender is None:
        try:
            os.kill(pid, signum)
            return True
        except OSError:
            return False
    try:
        fd = opener(pid)
    except OSError:
        return False
    try:
        stat = _stat(pid)
        if stat is None or (int(stat[1]) != me and int(stat[1]) not in family):
            return False
        sender(fd, signum)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
