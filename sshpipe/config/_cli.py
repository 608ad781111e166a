"""``sshpipe config ...``: get, check, dump, diff, set, unset, add, remove.

``get`` prints exactly what ``ssh -G`` prints (same order and spelling), so
the two can be diffed, and ``diff`` does that against the ``ssh`` on PATH.
Every file is read as ``get`` reads it: ``-F FILE`` must exist, the default
``~/.ssh/config`` may be absent (an empty config).  Messages name the file.
Edits are written safely: the new text goes to a temporary file in the same
directory, gets the old file's mode, is flushed to disk, and is renamed over
the original in one step, so a crash leaves either the old file or the new
one, never half of each.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, TextIO

from sshpipe.config._dump import format_dump
from sshpipe.errors import SSHConfigError

if TYPE_CHECKING:  # pragma: no cover
    from sshpipe.cli import _SubcommandParser
    from sshpipe.config import SSHConfig

__all__ = ["add_config_parser", "format_dump"]

#: A sub-command: the parsed arguments -> the exit status.
Command = Callable[[argparse.Namespace], int]

_DEFAULT = "~/.ssh/config"


def _out(text: str, stream: Optional[TextIO] = None) -> None:
    """Write ``text`` as bytes, so non-UTF-8 values (kept as surrogates) survive."""
    stream = stream or sys.stdout
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(text)
        return
    stream.flush()
    buffer.write(text.encode("utf-8", "surrogateescape"))
    buffer.flush()


def _load(args: argparse.Namespace, missing_ok: bool = False) -> SSHConfig:
    from sshpipe.config import SSHConfig, load

    path = args.file
    if missing_ok and not os.path.lexists(os.path.expanduser(path)):
        return SSHConfig("", path=os.path.expanduser(path), openssh=_openssh(args))
    return load(path, openssh=_openssh(args))


def _openssh(args: argparse.Namespace) -> str:
    return getattr(args, "openssh", None) or "auto"


def _keyword(name: str, config: SSHConfig) -> str:
    """The canonical option name for ``name``, or SSHConfigError naming it."""
    from sshpipe.config._options import options_for
    from sshpipe.config._versions import get_version

    version = get_version(config.openssh)
    canon = options_for(version).keywords.get(name.lower())
    if canon is None:
        raise SSHConfigError(f"unknown keyword {name!r} (OpenSSH {version.name} has no such "
                             "option)", config.path)
    return canon


def _resolve(args: argparse.Namespace, config: SSHConfig) -> Dict[str, Any]:
    return config.resolve(args.host, user=args.user, port=args.port, allow_exec=args.allow_exec,
                          tag=args.tag, command=" ".join(getattr(args, "command", [])) or None)


def _cmd_get(args: argparse.Namespace) -> int:
    config = _load(args)
    only = _keyword(args.keyword, config) if args.keyword else None
    values = _resolve(args, config)
    if only is not None and only not in values:
        print(f"sshpipe config: {args.host}: {args.keyword} is not set (ssh -G prints "
              "nothing for it)", file=sys.stderr)
        return 1
    _out(format_dump(values, only))
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    """Compare ``get`` with the ``ssh -G`` on PATH, line by line."""
    import difflib

    ssh = shutil.which("ssh")
    if ssh is None:
        print("sshpipe config: no ssh on PATH to compare with", file=sys.stderr)
        return 2
    config = _load(args)
    mine = format_dump(_resolve(args, config))
    argv = [ssh, "-G", "-F", os.path.expanduser(args.file)]
    if args.user:
        argv += ["-l", args.user]
    if args.port:
        argv += ["-p", str(args.port)]
    if args.tag:
        argv += ["-P", args.tag]
    argv += ["--", args.host] + list(args.command)
    try:
        res = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    except subprocess.TimeoutExpired:
        print("sshpipe config: ssh -G did not answer within 60 s", file=sys.stderr)
        return 2
    if res.returncode != 0:
        print(f"sshpipe config: ssh -G failed: {res.stderr.decode(errors='replace').strip()}",
              file=sys.stderr)
        return 2
    theirs = res.stdout.decode("utf-8", "surrogateescape")
    lines = list(difflib.unified_diff(theirs.splitlines(True), mine.splitlines(True),
                                      "ssh -G", "sshpipe config get"))
    if not lines:
        print(f"sshpipe config: {args.host}: same as ssh -G ({len(mine.splitlines())} lines)",
              file=sys.stderr)
        return 0
    _out("".join(lines))
    return 1


def _cmd_check(args: argparse.Namespace) -> int:
    from sshpipe.config import SSHConfig
    from sshpipe.config._files import read_config_file
    from sshpipe.config._accounts import SystemAccounts

    path = os.path.expanduser(args.file)
    text = read_config_file(path, check_perm=args.file == _DEFAULT, accounts=SystemAccounts())
    if text is None:
        if args.file != _DEFAULT:
            raise SSHConfigError("Can't open user config file: No such file or directory", path)
        text = ""
    config = SSHConfig(text, path=path, openssh=_openssh(args))
    problems = config.validate()
    for p in problems:
        print(str(p), file=sys.stderr)
    return 1 if problems else 0


def _cmd_dump(args: argparse.Namespace) -> int:
    from sshpipe.config import dumps

    _out(dumps(_load(args)))
    return 0


def _save(config: SSHConfig) -> None:
    from sshpipe.config import write_atomic

    if config.path is None:  # _load() always reads a named file; this names the slip
        raise SSHConfigError("the config was not read from a file: nowhere to write it")
    write_atomic(config.path, str(config), config.encoding)


def _cmd_set(args: argparse.Namespace) -> int:
    from sshpipe.config._edit import Words

    config = _load(args, missing_ok=True)
    _keyword(args.keyword, config)
    value = Words(args.value) if len(args.value) > 1 else args.value[0]
    config.set(args.host, args.keyword, value)
    _save(config)
    return 0


def _cmd_unset(args: argparse.Namespace) -> int:
    from sshpipe.config._edit import unset_option

    config = _load(args)
    _keyword(args.keyword, config)
    removed = unset_option(config, args.host, args.keyword)
    if not removed:
        print(f"sshpipe config: {config.path}: Host {args.host}: no {args.keyword} to remove",
              file=sys.stderr)
        return 1
    _save(config)
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    from sshpipe.config._edit import Words, shadowing_block

    config = _load(args, missing_ok=True)
    options: Dict[str, Any] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SSHConfigError(f"-o needs KEYWORD=VALUE, got {item!r}", config.path)
        _keyword(key, config)
        words = value.split()
        one: Any = Words(words) if len(words) > 1 else value
        if key in options:
            prev = options[key]
            options[key] = (prev if isinstance(prev, list) else [prev]) + [one]
        else:
            options[key] = one
    before = args.before
    note: Optional[str] = None
    if before is None and not args.at_end:
        shadow = shadowing_block(config)
        if shadow is not None:
            lineno, pats = shadow
            before = " ".join(pats)
            note = (f"{config.path}: placed before 'Host {before}' (line {lineno}): after it, "
                    "its settings would win (the first value obtained is used); "
                    "--at-end appends instead")
    config.add_host(args.patterns, options, before=before)
    _save(config)
    if note:
        print(f"sshpipe config: {note}", file=sys.stderr)
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    config = _load(args)
    config.remove_host(args.host)
    _save(config)
    return 0


def _guard(func: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except SSHConfigError as exc:
            if exc.path is None:
                print(f"sshpipe config: {os.path.expanduser(args.file)}: {exc.reason}",
                      file=sys.stderr)
            else:
                print(f"sshpipe config: {exc}", file=sys.stderr)
            return 1
        except KeyError as exc:
            print(f"sshpipe config: {os.path.expanduser(args.file)}: {exc.args[0]}",
                  file=sys.stderr)
            return 1
        except ValueError as exc:          # e.g. an unsupported --openssh
            print(f"sshpipe config: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"sshpipe config: {exc}", file=sys.stderr)
            return 1
    return run


def add_config_parser(commands: argparse._SubParsersAction[_SubcommandParser]) -> None:
    """Register ``sshpipe config`` and its sub-commands on ``commands``."""
    config = commands.add_parser("config", help="read, check and edit OpenSSH client config files")
    config.set_defaults(func=lambda args: config.error("choose a config sub-command"))
    sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")

    def file_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("-F", dest="file", default=_DEFAULT, metavar="FILE",
                       help="config file (default: ~/.ssh/config)")
        p.add_argument("--openssh", metavar="VERSION", default="auto",
                       help="OpenSSH release to follow: 9.2, 9.9, 10.0 or auto (the local ssh)")

    def host_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("-l", dest="user", help="remote user, as ssh -l")
        p.add_argument("-p", dest="port", type=int, help="port, as ssh -p")
        p.add_argument("-P", dest="tag", help="tag for Match tagged, as ssh -P")
        p.add_argument("--allow-exec", action="store_true", help="run Match exec commands")
        file_opt(p)

    get = sub.add_parser("get", help="print a host's settings like `ssh -G`")
    get.add_argument("host")
    get.add_argument("keyword", nargs="?", help="print only this option")
    host_opts(get)
    get.set_defaults(func=_guard(_cmd_get))

    diff = sub.add_parser("diff", help="compare `config get` with the local `ssh -G`")
    diff.add_argument("host")
    diff.add_argument("command", nargs="*", default=[], help="remote command, as for ssh")
    host_opts(diff)
    diff.set_defaults(func=_guard(_cmd_diff))

    check = sub.add_parser("check",
                           help="report every problem as FILE:LINE: reason (exit 1 if any)")
    file_opt(check)
    check.set_defaults(func=_guard(_cmd_check))

    dump = sub.add_parser("dump", help="print the file as parsed (byte-identical)")
    file_opt(dump)
    dump.set_defaults(func=_guard(_cmd_dump))

    set_ = sub.add_parser("set", help="set KEYWORD in the Host block HOST (edits in place)")
    set_.add_argument("host", help="the Host line's patterns, quoted as one argument")
    set_.add_argument("keyword")
    set_.add_argument("value", nargs="+", help="the value; several words make one line")
    file_opt(set_)
    set_.set_defaults(func=_guard(_cmd_set))

    unset = sub.add_parser("unset", help="remove KEYWORD from the Host block HOST")
    unset.add_argument("host")
    unset.add_argument("keyword")
    file_opt(unset)
    unset.set_defaults(func=_guard(_cmd_unset))

    add = sub.add_parser("add", help="add a Host block (before `Host *`, which would shadow it)")
    add.add_argument("patterns", nargs="+")
    add.add_argument("-o", "--option", action="append", metavar="KEYWORD=VALUE")
    add.add_argument("--before", metavar="HOST", help="insert before this Host block")
    add.add_argument("--at-end", action="store_true",
                     help="append at the end even after `Host *`")
    file_opt(add)
    add.set_defaults(func=_guard(_cmd_add))

    remove = sub.add_parser("remove", help="remove the Host block HOST")
    remove.add_argument("host")
    file_opt(remove)
    remove.set_defaults(func=_guard(_cmd_remove))
