"""resolve() against the oracles: real ``ssh -G`` on every scenario in tests/data/ssh_config.

Two oracles: the system's OpenSSH 9.2 (Debian 12) and, when
``scripts/oracle-root.sh`` could build it, OpenSSH 10.0 in a Debian 13 root
(tests marked ``openssh10``; skipped with the reason otherwise).  Each
scenario runs against each oracle with ``resolve(openssh=<that release>)``.

Each scenario file starts with comment lines the test reads (ssh ignores
them):

- ``# hosts: ...`` names to resolve (shell words);
- ``# user: U`` / ``# port: P`` as ``ssh -l``/``-p``; ``# command: CMD`` as
  ``ssh HOST CMD``; ``# tag: T`` as ``ssh -P T``;
- ``# env: K=V ...`` environment; ``# allow-exec`` runs Match exec;
- ``# reject`` (ssh must refuse it, and so must we), or ``# reject: 9.2``
  for the listed releases only;
- ``# versions: 10.0`` runs only against the listed releases;
- ``# setup: CMD`` a shell command run in the test home's ``~/.ssh`` first
  (FIFOs, symlinks, modes: what git cannot store).

A directory ``<scenario>.d/`` next to it is copied into ``~/.ssh`` so that
Include paths resolve the same way for both sides.  Names resolve through the
same table on both sides: ssh reads it from the namespace's /etc/hosts,
resolve() from ``resolver=``.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from config_oracle import ORACLES, USER, Oracle, differences, make_oracle, resolve_like
from sshpipe.config import SSHConfig, load
from sshpipe.errors import SSHConfigError

DATA = Path(__file__).parent / "data" / "ssh_config"
SCENARIOS = sorted(p.name for p in DATA.iterdir() if p.is_file())


def _header(text: str) -> dict:
    meta = {"hosts": ["x"], "user": None, "port": None, "env": {}, "allow_exec": False,
            "reject": set(), "versions": set(ORACLES), "setup": [], "command": None,
            "tag": None}
    for line in text.splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(":")
        key = key.strip()
        value = value.strip()
        if key == "hosts":
            meta["hosts"] = shlex.split(value)
        elif key == "user":
            meta["user"] = value
        elif key == "port":
            meta["port"] = int(value)
        elif key == "env":
            meta["env"] = dict(item.split("=", 1) for item in shlex.split(value))
        elif key == "allow-exec":
            meta["allow_exec"] = True
        elif key == "reject":
            meta["reject"] = set(value.split()) if value else set(ORACLES)
        elif key == "versions":
            meta["versions"] = set(value.split())
        elif key == "setup":
            meta["setup"].append(value)
        elif key == "command":
            meta["command"] = value
        elif key == "tag":
            meta["tag"] = value
    return meta


@pytest.fixture(scope="module", params=[
    "9.2", pytest.param("10.0", marks=pytest.mark.openssh10)])
def oracle(request, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    (home / ".ssh").mkdir()
    o = make_oracle(request.param, str(home))
    o.version = request.param  # type: ignore[attr-defined]
    yield o
    o.close()


def prepare_home(oracle: Oracle, scenario: str, setup=()) -> None:
    ssh_dir = Path(oracle.home) / ".ssh"
    shutil.rmtree(ssh_dir)
    companion = DATA / f"{scenario}.d"
    if companion.is_dir():
        shutil.copytree(companion, ssh_dir, symlinks=True)
    else:
        ssh_dir.mkdir()
    for cmd in setup:
        subprocess.run(["sh", "-c", cmd], cwd=ssh_dir, check=True, timeout=30)


def test_enough_scenarios():
    """The data set has at least 60 scenario files, named by behaviour."""
    assert len(SCENARIOS) >= 60
    assert all(name == name.lower() and " " not in name for name in SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_resolve_matches_ssh_G(oracle, scenario):
    """Every key of resolve() equals ssh -G for every host of the scenario."""
    path = DATA / scenario
    text = path.read_text(errors="surrogateescape")
    meta = _header(text)
    if oracle.version not in meta["versions"]:
        pytest.skip(f"scenario for OpenSSH {' '.join(sorted(meta['versions']))}")
    prepare_home(oracle, scenario, meta["setup"])
    runs = [(h, meta["user"], meta["port"]) for h in meta["hosts"]]
    extra = ["-P", meta["tag"]] if meta["tag"] else []
    results = oracle.run(str(path), runs, env=meta["env"], extra=extra,
                         command=meta["command"])
    rejected = oracle.version in meta["reject"]
    for (host, user, port), want in zip(runs, results):
        def mine(host=host, user=user, port=port):  # this run's values, bound now
            config = load(str(path), home=oracle.home, openssh=oracle.release,
                          accounts=oracle.accounts())
            return resolve_like(oracle, config, host, user=user, port=port, env=meta["env"],
                                allow_exec=meta["allow_exec"], command=meta["command"],
                                tag=meta["tag"])
        if not want.ok:
            assert rejected, f"ssh -G rejected {host}: {want.stderr}"
            with pytest.raises(SSHConfigError):
                mine()
            continue
        assert not rejected, f"ssh -G accepted {scenario} for {host}"
        got = mine()
        assert differences(got, want.values) == {}, host
        assert list(got) == list(want.values), "keys in ssh -G order"


def test_oracle_sees_controlled_identity(oracle):
    """The oracle really runs with the fixed user, home and host name."""
    prepare_home(oracle, "none")
    (Path(oracle.home) / "cfg").write_text("ControlPath ~/%u@%L\n")
    [res] = oracle.run(str(Path(oracle.home) / "cfg"), ["x"])
    assert res.values["user"] == USER
    assert res.values["controlpath"] == f"{oracle.home}/{USER}@oracle"
    assert oracle.release.startswith(f"OpenSSH_{oracle.version}")


def test_directory_as_config_reads_empty(oracle, tmp_path):
    """``-F`` naming a directory: ssh reads it as an empty file, and so does load()."""
    directory = tmp_path / "confdir"
    directory.mkdir()
    prepare_home(oracle, "none")
    [want] = oracle.run(str(directory), ["web"])
    assert want.ok, want.stderr
    config = load(str(directory))
    assert differences(resolve_like(oracle, config, "web"), want.values) == {}


def test_get_keeps_seed_contract():
    """get() returns one resolved value; the parameter name is case-insensitive."""
    config = SSHConfig("Host web\n  HostName web.example.com\n  Port 2222\n")
    assert config.get("web", "HostName") == "web.example.com"
    assert config.get("web", "PORT") == "2222"
    assert config.get("web", "IdentityFile2")[0] == "~/.ssh/id_rsa"
    assert config.get("web", "ProxyCommand", "direct") == "direct"


def test_expand_for_connect_rules():
    """IdentityFile/ProxyCommand/LocalCommand get the expansion ssh applies when connecting."""
    from sshpipe.config import expand_for_connect

    config = SSHConfig("Host web\n  HostName w.example.com\n  User bob\n  Port 2200\n"
                       "  IdentityFile ~/.ssh/%h-%r\n  ProxyCommand nc %h %p\n")
    kw = dict(local_user="me", home="/home/me", local_hostname="box.example.com",
              environ={"KEYS": "/k"})
    s = config.resolve("web", **kw)
    assert s["identityfile"] == ["~/.ssh/%h-%r"]          # as ssh -G prints it
    assert expand_for_connect(s, s["identityfile"][0], **kw) == "/home/me/.ssh/w.example.com-bob"
    assert expand_for_connect(s, "${KEYS}/%u@%L", **kw) == "/k/me@box"
    assert expand_for_connect(s, s["proxycommand"], "proxy", **kw) == "nc w.example.com 2200"
    assert expand_for_connect(s, "echo %T %n", "local", **kw) == "echo NONE web"
    with pytest.raises(SSHConfigError):
        expand_for_connect(s, "nc %u", "proxy", **kw)


def test_openssh_auto_follows_the_local_ssh():
    """openssh="auto" (the default) picks the release of the ssh on PATH."""
    from sshpipe.config._versions import get_version, local_release

    release = local_release()
    if release is None:
        pytest.skip("no ssh on PATH")
    assert get_version("auto").release == release
    assert release.startswith("OpenSSH_" + get_version("auto").name)


def test_unknown_openssh_value_is_refused():
    """openssh= takes 9.2, 9.9, 10.0, auto or a release string; anything else is an error."""
    with pytest.raises(ValueError, match="unsupported openssh"):
        SSHConfig("").resolve("x", openssh="8.1")
    with pytest.raises(ValueError, match="older than the oldest supported"):
        SSHConfig("").resolve("x", openssh="OpenSSH_8.4p1")
    assert SSHConfig("").resolve("x", openssh="OpenSSH_9.3p1")["host"] == "x"


def test_newer_keywords_are_refused_by_older_releases():
    """A keyword newer than the chosen release is the same error ssh gives."""
    for text, since in [("Tag t\n", "9.9"), ("ChannelTimeout session=5m\n", "9.9"),
                        ("ObscureKeystrokeTiming no\n", "9.9"), ("VersionAddendum x\n", "10.0")]:
        for version in ("9.2", "9.9", "10.0"):
            config = SSHConfig(text, openssh=version)
            if tuple(map(int, version.split("."))) < tuple(map(int, since.split("."))):
                with pytest.raises(SSHConfigError, match="Bad configuration option"):
                    config.resolve("x")
            else:
                assert config.resolve("x")["host"] == "x"
