"""Local ports relayed over SSH to addresses seen from a remote host (``ssh -L``).

::

    caller process
    +-----------------------------------------------------------+        remote host
    | acceptor thread: listening sockets on 127.0.0.1           |  SSH   +-----------+
    |   accept -> transport.open_channel("direct-tcpip", dest) | =====> | sshd      |
    | relay thread per connection: socket <-> channel, both ways|        |  connects |
    +-----------------------------------------------------------+        |  to dest  |
                                                                         +-----------+

One authenticated, host-key-checked connection (:func:`sshpipe.transport.connect`,
so the ssh config applies as for pipes) carries every forwarded connection.
Ownership: :class:`PortForwarder` creates the transport, the listening sockets,
the wake-up pipe and every thread, and :meth:`PortForwarder.close` ends them all;
each relay thread owns its socket and channel and closes both when either side
ends.
"""
from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
from typing import Any, Dict, List, Optional, Set, Tuple, Union

import paramiko

from sshpipe.errors import ConnectError
from sshpipe.transport import connect, settings_for

__all__ = ["PortForwarder"]

logger = logging.getLogger(__name__)

# Connections relayed at once; more are refused (closed at once), so a runaway
# client cannot make the caller start threads without bound.
MAX_CONNECTIONS = 256
# How long opening the remote end of one connection may take.
CHANNEL_TIMEOUT = 15.0
# Bytes moved per read, either way.
_CHUNK = 256 * 1024
# One side of a relayed connection: the local socket or the SSH channel.
_End = Union[socket.socket, paramiko.Channel]


class PortForwarder:
    """Listening ports on this machine whose connections are relayed through
    one SSH connection to ``host`` and opened there to a given address.

    Args:
        host: an ssh config alias or address, resolved as :class:`~sshpipe.SSHPipe`
            resolves it (``config``, ``user``, ``port``, ``identity_file``,
            ``connect_timeout`` override the config as they do there).

    Raises:
        ConnectError: (and its subclasses) when the SSH connection fails.
    """

    def __init__(self, host: str, config: Optional[str] = None, *, user: Optional[str] = None,
                 port: Optional[int] = None, identity_file: Optional[str] = None,
                 connect_timeout: Optional[float] = None):
        self.host = host
        settings = settings_for(host, config, user=user, port=port, identity_file=identity_file,
                                connect_timeout=connect_timeout)
        self._transport = connect(settings)
        self._lock = threading.Lock()
        self._listeners: Dict[int, Tuple[socket.socket, Tuple[str, int]]] = {}  # fd -> ...
        self._relays: Set[threading.Thread] = set()
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"sshpipe-forward-{host}")
        self._acceptor.start()

    def forward(self, remote_host: str, remote_port: int, local_host: str = "127.0.0.1",
                local_port: int = 0) -> int:
        """Listen on ``local_host:local_port`` (0: any free port) and relay each
        connection to ``remote_host:remote_port`` as the remote host sees it.

        Returns:
            The local port.
        """
        listener = socket.socket(socket.AF_INET6 if ":" in local_host else socket.AF_INET)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((local_host, local_port))
            listener.listen(64)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        with self._lock:
            if self._closed:
                listener.close()
                raise ConnectError(f"{self.host}: the port forwarder is closed", self.host)
            self._listeners[listener.fileno()] = (listener, (remote_host, int(remote_port)))
            self._selector.register(listener, selectors.EVENT_READ)
        os.write(self._wake_w, b"x")
        port: int = listener.getsockname()[1]
        return port

    def _accept_loop(self) -> None:
        """Acceptor thread: new connections on every listening socket."""
        while True:
            for key, _ in self._selector.select():
                if key.fd == self._wake_r:
                    os.read(self._wake_r, 512)
                    with self._lock:
                        if self._closed:
                            return
                    continue
                with self._lock:
                    entry = self._listeners.get(key.fd)
                if entry is None:
                    continue
                listener, destination = entry
                try:
                    conn, peer = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    continue
                self._start_relay(conn, peer, destination)

    def _start_relay(self, conn: socket.socket, peer: Tuple[Any, ...],
                     destination: Tuple[str, int]) -> None:
        with self._lock:
            self._relays = {thread for thread in self._relays if thread.is_alive()}
            if self._closed or len(self._relays) >= MAX_CONNECTIONS:
                conn.close()
                logger.warning("%s: refused a forwarded connection to %s:%d (%s)", self.host,
                               destination[0], destination[1],
                               "closed" if self._closed else f"{MAX_CONNECTIONS} open")
                return
            relay = threading.Thread(target=self._relay, args=(conn, peer, destination),
                                     daemon=True, name=f"sshpipe-relay-{self.host}")
            self._relays.add(relay)
        relay.start()

    def _relay(self, conn: socket.socket, peer: Tuple[Any, ...],
               destination: Tuple[str, int]) -> None:
        """Relay thread: one connection, both ways, until either side ends."""
        try:
            channel = self._transport.open_channel("direct-tcpip", destination, peer[:2],
                                                   timeout=CHANNEL_TIMEOUT)
        except Exception as exc:  # paramiko raises several kinds; the client sees a close
            logger.warning("%s: cannot open %s:%d there: %s", self.host, destination[0],
                           destination[1], exc)
            conn.close()
            return
        conn.setblocking(True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        selector = selectors.DefaultSelector()
        # each end is registered with (itself, the other end)
        selector.register(conn, selectors.EVENT_READ, (conn, channel))
        selector.register(channel, selectors.EVENT_READ, (channel, conn))
        try:
            while True:
                for key, _ in selector.select():
                    ends: Tuple[_End, _End] = key.data
                    data = ends[0].recv(_CHUNK)
                    if not data:
                        return
                    ends[1].sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            return
        finally:
            selector.close()
            channel.close()
            conn.close()

    def close(self) -> None:
        """Stop listening, end every relayed connection and the SSH connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            listeners = [listener for listener, _ in self._listeners.values()]
            self._listeners.clear()
            relays = list(self._relays)
        os.write(self._wake_w, b"x")
        self._acceptor.join(5.0)
        for listener in listeners:
            listener.close()
        self._transport.close()  # ends every channel, so the relays return
        for relay in relays:
            relay.join(5.0)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def ports(self) -> List[int]:
        """The local ports being forwarded."""
        with self._lock:
            return [listener.getsockname()[1] for listener, _ in self._listeners.values()]

    def __enter__(self) -> "PortForwarder":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
