"""Open an authenticated paramiko connection the way OpenSSH would.

Settings come from resolving a host in an OpenSSH client config
(:meth:`sshpipe.SSHConfig.resolve`, the same result as ``ssh -G``): HostName,
Port, User, IdentityFile/IdentitiesOnly, ssh-agent keys, ProxyJump chains,
ProxyCommand, ConnectTimeout, ServerAliveInterval/CountMax, known-hosts files,
StrictHostKeyChecking and Compression.

Host keys are always checked. An unknown key is refused unless
StrictHostKeyChecking is ``accept-new`` or ``no`` (then it is recorded in the
first UserKnownHostsFile); a *changed* key is refused whatever the setting.

This is the one module that translates socket and paramiko errors: everything
leaves it as a :class:`~sshpipe.errors.ConnectError` subclass naming the host.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import logging
import os
import socket
from dataclasses import dataclass, replace
from typing import Any, List, Optional, Sequence

import paramiko

from sshpipe.errors import (AuthenticationError, ConnectError, ConnectTimeout, HostKeyError,
                            SSHConfigError)

__all__ = ["ConnectSettings", "connect", "settings_for"]

logger = logging.getLogger(__name__)

# Used when the config sets no ConnectTimeout: OpenSSH would wait for the kernel
# (minutes); a pipe that cannot start should say so sooner.
DEFAULT_CONNECT_TIMEOUT = 30.0

# paramiko's channel windows; larger than its 2 MiB default so one round trip of
# window updates does not cap throughput on fast links.
WINDOW_SIZE = 16 * 1024 * 1024

# Among the ciphers both ends allow, AES-GCM needs no separate MAC and is about
# twice as fast in paramiko as the CTR modes it prefers by default.
_FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr",
                 "aes256-ctr", "aes192-ctr")

_MAX_JUMPS = 10  # ProxyJump chains longer than this are surely a loop


@dataclass(frozen=True)
class ConnectSettings:
    """What is needed to connect to one host; built by :func:`settings_for`."""

    alias: str                      # the name as the caller gave it
    hostname: str
    port: int = 22
    user: str = ""
    identity_files: Sequence[str] = ()
    identities_only: bool = False
    use_agent: bool = True
    proxy_jump: Optional[str] = None
    proxy_command: Optional[str] = None
    connect_timeout: Optional[float] = None
    server_alive_interval: int = 0
    server_alive_count_max: int = 3
    user_known_hosts: Sequence[str] = ()
    global_known_hosts: Sequence[str] = ()
    strict_host_key_checking: str = "ask"
    host_key_alias: Optional[str] = None
    compression: bool = False
    ciphers: Sequence[str] = ()
    config_path: Optional[str] = None

    @property
    def known_hosts_name(self) -> str:
        """The name this host's key is filed under in known_hosts, as OpenSSH does."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def describe(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}" + (
            f" ({self.alias})" if self.alias != self.hostname else "")


def _none(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, list):
        value = " ".join(value)
    return None if str(value).lower() == "none" else str(value)


def _as_list(value: Any) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [item for item in value.split() if item.lower() != "none"]
    return [str(item) for item in value if str(item).lower() != "none"]


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("yes", "true")


def settings_for(host: str, config: Optional[str] = None, *, user: Optional[str] = None,
                 port: Optional[int] = None, identity_file: Optional[str] = None,
                 connect_timeout: Optional[float] = None) -> ConnectSettings:
    """Resolve ``host`` in the OpenSSH client config file ``config`` (default
    ``~/.ssh/config``, absent meaning empty) and apply explicit overrides, which win
    as they do on ssh's command line. IdentityFile and ProxyCommand are expanded
    here, as ssh expands them when it connects (``ssh -G`` prints them raw)."""
    from sshpipe.config import expand_for_connect, load

    path = config if config is not None else "~/.ssh/config"
    try:
        resolved = load(path).resolve(host, user=user, port=port)
    except FileNotFoundError as exc:
        raise SSHConfigError("ssh config file not found", path) from exc
    identity_files = [expand_for_connect(resolved, name, "path")
                      for name in _as_list(resolved.get("identityfile"))]
    if identity_file:
        identity_files.insert(0, os.path.expanduser(identity_file))
    proxy_command = _none(resolved.get("proxycommand"))
    if proxy_command:
        proxy_command = expand_for_connect(resolved, proxy_command, "proxy")
    timeout = _none(resolved.get("connecttimeout"))
    return ConnectSettings(
        alias=host,
        hostname=str(resolved.get("hostname") or host),
        port=int(resolved.get("port") or 22),
        user=str(resolved.get("user") or ""),
        identity_files=tuple(identity_files),
        identities_only=_truthy(resolved.get("identitiesonly", "no")),
        use_agent=(_none(resolved.get("identityagent", "SSH_AUTH_SOCK")) is not None),
        proxy_jump=_none(resolved.get("proxyjump")),
        proxy_command=proxy_command,
        connect_timeout=(connect_timeout if connect_timeout is not None
                         else float(timeout) if timeout else None),
        server_alive_interval=int(resolved.get("serveraliveinterval") or 0),
        server_alive_count_max=int(resolved.get("serveralivecountmax") or 3),
        user_known_hosts=tuple(_as_list(resolved.get("userknownhostsfile"))),
        global_known_hosts=tuple(_as_list(resolved.get("globalknownhostsfile"))),
        strict_host_key_checking=str(resolved.get("stricthostkeychecking", "ask")).lower(),
        host_key_alias=_none(resolved.get("hostkeyalias")),
        compression=_truthy(resolved.get("compression", "no")),
        ciphers=tuple(_as_list(str(resolved.get("ciphers", "")).replace(",", " "))),
        config_path=path,
    )


# -- connecting ---------------------------------------------------------------

def _open_socket(settings: ConnectSettings, timeout: float) -> socket.socket:
    """A TCP connection with Nagle off (paramiko leaves it on, and with Linux's
    delayed ACKs each small request then waits about 40 ms)."""
    try:
        sock = socket.create_connection((settings.hostname, settings.port), timeout=timeout)
    except socket.gaierror as exc:
        raise ConnectError(f"{settings.alias}: unknown host name {settings.hostname!r} "
                           f"({exc.strerror})", settings.alias) from exc
    except socket.timeout as exc:
        raise ConnectTimeout(f"{settings.alias}: connection to {settings.hostname} port "
                             f"{settings.port} timed out after {timeout:g} s",
                             settings.alias) from exc
    except ConnectionRefusedError as exc:
        raise ConnectError(f"{settings.alias}: connection to {settings.hostname} port "
                           f"{settings.port} refused", settings.alias) from exc
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        cls = ConnectTimeout if exc.errno == errno.ETIMEDOUT else ConnectError
        raise cls(f"{settings.alias}: cannot connect to {settings.hostname} port "
                  f"{settings.port}: {reason}", settings.alias) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if hasattr(socket, "TCP_QUICKACK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    return sock


def _parse_jump(spec: str) -> "tuple[Optional[str], str, Optional[int]]":
    """``[user@]host[:port]`` or ``ssh://[user@]host[:port]`` -> parts."""
    if spec.startswith("ssh://"):
        spec = spec[len("ssh://"):]
    user = None
    if "@" in spec:
        user, spec = spec.rsplit("@", 1)
    port = None
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
        port = int(port_text)
    else:
        host = spec
    return user, host, port


def _channel_socket(settings: ConnectSettings, timeout: float, depth: int):
    """The byte stream to the target: TCP, a ProxyCommand, or a ProxyJump chain."""
    if settings.proxy_command:
        return paramiko.ProxyCommand(settings.proxy_command)
    if not settings.proxy_jump:
        return _open_socket(settings, timeout)
    if depth >= _MAX_JUMPS:
        raise ConnectError(f"{settings.alias}: ProxyJump chain longer than {_MAX_JUMPS} hops",
                           settings.alias)
    hops = [hop.strip() for hop in settings.proxy_jump.split(",") if hop.strip()]
    # The last hop in the list is the one that opens the connection to the target;
    # it is itself reached through the hops before it (as ssh -J does).
    user, host, port = _parse_jump(hops[-1])
    jump = settings_for(host, settings.config_path, user=user, port=port)
    if len(hops) > 1:
        jump = replace(jump, proxy_jump=",".join(hops[:-1]), proxy_command=None)
    jump_transport = connect(jump, timeout=timeout, _depth=depth + 1)
    try:
        return jump_transport.open_channel(
            "direct-tcpip", (settings.hostname, settings.port), ("127.0.0.1", 0),
            timeout=timeout)
    except paramiko.ChannelException as exc:
        jump_transport.close()
        raise ConnectError(f"{settings.alias}: jump host {jump.alias} could not reach "
                           f"{settings.hostname}:{settings.port}: {exc}", settings.alias) from exc


def _known_host_keys(settings: ConnectSettings) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    for path in list(settings.user_known_hosts) + list(settings.global_known_hosts):
        if os.path.isfile(path):
            try:
                keys.load(path)
            except (OSError, paramiko.SSHException) as exc:
                logger.warning("skipping unreadable known_hosts file %s: %s", path, exc)
    return keys


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _check_host_key(transport: paramiko.Transport, settings: ConnectSettings,
                    known: paramiko.HostKeys) -> None:
    key = transport.get_remote_server_key()
    name = settings.known_hosts_name
    entries = known.lookup(name) or {}
    recorded = entries.get(key.get_name())
    if recorded is not None:
        if recorded == key:
            return
        raise HostKeyError(
            f"{settings.alias}: the host key of {name} has CHANGED ({key.get_name()} "
            f"{fingerprint(key)}); this may be an attack. Remove the old entry from "
            f"known_hosts if the change is expected.", settings.alias)
    if entries:
        raise HostKeyError(
            f"{settings.alias}: {name} offered a {key.get_name()} key ({fingerprint(key)}) "
            f"but known_hosts records only {', '.join(sorted(entries))} keys for it",
            settings.alias)
    policy = settings.strict_host_key_checking
    if policy in ("accept-new", "no", "off"):
        _record_host_key(settings, name, key)
        return
    raise HostKeyError(
        f"{settings.alias}: host key for {name} is not known ({key.get_name()} "
        f"{fingerprint(key)}) and StrictHostKeyChecking is {policy}; add it to "
        f"{settings.user_known_hosts[0] if settings.user_known_hosts else 'known_hosts'}",
        settings.alias)


def _record_host_key(settings: ConnectSettings, name: str, key: paramiko.PKey) -> None:
    if not settings.user_known_hosts:
        return
    path = settings.user_known_hosts[0]
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as handle:
        handle.write(f"{name} {key.get_name()} {key.get_base64()}\n")
    logger.info("%s: added %s key %s to %s", settings.alias, key.get_name(),
                fingerprint(key), path)


def _preferred_key_types(transport: paramiko.Transport, known: paramiko.HostKeys,
                         settings: ConnectSettings) -> None:
    """Ask for the host key types already on record first, as OpenSSH does, so a
    host with several keys is verified against the one we know."""
    entries = known.lookup(settings.known_hosts_name) or {}
    if not entries:
        return
    options = transport.get_security_options()
    current = list(options.key_types)
    known_types = [kind for kind in current if kind in entries
                   or (kind.startswith("rsa-sha2") and "ssh-rsa" in entries)]
    options.key_types = known_types + [kind for kind in current if kind not in known_types]


def _prefer_fast_ciphers(transport: paramiko.Transport, settings: ConnectSettings) -> None:
    options = transport.get_security_options()
    available = list(options.ciphers)
    allowed = set(settings.ciphers) if settings.ciphers else set(available)
    ordered = [c for c in _FAST_CIPHERS if c in available and c in allowed]
    ordered += [c for c in available if c in allowed and c not in ordered]
    if ordered:
        options.ciphers = ordered


def _load_key(path: str) -> Optional[paramiko.PKey]:
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        return None
    except paramiko.PasswordRequiredException:
        logger.debug("skipping %s: it needs a passphrase", path)
        return None
    except (paramiko.SSHException, OSError, ValueError) as exc:
        logger.debug("skipping %s: %s", path, exc)
        return None


def _authenticate(transport: paramiko.Transport, settings: ConnectSettings) -> None:
    tried: List[str] = []
    candidates: List["tuple[str, paramiko.PKey]"] = []
    file_keys = []
    for path in settings.identity_files:
        key = _load_key(path)
        if key is not None:
            file_keys.append((path, key))
    if settings.use_agent and os.environ.get("SSH_AUTH_SOCK"):
        try:
            agent_keys = paramiko.Agent().get_keys()
        except paramiko.SSHException:
            agent_keys = ()
        file_blobs = {key.asbytes() for _, key in file_keys}
        for key in agent_keys:
            if not settings.identities_only or key.asbytes() in file_blobs:
                candidates.append(("ssh-agent", key))
    candidates += file_keys
    for origin, key in candidates:
        tried.append(f"{key.get_name()} from {origin}")
        try:
            transport.auth_publickey(settings.user, key)
        except paramiko.AuthenticationException:
            continue
        except paramiko.SSHException as exc:
            raise ConnectError(f"{settings.alias}: authentication failed: {exc}",
                               settings.alias) from exc
        if transport.is_authenticated():
            return
    what = "; ".join(tried) if tried else "no usable key (none found, or all need a passphrase)"
    raise AuthenticationError(
        f"{settings.alias}: {settings.describe()} refused authentication; tried {what}",
        settings.alias)


def connect(settings: ConnectSettings, *, timeout: Optional[float] = None,
            _depth: int = 0) -> paramiko.Transport:
    """Return an authenticated, host-key-checked paramiko Transport.

    Raises:
        ConnectError: refused, unreachable, unknown name, SSH negotiation failed.
        ConnectTimeout: nothing answered within the connect timeout.
        HostKeyError: the host key is unknown (and may not be added) or changed.
        AuthenticationError: no offered key was accepted.
    """
    timeout = timeout or settings.connect_timeout or DEFAULT_CONNECT_TIMEOUT
    sock = _channel_socket(settings, timeout, _depth)
    transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE)
    try:
        transport.banner_timeout = timeout
        transport.handshake_timeout = timeout
        transport.auth_timeout = timeout
        known = _known_host_keys(settings)
        _preferred_key_types(transport, known, settings)
        _prefer_fast_ciphers(transport, settings)
        if settings.compression:
            transport.use_compression(True)
        try:
            # A little longer than the banner timeout, so that a silent server is
            # reported by paramiko's banner check rather than a bare wait.
            transport.start_client(timeout=timeout + 1)
            if not transport.is_active():
                raise transport.get_exception() or paramiko.SSHException("negotiation failed")
        except paramiko.SSHException as exc:
            text = str(exc).lower()
            if (isinstance(exc.__context__, (socket.timeout, TimeoutError))
                    or "timeout" in text or "timed out" in text):
                raise ConnectTimeout(f"{settings.alias}: SSH handshake with "
                                     f"{settings.describe()} timed out after {timeout:g} s",
                                     settings.alias) from exc
            raise ConnectError(f"{settings.alias}: SSH negotiation with {settings.describe()} "
                               f"failed: {exc}", settings.alias) from exc
        except (EOFError, OSError) as exc:
            raise ConnectError(f"{settings.alias}: {settings.describe()} closed the "
                               f"connection during the SSH handshake", settings.alias) from exc
        _check_host_key(transport, settings, known)
        _authenticate(transport, settings)
        if settings.server_alive_interval > 0:
            transport.set_keepalive(settings.server_alive_interval)
        return transport
    except BaseException:
        transport.close()
        raise
