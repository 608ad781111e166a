"""``sshpipe config ...`` sub-commands (under construction)."""
from __future__ import annotations

import argparse

__all__ = ["add_config_parser"]


def add_config_parser(commands: "argparse._SubParsersAction") -> None:
    """Register ``sshpipe config`` and its sub-commands on ``commands``."""
    config = commands.add_parser("config", help="read, check and edit OpenSSH client config files")
    config.set_defaults(func=lambda args: config.error("choose a config sub-command"))
