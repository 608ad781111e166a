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
import os
import shlex
import zipfile
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = ["Bundle", "LOADER_SOURCE", "LOADER_SYNC", "build_bundle", "remote_command",
           "tree_hash"]

# Written by the loader before its JSON status line; like protocol.SYNC it lets the
# child skip whatever a login shell printed first.
LOADER_SYNC = b"\x00\x01sshpipe-loader-1\x01\x00"

# The agent's own modules: stdlib-only, so they run wherever Python does.
AGENT_MODULES = ("__init__.py", "_lazy.py", "errors.py", "protocol.py", "agent.py",
                 "handler.py", "serial.py")

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
    """A zip of source files and its tree hash."""

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
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in contents:
            info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            archive.writestr(info, data)
    return Bundle(buffer.getvalue(), tree_hash(contents), len(contents))


# The loader runs with ``python -c``. It must stay small (it travels on the command
# line), stdlib-only, and parse on old Pythons well enough to say they are too old.
LOADER_SOURCE = r'''
import hashlib, io, json, os, shutil, signal, sys, tempfile, zipfile
os.umask(0o077)
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
def tree(root):
    out = []
    for r, ds, ns in os.walk(root):
        ds[:] = [d for d in ds if d != "__pycache__"]
        for n in ns:
            if n.endswith(".py"):
                p = os.path.join(r, n)
                with open(p, "rb") as f:
                    out.append((os.path.relpath(p, root).replace(os.sep, "/"), f.read()))
    return out
def private_dir(p):
    try:
        os.makedirs(p, 0o700, exist_ok=True)
        st = os.lstat(p)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022 and os.path.isdir(p)
req = line()
v = "%d.%d.%d" % sys.version_info[:3]
if sys.version_info < (3, 9):
    say({"need": False, "python": v, "error": "Python %s is too old: sshpipe needs 3.9 or newer" % v})
    sys.exit(3)
base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
cache = os.path.join(base, "sshpipe")
scratch = None
if not private_dir(cache):
    cache = scratch = tempfile.mkdtemp(prefix="sshpipe-")
home = os.path.join(cache, req["hash"])
ok = os.path.isdir(home) and th(tree(home)) == req["hash"]
say({"need": not ok, "python": v, "cache": cache})
if not ok:
    data = rd(int(line()["size"]))
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        files = [(n, z.read(n)) for n in z.namelist()]
    if th(files) != req["hash"]:
        sys.stderr.write("sshpipe loader: bundle hash mismatch\n")
        sys.exit(4)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=cache)
    for n, d in files:
        p = os.path.join(tmp, *n.split("/"))
        os.makedirs(os.path.dirname(p), 0o700, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(d)
    if os.path.isdir(home):
        shutil.rmtree(home, ignore_errors=True)
    try:
        os.rename(tmp, home)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if th(tree(home)) != req["hash"]:
            sys.exit(4)
sys.path.insert(0, home)
launch = line()
body = rd(launch["size"])
pid = os.fork()
if pid:
    # Supervisor: outlive the agent, then end everything it started (even if it
    # was killed or left with os._exit) and report a signal as 128+N, since the
    # SSH exit-signal message does not reach paramiko.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            status = os.waitpid(pid, 0)[1]
            break
        except InterruptedError:
            pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(0, signal.SIGTERM)
    except OSError:
        pass
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
from sshpipe import agent, serial
if launch["mode"] == "script":
    import runpy
    sys.argv = launch["argv"]
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
    runpy.run_path(sys.argv[0], run_name="__main__")
    sys.exit(0)
handler, args, kwargs = serial.loads(body)
if isinstance(handler, type):
    handler = handler(*args, **kwargs)
sys.exit(agent.serve(handler))
'''.replace("SYNC +", repr(LOADER_SYNC) + " +", 1)


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
