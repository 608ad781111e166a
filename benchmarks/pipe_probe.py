"""A/B probe of one SSHPipe's hot path: round trip, 1 KiB rate, 1 MiB one-way.

``bench_pipe.py`` compares sshpipe with its peers; this compares sshpipe with
itself: two source trees (a baseline and a change) against one sshd, run in
turn (A B A B ...) so that load from other processes on the machine falls on
both alike, with the median of each side reported.

Usage::

    .venv/bin/python benchmarks/pipe_probe.py --trees /path/base,/path/new --rounds 5
    .venv/bin/python benchmarks/pipe_probe.py --transport paramiko --trees ...

One run of a tree (``--one``, what the driver starts with ``PYTHONPATH=<tree>``)
measures a single pipe and prints JSON; the remote agent is that tree's code
too (the bootstrap ships the caller's sshpipe).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
HANDLERS = os.path.join(HERE, "handlers")
TIMEOUT = 60.0


def one(alias: str, config: str, transport: str, rtt_count: int, small: int, big: int) -> dict:
    """Measure one pipe of the sshpipe on sys.path; return the figures."""
    from sshpipe import SSHPipe

    def make(handler: str) -> SSHPipe:
        return SSHPipe(alias, os.path.join(HANDLERS, handler), config=config,
                       python=sys.executable, transport=transport)

    out: Dict[str, float] = {}
    obj = os.urandom(100)
    with make("echo_handler.py") as pipe:
        for _ in range(200):
            pipe.send(obj)
            pipe.recv(timeout=TIMEOUT)
        samples: List[float] = []
        clock = time.perf_counter
        for _ in range(rtt_count):
            start = clock()
            pipe.send(obj)
            pipe.recv(timeout=TIMEOUT)
            samples.append(clock() - start)
        samples.sort()
        out["rtt_median_us"] = statistics.median(samples) * 1e6
        out["rtt_p90_us"] = samples[int(0.9 * (len(samples) - 1))] * 1e6
    with make("sink_handler.py") as pipe:
        for size, count, key in ((1024, small, "rate_1KiB_per_s"), (1 << 20, big, "big_MBps")):
            payload = os.urandom(size)
            best = None
            for _ in range(2):
                start = time.perf_counter()
                for _ in range(count):
                    pipe.send(payload)
                pipe.flush(timeout=TIMEOUT)
                elapsed = time.perf_counter() - start
                best = elapsed if best is None else min(best, elapsed)
            out[key] = count / best if key.startswith("rate") else count * size / best / 1e6
    return out


def drive(trees: List[str], rounds: int, transport: str, rtt_count: int, small: int,
          big: int) -> None:
    from sshpipe.testing import LocalSSHServer

    results: Dict[str, List[dict]] = {tree: [] for tree in trees}
    with LocalSSHServer(alias="pipe-probe") as server:
        for round_number in range(rounds):
            for tree in trees:
                env = dict(os.environ, PYTHONPATH=tree)
                got = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--one", "--alias", server.alias,
                     "--config", server.config_path, "--transport", transport,
                     "--rtt", str(rtt_count), "--small", str(small), "--big", str(big)],
                    env=env, capture_output=True, text=True, timeout=600)
                if got.returncode:
                    raise SystemExit(f"{tree}: {got.stderr[-2000:]}")
                figures = json.loads(got.stdout.strip().splitlines()[-1])
                results[tree].append(figures)
                print(f"round {round_number + 1} {tree}: " + ", ".join(
                    f"{k} {v:,.0f}" for k, v in figures.items()), file=sys.stderr, flush=True)
    keys = list(next(iter(results.values()))[0])
    print(f"medians over {rounds} alternating rounds ({transport}):")
    print("  ".join(["tree".ljust(30)] + [k.rjust(16) for k in keys]))
    for tree, runs in results.items():
        print("  ".join([tree[-30:].ljust(30)] + [
            f"{statistics.median(r[k] for r in runs):16,.0f}" for k in keys]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--one", action="store_true", help="measure once (internal)")
    parser.add_argument("--alias")
    parser.add_argument("--config")
    parser.add_argument("--trees", help="comma-separated source trees to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transport", default="openssh")
    parser.add_argument("--rtt", type=int, default=2000)
    parser.add_argument("--small", type=int, default=8000)
    parser.add_argument("--big", type=int, default=16)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.alias, args.config, args.transport, args.rtt, args.small,
                             args.big)))
        return
    trees = [os.path.abspath(t) for t in (args.trees or os.getcwd()).split(",")]
    drive(trees, args.rounds, args.transport, args.rtt, args.small, args.big)


if __name__ == "__main__":
    main()
