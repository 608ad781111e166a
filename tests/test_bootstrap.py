"""Zero-install agents: the remote needs only Python; runtime and handler travel over SSH."""
from __future__ import annotations

import importlib.util
import marshal
import os
import stat
import struct
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import pytest

from sshpipe import SSHPipe, SSHPipeHandler, VersionSkewError
from sshpipe.bootstrap import build_bundle, remote_command, tree_hash
from sshpipe.testing import LocalSSHServer

AGENTS = Path(__file__).parent / "agents"
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"


def _pyenv_python(minor: str):
    for candidate in sorted(PYENV.glob(f"{minor}.*/bin/python3")):
        return str(candidate)
    return None


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory) -> str:
    """A virtual environment of the caller's own Python with neither sshpipe nor dill."""
    target = tmp_path_factory.mktemp("bare-venv")
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(target)
    python = str(target / "bin" / "python")
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for module in ("dill", "sshpipe"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                               cwd=str(target), env=clean_env)
        assert probe.returncode != 0, f"the bare venv must not see {module}"
    return python


@pytest.fixture
def cache_env(tmp_path):
    """Point the remote bundle cache at a private per-test directory."""
    return {"XDG_CACHE_HOME": str(tmp_path / "cache")}


@pytest.fixture
def counter_module(monkeypatch):
    monkeypatch.syspath_prepend(str(AGENTS))
    import zi_handlers

    return zi_handlers


def _pipe(sshd, **kwargs) -> SSHPipe:
    kwargs.setdefault("ready_timeout", 60)
    return SSHPipe(sshd.alias, config=sshd.config_path, **kwargs)


def test_handler_class_runs_on_python_without_sshpipe_or_dill(sshd, bare_python, cache_env,
                                                               counter_module):
    """A handler class with constructor arguments runs on a bare interpreter; plain
    data never makes the agent import dill."""
    pipe = _pipe(sshd, handler=counter_module.Counter, handler_kwargs={"start": 10},
                 modules=["zi_handlers"], python=bare_python, env=cache_env)
    with pipe:
        pipe.send("a")
        pipe.send("b")
        first, second = pipe.recv(timeout=10), pipe.recv(timeout=10)
    assert first[:2] == (11, "a") and second[:2] == (12, "b")
    assert first[2] == "%d.%d" % sys.version_info[:2]
    assert first[3] is False, "dill was imported for plain data"
    assert pipe.exitcode == 0


def test_handler_defined_locally_is_sent_by_value(sshd, bare_python, cache_env):
    """A handler class the remote cannot import (defined in a function) is sent by value."""

    class Doubler(SSHPipeHandler):
        def handle(self, received):
            self.reply(received * 2)

    with _pipe(sshd, handler=Doubler, python=bare_python, env=cache_env) as pipe:
        pipe.send(21)
        assert pipe.recv(timeout=10) == 42
        assert pipe.remote_info["handler"] == "Doubler"


def test_handler_instance_is_sent_with_its_state(sshd, bare_python, cache_env, counter_module):
    """A handler instance arrives with the state it had in the caller."""
    handler = counter_module.Counter(start=100)
    with _pipe(sshd, handler=handler, modules=["zi_handlers"], python=bare_python,
               env=cache_env) as pipe:
        pipe.send("x")
        assert pipe.recv(timeout=10)[0] == 101


def test_warm_start_sends_only_the_hash_and_cache_is_private(sshd, bare_python, cache_env,
                                                             counter_module):
    """The first start ships the bundle into a 0700 cache, as one 0600 zip and
    nothing else; the next one finds it there and writes nothing."""
    kwargs = dict(handler=counter_module.Counter, modules=["zi_handlers"], python=bare_python,
                  env=cache_env)
    with _pipe(sshd, **kwargs) as cold:
        info = cold.remote_info
    assert info["bundle_sent"] is True
    cache = Path(cache_env["XDG_CACHE_HOME"]) / "sshpipe"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    bundle = cache / (info["bundle_hash"] + ".zip")
    assert [p.name for p in cache.iterdir()] == [bundle.name]
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    written = bundle.read_bytes(), bundle.stat().st_ino
    with _pipe(sshd, **kwargs) as warm:
        assert warm.remote_info["bundle_sent"] is False
        warm.send(1)
        assert warm.recv(timeout=10)[0] == 1
    assert [p.name for p in cache.iterdir()] == [bundle.name]
    assert (bundle.read_bytes(), bundle.stat().st_ino) == written


def test_cache_write_removes_stale_files(sshd, bare_python, cache_env, counter_module):
    """A cold start's write removes what is stale in the cache: a bundle not used
    for 30 days, a temporary file older than an hour (its writer was killed); not
    a temporary file a concurrent writer may still be filling, nor a bundle in use
    (each warm start marks its bundle used)."""
    cache = Path(cache_env["XDG_CACHE_HOME"]) / "sshpipe"
    cache.mkdir(parents=True, mode=0o700)
    day = 86400
    files = {"old.zip": 40 * day, "recent.zip": 20 * day, ".tmp-1-old": 2 * 3600,
             ".tmp-2-young": 60}
    now = time.time()
    for name, age in files.items():
        (cache / name).write_bytes(b"x")
        os.utime(cache / name, (now - age, now - age))
    with _pipe(sshd, handler=counter_module.Counter, modules=["zi_handlers"],
               python=bare_python, env=cache_env) as pipe:
        assert pipe.remote_info["bundle_sent"] is True
        bundle = pipe.remote_info["bundle_hash"] + ".zip"
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [".tmp-2-young", "recent.zip", bundle])
    os.utime(cache / bundle, (now - 40 * day, now - 40 * day))
    with _pipe(sshd, handler=counter_module.Counter, modules=["zi_handlers"],
               python=bare_python, env=cache_env) as pipe:
        assert pipe.remote_info["bundle_sent"] is False
    assert time.time() - (cache / bundle).stat().st_mtime < 600


def _rezip(path: Path, change) -> None:
    """Rewrite the cached bundle zip at ``path`` with ``change(entries)`` applied."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    change(entries)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def test_tampered_cache_is_detected_and_replaced(sshd, bare_python, cache_env, counter_module):
    """A cached bundle whose files changed fails its hash check and is sent again."""
    kwargs = dict(handler=counter_module.Counter, modules=["zi_handlers"], python=bare_python,
                  env=cache_env)
    with _pipe(sshd, **kwargs) as first:
        info = first.remote_info
    bundle = Path(info["cache"]) / (info["bundle_hash"] + ".zip")
    original = bundle.read_bytes()

    def tamper(entries):
        entries["zi_handlers.py"] += b"\nraise SystemExit('tampered')\n"

    _rezip(bundle, tamper)
    with _pipe(sshd, **kwargs) as second:
        assert second.remote_info["bundle_sent"] is True
        second.send(1)
        assert second.recv(timeout=10)[0] == 1
    assert bundle.read_bytes() == original


def _pyc(source: bytes, origin: str, mtime: int, size: int) -> bytes:
    """A timestamp pyc of ``source`` whose header matches a source file of that
    mtime and size, as the import system checks it."""
    code = compile(source, origin, "exec")
    return (importlib.util.MAGIC_NUMBER + struct.pack("<III", 0, mtime & 0xFFFFFFFF, size)
            + marshal.dumps(code))


def test_planted_pyc_is_never_imported(sshd, bare_python, cache_env, counter_module, tmp_path):
    """A .pyc planted next to the cached bundle's sources (its __pycache__, with a
    valid header) or inside the cached bundle is not imported: the agent imports
    only the bytes it verified, and a bundle with anything added is replaced."""
    kwargs = dict(handler=counter_module.Counter, modules=["zi_handlers"], python=bare_python,
                  env=cache_env)
    with _pipe(sshd, **kwargs) as first:
        info = first.remote_info
    canary = tmp_path / "canary"
    source = (AGENTS / "zi_handlers.py").read_bytes()
    evil = b"open(%r, 'w').close()\n" % str(canary).encode() + source
    tag = sys.implementation.cache_tag  # the bare venv is this Python
    root = Path(info["cache"]) / info["bundle_hash"]
    planted = []
    # Where the cache kept unpacked sources: a pyc beside them, header matching.
    cached_source = root / "zi_handlers.py"
    if cached_source.exists():
        st = cached_source.stat()
        pyc = root / "__pycache__" / f"zi_handlers.{tag}.pyc"
        pyc.parent.mkdir(exist_ok=True)
        pyc.write_bytes(_pyc(evil, str(cached_source), int(st.st_mtime), st.st_size))
        planted.append(pyc)
    # Where the cache keeps a zip: pycs inside it, which zipimport would prefer.
    bundle = root.with_name(root.name + ".zip")
    if bundle.exists():
        def plant(entries):
            pyc = _pyc(evil, "zi_handlers.py", 0, len(source))
            entries["zi_handlers.pyc"] = pyc
            entries[f"__pycache__/zi_handlers.{tag}.pyc"] = pyc

        _rezip(bundle, plant)
        planted.append(bundle)
    assert planted, f"no cached bundle found at {root}"
    with _pipe(sshd, **kwargs) as second:
        second.send("x")
        assert second.recv(timeout=10)[:2] == (1, "x")
    assert not canary.exists(), "the planted .pyc was imported"
    if bundle.exists():
        with zipfile.ZipFile(bundle) as archive:
            assert not [n for n in archive.namelist() if n.endswith(".pyc")]


@pytest.mark.parametrize("unsafe", ["parent group-writable", "ancestor world-writable"])
def test_cache_under_an_unsafe_directory_is_not_used(sshd, bare_python, tmp_path,
                                                     counter_module, unsafe):
    """As OpenSSH's StrictModes: a cache with a parent directory that others can
    write is not used (a private temporary one is, and is removed afterwards),
    even when the cache directory itself is private."""
    if unsafe == "parent group-writable":
        base = tmp_path / "cache"
        base.mkdir()
        os.chmod(base, 0o775)
    else:
        shared = tmp_path / "shared"
        shared.mkdir()
        os.chmod(shared, 0o777)  # not sticky
        base = shared / "home" / "cache"
        base.mkdir(parents=True)
    (base / "sshpipe").mkdir(mode=0o700)
    with _pipe(sshd, handler=counter_module.Counter, modules=["zi_handlers"],
               python=bare_python, env={"XDG_CACHE_HOME": str(base)}) as pipe:
        pipe.send("x")
        assert pipe.recv(timeout=10)[1] == "x"
        used = Path(pipe.remote_info["cache"])
    assert used != base / "sshpipe"
    assert list((base / "sshpipe").iterdir()) == []
    deadline = time.monotonic() + 10
    while used.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not used.exists(), "the temporary cache was left behind"


def _tiny_tmpfs(path: Path) -> bool:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k,mode=0700", "tmpfs",
                           str(path)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("how", ["RLIMIT_FSIZE", "ENOSPC"])
def test_failed_cache_write_leaves_nothing_and_the_agent_runs(bare_python, tmp_path,
                                                              counter_module, how):
    """A bundle that cannot be written to the cache (file size limit, or a full
    file system: a 32 kB tmpfs) leaves no temporary file or directory; the agent
    runs all the same, from the bytes in memory, and says so on stderr."""
    base = tmp_path / "cache"
    force = ""
    if how == "RLIMIT_FSIZE":
        force = 'ForceCommand ulimit -f 16; eval "$SSH_ORIGINAL_COMMAND"\n'
        base.mkdir(mode=0o700)
    elif not _tiny_tmpfs(base):
        pytest.skip("cannot mount a tmpfs here")
    try:
        with LocalSSHServer(alias="nospace", extra_server_options=force) as server:
            pipe = _pipe(server, handler=counter_module.Counter, modules=["zi_handlers"],
                         python=bare_python, env={"XDG_CACHE_HOME": str(base)})
            with pipe:
                pipe.send("x")
                assert pipe.recv(timeout=10)[1] == "x"
                response = pipe.close(timeout=30)
        left = [p.name for p in (base / "sshpipe").iterdir()]
    finally:
        if how == "ENOSPC":
            subprocess.run(["umount", str(base)], check=False)
    assert left == [], f"left in the cache: {left}"
    assert "not cached" in response.stderr
    assert response.exitcode == 0


def test_py_script_command_runs_on_bare_python(sshd, bare_python, cache_env):
    """A .py command runs with the shipped runtime, so it imports sshpipe remotely."""
    with _pipe(sshd, command=str(AGENTS / "echo_agent.py"), python=bare_python,
               env=cache_env) as pipe:
        pipe.send({"k": [1, 2]})
        assert pipe.recv(timeout=10) == {"k": [1, 2]}


def test_login_shell_output_before_agent_is_skipped(bare_python, cache_env, counter_module):
    """Whatever the login shell prints before the agent starts is skipped (and kept
    as stdout), not parsed as frames."""
    force = ('ForceCommand echo "Welcome to $(hostname)"; printf "rc noise\\0\\1\\n"; '
             'eval "$SSH_ORIGINAL_COMMAND"\n')
    with LocalSSHServer(alias="noisy", extra_server_options=force) as noisy:
        with _pipe(noisy, handler=counter_module.Counter, modules=["zi_handlers"],
                   python=bare_python, env=cache_env) as pipe:
            pipe.send("through the noise")
            assert pipe.recv(timeout=10)[1] == "through the noise"
            response = pipe.close(timeout=30)
    assert response.exitcode == 0
    assert "Welcome to" in response.stdout and "rc noise" in response.stdout


@pytest.mark.skipif(_pyenv_python("3.9") is None, reason="no CPython 3.9 under pyenv")
def test_older_remote_python_runs_shipped_handler(sshd, cache_env, counter_module):
    """A Python 3.9 remote runs a handler the caller's newer Python sent by reference."""
    with _pipe(sshd, handler=counter_module.Counter, modules=["zi_handlers"],
               python=_pyenv_python("3.9"), env=cache_env) as pipe:
        pipe.send("x")
        assert pipe.recv(timeout=10)[2] == "3.9"
        assert pipe.remote_info["python"].startswith("3.9.")


@pytest.mark.skipif(_pyenv_python("3.9") is None, reason="no CPython 3.9 under pyenv")
def test_code_across_python_versions_is_refused_clearly(sshd, cache_env, counter_module):
    """Code sent by value cannot cross Python minor versions: start() and send() say so,
    naming both versions."""

    class Local(SSHPipeHandler):
        def handle(self, received):
            self.reply(received)

    with pytest.raises(VersionSkewError) as info:
        _pipe(sshd, handler=Local, python=_pyenv_python("3.9"), env=cache_env).start()
    assert info.value.remote.startswith("3.9") and info.value.local == sys.version.split()[0]
    with _pipe(sshd, handler=counter_module.Counter, modules=["zi_handlers"],
               python=_pyenv_python("3.9"), env=cache_env) as pipe:
        offset = 5
        with pytest.raises(VersionSkewError, match="3.9"):
            pipe.send(lambda: offset)
        pipe.send("plain data still works")
        assert pipe.recv(timeout=10)[1] == "plain data still works"


@pytest.mark.skipif(_pyenv_python("3.8") is None, reason="no CPython 3.8 under pyenv")
def test_too_old_remote_python_is_refused(sshd, cache_env, counter_module):
    """A remote Python older than 3.9 fails start() with a message naming its version."""
    with pytest.raises(VersionSkewError, match="3.8.* too old"):
        _pipe(sshd, handler=counter_module.Counter, modules=["zi_handlers"],
              python=_pyenv_python("3.8"), env=cache_env).start()


def test_remote_interpreter_path_with_spaces_and_metacharacters(sshd, bare_python, tmp_path,
                                                                 counter_module):
    """python=, cwd= and env values with spaces and shell metacharacters arrive intact."""
    odd = tmp_path / "dir with spaces; $(touch pwned) `x` 'q'"
    odd.mkdir()
    link = odd / "py thon"
    link.symlink_to(bare_python)
    env = {"XDG_CACHE_HOME": str(odd / "cache"), "ODD": "a b; $(x) `y` 'z' \"w\""}
    with _pipe(sshd, handler=counter_module.Counter, modules=["zi_handlers"], python=str(link),
               cwd=str(odd), env=env) as pipe:
        pipe.send(lambda: (__import__("os").getcwd(), __import__("os").environ["ODD"]))
        _, (cwd, value), _, _ = pipe.recv(timeout=10)
    assert cwd == str(odd) and value == env["ODD"]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_remote_command_quotes_every_word():
    """remote_command() quotes words and refuses bad environment names."""
    line = remote_command(["python3", "a b", "$(x)"], cwd="/tmp/a b", env={"K": "v w"})
    assert line == "cd '/tmp/a b' && exec env 'K=v w' python3 'a b' '$(x)'"
    with pytest.raises(ValueError):
        remote_command(["x"], env={"BAD;NAME": "1"})


def test_bundle_is_deterministic_and_hash_covers_contents():
    """Building twice from the same files (sources and the caller's .pyc files, which
    the remote sessions of earlier tests may have written meanwhile) gives the same
    bytes and hash; the hash changes with the contents."""
    build_bundle.cache_clear()
    first = build_bundle(())
    build_bundle.cache_clear()
    second = build_bundle(())
    assert first == second and first.size < 400_000
    assert tree_hash([("a.py", b"1")]) != tree_hash([("a.py", b"2")])
    assert tree_hash([("a.py", b"1")]) != tree_hash([("b.py", b"1")])


def test_unknown_module_to_ship_is_a_clear_error(sshd):
    """Naming a module that does not exist locally fails start() in the caller."""
    with pytest.raises(ValueError, match="no_such_module_xyz"):
        _pipe(sshd, handler=SSHPipeHandler, modules=["no_such_module_xyz"]).start()


# -- the agent's environment -------------------------------------------------------
STUBBORN = Path(__file__).parent / "faults" / "agents" / "stubborn.py"
ROOT = Path(__file__).resolve().parents[1]
LOGIN_UMASK = 0o027  # neither the usual 022 nor the loader's own 077


@pytest.fixture
def stubborn_module(monkeypatch):
    monkeypatch.syspath_prepend(str(STUBBORN.parent))
    import stubborn

    return stubborn


@pytest.mark.parametrize("mode", ["handler", "script", "exec"])
def test_agent_gets_the_login_umask_and_the_cache_stays_private(tmp_path, stubborn_module,
                                                                mode):
    """The handler, the .py script and the exec'd program run with the umask the
    login set (027 here), not the loader's 077; what the loader writes (the
    bundle cache) is private all the same."""
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache)}
    force = f'ForceCommand umask {LOGIN_UMASK:03o}; eval "$SSH_ORIGINAL_COMMAND"\n'
    with LocalSSHServer(alias="umask027", extra_server_options=force) as server:
        if mode == "handler":
            pipe = _pipe(server, handler=stubborn_module.Stubborn, modules=["stubborn"],
                         python=server.python, env=env)
        elif mode == "script":
            pipe = _pipe(server, command=[str(STUBBORN)], python=server.python, env=env)
        else:
            pipe = _pipe(server, command=[server.python, str(STUBBORN)], python=server.python,
                         env=dict(env, PYTHONPATH=str(ROOT)))
        with pipe:
            pipe.send(("umask",))
            umask = pipe.recv(timeout=10)
    assert umask == LOGIN_UMASK, f"the {mode} agent ran with umask {umask:03o}"
    written = [cache] + list(cache.rglob("*"))
    assert len(written) > 2, "the loader wrote no cache"
    loose = [f"{p} {stat.S_IMODE(p.lstat().st_mode):o}" for p in written
             if p.is_relative_to(cache / "sshpipe") and stat.S_IMODE(p.lstat().st_mode) & 0o077]
    assert not loose
