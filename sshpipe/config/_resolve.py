"""Resolve a host's settings with the semantics of ``ssh -G`` (OpenSSH 9.2).

The order of work follows ``ssh.c``:

1. first pass over the file(s) with the host name as typed (Host patterns
   match it case-sensitively; ``Match host`` compares lower-cased);
2. HostName is expanded (``%h``) and the name lower-cased unless it is an
   address;
3. when CanonicalizeHostname is on or some ``Match final`` was seen, a second
   pass runs with the new name and ``canonical``/``final`` true;
4. defaults are filled in, then the options ``ssh`` expands before it would
   connect (ControlPath, IdentityAgent, ForwardAgent paths,
   UserKnownHostsFile, RemoteCommand, forward socket paths) get ``~``,
   ``%`` tokens and ``${ENV}``, and the result is laid out as ``ssh -G``
   prints it.

"First obtained value wins" is a dict membership test; blocks that do not
apply are skipped whole unless they hold something OpenSSH looks at anyway.
"""
from __future__ import annotations

import glob as _glob
import hashlib
import os
import socket
import subprocess
from typing import Callable, Dict, List, Optional

from sshpipe.config._compile import (
    OP_ACCUM, OP_ENVCHECK, OP_FIRST, OP_FORWARD, OP_FWDAGENT, OP_INCLUDE, OP_JUMP,
    OP_LAST_ALWAYS, OP_LOGVERBOSE, OP_REKEY, OP_SENDENV, OP_SETENV, OP_UNKNOWN,
    Block, CompiledFile,
)
from sshpipe.config._forwards import parse_ssh_uri
from sshpipe.config._options import (
    ALGORITHMS, DUMP_ORDER, BadValue, assemble_algorithms,
)
from sshpipe.config._patterns import PatternList, cidr_list_match, match_pattern
from sshpipe.config._tokens import Context, expand_tokens, local_addresses, tilde_expand
from sshpipe.errors import SSHConfigError

__all__ = ["Resolver", "MAX_INCLUDE_DEPTH", "include_paths"]

# OpenSSH's READCONF_MAX_DEPTH: an Include chain (or loop) deeper than this is
# refused.  Same number, so that the same files are accepted.
MAX_INCLUDE_DEPTH = 16


def _valid_hostname(s: str) -> bool:
    """ssh's check of a host name typed by the user (no shell metacharacters)."""
    if s.startswith("-"):
        return False
    return not any(c in "'`\"$\\;&<>|(){}," or c.isspace() or ord(c) < 32 or ord(c) == 127
                   for c in s)


def _valid_ruser(s: str) -> bool:
    """ssh's check of a user name given with -l or user@host."""
    if s.startswith("-"):
        return False
    for i, c in enumerate(s):
        if c in "'`\";&<>|(){}":
            return False
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if c.isspace() and nxt == "-":
            return False
        if c == "\\" and nxt == "":
            return False
    return True


def _is_addr(host: str) -> bool:
    try:
        socket.inet_aton(host)
        return True
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- resolver
class _Pass:
    __slots__ = ("o", "host", "original", "final", "want_final", "fwd_local", "fwd_remote")

    def __init__(self, o, host, original, final):
        self.o = o
        self.host = host
        self.original = original
        self.final = final
        self.want_final = False


class Resolver:
    """Runs the passes of one resolution over a compiled file tree.

    ``loader(path)`` returns the CompiledFile for an included path (cached by
    the caller).
    """

    def __init__(self, root: CompiledFile, ctx: Context,
                 loader: Callable[[str], CompiledFile]):
        self.root = root
        self.ctx = ctx
        self.loader = loader

    # ------------------------------------------------------------ errors
    def _err(self, reason: str, cf: Optional[CompiledFile] = None, line: Optional[int] = None):
        return SSHConfigError(reason, cf.path if cf is not None else None, line)

    # ------------------------------------------------------------ passes
    def resolve(self, host_arg: str, user: Optional[str], port: Optional[int]) -> Dict[str, object]:
        # the destination as ssh takes it: "user@host" or "ssh://user@host:port";
        # -l/-p (our user/port) win over what the destination says
        if host_arg.lower().startswith("ssh://"):
            uri = parse_ssh_uri(host_arg)
            if uri is None:
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
        if not _valid_hostname(host_arg):
            raise SSHConfigError(f"hostname contains invalid characters: {host_arg!r}")
        if user is not None and not _valid_ruser(user):
            raise SSHConfigError(f"remote username contains invalid characters: {user!r}")
        o: Dict[str, object] = {"_lfwd": [], "_rfwd": []}
        if user is not None:
            o["user"] = user
        if port is not None:
            if not 0 < int(port) < 65536:
                raise SSHConfigError(f"Bad port '{port}'.")
            o["port"] = str(int(port))
        st = _Pass(o, host_arg, host_arg, False)
        self._run(self.root, st, nevermatch=False, depth=0)
        host = host_arg
        if "hostname" in o:
            host = self._expand_hostname(o["hostname"], host_arg)
            o["hostname"] = host
        if not _is_addr(host):
            host = host.lower()
        canon = o.get("canonicalizehostname", "false")
        host = self._cname(o, host, canon)
        if canon != "false" or st.want_final:
            o["hostname"] = host
            st2 = _Pass(o, host, host_arg, True)
            self._run(self.root, st2, nevermatch=False, depth=0)
        return self._finish(o, host_arg, host)

    def _cname(self, o, host: str, canon: str) -> str:
        cnames = o.get("canonicalizepermittedcnames")
        if not cnames:
            return host
        direct = o.get("proxycommand") in (None, "none") and "_jump" not in o
        if not (direct or canon == "always"):
            return host
        resolver = self.ctx.resolver or _default_resolver
        cname = resolver(host)
        if cname is None:
            if direct:
                raise SSHConfigError(f"Could not resolve hostname {host}", self.root.path)
            return host
        if not cname or cname == host or canon == "false":
            return host
        if not direct and canon != "always":
            return host
        for rule in cnames:
            src, _, dst = rule.partition(":")
            if PatternList(src, True).match(host) == 1 and PatternList(dst, True).match(cname) == 1:
                return cname
        return host

    def _expand_hostname(self, value: str, host_arg: str) -> str:
        try:
            return expand_tokens(value, {"h": host_arg}, None, "percent_expand")
        except BadValue as exc:
            raise SSHConfigError(f"HostName {value!r}: {exc}", self.root.path) from None

    def _run(self, cf: CompiledFile, st: _Pass, nevermatch: bool, depth: int) -> None:
        o = st.o
        active = not nevermatch
        blocks = cf.blocks
        if not nevermatch:
            # skip Host blocks that cannot apply and hold nothing ssh reads anyway
            blocks = [blocks[i] for i in cf.index().candidates(blocks, st.host)]
        for block in blocks:
            kind = block.kind
            if kind == "host":
                active = (not nevermatch) and block.host.match(st.host)
            elif kind == "match":
                value = self._match(block, st, cf)
                active = (not nevermatch) and value
            if active:
                for it in block.items:
                    op = it[0]
                    if op == OP_FIRST:
                        if it[1] not in o:
                            o[it[1]] = it[2]
                    else:
                        self._apply(it, st, cf, depth, True)
            elif block.scan:
                for it in block.items:
                    if it[0] in (OP_INCLUDE, OP_UNKNOWN, OP_ENVCHECK, OP_LAST_ALWAYS):
                        self._apply(it, st, cf, depth, False)

    def _apply(self, it, st: _Pass, cf: CompiledFile, depth: int, active: bool) -> None:
        o = st.o
        op = it[0]
        if op == OP_ACCUM:
            lst = o.setdefault(it[1], [])
            if it[2] not in lst:
                lst.append(it[2])
        elif op == OP_FORWARD:
            lst = o["_rfwd"] if it[1] == "remoteforward" else o["_lfwd"]
            if it[2] not in lst:
                lst.append(it[2])
        elif op == OP_SENDENV:
            lst = o.setdefault("sendenv", [])
            for word in it[2]:
                if word.startswith("-"):
                    pat = word[1:]
                    lst[:] = [e for e in lst if not match_pattern(e, pat)]
                else:
                    lst.append(word)
        elif op == OP_SETENV:
            if "setenv" not in o:
                o["setenv"] = list(it[2])
        elif op == OP_LOGVERBOSE:
            if "logverbose" not in o:
                o["logverbose"] = list(it[2])
        elif op == OP_JUMP:
            if "proxycommand" not in o and "_jump" not in o:
                o["_jump"] = it[2]
                if it[2][0] != "none":
                    o["proxycommand"] = "none"
        elif op == OP_FWDAGENT:
            flag, path = it[2]
            if "forwardagent" not in o:
                o["forwardagent"] = flag
            if path is not None and "_fwdagentpath" not in o:
                o["_fwdagentpath"] = path
        elif op == OP_REKEY:
            limit, interval = it[2]
            if "_rekeylimit" not in o:
                o["_rekeylimit"] = limit
            if interval is not None and "_rekeyinterval" not in o:
                o["_rekeyinterval"] = interval
        elif op == OP_LAST_ALWAYS:
            o[it[1]] = it[2]
        elif op == OP_UNKNOWN:
            ign = o.get("ignoreunknown")
            if ign is None or PatternList(ign, lower=True).match(it[1]) != 1:
                raise self._err(f"Bad configuration option: {it[1]}", cf, it[2])
        elif op == OP_ENVCHECK:
            try:
                expand_tokens(it[1].replace("%", "%%"), {}, self.ctx.environ, "dollar_expand")
            except BadValue:
                raise self._err(f"Invalid environment expansion {it[1]}.", cf, it[2]) from None
        elif op == OP_INCLUDE:
            self._include(it[1], it[2], st, cf, depth, active)
        elif op == OP_FIRST:
            if it[1] not in o:
                o[it[1]] = it[2]

    def _include(self, patterns: List[str], lineno: int, st: _Pass, cf: CompiledFile,
                 depth: int, active: bool) -> None:
        for arg in patterns:
            for path in include_paths(arg, self.ctx.home):
                if depth + 1 > MAX_INCLUDE_DEPTH:
                    raise self._err("Too many recursive configuration includes", cf, lineno)
                try:
                    sub = self.loader(path)
                except FileNotFoundError:
                    continue
                except IsADirectoryError:
                    continue   # ssh reads a directory as an empty file
                self._run(sub, st, nevermatch=not active, depth=depth + 1)

    # ------------------------------------------------------------ Match
    def _match(self, block: Block, st: _Pass, cf: CompiledFile) -> bool:
        post_canon = st.final
        if block.match_all is not None and not block.match:
            return block.match_all
        o = st.o
        ctx = self.ctx
        if "hostname" in o:
            host = self._expand_hostname(o["hostname"], st.host)
        else:
            host = st.host
        result = True
        for crit in block.match:
            a = crit.attr
            if a == "canonical" or a == "final":
                if a == "final":
                    st.want_final = True
                r = post_canon
            elif a == "host":
                r = crit.patterns.match(host.lower()) == 1
            elif a == "originalhost":
                r = crit.patterns.match(st.original.lower()) == 1
            elif a == "user":
                r = crit.patterns.match(o.get("user", ctx.local_user)) == 1
            elif a == "localuser":
                r = crit.patterns.match(ctx.local_user) == 1
            elif a == "localnetwork":
                addrs = ctx.local_addresses if ctx.local_addresses is not None else local_addresses()
                r = cidr_list_match(addrs, crit.arg)
            elif a == "exec":
                if not result:
                    continue
                r = self._exec(crit.arg, host, st, cf, block.lineno)
            else:  # pragma: no cover - rejected when compiling
                raise self._err(f"Unsupported Match attribute {a}", cf, block.lineno)
            if r == crit.negate:
                result = False
        if block.match_all is not None:
            return result and block.match_all
        return result

    def _exec(self, arg: str, host: str, st: _Pass, cf: CompiledFile, lineno: int) -> bool:
        ctx = self.ctx
        o = st.o
        port = o.get("port", "22")
        ruser = o.get("user", ctx.local_user)
        short = ctx.local_hostname.split(".", 1)[0]
        tokens = {
            "C": hashlib.sha1((ctx.local_hostname + host + port + ruser).encode()).hexdigest(),
            "L": short, "d": ctx.home, "h": host,
            "k": o.get("hostkeyalias", host), "l": ctx.local_hostname, "n": st.original,
            "p": port, "r": ruser, "u": ctx.local_user, "i": str(ctx.uid),
        }
        try:
            cmd = expand_tokens(arg, tokens, None, "percent_expand")
        except BadValue as exc:
            raise self._err(str(exc), cf, lineno) from None
        if not ctx.allow_exec:
            raise self._err(f"Match exec '{cmd}' not run: pass allow_exec=True to allow it", cf, lineno)
        shell = ctx.environ.get("SHELL") or "/bin/sh"
        try:
            res = subprocess.run([shell, "-c", cmd], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, env=dict(ctx.environ))
        except OSError as exc:
            raise self._err(f"match exec '{cmd}' error: {exc}", cf, lineno) from None
        if res.returncode < 0:
            raise self._err(f"match exec '{cmd}' error", cf, lineno)
        return res.returncode == 0

    # ------------------------------------------------------------ defaults + dump
    def _finish(self, o: Dict[str, object], host_arg: str, host: str) -> Dict[str, object]:
        ctx = self.ctx
        r: Dict[str, object] = {}
        try:
            return self._finish_inner(o, r, host_arg, host, ctx)
        except BadValue as exc:
            raise SSHConfigError(f"{host_arg}: {exc}", self.root.path) from None

    def _finish_inner(self, o, r, host_arg, host, ctx):
        get = o.get
        user = get("user", ctx.local_user)
        port = get("port", "22")
        jump = get("_jump")
        if jump is not None and jump[0] == "none" and jump[1] is None and jump[2] in (None, -1, 0):
            jump = None
        for key in ("localcommand", "remotecommand", "proxycommand", "controlpath",
                    "revokedhostkeys", "pkcs11provider", "knownhostscommand"):
            if get(key) == "none":
                del o[key]
        if get("securitykeyprovider") == "none":
            o["securitykeyprovider"] = None
        # updatehostkeys default (before the known-hosts defaults are added)
        ukh = get("userknownhostsfile")
        if "updatehostkeys" not in o:
            vdns = get("verifyhostkeydns", "false")
            if vdns == "false" and (ukh is None or ukh == ["~/.ssh/known_hosts"]):
                o["updatehostkeys"] = "true"
            else:
                o["updatehostkeys"] = "false"
        if get("clearallforwardings") == "yes":
            o["_lfwd"] = []
            o["_rfwd"] = []
            o["tunnel"] = "false"
        if jump is not None:
            jport = jump[2] if jump[2] and jump[2] > 0 else 22
            juser = jump[1] if jump[1] is not None else user
            if jump[0] == host and int(port) == jport and user == juser:
                raise BadValue(f"jumphost loop via {jump[0]}")
            o["proxyusefdpass"] = "no"
            o.pop("proxycommand", None)
        hka = get("hostkeyalias")
        if hka is not None:
            o["hostkeyalias"] = hka.lower()
        if get("proxycommand") == "-" and get("proxyusefdpass") == "yes":
            raise BadValue("ProxyCommand=- and ProxyUseFDPass are incompatible")
        if get("updatehostkeys") == "ask":
            if (get("controlpersist", "no") != "no" and get("controlpath") is not None) \
                    or get("remotecommand") is not None or get("requesttty") == "false" \
                    or get("loglevel", "INFO") in ("SILENT", "FATAL", "ERROR"):
                o["updatehostkeys"] = "false"
        if int(get("connectionattempts", "1")) <= 0:
            raise BadValue("Invalid number of ConnectionAttempts")
        if get("forkafterauthentication") == "yes" and get("remotecommand") is None \
                and get("sessiontype", "default") != "none":
            raise BadValue("Cannot fork into background without a command to execute.")
        # SecurityKeyProvider: "internal" by default; "none" clears it; a "$VAR"
        # is only looked up when a key is used, after ``ssh -G`` prints.
        if "securitykeyprovider" not in o:
            o["securitykeyprovider"] = "internal"
        if "serveraliveinterval" not in o and get("batchmode") == "yes":
            # Debian: BatchMode implies a 300 s ServerAliveInterval
            o["serveraliveinterval"] = "300"

        short = ctx.local_hostname.split(".", 1)[0]
        tokens = {
            "C": hashlib.sha1((ctx.local_hostname + host + port + user).encode()).hexdigest(),
            "L": short, "i": str(ctx.uid), "k": o.get("hostkeyalias") or host_arg,
            "l": ctx.local_hostname, "n": host_arg, "p": port, "d": ctx.home, "h": host,
            "r": user, "u": ctx.local_user,
        }
        env = ctx.environ
        home = ctx.home

        def pde(v, what):
            return expand_tokens(tilde_expand(v, home, ctx.local_user), tokens, env, what)

        if get("remotecommand") is not None:
            o["remotecommand"] = expand_tokens(o["remotecommand"], tokens, None, "percent_expand")
        if get("controlpath") is not None:
            o["controlpath"] = pde(o["controlpath"], "percent_dollar_expand")
        if get("identityagent") is not None:
            o["identityagent"] = pde(o["identityagent"], "percent_dollar_expand")
        if get("_fwdagentpath") is not None:
            path = pde(o["_fwdagentpath"], "percent_dollar_expand")
            o["_fwdagentpath"] = path
            if not os.path.exists(path) and get("exitonforwardfailure") == "yes":
                raise BadValue(f'Cannot forward agent socket path "{path}"')
        gkh = get("globalknownhostsfile")
        if gkh is not None and gkh[0].lower() == "none" and len(gkh) > 1:
            raise BadValue('Invalid GlobalKnownHostsFiles: "none" appears with other entries')
        if ukh is not None:
            if ukh[0].lower() == "none":
                ukh_out = ["none"]
            else:
                ukh_out = [pde(v, "percent_dollar_expand") for v in ukh]
        else:
            ukh_out = [f"{home}{'' if home.endswith('/') else '/'}.ssh/known_hosts",
                       f"{home}{'' if home.endswith('/') else '/'}.ssh/known_hosts2"]

        def fwd_paths(lst):
            out = []
            for f in lst:
                lh, lp, ch, cp, lpath, cpath = f
                if lpath:
                    lp = expand_tokens(lp, tokens, None, "percent_expand")
                if cpath:
                    cp = expand_tokens(cp, tokens, None, "percent_expand")
                out.append((lh, lp, ch, cp, lpath, cpath))
            return out

        lfwd = fwd_paths(o["_lfwd"])
        rfwd = fwd_paths(o["_rfwd"])

        # ---- assemble the output in ssh -G order
        d = _DEFAULTS
        r["host"] = host_arg
        r["user"] = user
        r["hostname"] = host
        r["port"] = port
        for key in _SIMPLE_KEYS:
            v = get(key)
            if v is None:
                v = d.get(key)
            if v is not None:
                r[key] = v
        for key, (supported, default) in ALGORITHMS.items():
            r[key] = assemble_algorithms(get(key), default, supported)
        r["loglevel"] = get("loglevel", "INFO")
        dyn = [_fmt_fwd(f, False) for f in lfwd if f[2] is None or f[2] == "socks"]
        loc = [_fmt_fwd(f, True) for f in lfwd if not (f[2] is not None and f[2] == "socks")]
        rem = [_fmt_fwd(f, True) for f in rfwd]
        if dyn:
            r["dynamicforward"] = dyn
        if loc:
            r["localforward"] = loc
        if rem:
            r["remoteforward"] = rem
        r["identityfile"] = list(get("identityfile") or _DEFAULT_IDS)
        r["canonicaldomains"] = list(get("canonicaldomains") or ["none"])
        if get("certificatefile"):
            r["certificatefile"] = list(o["certificatefile"])
        r["globalknownhostsfile"] = list(gkh) if gkh is not None else [
            "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"]
        r["userknownhostsfile"] = ukh_out
        if get("sendenv"):
            r["sendenv"] = list(o["sendenv"])
        if get("setenv"):
            r["setenv"] = list(o["setenv"])
        r["logverbose"] = list(get("logverbose") or ["none"])
        r["permitremoteopen"] = list(get("permitremoteopen") or ["any"])
        r["addkeystoagent"] = get("addkeystoagent", "false")
        r["forwardagent"] = get("_fwdagentpath") or get("forwardagent", "no")
        r["connecttimeout"] = get("connecttimeout", "none")
        r["tunneldevice"] = get("tunneldevice", "any:any")
        r["canonicalizepermittedcnames"] = list(get("canonicalizepermittedcnames") or ["none"])
        r["controlpersist"] = get("controlpersist", "no")
        r["escapechar"] = get("escapechar", "~")
        r["ipqos"] = get("ipqos", "lowdelay throughput")
        r["rekeylimit"] = f"{get('_rekeylimit', '0')} {get('_rekeyinterval', '0')}"
        r["streamlocalbindmask"] = get("streamlocalbindmask", "0177")
        r["syslogfacility"] = get("syslogfacility", "USER")
        if jump is not None:
            r["proxyjump"] = _fmt_jump(jump)
        elif get("proxycommand") is not None:
            r["proxycommand"] = o["proxycommand"]
        if r.get("securitykeyprovider") is None:
            r.pop("securitykeyprovider", None)
        # order as ssh -G prints
        return {k: r[k] for k in DUMP_ORDER if k in r}


def _fmt_fwd(f, with_connect: bool) -> str:
    lh, lp, ch, cp, lpath, cpath = f
    if lpath:
        s = str(lp)
    elif lh is None:
        s = str(lp)
    else:
        s = f"[{lh}]:{lp}"
    if with_connect:
        if cpath:
            s += f" {cp}"
        elif ch is None:
            s += f" {cp}"
        else:
            s += f" [{ch}]:{cp}"
    return s


def _fmt_jump(jump) -> str:
    host, user, port, extra = jump
    numeric = ":" in host or all(c in "1234567890." for c in host)
    out = ""
    if extra is not None:
        out += extra + ","
    if user is not None:
        out += user + "@"
    out += f"[{host}]" if numeric else host
    if port is not None and port > 0:
        out += f":{port}"
    return out


def include_paths(arg: str, home: str) -> List[str]:
    """The files one Include word names, sorted, as ``glob(3)`` gives them."""
    if not arg.startswith("/") and not arg.startswith("~"):
        arg = "~/.ssh/" + arg
    if arg == "~" or arg.startswith("~/"):
        arg = home.rstrip("/") + arg[1:] if home != "/" else arg[1:] or "/"
    else:
        arg = os.path.expanduser(arg)
    return sorted(_glob.glob(arg))


def _default_resolver(name: str) -> Optional[str]:
    try:
        info = socket.getaddrinfo(name, None, flags=socket.AI_CANONNAME)
    except OSError:
        return None
    return info[0][3] if info and info[0][3] else ""


_DEFAULT_IDS = ["~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ecdsa_sk", "~/.ssh/id_ed25519",
                "~/.ssh/id_ed25519_sk", "~/.ssh/id_xmss", "~/.ssh/id_dsa"]

_DEFAULTS = {
    "addressfamily": "any", "batchmode": "no", "canonicalizefallbacklocal": "yes",
    "canonicalizehostname": "false", "checkhostip": "no", "compression": "no",
    "controlmaster": "false", "enablesshkeysign": "no", "clearallforwardings": "no",
    "exitonforwardfailure": "no", "fingerprinthash": "SHA256", "forwardx11": "no",
    "forwardx11trusted": "yes", "gatewayports": "no", "gssapiauthentication": "no",
    "gssapikeyexchange": "no", "gssapidelegatecredentials": "no", "gssapitrustdns": "no",
    "gssapirenewalforcesrekey": "no",
    "gssapikexalgorithms": "gss-group14-sha256-,gss-group16-sha512-,gss-nistp256-sha256-,"
                           "gss-curve25519-sha256-,gss-group14-sha1-,gss-gex-sha1-",
    "hashknownhosts": "no", "hostbasedauthentication": "no", "identitiesonly": "no",
    "kbdinteractiveauthentication": "yes", "nohostauthenticationforlocalhost": "no",
    "passwordauthentication": "yes", "permitlocalcommand": "no", "proxyusefdpass": "no",
    "pubkeyauthentication": "true", "requesttty": "auto", "sessiontype": "default",
    "stdinnull": "no", "forkafterauthentication": "no", "streamlocalbindunlink": "no",
    "stricthostkeychecking": "ask", "tcpkeepalive": "yes", "tunnel": "false",
    "verifyhostkeydns": "false", "visualhostkey": "no", "enableescapecommandline": "no",
    "canonicalizemaxdots": "1", "connectionattempts": "1", "forwardx11timeout": "1200",
    "numberofpasswordprompts": "3", "serveralivecountmax": "3", "serveraliveinterval": "0",
    "requiredrsasize": "1024", "xauthlocation": "/usr/bin/xauth",
}

_SIMPLE_KEYS = (
    "addressfamily", "batchmode", "canonicalizefallbacklocal", "canonicalizehostname",
    "checkhostip", "compression", "controlmaster", "enablesshkeysign", "clearallforwardings",
    "exitonforwardfailure", "fingerprinthash", "forwardx11", "forwardx11trusted", "gatewayports",
    "gssapiauthentication", "gssapikeyexchange", "gssapidelegatecredentials", "gssapitrustdns",
    "gssapirenewalforcesrekey", "gssapiclientidentity", "gssapiserveridentity",
    "gssapikexalgorithms", "hashknownhosts", "hostbasedauthentication", "identitiesonly",
    "kbdinteractiveauthentication", "nohostauthenticationforlocalhost", "passwordauthentication",
    "permitlocalcommand", "proxyusefdpass", "pubkeyauthentication", "requesttty", "sessiontype",
    "stdinnull", "forkafterauthentication", "streamlocalbindunlink", "stricthostkeychecking",
    "tcpkeepalive", "tunnel", "verifyhostkeydns", "visualhostkey", "updatehostkeys",
    "enableescapecommandline", "canonicalizemaxdots", "connectionattempts", "forwardx11timeout",
    "numberofpasswordprompts", "serveralivecountmax", "serveraliveinterval", "requiredrsasize",
    "bindaddress", "bindinterface", "controlpath", "hostkeyalias", "identityagent",
    "ignoreunknown", "kbdinteractivedevices", "localcommand", "remotecommand",
    "pkcs11provider", "securitykeyprovider", "preferredauthentications", "revokedhostkeys",
    "xauthlocation", "knownhostscommand",
)
