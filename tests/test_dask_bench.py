"""Smoke run of benchmarks/bench_dask.py: the quick run reports every number."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

pytest.importorskip("distributed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_dask.py")


@pytest.mark.timeout(300)
def test_quick_run_reports_both_clusters_and_the_targets():
    """--quick --json: sshpipe's and distributed's SSHCluster each have positive
    start and close times and a count of what they left, sshpipe's is zero, and
    each target is met or missed (never unreported)."""
    done = subprocess.run([sys.executable, SCRIPT, "--quick", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["trials"] == 1 and len(report["columns"]) == 2
    for numbers in report["columns"].values():
        for key in ("start_s", "start_median_s", "close_s"):
            assert math.isfinite(numbers[key]) and numbers[key] > 0, (key, numbers)
    assert report["columns"]["sshpipe"]["left"] == 0
    assert all(t["status"] in ("met", "missed") for t in report["targets"])
