"""The README's SSHPipe examples run as written against the test sshd."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def _env_with_home(sshd, home: Path) -> dict:
    """An environment whose ~/.ssh/config knows the test server's alias."""
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True)
    (ssh_dir / "config").write_text(Path(sshd.config_path).read_text())
    env = dict(os.environ, HOME=str(home))
    env.pop("PYTHONPATH", None)
    return env


def test_seed_example_writes_four_lines_remotely_and_exits_cleanly(sshd, tmp_path):
    """The seed's two programs, with only host and directory changed: the four lines
    arrive in the remote file and the response is a clean exit."""
    agent_dir = tmp_path / "agent_dir"
    agent_dir.mkdir()
    for name in ("sshremotehandler.py", "sshremotehandlerusage.py"):
        shutil.copy(EXAMPLES / "seed" / name, agent_dir / name)
    env = _env_with_home(sshd, tmp_path / "home")
    env.update(SSHPIPE_HOST=sshd.alias, SSHPIPE_AGENT_DIR=str(agent_dir))
    result = subprocess.run([sys.executable, str(agent_dir / "sshremotehandlerusage.py")],
                            capture_output=True, text=True, timeout=120, env=env,
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Response:  (0, '', '')" in result.stdout or "Response(exitcode=0" in result.stdout
    written = (agent_dir / "sshremotehandler.py.remote.log").read_text()
    assert written == ("This is life.\nThis is also life.\nThis is yet another life.\n"
                       "That is all, life.\n")


def test_pipe_example_runs(tmp_path):
    """examples/pipe_example.py starts its own sshd and prints the replies it got."""
    result = subprocess.run([sys.executable, str(EXAMPLES / "pipe_example.py")],
                            capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "reply: 'HELLO'" in lines and "reply: 'WORLD'" in lines
    assert any(line.startswith("remote python") for line in lines)
    assert lines[-1] == "exit status 0, nothing lost"


def test_demo_command_prints_remote_replies():
    """`sshpipe demo` runs an agent over a throw-away sshd and prints its replies."""
    result = subprocess.run([sys.executable, "-m", "sshpipe", "demo", "--messages", "3"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("reply from") == 3
    assert "agent exited with status 0" in result.stdout


def test_faults_example_accounts_for_every_message(tmp_path):
    """examples/faults_example.py: the killed agent's pipe reports -9 and accounts for all."""
    result = subprocess.run([sys.executable, str(EXAMPLES / "faults_example.py")],
                            capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "agent exit status: -9 - the agent was killed by signal 9" in result.stdout
    assert "every message accounted for: True" in result.stdout
