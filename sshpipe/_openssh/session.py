"""Open a remote command on a target's master, with the caller's fds as its stdio.

This is the one call the core needs (the SSHPipe child makes it)::

    session = open_session(Target(host, config=path), command,
                           stdin=request_read_end, stdout=event_write_end,
                           stderr=stderr_write_end, owner=caller_pid)
    os.close(request_read_end); os.close(event_write_end); os.close(stderr_write_end)
    ...                      # the caller's frames flow through the master, in C
    status = session.wait(timeout)     # None while it runs
    session.close()                    # end it early: the remote gets EOF

It finds or starts the master (:func:`~sshpipe._openssh.master.ensure_master`)
and opens the session over the mux protocol, or through an ``ssh -S`` passenger
when the master speaks another mux version. A master found running may end in the
moment before the session opens (idle timeout, a kill): then a new master is
started and the session opened on it, once. When sshd refuses another session on
a master's connection (MaxSessions), the next master of the target is used
(slot 1, 2, ...), started if need be.

The command runs as with ``ssh host command``: through the remote user's login
shell, which reads its rc files (a slow ``.bashrc`` delays every session).
"""
from __future__ import annotations

import time
from typing import Iterable, Mapping, Optional, Protocol, Union

from sshpipe._openssh.failures import MasterNotRunning, SessionRefused
from sshpipe._openssh.master import DEFAULT_PERSIST, DEFAULT_TIMEOUT, SELF, ensure_master
from sshpipe._openssh.target import Target

__all__ = ["Session", "open_session"]

# Bound on sshd confirming a session on a live master (a round trip, a fork).
SESSION_OPEN_TIMEOUT = 30.0

# Masters per target and owner when sshd refuses more sessions on one connection
# (MaxSessions, 10 by default): 8 x 10 sessions before giving up, far more than
# sshd's MaxStartups would let one client open connections for anyway.
MAX_SLOTS = 8


class Session(Protocol):
    """What both session kinds (mux, passenger) offer."""

    host: str
    exit_status: Optional[int]

    @property
    def master_pid(self) -> Optional[int]: ...

    def fileno(self) -> int: ...

    def poll(self) -> Optional[int]: ...

    def wait(self, timeout: Optional[float] = None) -> Optional[int]: ...

    def close(self) -> None: ...


def open_session(target: Target, command: Union[str, bytes], *, stdin: int, stdout: int,
                 stderr: int, owner: Optional[int] = SELF,
                 persist: Optional[float] = DEFAULT_PERSIST, control_dir: Optional[str] = None,
                 timeout: float = DEFAULT_TIMEOUT, mode: str = "auto",
                 env: Iterable[str] = (), ssh: str = "ssh",
                 ssh_env: Optional[Mapping[str, str]] = None) -> Session:
    """Run ``command`` on ``target`` with ``stdin``/``stdout``/``stderr`` as its stdio.

    Args:
        owner, persist, control_dir, ssh, ssh_env: as for
            :func:`~sshpipe._openssh.master.ensure_master` (``ssh_env`` is its
            ``env``: the environment ssh runs in).
        timeout: bound on finding or starting the master plus opening the session.
        mode: ``"auto"``, ``"mux"`` or ``"passenger"`` (see Master.open_session).
        env: ``NAME=value`` for the remote command (subject to SendEnv/AcceptEnv).

    Returns:
        A running :class:`Session`. The master has its own copies of the fds:
        close yours.

    Raises:
        UnsafeControlDir, HostKeyError, AuthenticationError, ConnectTimeout,
        ConnectError, MuxError: see ensure_master and Master.open_session.
    """
    deadline = time.monotonic() + timeout
    slot, lost = 0, 0
    while True:
        master = ensure_master(target, owner=owner, persist=persist, control_dir=control_dir,
                               timeout=max(0.001, deadline - time.monotonic()), ssh=ssh,
                               env=ssh_env, slot=slot)
        try:
            return master.open_session(command, stdin=stdin, stdout=stdout, stderr=stderr,
                                       env=env, mode=mode,
                                       timeout=min(SESSION_OPEN_TIMEOUT,
                                                   max(0.001, deadline - time.monotonic())))
        except MasterNotRunning:
            lost += 1
            if lost == 2:
                raise
        except SessionRefused:
            slot += 1
            if slot == MAX_SLOTS:
                raise
        finally:
            master.close()
