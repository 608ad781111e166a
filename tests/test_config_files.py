"""Config files are opened as ssh opens them, within bounds ssh lacks.

ssh would block forever on an Include of a FIFO and read /dev/zero or a
huge file until memory runs out; load(), loads() and validate() refuse
anything but a regular file (or a directory, which reads as empty) before
reading, and any file larger than MAX_CONFIG_BYTES, with an SSHConfigError
naming the Include line.  Each test has a deadline: a hang fails it.
"""
from __future__ import annotations

import os
import threading
import time

import pytest

from sshpipe.config import MAX_CONFIG_BYTES, SSHConfig, load, loads
from sshpipe.errors import SSHConfigError


def _within(seconds: float, func):
    """Run ``func`` in a thread; fail if it does not return within ``seconds``."""
    box: dict = {}

    def run():
        try:
            box["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    start = time.monotonic()
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value"), time.monotonic() - start


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo.conf"
    os.mkfifo(path, 0o600)
    return path


def test_include_of_fifo_is_refused_without_blocking(fifo):
    """An Include naming a FIFO fails at once (ssh would wait for a writer forever)."""
    text = f"Host nomatch\n  Include {fifo}\n"
    with pytest.raises(SSHConfigError) as info:
        _within(5, lambda: loads(text))
    err = info.value
    assert "not a regular file" in err.reason and str(fifo) in err.reason
    assert err.line == 2
    problems, took = _within(5, lambda: SSHConfig(text).validate())
    assert [p.line for p in problems] == [2] and took < 5
    with pytest.raises(SSHConfigError, match="not a regular file"):
        _within(5, lambda: SSHConfig(text).resolve("x"))


def test_load_of_fifo_is_refused_without_blocking(fifo):
    """load() of a FIFO path is refused before reading."""
    with pytest.raises(SSHConfigError, match="not a regular file"):
        _within(5, lambda: load(str(fifo)))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/full"])
def test_devices_are_refused(device, tmp_path):
    """A character device as the config or an Include: refused, nothing read."""
    with pytest.raises(SSHConfigError, match="not a regular file"):
        _within(5, lambda: load(device))
    # as an Include, ssh's own owner/mode rule already refuses these 0666 devices
    with pytest.raises(SSHConfigError, match="Bad owner or permissions|not a regular file"):
        _within(5, lambda: loads(f"Include {device}\n"))


def test_dev_null_reads_as_empty():
    """``-F /dev/null`` is the usual way to say "no config": it reads as empty."""
    assert load(os.devnull).resolve("x")["port"] == "22"


def test_huge_file_is_refused(tmp_path):
    """A file larger than MAX_CONFIG_BYTES is refused by size, as config and as Include."""
    big = tmp_path / "big.conf"
    with open(big, "wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)       # sparse: nothing written
    os.chmod(big, 0o600)
    with pytest.raises(SSHConfigError, match="larger than"):
        _within(10, lambda: load(str(big)))
    with pytest.raises(SSHConfigError, match="larger than") as info:
        _within(10, lambda: loads(f"# one\nInclude {big}\n"))
    assert info.value.line == 2


def test_unreadable_includes_raise_config_errors(tmp_path):
    """ELOOP and ENXIO from an Include are SSHConfigError with file:line, not OSError."""
    loop = tmp_path / "loop.conf"
    loop.symlink_to(loop)
    import socket
    sock_path = tmp_path / "sock.conf"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        for target, words in [(loop, "Too many levels of symbolic links"),
                              (sock_path, "No such device or address")]:
            main = tmp_path / "main"
            main.write_text(f"Port 22\nInclude {target}\n")
            with pytest.raises(SSHConfigError) as info:
                load(str(main))
            assert words in info.value.reason
            assert (info.value.path, info.value.line) == (str(main), 2)
    finally:
        s.close()


def test_directory_include_reads_empty(tmp_path):
    """An Include naming a directory reads as an empty file (as fopen + getline do)."""
    d = tmp_path / "conf.d"
    d.mkdir(mode=0o755)
    config = loads(f"Include {d}\nPort 2\n")
    assert config.resolve("x")["port"] == "2"


def test_main_file_bad_owner_only_for_the_default_path(tmp_path, monkeypatch):
    """Like ssh: -F FILE is read whatever its mode; ~/.ssh/config must not be writable by others."""
    cfg = tmp_path / "cfg"
    cfg.write_text("Port 3\n")
    os.chmod(cfg, 0o666)
    assert load(str(cfg)).resolve("x")["port"] == "3"
    (tmp_path / ".ssh").mkdir()
    default = tmp_path / ".ssh" / "config"
    default.write_text("Port 4\n")
    os.chmod(default, 0o666)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SSHConfigError, match="Bad owner or permissions"):
        load()
    os.chmod(default, 0o600)
    assert load().resolve("x")["port"] == "4"


def test_one_megabyte_host_line_is_linear():
    """A 1 MB Host line parses and resolves in well under a second (ssh: ~25 ms)."""
    pats = " ".join(f"h{i}*x?y" if i % 3 == 0 else f"h{i}*" if i % 3 == 1 else f"*.d{i}"
                    for i in range(130000))
    text = f"Host {pats}\n  Port 2\n"
    assert len(text) > 1_000_000
    t0 = time.perf_counter()
    config = loads(text)
    assert config.resolve("zzz")["port"] == "22"
    assert config.resolve("h77zzz")["port"] == "2"
    assert config.resolve("a.d129998")["port"] == "2"
    took = time.perf_counter() - t0
    assert took < 3.0, f"{took:.2f} s"
