"""README.rst's Python snippets run as written, against a real sshd.

The convention (stated in README.rst's first section's source, as a comment):

- every ``.. code:: python`` (or ``code-block``) block is a program that this
  test runs, each in a fresh directory, as ``__main__`` under the spawn start
  method (so a missing ``if __name__ == "__main__":`` guard fails here);
- the host names the snippets use (:data:`PLACEHOLDER_HOSTS`) reach the test
  sshd through ``~/.ssh/config`` in a throw-away home directory, the way a
  reader points them at their own machines;
- a block that is not meant to run is preceded by the comment
  ``.. not run: <why>``; the reason is required;
- in ``::`` literal blocks, a line starting with ``$ `` is a shell command,
  run from the repository's top directory, and the lines after it, up to the
  next command or the block's end, are its exact standard output; other
  literal blocks (commands without a prompt, sample output) are not run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
# The names README snippets use for "your own hosts".
PLACEHOLDER_HOSTS = ("web1", "web2", "db1", "db2", "db3", "gpu1", "build-box", "sched-host",
                     "worker1", "worker2")

_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. (?:code|code-block|sourcecode):: python\s*$")
_NOT_RUN = re.compile(r"^\s*\.\. not run:(?P<reason>.*)$")
_OPTION = re.compile(r"^\s+:[\w-]+:")
# Runs the snippet as __main__ under spawn, as a script would run on a platform
# (or Python version) whose default start method is not fork.
_SPAWN_RUNNER = ("import multiprocessing, runpy, sys; multiprocessing.set_start_method('spawn'); "
                 "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


@dataclass(frozen=True)
class Snippet:
    line: int                # README.rst line of the directive
    code: str
    not_run: Optional[str]   # the reason given, None for a block that runs

    def __str__(self) -> str:
        return f"README.rst:{self.line}"


def snippets(text: str) -> List[Snippet]:
    """Every Python code block of an reStructuredText document, in order."""
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        before = number - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = _NOT_RUN.match(lines[before]) if before >= 0 else None
        indent = len(match.group("indent"))
        body = []
        for following in lines[number + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        while body and (not body[0].strip() or _OPTION.match(body[0])):
            body.pop(0)
        found.append(Snippet(number + 1, textwrap.dedent("\n".join(body)).strip() + "\n",
                             marker.group("reason").strip() if marker else None))
    return found


@dataclass(frozen=True)
class Command:
    line: int                # README.rst line of the "$ " prompt
    command: str
    output: List[str]

    def __str__(self) -> str:
        return f"README.rst:{self.line}"


def shell_sessions(text: str) -> List[Command]:
    """Every ``$ command`` line with the output lines that follow it."""
    lines = text.splitlines()
    found: List[Command] = []
    indent: Optional[str] = None
    for number, line in enumerate(lines):
        stripped = line.lstrip()
        margin = line[:len(line) - len(stripped)]
        if stripped.startswith("$ ") and margin:
            found.append(Command(number + 1, stripped[2:], []))
            indent = margin
        elif indent is not None and stripped and margin == indent:
            found[-1].output.append(stripped)
        else:
            indent = None
    return found


SNIPPETS = snippets(README.read_text(encoding="utf-8"))
COMMANDS = shell_sessions(README.read_text(encoding="utf-8"))
RUNNABLE = [snippet for snippet in SNIPPETS if snippet.not_run is None]


def _home(tmp_path: Path, sshd, config: Optional[str]) -> Path:
    """A home directory whose ssh config is ``config`` (None: no ~/.ssh at all)."""
    home = tmp_path / "home"
    home.mkdir()
    if config is not None:
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "config").write_text(config)
    return home


def placeholder_config(sshd) -> str:
    """The test sshd's client block, under every placeholder host name."""
    block = sshd.client_config()
    first, rest = block.split("\n", 1)
    assert first == f"Host {sshd.alias}"
    return f"Host {' '.join(PLACEHOLDER_HOSTS)}\n{rest}"


def run_snippet(snippet: Snippet, tmp_path: Path, home: Path) -> subprocess.CompletedProcess:
    workdir = tmp_path / "work"
    workdir.mkdir()
    script = workdir / "snippet.py"
    script.write_text(snippet.code)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SSHPIPE_")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-c", _SPAWN_RUNNER, str(script)], cwd=str(workdir),
                          env=env, capture_output=True, text=True, timeout=240)


def _fail_message(snippet: Snippet, result: subprocess.CompletedProcess) -> str:
    return (f"{snippet} exited {result.returncode}\n--- code ---\n{snippet.code}"
            f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-5000:]}")


def test_readme_has_python_snippets_and_each_skip_says_why_issue_18():
    """The parser finds the README's Python blocks; a block left out says why."""
    assert len(RUNNABLE) >= 6, [str(snippet) for snippet in SNIPPETS]
    assert COMMANDS, "README.rst shows no '$ ' shell command"
    for snippet in SNIPPETS:
        assert snippet.not_run != "", f"{snippet}: '.. not run:' needs a reason"
        assert snippet.code.strip(), f"{snippet}: empty code block"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("snippet", RUNNABLE, ids=str)
def test_readme_snippet_runs_as_written_issue_18(snippet, sshd, tmp_path):
    """The snippet runs to completion under spawn with the placeholder hosts
    pointing at the test sshd, and leaves ~/.ssh/config as it was."""
    config = placeholder_config(sshd)
    home = _home(tmp_path, sshd, config)
    result = run_snippet(snippet, tmp_path, home)
    assert result.returncode == 0, _fail_message(snippet, result)
    assert (home / ".ssh" / "config").read_text() == config, f"{snippet} changed ~/.ssh/config"
    assert "Traceback" not in result.stderr, _fail_message(snippet, result)


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_readme_shell_command_prints_what_it_shows_issue_18(command, sshd, tmp_path):
    """A ``$ `` command of the README prints exactly the lines shown under it,
    run from the top directory with this environment's ``sshpipe`` on PATH."""
    home = _home(tmp_path, sshd, placeholder_config(sshd))
    env = {key: value for key, value in os.environ.items() if not key.startswith("SSHPIPE_")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT),
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    result = subprocess.run(["bash", "-c", command.command], cwd=str(ROOT), env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{command}: {command.command}\n{result.stderr}"
    assert result.stdout.splitlines() == command.output, f"{command}: {result.stderr}"


CONFIG_SNIPPETS = [snippet for snippet in RUNNABLE if "sshpipe.load(" in snippet.code]


@pytest.mark.parametrize("config", [None, ""], ids=["no-ssh-dir", "empty-config"])
@pytest.mark.parametrize("snippet", CONFIG_SNIPPETS, ids=str)
def test_config_snippet_works_without_a_config_and_never_writes_one_issue_18(
        snippet, config, sshd, tmp_path):
    """The config snippet works on an absent or empty ~/.ssh/config and leaves
    it as it was (absent stays absent)."""
    assert CONFIG_SNIPPETS, "README.rst has no sshpipe.load() snippet"
    home = _home(tmp_path, sshd, config)
    result = run_snippet(snippet, tmp_path, home)
    assert result.returncode == 0, _fail_message(snippet, result)
    if config is None:
        assert not (home / ".ssh").exists()
    else:
        assert (home / ".ssh" / "config").read_text() == config


def test_readme_renders_without_warnings_issue_18():
    """README.rst is valid reStructuredText: no docutils warning or error (a
    broken table or list renders as raw text on PyPI)."""
    import io

    import docutils.core

    messages = io.StringIO()
    docutils.core.publish_doctree(
        README.read_text(encoding="utf-8"), source_path=str(README),
        settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": messages})
    assert messages.getvalue() == ""


def test_snippet_parser_handles_markers_options_and_nesting():
    """The block parser: markers above directives, options, indented blocks."""
    text = textwrap.dedent("""\
        Title
        =====

        .. code:: python

            print("one")

            print("still one")
        after

        .. not run: needs your own cluster

        .. code-block:: python
           :linenos:

           print("two")

        - a list item:

          .. code:: python

              print("three")
          back in the item
        """)
    assert [(c.line, c.command, c.output) for c in shell_sessions(textwrap.dedent("""\
        Run it::

            $ echo a
            a
            $ true

        text
        $ not indented, not a command
        """))] == [(3, "echo a", ["a"]), (5, "true", [])]
    found = snippets(text)
    assert [(s.line, s.code, s.not_run) for s in found] == [
        (4, 'print("one")\n\nprint("still one")\n', None),
        (13, 'print("two")\n', "needs your own cluster"),
        (20, 'print("three")\n', None),
    ]


def test_handler_environment_is_as_the_readme_says_issue_18(sshd, tmp_path, monkeypatch):
    """What "The handler's environment" states, checked on a real agent: Python,
    sys.path, cwd, env, umask, fds 0/1/2, signals, logging, children, exit."""
    import logging
    import pwd

    from sshpipe import SSHPipe
    from sshpipe.testing import process_id, wait_gone

    monkeypatch.syspath_prepend(str(ROOT / "tests" / "agents"))
    from env_probe import EnvProbe

    readme = README.read_text(encoding="utf-8")
    assert "The handler's environment" in readme and "**umask**: the login's" in readme
    caller_logger = logging.getLogger("test_readme.env")
    caller_logger.setLevel(logging.INFO)
    workdir = tmp_path / "remote cwd"
    workdir.mkdir()
    common = dict(handler=EnvProbe, modules=["env_probe"], config=sshd.config_path,
                  python=sshd.python, ready_timeout=30)
    with SSHPipe(sshd.alias, logger=caller_logger, **common) as pipe:
        pipe.send("probe")
        at_home = pipe.recv(timeout=30)
        children = [process_id(at_home["child"])]
        pipe.send("print")
    response = pipe.response()
    with SSHPipe(sshd.alias, cwd=str(workdir), env={"SSHPIPE_README": "yes"},
                 **common) as pipe:
        pipe.send("probe")
        in_cwd = pipe.recv(timeout=30)
        children.append(process_id(in_cwd["child"]))
        pipe.send("exit")
    exited = pipe.response()

    assert os.path.realpath(at_home["executable"]) == os.path.realpath(sshd.python)
    bundle = at_home["path"][0]
    assert at_home["sshpipe_file"].startswith(bundle + os.sep)
    assert at_home["path"][1] == "" and at_home["argv"] == ["-c"]
    assert at_home["cwd"] == pwd.getpwnam(sshd.user).pw_dir
    assert in_cwd["cwd"] == str(workdir)
    assert in_cwd["environ"]["SSHPIPE_README"] == "yes"
    assert "SSHPIPE_README" not in at_home["environ"]
    assert "SSH_CONNECTION" in at_home["environ"] and "TERM" not in at_home["environ"]
    login = subprocess.run(["ssh", "-F", sshd.config_path, sshd.alias, "umask"],
                           capture_output=True, text=True, timeout=30).stdout.split()[-1]
    assert at_home["umask"] == int(login, 8)
    assert at_home["fds"][0] == "/dev/null" and at_home["stdin"] == ""
    assert at_home["fds"][1].startswith("pipe:") and at_home["fds"][2].startswith("pipe:")
    assert at_home["fds"][1] != at_home["fds"][2]
    assert at_home["ttys"] == [False, False, False]
    assert "printed by the handler" in response.stdout
    assert "written to fd 2" in response.stderr
    assert at_home["sigint"] and at_home["sigterm"] and at_home["sigpipe"]
    assert at_home["main_thread"]
    assert at_home["root_level"] == logging.INFO
    assert exited.exitcode == 9
    assert wait_gone(children, timeout=30) == []
