"""Open an authenticated paramiko connection the way OpenSSH would.

Settings come from resolving a host in an OpenSSH client config
(:meth:`sshpipe.SSHConfig.resolve`, the same result as ``ssh -G``): HostName,
Port, User, IdentityFile/IdentitiesOnly, ssh-agent keys, ProxyJump chains,
ProxyCommand, ConnectTimeout, ServerAliveInterval/CountMax, known-hosts files,
StrictHostKeyChecking and Compression.

Host keys are always checked against the known_hosts files, read as OpenSSH
reads them (:mod:`sshpipe._known_hosts`: markers, patterns, hashed names). An
unknown key is refused unless StrictHostKeyChecking is ``accept-new`` or ``no``
(then it is recorded in the first UserKnownHostsFile); a *changed* key, or one
marked ``@revoked``, is refused whatever the setting. A private key file that
others may read is ignored, as OpenSSH ignores it ("UNPROTECTED PRIVATE KEY
FILE").

This is the one module that translates socket and paramiko errors, through one
table (:data:`TRANSPORT_ERRORS`, naming the failures of the one table both
transports share, :mod:`sshpipe._connect_errors`): everything leaves it as a
:class:`~sshpipe.errors.ConnectError` subclass naming the host, the original
error chained as ``__cause__``. paramiko's own log goes to the
``sshpipe.transport.paramiko`` logger, which never falls back to printing on
stderr (a silent server's banner timeout is in the error, not in a traceback).
"""
from __future__ import annotations

import base64
import contextlib
import errno
import functools
import hashlib
import logging
import os
import socket
import stat
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Type

import paramiko
from paramiko.ber import BERException
from paramiko.buffered_pipe import PipeTimeout
from paramiko.hostkeys import InvalidHostKey
from paramiko.packet import NeedRekeyException
from paramiko.pkey import UnknownKeyType
from paramiko.sftp import SFTPError
from paramiko.ssh_exception import IncompatiblePeer

from sshpipe import _known_hosts
from sshpipe._connect_errors import Failure, connect_error
from sshpipe.errors import ConnectError, SSHConfigError, SSHPipeError

__all__ = ["ConnectSettings", "ErrorRow", "TRANSPORT_ERRORS", "connect", "fingerprint",
           "open_command", "settings_for", "transport_error"]

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

# Where each paramiko Transport logs (set_log_channel). It has a NullHandler, so
# with no logging configured paramiko's error lines and tracebacks are dropped
# instead of reaching stderr through logging's last resort; configured handlers
# still get them. What they say is in the error connect() raises.
PARAMIKO_LOG = "sshpipe.transport.paramiko"


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


# -- errors: one table ---------------------------------------------------------

@dataclass(frozen=True)
class _Attempt:
    """What was being done when an error came: the words its message uses."""

    settings: ConnectSettings
    timeout: float
    doing: str          # "connection to db1 port 22", "authentication as deploy" ...


def _reason(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # an exception made without its arguments (the table's test)
        text = ""
    return text or type(exc).__name__


def _os_reason(exc: BaseException) -> str:
    number = getattr(exc, "errno", None)
    said = getattr(exc, "strerror", None)
    if said:
        return str(said)
    return os.strerror(number) if number else _reason(exc)


def _timed_out(exc: BaseException) -> bool:
    """paramiko reports a silent peer as an SSHException raised while handling a
    socket timeout ("Error reading SSH protocol banner")."""
    context = exc.__cause__ or exc.__context__
    text = _reason(exc).lower()
    return isinstance(context, (socket.timeout, TimeoutError)) or "timed out" in text \
        or "timeout" in text


@dataclass(frozen=True)
class ErrorRow:
    """One row of :data:`TRANSPORT_ERRORS`: which failure (of the one table,
    :data:`sshpipe._connect_errors.CONNECT_ERRORS`) an exception is."""

    raised: Tuple[Type[BaseException], ...]        # what paramiko or the socket raised
    failure: Failure                               # what it means, whichever transport
    reason: Callable[[BaseException], str] = _reason  # the ``{reason}`` it quotes
    when: Optional[Callable[[BaseException], bool]] = None  # only if this also holds


# paramiko and socket exceptions -> failures. The first row that matches wins, so
# the specific rows come before the ones for their base classes. Every exception
# class paramiko defines has a row (tests/test_errors_transport.py).
TRANSPORT_ERRORS: Tuple[ErrorRow, ...] = (
    ErrorRow((paramiko.BadHostKeyException, InvalidHostKey), Failure.HOST_KEY),
    ErrorRow((paramiko.PasswordRequiredException,), Failure.PASSPHRASE),
    ErrorRow((paramiko.AuthenticationException,), Failure.AUTHENTICATION),
    ErrorRow((PipeTimeout, socket.timeout, TimeoutError), Failure.TIMEOUT),
    ErrorRow((paramiko.SSHException,), Failure.TIMEOUT, when=_timed_out),
    ErrorRow((socket.gaierror,), Failure.UNKNOWN_NAME, reason=_os_reason),
    ErrorRow((ConnectionRefusedError,), Failure.REFUSED),
    ErrorRow((paramiko.ProxyCommandFailure,), Failure.PROXY_COMMAND),
    ErrorRow((paramiko.ChannelException,), Failure.CHANNEL_REFUSED),
    ErrorRow((IncompatiblePeer,), Failure.NO_COMMON_ALGORITHMS),
    ErrorRow((paramiko.SSHException, UnknownKeyType, BERException,
              NeedRekeyException, SFTPError), Failure.FAILED),
    ErrorRow((EOFError,), Failure.CLOSED),
    ErrorRow((OSError,), Failure.TIMEOUT, reason=_os_reason,
             when=lambda e: getattr(e, "errno", None) == errno.ETIMEDOUT),
    ErrorRow((OSError,), Failure.FAILED, reason=_os_reason),
)


def transport_error(exc: BaseException, settings: ConnectSettings, timeout: float,
                    doing: str) -> ConnectError:
    """The sshpipe error for ``exc``, raised while ``doing`` (its row in
    :data:`TRANSPORT_ERRORS`), naming the host, with ``exc`` as its cause."""
    for row in TRANSPORT_ERRORS:
        if isinstance(exc, row.raised) and (row.when is None or row.when(exc)):
            failure, reason = row.failure, row.reason(exc)
            break
    else:  # not paramiko's nor the socket's: a bug somewhere, still typed and chained
        failure, reason = Failure.FAILED, repr(exc)
    detail = ""
    if failure is Failure.TIMEOUT and isinstance(exc, (paramiko.SSHException, OSError)) \
            and not isinstance(exc, (socket.timeout, TimeoutError)):
        detail = f" ({reason})"
    error = connect_error(failure, settings.alias, doing=doing, after=f" after {timeout:g} s",
                          hostname=settings.hostname, reason=reason, detail=detail)
    error.__cause__ = exc
    return error


@contextlib.contextmanager
def _step(settings: ConnectSettings, timeout: float, doing: str) -> Iterator[None]:
    """Translate whatever the block raises, except sshpipe's own errors."""
    try:
        yield
    except SSHPipeError:
        raise
    except Exception as exc:
        raise transport_error(exc, settings, timeout, doing) from exc


@functools.lru_cache(maxsize=None)
def _paramiko_log() -> str:
    logging.getLogger(PARAMIKO_LOG).addHandler(logging.NullHandler())
    return PARAMIKO_LOG


# -- connecting ---------------------------------------------------------------

def _open_socket(settings: ConnectSettings, timeout: float) -> socket.socket:
    """A TCP connection with Nagle off (paramiko leaves it on, and with Linux's
    delayed ACKs each small request then waits about 40 ms)."""
    with _step(settings, timeout, f"connection to {settings.hostname} port {settings.port}"):
        sock = socket.create_connection((settings.hostname, settings.port), timeout=timeout)
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


def _channel_socket(settings: ConnectSettings, timeout: float, depth: int) -> Any:
    """The byte stream to the target: TCP, a ProxyCommand, or a ProxyJump chain."""
    if settings.proxy_command:
        with _step(settings, timeout, f"ProxyCommand {settings.proxy_command!r}"):
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
        with _step(settings, timeout, f"jump host {jump.alias} reaching "
                                      f"{settings.hostname}:{settings.port}"):
            return jump_transport.open_channel(
                "direct-tcpip", (settings.hostname, settings.port), ("127.0.0.1", 0),
                timeout=timeout)
    except BaseException:
        jump_transport.close()
        raise


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _known_hosts_files(settings: ConnectSettings) -> List[str]:
    return list(settings.user_known_hosts) + list(settings.global_known_hosts)


def _check_host_key(transport: paramiko.Transport, settings: ConnectSettings,
                    known: _known_hosts.HostEntries) -> None:
    """OpenSSH's check_host_key(): revoked, then recorded, then changed, then new."""
    key = transport.get_remote_server_key()
    name = settings.known_hosts_name
    facts = {"name": name, "key": f"{key.get_name()} {fingerprint(key)}"}
    revoked = known.revoked_entry(key)
    if revoked is not None:
        raise connect_error(Failure.HOST_KEY_REVOKED, settings.alias, facts,
                            where=revoked.where)
    if known.matching(key) is not None:
        return
    same_type = [e for e in known.keys if e.key.get_name() == key.get_name()]
    if same_type:
        raise connect_error(Failure.HOST_KEY_CHANGED, settings.alias, facts,
                            where=same_type[0].where)
    if known.keys:
        raise connect_error(Failure.HOST_KEY_OTHER_TYPES, settings.alias, facts,
                            types=", ".join(known.key_types()))
    policy = settings.strict_host_key_checking
    if policy in ("accept-new", "no", "off"):
        _record_host_key(settings, name, key)
        return
    authority = (f"; known_hosts names a @cert-authority for it ({known.authorities[0].where})"
                 f", but host certificates are not checked by the paramiko transport"
                 if known.authorities else "")
    raise connect_error(
        Failure.HOST_KEY_UNKNOWN, settings.alias, facts, policy=policy, note=authority,
        known_hosts=settings.user_known_hosts[0] if settings.user_known_hosts
        else "known_hosts")


def _record_host_key(settings: ConnectSettings, name: str, key: paramiko.PKey) -> None:
    if not settings.user_known_hosts:
        return
    path = os.path.expanduser(settings.user_known_hosts[0])
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as handle:
        handle.write(f"{name} {key.get_name()} {key.get_base64()}\n")
    logger.info("%s: added %s key %s to %s", settings.alias, key.get_name(),
                fingerprint(key), path)


def _preferred_key_types(transport: paramiko.Transport, known: _known_hosts.HostEntries
                         ) -> None:
    """Ask for the host key types already on record first, as OpenSSH does, so a
    host with several keys is verified against the one we know."""
    recorded = set(known.key_types())
    if not recorded:
        return
    options = transport.get_security_options()
    current = list(options.key_types)
    known_types = [kind for kind in current if kind in recorded
                   or (kind.startswith("rsa-sha2") and "ssh-rsa" in recorded)]
    options.key_types = known_types + [kind for kind in current if kind not in known_types]


def _prefer_fast_ciphers(transport: paramiko.Transport, settings: ConnectSettings) -> None:
    options = transport.get_security_options()
    available = list(options.ciphers)
    allowed = set(settings.ciphers) if settings.ciphers else set(available)
    ordered = [c for c in _FAST_CIPHERS if c in available and c in allowed]
    ordered += [c for c in available if c in allowed and c not in ordered]
    if ordered:
        options.ciphers = ordered


def _unprotected(path: str) -> Optional[str]:
    """OpenSSH's sshkey_perm_ok(): a key file owned by this user that its group or
    others may access is refused (one owned by someone else is not checked)."""
    try:
        info = os.stat(path)
    except OSError:
        return None  # reading it will say why
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        return (f"UNPROTECTED PRIVATE KEY FILE: permissions 0{stat.S_IMODE(info.st_mode):03o} "
                f"for '{path}' are too open; it is required that your private key files "
                f"are NOT accessible by others, so this key is ignored")
    return None


def _load_key(path: str) -> Tuple[Optional[paramiko.PKey], Optional[str]]:
    """The key in ``path``, or None and why it was skipped (None: no such file)."""
    refused = _unprotected(path)
    if refused is not None:
        logger.warning("%s", refused)
        return None, refused
    try:
        return paramiko.PKey.from_path(path), None
    except FileNotFoundError:
        return None, None
    except paramiko.PasswordRequiredException:
        logger.debug("skipping %s: it needs a passphrase", path)
        return None, f"{path} needs a passphrase"
    except (paramiko.SSHException, UnknownKeyType, OSError, ValueError) as exc:
        logger.debug("skipping %s: %s", path, exc)
        return None, f"{path}: {exc}"


def _authenticate(transport: paramiko.Transport, settings: ConnectSettings) -> None:
    tried: List[str] = []
    ignored: List[str] = []
    candidates: List["tuple[str, paramiko.PKey]"] = []
    file_keys = []
    for path in settings.identity_files:
        key, why = _load_key(path)
        if key is not None:
            file_keys.append((path, key))
        elif why is not None:
            ignored.append(why)
    if settings.use_agent and os.environ.get("SSH_AUTH_SOCK"):
        try:
            agent_keys = paramiko.Agent().get_keys()
        except paramiko.SSHException as exc:
            logger.debug("%s: ssh-agent unusable: %s", settings.alias, exc)
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
        if transport.is_authenticated():
            return
    what = "; ".join(tried) if tried else "no usable key (none found, or all need a passphrase)"
    skipped = f"; ignored {'; '.join(ignored)}" if ignored else ""
    raise connect_error(Failure.AUTH_REFUSED, settings.alias, who=settings.describe(),
                        reason=f"tried {what}{skipped}")


def connect(settings: ConnectSettings, *, timeout: Optional[float] = None,
            _depth: int = 0) -> paramiko.Transport:
    """Return an authenticated, host-key-checked paramiko Transport.

    Raises:
        ConnectError: refused, unreachable, unknown name, SSH negotiation failed.
        ConnectTimeout: nothing answered within the connect timeout.
        HostKeyError: the host key is unknown (and may not be added), changed or
            revoked.
        AuthenticationError: no offered key was accepted.
    """
    timeout = timeout or settings.connect_timeout or DEFAULT_CONNECT_TIMEOUT
    sock = _channel_socket(settings, timeout, _depth)
    handshake = f"SSH handshake with {settings.describe()}"
    try:
        with _step(settings, timeout, handshake):
            transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE)
    except BaseException:
        sock.close()
        raise
    try:
        transport.set_log_channel(_paramiko_log())
        transport.banner_timeout = timeout
        transport.handshake_timeout = timeout
        transport.auth_timeout = timeout
        known = _known_hosts.lookup(_known_hosts_files(settings), settings.known_hosts_name)
        _preferred_key_types(transport, known)
        _prefer_fast_ciphers(transport, settings)
        if settings.compression:
            transport.use_compression(True)
        with _step(settings, timeout, handshake):
            # A little longer than the banner timeout, so that a silent server is
            # reported by paramiko's banner check rather than a bare wait.
            transport.start_client(timeout=timeout + 1)
            if not transport.is_active():
                raise transport.get_exception() or paramiko.SSHException("negotiation failed")
        _check_host_key(transport, settings, known)
        with _step(settings, timeout, f"authentication as {settings.user or 'the default user'}"):
            _authenticate(transport, settings)
        if settings.server_alive_interval > 0:
            transport.set_keepalive(settings.server_alive_interval)
        return transport
    except BaseException:
        transport.close()
        raise


def open_command(transport: paramiko.Transport, command: str, settings: ConnectSettings,
                 timeout: Optional[float] = None) -> paramiko.Channel:
    """A session channel on ``transport`` running ``command``.

    Raises:
        ConnectError: (or a subclass, by :data:`TRANSPORT_ERRORS`) the server
            refused the session or the command, or the connection failed.
    """
    timeout = timeout or settings.connect_timeout or DEFAULT_CONNECT_TIMEOUT
    with _step(settings, timeout, f"starting the remote command on {settings.describe()}"):
        channel = transport.open_session(timeout=timeout)
        channel.exec_command(command)
    return channel
