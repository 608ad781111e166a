"""A small workflow on remote hosts: steps with dependencies, through SSHExecutor.

Each step is a plain function that runs on a named host; a step starts as soon as
every step it needs has finished, and receives their results. The steps' log
records travel back with their results and are printed here, by the caller,
tagged with the step and the host that ran it.

Run it against your own hosts (ssh config aliases)::

    python examples/workflow.py --hosts web1,db1 [--config ~/.ssh/config]

or with no arguments, against a throw-away sshd on 127.0.0.1 that plays two
hosts (needs OpenSSH's sshd installed), as the test suite does.

The step functions are defined here, in ``__main__``: they travel by value
(dill), so the remote hosts need nothing but Python.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from workers import SSHExecutor, Task  # noqa: E402

log = logging.getLogger("workflow")


# -- the steps: ordinary functions --------------------------------------------------
def fetch() -> List[int]:
    log.info("fetching raw numbers on pid %d", os.getpid())
    return [5, 3, 8, 1, 9, 2, 7]


def clean(raw: List[int]) -> List[int]:
    kept = sorted(x for x in raw if x > 1)
    log.info("kept %d of %d numbers", len(kept), len(raw))
    return kept


def stats(numbers: List[int]) -> Dict[str, float]:
    mean = sum(numbers) / len(numbers)
    log.info("mean is %.2f", mean)
    return {"count": len(numbers), "mean": mean, "max": max(numbers)}


def report(numbers: List[int], summary: Dict[str, float]) -> str:
    if summary["max"] > 8:
        log.warning("largest value %d is above 8", summary["max"])
    return f"{summary['count']} numbers, mean {summary['mean']:.2f}: {numbers}"


@dataclass
class Step:
    fn: Callable[..., Any]
    host: str                                   # the executor's name for the host
    needs: List[str] = field(default_factory=list)


def run_workflow(executor: SSHExecutor, steps: Dict[str, Step],
                 timeout: float = 60.0) -> Tuple[Dict[str, Any], List[Tuple[str, Any]]]:
    """Run every step once its needs are done; return (results, [(step, future)])."""
    results: Dict[str, Any] = {}
    running: Dict[Any, str] = {}
    finished: List[Tuple[str, Any]] = []
    waiting = dict(steps)
    while waiting or running:
        for name, step in list(waiting.items()):
            if all(need in results for need in step.needs):
                task = Task(step.fn, *(results[need] for need in step.needs))
                running[executor.submit(task.options(host=step.host, name=name))] = name
                del waiting[name]
        if not running:
            raise RuntimeError(f"steps {sorted(waiting)} need steps that never finish")
        done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
        if not done:
            raise TimeoutError(f"no step finished within {timeout:g} s")
        for future in done:
            name = running.pop(future)
            results[name] = future.result()  # a failed step stops the workflow
            finished.append((name, future))
    return results, finished


def print_logs(finished: List[Tuple[str, Any]]) -> None:
    """The caller gathers every step's records and prints them in step order."""
    for name, future in finished:
        for record in future.logs:
            print(f"  [{name}@{future.host}] {record.levelname:<7} {record.name}: "
                  f"{record.getMessage()}")


@contextlib.contextmanager
def demo_hosts() -> Iterator[Tuple[List[Any], str, str]]:
    """One local sshd that plays the hosts "alpha" and "beta"."""
    from sshpipe.testing import LocalSSHServer

    with LocalSSHServer(alias="workflow-demo") as server:
        hosts = [{"host": server.alias, "name": "alpha"}, {"host": server.alias, "name": "beta"}]
        yield hosts, server.config_path, server.python


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", help="two comma-separated ssh aliases (default: a demo sshd)")
    parser.add_argument("--config", help="ssh client config file")
    parser.add_argument("--python", default="python3", help="remote interpreter")
    args = parser.parse_args(argv)
    # Step records also arrive live in the loggers "sshpipe.remote.<host>"; this
    # example prints them from the futures instead, once, in step order.
    logging.getLogger("sshpipe.remote").addHandler(logging.NullHandler())
    logging.getLogger("sshpipe.remote").propagate = False
    if args.hosts:
        first, second = (args.hosts.split(",") + [None])[:2]
        hosts = [{"host": first, "name": "alpha"}, {"host": second or first, "name": "beta"}]
        context = contextlib.nullcontext((hosts, args.config, args.python))
    else:
        context = demo_hosts()
    with context as (hosts, config, python):
        with SSHExecutor(hosts, slots=1, config=config, python=python) as executor:
            steps = {
                "fetch": Step(fetch, "alpha"),
                "clean": Step(clean, "beta", ["fetch"]),
                "stats": Step(stats, "alpha", ["clean"]),
                "report": Step(report, "beta", ["clean", "stats"]),
            }
            results, finished = run_workflow(executor, steps)
    print("steps, in the order they finished:")
    for name, future in finished:
        print(f"  {name:<7} on {future.host:<6} -> {results[name]!r}")
    print("logs gathered from the steps:")
    print_logs(finished)
    return 0


if __name__ == "__main__":
    sys.exit(main())
