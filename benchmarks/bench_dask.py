"""Dask cluster start and teardown: ``sshpipe.dask.SSHCluster`` next to
``distributed.SSHCluster`` (asyncssh), in the same run (issue 17).

Hosts: 3 namespace hosts (:class:`~sshpipe.testing.NamespaceHosts`, root only):
the scheduler on the first, one worker (a Nanny, both clusters' default) on each
of the other two. Without root, three entries for one
:class:`~sshpipe.testing.LocalSSHServer` (noted in the output).

Both clusters get the same hosts, keys and known_hosts, and run this
interpreter on the hosts. distributed's cluster needs ``scheduler_options={"host":
<first host's address>}``: on a host without a default route it would otherwise
advertise 127.0.0.1 to the other hosts' workers. sshpipe's listens where SSH
reached the host by itself.

Metrics, per cluster, trials interleaved (sshpipe, distributed, sshpipe ...):

start_s
    From the constructor call to a ``distributed.Client`` that sees both
    workers. Best and median of the trials.
close_s
    ``client.close()`` and ``cluster.close()``.
left
    Processes still running on the hosts 5 s after ``close()`` returned: live
    descendants of each host's sshd, other than the sshd listener itself
    (0 means teardown left nothing). The largest count over the trials.

Target (issue 17): sshpipe's start at most distributed's, and nothing left.
Run ``python benchmarks/bench_dask.py`` (``--trials N``, ``--json``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Sequence

from _common import load_average, peers, print_targets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # sshpipe from this source tree
    sys.path.insert(0, ROOT)

LEFT_WAIT = 5.0  # seconds after close() before counting what is left


class _Bed:
    """The hosts both clusters use, and how each cluster is built on them."""

    def __init__(self, aliases: List[str], addresses: List[str], config: str,
                 known_hosts: str, key: str, user: str, port: int, listeners: List[Any],
                 where: str):
        self.aliases, self.addresses = aliases, addresses
        self.config, self.known_hosts, self.key = config, known_hosts, key
        self.user, self.port, self.listeners, self.where = user, port, listeners, where

    def sshpipe_cluster(self) -> Any:
        from sshpipe.dask import SSHCluster

        return SSHCluster(self.aliases, config=self.config, worker_options={"nthreads": 1},
                          remote_python=sys.executable, silence_logs=40)

    def distributed_cluster(self) -> Any:
        from distributed import SSHCluster

        options = {"known_hosts": self.known_hosts, "client_keys": [self.key],
                   "username": self.user, "port": self.port}
        return SSHCluster(self.addresses, connect_options=options,
                          worker_options={"nthreads": 1},
                          scheduler_options={"host": self.addresses[0]},
                          remote_python=sys.executable, silence_logs=40)

    def left(self) -> int:
        """Processes a cluster left on the hosts, sshd's own aside: with the OpenSSH
        transport the caller's shared master keeps its connection (an sshd
        process) for reuse until its idle time, as tests/test_dask.py allows."""
        from sshpipe.testing import descendants, process_name

        return sum(1 for pid in set(self.listeners) for process in descendants(pid)
                   if not process_name(process).startswith("sshd"))


@contextlib.contextmanager
def _bed() -> Iterator[_Bed]:
    with peers(3, "db", "bench-dask") as found:
        hosts, server = found.netns, found.server
        if hosts is not None:
            yield _Bed(found.aliases, [h.address for h in hosts], found.config_path,
                       hosts.known_hosts_path, hosts.key_path, hosts[0].server.user, 22,
                       [h.server.process for h in hosts], found.note)
        else:
            yield _Bed(found.aliases, [server.address] * 3, found.config_path,
                       server.known_hosts_path, server.key_path, server.user, server.port,
                       [server.process], found.note)


def _trial(make: Callable[[], Any], bed: _Bed) -> Dict[str, float]:
    from distributed import Client

    started = time.perf_counter()
    cluster = make()
    client = Client(cluster)
    client.wait_for_workers(2, timeout=120)
    start_s = time.perf_counter() - started
    if sum(client.submit(pow, 2, i).result(timeout=60) for i in range(4)) != 15:
        raise RuntimeError("wrong answer")
    started = time.perf_counter()
    client.close()
    cluster.close()
    close_s = time.perf_counter() - started
    deadline = time.monotonic() + LEFT_WAIT
    while bed.left() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"start_s": start_s, "close_s": close_s, "left": bed.left()}


def measure(trials: int) -> Dict[str, Any]:
    results: Dict[str, List[Dict[str, float]]] = {"sshpipe": [], "distributed": []}
    with _bed() as bed:
        makers = {"sshpipe": bed.sshpipe_cluster, "distributed": bed.distributed_cluster}
        for _ in range(trials):
            for name, make in makers.items():
                results[name].append(_trial(make, bed))
        where = bed.where
    columns = {}
    for name, runs in results.items():
        starts = [run["start_s"] for run in runs]
        closes = [run["close_s"] for run in runs]
        columns[name] = {"start_s": round(min(starts), 3),
                         "start_median_s": round(statistics.median(starts), 3),
                         "close_s": round(statistics.median(closes), 3),
                         "left": int(max(run["left"] for run in runs))}
    ours, theirs = columns["sshpipe"], columns["distributed"]
    targets = [
        {"target": "sshpipe start <= distributed start (median)",
         "status": "met" if ours["start_median_s"] <= theirs["start_median_s"] else "missed"},
        {"target": "sshpipe teardown leaves nothing",
         "status": "met" if ours["left"] == 0 else "missed"},
    ]
    return {"hosts": where, "workers": 2, "trials": trials, "columns": columns,
            "targets": targets, "loadavg": load_average()}


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one trial (the smoke run)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(list(argv) or None)
    report = measure(1 if args.quick else args.trials)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"cluster start to a ready Client, scheduler + 2 workers on {report['hosts']}, "
          f"{report['trials']} trials")
    print(f"{'cluster':12} {'start s':>8} {'median s':>9} {'close s':>8} {'left':>5}")
    for name, numbers in report["columns"].items():
        print(f"{name:12} {numbers['start_s']:8.3f} {numbers['start_median_s']:9.3f} "
              f"{numbers['close_s']:8.3f} {numbers['left']:5d}")
    print_targets(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
