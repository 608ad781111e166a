"""examples/mplogger_example.py runs and prints and writes lines in the seed's format."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mplogger_example.py"
RUN_TIMEOUT = 60.0      # seconds for the example to finish
# The seed README's "Example output" lines.
SEED_LINE = re.compile(
    r"^\[ \d{4}-\d{2}-\d{2},\d{2}:\d{2}:\d{2}\.\d{6} \]"
    r"\[ (?P<level>DEBUG|INFO) \]\[ (?P<msg>.+?) \]"
    r"(?P<where>\[ mplogger_example\.<module>\(\d+\) \])?$")


def test_mplogger_example_prints_and_writes_seed_format(tmp_path):
    """The seed example logs 2 DEBUG lines (with their origin) and 2 INFO lines from children."""
    logdir = tmp_path / "logs"
    result = subprocess.run([sys.executable, str(EXAMPLE), str(logdir)], capture_output=True,
                            text=True, timeout=RUN_TIMEOUT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = result.stderr.splitlines()
    matches = [SEED_LINE.match(line) for line in printed]
    assert all(matches), printed
    assert [m.group("level") for m in matches] == ["DEBUG", "INFO", "INFO", "DEBUG"]
    assert matches[0].group("msg") == "starting sub processes" and matches[0].group("where")
    assert matches[-1].group("msg") == "sub processes completed" and matches[-1].group("where")
    assert all(re.match(r"proc \[\d+\]: 0/1 - sleep [ .\d]{4}sec$", m.group("msg"))
               for m in matches[1:3])

    main_lines = (logdir / "main_process.log").read_text(encoding="utf-8").splitlines()
    child_lines = (logdir / "acrilog.subproc.log").read_text(encoding="utf-8").splitlines()
    assert main_lines == [printed[0], printed[3]]
    assert sorted(child_lines) == sorted(printed[1:3])
    assert f"{logdir / 'main_process.log'}: 2 lines" in result.stdout
