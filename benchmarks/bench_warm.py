"""Warm starts (issue 14): start() to hello of a later pipe to a host, cold and warm.

One run starts its own :class:`~sshpipe.testing.LocalSSHServer` (a real sshd on
127.0.0.1) and measures, the columns interleaved per round so that load from
other processes spreads over all of them:

===============  =============================================================
column           what it is
===============  =============================================================
openssh_cold     ``SSHPipe(transport="openssh", warm=False)``: a session on the
                 live master, the remote interpreter, loader, bundle check, agent
openssh_warm     the same with ``warm=True``: the session's client hands it to
                 the host's zygote, which forks the agent
paramiko_cold    ``transport="paramiko", warm=False``: its own SSH connection
paramiko_warm    the same with ``warm=True``
execnet          ``execnet.makegateway("ssh=...//python=...")`` (returns once the
                 remote interpreter answered), then ``gw.exit()``
===============  =============================================================

Metrics, over pipes after the first of each column (the first makes the master
and the zygote):

start_ms (median, p90)
    ``start()`` (``makegateway()``) until the agent's hello.
steps_s
    ``--steps`` sequential short steps (start, one message and its reply,
    close), total seconds; execnet: makegateway, one ``remote_exec`` echo, exit.

``--shell plain`` runs the bench in a private mount namespace where root's
``~/.bashrc`` is empty (root only): every session then skips the login
shell's ``pyenv init`` (here +160-340 ms a session, for every tool alike).

Usage::

    .venv/bin/python benchmarks/bench_warm.py                 # ~1-2 minutes
    .venv/bin/python benchmarks/bench_warm.py --shell plain
    .venv/bin/python benchmarks/bench_warm.py --quick         # smoke test
    .venv/bin/python benchmarks/bench_warm.py --json
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
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "handlers"))

from sshpipe import SSHPipe, stop_zygotes  # noqa: E402
from sshpipe.testing import LocalSSHServer  # noqa: E402

COLUMNS = ["openssh_cold", "openssh_warm", "paramiko_cold", "paramiko_warm", "execnet"]
TIMEOUT = 60.0


def _p90(samples: List[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


class Bench:
    def __init__(self, server: LocalSSHServer):
        self.server = server

    def pipe(self, column: str) -> SSHPipe:
        import echo_handler

        transport, start = column.split("_")
        return SSHPipe(self.server.alias, handler=echo_handler.Echo, modules=["echo_handler"],
                       config=self.server.config_path, python=sys.executable,
                       transport=transport, warm=start == "warm", ready_timeout=TIMEOUT)

    def start_ms(self, column: str) -> float:
        if column == "execnet":
            import execnet

            began = time.perf_counter()
            gateway = execnet.makegateway(self._execnet_spec())
            took = time.perf_counter() - began
            gateway.exit()
            return took * 1000
        pipe = self.pipe(column)
        began = time.perf_counter()
        pipe.start()
        took = time.perf_counter() - began
        expected = column.split("_")[1]
        if pipe.remote_info.get("start") != expected:
            print(f"note: {column} started {pipe.remote_info.get('start')} "
                  f"({pipe.remote_info.get('warm')})", file=sys.stderr)
        pipe.close()
        return took * 1000

    def step(self, column: str) -> None:
        if column == "execnet":
            import execnet

            gateway = execnet.makegateway(self._execnet_spec())
            channel = gateway.remote_exec("channel.send(channel.receive())")
            channel.send("ping")
            assert channel.receive(TIMEOUT) == "ping"
            gateway.exit()
            return
        pipe = self.pipe(column)
        pipe.start()
        pipe.send("ping")
        assert pipe.recv(timeout=TIMEOUT) == "ping"
        pipe.close()

    def _execnet_spec(self) -> str:
        return (f"ssh={self.server.alias}//ssh_config={self.server.config_path}"
                f"//python={sys.executable}")


def run(rounds: int, steps: int, columns: List[str]) -> Dict[str, Dict[str, float]]:
    with LocalSSHServer() as server:
        bench = Bench(server)
        samples: Dict[str, List[float]] = {column: [] for column in columns}
        try:
            for column in columns:  # the first of each: master, zygote, caches
                bench.start_ms(column)
            for _ in range(rounds):
                for column in columns:
                    samples[column].append(bench.start_ms(column))
            totals: Dict[str, float] = {}
            for column in columns:
                if steps and column in ("openssh_warm", "openssh_cold", "paramiko_warm",
                                        "execnet"):
                    began = time.perf_counter()
                    for _ in range(steps):
                        bench.step(column)
                    totals[column] = time.perf_counter() - began
        finally:
            stop_zygotes(server.alias, config=server.config_path, python=sys.executable)
            from sshpipe._openssh import stop_masters

            stop_masters(owner=os.getpid())
    return {column: {"start_ms_median": statistics.median(samples[column]),
                     "start_ms_p90": _p90(samples[column]), "rounds": rounds,
                     **({"steps": steps, "steps_s": totals[column]} if column in totals
                        else {})}
            for column in columns}


def _in_plain_shell() -> None:
    """Re-exec this bench where root's ~/.bashrc is empty (a private mount
    namespace: nothing outside it changes)."""
    if os.environ.get("SSHPIPE_BENCH_PLAIN") == "1":
        return
    if os.geteuid() != 0:
        raise SystemExit("--shell plain needs root (a private mount namespace)")
    bashrc = os.path.expanduser("~/.bashrc")
    script = f'mount --bind /dev/null "{bashrc}" && exec "$@"'
    env = dict(os.environ, SSHPIPE_BENCH_PLAIN="1")
    raise SystemExit(subprocess.call(["unshare", "--mount", "--propagation", "private",
                                      "sh", "-c", script, "sh", sys.executable] + sys.argv,
                                     env=env))


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--shell", choices=["heavy", "plain"], default="heavy")
    parser.add_argument("--columns", default=",".join(COLUMNS))
    parser.add_argument("--quick", action="store_true", help="2 rounds, 3 steps")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.shell == "plain":
        _in_plain_shell()
    if args.quick:
        args.rounds, args.steps = 2, 3
    columns = [column for column in args.columns.split(",") if column]
    if "execnet" in columns:
        try:
            import execnet  # noqa: F401
        except ImportError:
            columns.remove("execnet")
    results = run(args.rounds, args.steps, columns)
    if args.json:
        print(json.dumps({"shell": args.shell, "results": results}, indent=2))
        return 0
    print(f"login shell: {args.shell}; {args.rounds} rounds; steps: {args.steps}")
    print(f"{'column':<15} {'start median ms':>16} {'p90 ms':>8} {'steps total s':>14}")
    for column, row in results.items():
        steps = f"{row['steps_s']:.2f}" if "steps_s" in row else "-"
        print(f"{column:<15} {row['start_ms_median']:>16.1f} {row['start_ms_p90']:>8.1f} "
              f"{steps:>14}")
    warm, execnet_row = results.get("openssh_warm"), results.get("execnet")
    if warm and execnet_row:
        print(f"openssh_warm / execnet start: "
              f"{warm['start_ms_median'] / execnet_row['start_ms_median']:.3f}")
        if "steps_s" in warm and "steps_s" in execnet_row:
            print(f"openssh_warm / execnet steps: {warm['steps_s'] / execnet_row['steps_s']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
