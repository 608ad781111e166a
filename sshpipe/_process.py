"""The Process half of an SSHPipe: a ``multiprocessing.Process`` safe for several threads.

An SSHPipe's child is polled at once by the caller's threads (``join()``,
``is_alive()``, ``close()``) and by the pipe's events thread (which settles the
pipe's end when the child dies). multiprocessing's Popen is not safe for that:
one thread can reap the child while the other sees it gone with no status, or
read a forkserver status twice. So every poll here goes through one lock,
waiting happens on the sentinel (which never reaps), ending the child escalates
(SIGTERM, then SIGKILL after a grace), and once the child is reaped the Process
is released (``Process.close()``) with its ``exitcode`` and ``pid`` kept.

What travels to the child under spawn and forkserver is Process's own state
and the pipe ends the subclass names in ``_CHILD_ENDS``, nothing else: what the
child needs to run comes as a frozen :class:`~sshpipe._child.ChildSpec`.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from typing import Any, ClassVar, Dict, FrozenSet, Optional, Tuple

__all__ = ["KILL_GRACE", "ChildProcess"]

# How long the child gets after SIGTERM before SIGKILL, and how long reaping an
# exiting child may take.
KILL_GRACE = 1.0

# Held while any pipe of this process starts its child. Under fork, a child
# forked while another thread is inside Process.start() inherits that pipe's
# sentinel write end (made just before its fork, closed in the parent just
# after), and the sentinel then stays silent until the inheriting child exits:
# join(timeout) and close() would wait out their grace for a child long gone.
_START_LOCK = threading.Lock()


def _new_start_lock() -> None:
    global _START_LOCK
    _START_LOCK = threading.Lock()  # a forked child starts with it free


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_start_lock)


class ChildProcess(multiprocessing.Process):
    """A Process whose polls, waits and ends are safe from several threads.

    Args:
        name, daemon: as ``multiprocessing.Process``.
        mp_context: the ``multiprocessing`` context whose start method starts the
            child (default: the global one), as ProcessPoolExecutor's.
    """

    # The attributes, besides Process's own, that the child gets (its pipe ends).
    _CHILD_ENDS: ClassVar[FrozenSet[str]] = frozenset()
    # Process's private state, which this class locks around (typeshed does not
    # declare it): its Popen once started, whether close() released it, and the
    # pid of the process that made it.
    _popen: Any
    _closed: bool
    _parent_pid: int

    def __init__(self, name: Optional[str] = None, daemon: Optional[bool] = None,
                 mp_context: Optional[Any] = None):
        super().__init__(name=name, daemon=daemon)
        # Process's own attributes: the only state (with _CHILD_ENDS) that travels
        # to the child; see __getstate__.
        self._process_keys = frozenset(self.__dict__) | {"_process_keys"}
        if mp_context is not None:
            # Process.start() calls self._Popen(self): the context's own launcher
            # (replaced on this instance: the method stays the class's default).
            self._Popen = mp_context.Process._Popen  # type: ignore[method-assign]
        # Every poll of multiprocessing's Popen goes through this lock.
        self._popen_lock = threading.RLock()
        self._final_exitcode: Optional[int] = None  # kept once the process is released
        self._released_pid: Optional[int] = None

    def __getstate__(self) -> Dict[str, Any]:
        """What the child gets under spawn/forkserver: Process's own state and the
        child's pipe ends, nothing else (the rest comes as the SPEC frame)."""
        keep = self._process_keys | self._CHILD_ENDS
        return {key: value for key, value in self.__dict__.items() if key in keep}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- the Process API, locked ------------------------------------------
    def start(self) -> None:
        """As ``Process.start``, one pipe's child at a time in this process (see
        ``_START_LOCK``)."""
        with _START_LOCK, self._popen_lock:
            super().start()

    def join(self, timeout: Optional[float] = None) -> None:
        """As ``Process.join``; waits on the sentinel first, so a thread in join()
        never races another one reaping the child."""
        if self._popen is not None and not self._closed and not self._wait_child(
                None if timeout is None else max(0.0, timeout)):
            return
        with self._popen_lock:
            # The sentinel fired: the child is exiting, reaping it takes a moment.
            super().join(KILL_GRACE)

    def is_alive(self) -> bool:
        with self._popen_lock:
            return super().is_alive()

    @property
    def released(self) -> bool:
        """True once close() released the Process half (see :meth:`close`)."""
        return bool(self._closed)

    @property
    def pid(self) -> Optional[int]:
        """The local child's pid (the process signals reach); still readable after
        close() released the Process half. The agent's pid is remote_info["pid"]."""
        return self._popen.pid if self._popen is not None else \
            self.__dict__.get("_released_pid")

    ident = pid

    @property
    def exitcode(self) -> Optional[int]:
        """As ``Process.exitcode``; after close() released the process, the status
        it ended with."""
        with self._popen_lock:
            if self._closed:
                return self._final_exitcode
            return super().exitcode

    def terminate(self) -> None:
        """End the child process (SIGTERM); its SSH connection closes, so the agent
        sees end of input and exits, taking its children with it."""
        with self._popen_lock:
            super().terminate()

    def kill(self) -> None:
        """Like :meth:`terminate`, with SIGKILL."""
        with self._popen_lock:
            super().kill()

    # -- for the pipe's own threads ---------------------------------------
    def _wait_child(self, timeout: Optional[float]) -> bool:
        """Wait for the child to exit without reaping it (the sentinel only, so no
        other thread's join can be confused); True once it is gone."""
        if self._popen is None or self._closed:
            return True
        try:
            return bool(multiprocessing.connection.wait([self.sentinel], timeout))
        except (OSError, ValueError):
            return True

    def _terminate_child(self) -> None:
        """SIGTERM to the child if it still runs (not started or released: nothing)."""
        with self._popen_lock:
            if self._popen is not None and not self._closed and super().is_alive():
                super().terminate()

    def _end_child(self) -> None:
        """End the child now: SIGTERM, then SIGKILL after KILL_GRACE."""
        if self._popen is None or self._closed:
            return
        with self._popen_lock:
            if super().is_alive():
                super().terminate()
        if not self._wait_child(KILL_GRACE):
            with self._popen_lock:
                if super().is_alive():
                    super().kill()
            self._wait_child(KILL_GRACE)

    def _child_exitcode(self) -> Optional[int]:
        """The child's exit code, without blocking (another thread may be joining)."""
        if self._popen_lock.acquire(timeout=KILL_GRACE):
            try:
                if self._closed:
                    return self._final_exitcode
                if self._wait_child(0):
                    super().join(KILL_GRACE)  # exiting: reaping takes a moment
                return super().exitcode
            finally:
                self._popen_lock.release()
        return None

    def _child_status(self) -> Tuple[Optional[int], str]:
        """Once the child's pipes ended: its exit code (after KILL_GRACE for it to
        exit) and the start method that ran it."""
        self._wait_child(KILL_GRACE)
        return self._child_exitcode(), self._start_method_name()

    def _start_method_name(self) -> str:
        return type(self._popen).__module__.rsplit("_", 1)[-1] if self._popen else ""

    def _release_process(self) -> None:
        """Once the child is reaped, release the Process half (``Process.close()``):
        from then on is_alive(), join(), terminate() and sentinel raise ValueError,
        as on a closed Process; ``exitcode`` keeps the recorded status."""
        with self._popen_lock:
            if self._closed or self._popen is None:
                return
            super().join(KILL_GRACE)
            code = super().exitcode
            if code is None:
                return  # still running (could not be ended): leave it joinable
            self._final_exitcode = code
            self._released_pid = self._popen.pid
            super().close()
