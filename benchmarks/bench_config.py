"""Benchmark: parse a 2,000-line ssh config, resolve host names, and a 1 MB Host line.

sshpipe (``sshpipe.loads`` + ``SSHConfig.resolve``) and paramiko
(``paramiko.SSHConfig.from_text`` + ``lookup``) run on the same text and the
same names in the same process, interleaved (best of ``--repeat`` each, in
CPU seconds of the process).
paramiko's lookups are slow enough that it resolves only the first
``--paramiko-hosts`` names; rates are per lookup.  The targets (issue 16):
parse no slower than paramiko's, lookups at least 100x paramiko's, and no
input quadratic (the 1 MB Host line: linear time, where ssh takes ~25 ms).
Prints a table, or JSON with ``--json``.

Usage::

    python benchmarks/bench_config.py [--lines 2000] [--hosts 1000] [--paramiko-hosts 100]
                                      [--repeat 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from _common import best_time

import paramiko

import sshpipe


def make_config(lines: int, seed: int = 1) -> Tuple[str, List[str]]:
    """A realistic config of about ``lines`` lines and the names it defines."""
    rng = random.Random(seed)
    out: List[str] = ["# generated benchmark config", "IgnoreUnknown UseKeychain", ""]
    names: List[str] = []
    i = 0
    while len(out) < lines - 12:
        i += 1
        kind = rng.random()
        if kind < 0.7:
            name = f"host{i:04d}"
            names.append(name)
            out += [f"Host {name} {name}.corp.example.com",
                    f"    HostName 10.{i // 250}.{i % 250}.{rng.randint(1, 254)}",
                    f"    User user{rng.randint(1, 50)}",
                    f"    Port {rng.choice([22, 2222, 2200])}",
                    f"    IdentityFile ~/.ssh/key{rng.randint(1, 20)}", ""]
        elif kind < 0.9:
            out += [f"Host web{i}-* db{i}-?",
                    "    ServerAliveInterval 30",
                    f"    ProxyJump bastion{rng.randint(1, 5)}.example.com", ""]
        else:
            out += [f"Host *.zone{i}.example.com !bad.zone{i}.example.com",
                    "    ForwardAgent no",
                    "    Compression yes", ""]
    out += ["Host *", "    ServerAliveInterval 60", "    ServerAliveCountMax 3",
            "    ControlMaster auto", "    ControlPath ~/.ssh/cm-%C", "    ControlPersist 10m",
            "    HashKnownHosts yes", "    AddKeysToAgent yes", "    IdentitiesOnly yes", ""]
    return "\n".join(out[:lines]) + "\n", names


def pick_hosts(names: List[str], count: int, seed: int = 2) -> List[str]:
    """Names to resolve: defined hosts, wildcard hits and unknown names."""
    rng = random.Random(seed)
    hosts = []
    for n in range(count):
        r = rng.random()
        if r < 0.6:
            hosts.append(rng.choice(names))
        elif r < 0.8:
            hosts.append(f"web{rng.randint(1, 400)}-{n}")
        else:
            hosts.append(f"unknown{n}.example.org")
    return hosts


# CPU time of this process: on a shared, loaded machine wall-clock time mostly
# measures the wait for a CPU; both libraries are timed the same way.
_clock = time.process_time


def big_host_line(size: int = 1_000_000) -> str:
    """One ``Host`` line of about ``size`` bytes of wildcard patterns."""
    pats = []
    total = 0
    i = 0
    while total < size:
        p = (f"h{i}*x?y", f"h{i}*", f"*.d{i}")[i % 3]
        pats.append(p)
        total += len(p) + 1
        i += 1
    return "Host " + " ".join(pats) + "\n    Port 2\n"


def _ssh_G_seconds(text: str, host: str) -> Optional[float]:
    """Wall time of the local ``ssh -G`` (the whole process) on ``text``: what ssh
    itself takes for the same input, in the same run; None without ssh."""
    ssh = shutil.which("ssh")
    if ssh is None:
        return None
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "config")
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
        start = time.perf_counter()
        subprocess.run([ssh, "-G", "-F", path, host], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False, timeout=120)
        return time.perf_counter() - start


def run(lines: int, hosts_count: int, repeat: int, pm_hosts: int = 100) -> Dict[str, object]:
    text, names = make_config(lines)
    hosts = pick_hosts(names, hosts_count)
    few = hosts[:pm_hosts]
    results: Dict[str, object] = {"config_lines": text.count("\n"), "hosts": len(hosts),
                                  "paramiko_hosts": len(few)}
    kw = dict(local_user="bench", home="/home/bench", local_hostname="bench.example.com",
              environ={"HOME": "/home/bench"}, openssh="9.2")
    sp_cfg = sshpipe.loads(text, openssh="9.2")
    pm_cfg = paramiko.SSHConfig.from_text(text)
    sp_parse = pm_parse = sp_resolve = pm_resolve = float("inf")
    for _ in range(repeat):       # interleaved, so both see the same machine load
        sp_parse = min(sp_parse, best_time(lambda: sshpipe.loads(text, openssh="9.2"), 1, _clock))
        pm_parse = min(pm_parse, best_time(lambda: paramiko.SSHConfig.from_text(text), 1, _clock))
        sp_resolve = min(sp_resolve, best_time(lambda: [sp_cfg.resolve(h, **kw) for h in hosts],
                                               1, _clock))
        pm_resolve = min(pm_resolve, best_time(lambda: [pm_cfg.lookup(h) for h in few], 1,
                                               _clock))
    big = big_host_line()
    t0 = _clock()
    big_cfg = sshpipe.loads(big, openssh="9.2")
    big_parse = _clock() - t0
    t0 = _clock()
    big_cfg.resolve("nomatch.example.org", **kw)
    big_resolve = _clock() - t0
    t0 = _clock()
    pm_big = paramiko.SSHConfig.from_text(big)
    pm_big_parse = _clock() - t0
    t0 = _clock()
    pm_big.lookup("nomatch.example.org")
    pm_big_resolve = _clock() - t0

    results["sshpipe"] = {"parse_s": sp_parse, "resolve_s": sp_resolve,
                          "lookups_per_s": len(hosts) / sp_resolve,
                          "big_line_parse_s": big_parse, "big_line_resolve_s": big_resolve}
    results["paramiko"] = {"parse_s": pm_parse, "resolve_s": pm_resolve,
                           "lookups_per_s": len(few) / pm_resolve,
                           "big_line_parse_s": pm_big_parse, "big_line_resolve_s": pm_big_resolve}
    results["big_line_bytes"] = len(big)
    results["ssh_big_line_s"] = _ssh_G_seconds(big, "nomatch.example.org")
    results["parse_ratio"] = sp_parse / pm_parse
    results["speedup_lookups"] = (len(hosts) / sp_resolve) / (len(few) / pm_resolve)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--paramiko-hosts", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    res = run(args.lines, args.hosts, args.repeat, args.paramiko_hosts)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    sp, pm = res["sshpipe"], res["paramiko"]
    print(f"config: {res['config_lines']} lines; {res['hosts']} names (paramiko: first "
          f"{res['paramiko_hosts']}); best of {args.repeat}, interleaved, CPU time")
    print(f"{'':10} {'parse (ms)':>11} {'lookups/s':>11} {'1 MB Host line: parse (ms)':>27} "
          f"{'lookup (ms)':>12}")
    for name, r in (("sshpipe", sp), ("paramiko", pm)):
        print(f"{name:10} {r['parse_s'] * 1e3:11.1f} {r['lookups_per_s']:11.0f} "
              f"{r['big_line_parse_s'] * 1e3:27.0f} {r['big_line_resolve_s'] * 1e3:12.0f}")
    ssh_big = res["ssh_big_line_s"]
    if isinstance(ssh_big, float):
        print(f"{'ssh -G':10} {'':11} {'':11} {'(whole process, wall)':>27} "
              f"{ssh_big * 1e3:12.0f}")
    print(f"parse: sshpipe/paramiko = {res['parse_ratio']:.2f}; "
          f"lookups: sshpipe = {res['speedup_lookups']:.0f}x paramiko")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
