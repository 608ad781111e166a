"""examples/multipipe.py runs against its own sshd and prints every pipe's outcome."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "multipipe.py"
RUN_TIMEOUT = 90.0      # seconds for the example to finish on a loaded machine
REPLY = re.compile(r"^reply: (squarer\d) \(pid \d+\): (\d+)\^2 = (\d+)$")


def test_multipipe_example_reports_bad_pipe_and_squares_on_the_others(tmp_path):
    """Two squarers answer the broadcast and their own number; the bad pipe is reported."""
    result = subprocess.run([sys.executable, str(EXAMPLE), "2"], capture_output=True, text=True,
                            timeout=RUN_TIMEOUT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("start: broken failed:") and "exit status 127" in lines[0]
    assert lines[1] == "start: <SSHMultiPipe running 3 pipes: running=2 broken=1>"
    matches = [REPLY.match(line) for line in lines[2:6]]
    assert all(matches), lines
    replies = sorted(match.groups() for match in matches)
    assert replies == [("squarer0", "10", "100"), ("squarer0", "7", "49"),
                       ("squarer1", "11", "121"), ("squarer1", "7", "49")]
    assert lines[6:] == ["close: squarer0: exit status 0", "close: squarer1: exit status 0",
                         "close: broken: AgentStartError"]
