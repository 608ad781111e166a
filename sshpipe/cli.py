"""The ``sshpipe`` command line: ``config`` tools, ``run``, ``masters``, ``demo``.

This is the only module (with its per-area ``_cli`` helpers) that prints; the
library itself reports through return values, exceptions and logging.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List, Optional, Sequence, Tuple

__all__ = ["build_parser", "main"]

# Exit status of a command whose output pipe was closed (128 + SIGPIPE), as a
# shell reports it.
_EXIT_BROKEN_PIPE = 141


class _SubcommandParser(argparse.ArgumentParser):
    """The parser of a subcommand, which reports its own argument errors.

    argparse leaves an option no subcommand knows to the top-level parser, which
    then shows the top-level usage; here the subcommand that got it shows its own.
    """

    # (Any: the namespace given, or a new Namespace, as ArgumentParser's overloads say)
    def parse_known_args(self, args: Optional[Sequence[str]] = None,
                         namespace: Any = None) -> Tuple[Any, List[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _run_demo(args: argparse.Namespace) -> int:
    from sshpipe.demo import run_demo

    for line in run_demo(messages=args.messages):
        print(line, flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from sshpipe import __version__

    parser = argparse.ArgumentParser(
        prog="sshpipe", description="Run Python agents on remote hosts over SSH.")
    parser.add_argument("-V", "--version", action="version", version=f"sshpipe {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=_SubcommandParser)
    commands.required = True

    demo = commands.add_parser(
        "demo", help="start a local sshd, run an agent over SSH, send it work, print replies")
    demo.add_argument("--messages", type=int, default=3, help="how many messages to send")
    demo.set_defaults(func=_run_demo)

    from sshpipe._cli_masters import add_masters_parser
    from sshpipe._cli_run import add_run_parser
    from sshpipe.config._cli import add_config_parser

    add_run_parser(commands)
    add_masters_parser(commands)
    add_config_parser(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Whoever read our output has gone (``| head``): end without the
        # interpreter's complaint about flushing stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return _EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
