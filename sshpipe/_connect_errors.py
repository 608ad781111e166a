"""One table from "why no session could be had" to the typed error, for both
transports.

Each transport first names the failure it saw, in its own terms, as a
:class:`Failure`:

- paramiko (:data:`sshpipe.transport.TRANSPORT_ERRORS`): by the exception class
  paramiko or the socket raised, and by sshpipe's own host key and
  authentication checks;
- OpenSSH (:data:`sshpipe._openssh.failures.SSH_FAILURES`): by the words of
  ssh's log when it exits with status 255.

Then :func:`connect_error` makes the error from :data:`CONNECT_ERRORS`, the one
place that says which class each failure raises and how its message reads, so a
refused port, an unknown name, a changed host key ... read the same whichever
transport met them (the fault matrix checks the words under both). Every
message starts with the host as the caller named it.

The facts a message quotes (``{doing}``, ``{reason}`` ...) come from whoever saw
the failure; one a transport cannot know (OpenSSH's log may not give a key's
fingerprint) reads as a placeholder that says so, never as an empty hole.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Type

from sshpipe.errors import AuthenticationError, ConnectError, ConnectTimeout, HostKeyError

__all__ = ["CONNECT_ERRORS", "Failure", "Row", "connect_error"]


class Failure(enum.Enum):
    """Why no session could be had, whichever transport found out."""

    HOST_KEY_REVOKED = "the host key is marked @revoked"
    HOST_KEY_CHANGED = "the host key differs from the one on record"
    HOST_KEY_OTHER_TYPES = "known_hosts holds only keys of other types"
    HOST_KEY_UNKNOWN = "no key on record and the policy does not add one"
    HOST_KEY = "another host key failure"
    PASSPHRASE = "the client key needs a passphrase"
    AUTH_REFUSED = "the server accepted none of the credentials offered"
    AUTHENTICATION = "authentication failed otherwise"
    TIMEOUT = "nothing answered in time"
    UNKNOWN_NAME = "the host name does not resolve"
    REFUSED = "nothing listens on the port"
    PROXY_COMMAND = "the ProxyCommand failed"
    CHANNEL_REFUSED = "the server refused the session channel"
    NO_COMMON_ALGORITHMS = "no cipher, MAC, kex or key type in common"
    CLOSED = "the server closed the connection"
    FAILED = "anything else"


@dataclass(frozen=True)
class Row:
    """What a failure raises, and its message after ``"<host>: "`` (a
    :meth:`str.format` template over the facts)."""

    error: Type[ConnectError]
    says: str


CONNECT_ERRORS: Dict[Failure, Row] = {
    Failure.HOST_KEY_REVOKED: Row(
        HostKeyError, "REVOKED HOST KEY: the {key} host key of {name} is marked @revoked in "
                      "{where}; this could mean that a stolen key is being used to "
                      "impersonate this host"),
    Failure.HOST_KEY_CHANGED: Row(
        HostKeyError, "the host key of {name} has CHANGED ({key}, known_hosts has another "
                      "at {where}); this may be an attack. Remove the old entry from "
                      "known_hosts if the change is expected."),
    Failure.HOST_KEY_OTHER_TYPES: Row(
        HostKeyError, "{name} offered a {key} key but known_hosts records only {types} keys "
                      "for it"),
    Failure.HOST_KEY_UNKNOWN: Row(
        HostKeyError, "host key for {name} is not known ({key}) and StrictHostKeyChecking "
                      "is {policy}; add it to {known_hosts}{note}"),
    Failure.HOST_KEY: Row(HostKeyError, "{doing}: host key check failed: {reason}"),
    Failure.PASSPHRASE: Row(AuthenticationError,
                            "{doing}: the key needs a passphrase ({reason})"),
    Failure.AUTH_REFUSED: Row(AuthenticationError, "{who} refused authentication; {reason}"),
    Failure.AUTHENTICATION: Row(AuthenticationError, "{doing} failed: {reason}"),
    Failure.TIMEOUT: Row(ConnectTimeout, "{doing} timed out{after}{detail}"),
    Failure.UNKNOWN_NAME: Row(ConnectError, "unknown host name {hostname!r} ({reason})"),
    Failure.REFUSED: Row(ConnectError, "{doing} refused"),
    Failure.PROXY_COMMAND: Row(ConnectError, "{doing}: the ProxyCommand failed: {reason}"),
    Failure.CHANNEL_REFUSED: Row(ConnectError,
                                 "{doing}: the server refused the channel: {reason}"),
    Failure.NO_COMMON_ALGORITHMS: Row(
        ConnectError, "{doing}: no algorithms in common with the server: {reason}"),
    Failure.CLOSED: Row(ConnectError, "{doing}: the server closed the connection{detail}"),
    Failure.FAILED: Row(ConnectError, "{doing} failed: {reason}"),
}

# What a message says for a fact its transport could not know.
_UNKNOWN_FACTS = {
    "doing": "connecting", "reason": "no reason given", "after": "", "detail": "",
    "note": "", "key": "key and fingerprint not reported", "where": "known_hosts",
    "hostname": "?", "who": "the server", "types": "other",
    "policy": "ask", "known_hosts": "known_hosts",
}


class _Facts(dict[str, Any]):
    def __missing__(self, name: str) -> Any:
        return _UNKNOWN_FACTS.get(name, f"<{name} unknown>")


def connect_error(failure: Failure, host: str, facts: Optional[Mapping[str, Any]] = None,
                  **more: Any) -> ConnectError:
    """The typed error for ``failure`` met while connecting to ``host`` (the name
    the caller gave), its message made from ``facts`` by :data:`CONNECT_ERRORS`."""
    row = CONNECT_ERRORS[failure]
    known = _Facts({k: v for k, v in dict(facts or {}, **more).items() if v is not None})
    known.setdefault("name", host)
    return row.error(f"{host}: " + row.says.format_map(known), host)
