"""workers.SSHExecutor next to execnet round-robin and a local ProcessPoolExecutor (issue 6).

One run measures three columns on each of two rows, interleaved:

==============  ==============================================================
column          what it is
==============  ==============================================================
sshexecutor     ``workers.SSHExecutor(hosts, slots=S)``: ``submit()`` per task,
                one future per task
execnet_rr      S execnet gateways per host (``ssh=<alias>//python=..``), each
                running a loop that unpickles ``(fn, args)`` and sends back the
                pickled result; tasks go to the gateways' channels round-robin,
                all sent before any result is read (pipelined)
local_pool      ``concurrent.futures.ProcessPoolExecutor`` with as many workers
                as the row has slots in all, on this machine
==============  ==============================================================

==========  ==================================================================
row         hosts
==========  ==================================================================
1 host      a :class:`~sshpipe.testing.LocalSSHServer` on 127.0.0.1
4 hosts     :class:`~sshpipe.testing.NamespaceHosts` (4): real hosts in network
            namespaces, each with its own sshd (root only: the row is skipped,
            with a note, otherwise)
==========  ==================================================================

Metrics (tasks are ``int()`` for no-op and ``time.sleep(0.01)``, both builtins,
so every column pickles them the same way, by reference):

noop_rate_per_s
    N no-op tasks submitted at once; tasks per second until the last result.
    Best of the trials.
latency_median_ms, latency_p90_ms
    One no-op task at a time: submit, wait for its result.
sleep10_rate_per_s
    Tasks of 10 ms, N = 25 per slot; tasks per second. Best of the trials.
sleep10_efficiency
    sleep10_rate over the ideal (slots / 10 ms): 1.0 is perfect scaling.

Targets (issue 6): sshexecutor's no-op rate at least execnet_rr's on each row,
and near-linear scaling with hosts for 10 ms tasks: the 4-host sleep10 rate at
least 3.2 times the 1-host one (0.8 x linear).

All of it runs on one machine: every host's sshd, agent and workers share its
CPUs with the caller, so more hosts add load rather than capacity; the load
average before and after is reported. Run ``python benchmarks/bench_executor.py``
(``--quick`` for a smoke run under a minute, ``--json`` for JSON).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from _common import log, percentile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `workers` from this source tree, whatever is installed
    sys.path.insert(0, ROOT)

COLUMNS = ["sshexecutor", "execnet_rr", "local_pool"]
ROWS = ["1 host", "4 hosts"]
METRICS = ["noop_rate_per_s", "latency_median_ms", "latency_p90_ms", "sleep10_rate_per_s",
           "sleep10_efficiency"]
METRIC_TITLES = {
    "noop_rate_per_s": "no-op tasks/s",
    "latency_median_ms": "latency median (ms)",
    "latency_p90_ms": "latency p90 (ms)",
    "sleep10_rate_per_s": "10 ms tasks/s",
    "sleep10_efficiency": "10 ms efficiency",
}
TIMEOUT = 120.0  # any single wait
SLEEP = 0.01

EXECNET_LOOP = """
import pickle
while True:
    data = channel.receive()
    if data is None:
        break
    fn, args = pickle.loads(data)
    channel.send(pickle.dumps(fn(*args)))
"""


@dataclass(frozen=True)
class Params:
    rounds: int
    noop_tasks: int
    trials: int
    latency_samples: int
    sleep_tasks_per_slot: int


FULL = Params(rounds=2, noop_tasks=3000, trials=2, latency_samples=300, sleep_tasks_per_slot=25)
QUICK = Params(rounds=1, noop_tasks=400, trials=1, latency_samples=40, sleep_tasks_per_slot=10)


# -- farms: one interface over the three columns ------------------------------------
class Farm:
    """Runs batches of (fn, args) tasks; subclasses per column."""

    slots = 1

    def run_many(self, fn: Callable[..., Any], args: Sequence[tuple]) -> float:
        raise NotImplementedError

    def run_one(self, fn: Callable[..., Any], args: tuple) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ExecutorFarm(Farm):
    def __init__(self, hosts: List[str], config: str, slots: int):
        from workers import SSHExecutor

        self.slots = slots * len(hosts)
        self.executor = SSHExecutor(hosts, slots=slots, config=config, python=sys.executable)

    def run_many(self, fn, args):
        started = time.perf_counter()
        futures = [self.executor.submit(fn, *a) for a in args]
        done, not_done = wait(futures, timeout=TIMEOUT)
        if not_done:
            raise TimeoutError(f"{len(not_done)} tasks unfinished after {TIMEOUT:g} s")
        elapsed = time.perf_counter() - started
        for future in futures:
            future.result()
        return elapsed

    def run_one(self, fn, args):
        return self.executor.submit(fn, *args).result(TIMEOUT)

    def close(self):
        self.executor.shutdown(wait=True)


class ExecnetFarm(Farm):
    def __init__(self, hosts: List[str], config: str, slots: int):
        import execnet

        self.slots = slots * len(hosts)
        self.group = execnet.Group()
        self.channels = []
        for host in hosts:
            for _ in range(slots):
                gateway = self.group.makegateway(
                    f"ssh={host}//ssh_config={config}//python={sys.executable}")
                self.channels.append(gateway.remote_exec(EXECNET_LOOP))
        self.next = 0

    def run_many(self, fn, args):
        started = time.perf_counter()
        channels = self.channels
        counts = [0] * len(channels)
        for index, a in enumerate(args):
            slot = index % len(channels)
            channels[slot].send(pickle.dumps((fn, a)))
            counts[slot] += 1
        for slot, count in enumerate(counts):
            for _ in range(count):
                pickle.loads(channels[slot].receive(TIMEOUT))
        return time.perf_counter() - started

    def run_one(self, fn, args):
        channel = self.channels[self.next % len(self.channels)]
        self.next += 1
        channel.send(pickle.dumps((fn, args)))
        return pickle.loads(channel.receive(TIMEOUT))

    def close(self):
        for channel in self.channels:
            channel.send(None)
        self.group.terminate(timeout=10)


class LocalFarm(Farm):
    def __init__(self, hosts: List[str], config: str, slots: int):
        self.slots = slots * len(hosts)
        self.pool = ProcessPoolExecutor(max_workers=self.slots)
        list(self.pool.map(int, range(self.slots * 2)))  # start the workers

    def run_many(self, fn, args):
        started = time.perf_counter()
        futures = [self.pool.submit(fn, *a) for a in args]
        done, not_done = wait(futures, timeout=TIMEOUT)
        if not_done:
            raise TimeoutError(f"{len(not_done)} tasks unfinished after {TIMEOUT:g} s")
        return time.perf_counter() - started

    def run_one(self, fn, args):
        return self.pool.submit(fn, *args).result(TIMEOUT)

    def close(self):
        self.pool.shutdown(wait=True)


FARMS = {"sshexecutor": ExecutorFarm, "execnet_rr": ExecnetFarm, "local_pool": LocalFarm}


def measure(farm: Farm, params: Params) -> Dict[str, List[float]]:
    farm.run_many(int, [()] * 50)  # warm-up
    samples: Dict[str, List[float]] = {"noop_rate_per_s": [], "latency_ms": [],
                                       "sleep10_rate_per_s": []}
    for _ in range(params.trials):
        elapsed = farm.run_many(int, [()] * params.noop_tasks)
        samples["noop_rate_per_s"].append(params.noop_tasks / elapsed)
    for _ in range(params.latency_samples):
        started = time.perf_counter()
        farm.run_one(int, ())
        samples["latency_ms"].append((time.perf_counter() - started) * 1000)
    count = params.sleep_tasks_per_slot * farm.slots
    for _ in range(params.trials):
        elapsed = farm.run_many(time.sleep, [(SLEEP,)] * count)
        samples["sleep10_rate_per_s"].append(count / elapsed)
    samples["slots"] = [farm.slots]
    return samples


def summarize(samples: Dict[str, List[float]]) -> Dict[str, float]:
    latencies = sorted(samples["latency_ms"])
    sleep_rate = max(samples["sleep10_rate_per_s"])
    return {
        "noop_rate_per_s": max(samples["noop_rate_per_s"]),
        "latency_median_ms": statistics.median(latencies),
        "latency_p90_ms": percentile(latencies, 0.9),
        "sleep10_rate_per_s": sleep_rate,
        "sleep10_efficiency": sleep_rate / (samples["slots"][0] / SLEEP),
    }


@contextlib.contextmanager
def hosts_for(row: str) -> Iterator[Tuple[Optional[List[str]], Optional[str], str]]:
    """(aliases, config path, note) of a row; aliases None when it cannot run here."""
    from sshpipe.testing import LocalSSHServer, NamespaceHosts, netns_unavailable_reason

    if row == "1 host":
        with LocalSSHServer(alias="bench-executor") as server:
            yield [server.alias], server.config_path, ""
        return
    reason = netns_unavailable_reason()
    if reason:
        yield None, None, f"skipped: {reason}"
        return
    with NamespaceHosts(4, prefix="bench") as hosts:
        yield [host.alias for host in hosts], hosts.config_path, ""


def run(params: Params, columns: List[str], rows: List[str], slots: int) -> Dict[str, Any]:
    samples: Dict[str, Dict[str, Dict[str, List[float]]]] = {r: {c: {} for c in columns}
                                                             for r in rows}
    errors: Dict[str, str] = {}
    notes: Dict[str, str] = {}
    for row in rows:
        with hosts_for(row) as (aliases, config, note):
            if aliases is None:
                notes[row] = note
                continue
            for round_number in range(1, params.rounds + 1):
                for column in columns:
                    key = f"{row}/{column}"
                    if key in errors:
                        continue
                    log(f"bench_executor: {row}: round {round_number}: {column} ...")
                    began = time.perf_counter()
                    farm = None
                    try:
                        farm = FARMS[column](aliases, config, slots)
                        got = measure(farm, params)
                    except Exception as exc:  # one failing column must not hide the others
                        errors[key] = f"{type(exc).__name__}: {exc}"
                        log(f"bench_executor: {key} failed: {errors[key]}")
                        continue
                    finally:
                        if farm is not None:
                            farm.close()
                    for name, values in got.items():
                        samples[row][column].setdefault(name, []).extend(values)
                    log(f"bench_executor: {key} took {time.perf_counter() - began:.1f} s")
    results = {row: {c: summarize(samples[row][c]) for c in columns
                     if samples[row][c] and f"{row}/{c}" not in errors}
               for row in rows if row not in notes}
    return {"results": results, "errors": errors, "notes": notes}


def targets(results: Dict[str, Dict[str, Dict[str, float]]]) -> List[Dict[str, Any]]:
    found = []
    for row, columns in results.items():
        if "sshexecutor" in columns and "execnet_rr" in columns:
            ours, theirs = (columns[c]["noop_rate_per_s"] for c in ("sshexecutor", "execnet_rr"))
            found.append({"target": f"{row}: no-op rate >= execnet_rr",
                          "value": f"{ours:.0f} vs {theirs:.0f}",
                          "status": "met" if ours >= theirs else "missed"})
    one = results.get("1 host", {}).get("sshexecutor")
    four = results.get("4 hosts", {}).get("sshexecutor")
    if one and four:
        ratio = four["sleep10_rate_per_s"] / one["sleep10_rate_per_s"]
        found.append({"target": "10 ms tasks: 4 hosts >= 3.2 x 1 host", "value": f"{ratio:.2f} x",
                      "status": "met" if ratio >= 3.2 else "missed"})
    return found


def render(report: Dict[str, Any]) -> str:
    columns = report["columns"]
    lines = [f"bench_executor ({report['mode']}, {report['slots']} slots per host, "
             f"{report['cpus']} cpus, load {report['loadavg_before']:.1f} -> "
             f"{report['loadavg_after']:.1f}, {report['elapsed_s']:.0f} s)", ""]
    header = f"{'row':<8} {'metric':<22}" + "".join(f"{c:>14}" for c in columns)
    lines += [header, "-" * len(header)]
    for row in report["rows"]:
        if row in report["notes"]:
            lines.append(f"{row:<8} {report['notes'][row]}")
            continue
        for metric in METRICS:
            cells = []
            for column in columns:
                value = report["results"].get(row, {}).get(column, {}).get(metric)
                cells.append(f"{value:>14.2f}" if isinstance(value, float) and value < 10
                             else f"{value:>14.0f}" if value is not None else f"{'-':>14}")
            lines.append(f"{row:<8} {METRIC_TITLES[metric]:<22}" + "".join(cells))
    lines.append("")
    for target in report["targets"]:
        lines.append(f"target {target['target']}: {target['value']} ({target['status']})")
    for key, error in report["errors"].items():
        lines.append(f"error {key}: {error}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, < 60 s")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--slots", type=int, default=2, help="worker processes per host")
    parser.add_argument("--columns", default=",".join(COLUMNS),
                        help="comma-separated subset of: " + ", ".join(COLUMNS))
    parser.add_argument("--rows", default=",".join(ROWS),
                        help="comma-separated subset of: " + ", ".join(ROWS))
    args = parser.parse_args(argv)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if set(columns) - set(COLUMNS) or set(rows) - set(ROWS):
        parser.error(f"columns from {COLUMNS}, rows from {ROWS}")
    params = QUICK if args.quick else FULL
    import paramiko  # noqa: F401  (loaded once, before anything is timed)

    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    outcome = run(params, columns, rows, args.slots)
    report = {
        "mode": "quick" if args.quick else "full", "columns": columns, "rows": rows,
        "metrics": METRICS, "slots": args.slots, "params": asdict(params),
        "cpus": os.cpu_count(), "loadavg_before": load_before,
        "loadavg_after": os.getloadavg()[0], "elapsed_s": time.perf_counter() - began,
        **outcome, "targets": targets(outcome["results"]),
    }
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
