"""``sshpipe masters``: list this user's OpenSSH masters (the OpenSSH transport's
shared connections), or stop them with ``--stop``."""
from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from sshpipe.cli import _SubcommandParser


def _age(started: float) -> str:
    seconds = max(0, int(time.time() - started))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def _run(args: argparse.Namespace) -> int:
    from sshpipe._openssh import list_masters, stop_masters
    from sshpipe.errors import SSHPipeError

    try:
        if args.stop:
            if args.owner is None:
                stopped = stop_masters(args.control_dir)
            else:
                stopped = stop_masters(args.control_dir, owner=args.owner)
            for info in stopped:
                print(f"stopped {info.target.describe()} (pid {info.process.pid})")
            if not stopped:
                print("no masters running")
            return 0
        masters = [info for info in list_masters(args.control_dir) if args.owner is None
                   or (info.owner is not None and info.owner.pid == args.owner)]
    except SSHPipeError as exc:
        print(f"sshpipe masters: {exc}", file=sys.stderr)
        return 1
    if not masters:
        print("no masters running")
        return 0
    print(f"{'PID':>8} {'OWNER':>8} {'AGE':>7} {'PERSIST':>7}  TARGET")
    for info in masters:
        owner = "shared" if info.owner is None else str(info.owner.pid)
        persist = "-" if info.persist is None else f"{info.persist:g}s"
        state = "" if info.alive else "  (not running)"
        print(f"{info.process.pid:>8} {owner:>8} {_age(info.started):>7} {persist:>7}  "
              f"{info.target.describe()}{state}")
    return 0


def add_masters_parser(commands: argparse._SubParsersAction[_SubcommandParser]
                       ) -> argparse.ArgumentParser:
    """Add ``masters`` to the ``sshpipe`` subcommands."""
    masters = commands.add_parser(
        "masters", help="list this user's OpenSSH masters (shared connections), or stop them",
        description="List the ssh ControlMasters the OpenSSH transport started for this "
                    "user (pid, owning caller process, age, idle limit, target), or stop "
                    "them all with --stop. A master also ends by itself when idle past its "
                    "ControlPersist and when its owning process ends.")
    masters.add_argument("--stop", action="store_true", help="stop every master listed")
    masters.add_argument("--owner", type=int, default=None, metavar="PID",
                         help="only the masters of this caller process")
    masters.add_argument("--control-dir", default=None,
                         help="the control directory (default: the transport's own)")
    masters.set_defaults(func=_run)
    return masters
