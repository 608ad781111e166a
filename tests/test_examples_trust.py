"""The README's threat-model example runs as written and prints what it promises."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "trust_example.py"


def test_trust_example_loads_data_and_refuses_the_rest():
    """Data loads; a class not allowed and an os.system reply are refused until the
    class is allowed; the command is refused either way and never runs."""
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                            timeout=180, cwd=str(EXAMPLE.parent.parent))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "default policy:",
        "data: loaded dict",
        "namespace: refused argparse.Namespace (reply 2), nothing ran",
        "command: refused posix.system (reply 3), nothing ran",
        "trust_remote=[argparse.Namespace]:",
        "namespace: loaded Namespace",
        "command: refused posix.system (reply 2), nothing ran",
    ]
    assert "must never run" not in result.stdout + result.stderr
