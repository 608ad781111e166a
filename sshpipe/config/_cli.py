"""``sshpipe config ...``: get, check, dump, set, unset, add, remove.

``get`` prints exactly what ``ssh -G`` prints (same order and spelling), so
the two can be diffed.  Edits are written safely: the new text goes to a
temporary file in the same directory, gets the old file's mode, is flushed
to disk, and is renamed over the original in one step, so a crash leaves
either the old file or the new one, never half of each.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

from sshpipe.errors import SSHConfigError

__all__ = ["add_config_parser", "format_dump"]

_DEFAULT = "~/.ssh/config"
# one line per value in ssh -G; the other list keys print on one line
_PER_LINE = frozenset({"identityfile", "certificatefile", "localforward", "remoteforward",
                       "dynamicforward", "sendenv", "setenv"})
# ssh -G's own spelling of keys it prints in mixed case
_PRINTED = {"canonicalizepermittedcnames": "canonicalizePermittedcnames"}


def format_dump(values: Dict[str, Any], only: Optional[str] = None) -> str:
    """Lines as ``ssh -G`` prints them for a :meth:`SSHConfig.resolve` result."""
    out: List[str] = []
    for key, value in values.items():
        if only is not None and key != only:
            continue
        name = _PRINTED.get(key, key)
        if isinstance(value, list):
            if key in _PER_LINE:
                out.extend(f"{name} {v}" for v in value)
            else:
                out.append(f"{name} {' '.join(value)}")
        else:
            out.append(f"{name} {value}")
    return "".join(line + "\n" for line in out)


def _load(args: argparse.Namespace, missing_ok: bool = False):
    from sshpipe.config import SSHConfig, load

    path = args.file
    if missing_ok and not os.path.exists(os.path.expanduser(path)):
        return SSHConfig("", path=os.path.expanduser(path))
    return load(path)


def _cmd_get(args: argparse.Namespace) -> int:
    from sshpipe.config._options import KEYWORDS

    config = _load(args)
    values = config.resolve(args.host, user=args.user, port=args.port, allow_exec=args.allow_exec)
    only = None
    if args.keyword:
        only = KEYWORDS.get(args.keyword.lower(), args.keyword.lower())
        if only not in values:
            return 1
    sys.stdout.write(format_dump(values, only))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from sshpipe.config import SSHConfig

    path = os.path.expanduser(args.file)
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        config = SSHConfig(f.read(), path=path)
    problems = config.validate()
    for p in problems:
        print(str(p), file=sys.stderr)
    return 1 if problems else 0


def _cmd_dump(args: argparse.Namespace) -> int:
    from sshpipe.config import dumps

    sys.stdout.write(dumps(_load(args)))
    return 0


def _save(config) -> None:
    from sshpipe.config import write_atomic

    write_atomic(config.path, str(config), config.encoding)


def _cmd_set(args: argparse.Namespace) -> int:
    config = _load(args, missing_ok=True)
    config.set(args.host, args.keyword, args.value if len(args.value) > 1 else args.value[0])
    _save(config)
    return 0


def _cmd_unset(args: argparse.Namespace) -> int:
    from sshpipe.config._edit import unset_option

    config = _load(args)
    removed = unset_option(config, args.host, args.keyword)
    if not removed:
        print(f"{config.path}: Host {args.host}: no {args.keyword} to remove", file=sys.stderr)
        return 1
    _save(config)
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    config = _load(args, missing_ok=True)
    options: Dict[str, Any] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SSHConfigError(f"--option needs KEYWORD=VALUE, got {item!r}")
        if key in options:
            prev = options[key]
            options[key] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            options[key] = value
    config.add_host(args.patterns, options, before=args.before)
    _save(config)
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    config = _load(args)
    config.remove_host(args.host)
    _save(config)
    return 0


def _guard(func):
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except SSHConfigError as exc:
            print(f"sshpipe config: {exc}", file=sys.stderr)
            return 1
        except KeyError as exc:
            print(f"sshpipe config: {exc.args[0]}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"sshpipe config: {exc}", file=sys.stderr)
            return 1
    return run


def add_config_parser(commands: "argparse._SubParsersAction") -> None:
    """Register ``sshpipe config`` and its sub-commands on ``commands``."""
    config = commands.add_parser("config", help="read, check and edit OpenSSH client config files")
    config.set_defaults(func=lambda args: config.error("choose a config sub-command"))
    sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")

    def file_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("-F", dest="file", default=_DEFAULT, metavar="FILE",
                       help="config file (default: ~/.ssh/config)")

    get = sub.add_parser("get", help="print a host's settings like `ssh -G`")
    get.add_argument("host")
    get.add_argument("keyword", nargs="?", help="print only this option")
    get.add_argument("-l", dest="user", help="remote user, as ssh -l")
    get.add_argument("-p", dest="port", type=int, help="port, as ssh -p")
    get.add_argument("--allow-exec", action="store_true", help="run Match exec commands")
    file_opt(get)
    get.set_defaults(func=_guard(_cmd_get))

    check = sub.add_parser("check", help="report every problem as FILE:LINE: reason (exit 1 if any)")
    file_opt(check)
    check.set_defaults(func=_guard(_cmd_check))

    dump = sub.add_parser("dump", help="print the file as parsed (byte-identical)")
    file_opt(dump)
    dump.set_defaults(func=_guard(_cmd_dump))

    set_ = sub.add_parser("set", help="set KEYWORD in the Host block HOST (edits in place)")
    set_.add_argument("host", help="the Host line's patterns, quoted as one argument")
    set_.add_argument("keyword")
    set_.add_argument("value", nargs="+")
    file_opt(set_)
    set_.set_defaults(func=_guard(_cmd_set))

    unset = sub.add_parser("unset", help="remove KEYWORD from the Host block HOST")
    unset.add_argument("host")
    unset.add_argument("keyword")
    file_opt(unset)
    unset.set_defaults(func=_guard(_cmd_unset))

    add = sub.add_parser("add", help="add a Host block")
    add.add_argument("patterns", nargs="+")
    add.add_argument("-o", "--option", action="append", metavar="KEYWORD=VALUE")
    add.add_argument("--before", metavar="HOST", help="insert before this Host block")
    file_opt(add)
    add.set_defaults(func=_guard(_cmd_add))

    remove = sub.add_parser("remove", help="remove the Host block HOST")
    remove.add_argument("host")
    file_opt(remove)
    remove.set_defaults(func=_guard(_cmd_remove))
