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

COLUMNS = {"sshpipe", "sshpipe_openssh", "execnet_C", "execnet_noC", "paramiko_cat", "ssh_cat",
           "mp_pipe"}
CPU = {f"cpu_ms_per_MiB_{role}" for role in ("caller", "child", "ssh", "sshd", "agent", "total")}
METRICS = {"rtt_100B_median_us", "rtt_100B_p90_us", "throughput_1MiB_MBps",
           "rate_1KiB_msgs_per_s", "start_to_hello_ms", "first_start_ms",
           "start_to_hello_plain_ms", "first_start_plain_ms"} | CPU
# Rows only some columns have: the first pipe (a master started) is the openssh
# column's; mp_pipe has no remote shell.
OPENSSH_ONLY = {"first_start_ms", "first_start_plain_ms"}


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
        wanted = METRICS if column == "sshpipe_openssh" else METRICS - OPENSSH_ONLY
        if column == "mp_pipe":
            wanted = wanted - {"start_to_hello_plain_ms"}
        assert set(numbers) >= wanted, (column, numbers)
        for metric in wanted - CPU:
            value = numbers[metric]
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, \
                (column, metric, value)
        # CPU counters tick at 100 Hz: a role may read 0 in a quick run, never less,
        # and every column's path costs something in all.
        assert all(numbers[metric] >= 0 for metric in CPU), (column, numbers)
        assert numbers["cpu_ms_per_MiB_total"] > 0, (column, numbers)
    statuses = {row["target"]: row["status"] for row in report["targets"]}
    assert len(statuses) == 5 + 7  # issue 4's, issue 13's [openssh]
    assert set(statuses.values()) <= {"met", "missed"}, statuses
