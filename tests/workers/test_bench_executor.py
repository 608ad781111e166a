"""Smoke test of benchmarks/bench_executor.py: the quick run reports every number."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_executor.py")


@pytest.mark.timeout(150)
def test_quick_run_reports_every_metric():
    """--quick --json on the 1-host row: every column and metric is a positive number."""
    pytest.importorskip("execnet")
    done = subprocess.run([sys.executable, SCRIPT, "--quick", "--json", "--rows", "1 host"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["errors"] == {}
    row = report["results"]["1 host"]
    assert set(row) == {"sshexecutor", "execnet_rr", "local_pool"}
    for column, numbers in row.items():
        for metric in report["metrics"]:
            value = numbers[metric]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, \
                (column, metric, value)
    assert [t["status"] for t in report["targets"]] in (["met"], ["missed"])
