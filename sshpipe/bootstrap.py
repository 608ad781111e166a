"""Zero-install agents: the loader and the bundle it receives over the channel.

A remote host needs nothing but Python 3.9+. The remote command is
``exec python3 -c LOADER`` (quoted), where LOADER (:data:`LOADER_SOURCE`) is a
short stdlib-only script. The caller's side (the SSHPipe child) then talks to it:

::

    child                                         loader (remote python -c)
    {"hash": H, "cache": dir}\\n    ---------->
                                   <----------   LOADER_SYNC {"need": bool, "python": v}\\n
    (if need) size\\n + zip bytes   ---------->   verify hash, unpack into the cache
    {"mode": ..., "size": n}\\n      ---------->
    n bytes (handler or script)    ---------->   sys.path += bundle; run the agent
                                   <----------   SYNC, HELLO ... (sshpipe.protocol)

After the launch line the loader forks: the child runs the agent, the parent
stays as a small supervisor that waits for it, then ends the whole process
group (what the agent started dies with it, however the agent ended) and exits
with the agent's status, or 128+N when a signal N killed it (the SSH
``exit-signal`` message never reaches paramiko, an exit status does).

The bundle is a zip of the agent's own modules (stdlib-only parts of sshpipe),
dill, and any modules the caller names. Its hash (:func:`tree_hash`) is taken
over file names and contents, so the caller can compute it from its sources and
the loader from the unpacked files. The remote keeps bundles in
``$XDG_CACHE_HOME/sshpipe`` (default ``~/.cache/sshpipe``), created with mode
0700 and used only if owned by the user and not writable by others; a cached
bundle is re-hashed before every use, so a warm start sends only the hash and a
tampered cache is rebuilt, never trusted.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import os
import shlex
import zipfile
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = ["Bundle", "LOADER_SOURCE", "LOADER_SYNC", "build_bundle", "loader_command",
           "remote_command", "tree_hash"]

# Written by the loader before its JSON status line; like protocol.SYNC it lets the
# child skip whatever a login shell printed first.
LOADER_SYNC = b"\x00\x01sshpipe-loader-1\x01\x00"

# The agent's own modules: stdlib-only, so they run wherever Python does.
AGENT_MODULES = ("__init__.py", "_lazy.py", "_logwire.py", "_supervisor.py", "errors.py",
                 "protocol.py", "agent.py", "handler.py", "serial.py", "_zygote.py",
                 "_zygote_client.py")

_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: same sources, same bytes


def tree_hash(files: Iterable[Tuple[str, bytes]]) -> str:
    """sha256 over (relative path, content) pairs in path order."""
    digest = hashlib.sha256()
    for name, data in sorted(files):
        digest.update(name.encode("utf-8") + b"\0" + str(len(data)).encode() + b"\0")
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A zip of source files (and of code compiled from them, where the caller's
    interpreter had it) and its tree hash; ``files`` counts the sources."""

    data: bytes
    digest: str
    files: int

    @property
    def size(self) -> int:
        return len(self.data)


def _package_files(directory: str, prefix: str) -> List[Tuple[str, str]]:
    found = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "tests"))
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                found.append((prefix + os.path.relpath(path, directory).replace(os.sep, "/"),
                              path))
    return found


def _module_files(name: str) -> List[Tuple[str, str]]:
    """Source files of module or package ``name``, as (path in bundle, local path)."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ValueError(f"module {name!r} cannot be found locally, so it cannot be shipped")
    top = name.replace(".", "/")
    if spec.submodule_search_locations:
        # A package, regular or namespace (no __init__.py, no origin): every
        # directory that makes it up is shipped.
        found: List[Tuple[str, str]] = []
        for directory in spec.submodule_search_locations:
            found += _package_files(directory, top + "/")
        return found
    if spec.origin is None:
        raise ValueError(f"module {name!r} has no source file, so it cannot be shipped")
    if not spec.origin.endswith(".py"):
        raise ValueError(f"module {name!r} is not pure Python ({spec.origin}); install it "
                         f"on the remote instead")
    return [(top + ".py", spec.origin)]


# Where the bundle keeps code objects compiled by the caller's interpreter (its
# own up-to-date .pyc files), for a remote Python with the same bytecode: such a
# remote imports them instead of compiling the sources (verified like them).
CODE_PREFIX = "__code__/%s/" % importlib.util.MAGIC_NUMBER.hex()


def _compiled(path: str, source: bytes) -> Optional[bytes]:
    """The marshalled code of ``source`` from this interpreter's own .pyc of
    ``path``, if that is up to date (checked as the import system checks it);
    None otherwise. Never compiled here: the same files must give the same bundle,
    and so the same hash, in every caller process, and marshal's output can
    differ from one compilation to the next."""
    try:
        with open(importlib.util.cache_from_source(path, optimization=""), "rb") as pyc:
            data = pyc.read()
        st = os.stat(path)
    except (OSError, NotImplementedError, ValueError):
        return None
    if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
        return None
    if int.from_bytes(data[4:8], "little") == 0:  # a timestamp pyc
        if (int.from_bytes(data[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
                or int.from_bytes(data[12:16], "little") != len(source) & 0xFFFFFFFF):
            return None
    elif data[8:16] != importlib.util.source_hash(source):
        return None
    return data[16:]


@functools.lru_cache(maxsize=16)
def build_bundle(modules: Sequence[str] = ()) -> Bundle:
    """The bundle for an agent plus ``modules`` (names of local modules/packages).

    Cached per process: sources are read and zipped once.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    entries: Dict[str, str] = {f"sshpipe/{name}": os.path.join(here, name)
                               for name in AGENT_MODULES}
    for name in ("dill",) + tuple(modules):
        for arcname, path in _module_files(name):
            entries.setdefault(arcname, path)
    contents = []
    for arcname in sorted(entries):
        with open(entries[arcname], "rb") as source:
            contents.append((arcname, source.read()))
    sources = len(contents)
    for arcname, data in contents[:sources]:
        code = _compiled(entries[arcname], data)
        if code is not None:
            contents.append((CODE_PREFIX + arcname, code))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in contents:
            info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            archive.writestr(info, data)
    return Bundle(buffer.getvalue(), tree_hash(contents), sources)


# The loader runs with ``python -c``. It must stay small (it travels on the command
# line), stdlib-only, and parse on old Pythons well enough to say they are too old.
# What it imports from the bundle it takes from the verified bytes in memory.
LOADER_SOURCE = r'''
import hashlib, io, json, marshal, os, sys, zipfile
from importlib.machinery import ModuleSpec
from importlib.util import MAGIC_NUMBER
try:
    from _imp import _fix_co_filename as fix
except ImportError:
    fix = None
P = "__code__/" + MAGIC_NUMBER.hex() + "/"
um = os.umask(0o077)
u = os.getuid()
def rd(n):
    b = b""
    while len(b) < n:
        c = os.read(0, n - len(b))
        if not c:
            sys.exit(1)
        b += c
    return b
def line():
    b = b""
    while not b.endswith(b"\n"):
        b += rd(1)
    return json.loads(b.decode())
def say(d):
    os.write(1, SYNC + json.dumps(d).encode() + b"\n")
def th(files):
    h = hashlib.sha256()
    for n, d in sorted(files):
        h.update(n.encode() + b"\0" + str(len(d)).encode() + b"\0")
        h.update(d)
    return h.hexdigest()
def safe(p):
    # StrictModes: p and every parent a directory of root or the user that nobody
    # else can write, except a root-owned sticky one (/tmp): others cannot rename
    # what is in it
    while True:
        st = os.stat(p)
        if (not os.path.isdir(p) or st.st_uid not in (0, u)
                or st.st_mode & 0o022 and not (st.st_uid == 0 and st.st_mode & 0o1000)):
            return False
        if p == os.path.dirname(p):
            return True
        p = os.path.dirname(p)
def private(c):
    try:
        p = c
        while not os.path.lexists(p):
            p = os.path.dirname(p)
        if not safe(os.path.realpath(p)):
            return None
        os.makedirs(c, 0o700, exist_ok=True)
        c = os.path.realpath(c)
        st = os.stat(c)
        if st.st_uid == u and not st.st_mode & 0o077 and safe(c):
            return c
    except OSError:
        pass
def unzip(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        n = z.namelist()
        if len(set(n)) == len(n):
            return dict((k, z.read(k)) for k in n)
def cached(p):
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if st.st_uid == u and not st.st_mode & 0o022 and os.path.isfile(p):
                return unzip(f.read())
    except Exception:
        pass
def store(root, name, data):
    # write-then-rename; a file left by a failed write is removed, one left by a
    # writer that was killed an hour later, a bundle unused for 30 days then too
    import time
    t = os.path.join(root, ".tmp-%d-%s" % (os.getpid(), name))
    try:
        for n in os.listdir(root):
            q = os.path.join(root, n)
            age = time.time() - os.lstat(q).st_mtime
            if n.startswith(".tmp-") and age > 3600 or n.endswith(".zip") and age > 2592000:
                os.unlink(q)
        fd = os.open(t, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.rename(t, os.path.join(root, name))
        except BaseException:
            os.unlink(t)
            raise
        return os.path.join(root, name)
    except OSError as e:
        sys.stderr.write("sshpipe loader: bundle not cached in %s (%s); the agent runs it "
                         "from memory, processes it starts cannot import it\n" % (root, e))
class Bundle:
    # imports the bundle's modules from the verified bytes, never from a file
    @classmethod
    def find_spec(c, name, path=None, target=None):
        n = name.replace(".", "/")
        for k, p in ((n + "/__init__.py", True), (n + ".py", False)):
            if k in F:
                s = ModuleSpec(name, c, origin=R + "/" + k, is_package=p)
                s.has_location = True
                return s
        if any(k.startswith(n + "/") for k in F):
            return ModuleSpec(name, c, is_package=True)
    @staticmethod
    def create_module(spec):
        return None
    @staticmethod
    def exec_module(m):
        # the caller's compiled code if it is for this bytecode, else the source
        o = m.__spec__.origin
        if o:
            c = F.get(P + o[len(R) + 1:])
            if c is None:
                c = compile(F[o[len(R) + 1:]], o, "exec", dont_inherit=True)
            else:
                c = marshal.loads(c)
                if fix:
                    fix(c, o)
            exec(c, m.__dict__)
    @classmethod
    def get_source(c, name):
        s = c.find_spec(name)
        return F[s.origin[len(R) + 1:]].decode("utf-8") if s and s.origin else None
if len(sys.argv) > 1:
    # from the warm-start client, which read the line and found no zygote to take it
    req = json.loads(sys.argv[1])
    why = sys.argv[2] if len(sys.argv) > 2 else ""
    del sys.argv[1:]
else:
    req = line()
    why = None
H = req["hash"]
v = "%d.%d.%d" % sys.version_info[:3]
if sys.version_info < (3, 9):
    say({"need": False, "python": v,
         "error": "Python %s is too old: sshpipe needs 3.9 or newer" % v})
    sys.exit(3)
base = os.environ.get("XDG_CACHE_HOME", "")
if not os.path.isabs(base):
    base = os.path.join(os.path.expanduser("~"), ".cache")
cache = private(os.path.join(base, "sshpipe"))
scratch = None
if cache is None:
    import tempfile
    if safe(tempfile.gettempdir()):
        cache = scratch = tempfile.mkdtemp(prefix="sshpipe-")
path = os.path.join(cache, H + ".zip") if cache else None
F = cached(path) if path else None
ok = F is not None and th(F.items()) == H
if ok:
    try:
        os.utime(path)  # in use: not to be evicted
    except OSError:
        pass
say({"need": not ok, "python": v, "cache": cache, "start": "cold", "warm": why})
if not ok:
    data = rd(int(line()["size"]))
    F = unzip(data)
    if F is None or th(F.items()) != H:
        sys.stderr.write("sshpipe loader: bundle hash mismatch\n")
        sys.exit(4)
    path = store(cache, H + ".zip", data) if cache else None
R = path or "<sshpipe bundle %s>" % H[:12]
sys.meta_path.insert(0, Bundle)
if path:
    sys.path.insert(0, path)
launch = line()
body = rd(launch["size"])
if why and why.startswith("no zygote") and req.get("zygote") and not scratch:
    # for the next session: a fork of this loader, the bundle verified in memory
    try:
        from sshpipe import _zygote
        _zygote.spawn(req, H, cache, {"say": say, "line": line, "rd": rd}, um)
    except Exception as e:
        sys.stderr.write("sshpipe loader: no zygote started (%r)\n" % (e,))
from sshpipe import _supervisor
_supervisor.run(launch, body, um, scratch)
'''.replace("SYNC +", repr(LOADER_SYNC) + " +", 1)


def _client_source() -> str:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_zygote_client.py"),
              encoding="utf-8") as source:
        return source.read()


# The warm-start client (:mod:`sshpipe._zygote_client`), run as ``python -S -c``.
CLIENT_SOURCE = _client_source()


def loader_command(python: str, *, exec_only: bool = False, warm: bool = False) -> List[str]:
    """The remote words that start the loader with interpreter ``python``.

    ``exec_only``: the agent is a program the loader execs (a raw ``command``),
    so the loader's interpreter skips ``site`` (``-S``): it needs only the stdlib,
    and the program starts its own interpreter with its own site-packages.
    ``warm`` (not with ``exec_only``): first the warm-start client, which asks
    the host's zygote for a forked agent and execs this loader when none takes
    the session (see :mod:`sshpipe._zygote`).
    """
    if exec_only:
        return [python, "-S", "-c", LOADER_SOURCE]
    if warm:
        return [python, "-S", "-c", CLIENT_SOURCE, python, LOADER_SOURCE]
    return [python, "-c", LOADER_SOURCE]


# Longest loader status line accepted (it is a few dozen bytes of JSON).
STATUS_LINE_MAX = 64 * 1024


def loader_status(host: str, line: bytes) -> Dict[str, object]:
    """The loader's status line (after LOADER_SYNC) as a dict, or HandshakeError
    naming ``host``; both transports' callers read it through this."""
    from sshpipe.errors import HandshakeError

    try:
        status = json.loads(line.decode("utf-8"))
        if not isinstance(status, dict):
            raise ValueError("not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise HandshakeError(f"{host}: the loader's status line is not valid: "
                             f"{exc}; it read {line[:200]!r}") from None
    return status


def remote_command(argv: Sequence[str], *, cwd: Optional[str] = None,
                   env: Optional[Mapping[str, str]] = None) -> str:
    """The shell line that runs ``argv`` on the remote.

    Every word is quoted, so names and paths with spaces or shell metacharacters
    reach the remote program unchanged; ``exec`` replaces the login shell, so the
    program is the session's process (its process group leader) and sees the
    channel's end of input directly.
    """
    if not argv:
        raise ValueError("the remote command is empty")
    for key in env or {}:
        if not key or "=" in key or not (key[0].isalpha() or key[0] == "_") or not all(
                ch.isalnum() or ch == "_" for ch in key):
            raise ValueError(f"not a valid environment variable name: {key!r}")
    words = list(argv)
    if env:
        words = ["env"] + [f"{key}={value}" for key, value in env.items()] + words
    line = "exec " + " ".join(shlex.quote(word) for word in words)
    if cwd:
        line = f"cd {shlex.quote(cwd)} && {line}"
    return line
