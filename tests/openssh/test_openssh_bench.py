"""Smoke test of benchmarks/bench_openssh.py: the quick run produces every number
and leaves no master behind."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openssh_kit import processes_mentioning

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_openssh.py"

EXPECTED = {
    "mux": {"rtt_100B_median_us", "rtt_100B_p90_us", "throughput_1MiB_MBps", "open_ms",
            "first_byte_ms", "master_start_ms"},
    "passenger": {"rtt_100B_median_us", "rtt_100B_p90_us", "open_ms", "first_byte_ms"},
    "ssh_cat": {"rtt_100B_median_us", "rtt_100B_p90_us", "throughput_1MiB_MBps",
                "first_byte_ms"},
    "paramiko_cat": {"rtt_100B_median_us", "rtt_100B_p90_us", "throughput_1MiB_MBps",
                     "first_byte_ms"},
}


@pytest.mark.timeout(200)
def test_quick_run_reports_every_metric_for_every_column():
    """Every column has every metric it names, each a positive finite number."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json"], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert set(report["results"]) == set(EXPECTED)
    for column, metrics in EXPECTED.items():
        numbers = report["results"][column]
        assert set(numbers) >= metrics, (column, numbers)
        for metric in metrics:
            value = numbers[metric]
            assert math.isfinite(value) and value > 0, (column, metric, value)
    # The bench's masters end with it through their watchdogs, which notice the
    # owner's exit asynchronously: allow them a bounded moment.
    deadline = time.monotonic() + 10
    while processes_mentioning("spb-") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_mentioning("spb-") == []
