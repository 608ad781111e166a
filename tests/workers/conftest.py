"""Shared pieces of the workers tests: task module on the path, executors, waits."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # wtasks: importable here, shipped to the remotes

from workers import SSHExecutor  # noqa: E402


@pytest.fixture(scope="module")
def executor(sshd):
    """One executor on the test sshd with two slots, shared by a module's tests."""
    with SSHExecutor([sshd.alias], slots=2, config=sshd.config_path, python=sshd.python,
                     modules=["wtasks"], ready_timeout=60) as running:
        yield running


@pytest.fixture
def make_executor(sshd):
    """Build executors on the test sshd; each is shut down at the end of the test."""
    made = []

    def make(hosts=None, **kwargs):
        kwargs.setdefault("config", sshd.config_path)
        kwargs.setdefault("python", sshd.python)
        kwargs.setdefault("modules", ["wtasks"])
        made.append(SSHExecutor(hosts or [sshd.alias], **kwargs))
        return made[-1]

    yield make
    for executor in made:
        executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory) -> str:
    """A virtual environment of the caller's Python with neither sshpipe nor dill."""
    import subprocess
    import venv

    target = tmp_path_factory.mktemp("workers-bare-venv")
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(target)
    python = str(target / "bin" / "python")
    for module in ("dill", "sshpipe", "workers"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                               cwd=str(target), env={"PATH": "/usr/bin:/bin"}, timeout=60)
        assert probe.returncode != 0, f"the bare venv must not see {module}"
    return python
