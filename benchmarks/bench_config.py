"""Benchmark: parse a 2,000-line ssh config and resolve 1,000 host names.

sshpipe (``sshpipe.loads`` + ``SSHConfig.resolve``) and paramiko
(``paramiko.SSHConfig.from_text`` + ``lookup``) run on the same text and the
same names in the same process.  Prints a table, or JSON with ``--json``.
The target is at least 3x paramiko's lookups per second.

Usage::

    python benchmarks/bench_config.py [--lines 2000] [--hosts 1000] [--repeat 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import random
import time
from typing import Callable, Dict, List, Tuple

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


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(lines: int, hosts_count: int, repeat: int) -> Dict[str, object]:
    text, names = make_config(lines)
    hosts = pick_hosts(names, hosts_count)
    results: Dict[str, object] = {"config_lines": text.count("\n"), "hosts": len(hosts)}

    sp_parse = _best(lambda: sshpipe.loads(text), repeat)
    sp_cfg = sshpipe.loads(text)
    kw = dict(local_user="bench", home="/home/bench", local_hostname="bench.example.com",
              environ={"HOME": "/home/bench"})
    sp_resolve = _best(lambda: [sp_cfg.resolve(h, **kw) for h in hosts], repeat)

    pm_parse = _best(lambda: paramiko.SSHConfig.from_text(text), repeat)
    pm_cfg = paramiko.SSHConfig.from_text(text)
    pm_resolve = _best(lambda: [pm_cfg.lookup(h) for h in hosts], repeat)

    results["sshpipe"] = {"parse_s": sp_parse, "resolve_s": sp_resolve,
                          "lookups_per_s": len(hosts) / sp_resolve}
    results["paramiko"] = {"parse_s": pm_parse, "resolve_s": pm_resolve,
                           "lookups_per_s": len(hosts) / pm_resolve}
    results["speedup_lookups"] = pm_resolve / sp_resolve
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    res = run(args.lines, args.hosts, args.repeat)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    sp, pm = res["sshpipe"], res["paramiko"]
    print(f"config: {res['config_lines']} lines, {res['hosts']} host names, best of {args.repeat}")
    print(f"{'':10} {'parse (ms)':>11} {'resolve all (ms)':>17} {'lookups/s':>11}")
    for name, r in (("sshpipe", sp), ("paramiko", pm)):
        print(f"{name:10} {r['parse_s'] * 1e3:11.1f} {r['resolve_s'] * 1e3:17.1f} "
              f"{r['lookups_per_s']:11.0f}")
    print(f"sshpipe lookups/s = {res['speedup_lookups']:.1f}x paramiko")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
