"""examples/workflow.py runs its steps on named hosts and prints their gathered logs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "workflow.py"


def test_workflow_example_runs_steps_in_order_with_logs(sshd):
    """Each step runs on its host after its needs, and the caller prints its logs."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--hosts", f"{sshd.alias},{sshd.alias}",
         "--config", sshd.config_path, "--python", sshd.python],
        capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    finished = [line.split()[0] for line in lines[1:5]]
    assert finished == ["fetch", "clean", "stats", "report"]
    assert "report  on beta" in done.stdout and "mean 5.67" in done.stdout
    assert "[clean@beta] INFO    workflow: kept 6 of 7 numbers" in done.stdout
    assert "[report@beta] WARNING workflow: largest value 9 is above 8" in done.stdout
    assert done.stderr == ""
