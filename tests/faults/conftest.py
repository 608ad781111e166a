"""The fault matrix: every test here is marked ``faults`` (run alone with
``pytest -m faults``), runs under the spawn and fork start methods where the
start method matters, and records its detection time for the closing report."""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # faultkit

import faultkit  # noqa: E402

HERE = Path(__file__).parent.resolve()


def pytest_collection_modifyitems(config, items):
    """Mark every test under tests/faults with ``faults`` (and nothing else)."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture(params=["spawn", "fork"])
def method(request):
    """Run the test under one start method; restore the previous one afterwards."""
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(request.param, force=True)
    yield request.param
    multiprocessing.set_start_method(previous, force=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the matrix; with SSHPIPE_FAULTS_REPORT=<path> also write it as JSON."""
    rows = faultkit.MATRIX
    if not rows:
        return
    path = os.environ.get("SSHPIPE_FAULTS_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1)
    write = terminalreporter.write_line
    write("")
    write(f"fault matrix (detection bound {faultkit.DEAD_BOUND:g} s + {faultkit.SLACK:g} s "
          f"slack){'; written to ' + path if path else ''}")
    write(f"{'case':58} {'method':7} {'seconds':>8}  result")
    for row in sorted(rows, key=lambda r: (r["case"], r["method"])):
        seconds = "-" if row["seconds"] is None else f"{row['seconds']:.3f}"
        write(f"{row['case']:58} {row['method']:7} {seconds:>8}  {row['result']}")
