"""One table translates every paramiko and socket error (sshpipe.transport), as
httpx maps httpcore's: each paramiko exception class has a row, the result is a
typed ConnectError naming the host, and the original error is its cause."""
from __future__ import annotations

import ast
import errno
import importlib
import inspect
import pkgutil
import socket
from pathlib import Path

import paramiko
import pytest

from sshpipe.errors import AuthenticationError, ConnectError, ConnectTimeout, HostKeyError
from sshpipe.transport import TRANSPORT_ERRORS, ConnectSettings, transport_error

SETTINGS = ConnectSettings(alias="db1", hostname="db1.example", port=2222, user="deploy")


def paramiko_exception_classes():
    """Every exception class paramiko defines (its Windows-only modules aside)."""
    found = set()
    for info in pkgutil.walk_packages(paramiko.__path__, "paramiko."):
        try:
            module = importlib.import_module(info.name)
        except (ImportError, AttributeError):  # _winapi, win_pageant: Windows only
            continue
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__.startswith("paramiko")):
                found.add(obj)
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def row_for(exc):
    return next((row for row in TRANSPORT_ERRORS if isinstance(exc, row.raised)
                 and (row.when is None or row.when(exc))), None)


def test_paramiko_defines_the_classes_we_expect():
    """The enumeration finds paramiko's exceptions (guards against finding none)."""
    names = {cls.__name__ for cls in paramiko_exception_classes()}
    assert {"SSHException", "AuthenticationException", "BadHostKeyException",
            "ChannelException", "PipeTimeout", "InvalidHostKey", "UnknownKeyType"} <= names
    assert len(names) >= 20


@pytest.mark.parametrize("cls", paramiko_exception_classes(), ids=lambda c: c.__name__)
def test_every_paramiko_exception_has_a_row(cls):
    """Each paramiko exception (made without its arguments, as any instance may
    lack them) maps to a ConnectError subclass with .host and the cause chained."""
    exc = cls.__new__(cls)
    assert row_for(exc) is not None, f"no row in TRANSPORT_ERRORS for {cls.__name__}"
    error = transport_error(exc, SETTINGS, 5.0, "SSH handshake with db1")
    assert isinstance(error, ConnectError)
    assert error.host == "db1" and error.__cause__ is exc
    assert str(error).startswith("db1: ")


@pytest.mark.parametrize("exc,expected,words", [
    (paramiko.BadHostKeyException.__new__(paramiko.BadHostKeyException), HostKeyError,
     "host key"),
    (paramiko.PasswordRequiredException("encrypted"), AuthenticationError, "passphrase"),
    (paramiko.BadAuthenticationType("no", ["password"]), AuthenticationError, "failed"),
    (paramiko.AuthenticationException("denied"), AuthenticationError, "denied"),
    (socket.timeout("timed out"), ConnectTimeout, "timed out after 5 s"),
    (TimeoutError(), ConnectTimeout, "timed out after 5 s"),
    (OSError(errno.ETIMEDOUT, "Connection timed out"), ConnectTimeout, "timed out"),
    (socket.gaierror(-2, "Name or service not known"), ConnectError,
     "unknown host name 'db1.example'"),
    (ConnectionRefusedError(111, "refused"), ConnectError, "refused"),
    (OSError(errno.EHOSTUNREACH, "No route to host"), ConnectError, "No route to host"),
    (EOFError(), ConnectError, "closed the connection"),
    (paramiko.ChannelException(1, "Administratively prohibited"), ConnectError,
     "refused the channel"),
    (paramiko.ProxyCommandFailure("nc -q", "exit 1"), ConnectError, "ProxyCommand"),
    (paramiko.IncompatiblePeer("no matching cipher"), ConnectError, "in common"),
    (paramiko.SSHException("Error reading SSH protocol banner"), ConnectError, "banner"),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None)
def test_specific_rows(exc, expected, words):
    """The rows pick the most specific class and say what happened."""
    error = transport_error(exc, SETTINGS, 5.0, "SSH handshake with db1")
    assert type(error) is expected, (type(error), str(error))
    assert words in str(error)


def test_a_banner_timeout_is_a_connect_timeout():
    """paramiko's 'Error reading SSH protocol banner' raised while handling a socket
    timeout is a ConnectTimeout, with paramiko's words in the message."""
    try:
        try:
            raise socket.timeout("timed out")
        except socket.timeout:
            # raised as paramiko does, the timeout as its context
            raise paramiko.SSHException("Error reading SSH protocol banner")  # noqa: B904
    except paramiko.SSHException as exc:
        error = transport_error(exc, SETTINGS, 5.0, "SSH handshake with db1")
    assert isinstance(error, ConnectTimeout) and "banner" in str(error)


def test_something_else_is_still_typed_and_chained():
    """An error no row knows (a bug below) still leaves as a ConnectError with cause."""
    exc = ZeroDivisionError("oops")
    error = transport_error(exc, SETTINGS, 5.0, "authentication as deploy")
    assert type(error) is ConnectError and error.__cause__ is exc and "oops" in str(error)


def test_only_the_transport_module_translates_paramiko_errors():
    """No module but sshpipe/transport.py (and the known_hosts reader it uses)
    catches paramiko's exceptions and turns them into sshpipe errors; the session
    code gets them already translated."""
    root = Path(__file__).resolve().parent.parent / "sshpipe"
    allowed = {"transport.py", "_known_hosts.py", "_portforward.py"}
    offenders = []
    for path in root.rglob("*.py"):
        if path.name in allowed:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                if "paramiko" in ast.unparse(node.type):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
