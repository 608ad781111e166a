"""The ``sshpipe`` command, driven through its real entry point (``run`` also
through a pseudo-terminal, as a user types at it)."""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import sshpipe
from sshpipe.testing import free_port, process_id, wait_gone

AGENT = str(Path(__file__).parent / "agents" / "cli_agent.py")


def _entry_point() -> str:
    found = shutil.which("sshpipe", path=os.path.dirname(sys.executable))
    if found is None:
        pytest.fail("the sshpipe console script is not installed next to this Python")
    return found


SSHPIPE = _entry_point()


# Exec argv[1:] with SIGINT back to its default: Ctrl-C reaches the command as at
# a terminal even when this run inherited SIGINT ignored (started in the
# background without job control), which the exec'd program would inherit too.
DEFAULT_SIGINT_EXEC = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                       "os.execv(sys.argv[1], sys.argv[1:])")


def sshpipe_cmd(*args: str, input: str = "", timeout: float = 120, **kwargs):
    return subprocess.run([SSHPIPE, *args], input=input, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def run_args(sshd, *options: str, script: str = AGENT) -> list:
    return ["run", sshd.alias, "-F", sshd.config_path, "--python", sshd.python, *options,
            script]


class Terminal:
    """``sshpipe`` with its stdin and stdout on a pseudo-terminal that is its
    controlling terminal (so Ctrl-C is a real SIGINT to its process group);
    stderr goes to a file."""

    def __init__(self, argv, stderr_path: Path):
        self.master, slave = os.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO  # the output is then only what the command prints
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self._stderr = open(stderr_path, "w+")
        self.stderr_path = stderr_path
        # A new session, then the terminal becomes its controlling terminal.
        take_tty = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                    + DEFAULT_SIGINT_EXEC)
        self.process = subprocess.Popen([sys.executable, "-c", take_tty, *argv], stdin=slave,
                                        stdout=slave, stderr=self._stderr,
                                        start_new_session=True)
        os.close(slave)
        self.output = b""

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, text: str, timeout: float = 30) -> str:
        """Wait until ``text`` has been printed; return everything printed so far."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} not printed within {timeout} s; got "
                                     f"{self.output!r}; stderr {self.stderr()!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # the command closed the terminal
                    time.sleep(0.01)
        return self.output.decode()

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        try:
            while select.select([self.master], [], [], 0)[0]:
                chunk = os.read(self.master, 65536)
                if not chunk:
                    break
                self.output += chunk
        except OSError:
            pass
        return code

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.master)
        self._stderr.close()


@pytest.fixture
def terminal(tmp_path):
    made = []

    def start(*args: str) -> Terminal:
        term = Terminal([SSHPIPE, *args], tmp_path / f"stderr{len(made)}")
        made.append(term)
        return term

    yield start
    for term in made:
        term.close()


# -- top level ------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flag_prints_the_version_issue_18(flag):
    """``sshpipe --version`` and ``-V`` print the package version and exit 0."""
    result = sshpipe_cmd(flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sshpipe {sshpipe.__version__}"
    assert sshpipe.__version__ == "1.0.0"


@pytest.mark.parametrize("argv, usage", [
    (["run", "box", "--bogus", "agent.py"], "usage: sshpipe run "),
    (["run", "box"], "usage: sshpipe run "),
    (["run", "-p", "many", "box", "agent.py"], "usage: sshpipe run "),
    (["config", "get", "web", "--bogus"], "usage: sshpipe config get "),
    (["demo", "--bogus"], "usage: sshpipe demo "),
])
def test_subcommand_argument_error_shows_that_subcommands_usage_issue_18(argv, usage):
    """An argument error in a subcommand prints the subcommand's usage, exit 2."""
    result = sshpipe_cmd(*argv)
    assert result.returncode == 2
    assert result.stderr.startswith(usage), result.stderr
    assert "error:" in result.stderr


def test_bad_ssh_option_is_a_usage_error(tmp_path):
    """``-o`` takes ssh config options only; a bad one is named with the reason."""
    result = sshpipe_cmd("run", "-o", "NoSuchOption=1", "box", "agent.py")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: sshpipe run ")
    assert "-o NoSuchOption=1: Bad configuration option: nosuchoption" in result.stderr


# -- run: the conversation -----------------------------------------------------

def test_run_prints_each_reply_as_it_arrives_issue_18(sshd, terminal):
    """Through a terminal: each reply is printed before the next line is typed, EOF
    (Ctrl-D) ends the agent, exit 0, and no summary line without -v."""
    term = terminal(*run_args(sshd))
    term.type(b"first\n")
    term.expect("'FIRST'")          # before any further input
    term.type(b"second\n")
    term.expect("'SECOND'")
    term.type(b"\x04")              # Ctrl-D: end of input
    assert term.wait() == 0, term.stderr()
    assert term.output.decode().split() == ["'FIRST'", "'SECOND'"]
    assert term.stderr() == ""


def test_run_sends_piped_lines_and_verbose_adds_the_summary(sshd):
    """Piped input: one reply per line; -v adds the summary line on stderr."""
    result = sshpipe_cmd(*run_args(sshd), input="a\nb\nc")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["'A'", "'B'", "'C'"]
    assert result.stderr == ""
    verbose = sshpipe_cmd(*run_args(sshd, "-v"), input="a\nb\n")
    assert verbose.returncode == 0, verbose.stderr
    assert "sshpipe run: 2 messages sent; agent exit status 0" in verbose.stderr


def test_run_passes_words_after_the_script_to_it(sshd):
    """Everything after SCRIPT is the script's, options included (as with ssh)."""
    result = sshpipe_cmd(*run_args(sshd), "-v", "--fast", "two words", input="argv\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [repr(["-v", "--fast", "two words"])]
    assert "messages sent" not in result.stderr  # that -v was the script's


def test_run_prints_a_handler_error_once_and_exits_with_its_status_issue_18(sshd):
    """A handler's error is printed once; the exit status is the agent's (3)."""
    result = sshpipe_cmd(*run_args(sshd), input="ok\nraise boom\nnever\n")
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines() == ["'OK'"]
    assert result.stderr.count("boom") == 1, result.stderr
    assert "message 2: handle raised ValueError: boom" in result.stderr
    assert "never handled: [3]" in result.stderr  # nothing lost silently
    verbose = sshpipe_cmd(*run_args(sshd, "-v"), input="raise boom\n")
    assert "Traceback" in verbose.stderr and "cli_agent.py" in verbose.stderr


@pytest.mark.parametrize("line, status", [("exit 7", 7), ("exit 0", 0), ("kill", 128 + 9)])
def test_run_exits_with_the_agents_exit_status_issue_18(sshd, line, status):
    """``sshpipe run`` exits as the agent did (128+N for signal N), like ssh."""
    result = sshpipe_cmd(*run_args(sshd), input=f"{line}\n")
    assert result.returncode == status, result.stderr


def test_run_shows_remote_output_and_logs_on_stderr(sshd):
    """The handler's print() and logging reach stderr, named by host; stdout
    keeps only replies."""
    result = sshpipe_cmd(*run_args(sshd), input="print hello there\nlog careful\nx\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["'X'"]
    assert f"{sshd.alias}: stdout: hello there" in result.stderr
    assert f"{sshd.alias}: WARNING cli_agent: careful" in result.stderr


def test_ctrl_c_ends_quietly_with_130_issue_18(sshd, terminal):
    """Ctrl-C at the terminal: exit 130, nothing printed (no "Process SSHPipe-1:"
    traceback), and the remote agent is gone."""
    term = terminal(*run_args(sshd))
    term.type(b"pid\n")
    output = term.expect("\n")
    agent_pid = int(output.strip().splitlines()[0])
    agent = process_id(agent_pid)
    term.type(b"\x03")
    assert term.wait() == 130
    assert term.stderr() == ""
    assert term.output.decode().split() == [str(agent_pid)]
    assert wait_gone([agent], timeout=30) == []


# -- run: ssh's options ----------------------------------------------------------

@pytest.fixture
def bare_config(sshd, tmp_path):
    """A config naming the test server's address but not its port, user or key."""
    path = tmp_path / "bare_config"
    path.write_text(
        "Host bare\n"
        f"    HostName {sshd.address}\n"
        f"    UserKnownHostsFile {sshd.known_hosts_path}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    StrictHostKeyChecking yes\n"
        "    IdentitiesOnly yes\n"
        "    IdentityFile /nonexistent/key\n"
        "    BatchMode yes\n")
    return str(path)


def test_run_takes_p_l_i_before_or_after_the_host_issue_18(sshd, bare_config):
    """-p, -l and -i supply port, user and key, before or after HOST, like ssh."""
    common = ["-F", bare_config, "--python", sshd.python]
    for argv in (["run", "bare", "-p", str(sshd.port), "-l", sshd.user, "-i", sshd.key_path,
                  *common, AGENT],
                 ["run", "-p", str(sshd.port), "-l", sshd.user, *common, "bare",
                  "-i", sshd.key_path, AGENT]):
        result = sshpipe_cmd(*argv, input="hi\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["'HI'"]


def test_run_takes_o_options_which_win_over_the_config_issue_18(sshd, bare_config):
    """-o KEY=VALUE (or "KEY VALUE") works like ssh -o and wins over the file."""
    result = sshpipe_cmd("run", "bare", "-F", bare_config, "-o", f"Port={sshd.port}",
                         "-o", f"User {sshd.user}", "-o", f"IdentityFile={sshd.key_path}",
                         "--python", sshd.python, AGENT, input="hi\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["'HI'"]
    closed = free_port()
    refused = sshpipe_cmd("run", sshd.alias, "-F", sshd.config_path, "-o", f"Port={closed}",
                          AGENT, input="")
    assert refused.returncode == 255
    assert "refused" in refused.stderr and str(closed) in refused.stderr


def test_run_reports_an_unreachable_host_with_255(tmp_path):
    """A host that refuses connections: exit 255 with the reason, as ssh does."""
    config = tmp_path / "config"
    config.write_text(f"Host nowhere\n HostName 127.0.0.1\n Port {free_port()}\n")
    result = sshpipe_cmd("run", "nowhere", "-F", str(config), "x.py", timeout=60)
    assert result.returncode == 255
    assert result.stderr.startswith("sshpipe run: ") and "refused" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_of_a_program_that_is_no_agent_fails_at_once_issue_18(sshd):
    """``sshpipe run box /bin/cat``: cat echoes the request back; the command says
    so within seconds (not the ready timeout), with status 255 and no traceback."""
    started = time.monotonic()
    result = sshpipe_cmd("run", sshd.alias, "-F", sshd.config_path, "/bin/cat", timeout=60)
    took = time.monotonic() - started
    assert result.returncode == 255, result.stderr
    assert "does not speak the sshpipe protocol" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert took < 10, took  # about a second on a quiet machine; the ready timeout is 60 s


def test_python_dash_m_sshpipe_is_the_same_command():
    """``python -m sshpipe`` is the same command line."""
    result = subprocess.run([sys.executable, "-m", "sshpipe", "-V"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"sshpipe {sshpipe.__version__}"


def test_ctrl_c_while_connecting_ends_quietly_with_130(tmp_path):
    """Ctrl-C while the SSH connection hangs (a port that never speaks): exit 130,
    nothing printed."""
    import signal
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        silent.settimeout(60)
        config = tmp_path / "config"
        config.write_text(f"Host silent\n HostName 127.0.0.1\n Port {silent.getsockname()[1]}\n")
        process = subprocess.Popen([sys.executable, "-c", DEFAULT_SIGINT_EXEC, SSHPIPE, "run",
                                    "-F", str(config), "silent", "x.py"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
        try:
            connection, _ = silent.accept()  # the command is now waiting for a banner
            with connection:
                os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
                out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert process.returncode == 130
    assert out == b"" and err == b""
