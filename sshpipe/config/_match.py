"""``Match`` lines, evaluated as ``match_cfg_line()`` evaluates them.

Criteria are checked left to right; every criterion is looked at (so
``final`` always asks for the second pass), but ``exec`` runs only while
the criteria before it matched, as ssh skips it.  Each criterion is one
function in :data:`CRITERIA`, given the pass state and the local context.

``exec`` runs ``$SHELL -c CMD`` (``/bin/sh`` without ``$SHELL``) with the
resolution's environment, standard input and output on ``/dev/null``;
exit status 0 matches.  Unlike ssh it is bounded: past ``exec_timeout``
seconds (default 30) the command's process group is killed and the
resolution fails with :class:`SSHConfigError`.  Nothing runs unless the
caller passed ``allow_exec=True``.
"""
from __future__ import annotations

import os
import signal
import subprocess
from typing import TYPE_CHECKING, Callable, Dict, Optional

from sshpipe.config._compile import Block, CompiledFile, MatchCriterion
from sshpipe.config._context import EXEC_TIMEOUT, Context, ascii_lower
from sshpipe.config._patterns import cidr_list_match
from sshpipe.config._tokens import connection_tokens, expand_tokens, local_addresses
from sshpipe.config._values import BadValue
from sshpipe.errors import SSHConfigError

if TYPE_CHECKING:  # pragma: no cover
    from sshpipe.config._resolve import Pass

__all__ = ["evaluate_match", "match_host", "CRITERIA", "EXEC_TIMEOUT"]

def match_host(st: "Pass", ctx: Context) -> str:
    """The name Match host compares: HostName expanded (first pass) or the canonical name."""
    o = st.o
    if st.final:
        return str(o.get("hostname", st.host))
    if "hostname" in o:
        try:
            return expand_tokens(str(o["hostname"]), {"h": st.host}, None, "percent_expand")
        except BadValue as exc:
            raise SSHConfigError(f"HostName {o['hostname']!r}: {exc}") from None
    return st.host


class _Eval:
    """What one Match line's criteria see (computed once per line)."""

    __slots__ = ("st", "ctx", "host", "cf", "lineno")

    def __init__(self, st: "Pass", ctx: Context, host: str, cf: CompiledFile, lineno: int):
        self.st = st
        self.ctx = ctx
        self.host = host
        self.cf = cf
        self.lineno = lineno

    @property
    def ruser(self) -> str:
        return str(self.st.o.get("user", self.ctx.local_user))


def _hit(crit: MatchCriterion, value: str) -> bool:
    """Whether the criterion's pattern list matches ``value`` (none given: no)."""
    pats = crit.patterns
    return pats is not None and pats.match(value) == 1


def _c_final(e: _Eval, crit: MatchCriterion, result: bool) -> bool:
    if crit.attr == "final":
        e.st.want_final = True
    return e.st.final


def _c_host(e: _Eval, crit: MatchCriterion, result: bool) -> bool:
    return _hit(crit, ascii_lower(e.host))


def _c_originalhost(e: _Eval, crit: MatchCriterion, result: bool) -> bool:
    return _hit(crit, ascii_lower(e.st.original))


def _c_user(e: _Eval, crit: MatchCriterion, result: bool) -> bool:
    return _hit(crit, e.ruser)


def _c_localuser(e: _Eval, crit: MatchCriterion, result: bool) -> bool:
    return _hit(crit, e.ctx.local_user)


def _c_localnetwork(e: _Eval, crit: MatchCriterion, result: bool) -> bool:
    addrs = e.ctx.local_addresses
    if addrs is None:
        addrs = local_addresses()
    return cidr_list_match(addrs, crit.arg or "")


def _c_version(e: _Eval, crit: MatchCriterion, result: bool) -> bool:
    return _hit(crit, e.ctx.version.release)


def _empty_or_match(value: str, crit: MatchCriterion) -> bool:
    if value == "":
        return crit.arg == ""
    return _hit(crit, value)


def _c_tagged(e: _Eval, crit: MatchCriterion, result: bool) -> bool:
    return _empty_or_match(str(e.st.o.get("tag", "")), crit)


def _c_command(e: _Eval, crit: MatchCriterion, result: bool) -> bool:
    return _empty_or_match(e.ctx.command or "", crit)


def _c_sessiontype(e: _Eval, crit: MatchCriterion, result: bool) -> bool:
    st = e.st.o.get("sessiontype")
    if st == "subsystem":
        kind = "subsystem"
    elif st == "none":
        kind = "none"
    elif e.ctx.command:
        kind = "exec"
    else:
        kind = "shell"
    return _hit(crit, kind)


def _c_exec(e: _Eval, crit: MatchCriterion, result: bool) -> Optional[bool]:
    ctx = e.ctx
    o = e.st.o
    port = str(o.get("port", "22"))
    jump = o.get("_jump")
    jump_host = jump[0] if jump is not None and jump[0].lower() != "none" else None
    tokens = connection_tokens(ctx, e.host, e.st.original, port, e.ruser,
                               str(o.get("hostkeyalias", e.host)), jump_host)
    try:
        cmd = expand_tokens(crit.arg or "", tokens, None, "percent_expand")
    except BadValue as exc:
        raise SSHConfigError(str(exc), e.cf.path, e.lineno) from None
    if not result:
        return None          # ssh skips exec once a criterion before it failed
    if not ctx.allow_exec:
        raise SSHConfigError(f"Match exec '{cmd}' not run: pass allow_exec=True to allow it",
                             e.cf.path, e.lineno)
    return run_exec(cmd, ctx, e.cf.path, e.lineno) == 0


def run_exec(cmd: str, ctx: Context, path: Optional[str], lineno: Optional[int]) -> int:
    """ssh's ``execute_in_shell()``: the exit status, bounded by ``exec_timeout``."""
    shell = ctx.environ.get("SHELL") or "/bin/sh"
    if not os.access(shell, os.X_OK):
        raise SSHConfigError(f'Shell "{shell}" is not executable: '
                             f"{os.strerror(2 if not os.path.exists(shell) else 13)}",
                             path, lineno)
    timeout = ctx.exec_timeout
    try:
        proc = subprocess.Popen([shell, "-c", cmd], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, env=dict(ctx.environ),
                                start_new_session=True)
    except OSError as exc:
        raise SSHConfigError(f"match exec '{cmd}' error: {exc.strerror}", path, lineno) from None
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise SSHConfigError(f"match exec '{cmd}' did not finish within {timeout:g} s",
                             path, lineno) from None
    if code < 0:
        raise SSHConfigError(f"match exec '{cmd}' error", path, lineno)
    return code


CRITERIA: Dict[str, Callable[[_Eval, MatchCriterion, bool], Optional[bool]]] = {
    "canonical": _c_final,
    "final": _c_final,
    "host": _c_host,
    "originalhost": _c_originalhost,
    "user": _c_user,
    "localuser": _c_localuser,
    "localnetwork": _c_localnetwork,
    "version": _c_version,
    "tagged": _c_tagged,
    "command": _c_command,
    "sessiontype": _c_sessiontype,
    "exec": _c_exec,
}


def evaluate_match(block: Block, st: "Pass", ctx: Context, cf: CompiledFile) -> bool:
    """Whether ``block``'s Match line applies in this pass."""
    if block.match_all is not None and not block.match:
        return block.match_all
    e = _Eval(st, ctx, match_host(st, ctx), cf, block.lineno)
    result = True
    for crit in block.match or ():
        r = CRITERIA[crit.attr](e, crit, result)
        if r is None:
            continue
        if r == crit.negate:
            result = False
    if block.match_all is not None:
        return result and block.match_all
    return result
