"""Smoke test of benchmarks/bench_pipe.py: the quick run produces every number."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_pipe.py")

COLUMNS = {"sshpipe", "execnet_C", "execnet_noC", "paramiko_cat", "ssh_cat", "mp_pipe"}
METRICS = {"rtt_100B_median_us", "rtt_100B_p90_us", "throughput_1MiB_MBps",
           "rate_1KiB_msgs_per_s", "start_to_hello_ms"}


@pytest.mark.timeout(150)
def test_quick_run_reports_every_metric_for_every_column():
    pytest.importorskip("execnet")
    done = subprocess.run([sys.executable, SCRIPT, "--quick", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["errors"] == {}
    assert set(report["columns"]) == COLUMNS
    assert set(report["metrics"]) == METRICS
    for column in COLUMNS:
        numbers = report["results"][column]
        assert set(numbers) >= METRICS, (column, numbers)
        for metric in METRICS:
            value = numbers[metric]
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, \
                (column, metric, value)
    statuses = {row["target"]: row["status"] for row in report["targets"]}
    assert len(statuses) == 5
    assert set(statuses.values()) <= {"met", "missed"}, statuses
