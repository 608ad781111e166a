"""Starting N pipes: one after the other vs concurrently with SSHMultiPipe.

One run starts its own :class:`~sshpipe.testing.LocalSSHServer` (a real sshd on
127.0.0.1) and, in each round, starts N pipes (default 10) to it three ways:

==================  =========================================================
column              what it is
==================  =========================================================
sequential          ``SSHPipe(...).start()`` for each pipe, one after the other
multi_per_host_8    ``SSHMultiPipe.start()`` with the default ``start_per_host``
                    (8: at most 8 handshakes to one host at once)
multi_unlimited     ``SSHMultiPipe(start_per_host=None).start()``: all N at once
==================  =========================================================

Every pipe runs the echo agent of ``handlers/echo_handler.py`` as a ``.py``
command, so each start includes the SSH handshake, the login shell, the remote
interpreter's start-up and the agent's hello. The clock stops when every pipe
is RUNNING; the pipes are then closed (not timed) before the next column.
Columns are interleaved round by round so that load from other processes on the
machine spreads over all of them; the table shows the median and the best round.

Usage::

    .venv/bin/python benchmarks/bench_multipipe.py               # 3 rounds of 10 pipes
    .venv/bin/python benchmarks/bench_multipipe.py --pipes 20 --rounds 5
    .venv/bin/python benchmarks/bench_multipipe.py --json

On a machine with few cores the concurrent start is bounded by CPU: each pipe
costs a child process, an sshd session and a remote interpreter.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

from sshpipe import PipeState, SSHMultiPipe, SSHPipe
from sshpipe.multipipe import START_PER_HOST
from sshpipe.testing import LocalSSHServer

HERE = os.path.dirname(os.path.abspath(__file__))
ECHO = os.path.join(HERE, "handlers", "echo_handler.py")
START_TIMEOUT = 120.0   # seconds for one column's start of all pipes
CLOSE_TIMEOUT = 30.0
COLUMNS = ["sequential", "multi_per_host_8", "multi_unlimited"]


def _sequential(server: LocalSSHServer, count: int) -> float:
    pipes = [SSHPipe(server.alias, ECHO, name=f"s{i}", config=server.config_path,
                     python=server.python, ready_timeout=START_TIMEOUT) for i in range(count)]
    started = time.perf_counter()
    try:
        for pipe in pipes:
            pipe.start()
        return time.perf_counter() - started
    finally:
        for pipe in pipes:
            pipe.close(timeout=CLOSE_TIMEOUT)


def _multi(per_host: Optional[int]) -> Callable[[LocalSSHServer, int], float]:
    def run(server: LocalSSHServer, count: int) -> float:
        multi = SSHMultiPipe(start_per_host=per_host, config=server.config_path,
                             python=server.python, command=ECHO, ready_timeout=START_TIMEOUT)
        for index in range(count):
            multi.add(f"m{index}", server.alias)
        started = time.perf_counter()
        try:
            failures = multi.start(timeout=START_TIMEOUT)
            elapsed = time.perf_counter() - started
            if failures or set(multi.status().values()) != {PipeState.RUNNING}:
                raise RuntimeError(f"some pipes did not start: {failures}")
            return elapsed
        finally:
            multi.close(timeout=CLOSE_TIMEOUT)
    return run


RUNNERS: Dict[str, Callable[[LocalSSHServer, int], float]] = {
    "sequential": _sequential,
    "multi_per_host_8": _multi(START_PER_HOST),
    "multi_unlimited": _multi(None),
}


def measure(count: int, rounds: int) -> Dict[str, List[float]]:
    samples: Dict[str, List[float]] = {column: [] for column in COLUMNS}
    with LocalSSHServer() as server:
        # Warm-up: first connections pay for page cache and bytecode compilation.
        RUNNERS["multi_unlimited"](server, 2)
        for _ in range(rounds):
            for column in COLUMNS:
                samples[column].append(RUNNERS[column](server, count))
    return samples


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipes", type=int, default=10, help="pipes started per column")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, columns interleaved")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    samples = measure(args.pipes, args.rounds)
    report = {
        "pipes": args.pipes,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "samples_s": samples,
        "median_s": {column: statistics.median(values) for column, values in samples.items()},
        "best_s": {column: min(values) for column, values in samples.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    base = report["median_s"]["sequential"]
    print(f"start of {args.pipes} pipes to one sshd, {args.rounds} rounds "
          f"({report['cpus']} CPUs, load average {load_before:.1f} before, "
          f"{report['loadavg_after']:.1f} after, python {report['python']})")
    print(f"{'column':<18} {'median (s)':>11} {'best (s)':>9} {'per pipe (ms)':>14} "
          f"{'speed-up':>9}")
    for column in COLUMNS:
        median = report["median_s"][column]
        print(f"{column:<18} {median:>11.2f} {report['best_s'][column]:>9.2f} "
              f"{1000 * median / args.pipes:>14.0f} {base / median:>8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
