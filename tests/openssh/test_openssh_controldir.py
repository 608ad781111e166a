"""The control directory is private or refused, and the per-key lock excludes."""
from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from sshpipe._openssh import UnsafeControlDir, ensure_master
from sshpipe._openssh.controldir import (MAX_SOCKET_PATH, KeyLock, KeyPaths, check_private_dir,
                                         prepare_control_dir)
from sshpipe.errors import ConnectError, ConnectTimeout

from openssh_kit import processes_mentioning, wait_for

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another user")


def _open_count(path: str) -> int:
    """How many fds of this process refer to ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == path
        except OSError:
            pass
    return count


@pytest.fixture
def parent(tmp_path):
    """A private parent directory for control directories."""
    os.chmod(tmp_path, 0o700)
    return tmp_path


def test_created_with_mode_0700(parent):
    """A missing control directory is created, owned by us, mode 0700."""
    path = prepare_control_dir(str(parent / "ctl"))
    info = os.lstat(path)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()


def test_existing_directory_with_loose_mode_is_refused_not_fixed(parent):
    """A directory others could read or write is refused and left as it was."""
    path = parent / "ctl"
    path.mkdir()
    os.chmod(path, 0o755)
    with pytest.raises(UnsafeControlDir, match="0755.*chmod 700") as caught:
        prepare_control_dir(str(path), host="db1")
    assert caught.value.path == str(path) and caught.value.host == "db1"
    assert str(caught.value).startswith("db1: ")
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o755


@as_root
def test_directory_of_another_user_is_refused(parent):
    """A control directory owned by another uid is refused."""
    path = parent / "ctl"
    path.mkdir(mode=0o700)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(UnsafeControlDir, match=f"belongs to uid {NOBODY}"):
        prepare_control_dir(str(path))


def test_symlink_is_refused(parent):
    """A control directory that is a symlink (even to a private dir) is refused."""
    real = parent / "real"
    real.mkdir(mode=0o700)
    link = parent / "ctl"
    link.symlink_to(real)
    with pytest.raises(UnsafeControlDir, match="symbolic link"):
        check_private_dir(str(link))


def test_group_writable_parent_is_refused(parent):
    """A parent others can write (no sticky bit) could swap our directory: refused."""
    loose = parent / "shared"
    loose.mkdir()
    os.chmod(loose, 0o777)
    with pytest.raises(UnsafeControlDir, match="writable by other users"):
        prepare_control_dir(str(loose / "ctl"))
    assert not (loose / "ctl").exists()


def test_sticky_world_writable_parent_is_accepted(parent):
    """A sticky world-writable parent (as /tmp) cannot have our entry swapped: accepted."""
    sticky = parent / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    assert prepare_control_dir(str(sticky / "ctl")) == str(sticky / "ctl")


@as_root
def test_parent_of_another_user_is_refused(parent):
    """A parent owned by another (non-root) user is refused, as StrictModes does."""
    theirs = parent / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafeControlDir, match=f"belongs to uid {NOBODY}"):
        prepare_control_dir(str(theirs / "ctl"))


def test_socket_path_too_long_is_refused(parent):
    """A directory so deep the socket path would not fit sun_path is refused up front."""
    deep = parent / ("d" * (MAX_SOCKET_PATH - len(str(parent)) - 20))
    deep.mkdir(mode=0o700)
    with pytest.raises(UnsafeControlDir, match="longer than"):
        KeyPaths(str(deep), "0123456789abcdef")


def test_ensure_master_refuses_unsafe_directory_and_starts_nothing(parent, target):
    """ensure_master into a directory with mode 0770 raises before running ssh."""
    path = parent / "ctl"
    path.mkdir()
    os.chmod(path, 0o770)
    with pytest.raises(UnsafeControlDir) as caught:
        ensure_master(target, control_dir=str(path), timeout=10)
    assert isinstance(caught.value, ConnectError) and caught.value.host == target.host
    assert os.listdir(path) == [] and processes_mentioning(str(path)) == []


@as_root
def test_ensure_master_refuses_directory_of_another_user(parent, target):
    """ensure_master into a 0700 directory owned by another uid raises, leaves it empty."""
    path = parent / "ctl"
    path.mkdir(mode=0o700)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(UnsafeControlDir, match="belongs to uid"):
        ensure_master(target, control_dir=str(path), timeout=10)
    assert os.listdir(path) == []


def test_lock_excludes_and_times_out(parent):
    """A second holder waits, and gives up with ConnectTimeout at its deadline."""
    first = KeyLock(str(parent / "k.lock"), host="db1")
    first.acquire(1)
    second = KeyLock(str(parent / "k.lock"), host="db1")
    started = time.monotonic()
    with pytest.raises(ConnectTimeout, match="db1: another process held"):
        second.acquire(0.2)
    assert 0.2 <= time.monotonic() - started < 2
    first.release()
    second.acquire(1)
    second.release()


def test_lock_removed_by_its_holder_is_not_shared(parent):
    """A waiter that locked a file its holder then unlinked retries on the new file,
    so a third process cannot hold the lock at the same time."""
    path = str(parent / "k.lock")
    holder = KeyLock(path)
    holder.acquire(1)
    got = threading.Event()
    waiter = KeyLock(path)

    def wait_for_lock():
        waiter.acquire(5)
        got.set()

    thread = threading.Thread(target=wait_for_lock)
    thread.start()
    wait_for(lambda: _open_count(path) >= 2, 5, "the waiter has the old lock file open")
    holder.release(remove=True)
    assert got.wait(5)
    third = KeyLock(path)
    with pytest.raises(ConnectTimeout):
        third.acquire(0.1)
    assert os.path.samestat(os.stat(path), os.fstat(waiter._fd))
    waiter.release()
    thread.join(5)
