"""Benchmark: what the trust policy costs when loading what remotes send back.

Each payload is loaded with plain ``pickle.loads`` (what ``trust_remote=True``
does) and under the default policy, interleaved, best of ``--repeat`` runs, in
microseconds per load. Payloads cover the three paths of :mod:`sshpipe.trust`:
plain data (no global: straight ``pickle.loads`` for small payloads, the C
Unpickler with a ``find_class`` gate for larger ones), builtin value types
(gated, no structure check), and Python-defined classes such as sshpipe's own
errors (the opcodes are checked first). Prints a table, or JSON with ``--json``.

Usage::

    python benchmarks/bench_trust.py [--repeat 5] [--quick] [--json]
"""
from __future__ import annotations

import argparse
import datetime
import decimal
import json
import pickle
from typing import Any, Callable, Dict, List, Tuple

from _common import best_time

from sshpipe.errors import PipeBroken
from sshpipe.trust import DEFAULT


def payloads() -> List[Tuple[str, bytes]]:
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    error = PipeBroken("db1: the pipe is broken", (1, 2), host="db1")
    error.__cause__ = OSError(104, "Connection reset by peer")
    items: List[Tuple[str, Any]] = [
        ("small tuple (int, str)", (42, "ok")),
        ("1 KiB str", "x" * 1024),
        ("list of 1000 ints", list(range(1000))),
        ("dict of 1000 str -> float", {f"k{i}": i * 0.5 for i in range(1000)}),
        ("1 MiB bytes", b"\0" * (1 << 20)),
        ("100 datetimes + Decimals", [(now, decimal.Decimal(i)) for i in range(100)]),
        ("ValueError", ValueError("bad value")),
        ("sshpipe PipeBroken with cause", error),
    ]
    return [(name, pickle.dumps(value, protocol=5)) for name, value in items]


def best_us(load: Callable[[bytes], Any], data: bytes, number: int, repeat: int) -> float:
    """Microseconds per call of ``load(data)``, best of ``repeat`` runs of ``number``."""
    def calls() -> None:
        for _ in range(number):
            load(data)
    return best_time(calls, repeat) / number * 1e6


def run(repeat: int, quick: bool) -> List[Dict[str, Any]]:
    rows = []
    for name, data in payloads():
        number = max(1, min(2000, int(2e6 // max(len(data), 200))))
        if quick:
            number = max(1, number // 20)
        plain = best_us(pickle.loads, data, number, repeat)
        policy = best_us(DEFAULT.loads, data, number, repeat)
        rows.append({"payload": name, "bytes": len(data), "pickle_us": round(plain, 2),
                     "default_policy_us": round(policy, 2),
                     "ratio": round(policy / plain, 2) if plain else None})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = run(1 if args.quick else args.repeat, args.quick)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'payload':32} {'bytes':>9} {'pickle.loads':>13} {'default policy':>15} {'ratio':>6}")
    for row in rows:
        print(f"{row['payload']:32} {row['bytes']:>9} {row['pickle_us']:>11.2f}us "
              f"{row['default_policy_us']:>13.2f}us {row['ratio']:>6}")


if __name__ == "__main__":
    main()
