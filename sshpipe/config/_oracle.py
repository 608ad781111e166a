"""Run the real ``ssh -G`` under controlled local facts (tests, benchmarks).

``ssh -G`` reads the local user name and home from the password database and
``%l``/``%L`` from ``gethostname()``.  To compare it with
:meth:`SSHConfig.resolve` reproducibly, :class:`Oracle` runs it in private
mount and UTS namespaces (``unshare``) where ``/etc/passwd``, ``/etc/hosts``
and ``/etc/resolv.conf`` are bind-mounted from a private temporary directory
and the host name is set: nothing outside the namespace changes.  Where
namespaces are not available it falls back to the real user, home and host
name, which are then what callers pass to ``resolve()``.

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

from sshpipe.config._options import LIST_KEYS

__all__ = ["Oracle", "OracleResult", "parse_dump"]

_ONELINE = frozenset({"canonicaldomains", "canonicalizepermittedcnames", "globalknownhostsfile",
                      "userknownhostsfile", "logverbose", "permitremoteopen"})


def parse_dump(text: str) -> Dict[str, object]:
    """Turn ``ssh -G`` output into the shape :meth:`SSHConfig.resolve` returns."""
    out: Dict[str, object] = {}
    for line in text.splitlines():
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


class Oracle:
    """``ssh -G`` with a fixed user name, home and local host name."""

    def __init__(self, home: str, user: str = "sshpipe", local_hostname: str = "oracle.example.com",
                 hosts: Optional[Mapping[str, str]] = None, ssh: str = "ssh"):
        self.ssh = shutil.which(ssh) or ssh
        self._tmp = tempfile.mkdtemp(prefix="sshpipe-oracle-")
        self.namespaced = self._namespaces_work()
        if self.namespaced:
            self.home = home
            self.user = user
            self.local_hostname = local_hostname
        else:
            pw = pwd.getpwuid(os.getuid())
            self.home, self.user = pw.pw_dir, pw.pw_name
            self.local_hostname = socket.gethostname()
        uid = os.getuid() if not self.namespaced else 0
        with open(os.path.join(self._tmp, "passwd"), "w") as f:
            f.write(f"{self.user}:x:{uid}:0:oracle:{self.home}:/bin/sh\n")
        with open(os.path.join(self._tmp, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n")
            for name, addr in (hosts or {}).items():
                f.write(f"{addr} {name}\n")
        with open(os.path.join(self._tmp, "resolv.conf"), "w") as f:
            # a closed loopback port: DNS fails fast instead of leaving the box
            f.write("nameserver 127.0.0.9\noptions timeout:1 attempts:1\n")

    @staticmethod
    def available() -> bool:
        """True when an ``ssh`` binary is there to ask."""
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

    def run(self, config: str, hosts: Sequence[Union[str, Tuple[str, Optional[str], Optional[int]]]],
            env: Optional[Mapping[str, str]] = None, timeout: float = 60) -> List[OracleResult]:
        """``ssh -G -F config`` for each host (or (host, user, port)) in one go."""
        script = ["set +e"]
        if self.namespaced:
            t = shlex.quote(self._tmp)
            script += [f"mount --bind {t}/passwd /etc/passwd",
                       f"mount --bind {t}/hosts /etc/hosts",
                       f"mount --bind {t}/resolv.conf /etc/resolv.conf",
                       f"hostname {shlex.quote(self.local_hostname)}"]
        for i, item in enumerate(hosts):
            host, user, port = (item, None, None) if isinstance(item, str) else item
            cmd = [self.ssh, "-G", "-F", config]
            if user is not None:
                cmd += ["-l", user]
            if port is not None:
                cmd += ["-p", str(port)]
            cmd += ["--", host]
            q = " ".join(shlex.quote(c) for c in cmd)
            out = shlex.quote(os.path.join(self._tmp, f"out.{i}"))
            err = shlex.quote(os.path.join(self._tmp, f"err.{i}"))
            script.append(f"{q} </dev/null >{out} 2>{err}; echo $? >{out}.rc")
        environ = {"PATH": "/usr/bin:/bin", "HOME": self.home, "USER": self.user,
                   "LOGNAME": self.user}
        if env:
            environ.update(env)
        argv = (self._unshare() if self.namespaced else []) + ["sh", "-c", "\n".join(script)]
        subprocess.run(argv, env=environ, timeout=timeout, check=False,
                       stdin=subprocess.DEVNULL, capture_output=True)
        results = []
        for i in range(len(hosts)):
            base = os.path.join(self._tmp, f"out.{i}")
            with open(base) as f:
                text = f.read()
            with open(os.path.join(self._tmp, f"err.{i}")) as f:
                err = "".join(line for line in f if not line.startswith("Pseudo-terminal"))
            with open(base + ".rc") as f:
                rc = int(f.read().strip() or "255")
            results.append(OracleResult(rc == 0, parse_dump(text) if rc == 0 else {}, err, rc))
        return results
