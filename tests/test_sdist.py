"""The source distribution is complete: built from this tree, unpacked, it has
what the tests, examples and benchmarks need, builds a wheel, and its own tests
run from it."""
from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import sshpipe

ROOT = Path(__file__).resolve().parent.parent
# Never copied into the build tree: version control, environments, caches, builds.
_NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", "*.egg-info",
                                      "build", "dist", ".pytest_cache", ".hypothesis")
# What a test run from the sdist needs beyond the packages themselves.
REQUIRED = [
    "LICENSE", "README.rst", "pyproject.toml", "setup.cfg", "MANIFEST.in",
    "sshpipe/py.typed", "workers/py.typed",
    "tests/conftest.py", "tests/faults/conftest.py", "tests/faults/faultkit.py",
    "tests/workers/conftest.py", "tests/workers/workerkit.py",
    "tests/agents/echo_agent.py", "tests/data/ssh_config",
    "examples/pipe_example.py", "examples/seed/sshremotehandler.py",
    "benchmarks/bench_pipe.py", "scripts/setup.sh", "scripts/test.sh",
]
# A smoke run from the unpacked sdist: one test from each part that was missing
# once, plus a real round trip over the test sshd.
SMOKE = [
    "tests/test_exports.py",
    "tests/test_pipe.py::test_start_returns_after_hello_with_remote_details",
    "tests/workers/test_task.py::test_plain_function_uses_c_pickle_and_runs",
    "tests/faults/test_pipe_faults_input.py::test_oversized_message_is_refused_in_send_issue_8",
    "tests/test_examples_pipe.py::test_pipe_example_runs",
]


def _build(backend_call: str, source: Path, out: Path) -> Path:
    """Run a PEP 517 hook of setuptools in ``source``; return the file it made."""
    out.mkdir(exist_ok=True)
    code = f"from setuptools import build_meta; print(build_meta.{backend_call}({str(out)!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=str(source), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> Path:
    """This tree's sdist, built from a copy (the build writes egg-info), unpacked."""
    work = tmp_path_factory.mktemp("sdist")
    tree = work / "tree"
    shutil.copytree(ROOT, tree, ignore=_NOT_SOURCES, symlinks=True)
    sdist = _build("build_sdist", tree, work / "dist")
    assert sdist.name == f"sshpipe-{sshpipe.__version__}.tar.gz"
    with tarfile.open(sdist) as archive:
        top = {member.name.split("/")[0] for member in archive.getmembers()}
        assert top == {f"sshpipe-{sshpipe.__version__}"}
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(work / "unpacked", **safe)
    return work / "unpacked" / f"sshpipe-{sshpipe.__version__}"


def test_sdist_holds_tests_examples_benchmarks_and_license_issue_18(unpacked):
    """Everything the suite, the examples and the benchmarks need is in the sdist."""
    missing = [name for name in REQUIRED if not (unpacked / name).exists()]
    assert missing == []
    in_git = {line for line in subprocess.run(
        ["git", "ls-files", "tests", "examples"], cwd=str(ROOT), capture_output=True,
        text=True).stdout.splitlines()}
    if in_git:  # running from a clone: every tracked test and example file is shipped
        assert sorted(name for name in in_git if not (unpacked / name).exists()) == []
    assert not list(unpacked.rglob("__pycache__"))


def test_sdist_metadata_is_the_successor_version_with_spdx_license_issue_18(unpacked):
    """Version 1.0.0 (after the unrelated sshpipe 0.5.2 on PyPI), license as an
    SPDX expression with its file."""
    metadata = email.message_from_string((unpacked / "PKG-INFO").read_text())
    assert metadata["Version"] == sshpipe.__version__ == "1.0.0"
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert "MIT License" in (unpacked / "LICENSE").read_text()


def test_wheel_from_the_sdist_has_types_entry_points_and_license(unpacked, tmp_path):
    """The wheel built from the sdist carries both py.typed markers, the console
    script, the pytest plugin and the license."""
    source = tmp_path / "source"
    shutil.copytree(unpacked, source)
    wheel = _build("build_wheel", source, tmp_path / "wheel")
    assert wheel.name == f"sshpipe-{sshpipe.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"sshpipe-{sshpipe.__version__}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert {"sshpipe/py.typed", "workers/py.typed", "sshpipe/agent.py", "workers/worker_agent.py",
            f"{info}/licenses/LICENSE"} <= names
    assert "sshpipe = sshpipe.cli:main" in entry_points
    assert "sshpipe = sshpipe.testing.plugin" in entry_points
    assert not any(name.startswith(("tests/", "examples/")) for name in names)


def test_tests_run_from_the_unpacked_sdist_issue_18(unpacked):
    """A smoke run of the suite from the unpacked sdist, importing its own code."""
    env = dict(os.environ, PYTHONPATH=str(unpacked), PYTHONDONTWRITEBYTECODE="1")
    where = subprocess.run([sys.executable, "-c", "import sshpipe; print(sshpipe.__file__)"],
                           cwd=str(unpacked), env=env, capture_output=True, text=True,
                           timeout=60).stdout.strip()
    assert Path(where).is_relative_to(unpacked), where
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *SMOKE], cwd=str(unpacked), env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout
