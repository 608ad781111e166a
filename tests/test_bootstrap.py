"""Zero-install agents: the remote needs only Python; runtime and handler travel over SSH."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import venv
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
    """The first start ships the bundle into a 0700 cache; the next one finds it there."""
    kwargs = dict(handler=counter_module.Counter, modules=["zi_handlers"], python=bare_python,
                  env=cache_env)
    with _pipe(sshd, **kwargs) as cold:
        info = cold.remote_info
    assert info["bundle_sent"] is True
    cache = Path(cache_env["XDG_CACHE_HOME"]) / "sshpipe"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    bundle_dir = cache / info["bundle_hash"]
    files = [p for p in bundle_dir.rglob("*.py")]
    assert files and all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in files)
    with _pipe(sshd, **kwargs) as warm:
        assert warm.remote_info["bundle_sent"] is False
        warm.send(1)
        assert warm.recv(timeout=10)[0] == 1


def test_tampered_cache_is_detected_and_replaced(sshd, bare_python, cache_env, counter_module):
    """A cached bundle whose files changed fails its hash check and is sent again."""
    kwargs = dict(handler=counter_module.Counter, modules=["zi_handlers"], python=bare_python,
                  env=cache_env)
    with _pipe(sshd, **kwargs) as first:
        info = first.remote_info
    target = Path(info["cache"]) / info["bundle_hash"] / "zi_handlers.py"
    original = target.read_text()
    target.write_text(original + "\nraise SystemExit('tampered')\n")
    with _pipe(sshd, **kwargs) as second:
        assert second.remote_info["bundle_sent"] is True
        second.send(1)
        assert second.recv(timeout=10)[0] == 1
    assert target.read_text() == original


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
    """Building twice gives the same bytes and hash; the hash changes with the contents."""
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
