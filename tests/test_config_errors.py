"""Errors: what OpenSSH rejects raises SSHConfigError with file and line; validate() lists all."""
from __future__ import annotations

import os
import pickle

import pytest

from sshpipe.config import SSHConfig, load, loads
from sshpipe.errors import SSHConfigError


@pytest.mark.parametrize("text, line, words", [
    ("Bogus yes\n", 1, "Bad configuration option: bogus"),
    ("Host a\n  Port\n", 2, 'no argument after keyword "port"'),
    ("Compression maybe\n", 1, "unsupported option"),
    ("Port 65536\n", 1, "Bad port"),
    ("Port 0\n", 1, "Bad port"),
    ("\n\nMatch\n", 3, "no argument after keyword"),
    ("Match host\n", 1, "Missing Match criteria"),
    ("Match exotic x\n", 1, "Unsupported Match attribute"),
    ("Port 1 2\n", 1, "extra arguments"),
    ('User "x\n', 1, "invalid quotes"),
    ("ServerAliveInterval 5q\n", 1, "invalid time value"),
    ("Ciphers rot13\n", 1, "Bad SSH2 cipher spec"),
    ("LocalForward 80\n", 1, "Missing target argument"),
    ("SetEnv NOEQUALS\n", 1, "Invalid SetEnv"),
    ("UserKnownHostsFile a none\n", 1, '"none" argument must appear alone'),
])
def test_load_rejects_with_line(text, line, words):
    """Each rejected construct raises a ValueError naming the line and the reason."""
    with pytest.raises(SSHConfigError) as info:
        loads(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.line == line and words in err.reason
    assert str(err).startswith(f"<string>:{line}: ")


def test_error_names_the_file(tmp_path):
    """Errors from load(path) carry the path, and str() reads path:line: reason."""
    p = tmp_path / "cfg"
    p.write_text("Host a\n  Nonsense 1\n")
    with pytest.raises(SSHConfigError) as info:
        load(str(p))
    assert info.value.path == str(p) and info.value.line == 2
    assert str(info.value) == f"{p}:2: Bad configuration option: nonsense"


def test_ignoreunknown_covers_later_unknown_keywords():
    """An IgnoreUnknown line before an unknown keyword makes it acceptable."""
    config = loads("IgnoreUnknown UseKeychain,Foo*\nUseKeychain yes\nFooBar 1\n")
    assert config.resolve("x")["ignoreunknown"] == "UseKeychain,Foo*"


def test_ignoreunknown_in_unmatched_block_does_not_apply():
    """IgnoreUnknown only counts where it applies: resolve() still refuses."""
    config = loads("Host other\n  IgnoreUnknown Foo\nHost *\n  Foo 1\n")
    with pytest.raises(SSHConfigError) as info:
        config.resolve("x")
    assert info.value.line == 4


def test_validate_returns_every_problem():
    """validate() reports all problems at once, in file order."""
    config = SSHConfig("Bogus 1\nPort x\nHost a\n  Compression maybe\nPort 22\n")
    problems = config.validate()
    assert [p.line for p in problems] == [1, 2, 4]


def test_include_loop_is_rejected(tmp_path):
    """A file that includes itself fails with the include depth error."""
    loop = tmp_path / "loop"
    loop.write_text(f"Include {loop}\n")
    with pytest.raises(SSHConfigError) as info:
        load(str(loop))
    assert "Too many recursive configuration includes" in info.value.reason


def test_include_errors_point_into_the_included_file(tmp_path):
    """A bad line in an included file is reported with that file and line."""
    inc = tmp_path / "inc"
    inc.write_text("Port 22\nWhatever 1\n")
    main = tmp_path / "main"
    main.write_text(f"Host nomatch\n  Include {inc}\n")
    with pytest.raises(SSHConfigError) as info:
        load(str(main))
    assert info.value.path == str(inc) and info.value.line == 2


def test_include_permissions_checked(tmp_path):
    """World-writable includes are refused; group-writable ones only outside a private group.

    Debian's rule (``secure_permissions()``): a group-writable file is fine when
    its group has exactly one member, the file's owner.
    """
    from sshpipe.config import StaticAccounts

    inc = tmp_path / "inc"
    inc.write_text("Port 22\n")
    uid, gid = os.getuid(), inc.stat().st_gid
    private = StaticAccounts.from_text(f"me:x:{uid}:{gid}::/home/me:/bin/sh\n", f"g:x:{gid}:\n")
    shared = StaticAccounts.from_text(f"me:x:{uid}:{gid}::/home/me:/bin/sh\n"
                                      f"other:x:{uid + 1}:{gid}::/home/o:/bin/sh\n",
                                      f"g:x:{gid}:\n")
    config = loads(f"Include {inc}\n", accounts=private)
    os.chmod(inc, 0o666)
    with pytest.raises(SSHConfigError, match="Bad owner or permissions") as info:
        config.resolve("x")
    assert info.value.line == 1
    os.chmod(inc, 0o664)
    assert config.resolve("x", accounts=private)["port"] == "22"
    with pytest.raises(SSHConfigError, match="Bad owner or permissions"):
        config.resolve("x", accounts=shared)


def test_match_exec_needs_permission():
    """Match exec is refused unless allow_exec=True; with it the command decides."""
    config = loads('Match exec "test %h = web"\n  Port 2\n')
    with pytest.raises(SSHConfigError, match="allow_exec"):
        config.resolve("web")
    assert config.resolve("web", allow_exec=True)["port"] == "2"
    assert config.resolve("db", allow_exec=True)["port"] == "22"


def test_match_exec_skipped_after_failed_criterion():
    """An exec after a criterion that already failed is neither run nor refused."""
    config = loads("Match host nomatch exec false\n  Port 2\n")
    assert config.resolve("web")["port"] == "22"


def test_resolve_rejects_bad_host_and_user():
    """Host names and users with shell metacharacters are refused, as ssh does."""
    config = loads("")
    with pytest.raises(SSHConfigError):
        config.resolve("a;b")
    with pytest.raises(SSHConfigError):
        config.resolve("a", user="-oProxyCommand=x")


def test_error_pickles():
    """SSHConfigError keeps path, line and reason through pickling."""
    err = SSHConfigError("bad", "/f", 3)
    back = pickle.loads(pickle.dumps(err))
    assert (back.reason, back.path, back.line, str(back)) == ("bad", "/f", 3, "/f:3: bad")


def test_ignoreunknown_applies_across_include(tmp_path):
    """IgnoreUnknown read before an Include covers unknown keywords in the included file."""
    inc = tmp_path / "inc"
    inc.write_text("UseKeychain yes\n")
    config = loads(f"IgnoreUnknown UseKeychain\nInclude {inc}\n")
    assert config.resolve("x")["ignoreunknown"] == "UseKeychain"
    with pytest.raises(SSHConfigError) as info:
        loads(f"Include {inc}\nIgnoreUnknown UseKeychain\n")
    assert info.value.path == str(inc) and info.value.line == 1
