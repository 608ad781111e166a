"""examples/joblib_example.py (the README's joblib section) runs as written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("joblib")

ROOT = Path(__file__).parent.parent


def test_joblib_example_prints_its_results():
    """The example counts primes remotely, streams a generator and shows a
    remote traceback, then exits cleanly."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "joblib_example.py")],
                          capture_output=True, text=True, timeout=150, env=env, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "primes below 10000: 1229",
        "squares: [0, 1, 4, 9, 16]",
        "raised: unlucky 13 | remote traceback: True",
    ]
