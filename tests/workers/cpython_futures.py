"""CPython's concurrent.futures tests for the Python in use: found, or fetched.

Where the file(s) come from, in order:

1. the interpreter's own ``test`` package, when it ships them;
2. a copy fetched earlier, in ``$XDG_CACHE_HOME/sshpipe-tests/cpython-X.Y``;
3. Debian's ``libpython3.X-testsuite`` package, fetched with ``apt-get
   download`` (no install; as root, ``apt-get update`` first if apt has no
   package lists yet) and unpacked with ``dpkg-deb``. Its version is Debian's
   build of the same minor (for 3.11: 3.11.2 under a 3.11.7 interpreter), the
   closest a package registry offers.

Nothing of CPython's is kept in the repository. The fetched tests become
importable as ``test.test_concurrent_futures`` (what their own subprocess
snippets import) through an *overlay* directory: a ``test`` package whose
``__path__`` is the overlay first, then the interpreter's own ``test`` package
(``test.support`` and friends come from there, matching the interpreter). The
overlay also holds a ``sitecustomize`` that, in a Python started with
``SSHPIPE_FUTURES_ALIAS`` set, makes the adapter importable from
``concurrent.futures`` (as the snippets import their executor).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Tuple

__all__ = ["install", "prepare"]

VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
_NAMES = ("test_concurrent_futures", "test_concurrent_futures.py")

_SITECUSTOMIZE = '''\
"""sshpipe's tests: CPython's futures snippets import their executor from
concurrent.futures; make the SSH adapter importable there (only in a Python
started by those tests, which set SSHPIPE_FUTURES_ALIAS)."""
import os

if os.environ.get("SSHPIPE_FUTURES_ALIAS"):
    import concurrent.futures

    import cpython_futures_adapter

    concurrent.futures.SSHProcessPool = cpython_futures_adapter.SSHProcessPool
'''


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sshpipe-tests" / f"cpython-{VERSION}"


def _stdlib_test_dir() -> Optional[Path]:
    """The interpreter's own ``test`` package (found without importing it)."""
    import sysconfig

    path = Path(sysconfig.get_paths()["stdlib"]) / "test"
    return path if (path / "support").is_dir() else None


def _in_stdlib() -> bool:
    stdlib = _stdlib_test_dir()
    return stdlib is not None and any((stdlib / name).exists() for name in _NAMES)


def _fetched(root: Path) -> Optional[Path]:
    for name in _NAMES:
        if (root / "source" / name).exists():
            return root / "source" / name
    return None


def _fetch(root: Path) -> Tuple[Optional[Path], str]:
    """Download and unpack Debian's test suite package; (path, why-not)."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        return None, "no apt-get/dpkg-deb here to fetch Debian's test suite package"
    package = f"libpython{VERSION}-testsuite"
    with tempfile.TemporaryDirectory(prefix="sshpipe-cpython-tests-") as work:
        def download() -> subprocess.CompletedProcess:
            return subprocess.run(["apt-get", "download", "-q", package], cwd=work,
                                  capture_output=True, text=True, timeout=300)

        done = download()
        if done.returncode != 0 and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
            done = download()
        debs = list(Path(work).glob("*.deb"))
        if done.returncode != 0 or not debs:
            return None, (f"apt-get download {package} failed: "
                          f"{(done.stderr or done.stdout).strip()[-300:]}")
        unpacked = Path(work) / "unpacked"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True,
                       timeout=300)
        tests = unpacked / "usr" / "lib" / f"python{VERSION}" / "test"
        found = [tests / name for name in _NAMES if (tests / name).exists()]
        if not found:
            return None, f"{package} holds no test_concurrent_futures"
        source = root / "source"
        source.mkdir(parents=True, exist_ok=True)
        target = source / found[0].name
        if found[0].is_dir():
            shutil.copytree(found[0], target, dirs_exist_ok=True)
        else:
            shutil.copy2(found[0], target)
        (root / "VERSION").write_text(debs[0].name + "\n")
    return target, ""


def prepare() -> Tuple[Optional[Path], str]:
    """An overlay directory to put first on ``sys.path`` (and PYTHONPATH), or
    (None, the reason the tests cannot be had)."""
    stdlib = _stdlib_test_dir()
    if stdlib is None:
        return None, "this interpreter has no test package (test.support)"
    root = _cache_root()
    overlay = root / "overlay"
    if _in_stdlib():
        source = next(stdlib / name for name in _NAMES if (stdlib / name).exists())
        origin = f"the interpreter's own {source}"
    else:
        source = _fetched(root)
        origin = "cached"
        if source is None:
            source, why = _fetch(root)
            if source is None:
                return None, why
        origin = (root / "VERSION").read_text().strip() if (root / "VERSION").exists() else origin
    package = overlay / "test"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(
        "# sshpipe's tests: CPython's futures tests here, the rest of test/ from the "
        "interpreter\n"
        f"__path__.append({str(stdlib)!r})\n")
    link = package / source.name
    if not link.exists():
        link.symlink_to(source, target_is_directory=source.is_dir())
    (overlay / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    (overlay / "ORIGIN").write_text(str(origin) + "\n")
    return overlay, ""


def install(overlay: Path) -> None:
    """Make ``test.test_concurrent_futures`` importable in this process."""
    if str(overlay) not in sys.path:
        sys.path.insert(0, str(overlay))
    test = sys.modules.get("test")
    if test is not None:  # the interpreter's own package, imported already
        extra = str(overlay / "test")
        if extra not in test.__path__:
            test.__path__.insert(0, extra)
