"""The README's OpenSSH example runs as written and prints what the README shows."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = """\
'tr a-z A-Z': status 0, output 'HELLO'
'wc -c': status 0, output '1000'
'cat; exit 3': status 3, output 'bye'
sessions: 3, ssh masters: 1, sshd logins: 1
masters listed: 1
masters stopped: 1
masters left: 0
"""


def test_openssh_sessions_example():
    """Three sessions, one master, one sshd login; nothing left afterwards."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # this tree's sshpipe
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "openssh_sessions.py")],
                            capture_output=True, text=True, timeout=180, cwd=str(ROOT), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED
    readme = (ROOT / "README.rst").read_text()
    assert all(line in readme for line in EXPECTED.splitlines())
