"""The agent zygote: a warm process per remote key that forks fresh agents.

Shipped in the zero-install bundle (stdlib only, Python 3.9+). A cold loader
that was asked for a warm start but found no zygote (the request line carries
``"zygote": {"idle": S, "tie": bool}``) starts one with :func:`spawn` before it
runs its own agent: a fork of the loader itself, after the bundle was verified,
so the zygote holds the verified bundle in memory and its importer, and then
imports the agent runtime and dill once. It then only listens:

- on ``<socket dir>/<prefix>-<bundle>.sock`` (see :mod:`sshpipe._zygote_client`
  for the directory, which must be the user's own, mode 0700, with safe
  parents), under an flock on the matching ``.lock`` file, so one zygote serves
  a key; a new one first stops the zygotes of the same key prefix serving
  another bundle (the bundle changed);
- with no thread and no open connection when it forks (it serves one request
  at a time and holds no file of a session after handing it on);
- until it was idle (no agent forked) for ``idle`` seconds, until the sshd
  process of the connection that started it ends when ``tie`` (the OpenSSH
  transport: the connection is the caller's shared master), or until a client
  asks it to stop.

A request is authenticated twice: the peer's uid (SO_PEERCRED) is this user's,
and it came through the private directory. Its key material (interpreter, cwd,
umask, environment less per-session variables, bundle hash) must equal the
zygote's own, else it is refused and the client starts cold.

The forked agent is isolated as a cold one is: a new session (setsid), the
session's stdin/stdout/stderr as fds 0-2, the session's working directory,
environment and umask, its process name back, and then the rest of the
loader's protocol (status line, launch line) and the same supervisor
(:mod:`sshpipe._supervisor`: subreaper, process group, cleanup, 128+N
statuses). The supervisor's status goes to the client, which exits with it;
should the client die, the agent is killed (as PDEATHSIG does in a cold start).
"""
from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from sshpipe import _supervisor
from sshpipe import _zygote_client as client

__all__ = ["NAME", "spawn", "stop_zygotes"]

NAME = "sshpipe-zygote"  # its /proc/PID/comm
_FDS = 4  # stdin, stdout, stderr, cwd
_REQUEST_TIMEOUT = 2.0  # a connected client sends its request at once
_TICK = 1.0  # at most this long between checks of the owner and the socket


if TYPE_CHECKING:  # pragma: no cover
    from sshpipe.handler import SSHPipeHandler


def _handler_base() -> type[SSHPipeHandler]:
    from sshpipe.handler import SSHPipeHandler

    return SSHPipeHandler


def supported() -> bool:
    return (sys.platform.startswith("linux") and hasattr(socket, "SO_PEERCRED")
            and hasattr(socket, "send_fds"))


def spawn(request: Dict[str, Any], digest: str, cache: str, loader: Dict[str, Any],
          umask: int) -> None:
    """Start a zygote for this session's key, detached (from the cold loader;
    returns at once in the loader). ``loader`` holds the loader's say/line/rd."""
    options = request.get("zygote")
    if not isinstance(options, dict) or not supported():
        return
    owner = os.getppid() if options.get("tie") else None  # the session's sshd
    idle = float(options.get("idle", 30.0))
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        _Zygote(digest, cache, loader, umask, idle, owner).serve()
    except BaseException:
        if _forked_agent:
            # A forked agent's end (SystemExit, or an error with its traceback)
            # reaches the loader's top level, so the interpreter ends it as it
            # ends a cold agent: atexit handlers, non-daemon threads, flushes.
            raise
    os._exit(0)


# True in a process forked for a session (the agent's supervisor and the agent):
# what the zygote would clean up at its end is not theirs.
_forked_agent = False


def _proc_name(name: str) -> None:
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name)
    except OSError:
        pass


def _own_name() -> str:
    try:
        with open("/proc/self/comm") as comm:
            return comm.read().strip()
    except OSError:
        return "python3"


class _Zygote:
    def __init__(self, digest: str, cache: str, loader: Dict[str, Any], umask: int,
                 idle: float, owner: Optional[int]) -> None:
        self.digest = digest
        self.cache = cache
        self.loader = loader
        self.umask = umask
        self.idle = idle
        self.owner = owner
        self.uid = os.getuid()
        self.name = _own_name()
        self.listener: Optional[socket.socket] = None
        self.lock_fd = -1
        self.owner_fd = -1
        self.path = b""
        self.lock_path = b""
        self.children = 0

    # -- set up -----------------------------------------------------------
    def serve(self) -> None:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        _close_from(3)
        _proc_name(NAME)
        owner_start = _start_time(self.owner) if self.owner else None
        if self.owner:
            try:
                self.owner_fd = os.pidfd_open(self.owner)
            except (AttributeError, OSError):
                self.owner_fd = -1
        if self.owner and (owner_start is None or os.getppid() == self.owner):
            return
        # Warm up what every agent needs: the runtime, the serializer.
        from sshpipe import agent, handler, protocol, serial  # noqa: F401
        try:
            import dill  # noqa: F401
        except ImportError:
            pass
        _supervisor._libc()
        cwd = os.getcwd().encode()
        self.material = client.material(self.uid, (sys.executable or "").encode(), cwd,
                                        self.umask, os.environb)
        os.chdir("/")  # hold no session directory busy; agents get theirs back
        directory = client.socket_dir(self.uid, os.environb)
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        if not client.safe_dir(directory, self.uid):
            return
        prefix, name = client.names(self.material, self.digest.encode())
        self.path = directory + b"/" + name
        self.lock_path = self.path[:-5] + b".lock"
        if not self._lock():
            return
        self._stop_siblings(directory, prefix, name)
        try:
            os.unlink(self.path)  # a dead zygote's; the lock says none lives
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self.listener.listen(128)
        self.inode = os.stat(self.path).st_ino
        try:
            self._loop(owner_start)
        finally:
            self._retire()

    def _lock(self) -> bool:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(self.lock_path).st_ino:
                raise OSError("the lock file was replaced")
        except OSError:
            os.close(fd)
            return False
        self.lock_fd = fd
        return True

    def _sweep(self, directory: bytes) -> None:
        """Remove what dead zygotes (SIGKILLed, say) left: a lock nobody holds
        means its socket answers no one."""
        for other in os.listdir(directory):
            if not other.endswith(b".lock") or directory + b"/" + other == self.lock_path:
                continue
            lock = directory + b"/" + other
            try:
                fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                    for stale in (lock[:-5] + b".sock", lock):
                        try:
                            os.unlink(stale)
                        except FileNotFoundError:
                            pass
            except OSError:
                pass  # held: that zygote lives
            finally:
                os.close(fd)

    def _stop_siblings(self, directory: bytes, prefix: bytes, name: bytes) -> None:
        """The bundle changed: zygotes of the same key with another bundle end."""
        self._sweep(directory)
        for other in os.listdir(directory):
            if other.startswith(prefix + b"-") and other.endswith(b".sock") and other != name:
                try:
                    sock = client._connect(directory + b"/" + other, self.uid)
                    sock.sendall(client._message(b"stop", []))
                    client._recv_line(sock)
                    sock.close()
                except OSError:
                    pass

    def _retire(self) -> None:
        """Stop listening; remove the socket (if still ours) and the lock file."""
        if _forked_agent:
            return
        if self.listener is not None:
            try:
                if os.stat(self.path).st_ino == self.inode:
                    os.unlink(self.path)
            except OSError:
                pass
            self.listener.close()
        if self.lock_fd >= 0:
            try:
                os.unlink(self.lock_path)
            except OSError:
                pass
            os.close(self.lock_fd)

    # -- the loop ---------------------------------------------------------
    def _loop(self, owner_start: Optional[bytes]) -> None:
        listener = self.listener
        if listener is None:  # serve() made it
            return
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        if self.owner_fd >= 0:
            poller.register(self.owner_fd, select.POLLIN)
        last_used = time.monotonic()
        while True:
            self._reap()
            left = last_used + self.idle - time.monotonic()
            if left <= 0:
                return
            events = poller.poll(min(left, _TICK) * 1000)
            if self.owner and (self.owner_fd >= 0 and any(
                    fd == self.owner_fd for fd, _ in events) or _start_time(
                    self.owner) != owner_start):
                return  # the connection (the caller's master) ended
            try:
                if os.stat(self.path).st_ino != self.inode:
                    return  # removed or replaced: unreachable
            except OSError:
                return
            if not events or all(fd == self.owner_fd for fd, _ in events):
                continue
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                verdict = self._serve_one(conn)
            finally:
                conn.close()
            if verdict == "stop":
                return
            if verdict == "spawned":
                last_used = time.monotonic()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children = 0
                return
            if pid == 0:
                return
            self.children -= 1

    def _serve_one(self, conn: socket.socket) -> str:
        fds: List[int] = []
        try:
            conn.settimeout(_REQUEST_TIMEOUT)
            cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            if struct.unpack("3i", cred)[1] != self.uid:
                return "refused"
            fields, fds = _receive(conn)
            if fields[:1] != [client.MAGIC]:
                conn.sendall(b"NO not a warm-start request\n")
                return "refused"
            if fields[1] == b"stop":
                if self.listener is not None:  # stop listening before the client hears back
                    self.listener.close()
                    self.listener = None
                try:
                    if os.stat(self.path).st_ino == self.inode:
                        os.unlink(self.path)
                except OSError:
                    pass
                return "stop"
            reason = self._check(fields, fds)
            if reason:
                conn.sendall(b"NO " + reason.encode() + b"\n")
                return "refused"
            try:
                pid = os.fork()
            except OSError as exc:
                conn.sendall(b"NO fork failed: " + str(exc).encode() + b"\n")
                return "refused"
            if pid == 0:
                global _forked_agent
                _forked_agent = True
                self._become_agent(conn, fields, fds)  # returns only by raising
            self.children += 1
            return "spawned"
        except (OSError, ValueError, IndexError):
            return "refused"
        finally:
            for fd in fds:
                os.close(fd)

    def _check(self, fields: List[bytes], fds: List[int]) -> str:
        """Why this zygote cannot serve the request ("" if it can)."""
        if fields[1] != b"spawn" or len(fds) != _FDS:
            return "malformed request"
        umask, cwd, executable, line = fields[2], fields[3], fields[4], fields[5]
        environ = dict(item.split(b"=", 1) for item in fields[6:] if b"=" in item)
        if client.request_hash(line) != self.digest.encode():
            return "another bundle"
        theirs = client.material(self.uid, executable, cwd, int(umask, 8), environ)
        if theirs != self.material:
            return "another interpreter, directory, umask or environment"
        return ""

    # -- in the forked agent ---------------------------------------------
    def _become_agent(self, conn: socket.socket, fields: List[bytes], fds: List[int]) -> None:
        """Become the session's supervisor; its agent leaves by raising (see spawn)."""
        supervisor = os.getpid()
        try:
            self._agent(conn, fields, fds)
        except BaseException as exc:
            if os.getpid() != supervisor:
                # The agent's own end: only SystemExit travels up (nothing on the
                # way catches it), as an error at a cold agent's top level would.
                if isinstance(exc, SystemExit):
                    raise
                import traceback

                traceback.print_exc()
                raise SystemExit(1) from None
            try:
                os.write(2, ("sshpipe: warm agent start failed: %r\n" % (exc,)).encode())
            except OSError:
                pass
        os._exit(1)

    def _agent(self, conn: socket.socket, fields: List[bytes], fds: List[int]) -> None:
        import json

        os.setsid()
        if self.listener is not None:
            self.listener.close()
        for fd in (self.lock_fd, self.owner_fd):
            if fd >= 0:
                os.close(fd)
        _proc_name(self.name)
        conn.settimeout(_REQUEST_TIMEOUT)
        conn.sendall(b"OK %d\n" % os.getpid())
        if _recv_line(conn) != b"GO\n":
            os._exit(0)  # the client gave up on us and went cold: touch nothing
        stdin, stdout, stderr, here = fds
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        os.fchdir(here)
        for fd in fds:
            os.close(fd)
        del fds[:]
        environ = dict(item.split(b"=", 1) for item in fields[6:] if b"=" in item)
        os.environb.clear()
        os.environb.update(environ)
        login_umask = int(fields[2], 8)
        os.umask(0o077)
        request = json.loads(fields[5].decode("utf-8"))
        say, line, rd = self.loader["say"], self.loader["line"], self.loader["rd"]
        say({"need": False, "python": "%d.%d.%d" % sys.version_info[:3],
             "cache": self.cache, "start": "warm"})
        del request
        launch = line()
        body = rd(launch["size"])
        conn.settimeout(None)
        _supervisor.run(launch, body, login_umask, link=conn)


def _receive(conn: socket.socket) -> Tuple[List[bytes], List[int]]:
    """One request: (fields, fds), the fds from the first chunk's ancillary data."""
    msg, ancdata, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(_FDS * 4))
    fds: List[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            count = len(data) // 4
            fds += list(struct.unpack("%di" % count, data[:count * 4]))
    try:
        return _fields(conn, msg), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _fields(conn: socket.socket, msg: bytes) -> List[bytes]:
    if len(msg) < 4:
        raise ValueError("short request")
    size = struct.unpack(">I", msg[:4])[0]
    if size > client.MESSAGE_MAX:
        raise ValueError("request too large")
    data = msg[4:]
    while len(data) < size:
        chunk = conn.recv(min(size - len(data), 65536))
        if not chunk:
            raise ValueError("short request")
        data += chunk
    return data.split(b"\0")


def _recv_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < 64:
        chunk = conn.recv(64)
        if not chunk:
            break
        data += chunk
    return data


def _close_from(low: int) -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(low, 256))
    for fd in fds:
        if fd >= low:
            try:
                os.close(fd)
            except OSError:
                pass


def _start_time(pid: Optional[int]) -> Optional[bytes]:
    stat = _supervisor._stat(pid) if pid else None
    return None if stat is None or len(stat) < 20 else stat[19]


# -- on the caller's side --------------------------------------------------
class _StopZygotes(_handler_base()):  # type: ignore[misc]  # handler imported on use
    """Remote side of :func:`stop_zygotes`: stops this user's zygotes, replies
    how many."""

    def handle(self, received: Any) -> None:
        self.reply(client.stop_all())


def stop_zygotes(host: str, **pipe_options: Any) -> int:
    """Stop every zygote of the login user on ``host`` (those of the remote
    environment's socket directory); return how many were stopped. Agents they
    forked go on. ``pipe_options`` are SSHPipe's (``config``, ``python`` ...).

    A zygote also ends by itself when idle past its bound, and with the master
    connection that started it (OpenSSH transport)."""
    from sshpipe.pipe import SSHPipe

    pipe = SSHPipe(host, handler=_StopZygotes, warm=False, **pipe_options)
    pipe.start()
    try:
        pipe.send("stop")
        return int(pipe.recv(timeout=30.0))
    finally:
        pipe.close()
