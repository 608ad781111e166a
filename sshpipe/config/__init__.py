"""OpenSSH client configuration: lossless parse, ``ssh -G`` resolution, safe edits.

::

    text ──_lexer──> Lines (exact text + keyword/args/offsets)
                       │                     ▲
                  _compile (per release)   _edit (changes only the lines it must)
                       ▼                     │
                 Blocks (typed, checked) ── SSHConfig ── dumps() == original text
                       │
                   _resolve  (passes, Include via _files, Match via _match,
                       │      host name via _canon)
                   _dump     (defaults, expansions, ``ssh -G`` layout)
                       ▼
                 dict as ``ssh -G`` prints it

Which OpenSSH to follow is ``openssh=`` ("9.2", "9.9", "10.0" or "auto",
see :mod:`._versions`).  Local facts (user, home, host name, environment,
accounts, name resolution) are the resolution's context (:mod:`._context`).

Public API: :func:`load`, :func:`loads`, :func:`dump`, :func:`dumps` and
:class:`SSHConfig`; errors are :class:`sshpipe.errors.SSHConfigError`.
"""
from __future__ import annotations

import io
import os
import tempfile
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union, cast

from sshpipe.config._accounts import Accounts, Passwd, StaticAccounts, SystemAccounts
from sshpipe.config._compile import (
    OP_FIRST, OP_INCLUDE, OP_UNKNOWN, CompiledFile, Problem, compile_lines,
)
from sshpipe.config._context import Resolver as NameResolver
from sshpipe.config._context import local_context
from sshpipe.config._dump import format_dump
from sshpipe.config._files import (
    MAX_CONFIG_BYTES, ConfigFileNotFoundError, include_paths, read_config_file,
)
from sshpipe.config._lexer import Line, lex
from sshpipe.config._options import KEYWORDS, LIST_KEYS
from sshpipe.config._patterns import PatternList
from sshpipe.config._resolve import MAX_INCLUDE_DEPTH, Resolver
from sshpipe.config._tokens import expand_for_connect, expand_tokens
from sshpipe.config._values import BadValue
from sshpipe.config._versions import SUPPORTED, OpenSSH, get_version
from sshpipe.errors import SSHConfigError

__all__ = ["SSHConfig", "load", "loads", "dump", "dumps", "LIST_KEYS", "expand_for_connect",
           "write_atomic", "format_dump", "ConfigFileNotFoundError", "SSHConfigError",
           "Accounts", "StaticAccounts", "SystemAccounts", "MAX_CONFIG_BYTES",
           "MAX_INCLUDE_DEPTH", "SUPPORTED", "Line", "Passwd"]

DEFAULT_PATH = "~/.ssh/config"

PathOrFile = Union[str, "os.PathLike[str]", IO[str], IO[bytes]]
Version = Union[str, OpenSSH, None]


class SSHConfig:
    """One OpenSSH client config file, kept byte for byte, resolvable per host.

    Build it with :func:`load` or :func:`loads`.  The text is kept as lines;
    :meth:`resolve` gives what ``ssh -G`` would print for a host, and the
    edit methods change only the lines they must.  ``openssh`` is the
    release resolutions and checks follow unless a call names another.
    """

    def __init__(self, text: str = "", path: Optional[str] = None, encoding: str = "utf-8",
                 home: Optional[str] = None, *, openssh: Version = "auto",
                 accounts: Optional[Accounts] = None):
        self.path = path
        self.encoding = encoding
        # home used for Include paths when checking the file; resolve() takes its own
        self.home = home
        self.openssh = openssh
        self.accounts = accounts
        self._lines: List[Line] = lex(text)
        self._compiled: Dict[OpenSSH, CompiledFile] = {}
        self._include_cache: Dict[Tuple[str, OpenSSH], Tuple[Tuple[int, int, int],
                                                              CompiledFile]] = {}

    # ------------------------------------------------------------ text
    def __str__(self) -> str:
        return "".join(line.text for line in self._lines)

    def __repr__(self) -> str:
        return f"<SSHConfig path={self.path!r} lines={len(self._lines)}>"

    @property
    def lines(self) -> List[Line]:
        """The lexed lines (read-only use; edit through the methods)."""
        return self._lines

    def _set_text(self, text: str) -> None:
        self._lines = lex(text)
        self._compiled = {}

    def _compiled_for(self, openssh: Version = None) -> CompiledFile:
        """This file compiled for ``openssh`` (default: the config's own)."""
        version = get_version(self.openssh if openssh is None else openssh)
        cf = self._compiled.get(version)
        if cf is None:
            cf = self._compiled[version] = compile_lines(self._lines, self.path, version)
        return cf

    # ------------------------------------------------------------ checks
    def validate(self, *, home: Optional[str] = None, openssh: Version = None,
                 accounts: Optional[Accounts] = None) -> List[SSHConfigError]:
        """Every problem OpenSSH would reject in this file and its Includes.

        Returns a (possibly empty) list of :class:`SSHConfigError` in reading
        order (an included file's problems at its Include line) instead of
        stopping at the first one.  Included files are opened as ssh opens
        them: a bad owner or mode, a file that is not regular (a FIFO, a
        device) or one larger than MAX_CONFIG_BYTES is a problem at the
        Include line.  An unknown keyword counts unless an IgnoreUnknown read
        before it covers it; whether that IgnoreUnknown applies to a given
        host is checked again by :meth:`resolve`.
        """
        if home is None:
            home = self.home if self.home is not None else local_context().home
        version = get_version(self.openssh if openssh is None else openssh)
        accounts = accounts or self.accounts or SystemAccounts()
        seen: List[PatternList] = []
        problems = self._walk(self._compiled_for(version), home, 0, seen, set(), version,
                              accounts)
        return [SSHConfigError(p.reason, p.path, p.line) for p in problems]

    def _walk(self, cf: CompiledFile, home: str, depth: int, seen: List[PatternList],
              visited: Set[Optional[str]], version: OpenSSH,
              accounts: Accounts) -> List[Problem]:
        entries: List[Tuple[int, List[Problem]]] = []
        for p in cf.problems:
            if p.keyword is None and cf.path not in visited:
                entries.append((p.line or 0, [p]))
        visited.add(cf.path)
        for block in cf.blocks:
            for it in block.items:
                op = it[0]
                if op == OP_FIRST and it[1] == "ignoreunknown":
                    seen.append(PatternList(it[2], lower=True))
                elif op == OP_UNKNOWN:
                    if not any(pl.match(it[1]) == 1 for pl in seen):
                        entries.append((it[2], [Problem(f"Bad configuration option: {it[1]}",
                                                        cf.path, it[2])]))
                elif op == OP_INCLUDE:
                    for arg in it[1]:
                        arg = _static_include_word(arg, version)
                        if arg is None:
                            continue
                        for path in include_paths(arg, home, accounts, {"HOME": home}):
                            if depth + 1 > MAX_INCLUDE_DEPTH:
                                entries.append((it[2], [Problem(
                                    "Too many recursive configuration includes", cf.path, it[2])]))
                                return _flatten(entries)
                            try:
                                sub = self._load_include(path, version, accounts, os.getuid(),
                                                         cf, it[2], check_problems=False)
                            except SSHConfigError as exc:
                                entries.append((it[2], [Problem(exc.reason, exc.path, exc.line)]))
                                continue
                            if sub is None:
                                continue
                            found = self._walk(sub, home, depth + 1, seen, visited, version,
                                               accounts)
                            entries.append((it[2], found))
                            if found and found[-1].reason.startswith("Too many recursive"):
                                return _flatten(entries)
        return _flatten(entries)

    def _check(self) -> None:
        errors = self.validate()
        if errors:
            raise errors[0]

    def _load_include(self, path: str, version: OpenSSH, accounts: Accounts, uid: int,
                      parent: CompiledFile, lineno: int,
                      check_problems: bool = True) -> Optional[CompiledFile]:
        """An included file, compiled (cached by identity and mtime), as ssh opens it."""
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SSHConfigError(f"Can't open user config file {path}: "
                                 f"{os.strerror(exc.errno or 0)}", parent.path, lineno) from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._include_cache.get((path, version))
        if cached is not None and cached[0] == stamp:
            from sshpipe.config._accounts import secure_permissions
            if not secure_permissions(st, uid, accounts):
                raise SSHConfigError(f"Bad owner or permissions on {path}", parent.path, lineno)
            cf = cached[1]
        else:
            text = read_config_file(path, check_perm=True, accounts=accounts, uid=uid,
                                    encoding=self.encoding, where=parent.path, line=lineno)
            if text is None:
                return None
            cf = compile_lines(lex(text), path, version)
            self._include_cache[(path, version)] = (stamp, cf)
        if check_problems:
            hard = [p for p in cf.problems if p.keyword is None]
            if hard:
                raise SSHConfigError(hard[0].reason, hard[0].path, hard[0].line)
        return cf

    # ------------------------------------------------------------ resolution
    def resolve(self, host: str, *, user: Optional[str] = None, port: Optional[int] = None,
                local_user: Optional[str] = None, home: Optional[str] = None,
                local_hostname: Optional[str] = None, environ: Optional[Mapping[str, str]] = None,
                allow_exec: bool = False, local_addresses: Optional[Sequence[str]] = None,
                resolver: Optional[NameResolver] = None, openssh: Version = None,
                accounts: Optional[Accounts] = None, command: Optional[str] = None,
                tag: Optional[str] = None, exec_timeout: float = 30.0) -> Dict[str, Any]:
        """The settings ``ssh -G`` would print for ``host``.

        Args:
            host: the destination as typed on the ssh command line (``name``,
                ``user@name`` or ``ssh://user@name:port``).
            user, port: as ``ssh -l USER -p PORT``: they win over the file.
            local_user, home, local_hostname: the local facts ssh takes from
                the password database and ``gethostname()`` (defaults: this
                process's), used for ``%u``, ``%d``, ``~``, ``%l``/``%L``,
                ``Match localuser`` and Include paths.
            environ: variables for ``${NAME}`` and ``Match exec`` (default:
                ``os.environ``).
            allow_exec: run ``Match exec`` commands (bounded by
                ``exec_timeout`` seconds); without it a Match exec that would
                run raises SSHConfigError.
            local_addresses: interface addresses for ``Match localnetwork``.
            resolver: the name-lookup seam for canonicalisation:
                ``resolver(name)`` (or ``resolver(name, family)``, family
                being AddressFamily's "any", "inet" or "inet6") returns None
                when the name does not resolve, else its canonical name (""
                for none).  Default: the system resolver, as ssh asks it.
            openssh: "9.2", "9.9", "10.0", "auto" (the ``ssh`` on PATH) or a
                release string; default: the config's own (``"auto"``).
            accounts: the password/group databases (``~user``, Debian's
                group-writable rule); default: this machine's.
            command, tag: what ``ssh HOST COMMAND`` and ``ssh -P TAG`` give
                (``Match command``, ``sessiontype``, ``tagged``).

        Returns:
            A dict keyed by lower-case canonical option names in ``ssh -G``
            order.  Values are strings exactly as ``ssh -G`` prints them
            (``"yes"``, ``"true"``, ``"3600"``, ``"none"``), except the keys
            in :data:`LIST_KEYS`, whose values are lists in order.

        Raises:
            SSHConfigError: for what ssh would refuse while reading or
            resolving (including an unknown keyword not covered by an
            active IgnoreUnknown, a bad or refused Include, a Match exec
            without ``allow_exec``, a name CanonicalizeFallbackLocal=no
            cannot resolve).
        """
        accounts = accounts or self.accounts or SystemAccounts()
        ctx = local_context(local_user, home, local_hostname, environ, accounts=accounts,
                            openssh=self.openssh if openssh is None else openssh)
        ctx.allow_exec = allow_exec
        ctx.local_addresses = local_addresses
        ctx.resolver = resolver
        ctx.command = command
        ctx.tag = tag
        ctx.exec_timeout = exec_timeout
        cf = self._compiled_for(ctx.version)
        hard = [p for p in cf.problems if p.keyword is None]
        if hard:
            raise SSHConfigError(hard[0].reason, hard[0].path, hard[0].line)
        version, uid = ctx.version, ctx.uid

        def loader(path: str, parent: CompiledFile, lineno: int) -> Optional[CompiledFile]:
            return self._load_include(path, version, accounts, uid, parent, lineno)

        return Resolver(cf, ctx, loader).resolve(host, user, port)

    def get(self, host: str, param: str, default: Any = None) -> Any:
        """One resolved value for ``host`` (``param`` is case-insensitive).

        Aliases are accepted (``IdentityFile2`` -> identityfile).  Returns
        ``default`` when ssh would print nothing for it.
        """
        key = param.lower()
        key = KEYWORDS.get(key, key)
        return self.resolve(host).get(key, default)

    def lookup(self, host: str, **kwargs: Any) -> Dict[str, Any]:
        """Alias of :meth:`resolve` (paramiko's name)."""
        return self.resolve(host, **kwargs)

    # ------------------------------------------------------------ edits
    def hosts(self) -> List[List[str]]:
        """The pattern lists of every Host line, in file order."""
        from sshpipe.config._edit import hosts
        return hosts(self)

    def add_host(self, patterns: Union[str, Sequence[str]], options: Mapping[str, Any], *,
                 before: Optional[str] = None) -> None:
        """Add a ``Host`` block (at the end, or before the block of ``before``)."""
        from sshpipe.config._edit import add_host
        add_host(self, patterns, options, before=before)

    def set(self, host: str, keyword: str, value: Any) -> None:
        """Set ``keyword`` in the Host block whose patterns are exactly ``host``."""
        from sshpipe.config._edit import set_option
        set_option(self, host, keyword, value)

    def unset(self, host: str, keyword: str) -> int:
        """Remove ``keyword`` lines from the Host block ``host``; returns how many."""
        from sshpipe.config._edit import unset_option
        return unset_option(self, host, keyword)

    def remove_host(self, host: str) -> None:
        """Remove the Host block ``host`` (its lines and nothing else)."""
        from sshpipe.config._edit import remove_host
        remove_host(self, host)


def _static_include_word(arg: str, version: OpenSSH) -> Optional[str]:
    """An Include word as far as it can be known without a host (for validate()).

    From 9.9 ssh expands %tokens and ${ENV} in Include paths with the host
    being resolved; a word that needs a host cannot be followed here.
    """
    if not version.include_expands_tokens:
        return arg
    if "%" in arg.replace("%%", ""):
        return None
    try:
        return expand_tokens(arg, {}, os.environ, "percent_dollar_expand")
    except BadValue:
        return None


def _flatten(entries: List[Tuple[int, List[Problem]]]) -> List[Problem]:
    out: List[Problem] = []
    for _, problems in sorted(entries, key=lambda e: e[0]):
        out.extend(problems)
    return out


# ---------------------------------------------------------------- module API
def loads(text: str, *, path: Optional[str] = None, home: Optional[str] = None,
          openssh: Version = "auto", accounts: Optional[Accounts] = None) -> SSHConfig:
    """Parse config text; raises SSHConfigError for what OpenSSH rejects.

    ``home`` is where ``~`` and relative Include paths point while checking
    (default: the current user's home, as ssh uses).  ``path`` names the
    text in error messages.
    """
    config = SSHConfig(text, path=path, home=home, openssh=openssh, accounts=accounts)
    config._check()
    return config


def load(path_or_file: PathOrFile = DEFAULT_PATH, encoding: str = "utf-8", *,
         home: Optional[str] = None, openssh: Version = "auto",
         accounts: Optional[Accounts] = None) -> SSHConfig:
    """Read a config file (default ``~/.ssh/config``) into an SSHConfig.

    As ssh: a missing default file gives an empty config, and the default
    file is refused with a bad owner or mode; a missing explicit path raises
    :class:`ConfigFileNotFoundError` (an SSHConfigError and a
    FileNotFoundError); a directory reads as empty.  Beyond ssh: a file that
    is not regular (a FIFO, a device) or larger than MAX_CONFIG_BYTES is
    refused before reading.  Raises SSHConfigError for what OpenSSH rejects.
    """
    if hasattr(path_or_file, "read"):
        data = path_or_file.read()
        if isinstance(data, bytes):
            data = data.decode(encoding, errors="surrogateescape")
        name = getattr(path_or_file, "name", None)
        config = SSHConfig(data, path=name if isinstance(name, str) else None, encoding=encoding,
                           home=home, openssh=openssh, accounts=accounts)
        config._check()
        return config
    raw = os.fspath(path_or_file)
    is_default = raw == DEFAULT_PATH
    path = os.path.expanduser(raw)
    text = read_config_file(path, check_perm=is_default, accounts=accounts or SystemAccounts(),
                            encoding=encoding, where=None, line=None)
    if text is None:
        if is_default:
            return SSHConfig("", path=path, encoding=encoding, home=home, openssh=openssh,
                             accounts=accounts)
        raise ConfigFileNotFoundError("Can't open user config file: No such file or directory",
                                      path)
    config = SSHConfig(text, path=path, encoding=encoding, home=home, openssh=openssh,
                       accounts=accounts)
    config._check()
    return config


def dumps(config: SSHConfig) -> str:
    """The config's text; byte-identical to what was loaded, plus edits."""
    return str(config)


def dump(config: SSHConfig, path_or_file: PathOrFile, *, makedirs: bool = False) -> None:
    """Write the config's text to a path or an open (text or binary) file.

    A path is replaced atomically (see :func:`write_atomic`), keeping its
    mode (0600 for a new file).  ``makedirs=True`` creates missing parent
    directories (mode 0700, as ``~/.ssh``); otherwise a missing directory
    raises FileNotFoundError.
    """
    text = str(config)
    if hasattr(path_or_file, "write"):
        if isinstance(path_or_file, (io.RawIOBase, io.BufferedIOBase)) or \
                "b" in getattr(path_or_file, "mode", ""):
            # a binary stream, by its class or its mode: IO[str] | IO[bytes] as typed
            binary = cast("IO[bytes]", path_or_file)
            binary.write(text.encode(config.encoding, errors="surrogateescape"))
        else:
            cast("IO[str]", path_or_file).write(text)
        return
    write_atomic(os.fspath(path_or_file), text, config.encoding, makedirs=makedirs)


def write_atomic(path: str, text: str, encoding: str = "utf-8", *, makedirs: bool = False) -> None:
    """Replace ``path`` with ``text`` atomically, keeping its permission bits."""
    path = os.path.expanduser(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o600
        if makedirs:
            os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sshpipe-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding=encoding, errors="surrogateescape", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
