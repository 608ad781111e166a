"""joblib's ``"sshpipe"`` backend next to the ideal and to loky (issue 17).

One run, interleaved trials:

=============  ================================================================
column         what it is
=============  ================================================================
sshpipe        ``parallel_config(backend="sshpipe", hosts=H, slots=S)``, then
               ``Parallel(n_jobs=-1)``: every remote slot; hosts warm (started
               once, before the trials, as a parallel_config block keeps them)
loky           ``Parallel(n_jobs=H*S, backend="loky")`` on this machine: the same
               number of workers; warm (its reusable executor started before)
=============  ================================================================

Work: ``N`` calls of ``time.sleep(0.001)`` (a builtin: both backends pickle it
by reference), with joblib's automatic batching. Hosts: 2 namespace hosts
(:class:`~sshpipe.testing.NamespaceHosts`, root only) or, without root, two
entries for one :class:`~sshpipe.testing.LocalSSHServer` (noted in the output).

Metrics, per column: ``wall_s`` (best of the trials, and the median), its ratio
to the ideal ``N x 1 ms / (H x S)``, and ``overhead_per_task_ms``: slot time
lost per task, ``(wall x slots - N x 1 ms) / N``. ``start_s``: the first
``Parallel`` call of a fresh backend (SSH sessions, agents, workers) on 10 tasks.
``sleep_ms``: what ``time.sleep(0.001)`` really takes here (the mean of 500
calls in this process; a loaded machine oversleeps), and ``ideal_slept_s`` the
ideal with that duration instead of 1 ms.

Targets (issue 17): sshpipe's wall time within 1.3 x the ideal, and at most
loky's on the same number of workers.

Everything runs on this machine: hosts, agents and workers share its CPUs with
the caller. Sleeping tasks need no CPU, so the slots run in parallel whatever
the core count. Run ``python benchmarks/bench_joblib.py`` (``--quick`` for a
smoke run, ``--json`` for JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Sequence

from _common import load_average, peers, print_targets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # sshpipe and workers from this source tree
    sys.path.insert(0, ROOT)

TASK_SECONDS = 0.001
HOSTS = 2
SLOTS = 2


def _run(n_tasks: int, **parallel_kwargs: Any) -> float:
    from joblib import Parallel, delayed

    started = time.perf_counter()
    results = Parallel(**parallel_kwargs)(delayed(time.sleep)(TASK_SECONDS)
                                          for _ in range(n_tasks))
    wall = time.perf_counter() - started
    if len(results) != n_tasks:
        raise RuntimeError(f"{len(results)} results for {n_tasks} tasks")
    return wall


def _measured_sleep(calls: int = 500) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        time.sleep(TASK_SECONDS)
    return (time.perf_counter() - started) / calls


def measure(n_tasks: int, trials: int) -> Dict[str, Any]:
    import sshpipe.joblib  # noqa: F401  (registers the backend)
    from joblib import parallel_config

    slots = HOSTS * SLOTS
    ideal = n_tasks * TASK_SECONDS / slots
    walls: Dict[str, List[float]] = {"sshpipe": [], "loky": []}
    with peers(HOSTS, "jb", "bench-joblib") as hosts:
        aliases, config, where = hosts.aliases, hosts.config_path, hosts.note
        options = dict(hosts=aliases, slots=SLOTS, config=config, python=sys.executable)
        started = time.perf_counter()
        with parallel_config(backend="sshpipe", **options) as active:
            _run(10, n_jobs=-1)
            start_s = time.perf_counter() - started
            _run(10, n_jobs=slots, backend="loky")  # start loky's workers
            for _ in range(trials):
                walls["sshpipe"].append(_run(n_tasks, n_jobs=-1))
                walls["loky"].append(_run(n_tasks, n_jobs=slots, backend="loky"))
            active["backend"].close()
    slept = _measured_sleep()
    columns = {}
    for name, values in walls.items():
        best = min(values)
        columns[name] = {
            "wall_s": round(best, 3),
            "wall_median_s": round(statistics.median(values), 3),
            "ratio_to_ideal": round(best / ideal, 3),
            "overhead_per_task_ms": round((best * slots - n_tasks * TASK_SECONDS)
                                          / n_tasks * 1000, 4),
        }
    targets = [
        {"target": "sshpipe wall <= 1.3 x ideal",
         "status": "met" if columns["sshpipe"]["ratio_to_ideal"] <= 1.3 else "missed"},
        {"target": "sshpipe wall <= loky wall (same workers)",
         "status": "met" if columns["sshpipe"]["wall_s"] <= columns["loky"]["wall_s"]
         else "missed"},
    ]
    return {"tasks": n_tasks, "task_seconds": TASK_SECONDS, "hosts": where, "slots": slots,
            "trials": trials, "ideal_s": round(ideal, 3), "sshpipe_start_s": round(start_s, 3),
            "sleep_ms": round(slept * 1000, 3), "ideal_slept_s": round(n_tasks * slept / slots, 3),
            "columns": columns, "targets": targets,
            "loadavg": load_average()}


def _print_table(report: Dict[str, Any]) -> None:
    print(f"{report['tasks']} tasks of {report['task_seconds'] * 1000:g} ms on {report['hosts']}"
          f" x {SLOTS} slots ({report['slots']} in all), best of {report['trials']}; "
          f"ideal {report['ideal_s']} s; sshpipe first call {report['sshpipe_start_s']} s")
    print(f"time.sleep(0.001) takes {report['sleep_ms']} ms here: ideal with that "
          f"{report['ideal_slept_s']} s")
    print(f"{'column':10} {'wall s':>8} {'median s':>9} {'x ideal':>8} {'overhead ms/task':>17}")
    for name, numbers in report["columns"].items():
        print(f"{name:10} {numbers['wall_s']:8.3f} {numbers['wall_median_s']:9.3f} "
              f"{numbers['ratio_to_ideal']:8.3f} {numbers['overhead_per_task_ms']:17.4f}")
    print_targets(report)


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 tasks, one trial")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(list(argv) or None)
    n_tasks, trials = (1000, 1) if args.quick else (args.tasks, args.trials)
    report = measure(n_tasks, trials)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
