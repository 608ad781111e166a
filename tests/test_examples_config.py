"""examples/config_tool.py runs and prints what its config implies."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "config_tool.py"


def test_config_tool_example(tmp_path):
    """The example resolves, edits and dumps a config given on the command line."""
    cfg = tmp_path / "config"
    cfg.write_text("# mine\nHost web\n\tHostName w.example.com\n\tUser u\n")
    res = subprocess.run([sys.executable, str(EXAMPLE), str(cfg)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "web -> u@w.example.com:22"
    assert lines[2:4] == ["OpenSSH 9.2: ipqos lowdelay throughput", "OpenSSH 10.0: ipqos ef cs1"]
    assert lines[4] == "db  -> dba@db.example.com"
    assert lines[5] == "hosts: web | db"
    assert cfg.read_text() == ("# mine\nHost web\n\tHostName w.example.com\n\tUser u\n"
                               "\tPort 2200\n\nHost db\n\tHostName db.example.com\n\tUser dba\n")


def test_config_tool_example_default_sample():
    """Without arguments the example uses its own sample and leaves ~/.ssh alone."""
    res = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("web -> deploy@web.example.com:2222\nkeepalive: 30")
