"""The ``sshpipe`` command line: ``config`` tools, ``run``, ``demo``.

This is the only module (with its per-area ``_cli`` helpers) that prints; the
library itself reports through return values, exceptions and logging.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

__all__ = ["main"]


def _run_demo(args: argparse.Namespace) -> int:
    from sshpipe.demo import run_demo

    for line in run_demo(messages=args.messages):
        print(line, flush=True)
    return 0


def _run_agent(args: argparse.Namespace) -> int:
    """Start an agent script on a host, send it stdin's lines, print its replies."""
    from sshpipe.errors import SSHPipeError
    from sshpipe.pipe import SSHPipe

    pipe = SSHPipe(args.host, [args.script] + args.args, config=args.config, python=args.python,
                   ready_timeout=args.timeout)
    try:
        pipe.start()
    except SSHPipeError as exc:
        print(f"sshpipe run: {exc}", file=sys.stderr)
        return 255
    sent = 0
    for line in sys.stdin:
        pipe.send(line.rstrip("\n"))
        sent += 1
        while pipe.poll(0):
            print(repr(pipe.recv()), flush=True)
    response = pipe.close(timeout=args.timeout)
    while True:
        try:
            print(repr(pipe.recv(timeout=0)), flush=True)
        except (EOFError, TimeoutError):
            break
    if response.stdout:
        sys.stderr.write(f"--- remote stdout ---\n{response.stdout}")
    if response.stderr:
        sys.stderr.write(f"--- remote stderr ---\n{response.stderr}")
    for error in response.errors:
        sys.stderr.write(f"{error}\n")
    if response.unhandled:
        sys.stderr.write(f"sshpipe run: messages never handled: {list(response.unhandled)}\n")
    sys.stderr.write(f"sshpipe run: {sent} messages sent; agent exit status "
                     f"{response.exitcode} ({response.reason})\n")
    return response.exitcode if isinstance(response.exitcode, int) and \
        0 <= response.exitcode < 256 else 255


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sshpipe", description="Run Python agents on remote hosts over SSH.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo", help="start a local sshd, run an agent over SSH, send it work, print replies")
    demo.add_argument("--messages", type=int, default=3, help="how many messages to send")
    demo.set_defaults(func=_run_demo)

    run = commands.add_parser(
        "run", help="run an agent script on a host; each stdin line is a message, replies "
                    "are printed")
    run.add_argument("host", help="address, host name or ssh config alias")
    run.add_argument("script", help="the agent script (a .py file on the remote host)")
    run.add_argument("args", nargs="*", help="arguments for the script")
    run.add_argument("-F", "--config", default=None, help="ssh config file (~/.ssh/config)")
    run.add_argument("--python", default="python3", help="remote interpreter (python3)")
    run.add_argument("--timeout", type=float, default=60.0,
                     help="seconds to wait for the agent to start and to end (60)")
    run.set_defaults(func=_run_agent)

    from sshpipe.config._cli import add_config_parser

    add_config_parser(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
