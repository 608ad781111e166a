"""The real ``ssh -G``, run under controlled local facts: the tests' oracle.

``ssh -G`` reads the local user name and home from the password database,
``%l``/``%L`` from ``gethostname()``, names from ``/etc/hosts`` and DNS.  To
compare it with :meth:`SSHConfig.resolve` reproducibly, :class:`Oracle` runs
it in private mount and UTS namespaces (``unshare``) where ``/etc/passwd``,
``/etc/group``, ``/etc/hosts`` and ``/etc/resolv.conf`` are bind-mounted from
a private temporary directory (DNS points at a closed loopback port, so a
name not in the hosts file fails at once) and the host name is set: nothing
outside the namespace changes.  Where namespaces are not available it falls
back to the real user, home and host name, which are then what callers pass
to ``resolve()``.

``root`` runs another OpenSSH: the ``ssh`` of a Debian root made by
``scripts/oracle-root.sh`` (Debian 13, OpenSSH 10.0), entered with
``chroot`` inside the same namespaces; ``/tmp``, ``/dev`` and the
directories of the files under test are bind-mounted into it.

Many host names are resolved per ``unshare`` call (one shell loop), since
starting the namespace costs more than ``ssh -G`` itself.
"""
from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from sshpipe.config import LIST_KEYS
from sshpipe.config._accounts import StaticAccounts

__all__ = ["Oracle", "OracleResult", "parse_dump", "differences", "DEFAULT_ROOT", "ETC_HOSTS",
           "GROUPS", "ORACLES", "make_oracle", "resolver", "resolve_like"]

DEFAULT_ROOT = os.environ.get("SSHPIPE_ORACLE_ROOT", "/var/cache/sshpipe-oracle/trixie")

_ONELINE = frozenset({"canonicaldomains", "canonicalizepermittedcnames", "globalknownhostsfile",
                      "userknownhostsfile", "logverbose", "permitremoteopen", "channeltimeout"})


def differences(got: Mapping[str, object], want: Mapping[str, object]) -> Dict[str, tuple]:
    """Keys where resolve() and ssh -G differ, as {key: (ours, ssh's)}.

    ssh -G prints some lists on one line joined by spaces, so an entry that
    itself holds a space ("/etc/a b") cannot be told apart there: those keys
    are compared as the printed line.  Key order is compared separately.
    """
    out = {}
    for key in set(got) | set(want):
        a, b = got.get(key), want.get(key)
        if key in _ONELINE and isinstance(a, list) and isinstance(b, list):
            if " ".join(a) == " ".join(b):
                continue
        if a != b:
            out[key] = (a, b)
    return out


def parse_dump(text: str) -> Dict[str, object]:
    """Turn ``ssh -G`` output into the shape :meth:`SSHConfig.resolve` returns."""
    out: Dict[str, object] = {}
    for line in text.split("\n"):     # only "\n" ends a line: a value may hold a "\r"
        if not line:
            continue
        key, _, value = line.partition(" ")
        key = key.lower()
        if key in _ONELINE:
            out[key] = value.split(" ")
        elif key in LIST_KEYS:
            out.setdefault(key, []).append(value)  # type: ignore[union-attr]
        else:
            out[key] = value
    return out


@dataclass
class OracleResult:
    """One ``ssh -G`` run: the parsed output, or the error ssh printed."""

    ok: bool
    values: Dict[str, object]
    stderr: str
    returncode: int


Item = Union[str, Tuple[str, Optional[str], Optional[int]]]


class Oracle:
    """``ssh -G`` with a fixed user name, home, local host name, accounts and hosts."""

    def __init__(self, home: str, user: str = "sshpipe", local_hostname: str = "oracle.example.com",
                 hosts: Optional[Mapping[str, str]] = None, ssh: str = "ssh",
                 root: Optional[str] = None, groups: str = ""):
        self.root = root
        self.ssh = "/usr/bin/ssh" if root else (shutil.which(ssh) or ssh)
        self._tmp = tempfile.mkdtemp(prefix="sshpipe-oracle-")
        self.namespaced = self._namespaces_work()
        if root and not self.namespaced:
            raise RuntimeError("an oracle root needs mount namespaces")
        if self.namespaced:
            self.home = home
            self.user = user
            self.local_hostname = local_hostname
        else:
            pw = pwd.getpwuid(os.getuid())
            self.home, self.user = pw.pw_dir, pw.pw_name
            self.local_hostname = socket.gethostname()
        uid = os.getuid()
        self.passwd_text = f"{self.user}:x:{uid}:0:oracle:{self.home}:/bin/sh\n"
        self.group_text = groups or "root:x:0:\n"
        self._write("passwd", self.passwd_text)
        self._write("group", self.group_text)
        lines = ["127.0.0.1 localhost"]
        for name, addr in (hosts or {}).items():
            lines.append(f"{addr} {name}")
        self._write("hosts", "\n".join(lines) + "\n")
        # a closed loopback port: DNS fails fast instead of leaving the box
        self._write("resolv.conf", "nameserver 127.0.0.9\noptions timeout:1 attempts:1\n")
        self.release = self._release()

    def accounts(self) -> StaticAccounts:
        """The same password and group entries ssh sees, for resolve(accounts=...)."""
        if not self.namespaced:
            raise RuntimeError("without namespaces ssh reads the real databases")
        return StaticAccounts.from_text(self.passwd_text, self.group_text)

    def _write(self, name: str, text: str) -> None:
        with open(os.path.join(self._tmp, name), "w") as f:
            f.write(text)

    @staticmethod
    def available(root: Optional[str] = None) -> bool:
        """True when there is an ``ssh`` to ask (in ``root`` when given)."""
        if root is not None:
            return os.path.isfile(os.path.join(root, ".sshpipe-ready")) and \
                os.access(os.path.join(root, "usr/bin/ssh"), os.X_OK)
        return shutil.which("ssh") is not None

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _namespaces_work(self) -> bool:
        if shutil.which("unshare") is None:
            return False
        try:
            res = subprocess.run(self._unshare() + ["true"], capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return False
        return res.returncode == 0

    def _unshare(self) -> List[str]:
        base = ["unshare", "--mount", "--uts"]
        if os.geteuid() != 0:
            base.insert(1, "--map-root-user")
        return base

    def _release(self) -> str:
        [res] = self._script(["-V"], [], timeout=30)
        return (res[2] or res[1]).strip().split(",", 1)[0]

    def _prologue(self, dirs: Sequence[str]) -> List[str]:
        t = shlex.quote(self._tmp)
        etc = "/etc" if not self.root else os.path.join(self.root, "etc")
        lines = ["set +e"]
        if self.root:
            r = shlex.quote(self.root)
            lines.append(f"mount --bind /dev {r}/dev")
            tops = sorted({"/" + p.strip("/").split("/", 1)[0] for p in list(dirs) + [self._tmp]})
            for top in tops:
                inside = shlex.quote(self.root + top)
                lines.append(f"mkdir -p {inside} && mount --rbind {shlex.quote(top)} {inside}")
        for name in ("passwd", "group", "hosts", "resolv.conf"):
            lines.append(f"mount --bind {t}/{name} {shlex.quote(os.path.join(etc, name))}")
        lines.append(f"hostname {shlex.quote(self.local_hostname)}")
        return lines

    def _script(self, commands: List[str], dirs: Sequence[str],
                env: Optional[Mapping[str, str]] = None,
                timeout: float = 60) -> List[Tuple[int, str, str]]:
        ssh = shlex.quote(self.ssh)
        if self.root:
            ssh = f"chroot {shlex.quote(self.root)} {ssh}"
        script = self._prologue(dirs) if self.namespaced else ["set +e"]
        for i, cmd in enumerate(commands):
            out = shlex.quote(os.path.join(self._tmp, f"out.{i}"))
            err = shlex.quote(os.path.join(self._tmp, f"err.{i}"))
            script.append(f"{ssh} {cmd} </dev/null >{out} 2>{err}; echo $? >{out}.rc")
        environ = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": self.home,
                   "USER": self.user, "LOGNAME": self.user}
        if env:
            environ.update(env)
        argv = (self._unshare() if self.namespaced else []) + ["sh", "-c", "\n".join(script)]
        subprocess.run(argv, env=environ, timeout=timeout, check=False,
                       stdin=subprocess.DEVNULL, capture_output=True)
        results = []
        for i in range(len(commands)):
            base = os.path.join(self._tmp, f"out.{i}")
            with open(base, errors="surrogateescape", newline="") as f:
                text = f.read()
            with open(os.path.join(self._tmp, f"err.{i}"), errors="surrogateescape") as f:
                err = "".join(line for line in f if not line.startswith("Pseudo-terminal"))
            with open(base + ".rc") as f:
                rc = int(f.read().strip() or "255")
            results.append((rc, text, err))
        return results

    def run(self, config: str, hosts: Sequence[Item], env: Optional[Mapping[str, str]] = None,
            timeout: float = 110, extra: Sequence[str] = (),
            command: Optional[str] = None) -> List[OracleResult]:
        """``ssh -G -F config [extra] -- host [command]`` for each host (or (host, user, port))."""
        commands = []
        for item in hosts:
            host, user, port = (item, None, None) if isinstance(item, str) else item
            args = ["-G", "-F", os.path.abspath(config)] + list(extra)
            if user is not None:
                args += ["-l", user]
            if port is not None:
                args += ["-p", str(port)]
            args += ["--", host]
            if command is not None:
                args.append(command)
            commands.append(" ".join(shlex.quote(a) for a in args))
        dirs = [os.path.dirname(os.path.abspath(config)), self.home]
        results = []
        for rc, text, err in self._script(commands, dirs, env, timeout):
            results.append(OracleResult(rc == 0, parse_dump(text) if rc == 0 else {}, err, rc))
        return results


# ---------------------------------------------------------------- shared test setup
# address, official name, aliases: /etc/hosts for ssh, the resolver table for us.
# glibc's files backend compares names exactly (case aside): "web.example.com."
# with its final dot, as CanonicalDomains asks for it, must be listed as such.
ETC_HOSTS = [
    ("10.1.2.3", "web.example.com", "web.example.com."),
    ("10.1.2.4", "db.corp.example.com", "db.example.com", "db.example.com."),
    ("10.1.2.5", "real.example.net", "alias.example.com", "alias.example.com."),
    ("10.1.2.6", "app.dev.example.org"),
]
GROUPS = "root:x:0:\nshared:x:4242:tester,other\n"
USER = "tester"
LOCAL_HOSTNAME = "oracle.example.com"
# release -> Debian root holding that ssh (None: the system's own)
ORACLES = {"9.2": None, "10.0": DEFAULT_ROOT}


def resolver(name: str, family: str = "any"):
    """What glibc's files backend answers for /etc/hosts above (AI_CANONNAME).

    Every entry is IPv4: with ``AddressFamily inet6`` nothing resolves.
    """
    if family == "inet6":
        return None
    for _, official, *aliases in ETC_HOSTS:
        if name.lower() == official or name.lower() in aliases:
            return official
    return None


def resolve_like(oracle: Oracle, config, host: str, **kw):
    """resolve() with exactly the local facts the oracle's ssh sees."""
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": oracle.home, "USER": oracle.user,
           "LOGNAME": oracle.user}
    env.update(kw.pop("env", {}) or {})
    return config.resolve(host, local_user=oracle.user, home=oracle.home,
                          local_hostname=oracle.local_hostname, environ=env,
                          resolver=resolver, accounts=oracle.accounts(),
                          openssh=oracle.release, **kw)


def make_oracle(version: str, home: str) -> Oracle:
    """The oracle for ``version`` with the shared user, hosts and groups; skip if absent."""
    import pytest

    root = ORACLES[version]
    if root is not None and not Oracle.available(root):
        pytest.skip(f"no OpenSSH {version} root at {root}: scripts/oracle-root.sh builds it "
                    "(needs root and Debian's package registry)")
    if root is None and not Oracle.available():
        pytest.skip("no ssh binary to compare with")
    hosts = {}
    for addr, *names in ETC_HOSTS:
        hosts[" ".join(names)] = addr
    return Oracle(home, user=USER, local_hostname=LOCAL_HOSTNAME, hosts=hosts, root=root,
                  groups=GROUPS)


