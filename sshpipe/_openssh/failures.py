"""How the OpenSSH client fails, named in sshpipe's error tree.

Two kinds of failure meet here:

- ``ssh`` itself gave up (exit status 255): its log says why, and
  :data:`SSH_FAILURES` names the failure its words report, in the table both
  transports share (:mod:`sshpipe._connect_errors`), so the error and its words
  are the paramiko transport's (host key, authentication, timeout, refused ...).
  The rows are ordered: the first whose pattern matches anywhere in the log wins,
  so the specific rows come first (a host key failure also mentions the
  connection).
- the master, its control socket or its directory misbehaved: the classes below,
  each a subclass of the public class a caller already catches
  (:class:`~sshpipe.errors.ConnectError` for "no session could be had",
  :class:`~sshpipe.errors.PipeBroken` for "a live session was lost").

::

    ConnectError
    ├── UnsafeControlDir    the control directory (or a parent) could be written by
    │                       another user, is a symlink, or has the wrong owner; .path
    └── MuxError            the control socket did not do what PROTOCOL.mux says, or
        │                   the master refused the request (message text included)
        ├── MuxUnavailable  the master speaks another mux protocol version
        ├── SessionRefused  sshd refused one more session on this connection
        │                   (its MaxSessions, 10 by default): use another master
        └── MasterNotRunning  no master answers on the socket (.stale: a socket
                            file is there but nothing listens: a crashed master)
    PipeBroken
    ├── MasterLost          the master ended under a live session; .host, .master_pid
    └── NoExitStatus        the session ended without an exit status while its
                            master lives on (remote command killed by a signal:
                            the mux protocol forwards exit-status only)

Every message starts with the host it concerns.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Optional, Pattern, Sequence, Tuple

from sshpipe._connect_errors import Failure, connect_error
from sshpipe.errors import ConnectError, PipeBroken

__all__ = ["MasterLost", "MasterNotRunning", "MuxError", "MuxUnavailable", "NoExitStatus",
           "SSH_FAILURES", "SessionRefused", "UnsafeControlDir", "classify", "error_from_ssh",
           "log_facts", "read_log_tail"]

# How much of a log is quoted in an error: the end of it holds the reason, and a
# master with LogLevel DEBUG3 can write megabytes.
LOG_TAIL_BYTES = 4096


class UnsafeControlDir(ConnectError):
    """The control directory is not private to this user; nothing was put in it."""

    def __init__(self, message: str, host: Optional[str] = None, path: str = ""):
        self.path = path
        super().__init__(message, host)


class MuxError(ConnectError):
    """The master's control socket misbehaved or refused the request."""


class MuxUnavailable(MuxError):
    """The master speaks a multiplexing protocol version this client does not."""


class SessionRefused(MuxError):
    """sshd refused a session channel on the master's connection, almost always
    because the connection has MaxSessions sessions open already."""


class MasterNotRunning(MuxError):
    """No master answers on the control socket; ``stale`` if a socket file is
    there that nothing listens on (what a crashed master leaves)."""

    def __init__(self, message: str, host: Optional[str] = None, stale: bool = False):
        self.stale = stale
        super().__init__(message, host)


class MasterLost(PipeBroken):
    """The ssh master ended (killed, link lost) while the session was live."""

    def __init__(self, message: str, host: Optional[str] = None,
                 master_pid: Optional[int] = None):
        self.master_pid = master_pid
        super().__init__(message, host=host)


class NoExitStatus(PipeBroken):
    """The session ended without an exit status; its master still runs."""

    def __init__(self, message: str, host: Optional[str] = None):
        super().__init__(message, host=host)


def _rows(*rows: Tuple[str, Failure]) -> Tuple[Tuple[Pattern[str], Failure], ...]:
    return tuple((re.compile(pattern), failure) for pattern, failure in rows)


# ssh's own words (OpenSSH 7-9, sshconnect.c / sshconnect2.c / ssh.c) -> the failure
# of the table both transports share (sshpipe._connect_errors).
SSH_FAILURES = _rows(
    (r"REVOKED HOST KEY|HOST KEY REVOKED|is marked as revoked", Failure.HOST_KEY_REVOKED),
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED"
     r"|Host key for \S+ has changed"
     r"|host key mismatch", Failure.HOST_KEY_CHANGED),
    # "yes" says so; "ask" in BatchMode refuses without a word but this one (ssh
    # confirm()s nothing in BatchMode): both are a key not on record.
    (r"No \S+ host key is known for"
     r"|Host key verification failed", Failure.HOST_KEY_UNKNOWN),
    (r"Permission denied \(", Failure.AUTH_REFUSED),
    (r"Too many authentication failures"
     r"|No more authentication methods"
     r"|Authentication failed", Failure.AUTHENTICATION),
    (r"[Cc]onnection timed out"
     r"|[Oo]peration timed out"
     r"|timed out during banner exchange"
     r"|Timeout, server \S+ not responding", Failure.TIMEOUT),
    (r"Could not resolve hostname", Failure.UNKNOWN_NAME),
    (r"Connection refused", Failure.REFUSED),
    (r"Unable to negotiate with", Failure.NO_COMMON_ALGORITHMS),
    (r"kex_exchange_identification: |Connection closed by", Failure.CLOSED),
    # everything else ssh reports (no route, a bad config line, a ProxyCommand that
    # died) is Failure.FAILED: the default below.
)

# What a message quotes, where ssh's log says it: the first match of each fact wins.
_FACTS = tuple(re.compile(pattern) for pattern in (
    r"connect to host (?P<hostname>\S+) port (?P<port>\d+):",
    r"Could not resolve hostname (?P<hostname>[^:\s]+): (?P<reason>[^\n]+)",
    r"Host key for (?P<name>\S+) has changed",
    r"No (?P<keytype>\S+) host key is known for (?P<name>\S+) ",
    r"The fingerprint for the (?P<keytype>\S+) key sent by the remote host is\s+"
    r"(?P<fingerprint>SHA256:[A-Za-z0-9+/=]+)",
    r"Server host key: (?P<keytype>\S+) (?P<fingerprint>SHA256:[A-Za-z0-9+/=]+)",
    r"Offending (?:\S+ )?key (?:for IP )?in (?P<where>\S+:\d+)",
    r'ssh-keygen -f \S+ -R "?(?P<name>[^"\s]+)',
    r"(?P<who>\S+@\S+): Permission denied \((?P<methods>[^)]*)\)",
))


def log_facts(log_text: str) -> Dict[str, str]:
    """The facts :data:`_FACTS` finds in ``log_text`` (hostname, port, name,
    keytype, fingerprint, where, who, methods, reason)."""
    facts: Dict[str, str] = {}
    for pattern in _FACTS:
        match = pattern.search(log_text)
        if match:
            for name, value in match.groupdict().items():
                if value is not None:
                    facts.setdefault(name, value)
    return facts


def classify(log_text: str) -> Failure:
    """The failure ssh's log reports (:data:`SSH_FAILURES`; FAILED if none)."""
    for pattern, failure in SSH_FAILURES:
        if pattern.search(log_text):
            return failure
    return Failure.FAILED


def read_log_tail(path: Optional[str], limit: int = LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a log file as text ("" if unreadable)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - limit))
            data = log.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if size > limit:
        text = text.split("\n", 1)[-1]   # drop the cut line
    return text


def _reason_lines(text: str) -> Sequence[str]:
    """The lines worth quoting: ssh's messages without debug chatter or banners."""
    lines = [line.strip() for line in text.splitlines()]
    kept = [line for line in lines if line and not line.startswith(("debug", "@@@"))]
    return kept[-12:]


def error_from_ssh(host: str, what: str, log_text: str,
                   exit_status: Optional[int] = None, **known: object) -> ConnectError:
    """The typed error for an ssh that failed doing ``what`` (e.g. "starting the
    master"), given its log: the failure from :data:`SSH_FAILURES`, the message
    from the one table (:func:`sshpipe._connect_errors.connect_error`) with the
    facts the log gives, ``known`` (facts the caller knows) filling the rest."""
    failure = classify(log_text)
    facts: Dict[str, Any] = {}
    found = log_facts(log_text)
    if "keytype" in found:
        fingerprint = found.get("fingerprint", "(fingerprint not reported)")
        found["key"] = f"{found['keytype']} {fingerprint}"
    if "port" in found and failure in (Failure.REFUSED, Failure.TIMEOUT):
        found["doing"] = f"connection to {found['hostname']} port {found['port']}"
    facts.update({k: v for k, v in found.items() if k != "reason" or failure is
                  Failure.UNKNOWN_NAME})
    facts.update(known)  # what the caller found out says more than the log
    facts.setdefault("doing", what)
    said = "; ".join(_reason_lines(log_text)) or "ssh gave no reason"
    status = f" (ssh exit status {exit_status})" if exit_status is not None else ""
    facts.setdefault("reason", f"{said}{status}")
    if failure is Failure.AUTH_REFUSED:
        facts["reason"] = f"ssh said: {said}"
    if failure in (Failure.TIMEOUT, Failure.CLOSED):
        facts.setdefault("detail", f": {said}")
    return connect_error(failure, host, facts)
