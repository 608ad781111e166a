"""Lossless parsing: every byte survives load/dump; lines are read as OpenSSH reads them."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

import sshpipe
from sshpipe.config import SSHConfig, dump, dumps, load, loads
from sshpipe.config._lexer import argv_split, lex_line, quote_arg

DATA = Path(__file__).parent / "data" / "ssh_config"
FILES = sorted(p for p in DATA.rglob("*") if p.is_file())


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(DATA)))
def test_data_files_round_trip_byte_identical(path):
    """Every data file (valid or not) comes back byte for byte."""
    raw = path.read_bytes()
    config = SSHConfig(raw.decode("utf-8", "surrogateescape"))
    assert dumps(config).encode("utf-8", "surrogateescape") == raw


def test_load_and_dump_paths_keep_bytes(tmp_path):
    """load()/dump() through files keep CRLF, tabs, trailing blanks and no final newline."""
    raw = b"# c\r\nHost a\t \r\n\tPort=22  \r\n\r\n  user   'b'\t# x"
    src = tmp_path / "in"
    src.write_bytes(raw)
    out = tmp_path / "out"
    dump(load(str(src)), str(out))
    assert out.read_bytes() == raw


def test_dump_to_binary_and_text_files():
    """dump() writes to binary and text file objects alike."""
    config = loads("Host a\n  Port 1\n")
    b = io.BytesIO()
    dump(config, b)
    t = io.StringIO()
    dump(config, t)
    assert b.getvalue() == b"Host a\n  Port 1\n" and t.getvalue() == "Host a\n  Port 1\n"


def test_load_from_file_object():
    """load() accepts an open binary file and decodes it."""
    config = load(io.BytesIO(b"Host a\n  Port 7\n"))
    assert config.resolve("a")["port"] == "7"


def test_invalid_utf8_survives(tmp_path):
    """Bytes that are not UTF-8 inside comments are written back unchanged."""
    raw = b"# caf\xe9\nPort 22\n"
    p = tmp_path / "latin"
    p.write_bytes(raw)
    q = tmp_path / "copy"
    dump(load(str(p)), str(q))
    assert q.read_bytes() == raw


def test_missing_default_file_is_empty(monkeypatch, tmp_path):
    """Loading the default ~/.ssh/config when it is absent gives an empty config."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load()
    assert dumps(config) == "" and config.hosts() == []


def test_missing_explicit_file_raises(tmp_path):
    """An explicit path that does not exist raises SSHConfigError (also a FileNotFoundError)."""
    from sshpipe.errors import SSHConfigError

    with pytest.raises(SSHConfigError) as info:
        load(str(tmp_path / "nope"))
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.path == str(tmp_path / "nope")


def test_seed_module_names(tmp_path):
    """The seed's ``sshpipe.sshconfig`` names work: load/loads/dump/dumps/SSHConfig."""
    from sshpipe import sshconfig
    from sshpipe.sshconfig import SSHConfig as SeedConfig, dump as seed_dump, load as seed_load

    assert SeedConfig is SSHConfig and sshconfig.loads is loads and sshconfig.dumps is dumps
    config = sshconfig.loads("Host a\n  Port 7\n")
    target = tmp_path / "new" / "dir" / "config"
    with pytest.raises(FileNotFoundError):
        seed_dump(config, str(target))
    seed_dump(config, str(target), makedirs=True)
    assert target.read_text() == "Host a\n  Port 7\n"
    assert (target.parent.stat().st_mode & 0o777) == 0o700
    assert seed_load(str(target)).get("a", "port") == "7"
    with pytest.raises(sshconfig.SSHConfigError):
        seed_load(str(tmp_path / "absent"))


def test_public_names_reexported():
    """sshpipe re-exports load/loads/dump/dumps/SSHConfig from sshpipe.config."""
    assert sshpipe.load is load and sshpipe.loads is loads and sshpipe.SSHConfig is SSHConfig
    assert sshpipe.dump is dump and sshpipe.dumps is dumps


@pytest.mark.parametrize("line, keyword, args", [
    ("Port 22", "Port", ["22"]),
    ("Port=22", "Port", ["22"]),
    ("  Port = 22  ", "Port", ["22"]),
    ("\tUser\t'a b'\t", "User", ["a b"]),
    ('IdentityFile "x y" z', "IdentityFile", ["x y", "z"]),
    ("SendEnv A # B", "SendEnv", ["A"]),
    ("SendEnv A#B", "SendEnv", ["A#B"]),
    ("HostName a\\ b", "HostName", ["a b"]),
    ("LocalCommand echo \\x", "LocalCommand", ["echo", "\\x"]),
    ("# comment", None, []),
    ("   ", None, []),
])
def test_lexer_reads_like_openssh(line, keyword, args):
    """Keyword and words come out as OpenSSH's strdelim/argv_split give them."""
    parsed = lex_line(line + "\n", 1)
    assert parsed.keyword == keyword
    assert parsed.args == args


def test_rest_of_line_is_verbatim():
    """ProxyCommand-style options keep the raw text, quotes and '#' included."""
    parsed = lex_line('ProxyCommand = ssh -W "%h:%p" gw # x\n', 1)
    assert parsed.rest == 'ssh -W "%h:%p" gw # x'


def test_unbalanced_quote_is_a_lex_error():
    """An unterminated quote is recorded as an error on the line."""
    assert lex_line('HostName "oops\n', 3).error == "invalid quotes"


@pytest.mark.parametrize("value", ["plain", "two words", 'q"uote', "back\\slash", "#hash", ""])
def test_quote_arg_round_trips_through_argv_split(value):
    """quote_arg() produces a word argv_split() reads back as the same value."""
    words, _, _ = argv_split(quote_arg(value))
    assert words == [value]


def test_lone_carriage_return_is_not_a_line_break():
    """Only \\n ends a line; a bare \\r stays inside the line, as with getline()."""
    config = SSHConfig("Port 1\rUser x\nPort 2\n")
    assert len(config.lines) == 2
