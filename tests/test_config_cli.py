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


def test_get_unknown_keyword_names_it(cfg, capsys):
    """`config get HOST NOSUCH` fails with a message naming the keyword, not silently."""
    assert main(["config", "get", "web", "NoSuchOption", "-F", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "NoSuchOption" in err and str(cfg) in err


def test_get_known_but_unset_keyword_says_so(cfg, capsys):
    """A real keyword ssh -G prints nothing for exits 1 and says why."""
    assert main(["config", "get", "web", "ProxyCommand", "-F", str(cfg)]) == 1
    assert "ProxyCommand is not set" in capsys.readouterr().err


def test_set_several_words_make_one_value(cfg, capsys):
    """`config set web LocalForward 8080 localhost:80` writes one line ssh reads as one forward."""
    assert main(["config", "set", "web", "LocalForward", "8080", "localhost:80",
                 "-F", str(cfg)]) == 0
    assert "  LocalForward 8080 localhost:80\n" in cfg.read_text()
    assert main(["config", "get", "web", "localforward", "-F", str(cfg)]) == 0
    assert capsys.readouterr().out == "localforward 8080 [localhost]:80\n"


def test_add_goes_before_host_star_and_says_so(tmp_path, capsys):
    """A block added after `Host *` would be shadowed: it is placed before it, with a note."""
    p = tmp_path / "config"
    p.write_text("Host web\n  User w\n\nHost *\n  User everyone\n")
    assert main(["config", "add", "db", "-o", "User=dba", "-F", str(p)]) == 0
    assert p.read_text() == ("Host web\n  User w\n\nHost db\n  User dba\n\n"
                             "Host *\n  User everyone\n")
    err = capsys.readouterr().err
    assert "placed before 'Host *' (line 4)" in err and str(p) in err
    assert main(["config", "get", "db", "user", "-F", str(p)]) == 0
    assert capsys.readouterr().out == "user dba\n"
    assert main(["config", "add", "late", "-o", "User=l", "--at-end", "-F", str(p)]) == 0
    assert p.read_text().endswith("Host *\n  User everyone\n\nHost late\n  User l\n")


def test_check_missing_file_behaves_like_get(tmp_path, capsys, monkeypatch):
    """check: a missing default config is an empty one (exit 0); a missing -F FILE is an error."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["config", "check"]) == 0
    assert main(["config", "get", "x", "port"]) == 0
    missing = tmp_path / "nope"
    assert main(["config", "check", "-F", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "<string>" not in err


def test_errors_name_the_file_not_string(cfg, capsys):
    """Errors without a line (a bad destination) still name the config file."""
    assert main(["config", "get", "bad;host", "-F", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert str(cfg) in err and "<string>" not in err


def test_get_follows_requested_openssh(tmp_path, capsys):
    """--openssh picks the release: a 10.0 keyword is an error for 9.2 and fine for 10.0."""
    p = tmp_path / "config"
    p.write_text("Host web\n  Tag prod\nMatch tagged prod\n  Port 2400\n")
    assert main(["config", "get", "web", "port", "--openssh", "9.2", "-F", str(p)]) == 1
    assert "Bad configuration option: tag" in capsys.readouterr().err
    assert main(["config", "get", "web", "port", "--openssh", "10.0", "-F", str(p)]) == 0
    assert capsys.readouterr().out == "port 2400\n"


def test_non_utf8_values_print_as_bytes(tmp_path):
    """Bytes that are not UTF-8 come out as the same bytes ssh -G prints."""
    p = tmp_path / "config"
    p.write_bytes(b"Host web\n  User caf\xe9\n")
    res = subprocess.run([sys.executable, "-m", "sshpipe", "config", "get", "web", "user",
                          "-F", str(p)], capture_output=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"user caf\xe9\n"


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh to compare with")
def test_diff_against_local_ssh(cfg, capsys):
    """`config diff HOST` compares with the local ssh -G: same output, exit 0."""
    assert main(["config", "diff", "web", "-F", str(cfg)]) == 0
    assert "same as ssh -G" in capsys.readouterr().err
