"""Records per second through MpLogger next to a bare QueueHandler/QueueListener.

Both set-ups run in the same process, one after the other, repeated: spawn
producers log a fixed number of records each, a listener in this process writes
them to one file with the same format. The clock starts when every producer is
ready (spawn start-up is not counted) and stops when the last record is on disk.

    .venv/bin/python benchmarks/bench_logging.py            # table
    .venv/bin/python benchmarks/bench_logging.py --json     # JSON

Rows: the bare set-up; MpLogger; MpLogger also writing a consolidated file (each
record written twice); MpLogger flushing after every record as the bare
FileHandler does (what the compact wire form gains without batched flushes).

The target is MpLogger >= 0.8 of the bare set-up.
"""
from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

from sshpipe.mplog import MpLogger, _Listener

FORMAT = "[ %(asctime)s ][ %(levelname)s ][ %(message)s ]"
LOGGER = "bench"
SETUP_TIMEOUT = 60.0    # seconds for producers to start
RUN_TIMEOUT = 300.0     # seconds for one run


def _produce(logger: logging.Logger, count: int, ready: Any, go: Any) -> None:
    ready.wait(SETUP_TIMEOUT)
    if not go.wait(SETUP_TIMEOUT):
        raise SystemExit("benchmark: no go signal")
    for i in range(count):
        logger.info("record %d of %s", i, "producer")


def _bare_producer(records: Any, count: int, ready: Any, go: Any) -> None:
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.handlers.QueueHandler(records))
    _produce(logger, count, ready, go)


def _mplogger_producer(info: Any, count: int, ready: Any, go: Any) -> None:
    _produce(MpLogger.get_logger(info, name=LOGGER), count, ready, go)


def _run_producers(ctx: Any, target: Callable[..., None], arg: Any, producers: int,
                   count: int) -> float:
    """Start the producers, release them together, return seconds until they exit."""
    ready = ctx.Barrier(producers + 1)
    go = ctx.Event()
    procs = [ctx.Process(target=target, args=(arg, count, ready, go)) for _ in range(producers)]
    for proc in procs:
        proc.start()
    ready.wait(SETUP_TIMEOUT)
    start = time.perf_counter()
    go.set()
    for proc in procs:
        proc.join(RUN_TIMEOUT)
        if proc.exitcode != 0:
            raise SystemExit(f"benchmark: producer exit code {proc.exitcode}")
    return start


def run_bare(ctx: Any, folder: str, producers: int, count: int) -> float:
    """Seconds for the bare QueueHandler/QueueListener set-up to write every record."""
    path = os.path.join(folder, "bare.log")
    records = ctx.Queue()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    listener = logging.handlers.QueueListener(records, handler)
    listener.start()
    start = _run_producers(ctx, _bare_producer, records, producers, count)
    listener.stop()
    elapsed = time.perf_counter() - start
    handler.close()
    _check(path, producers * count)
    return elapsed


def run_mplogger(ctx: Any, folder: str, producers: int, count: int,
                 consolidate: bool = False, flush_each: bool = False) -> float:
    """Seconds for MpLogger to write every record (twice with ``consolidate``).

    ``flush_each`` flushes after every record as the bare set-up's FileHandler does
    (MpLogger flushes every FLUSH_INTERVAL), to show what the wire form alone gains.
    """
    if flush_each:
        # Benchmark-only: reach into the listener so its files flush per record.
        make_file = _Listener._file

        def _file(self: Any, path: str) -> Any:
            handler = make_file(self, path)
            handler.flush_every_record = True
            return handler

        _Listener._file = _file
        try:
            return run_mplogger(ctx, folder, producers, count, consolidate)
        finally:
            _Listener._file = make_file
    logdir = os.path.join(folder, "mplogger")
    mplogger = MpLogger(LOGGER + "-all", level_formats={"default": FORMAT}, logdir=logdir,
                        consolidate=consolidate)
    mplogger.start(LOGGER)
    start = _run_producers(ctx, _mplogger_producer, mplogger.logger_info(), producers, count)
    mplogger.stop()
    elapsed = time.perf_counter() - start
    _check(mplogger.file_path(LOGGER), producers * count)
    return elapsed


def _check(path: str, expected: int) -> None:
    with open(path, encoding="utf-8") as stream:
        lines = sum(1 for _ in stream)
    if lines != expected:
        raise SystemExit(f"benchmark: {path} has {lines} lines, expected {expected}")


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--records", type=int, default=20_000, help="per producer")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    total = args.producers * args.records
    setups: Dict[str, Callable[[str], float]] = {
        "bare QueueHandler/QueueListener": lambda d: run_bare(ctx, d, args.producers, args.records),
        "MpLogger": lambda d: run_mplogger(ctx, d, args.producers, args.records),
        "MpLogger consolidate": lambda d: run_mplogger(
            ctx, d, args.producers, args.records, consolidate=True),
        "MpLogger, flush every record": lambda d: run_mplogger(
            ctx, d, args.producers, args.records, flush_each=True),
    }
    times: Dict[str, List[float]] = {label: [] for label in setups}
    for _ in range(args.repeat):
        for label, run in setups.items():    # interleaved, so drift hits all alike
            with tempfile.TemporaryDirectory(prefix="bench-logging-") as folder:
                times[label].append(run(folder))
    bare = total / statistics.median(times["bare QueueHandler/QueueListener"])
    rows = []
    for label, seconds in times.items():
        rate = total / statistics.median(seconds)
        rows.append({"setup": label, "records": total,
                     "median_s": round(statistics.median(seconds), 3),
                     "records_per_s": round(rate), "vs_bare": round(rate / bare, 2)})
    if args.json:
        json.dump({"producers": args.producers, "records_per_producer": args.records,
                   "repeat": args.repeat, "python": sys.version.split()[0],
                   "cpus": os.cpu_count(), "results": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{args.producers} spawn producers x {args.records} records, "
              f"median of {args.repeat}, {os.cpu_count()} CPUs")
        print(f"{'set-up':34} {'median s':>9} {'records/s':>10} {'vs bare':>8}")
        for row in rows:
            print(f"{row['setup']:34} {row['median_s']:9.3f} {row['records_per_s']:10d} "
                  f"{row['vs_bare']:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
