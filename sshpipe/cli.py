"""The ``sshpipe`` command line: ``config`` tools, ``demo``.

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sshpipe", description="Run Python agents on remote hosts over SSH.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo", help="start a local sshd, run an agent over SSH, send it work, print replies")
    demo.add_argument("--messages", type=int, default=3, help="how many messages to send")
    demo.set_defaults(func=_run_demo)

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
