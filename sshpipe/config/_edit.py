"""Edits that change only the lines they must.

Each edit works on the list of lexed lines and splices text in or out; every
untouched line keeps its exact bytes (indentation, comments, quoting, line
ends).  New lines copy the file's habits: the indentation used under the
Host/Match lines, and the file's line ending.  After an edit the text is
compiled again and the edit is refused (nothing changes) if it introduced a
problem OpenSSH would reject.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Sequence, Tuple, Union

from sshpipe.config._lexer import Line, quote_arg
from sshpipe.config._options import KEYWORDS
from sshpipe.errors import SSHConfigError

if TYPE_CHECKING:  # pragma: no cover
    from sshpipe.config import SSHConfig

__all__ = ["hosts", "add_host", "set_option", "unset_option", "remove_host", "display_name",
           "Words", "shadowing_block"]

# How new lines spell keywords (the ssh_config(5) spelling).
_DISPLAY = {n.lower(): n for n in """
AddKeysToAgent AddressFamily BatchMode BindAddress BindInterface CanonicalDomains
CanonicalizeFallbackLocal CanonicalizeHostname CanonicalizeMaxDots CanonicalizePermittedCNAMEs
CASignatureAlgorithms CertificateFile CheckHostIP Ciphers ClearAllForwardings Compression
ConnectionAttempts ConnectTimeout ControlMaster ControlPath ControlPersist DynamicForward
EnableEscapeCommandline EnableSSHKeysign EscapeChar ExitOnForwardFailure FingerprintHash
ForkAfterAuthentication ForwardAgent ForwardX11 ForwardX11Timeout ForwardX11Trusted GatewayPorts
GlobalKnownHostsFile GSSAPIAuthentication GSSAPIDelegateCredentials GSSAPIKeyExchange
GSSAPITrustDNS GSSAPIRenewalForcesRekey GSSAPIClientIdentity GSSAPIServerIdentity
GSSAPIKexAlgorithms HashKnownHosts Host HostbasedAcceptedAlgorithms HostbasedAuthentication
HostKeyAlgorithms HostKeyAlias HostName IdentitiesOnly IdentityAgent IdentityFile IgnoreUnknown
Include IPQoS KbdInteractiveAuthentication KbdInteractiveDevices KexAlgorithms KnownHostsCommand
LocalCommand LocalForward LogLevel LogVerbose MACs Match NoHostAuthenticationForLocalhost
NumberOfPasswordPrompts PasswordAuthentication PermitLocalCommand PermitRemoteOpen
PKCS11Provider Port PreferredAuthentications ProxyCommand ProxyJump ProxyUseFdpass
PubkeyAcceptedAlgorithms PubkeyAuthentication RekeyLimit RemoteCommand RemoteForward RequestTTY
RequiredRSASize RevokedHostKeys SecurityKeyProvider SendEnv ServerAliveCountMax
ServerAliveInterval SessionType SetEnv StdinNull StreamLocalBindMask StreamLocalBindUnlink
StrictHostKeyChecking SyslogFacility TCPKeepAlive Tunnel TunnelDevice UpdateHostKeys User
UserKnownHostsFile VerifyHostKeyDNS VisualHostKey XAuthLocation
""".split()}

# Options whose several values are written one per line (they accumulate).
_PER_LINE = frozenset({"identityfile", "certificatefile", "localforward", "remoteforward",
                       "dynamicforward", "sendenv"})
# Options whose value is the raw rest of the line (never quoted as one word).
_RAW = frozenset({"proxycommand", "localcommand", "remotecommand", "knownhostscommand",
                  "proxyjump"})


def display_name(keyword: str) -> str:
    """The ssh_config(5) spelling of ``keyword`` (or the keyword as given)."""
    if keyword != keyword.lower():
        return keyword
    return _DISPLAY.get(KEYWORDS.get(keyword, keyword), keyword)


def _canon(keyword: str) -> str:
    key = keyword.lower()
    canon = KEYWORDS.get(key)
    if canon is None:
        raise SSHConfigError(f"Bad configuration option: {keyword}")
    return canon


def _words(value: Any) -> List[str]:
    if isinstance(value, bool):
        return ["yes" if value else "no"]
    if isinstance(value, (list, tuple)):
        out: List[str] = []
        for v in value:
            out.extend(_words(v))
        return out
    return [str(value)]


class Words(tuple[str, ...]):
    """Several words of one value, written on one line (``LocalForward 8080 localhost:80``).

    A plain list means one line per item for options that accumulate
    (IdentityFile, LocalForward ...); ``Words`` keeps them on one line, each
    word quoted only if it must be.
    """


def _value_lines(canon: str, value: Any) -> List[str]:
    """Value text for each line that setting ``canon`` to ``value`` needs."""
    if isinstance(value, Words):
        if canon in _RAW:
            return [" ".join(value)]
        return [" ".join(quote_arg(str(w)) for w in value)]
    if canon in _RAW:
        return [" ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)]
    words = _words(value)
    if canon in _PER_LINE and isinstance(value, (list, tuple)):
        return [quote_arg(w) for w in words]
    if canon in ("localforward", "remoteforward") and not isinstance(value, (list, tuple)):
        return [str(value)]
    return [" ".join(quote_arg(w) for w in words)]


def _eol(config: "SSHConfig") -> str:
    ends = Counter(line.eol for line in config.lines if line.eol)
    return ends.most_common(1)[0][0] if ends else "\n"


def _body_indent(config: "SSHConfig", start: Optional[int] = None,
                 end: Optional[int] = None) -> str:
    lines = config.lines
    rng = lines[start:end] if start is not None else lines
    seen: Counter[str] = Counter()
    in_block = start is not None
    for line in rng:
        key = line.key
        if key is None:
            continue
        if key in ("host", "match"):
            in_block = True
            continue
        if in_block:
            seen[line.indent] += 1
    if seen:
        return seen.most_common(1)[0][0]
    if start is not None:
        return _body_indent(config)
    return "    "


def _blocks(config: "SSHConfig") -> List[Tuple[int, int, List[str]]]:
    """(header index, end index exclusive, patterns) of each Host block."""
    lines = config.lines
    heads = [i for i, line in enumerate(lines) if line.key in ("host", "match")]
    out = []
    for n, i in enumerate(heads):
        end = heads[n + 1] if n + 1 < len(heads) else len(lines)
        if lines[i].key == "host":
            out.append((i, end, list(lines[i].args)))
    return out


def _find(config: "SSHConfig", host: Union[str, Sequence[str]]) -> Optional[Tuple[int, int]]:
    want = host.split() if isinstance(host, str) else list(host)
    for start, end, pats in _blocks(config):
        if pats == want:
            return start, end
    return None


def _attached_comments(lines: List[Line], head: int) -> int:
    """Index of the first comment line directly above ``head`` (no blank between)."""
    i = head
    while i > 0 and lines[i - 1].keyword is None and lines[i - 1].text.strip().startswith("#"):
        i -= 1
    return i


def _content_end(lines: List[Line], start: int, end: int) -> int:
    """Index after the last directive line in ``lines[start:end]``."""
    last = start
    for i in range(start, end):
        if lines[i].keyword is not None:
            last = i
    return last + 1


def _commit(config: "SSHConfig", new_lines: List[str]) -> None:
    from sshpipe.config import SSHConfig

    text = "".join(new_lines)
    before = {(e.reason, e.path) for e in config.validate()}
    candidate = SSHConfig(text, path=config.path, encoding=config.encoding, home=config.home,
                          openssh=config.openssh, accounts=config.accounts)
    for err in candidate.validate():
        if (err.reason, err.path) not in before:
            raise err
    config._set_text(text)


def _texts(config: "SSHConfig") -> List[str]:
    return [line.text for line in config.lines]


def shadowing_block(config: "SSHConfig") -> Optional[Tuple[int, List[str]]]:
    """The first Host block that applies to every name (``Host *``): (line number, patterns).

    A block added after it can only set what it leaves unset, since the
    first value obtained wins.
    """
    lines = config.lines
    for start, _, pats in _blocks(config):
        if "*" in pats and not any(p.startswith("!") for p in pats):
            return lines[start].lineno, pats
    return None


def hosts(config: "SSHConfig") -> List[List[str]]:
    """Patterns of every Host line in the file, in order."""
    return [pats for _, _, pats in _blocks(config)]


def add_host(config: "SSHConfig", patterns: Union[str, Sequence[str]], options: Mapping[str, Any],
             *, before: Optional[str] = None) -> None:
    """Append (or insert before ``before``'s block) a new Host block."""
    pats = patterns.split() if isinstance(patterns, str) else list(patterns)
    if not pats:
        raise SSHConfigError("Host needs at least one pattern")
    eol = _eol(config)
    indent = _body_indent(config)
    block = [f"Host {' '.join(quote_arg(p) for p in pats)}{eol}"]
    for keyword, value in options.items():
        canon = _canon(keyword)
        for text in _value_lines(canon, value):
            block.append(f"{indent}{display_name(keyword)} {text}{eol}")
    texts = _texts(config)
    if before is not None:
        found = _find(config, before)
        if found is None:
            raise KeyError(f"no Host block {before!r}")
        at = _attached_comments(config.lines, found[0])
        new = texts[:at] + block + [eol] + texts[at:]
    else:
        new = list(texts)
        if new and not new[-1].endswith("\n"):
            new[-1] += eol
        if new and new[-1].strip() != "":
            new.append(eol)
        new += block
    _commit(config, new)


def set_option(config: "SSHConfig", host: str, keyword: str, value: Any) -> None:
    """Make ``keyword`` have ``value`` in Host block ``host`` (adding it if needed)."""
    canon = _canon(keyword)
    found = _find(config, host)
    if found is None:
        add_host(config, host, {keyword: value})
        return
    start, end = found
    lines = config.lines
    values = _value_lines(canon, value)
    hits = [i for i in range(start + 1, end) if lines[i].key is not None
            and KEYWORDS.get(lines[i].key or "") == canon]
    texts = _texts(config)
    eol = _eol(config)
    if hits:
        first = lines[hits[0]]
        body = first.text
        newfirst = body[:first.value_start] + values[0] + body[first.value_end:]
        if (first.value_start == first.value_end
                and not body[first.kw_end:first.value_start].strip(" \t=")):
            newfirst = body[:first.kw_end] + " " + values[0] + body[first.kw_end:]
        prefix = body[:first.kw_start]
        extra = [f"{prefix}{first.keyword} {v}{first.eol or eol}" for v in values[1:]]
        new = []
        for i, t in enumerate(texts):
            if i == hits[0]:
                new.append(newfirst)
                new.extend(extra)
            elif i in hits[1:]:
                continue
            else:
                new.append(t)
    else:
        indent = _body_indent(config, start, end)
        at = _content_end(lines, start, end)
        add = [f"{indent}{display_name(keyword)} {v}{eol}" for v in values]
        new = list(texts)
        if at > 0 and not new[at - 1].endswith("\n"):
            new[at - 1] += eol
            if at == len(new):
                add[-1] = add[-1][: -len(eol)]
        new[at:at] = add
    _commit(config, new)


def unset_option(config: "SSHConfig", host: str, keyword: str) -> int:
    """Remove every ``keyword`` line of Host block ``host``; returns how many."""
    canon = _canon(keyword)
    found = _find(config, host)
    if found is None:
        raise KeyError(f"no Host block {host!r}")
    start, end = found
    lines = config.lines
    hits = {i for i in range(start + 1, end) if lines[i].key is not None
            and KEYWORDS.get(lines[i].key or "") == canon}
    if hits:
        _commit(config, [t for i, t in enumerate(_texts(config)) if i not in hits])
    return len(hits)


def remove_host(config: "SSHConfig", host: str) -> None:
    """Remove Host block ``host``: its header, body and the comments above it."""
    found = _find(config, host)
    if found is None:
        raise KeyError(f"no Host block {host!r}")
    start, end = found
    lines = config.lines
    first = _attached_comments(lines, start)
    if end < len(lines):
        # comments right above the next header belong to the next block
        last = _attached_comments(lines, end)
        # keep blank lines that separate this block from the next one's comments
        while last > start + 1 and lines[last - 1].text.strip() == "" and \
                _content_end(lines, start, last) < last - 1:
            last -= 1
        cut_end = max(last, start + 1)
        # drop the blank separator lines after the block too
        while cut_end < end and lines[cut_end].text.strip() == "":
            cut_end += 1
    else:
        cut_end = end
    texts = _texts(config)
    _commit(config, texts[:first] + texts[cut_end:])
