"""resolve() against the oracle: ``ssh -G`` on every scenario in tests/data/ssh_config.

Each scenario file starts with comment lines the test reads (ssh ignores
them): ``# hosts: ...`` (names to resolve), optionally ``# user: U`` /
``# port: P`` (as ``ssh -l``/``-p``), ``# env: K=V ...``, ``# allow-exec``
and ``# reject`` (ssh must refuse it, and so must we).  A directory
``<scenario>.d/`` next to it is copied into the test home's ``~/.ssh`` so
that Include paths resolve the same way for both sides.
"""
from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from sshpipe.config import SSHConfig, load
from sshpipe.config._oracle import Oracle
from sshpipe.errors import SSHConfigError

DATA = Path(__file__).parent / "data" / "ssh_config"
SCENARIOS = sorted(p.name for p in DATA.iterdir() if p.is_file())
USER = "tester"
LOCAL_HOSTNAME = "oracle.example.com"
ETC_HOSTS = {"web.example.com": "10.1.2.3"}

pytestmark = pytest.mark.skipif(not Oracle.available(), reason="no ssh binary to compare with")


def _header(text: str) -> dict:
    meta = {"hosts": ["x"], "user": None, "port": None, "env": {}, "allow_exec": False,
            "reject": False}
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
            meta["env"] = dict(item.split("=", 1) for item in value.split())
        elif key == "allow-exec":
            meta["allow_exec"] = True
        elif key == "reject":
            meta["reject"] = True
    return meta


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    (home / ".ssh").mkdir()
    o = Oracle(str(home), user=USER, local_hostname=LOCAL_HOSTNAME, hosts=ETC_HOSTS)
    yield o
    o.close()


def _prepare_home(oracle: Oracle, scenario: str) -> None:
    ssh_dir = Path(oracle.home) / ".ssh"
    shutil.rmtree(ssh_dir)
    companion = DATA / f"{scenario}.d"
    if companion.is_dir():
        shutil.copytree(companion, ssh_dir)
    else:
        ssh_dir.mkdir()


def _environ(oracle: Oracle, extra: dict) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": oracle.home, "USER": oracle.user,
           "LOGNAME": oracle.user}
    env.update(extra)
    return env


def _resolver(name: str):
    return name if name in ETC_HOSTS else None


def test_enough_scenarios():
    """The data set has at least 60 scenario files, named by behaviour."""
    assert len(SCENARIOS) >= 60
    assert all(name == name.lower() and " " not in name for name in SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_resolve_matches_ssh_G(oracle, scenario):
    """Every key of resolve() equals ssh -G for every host of the scenario."""
    path = DATA / scenario
    text = path.read_text()
    meta = _header(text)
    _prepare_home(oracle, scenario)
    runs = [(h, meta["user"], meta["port"]) for h in meta["hosts"]]
    results = oracle.run(str(path), runs, env=meta["env"])
    env = _environ(oracle, meta["env"])
    for (host, user, port), want in zip(runs, results):
        def mine():
            config = load(str(path), home=oracle.home)
            return config.resolve(host, user=user, port=port, local_user=oracle.user,
                                  home=oracle.home, local_hostname=oracle.local_hostname,
                                  environ=env, allow_exec=meta["allow_exec"],
                                  resolver=_resolver)
        if not want.ok:
            assert meta["reject"], f"ssh -G rejected {host}: {want.stderr}"
            with pytest.raises(SSHConfigError):
                mine()
            continue
        assert not meta["reject"], f"ssh -G accepted {scenario} for {host}"
        got = mine()
        assert got == want.values, (host, {k: (got.get(k), want.values.get(k))
                                           for k in set(got) | set(want.values)
                                           if got.get(k) != want.values.get(k)})
        assert list(got) == list(want.values), "keys in ssh -G order"


def test_oracle_sees_controlled_identity(oracle):
    """The oracle really runs with the fixed user, home and host name."""
    _prepare_home(oracle, "none")
    (Path(oracle.home) / "cfg").write_text("ControlPath ~/%u@%L\n")
    [res] = oracle.run(str(Path(oracle.home) / "cfg"), ["x"])
    assert res.values["user"] == USER
    assert res.values["controlpath"] == f"{oracle.home}/{USER}@oracle"


def test_get_keeps_seed_contract(oracle):
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
