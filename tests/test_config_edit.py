"""Edits change only what they must; new lines follow the file's own style."""
from __future__ import annotations

import pytest

from sshpipe.config import SSHConfig, dumps, loads
from sshpipe.errors import SSHConfigError

BASE = (
    "# my config\n"
    "Host web\n"
    "\tHostName web.example.com   # primary\n"
    "\tPort=2222\n"
    "\n"
    "# database hosts\n"
    "Host db db.*\n"
    "\tUser dba\n"
    "\n"
    "Host *\n"
    "\tServerAliveInterval 30\n"
)


def test_hosts_lists_patterns_in_order():
    """hosts() gives each Host line's patterns in file order."""
    assert loads(BASE).hosts() == [["web"], ["db", "db.*"], ["*"]]


def test_set_replaces_value_keeping_separator_and_comment():
    """set() on an existing keyword changes the value and nothing else on the line."""
    config = loads(BASE)
    config.set("web", "hostname", "web2.example.com")
    config.set("web", "PORT", 2200)
    assert dumps(config) == BASE.replace("web.example.com   #", "web2.example.com   #").replace(
        "Port=2222", "Port=2200")


def test_set_adds_missing_keyword_with_block_indentation():
    """set() of a new keyword appends it after the block's last option, same indent."""
    config = loads(BASE)
    config.set("db db.*", "IdentityFile", "~/.ssh/db key")
    assert '\tUser dba\n\tIdentityFile "~/.ssh/db key"\n\n' in dumps(config)
    assert config.resolve("db")["identityfile"] == ["~/.ssh/db key"]


def test_set_list_on_accumulating_option():
    """A list value for IdentityFile becomes one line per file, in order."""
    config = loads("Host a\n  IdentityFile ~/old\n  User u\n  IdentityFile ~/older\n")
    config.set("a", "identityfile", ["~/k1", "~/k2"])
    assert dumps(config) == "Host a\n  IdentityFile ~/k1\n  IdentityFile ~/k2\n  User u\n"


def test_set_on_missing_host_adds_block():
    """set() for a Host block that does not exist creates it at the end."""
    config = loads(BASE)
    config.set("new", "User", "n")
    assert dumps(config).endswith("\tServerAliveInterval 30\n\nHost new\n\tUser n\n")


def test_unset_removes_only_that_keyword():
    """unset() drops the keyword's lines (aliases included) and keeps the rest."""
    config = loads("Host a\n  IdentityFile x\n  IdentityFile2 y\n  User u\n")
    assert config.unset("a", "identityfile") == 2
    assert dumps(config) == "Host a\n  User u\n"


def test_add_host_follows_crlf_and_tabs():
    """A new block uses the file's line ending and indentation."""
    config = loads("Host a\r\n\tUser x\r\n")
    config.add_host(["b", "c*"], {"HostName": "b.example.com", "ForwardAgent": True})
    assert dumps(config) == ("Host a\r\n\tUser x\r\n\r\nHost b c*\r\n"
                             "\tHostName b.example.com\r\n\tForwardAgent yes\r\n")


def test_add_host_before_keeps_comments_with_their_block():
    """add_host(before=) inserts above the target block and its comment lines."""
    config = loads(BASE)
    config.add_host("cache", {"Port": 6379}, before="db db.*")
    text = dumps(config)
    assert "\nHost cache\n\tPort 6379\n\n# database hosts\nHost db db.*\n" in text
    assert config.resolve("cache")["port"] == "6379"


def test_add_host_to_file_without_final_newline():
    """Appending to a file that lacks a final newline adds one first."""
    config = loads("Host a\n  User x")
    config.add_host("b", {"User": "y"})
    assert dumps(config) == "Host a\n  User x\n\nHost b\n  User y\n"


def test_remove_host_takes_block_and_its_comments():
    """remove_host() deletes the block with the comments directly above it."""
    config = loads(BASE)
    config.remove_host("db db.*")
    assert dumps(config) == ("# my config\nHost web\n\tHostName web.example.com   # primary\n"
                             "\tPort=2222\n\nHost *\n\tServerAliveInterval 30\n")


def test_edit_that_would_break_the_file_is_refused():
    """An edit OpenSSH would reject raises and leaves the text untouched."""
    config = loads(BASE)
    with pytest.raises(SSHConfigError):
        config.set("web", "Port", "99999")
    with pytest.raises(SSHConfigError):
        config.add_host("x", {"NoSuchOption": 1})
    assert dumps(config) == BASE


def test_missing_block_raises_keyerror():
    """unset()/remove_host() on an unknown Host block raise KeyError."""
    config = loads(BASE)
    with pytest.raises(KeyError):
        config.remove_host("nope")
    with pytest.raises(KeyError):
        config.unset("nope", "User")


def test_edits_resolve_like_ssh(tmp_path):
    """After edits the config still resolves with first-value-wins semantics."""
    config = SSHConfig(BASE)
    config.set("*", "User", "everyone")
    config.set("web", "User", "webuser")
    values = config.resolve("web")
    assert values["user"] == "webuser" and values["port"] == "2222"
    assert config.resolve("other")["user"] == "everyone"
