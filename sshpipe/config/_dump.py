"""What ``ssh -G`` prints: defaults, the expansions done before printing, the layout.

After the passes, ssh fills defaults (``fill_default_options()``), checks a
few combinations, expands the options it expands before it would connect
(ControlPath, IdentityAgent, ForwardAgent paths, UserKnownHostsFile,
RemoteCommand, forward socket paths; from 10.0 also User, SetEnv values,
RevokedHostKeys and VersionAddendum) and prints each option in a fixed
order (``dump_client_config()``).  :func:`finish` does all of that for one
release; :func:`format_dump` writes the result as ``ssh -G`` lines.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from sshpipe.config._forwards import Forward
from sshpipe.config._context import Context, ascii_lower
from sshpipe.config._tokens import connection_tokens, expand_tokens, tilde_expand
from sshpipe.config._values import BadValue, assemble_algorithms
from sshpipe.errors import SSHConfigError

__all__ = ["finish", "format_dump", "valid_ruser", "PER_LINE_KEYS"]

# ssh -G prints these one value per line; the other list keys on one line.
PER_LINE_KEYS = frozenset({"identityfile", "certificatefile", "localforward", "remoteforward",
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
            if key in PER_LINE_KEYS:
                out.extend(f"{name} {v}" for v in value)
            else:
                out.append(f"{name} {' '.join(value)}")
        else:
            out.append(f"{name} {value}")
    return "".join(line + "\n" for line in out)


def valid_ruser(s: str) -> bool:
    """ssh's ``ssh_valid_ruser()`` (Debian's, with the control-character check)."""
    if s.startswith("-"):
        return False
    for i, c in enumerate(s):
        if ord(c) < 32 or ord(c) == 127:
            return False
        if c in "'`\";&<>|(){}":
            return False
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if c in " \t\n\v\f\r" and nxt == "-":
            return False
        if c == "\\" and nxt == "":
            return False
    return True


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
    "obscurekeystroketiming": "yes",
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
    "obscurekeystroketiming", "bindaddress", "bindinterface", "controlpath", "hostkeyalias",
    "identityagent", "ignoreunknown", "kbdinteractivedevices", "localcommand", "remotecommand",
    "pkcs11provider", "securitykeyprovider", "preferredauthentications", "revokedhostkeys",
    "xauthlocation", "knownhostscommand", "tag", "versionaddendum",
)


def _fmt_fwd(f: Forward, with_connect: bool) -> str:
    lh, lp, ch, cp, lpath, cpath = f
    if lpath or lh is None:
        s = str(lp)
    else:
        s = f"[{lh}]:{lp}"
    if with_connect:
        if cpath or ch is None:
            s += f" {cp}"
        else:
            s += f" [{ch}]:{cp}"
    return s


def _fmt_jump(jump: Tuple[str, Optional[str], int, Optional[str]]) -> str:
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


def finish(o: Dict[str, Any], host_arg: str, host: str, ctx: Context,
           path: Optional[str]) -> Dict[str, Any]:
    """Defaults, checks and expansions; the result in ``ssh -G`` order."""
    try:
        return _finish(o, host_arg, host, ctx)
    except BadValue as exc:
        raise SSHConfigError(f"{host_arg}: {exc}", path) from None


def _finish(o: Dict[str, Any], host_arg: str, host: str, ctx: Context) -> Dict[str, Any]:
    v = ctx.version
    get = o.get
    user_from_config = "user" in o and not o.get("_user_cmdline")
    user = get("user", ctx.local_user)
    port = get("port", "22")
    jump = get("_jump")
    if jump is not None and jump[0] == "none" and jump[1] is None and jump[2] == 0:
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
        o["hostkeyalias"] = ascii_lower(hka)
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
            and get("sessiontype", "default") != "none" and not ctx.command:
        raise BadValue("Cannot fork into background without a command to execute.")
    # SecurityKeyProvider: "internal" by default; "none" clears it; a "$VAR"
    # is only looked up when a key is used, after ``ssh -G`` prints.
    if "securitykeyprovider" not in o:
        o["securitykeyprovider"] = "internal"
    if "serveraliveinterval" not in o and get("batchmode") == "yes":
        # Debian: BatchMode implies a 300 s ServerAliveInterval
        o["serveraliveinterval"] = "300"

    jump_host = jump[0] if jump is not None else None
    keyalias = o.get("hostkeyalias") or host_arg
    env = ctx.environ
    home = ctx.home
    if v.expand_user and user_from_config:
        nouser = connection_tokens(ctx, host, host_arg, port, None, keyalias, jump_host)
        expanded = expand_tokens(user, nouser, env, "percent_dollar_expand")
        if expanded != user and not valid_ruser(expanded):
            raise BadValue("remote username contains invalid characters")
        user = expanded
    tokens = connection_tokens(ctx, host, host_arg, port, user, keyalias, jump_host)

    def pde(value: str) -> str:
        return expand_tokens(tilde_expand(value, home, ctx.local_user, ctx.accounts), tokens,
                             env, "percent_dollar_expand")

    if get("remotecommand") is not None:
        o["remotecommand"] = expand_tokens(o["remotecommand"], tokens, None, "percent_expand")
    if get("controlpath") is not None:
        o["controlpath"] = pde(o["controlpath"])
    if get("identityagent") is not None:
        o["identityagent"] = pde(o["identityagent"])
    if v.expand_revoked and get("revokedhostkeys") is not None:
        o["revokedhostkeys"] = pde(o["revokedhostkeys"])
    if get("_fwdagentpath") is not None:
        fpath = pde(o["_fwdagentpath"])
        o["_fwdagentpath"] = fpath
        if not os.path.exists(fpath) and get("exitonforwardfailure") == "yes":
            raise BadValue(f'Cannot forward agent socket path "{fpath}"')
    if v.name != "9.2" and get("versionaddendum") is not None:
        o["versionaddendum"] = expand_tokens(o["versionaddendum"], tokens, env,
                                             "percent_dollar_expand")
    gkh = get("globalknownhostsfile")
    if gkh is not None and gkh[0].lower() == "none" and len(gkh) > 1:
        raise BadValue('Invalid GlobalKnownHostsFiles: "none" appears with other entries')
    if ukh is not None:
        if ukh[0].lower() == "none":
            ukh_out = ["none"]
        else:
            ukh_out = [pde(x) for x in ukh]
    else:
        sep = "" if home.endswith("/") else "/"
        ukh_out = [f"{home}{sep}.ssh/known_hosts", f"{home}{sep}.ssh/known_hosts2"]
    setenv = get("setenv")
    if setenv and v.expand_setenv:
        setenv = [name + "=" + expand_tokens(value, tokens, env, "percent_dollar_expand")
                  for name, _, value in (item.partition("=") for item in setenv)]

    def fwd_paths(lst: List[Forward]) -> List[Forward]:
        out: List[Forward] = []
        for f in lst:
            lh, lp, ch, cp, lpath, cpath = f
            if lpath:
                lp = expand_tokens(str(lp), tokens, None, "percent_expand")
            if cpath:
                cp = expand_tokens(str(cp), tokens, None, "percent_expand")
            out.append((lh, lp, ch, cp, lpath, cpath))
        return out

    lfwd = fwd_paths(o["_lfwd"])
    rfwd = fwd_paths(o["_rfwd"])

    # ---- assemble the output in ssh -G order
    d = _DEFAULTS
    r: Dict[str, Any] = {"host": host_arg, "user": user, "hostname": host, "port": port}
    for key in _SIMPLE_KEYS:
        val = get(key)
        if val is None:
            val = d.get(key)
        if val is not None:
            r[key] = val
    for key, (supported, default) in v.algorithms.items():
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
    default_ids = _DEFAULT_IDS if v.dsa else _DEFAULT_IDS[:-1]
    r["identityfile"] = list(get("identityfile") or default_ids)
    r["canonicaldomains"] = list(get("canonicaldomains") or ["none"])
    if get("certificatefile"):
        r["certificatefile"] = list(o["certificatefile"])
    r["globalknownhostsfile"] = list(gkh) if gkh is not None else [
        "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"]
    r["userknownhostsfile"] = ukh_out
    if get("sendenv"):
        r["sendenv"] = list(o["sendenv"])
    if setenv:
        r["setenv"] = list(setenv)
    r["logverbose"] = list(get("logverbose") or ["none"])
    ct = get("channeltimeout")
    r["channeltimeout"] = ["none"] if not ct or (len(ct) == 1 and ct[0].lower() == "none") \
        else list(ct)
    r["permitremoteopen"] = list(get("permitremoteopen") or ["any"])
    r["addkeystoagent"] = get("addkeystoagent", "false")
    r["forwardagent"] = get("_fwdagentpath") or get("forwardagent", "no")
    r["connecttimeout"] = get("connecttimeout", "none")
    r["tunneldevice"] = get("tunneldevice", "any:any")
    cnames = get("canonicalizepermittedcnames")
    r["canonicalizepermittedcnames"] = ["none"] if not cnames or cnames == ["none:"] \
        else list(cnames)
    r["controlpersist"] = get("controlpersist", "no")
    r["escapechar"] = get("escapechar", "~")
    r["ipqos"] = get("ipqos", v.ipqos_default)
    r["rekeylimit"] = f"{get('_rekeylimit', '0')} {get('_rekeyinterval', '0')}"
    r["streamlocalbindmask"] = get("streamlocalbindmask", "0177")
    r["syslogfacility"] = get("syslogfacility", "USER")
    if jump is not None:
        r["proxyjump"] = _fmt_jump(jump)
    elif get("proxycommand") is not None:
        r["proxycommand"] = o["proxycommand"]
    if r.get("securitykeyprovider") is None:
        r.pop("securitykeyprovider", None)
    return {k: r[k] for k in v.dump_order if k in r}
