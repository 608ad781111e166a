"""``sshpipe config`` sub-commands: get prints like ssh -G, check reports, edits are safe."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from sshpipe.cli import main

CONFIG = "Host web\n  HostName web.example.com\n  Port 2222\n  IdentityFile ~/.ssh/a\n"


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "config"
    p.write_text(CONFIG)
    os.chmod(p, 0o640)
    return p


def test_get_prints_ssh_G_lines(cfg, capsys):
    """`config get HOST` prints key value lines, lists one per line, ssh -G order."""
    assert main(["config", "get", "web", "-F", str(cfg)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == ["host web", "user " + out[1].split(" ", 1)[1], "hostname web.example.com",
                       "port 2222"]
    assert "identityfile ~/.ssh/a" in out
    assert any(line.startswith("canonicalizePermittedcnames ") for line in out)


def test_get_single_keyword(cfg, capsys):
    """`config get HOST KEYWORD` prints only that option (aliases accepted)."""
    assert main(["config", "get", "web", "IdentityFile2", "-F", str(cfg)]) == 0
    assert capsys.readouterr().out == "identityfile ~/.ssh/a\n"


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh to compare with")
def test_get_output_equals_ssh_G_for_same_user(cfg, capsys):
    """For the current user, `config get` output is identical to `ssh -G`."""
    want = subprocess.run(["ssh", "-G", "-F", str(cfg), "web"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL).stdout
    assert main(["config", "get", "web", "-F", str(cfg)]) == 0
    assert capsys.readouterr().out == want


def test_check_reports_file_line_and_exits_1(tmp_path, capsys):
    """`config check` prints every problem as FILE:LINE: reason and exits 1."""
    p = tmp_path / "bad"
    p.write_text("Port 22\nBogus 1\nHost a\n  Compression maybe\n")
    assert main(["config", "check", "-F", str(p)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{p}:2: Bad configuration option: bogus",
                   f'{p}:4: unsupported option "maybe".']


def test_check_clean_file_exits_0(cfg, capsys):
    """A valid file checks clean with exit status 0 and no output."""
    assert main(["config", "check", "-F", str(cfg)]) == 0
    assert capsys.readouterr().err == ""


def test_set_edits_in_place_keeping_mode(cfg):
    """`config set` rewrites the file atomically and keeps its permission bits."""
    inode = cfg.stat().st_ino
    assert main(["config", "set", "web", "Port", "2200", "-F", str(cfg)]) == 0
    assert cfg.read_text() == CONFIG.replace("2222", "2200")
    assert cfg.stat().st_mode & 0o777 == 0o640
    assert cfg.stat().st_ino != inode      # replaced by rename, not rewritten
    assert [p.name for p in cfg.parent.iterdir()] == ["config"]   # no temp file left


def test_add_unset_remove(cfg, capsys):
    """add, unset and remove change the file as the API does."""
    assert main(["config", "add", "db", "-o", "User=dba", "-o", "Port=5432", "-F", str(cfg)]) == 0
    assert cfg.read_text().endswith("\nHost db\n  User dba\n  Port 5432\n")
    assert main(["config", "unset", "db", "Port", "-F", str(cfg)]) == 0
    assert main(["config", "unset", "db", "Port", "-F", str(cfg)]) == 1
    assert main(["config", "remove", "web", "-F", str(cfg)]) == 0
    assert cfg.read_text() == "Host db\n  User dba\n"


def test_bad_edit_leaves_file_untouched(cfg, capsys):
    """A rejected value exits 1 with the reason and does not touch the file."""
    assert main(["config", "set", "web", "Port", "70000", "-F", str(cfg)]) == 1
    assert "Bad port" in capsys.readouterr().err
    assert cfg.read_text() == CONFIG


def test_dump_is_byte_identical(tmp_path, capsys):
    """`config dump` prints the file as it is."""
    p = tmp_path / "c"
    p.write_text("Host a # x\n\tUser  b\n")
    assert main(["config", "dump", "-F", str(p)]) == 0
    assert capsys.readouterr().out == "Host a # x\n\tUser  b\n"


def test_python_m_entry_point(cfg):
    """`python -m sshpipe config get` works as a command."""
    res = subprocess.run([sys.executable, "-m", "sshpipe", "config", "get", "web", "port",
                          "-F", str(cfg)], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout == "port 2222\n"
