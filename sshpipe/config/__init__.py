"""OpenSSH client configuration: lossless parse, ``ssh -G`` resolution, safe edits.

::

    text ──_lexer──> Lines (exact text + keyword/args/offsets)
                       │                     ▲
                  _compile                 _edit (changes only the lines it must)
                       ▼                     │
                 Blocks (typed, checked) ── SSHConfig ── dumps() == original text
                       │
                   _resolve  (passes, Include, Match, tokens, defaults)
                       ▼
                 dict as ``ssh -G`` prints it

Public API: :func:`load`, :func:`loads`, :func:`dump`, :func:`dumps` and
:class:`SSHConfig`; errors are :class:`sshpipe.errors.SSHConfigError`.
"""
from __future__ import annotations

import io
import os
import tempfile
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from sshpipe.config._compile import (
    OP_FIRST, OP_INCLUDE, OP_UNKNOWN, CompiledFile, Problem, compile_lines,
)
from sshpipe.config._lexer import Line, lex
from sshpipe.config._options import KEYWORDS, LIST_KEYS
from sshpipe.config._patterns import PatternList
from sshpipe.config._resolve import MAX_INCLUDE_DEPTH, Resolver, include_paths
from sshpipe.config._tokens import expand_for_connect, local_context
from sshpipe.errors import SSHConfigError

__all__ = ["SSHConfig", "load", "loads", "dump", "dumps", "LIST_KEYS", "expand_for_connect",
           "write_atomic"]

DEFAULT_PATH = "~/.ssh/config"

PathOrFile = Union[str, "os.PathLike[str]", IO[str], IO[bytes]]


class SSHConfig:
    """One OpenSSH client config file, kept byte for byte, resolvable per host.

    Build it with :func:`load` or :func:`loads`.  The text is kept as lines;
    :meth:`resolve` gives what ``ssh -G`` would print for a host, and the
    edit methods change only the lines they must.
    """

    def __init__(self, text: str = "", path: Optional[str] = None, encoding: str = "utf-8",
                 home: Optional[str] = None):
        self.path = path
        self.encoding = encoding
        # home used for Include paths when checking the file; resolve() takes its own
        self.home = home
        self._lines: List[Line] = lex(text)
        self._compiled: Optional[CompiledFile] = None
        self._include_cache: Dict[str, Tuple[float, CompiledFile]] = {}

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
        self._compiled = None

    @property
    def compiled(self) -> CompiledFile:
        if self._compiled is None:
            self._compiled = compile_lines(self._lines, self.path)
        return self._compiled

    # ------------------------------------------------------------ checks
    def validate(self, *, home: Optional[str] = None) -> List[SSHConfigError]:
        """Every problem OpenSSH would reject in this file and its Includes.

        Returns a (possibly empty) list of :class:`SSHConfigError` in reading
        order (an included file's problems at its Include line) instead of
        stopping at the first one.  An unknown keyword counts unless an
        IgnoreUnknown read before it covers it; whether that IgnoreUnknown
        applies to a given host is checked again by :meth:`resolve`.
        """
        if home is None:
            home = self.home if self.home is not None else local_context().home
        seen: List[PatternList] = []
        problems = self._walk(self.compiled, home, 0, seen, set())
        return [SSHConfigError(p.reason, p.path, p.line) for p in problems]

    def _walk(self, cf: CompiledFile, home: str, depth: int, seen: List[PatternList],
              visited: set) -> List[Problem]:
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
                        for path in include_paths(arg, home):
                            if depth + 1 > MAX_INCLUDE_DEPTH:
                                entries.append((it[2], [Problem(
                                    "Too many recursive configuration includes", cf.path, it[2])]))
                                return _flatten(entries)
                            try:
                                sub = self._load_include(path, check=False)
                            except (FileNotFoundError, IsADirectoryError):
                                continue
                            found = self._walk(sub, home, depth + 1, seen, visited)
                            entries.append((it[2], found))
                            if found and found[-1].reason.startswith("Too many recursive"):
                                return _flatten(entries)
        return _flatten(entries)

    def _check(self) -> None:
        errors = self.validate()
        if errors:
            raise errors[0]

    def _load_include(self, path: str, check: bool = True) -> CompiledFile:
        st = os.stat(path)
        cached = self._include_cache.get(path)
        if cached is not None and cached[0] == st.st_mtime_ns:
            cf = cached[1]
        else:
            if os.path.isdir(path):
                raise IsADirectoryError(path)
            with open(path, encoding=self.encoding, errors="surrogateescape", newline="") as f:
                text = f.read()
            cf = compile_lines(lex(text), path)
            self._include_cache[path] = (st.st_mtime_ns, cf)
        if check:
            if (st.st_uid != 0 and st.st_uid != os.getuid()) or (st.st_mode & 0o022):
                raise SSHConfigError(f"Bad owner or permissions on {path}", path)
            hard = [p for p in cf.problems if p.keyword is None]
            if hard:
                raise SSHConfigError(hard[0].reason, hard[0].path, hard[0].line)
        return cf

    # ------------------------------------------------------------ resolution
    def resolve(self, host: str, *, user: Optional[str] = None, port: Optional[int] = None,
                local_user: Optional[str] = None, home: Optional[str] = None,
                local_hostname: Optional[str] = None, environ: Optional[Mapping[str, str]] = None,
                allow_exec: bool = False, local_addresses: Optional[Sequence[str]] = None,
                resolver: Any = None) -> Dict[str, Any]:
        """The settings ``ssh -G`` would print for ``host`` (OpenSSH 9.2).

        Args:
            host: the name as typed on the ssh command line.
            user, port: as ``ssh -l USER -p PORT``: they win over the file.
            local_user, home, local_hostname: the local facts ssh takes from
                the password database and ``gethostname()`` (defaults: this
                process's), used for ``%u``, ``%d``, ``~``, ``%l``/``%L``,
                ``Match localuser`` and Include paths.
            environ: variables for ``${NAME}`` (default: ``os.environ``).
            allow_exec: run ``Match exec`` commands; without it a Match exec
                that would run raises SSHConfigError.
            local_addresses: interface addresses for ``Match localnetwork``.
            resolver: callable(name) -> canonical name or None, used only
                when CanonicalizePermittedCNAMEs asks ssh to look names up.

        Returns:
            A dict keyed by lower-case canonical option names in ``ssh -G``
            order.  Values are strings exactly as ``ssh -G`` prints them
            (``"yes"``, ``"true"``, ``"3600"``, ``"none"``), except these
            keys, whose values are lists in order: identityfile,
            certificatefile, localforward, remoteforward, dynamicforward,
            sendenv, setenv, canonicaldomains, canonicalizepermittedcnames,
            globalknownhostsfile, userknownhostsfile, logverbose,
            permitremoteopen.  (``ssh -G`` prints the first seven one value
            per line, the others on one line.)

        Raises:
            SSHConfigError: for what ssh would refuse while reading or
            resolving (including an unknown keyword not covered by an
            active IgnoreUnknown, a bad Include, a Match exec without
            ``allow_exec``).
        """
        ctx = local_context(local_user, home, local_hostname, environ)
        ctx.allow_exec = allow_exec
        ctx.local_addresses = local_addresses
        ctx.resolver = resolver
        cf = self.compiled
        hard = [p for p in cf.problems if p.keyword is None]
        if hard:
            raise SSHConfigError(hard[0].reason, hard[0].path, hard[0].line)
        return Resolver(cf, ctx, self._load_include).resolve(host, user, port)

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


def _flatten(entries: List[Tuple[int, List[Problem]]]) -> List[Problem]:
    out: List[Problem] = []
    for _, problems in sorted(entries, key=lambda e: e[0]):
        out.extend(problems)
    return out


# ---------------------------------------------------------------- module API
def loads(text: str, *, path: Optional[str] = None, home: Optional[str] = None) -> SSHConfig:
    """Parse config text; raises SSHConfigError for what OpenSSH rejects.

    ``home`` is where ``~`` and relative Include paths point while checking
    (default: the current user's home, as ssh uses).
    """
    config = SSHConfig(text, path=path, home=home)
    config._check()
    return config


def load(path_or_file: PathOrFile = DEFAULT_PATH, encoding: str = "utf-8", *,
         home: Optional[str] = None) -> SSHConfig:
    """Read a config file (default ``~/.ssh/config``) into an SSHConfig.

    A missing default file gives an empty config, as ssh treats it; a
    missing explicit path raises FileNotFoundError.  ``home`` is as for
    :func:`loads`.  Raises SSHConfigError for what OpenSSH rejects.
    """
    if hasattr(path_or_file, "read"):
        data = path_or_file.read()  # type: ignore[union-attr]
        if isinstance(data, bytes):
            data = data.decode(encoding, errors="surrogateescape")
        name = getattr(path_or_file, "name", None)
        config = SSHConfig(data, path=name if isinstance(name, str) else None, encoding=encoding,
                           home=home)
        config._check()
        return config
    raw = os.fspath(path_or_file)  # type: ignore[arg-type]
    path = os.path.expanduser(raw)
    try:
        with open(path, encoding=encoding, errors="surrogateescape", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        if raw == DEFAULT_PATH:
            return SSHConfig("", path=path, encoding=encoding, home=home)
        raise
    config = SSHConfig(text, path=path, encoding=encoding, home=home)
    config._check()
    return config


def dumps(config: SSHConfig) -> str:
    """The config's text; byte-identical to what was loaded, plus edits."""
    return str(config)


def dump(config: SSHConfig, path_or_file: PathOrFile) -> None:
    """Write the config's text to a path or an open (text or binary) file.

    A path is replaced atomically (see :func:`write_atomic`), keeping its mode.
    """
    text = str(config)
    if hasattr(path_or_file, "write"):
        if isinstance(path_or_file, (io.RawIOBase, io.BufferedIOBase)) or "b" in getattr(path_or_file, "mode", ""):
            path_or_file.write(text.encode(config.encoding, errors="surrogateescape"))  # type: ignore[union-attr]
        else:
            path_or_file.write(text)  # type: ignore[union-attr]
        return
    write_atomic(os.fspath(path_or_file), text, config.encoding)  # type: ignore[arg-type]


def write_atomic(path: str, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically, keeping its permission bits."""
    path = os.path.expanduser(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o600
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
