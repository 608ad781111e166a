"""Remote agents' log records land in the caller's MpLogger files with their host."""
from __future__ import annotations

import logging
from pathlib import Path

from sshpipe import MpLogger, SSHPipe

AGENTS = Path(__file__).parent / "agents"


def test_remote_records_land_in_mplogger_files_with_host(sshd, tmp_path):
    """A handler's logging call over SSH is written by the caller's MpLogger, with the
    remote host in the line, in a file keyed by host."""
    logdir = tmp_path / "logs"
    mplogger = MpLogger(logging_level=logging.INFO, logdir=str(logdir), process_key=["host"],
                        level_formats={"default": "%(levelname)s [%(host)s] %(message)s"})
    mplogger.start(name="caller")
    try:
        with SSHPipe(sshd.alias, str(AGENTS / "echo_agent.py"), config=sshd.config_path,
                     python=sshd.python) as pipe:
            pipe.send(("cmd", "log", "over ssh"))
            pipe.flush(timeout=30)
    finally:
        mplogger.stop()
    lines = [line for path in logdir.iterdir() for line in path.read_text().splitlines()]
    assert f"WARNING [{sshd.alias}] remote warning over ssh" in lines
    files = [path.name for path in logdir.iterdir()]
    assert any(sshd.alias in name for name in files), files
