"""The OpenSSH transport's building blocks: ssh's own connection, one master per
target and caller, sessions opened on it with the caller's fds (no Python relay).

One job per module::

    target.py      Target: what to connect to, as ssh's command line says it; the key
    controldir.py  the private control directory (StrictModes-like checks), per-key lock
    mux.py         PROTOCOL.mux client: hello, alive check, terminate, sessions (SCM_RIGHTS)
    master.py      ensure_master: find or start the master (ssh -N -M), lifetime rules
    watchdog.py    the process that ends a master when its owner ends
    registry.py    the masters' records: list, stop, retire
    passenger.py   fallback sessions through an ``ssh -S`` passenger
    session.py     open_session: the one call the core makes
    failures.py    the typed errors, and ssh's stderr mapped to them by one table
    _procs.py      processes named by pid and start time; pidfds

The interface the core (the SSHPipe child) calls::

    if openssh_version() >= MIN_OPENSSH:          # transport="auto"
        session = open_session(Target(host, user=..., port=..., config=...), command,
                               stdin=request_read_end, stdout=event_write_end,
                               stderr=stderr_write_end, owner=caller_pid,
                               persist=60.0, timeout=30.0)
        # close the three fds here: the master holds its own copies
        session.fileno()          # poll()able: readable when the master has news
        session.wait(timeout)     # exit status once ended (all output delivered), else None
        session.close()           # end it: the remote gets EOF on stdin
    stop_masters(owner=caller_pid)                # at the caller's orderly exit (optional:
                                                  # the watchdog does it for a killed one)

Errors: UnsafeControlDir, HostKeyError, AuthenticationError, ConnectTimeout,
ConnectError, MuxError from open_session; MasterLost, NoExitStatus, PipeClosed
from wait().

Stdlib only (the watchdog runs with ``python -I -S``). Nothing runs at import.
"""
from __future__ import annotations

from sshpipe._lazy import lazy_exports

_EXPORTS = {
    "ANY_OWNER": "registry",
    "MIN_OPENSSH": "master",
    "Master": "master",
    "MasterInfo": "registry",
    "MasterLost": "failures",
    "MasterNotRunning": "failures",
    "MuxClient": "mux",
    "MuxError": "failures",
    "MuxSession": "mux",
    "MuxUnavailable": "failures",
    "NoExitStatus": "failures",
    "PassengerSession": "passenger",
    "SELF": "master",
    "Session": "session",
    "SessionRefused": "failures",
    "SessionState": "mux",
    "Target": "target",
    "UnsafeControlDir": "failures",
    "ensure_master": "master",
    "list_masters": "registry",
    "open_session": "session",
    "openssh_version": "master",
    "stop_masters": "registry",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
