"""examples/dask_example.py (the README's Dask section) runs as written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

ROOT = Path(__file__).parent.parent


def test_dask_example_computes_and_leaves_nothing():
    """The example starts a scheduler and two workers over SSH, computes a bag
    graph with a Client and, once closed, leaves no process on the host."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "dask_example.py")],
                          capture_output=True, text=True, timeout=150, env=env, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("scheduler at tcp://127.0.0.1:") and lines[0].endswith(
        "| workers: 2")
    assert lines[1:] == ["sum of squares below 1000: 332833500",
                         "processes left on the host: 0"]
