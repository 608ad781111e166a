"""known_hosts files read as OpenSSH reads them (hostfile.c, match.c).

A line is ``[@marker] patterns keytype base64-key [comment]``:

- the marker is ``@cert-authority`` (the key signs host certificates: it is not
  a host key itself) or ``@revoked`` (the key must never be accepted); any other
  marker, more than one marker, or a line that does not parse is ignored, as
  OpenSSH ignores it, and never breaks the other lines;
- ``patterns`` is a comma-separated list with ``*`` and ``?`` wildcards and
  ``!`` negation (a negated match wins), compared case-insensitively, or one
  hashed name ``|1|base64(salt)|base64(HMAC-SHA1(salt, name))``;
- only the lines whose patterns match the name being checked are decoded.

Bounds: a line longer than :data:`MAX_LINE` is skipped without being held in
memory, and only regular files are read (a FIFO or a device named as a
known_hosts file is skipped with a warning).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import stat
from dataclasses import dataclass, field
from typing import IO, Iterator, List, Optional, Sequence, Tuple

import paramiko
from paramiko.pkey import UnknownKeyType

from sshpipe.config._patterns import match_pattern

__all__ = ["HostEntries", "KnownKey", "MAX_LINE", "hash_name", "lookup"]

logger = logging.getLogger(__name__)

# Longer lines are skipped: a key line is a few hundred bytes (an 16384-bit RSA
# key about 3 KB), and a pattern list longer than this is not a real one.
MAX_LINE = 64 * 1024
# OpenSSH's match_pattern_list() gives up on a sub-pattern this long or longer.
_MAX_SUBPATTERN = 1023
_MARKERS = {"@cert-authority": "cert-authority", "@revoked": "revoked"}


@dataclass(frozen=True)
class KnownKey:
    """One key from a known_hosts line that matched the name."""

    key: paramiko.PKey
    marker: str                  # "", "cert-authority" or "revoked"
    path: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class HostEntries:
    """What the known_hosts files say about one name, split by marker."""

    keys: List[KnownKey] = field(default_factory=list)          # plain host keys
    revoked: List[KnownKey] = field(default_factory=list)
    authorities: List[KnownKey] = field(default_factory=list)   # @cert-authority

    def key_types(self) -> List[str]:
        return sorted({entry.key.get_name() for entry in self.keys})

    def revoked_entry(self, key: paramiko.PKey) -> Optional[KnownKey]:
        blob = key.asbytes()
        return next((e for e in self.revoked if e.key.asbytes() == blob), None)

    def matching(self, key: paramiko.PKey) -> Optional[KnownKey]:
        blob = key.asbytes()
        return next((e for e in self.keys if e.key.asbytes() == blob), None)


def hash_name(name: str, salt: bytes) -> str:
    """The hashed form OpenSSH writes for ``name`` with ``salt`` (HashKnownHosts)."""
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _matches_hashed(name: str, hashed: str) -> bool:
    parts = hashed.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
        expected = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(salt) != hashlib.sha1().digest_size:
        return False
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(digest, expected)


def _matches_patterns(name: str, patterns: str) -> bool:
    """OpenSSH's match_hostname(): a comma list, ``!`` negation wins, lower case."""
    name = name.lower()
    positive = False
    for item in patterns.split(","):
        negated = item.startswith("!")
        if negated:
            item = item[1:]
        if len(item) >= _MAX_SUBPATTERN:
            return False
        if match_pattern(name, item.lower()):
            if negated:
                return False
            positive = True
    return positive


def _lines(handle: IO[bytes], path: str) -> Iterator[Tuple[int, str]]:
    """(number, text) of each line, skipping (and never holding) overlong ones."""
    number = 0
    while True:
        raw = handle.readline(MAX_LINE + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            logger.debug("%s:%d: line longer than %d bytes skipped", path, number, MAX_LINE)
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(MAX_LINE + 1)
            continue
        yield number, raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _parse(text: str, name: str, path: str, number: int) -> Optional[KnownKey]:
    """The key on this line if it is about ``name``; None for any other line."""
    fields = text.split()
    if not fields or fields[0].startswith("#"):
        return None
    marker = ""
    if fields[0].startswith("@"):
        marker = _MARKERS.get(fields[0], "?")
        fields = fields[1:]
        if marker == "?" or (fields and fields[0].startswith("@")):
            logger.debug("%s:%d: invalid marker, line ignored", path, number)
            return None
    if len(fields) < 3:
        return None
    patterns, key_type, blob = fields[0], fields[1], fields[2]
    hashed = patterns.startswith("|")
    if not (_matches_hashed(name, patterns) if hashed else _matches_patterns(name, patterns)):
        return None
    try:
        key = paramiko.PKey.from_type_string(key_type, base64.b64decode(blob, validate=True))
    except (binascii.Error, ValueError, paramiko.SSHException,
            UnknownKeyType) as exc:
        logger.debug("%s:%d: %s key not usable (%s), line ignored", path, number, key_type, exc)
        return None
    return KnownKey(key, marker, path, number)


def _read(path: str, name: str, into: HostEntries) -> None:
    if path == os.devnull:  # the usual way to say "no file"
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return
    except OSError as exc:
        logger.warning("skipping known_hosts file %s: %s", path, exc.strerror)
        return
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            logger.warning("skipping known_hosts file %s: not a regular file", path)
            return
        for number, text in _lines(handle, path):
            entry = _parse(text, name, path, number)
            if entry is None:
                continue
            if entry.marker == "revoked":
                into.revoked.append(entry)
            elif entry.marker == "cert-authority":
                into.authorities.append(entry)
            else:
                into.keys.append(entry)


def lookup(paths: Sequence[str], name: str) -> HostEntries:
    """Everything ``paths`` (known_hosts files, ``~`` expanded, missing ones
    skipped) record for ``name`` (``host`` or ``[host]:port``; lowered, as ssh
    lowers the host name before it looks it up or hashes it)."""
    name = name.lower()
    entries = HostEntries()
    for path in paths:
        _read(os.path.expanduser(path), name, entries)
    return entries
