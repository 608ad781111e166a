"""Which OpenSSH a resolution follows: ``openssh="9.2" | "9.9" | "10.0" | "auto"``.

Each supported release family is one :class:`OpenSSH` record: the keywords
and ``Match`` criteria it knows, the algorithms it supports and proposes by
default, what ``ssh -G`` prints and in which order, and the few behaviours
that changed between releases.  The records describe Debian's builds (with
Debian's GSSAPI key exchange and keepalive patches), because those are the
binaries the tests compare with: 9.2 is Debian 12's ``openssh-client``, 10.0
is Debian 13's.  9.9 follows upstream 9.9p2's source with the same Debian
keyword patches; no Debian release shipped it, so it is not compared with a
binary.

``"auto"`` asks the ``ssh`` on PATH (``ssh -V``, once per process) and uses
the newest supported family not newer than it; without an ``ssh`` it is the
newest supported.
"""
from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Optional, Tuple, Union

__all__ = ["OpenSSH", "VERSIONS", "SUPPORTED", "NEWEST", "get_version", "local_release"]


def _csv(*parts: str) -> str:
    return ",".join(parts)


# ---------------------------------------------------------------- algorithms
_CIPHERS = _csv("3des-cbc", "aes128-cbc", "aes192-cbc", "aes256-cbc", "aes128-ctr", "aes192-ctr",
                "aes256-ctr", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                "chacha20-poly1305@openssh.com")
_MACS = _csv("hmac-sha1", "hmac-sha1-96", "hmac-sha2-256", "hmac-sha2-512", "hmac-md5",
             "hmac-md5-96", "umac-64@openssh.com", "umac-128@openssh.com",
             "hmac-sha1-etm@openssh.com", "hmac-sha1-96-etm@openssh.com",
             "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
             "hmac-md5-etm@openssh.com", "hmac-md5-96-etm@openssh.com", "umac-64-etm@openssh.com",
             "umac-128-etm@openssh.com")
_KEX_92 = _csv("diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1",
               "diffie-hellman-group14-sha256", "diffie-hellman-group16-sha512",
               "diffie-hellman-group18-sha512", "diffie-hellman-group-exchange-sha1",
               "diffie-hellman-group-exchange-sha256", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384",
               "ecdh-sha2-nistp521", "curve25519-sha256", "curve25519-sha256@libssh.org",
               "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com")
_KEX_99 = _KEX_92 + ",mlkem768x25519-sha256"


def _keys(dsa: bool) -> str:
    names = ["ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com", "sk-ssh-ed25519@openssh.com",
             "sk-ssh-ed25519-cert-v01@openssh.com", "ecdsa-sha2-nistp256",
             "ecdsa-sha2-nistp256-cert-v01@openssh.com", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp384-cert-v01@openssh.com", "ecdsa-sha2-nistp521",
             "ecdsa-sha2-nistp521-cert-v01@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
             "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
             "webauthn-sk-ecdsa-sha2-nistp256@openssh.com"]
    if dsa:
        names += ["ssh-dss", "ssh-dss-cert-v01@openssh.com"]
    names += ["ssh-rsa", "ssh-rsa-cert-v01@openssh.com", "rsa-sha2-256",
              "rsa-sha2-256-cert-v01@openssh.com", "rsa-sha2-512",
              "rsa-sha2-512-cert-v01@openssh.com"]
    return ",".join(names)


def _sigs(dsa: bool) -> str:
    names = ["ssh-ed25519", "sk-ssh-ed25519@openssh.com", "ecdsa-sha2-nistp256",
             "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "sk-ecdsa-sha2-nistp256@openssh.com",
             "webauthn-sk-ecdsa-sha2-nistp256@openssh.com"]
    if dsa:
        names.append("ssh-dss")
    return ",".join(names + ["ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"])


_DEF_CIPHERS_92 = _csv("chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
                       "aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
_DEF_CIPHERS_100 = _csv("chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com",
                        "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr")
_DEF_MACS = _csv("umac-64-etm@openssh.com", "umac-128-etm@openssh.com",
                 "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
                 "hmac-sha1-etm@openssh.com", "umac-64@openssh.com", "umac-128@openssh.com",
                 "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1")
_DEF_KEX_TAIL = _csv("curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256",
                     "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
                     "diffie-hellman-group-exchange-sha256", "diffie-hellman-group16-sha512",
                     "diffie-hellman-group18-sha512", "diffie-hellman-group14-sha256")
_DEF_KEX_92 = "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com," + _DEF_KEX_TAIL
_DEF_KEX_99 = ("sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,"
               "mlkem768x25519-sha256," + _DEF_KEX_TAIL)
_DEF_KEX_100 = ("mlkem768x25519-sha256,sntrup761x25519-sha512,"
                "sntrup761x25519-sha512@openssh.com," + _DEF_KEX_TAIL)
_DEF_KEYS = _csv("ssh-ed25519-cert-v01@openssh.com", "ecdsa-sha2-nistp256-cert-v01@openssh.com",
                 "ecdsa-sha2-nistp384-cert-v01@openssh.com",
                 "ecdsa-sha2-nistp521-cert-v01@openssh.com", "sk-ssh-ed25519-cert-v01@openssh.com",
                 "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
                 "rsa-sha2-512-cert-v01@openssh.com", "rsa-sha2-256-cert-v01@openssh.com",
                 "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                 "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
                 "sk-ecdsa-sha2-nistp256@openssh.com", "rsa-sha2-512", "rsa-sha2-256")
_DEF_CA = _csv("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
               "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
               "rsa-sha2-512", "rsa-sha2-256")


def _algorithms(kex: str, def_kex: str, def_ciphers: str, dsa: bool) -> Dict[str, Tuple[str, str]]:
    keys = _keys(dsa)
    return {
        "ciphers": (_CIPHERS, def_ciphers),
        "macs": (_MACS, _DEF_MACS),
        "kexalgorithms": (kex, def_kex),
        "hostkeyalgorithms": (keys, _DEF_KEYS),
        "hostbasedacceptedalgorithms": (keys, _DEF_KEYS),
        "pubkeyacceptedalgorithms": (keys, _DEF_KEYS),
        "casignaturealgorithms": (_sigs(dsa), _DEF_CA),
    }


# ---------------------------------------------------------------- ssh -G order
_DUMP_92 = """
host user hostname port addressfamily batchmode canonicalizefallbacklocal canonicalizehostname
checkhostip compression controlmaster enablesshkeysign clearallforwardings exitonforwardfailure
fingerprinthash forwardx11 forwardx11trusted gatewayports gssapiauthentication gssapikeyexchange
gssapidelegatecredentials gssapitrustdns gssapirenewalforcesrekey gssapiclientidentity
gssapiserveridentity gssapikexalgorithms hashknownhosts hostbasedauthentication identitiesonly
kbdinteractiveauthentication nohostauthenticationforlocalhost passwordauthentication
permitlocalcommand proxyusefdpass pubkeyauthentication requesttty sessiontype stdinnull
forkafterauthentication streamlocalbindunlink stricthostkeychecking tcpkeepalive tunnel
verifyhostkeydns visualhostkey updatehostkeys enableescapecommandline canonicalizemaxdots
connectionattempts forwardx11timeout numberofpasswordprompts serveralivecountmax
serveraliveinterval requiredrsasize [obscurekeystroketiming] bindaddress bindinterface ciphers
controlpath hostkeyalgorithms hostkeyalias hostbasedacceptedalgorithms identityagent
ignoreunknown kbdinteractivedevices kexalgorithms casignaturealgorithms localcommand
remotecommand loglevel macs pkcs11provider securitykeyprovider preferredauthentications
pubkeyacceptedalgorithms revokedhostkeys xauthlocation knownhostscommand [tag] [versionaddendum]
dynamicforward localforward remoteforward identityfile canonicaldomains certificatefile
globalknownhostsfile userknownhostsfile sendenv setenv logverbose [channeltimeout]
permitremoteopen addkeystoagent forwardagent connecttimeout tunneldevice
canonicalizepermittedcnames controlpersist escapechar ipqos rekeylimit streamlocalbindmask
syslogfacility proxycommand proxyjump
""".split()


def _order(extra: FrozenSet[str]) -> Tuple[str, ...]:
    out = []
    for word in _DUMP_92:
        if word.startswith("["):
            if word[1:-1] in extra:
                out.append(word[1:-1])
        else:
            out.append(word)
    return tuple(out)


# ---------------------------------------------------------------- the records
@dataclass(frozen=True)
class OpenSSH:
    """What one OpenSSH release family reads, does and prints.

    ``release`` is the ``SSH_RELEASE`` string (what ``Match version``
    compares and ``ssh -V`` prints before the comma); a resolution for
    ``"auto"`` carries the local binary's own string.
    """

    name: str
    release: str
    new_keywords: FrozenSet[str]
    match_criteria: FrozenSet[str]
    algorithms: Dict[str, Tuple[str, str]] = field(compare=False, hash=False)
    dump_order: Tuple[str, ...] = field(compare=False, hash=False)
    dsa: bool = True
    ipqos_default: str = "lowdelay throughput"
    # behaviours that changed
    match_key_equals: bool = False        # "Match host=x" (9.4+)
    match_argv: bool = False              # Match words split by argv_split() (9.4+), not strdelim()
    include_expands_tokens: bool = False  # Include paths get %tokens and ${ENV} (9.6+)
    jump_in_hash: bool = False            # %C hashes the ProxyJump host too; %j token
    expand_user: bool = False             # User gets %tokens and ${ENV} (10.0)
    expand_setenv: bool = False           # SetEnv values get %tokens and ${ENV}
    expand_revoked: bool = False          # RevokedHostKeys gets ~, %tokens, ${ENV}
    ipqos_strict: bool = False            # IPQoS numbers are decimal 0-255 only (9.9+)
    ipqos_tos_ignored: bool = False       # lowdelay/throughput/reliability read as "none"
    canon_limits_32: bool = True          # 32 CanonicalDomains / permitted CNAMEs at most
    jump_none_is_direct: bool = False     # ProxyJump none still counts as "direct"

    @property
    def family(self) -> Tuple[int, int]:
        major, minor = self.name.split(".")
        return int(major), int(minor)

    def knows(self, keyword: str) -> bool:
        """Whether this release accepts ``keyword`` (canonical name)."""
        return keyword not in _NEWER_KEYWORDS or keyword in self.new_keywords


_MATCH_92 = frozenset({"all", "canonical", "final", "exec", "host", "originalhost", "user",
                       "localuser"})
_MATCH_99 = _MATCH_92 | {"localnetwork", "tagged"}
_MATCH_100 = _MATCH_99 | {"version", "sessiontype", "command"}

# keywords that exist only from some release on (canonical names)
_NEWER_KEYWORDS = frozenset({"tag", "obscurekeystroketiming", "channeltimeout", "versionaddendum"})
_KW_99 = frozenset({"tag", "obscurekeystroketiming", "channeltimeout"})
_KW_100 = _KW_99 | {"versionaddendum"}

VERSIONS: Dict[str, OpenSSH] = {
    "9.2": OpenSSH(
        "9.2", "OpenSSH_9.2p1", frozenset(), _MATCH_92,
        _algorithms(_KEX_92, _DEF_KEX_92, _DEF_CIPHERS_92, dsa=True), _order(frozenset()),
        dsa=True, ipqos_default="lowdelay throughput"),
    "9.9": OpenSSH(
        "9.9", "OpenSSH_9.9p2", _KW_99, _MATCH_99,
        _algorithms(_KEX_99, _DEF_KEX_99, _DEF_CIPHERS_92, dsa=False),
        _order(frozenset({"obscurekeystroketiming", "tag", "channeltimeout"})),
        dsa=False, ipqos_default="af21 cs1", match_key_equals=True, match_argv=True,
        include_expands_tokens=True,
        jump_in_hash=True, expand_revoked=True, ipqos_strict=True, canon_limits_32=False,
        jump_none_is_direct=True),
    "10.0": OpenSSH(
        "10.0", "OpenSSH_10.0p2", _KW_100, _MATCH_100,
        _algorithms(_KEX_99, _DEF_KEX_100, _DEF_CIPHERS_100, dsa=False),
        _order(frozenset({"obscurekeystroketiming", "tag", "versionaddendum",
                          "channeltimeout"})),
        dsa=False, ipqos_default="ef cs1", match_key_equals=True, match_argv=True,
        include_expands_tokens=True,
        jump_in_hash=True, expand_user=True, expand_setenv=True, expand_revoked=True,
        ipqos_strict=True, ipqos_tos_ignored=True, canon_limits_32=False,
        jump_none_is_direct=True),
}
SUPPORTED = tuple(VERSIONS)
NEWEST = SUPPORTED[-1]

_RELEASE_RE = re.compile(r"OpenSSH_(\d+)\.(\d+)")


@functools.lru_cache(maxsize=None)
def local_release() -> Optional[str]:
    """``SSH_RELEASE`` of the ``ssh`` on PATH (``ssh -V``), or None without one."""
    ssh = shutil.which("ssh")
    if ssh is None:
        return None
    try:
        res = subprocess.run([ssh, "-V"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (res.stderr or res.stdout).strip()
    if not _RELEASE_RE.match(text):
        return None
    return text.split(",", 1)[0].strip()


def _family_of(release: str) -> OpenSSH:
    m = _RELEASE_RE.match(release)
    if m is None:
        raise ValueError(f"not an OpenSSH release string: {release!r}")
    want = (int(m.group(1)), int(m.group(2)))
    best = None
    for v in VERSIONS.values():
        if v.family <= want:
            best = v
    if best is None:
        raise ValueError(f"OpenSSH {want[0]}.{want[1]} is older than the oldest supported "
                         f"({SUPPORTED[0]})")
    return best


@functools.lru_cache(maxsize=64)
def get_version(spec: Union[str, OpenSSH, None] = "auto") -> OpenSSH:
    """The record for ``spec``: "9.2", "9.9", "10.0", "auto", or a release string.

    A release string ("OpenSSH_10.0p2 Debian-7+deb13u4", as ``ssh -V`` prints
    it) picks the newest family not newer than it and keeps the string for
    ``Match version``.  Raises ValueError for anything else.
    """
    if isinstance(spec, OpenSSH):
        return spec
    if spec is None or spec == "auto":
        release = local_release()
        if release is None:
            return VERSIONS[NEWEST]
        return get_version(release)
    if spec in VERSIONS:
        return VERSIONS[spec]
    if spec.startswith("OpenSSH_"):
        base = _family_of(spec)
        if base.release == spec:
            return base
        return _replace_release(base, spec)
    raise ValueError(f"unsupported openssh={spec!r}: use one of {', '.join(SUPPORTED)}, "
                     "'auto' or a release string such as 'OpenSSH_10.0p2'")


def _replace_release(base: OpenSSH, release: str) -> OpenSSH:
    import dataclasses
    return dataclasses.replace(base, release=release)
