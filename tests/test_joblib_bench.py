"""Smoke run of benchmarks/bench_joblib.py: the quick run reports every number."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

pytest.importorskip("joblib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_joblib.py")


@pytest.mark.timeout(200)
def test_quick_run_reports_both_columns_and_the_targets():
    """--quick --json: sshpipe and loky each have a positive wall time, ratio and
    overhead, and each target is met or missed (never unreported)."""
    done = subprocess.run([sys.executable, SCRIPT, "--quick", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["tasks"] == 1000 and report["slots"] == 4
    assert set(report["columns"]) == {"sshpipe", "loky"}
    for numbers in report["columns"].values():
        for key in ("wall_s", "wall_median_s", "ratio_to_ideal"):
            assert math.isfinite(numbers[key]) and numbers[key] > 0, (key, numbers)
        assert math.isfinite(numbers["overhead_per_task_ms"])
    assert [t["status"] in ("met", "missed") for t in report["targets"]] == [True, True]
