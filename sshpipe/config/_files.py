"""Reading config files the way ssh opens them, with stated bounds.

ssh ``fopen()``s a config file, ``fstat()``s it and, for included files and
the default ``~/.ssh/config``, refuses one with a bad owner or mode before
reading a byte.  sshpipe does the same and adds what ssh lacks, so that no
input can hang or exhaust the caller:

- the file is opened with ``O_NONBLOCK``: a FIFO never blocks the open (ssh
  would wait for a writer forever);
- anything but a regular file or a directory is refused before reading
  (``/dev/zero``, a FIFO, a device, a socket), with a typed error naming the
  file, and the Include line that named it;
- a directory reads as an empty file, as ``fopen()`` + ``getline()`` give,
  and so does ``/dev/null`` (``ssh -F /dev/null`` is the usual "no config");
- a file larger than :data:`MAX_CONFIG_BYTES` is refused.

``Include`` patterns expand like ``glob(3)`` with ``GLOB_TILDE`` (``~`` is
``$HOME``, ``~user`` comes from the accounts database), relative paths
living in ``~/.ssh``; the matches are sorted.
"""
from __future__ import annotations

import errno
import glob as _glob
import os
import stat
from typing import List, Mapping, Optional

from sshpipe.config._accounts import Accounts, secure_permissions
from sshpipe.errors import ConfigFileNotFoundError, SSHConfigError

__all__ = ["MAX_CONFIG_BYTES", "read_config_file", "include_paths", "ConfigFileNotFoundError"]

#: Largest config file (main or included) sshpipe reads: 16 MiB.  Real
#: configs are kilobytes; ssh has no bound and would read /dev/zero forever.
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def read_config_file(path: str, *, check_perm: bool, accounts: Accounts,
                     uid: Optional[int] = None, encoding: str = "utf-8",
                     where: Optional[str] = None, line: Optional[int] = None) -> Optional[str]:
    """The text of config file ``path``, or None when it does not exist.

    ``check_perm`` applies ssh's owner/mode rule (included files and the
    default ``~/.ssh/config``).  ``where``/``line`` name the Include line that
    named the file: errors are reported there, as ssh reports them.

    Raises:
        SSHConfigError: bad owner or permissions, not a regular file, larger
            than MAX_CONFIG_BYTES, or unreadable (ELOOP, ENXIO, EACCES ...).
    """
    if uid is None:
        uid = os.getuid()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            return None
        raise SSHConfigError(f"Can't open user config file {path}: "
                             f"{os.strerror(exc.errno or 0)}", where, line) from None
    try:
        st = os.fstat(fd)
        if check_perm and not secure_permissions(st, uid, accounts):
            raise SSHConfigError(f"Bad owner or permissions on {path}", where, line)
        if stat.S_ISDIR(st.st_mode) or _is_devnull(st):
            return ""           # ``ssh -F /dev/null``: the usual "no config"
        if not stat.S_ISREG(st.st_mode):
            raise SSHConfigError(f"{path} is not a regular file (refused before reading)",
                                 where, line)
        if st.st_size > MAX_CONFIG_BYTES:
            raise SSHConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes", where, line)
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_CONFIG_BYTES:
                raise SSHConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes",
                                     where, line)
            chunks.append(chunk)
    except OSError as exc:
        raise SSHConfigError(f"Can't read user config file {path}: "
                             f"{os.strerror(exc.errno or 0)}", where, line) from None
    finally:
        os.close(fd)
    return b"".join(chunks).decode(encoding, errors="surrogateescape")


def _is_devnull(st: os.stat_result) -> bool:
    if not stat.S_ISCHR(st.st_mode):
        return False
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return st.st_rdev == null.st_rdev


def _tilde(pattern: str, environ: Mapping[str, str], home: str, accounts: Accounts) -> str:
    """glob(3)'s GLOB_TILDE: ``~`` is $HOME (else the home of the user), ``~user`` looked up."""
    if not pattern.startswith("~"):
        return pattern
    name, slash, rest = pattern[1:].partition("/")
    if name == "":
        base = environ.get("HOME") or home
    else:
        pw = accounts.by_name(name)
        if pw is None:
            return pattern          # left as typed: matches nothing
        base = pw.home
    if not slash:
        return base
    return base.rstrip("/") + "/" + rest if base != "/" else "/" + rest


def include_paths(arg: str, home: str, accounts: Accounts,
                  environ: Optional[Mapping[str, str]] = None) -> List[str]:
    """The files one (already token-expanded) Include word names, sorted."""
    if not arg.startswith("/") and not arg.startswith("~"):
        arg = "~/.ssh/" + arg
    arg = _tilde(arg, environ if environ is not None else {"HOME": home}, home, accounts)
    if not _glob.has_magic(arg):
        return [arg] if os.path.lexists(arg) else []
    return sorted(_glob.glob(arg))
