"""Resolve a host's settings with the semantics of ``ssh -G``.

The order of work follows ``ssh.c``:

1. the destination is split (``user@host``, ``ssh://user@host:port``) and
   checked; ``-l``/``-p`` values are set first, so they win;
2. first pass over the file(s) with the host name as typed (Host patterns
   match it case-sensitively; ``Match host`` compares lower-cased);
3. the host name ssh will use is worked out (:mod:`._canon`: HostName,
   address literals, CanonicalDomains, CNAMEs);
4. when CanonicalizeHostname is on or some ``Match final`` was seen, a second
   pass runs with the new name and ``canonical``/``final`` true;
5. :mod:`._dump` fills defaults, expands and lays the result out.

Match lines are evaluated by :mod:`._match`.  Each directive kind is one
function in :data:`APPLY` ("first obtained value wins" is a dict membership
test); blocks that do not apply are skipped whole unless they hold something
OpenSSH looks at anyway.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

from sshpipe.config._canon import canonical_host
from sshpipe.config._compile import (
    OP_ACCUM, OP_ENVCHECK, OP_FIRST, OP_FIRST_LIMITED, OP_FORWARD, OP_FORWARD_ENV, OP_FWDAGENT,
    OP_INCLUDE, OP_JUMP, OP_LAST_ALWAYS, OP_LOGVERBOSE, OP_REKEY, OP_SENDENV, OP_SETENV,
    OP_UNKNOWN, SCAN_OPS, MAX_IDENTITY_FILES, CompiledFile,
)
from sshpipe.config._context import Context
from sshpipe.config._dump import finish, valid_ruser
from sshpipe.config._files import include_paths
from sshpipe.config._forwards import parse_forward_spec, parse_ssh_uri
from sshpipe.config._match import evaluate_match, match_host
from sshpipe.config._patterns import PatternList, match_pattern
from sshpipe.config._tokens import connection_tokens, expand_tokens
from sshpipe.config._values import BadValue
from sshpipe.errors import SSHConfigError

__all__ = ["Resolver", "Pass", "MAX_INCLUDE_DEPTH", "APPLY"]

# OpenSSH's READCONF_MAX_DEPTH: an Include chain (or loop) deeper than this is
# refused.  Same number, so that the same files are accepted.
MAX_INCLUDE_DEPTH = 16


def valid_hostname(s: str) -> bool:
    """ssh's ``ssh_valid_hostname()`` (Debian's): no shell metacharacters, no controls."""
    if s.startswith("-"):
        return False
    return not any(c in "'`\"$\\;&<>|(){}," or c in " \t\n\v\f\r" or ord(c) < 32
                   or ord(c) == 127 for c in s)


class Pass:
    """The state of one pass over the files."""

    __slots__ = ("o", "host", "original", "final", "want_final")

    def __init__(self, o: Dict[str, Any], host: str, original: str, final: bool):
        self.o = o
        self.host = host
        self.original = original
        self.final = final
        self.want_final = False


Loader = Callable[[str, CompiledFile, int], Optional[CompiledFile]]
Item = Tuple[Any, ...]      # one compiled directive: (op code, ...)


class Resolver:
    """Runs the passes of one resolution over a compiled file tree.

    ``loader(path, including_file, lineno)`` returns the CompiledFile for an
    included path, or None when it does not exist (it raises SSHConfigError
    for a file ssh refuses).
    """

    def __init__(self, root: CompiledFile, ctx: Context, loader: Loader):
        self.root = root
        self.ctx = ctx
        self.loader = loader

    # ------------------------------------------------------------ passes
    def resolve(self, host_arg: str, user: Optional[str], port: Optional[int]) -> Dict[str, Any]:
        # the destination as ssh takes it: "user@host" or "ssh://user@host:port";
        # -l/-p (our user/port) win over what the destination says
        if host_arg.lower().startswith("ssh://"):
            uri = parse_ssh_uri(host_arg)
            if uri is None or isinstance(uri, int):  # None: bad; 1: not a URI
                raise SSHConfigError(f"invalid destination {host_arg!r}")
            uri_user, host_arg, uri_port = uri
            if user is None and uri_user is not None:
                user = uri_user
            if port is None and uri_port > 0:
                port = uri_port
        elif "@" in host_arg:
            uri_user, _, host_arg = host_arg.rpartition("@")
            if uri_user == "":
                raise SSHConfigError("invalid destination: empty user name")
            if user is None:
                user = uri_user
        if user is not None and not valid_ruser(user):
            raise SSHConfigError(f"remote username contains invalid characters: {user!r}")
        if not valid_hostname(host_arg):
            raise SSHConfigError(f"hostname contains invalid characters: {host_arg!r}")
        o: Dict[str, Any] = {"_lfwd": [], "_rfwd": []}
        if user is not None:
            o["user"] = user
            o["_user_cmdline"] = True
        if port is not None:
            if not 0 < int(port) < 65536:
                raise SSHConfigError(f"Bad port '{port}'.")
            o["port"] = str(int(port))
        if self.ctx.tag is not None:
            o["tag"] = self.ctx.tag
        st = Pass(o, host_arg, host_arg, False)
        self._run(self.root, st, nevermatch=False, depth=0)
        # fill_default_options_for_canonicalization(): set now, so a value for
        # these in the second pass (Match final, Host CANONICAL) has no effect
        o.setdefault("canonicalizemaxdots", "1")
        o.setdefault("canonicalizefallbacklocal", "yes")
        o.setdefault("canonicalizehostname", "false")
        host = host_arg
        if "hostname" in o:
            host = match_host(st, self.ctx)
            o["hostname"] = host
        host, _ = canonical_host(o, host, self.ctx, self.root.path)
        if o.get("canonicalizehostname", "false") != "false" or st.want_final:
            o["hostname"] = host
            self._run(self.root, Pass(o, host, host_arg, True), nevermatch=False, depth=0)
        return finish(o, host_arg, host, self.ctx, self.root.path)

    def _run(self, cf: CompiledFile, st: Pass, nevermatch: bool, depth: int) -> None:
        o = st.o
        active = not nevermatch
        blocks = cf.blocks
        if not nevermatch:
            # skip Host blocks that cannot apply and hold nothing ssh reads anyway
            blocks = [blocks[i] for i in cf.index().candidates(st.host)]
        for block in blocks:
            kind = block.kind
            if kind == "host":
                pats = block.host
                active = (not nevermatch) and pats is not None and pats.match(st.host)
            elif kind == "match":
                value = evaluate_match(block, st, self.ctx, cf)
                active = (not nevermatch) and value
            if active:
                for it in block.items:
                    if it[0] == OP_FIRST:
                        if it[1] not in o:
                            o[it[1]] = it[2]
                    else:
                        APPLY[it[0]](self, it, st, cf, depth, True)
            elif block.scan:
                for it in block.items:
                    if it[0] in SCAN_OPS:
                        APPLY[it[0]](self, it, st, cf, depth, False)

    # ------------------------------------------------------------ Include
    def _include(self, it: Item, st: Pass, cf: CompiledFile, depth: int, active: bool) -> None:
        ctx = self.ctx
        patterns, lineno = it[1], it[2]
        for arg in patterns:
            if ctx.version.include_expands_tokens:
                arg = self._include_tokens(arg, st, cf, lineno)
                if arg is None:
                    continue
            for path in include_paths(arg, ctx.home, ctx.accounts, ctx.environ):
                if depth + 1 > MAX_INCLUDE_DEPTH:
                    raise SSHConfigError("Too many recursive configuration includes",
                                         cf.path, lineno)
                sub = self.loader(path, cf, lineno)
                if sub is None:
                    continue
                self._run(sub, st, nevermatch=not active, depth=depth + 1)

    def _include_tokens(self, arg: str, st: Pass, cf: CompiledFile, lineno: int) -> Optional[str]:
        """9.9+: Include paths get %tokens and ${ENV}; a failed expansion is fatal, as in ssh."""
        o = st.o
        host = match_host(st, self.ctx)
        jump = o.get("_jump")
        jump_host = jump[0] if jump is not None and jump[0].lower() != "none" else None
        tokens = connection_tokens(self.ctx, host, st.original, str(o.get("port", "22")),
                                   str(o.get("user", self.ctx.local_user)),
                                   str(o.get("hostkeyalias", host)), jump_host)
        try:
            return expand_tokens(arg, tokens, self.ctx.environ, "percent_dollar_expand")
        except BadValue as exc:   # percent_dollar_expand() is fatal in ssh
            raise SSHConfigError(f"Include {arg}: {exc}", cf.path, lineno) from None


# ---------------------------------------------------------------- directive kinds
def _apply_first(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    if it[1] not in st.o:
        st.o[it[1]] = it[2]


_ACCUM_LIMIT = {"identityfile": "Too many identity files specified (max 100).",
                "certificatefile": "Too many certificate files specified (max 100)."}


def _apply_accum(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    lst = st.o.setdefault(it[1], [])
    if len(lst) >= MAX_IDENTITY_FILES:
        raise SSHConfigError(_ACCUM_LIMIT[it[1]], cf.path, it[3])
    if it[2] not in lst:
        lst.append(it[2])


def _add_forward(st: Pass, name: str, fwd: Tuple[Any, ...]) -> None:
    lst = st.o["_rfwd"] if name == "remoteforward" else st.o["_lfwd"]
    if fwd not in lst:
        lst.append(fwd)


def _apply_forward(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    _add_forward(st, it[1], it[2])


def _apply_forward_env(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    """``parse_forward()`` expands ${ENV} on reading: unset is fatal, active or not."""
    spec, dynamic, remote = it[2]
    try:
        spec = expand_tokens(spec.replace("%", "%%"), {}, r.ctx.environ, "dollar_expand")
        fwd = parse_forward_spec(spec, dynamic, remote)
    except BadValue:
        raise SSHConfigError("Bad forwarding specification.", cf.path, it[3]) from None
    if active:
        _add_forward(st, it[1], fwd)


def _apply_sendenv(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    lst = st.o.setdefault("sendenv", [])
    for word in it[2]:
        if word.startswith("-"):
            pat = word[1:]
            lst[:] = [e for e in lst if not match_pattern(e, pat)]
        else:
            lst.append(word)


def _apply_setenv(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    if "setenv" not in st.o:
        st.o["setenv"] = list(it[2])


def _apply_logverbose(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    if "logverbose" not in st.o:
        st.o["logverbose"] = list(it[2])


def _apply_jump(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    o = st.o
    if "proxycommand" not in o and "_jump" not in o:
        o["_jump"] = it[2]
        if it[2][2] != 0:       # a jump host, not the literal "none"
            o["proxycommand"] = "none"


def _apply_fwdagent(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    flag, path = it[2]
    if "forwardagent" not in st.o:
        st.o["forwardagent"] = flag
    if path is not None and "_fwdagentpath" not in st.o:
        st.o["_fwdagentpath"] = path


def _apply_rekey(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    limit, interval = it[2]
    if "_rekeylimit" not in st.o:
        st.o["_rekeylimit"] = limit
    if interval is not None and "_rekeyinterval" not in st.o:
        st.o["_rekeyinterval"] = interval


def _apply_last_always(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    st.o[it[1]] = it[2]


def _apply_unknown(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    ign = st.o.get("ignoreunknown")
    if ign is None or PatternList(ign, lower=True).match(it[1]) != 1:
        raise SSHConfigError(f"Bad configuration option: {it[1]}", cf.path, it[2])


def _apply_envcheck(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    try:
        expand_tokens(it[1].replace("%", "%%"), {}, r.ctx.environ, "dollar_expand")
    except BadValue:
        raise SSHConfigError(f"Invalid environment expansion {it[1]}.", cf.path, it[2]) from None


def _apply_include(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    r._include(it, st, cf, depth, active)


def _apply_first_limited(r: Resolver, it: Item, st: Pass, cf: CompiledFile, depth: int,
                  active: bool) -> None:
    if it[1] not in st.o:
        raise SSHConfigError(it[2], cf.path, it[3])


APPLY: Dict[int, Callable[..., None]] = {
    OP_FIRST: _apply_first,
    OP_ACCUM: _apply_accum,
    OP_FORWARD: _apply_forward,
    OP_FORWARD_ENV: _apply_forward_env,
    OP_SENDENV: _apply_sendenv,
    OP_SETENV: _apply_setenv,
    OP_LOGVERBOSE: _apply_logverbose,
    OP_JUMP: _apply_jump,
    OP_FWDAGENT: _apply_fwdagent,
    OP_REKEY: _apply_rekey,
    OP_LAST_ALWAYS: _apply_last_always,
    OP_UNKNOWN: _apply_unknown,
    OP_ENVCHECK: _apply_envcheck,
    OP_INCLUDE: _apply_include,
    OP_FIRST_LIMITED: _apply_first_limited,
}

