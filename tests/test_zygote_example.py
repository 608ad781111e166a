"""examples/warm_steps.py runs as written: a cold first step, warm ones after it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sshpipe._transports import openssh_usable

EXAMPLE = Path(__file__).parent.parent / "examples" / "warm_steps.py"


@pytest.mark.skipif(not openssh_usable(), reason="no OpenSSH client with multiplexing")
def test_warm_steps_example():
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # cold, unless another run on this machine left a zygote of the same key
    assert lines[0] in ("step 0: cold start, 0, exit 0", "step 0: warm start, 0, exit 0")
    warm = [line for line in lines[1:] if "warm start" in line]
    assert warm and all(line.endswith(", exit 0") for line in warm)
    assert lines[-2] == "agents: 5 different processes"
    # 1; 0 when another run on this machine (the same user) stopped it first
    assert lines[-1] in ("zygotes stopped: 1", "zygotes stopped: 0")
