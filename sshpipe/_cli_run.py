"""``sshpipe run HOST [OPTIONS] SCRIPT [ARGS...]``: an agent script on a host,
fed from standard input, its replies printed as they come.

::

    stdin --os.read--> feeder thread --send()--> SSHPipe ==SSH==> agent script
                        (EOF: close())                               |
    stdout <--repr-- main thread <--recv()--------------------------+
    stderr <-------- log handler <-- remote logs, handler print(), errors

The feeder reads fd 0 itself (not ``sys.stdin``), so that a thread still
blocked in a read when the agent ends holds no lock the interpreter's shutdown
needs. The main thread prints each reply as soon as ``recv()`` returns it.

Options follow ssh's habits: ``-p``, ``-l``, ``-i``, ``-o KEY=VALUE``, ``-F``,
accepted before or after HOST; everything after SCRIPT is the script's. The
exit status is the agent's (128+N if a signal N killed it), 255 when no agent
could be started or the connection broke, 130 after Ctrl-C.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any, List, Optional

from sshpipe.errors import (PipeBroken, PipeClosed, RemoteError, ReplyDecodeError, SSHConfigError,
                            SSHPipeError)
from sshpipe.pipe import SSHPipe

if TYPE_CHECKING:  # pragma: no cover
    from sshpipe.cli import _SubcommandParser

__all__ = ["add_run_parser"]

# The exit status ssh uses when it could not run the remote command at all.
EXIT_NO_AGENT = 255
# What a shell reports for a command ended by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130
# Bytes read from standard input at a time.
_READ_SIZE = 65536


class _RunPipe(SSHPipe):
    """An SSHPipe whose child ignores the terminal's Ctrl-C.

    The terminal sends SIGINT to the whole foreground process group, the pipe's
    child included, which would die printing ``Process SSHPipe-1:`` and a
    traceback. Here the command decides: on Ctrl-C it ends the child itself.
    """

    def run(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        super().run()


class _RemoteFormatter(logging.Formatter):
    """One line per record, named after the host; with ``-v`` a failing
    message's remote traceback follows its error line."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        host = getattr(record, "host", "")
        remote_name = getattr(record, "remote_name", None)
        if remote_name:
            line = f"{host}: {record.levelname} {remote_name}: {message}"
        elif message.startswith(f"{host}:"):
            line = message
        else:
            line = f"{host}: {message}"
        error = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if self.verbose and isinstance(error, RemoteError) and error.remote_traceback:
            line += "\n" + error.remote_traceback.rstrip()
        return line


def _remote_logger(host: str, verbose: bool) -> logging.Logger:
    """The pipe's logger: remote records, the handler's output and its errors go
    to stderr once each, and nowhere else."""
    logger = logging.getLogger(f"sshpipe.cli.run.{host}")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RemoteFormatter(verbose))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return logger


def _config_with_options(parser: argparse.ArgumentParser, config: Optional[str],
                         options: List[str], directory: str) -> Optional[str]:
    """The config file to use: with ``-o`` options, a file in ``directory``
    holding them first (so they win, as on ssh's command line) and then an
    Include of the user's config."""
    if config is not None and config != "none" and not os.path.isfile(
            os.path.expanduser(config)):
        parser.error(f"-F {config}: no such file")
    if not options and config != "none":
        return config
    from sshpipe.config import loads

    lines = []
    for option in options:
        if "\n" in option or "\r" in option:
            parser.error(f"-o {option!r}: one option per -o")
        try:
            loads(option + "\n")
        except SSHConfigError as exc:
            parser.error(f"-o {option}: {exc.reason}")
        lines.append(option)
    if config != "none":
        target = os.path.abspath(os.path.expanduser(config or "~/.ssh/config"))
        lines.append(f'Include "{target}"')
    path = os.path.join(directory, "config")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
              encoding="utf-8") as out:
        out.write("".join(line + "\n" for line in lines))
    return path


def _exit_status(exitcode: Optional[int]) -> int:
    """The agent's status as a shell reports it."""
    if exitcode is None:
        return EXIT_NO_AGENT
    if exitcode < 0:
        return 128 - exitcode
    return exitcode if exitcode < 256 else EXIT_NO_AGENT


def _feed(pipe: SSHPipe, timeout: float, sent: List[int]) -> None:
    """Feeder thread: each line of fd 0 becomes a message; at end of input the
    pipe is closed (term message), so the agent ends once it handled them."""
    encoding = getattr(sys.stdin, "encoding", None) or "utf-8"
    pending = b""
    try:
        while True:
            chunk = os.read(0, _READ_SIZE)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                pipe.send(line.decode(encoding, errors="replace"))
                sent[0] += 1
        if pending:
            pipe.send(pending.decode(encoding, errors="replace"))
            sent[0] += 1
        pipe.close(timeout=timeout)
    except (PipeClosed, PipeBroken, OSError):
        pass  # the agent ended first, or the pipe broke: the main thread reports it


def _run(args: argparse.Namespace) -> int:
    parser = args.parser
    directory = tempfile.mkdtemp(prefix="sshpipe-run-")
    pipe: Optional[SSHPipe] = None
    try:
        config = _config_with_options(parser, args.config, args.option or [], directory)
        pipe = _RunPipe(args.host, [args.script] + args.args, config=config,
                        python=args.python, ready_timeout=args.timeout, user=args.user,
                        port=args.port, identity_file=args.identity,
                        transport=args.transport,
                        logger=_remote_logger(args.host, args.verbose))
        return _converse(pipe, args)
    except KeyboardInterrupt:
        # Quiet, as a shell command ends on Ctrl-C; a second Ctrl-C must not
        # interrupt the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if pipe is not None and pipe.pid is not None and not pipe.released and \
                pipe.is_alive():
            pipe.terminate()
            pipe.join(10)
        return EXIT_INTERRUPTED
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _converse(pipe: SSHPipe, args: argparse.Namespace) -> int:
    try:
        pipe.start()
    except SSHPipeError as exc:
        print(f"sshpipe run: {exc}", file=sys.stderr)
        return EXIT_NO_AGENT
    sent = [0]
    threading.Thread(target=_feed, args=(pipe, args.timeout, sent), name="sshpipe-run-stdin",
                     daemon=True).start()
    try:
        while True:
            try:
                reply: Any = pipe.recv()
            except (EOFError, RemoteError):
                break  # the end; a handler's failure was shown as it came
            except ReplyDecodeError as exc:
                print(f"sshpipe run: {exc}", file=sys.stderr)
                continue
            print(repr(reply), flush=True)
        response = pipe.close(timeout=args.timeout)
    except PipeBroken as exc:
        print(f"sshpipe run: {exc}", file=sys.stderr)
        return EXIT_NO_AGENT
    if response.stderr:
        sys.stderr.write(response.stderr if response.stderr.endswith("\n")
                         else response.stderr + "\n")
    if response.unhandled:
        print(f"sshpipe run: messages never handled: {list(response.unhandled)}",
              file=sys.stderr)
    if args.verbose:
        print(f"sshpipe run: {sent[0]} messages sent; agent exit status {response.exitcode} "
              f"({response.reason})", file=sys.stderr)
    return _exit_status(response.exitcode)


def add_run_parser(commands: argparse._SubParsersAction[_SubcommandParser]
                       ) -> argparse.ArgumentParser:
    """Add ``run`` to the ``sshpipe`` subcommands."""
    run = commands.add_parser(
        "run", help="run an agent script on a host; each stdin line is a message, each "
                    "reply is printed as it arrives",
        description="Run an agent script on HOST (zero-install: the host needs only "
                    "Python 3.9+). Each line of standard input is sent as a message (a "
                    "str), each reply is printed (repr) as it arrives; remote logs, output "
                    "and errors go to stderr. Options go before SCRIPT, as with ssh; what "
                    "follows SCRIPT is the script's. Exit status: the agent's, 255 if it "
                    "could not start or the connection broke, 130 after Ctrl-C.")
    run.add_argument("host", help="address, host name or ssh config alias ([user@]host)")
    run.add_argument("script", help="the agent script (a .py file on the remote host)")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    run.add_argument("-F", dest="config", metavar="CONFIG", default=None,
                     help="ssh config file (default ~/.ssh/config; 'none' for none)")
    run.add_argument("-p", dest="port", type=int, metavar="PORT", help="port to connect to")
    run.add_argument("-l", dest="user", metavar="USER", help="user to log in as")
    run.add_argument("-i", dest="identity", metavar="FILE",
                     help="identity (private key) file, tried first")
    run.add_argument("-o", dest="option", action="append", metavar="KEY=VALUE",
                     help="an ssh config option, as with ssh -o (repeatable)")
    run.add_argument("--python", default="python3", help="remote interpreter (python3)")
    run.add_argument("--timeout", type=float, default=60.0,
                     help="seconds to wait for the agent to start and to end (60)")
    run.add_argument("--transport", choices=("auto", "openssh", "paramiko"), default=None,
                     help="openssh (the ssh client, a shared master per host), paramiko, "
                          "or auto: openssh when ssh is on PATH (default: auto)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="remote tracebacks, debug logs and a summary line on stderr")
    run.set_defaults(func=_run, parser=run)
    return run
