"""Sessions through an ``ssh -S`` passenger: the fallback when our mux client
cannot talk to the master (another mux protocol version).

The passenger is OpenSSH's own mux client: ``ssh -S K.sock host command`` with
our fds as its stdin, stdout and stderr. It passes those very fds to the master
(as :mod:`sshpipe._openssh.mux` does) and waits for the exit message, so it
relays no bytes either; the cost is one process per session (a few ms to start,
a few MB while it waits). Its exit status is the remote command's, or 255 when
it could not get or keep a session.

It must never connect by itself: with ``ControlMaster=no`` a passenger that
finds no master would quietly make a connection of its own. ``ProxyCommand=false``
(given first, so the config's ProxyJump/ProxyCommand is ignored, as readconf.c
keeps the first) makes that attempt fail at once instead. Its own complaints
(``mux_client_request_session: ...``) go to our stderr fd, mixed with the remote
command's stderr.

Ending it early: SIGTERM, on which ssh's mux client stops waiting and closes the
control connection, which has the master close the channel exactly as
:meth:`MuxSession.close` does.
"""
from __future__ import annotations

import os
import signal
import subprocess
from typing import List, Optional, Union

from sshpipe._openssh import _procs
from sshpipe._openssh.failures import MasterLost, read_log_tail
from sshpipe._openssh.mux import MASTER_EXIT_GRACE
from sshpipe._openssh.target import Target
from sshpipe.errors import ConnectError, PipeClosed

__all__ = ["PassengerSession"]

# ssh's status for "ssh failed" (as opposed to the remote command's status).
SSH_FAILED = 255

# After close(): how long the passenger gets to leave after SIGTERM before SIGKILL.
CLOSE_TIMEOUT = 2.0


def passenger_command(target: Target, socket_path: str, command: Union[str, bytes],
                      ssh: str = "ssh") -> List[str]:
    """The argv of a passenger running ``command`` through the master on ``socket_path``."""
    if isinstance(command, bytes):
        command = os.fsdecode(command)
    return ([ssh, "-o", "ProxyCommand=false", "-o", "ControlMaster=no", "-S", socket_path,
             "-o", "BatchMode=yes", "-o", "RemoteCommand=none", "-o", "LogLevel=ERROR",
             "-T", "-e", "none"] + target.options() + ["--", target.host, command])


class PassengerSession:
    """One remote command run by an ``ssh -S`` passenger process.

    Same interface as :class:`~sshpipe._openssh.mux.MuxSession`: ``wait``,
    ``poll``, ``fileno`` (a pidfd: readable when the passenger exits), ``close``,
    ``exit_status``, ``master_pid``.

    Ownership: this object started the passenger, is the only one that waits
    for it, and kills it in :meth:`close` if it still runs.
    """

    def __init__(self, process: subprocess.Popen[bytes], target: Target,
                 master: Optional[_procs.ProcessId], log_path: Optional[str]):
        self._process: Optional[subprocess.Popen[bytes]] = process
        self.host = target.host
        self.master = master
        self.log_path = log_path
        self.exit_status: Optional[int] = None
        self._pidfd: Optional[int] = None
        self._error: Optional[BaseException] = None
        self._closed = False
        identity = _procs.identify(process.pid)
        if identity is not None:
            self._pidfd = _procs.open_pidfd(identity)

    @classmethod
    def start(cls, target: Target, socket_path: str, command: Union[str, bytes], *,
              stdin: int, stdout: int, stderr: int, ssh: str = "ssh",
              master: Optional[_procs.ProcessId] = None,
              log_path: Optional[str] = None) -> "PassengerSession":
        """Start the passenger; returns at once (the session opens in its own time;
        a failure to open shows as exit status 255 from :meth:`wait`)."""
        argv = passenger_command(target, socket_path, command, ssh)
        try:
            process = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr,
                                       start_new_session=True, close_fds=True)
        except OSError as exc:
            raise ConnectError(f"{target.host}: cannot run {ssh!r}: {exc.strerror}",
                               target.host) from exc
        return cls(process, target, master, log_path)

    @property
    def master_pid(self) -> Optional[int]:
        return None if self.master is None else self.master.pid

    @property
    def pid(self) -> Optional[int]:
        return None if self._process is None else self._process.pid

    def fileno(self) -> int:
        """A pidfd of the passenger (readable once it exits), for poll/select."""
        if self._pidfd is None:
            raise PipeClosed(f"{self.host}: no pidfd for this passenger")
        return self._pidfd

    def poll(self) -> Optional[int]:
        return self.wait(0)

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """The remote exit status once the passenger has exited, None before.

        Raises:
            MasterLost: the passenger failed (255) and the master is gone.
            PipeClosed: :meth:`close` ended it first.
        """
        if self.exit_status is not None:
            return self.exit_status
        if self._error is not None:
            raise self._error
        if self._closed or self._process is None:
            raise PipeClosed(f"{self.host}: the passenger session was closed before it ended")
        try:
            status = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._release()
        tail = read_log_tail(self.log_path).strip() if status == SSH_FAILED else ""
        # A master killed closes its sockets before /proc shows it gone: allow it
        # that moment (as MuxSession does) before reading 255 as the command's.
        if status == SSH_FAILED and self.master is not None and \
                _procs.wait_exit(self.master, MASTER_EXIT_GRACE):
            why = f"; its log ends: {tail.splitlines()[-1]}" if tail else ""
            self._error = MasterLost(f"{self.host}: the ssh master (pid {self.master.pid}) "
                                     f"ended under a passenger session{why}", self.host,
                                     self.master.pid)
            raise self._error
        self.exit_status = status if status >= 0 else 128 - status
        return self.exit_status

    def _release(self) -> None:
        self._process = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def close(self) -> None:
        """End the session from our side (SIGTERM to the passenger, which makes the
        master close the channel) and reap the passenger. Idempotent."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            self._closed = True
            try:
                os.kill(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._release()

    def __enter__(self) -> "PassengerSession":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.exit_status is not None:
            state = f"exited status {self.exit_status}"
        elif self._process is not None:
            state = f"running pid {self._process.pid}"
        else:
            state = "closed"
        return f"<PassengerSession {self.host} master pid {self.master_pid} {state}>"
