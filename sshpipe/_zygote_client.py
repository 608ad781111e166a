"""The warm-start client: the first program of a warm session's remote command.

Its source is the remote command (``python -S -c SOURCE PYTHON LOADER``), so it
is kept small and imports only built-in modules (``posix``, ``_socket``,
``_signal``, ``_struct``, a built-in sha256): it starts in the few milliseconds
of an interpreter without ``site``. It reads the loader's request line (the
caller's first line), finds the zygote of its key (see :func:`names`) in the
user's private socket directory and hands it the session's stdin, stdout and
stderr and the working directory (SCM_RIGHTS), with its environment and umask.
The zygote (:mod:`sshpipe._zygote`) forks a fresh agent that takes the session
over; this process then only relays: SIGTERM and SIGHUP to the agent's
supervisor, and the supervisor's exit status as its own, so that the session
ends as a cold one does.

Whenever no zygote answers, or one refuses, nothing of the session has been
read but the request line: the client execs the cold loader
(:data:`sshpipe.bootstrap.LOADER_SOURCE`) in its place with that line and the
reason, and the loader starts a zygote for the next session.

Also imported (by the zygote) for :func:`socket_dir`, :func:`safe_dir` and
:func:`names`, so that both sides compute the same place and key.
"""
import _signal
import _socket
import _struct
import posix
import sys

MAGIC = b"sshpipe-warm-1"
# Environment variables that differ from one session to the next and do not
# shape the interpreter: not part of the key (the agent still gets them).
SESSION_VARS = (b"SSH_CLIENT", b"SSH_CONNECTION", b"SSH_TTY", b"SSH_AUTH_SOCK",
                b"SSH_ORIGINAL_COMMAND", b"_", b"SHLVL", b"PWD", b"OLDPWD", b"XDG_SESSION_ID")
LINE_MAX = 65536  # the request line's bound (the loader's status line has the same)
MESSAGE_MAX = 1 << 20  # a request to the zygote, environment included
TIMEOUT = 5.0  # seconds the zygote gets to connect, answer, and hand over


def _sha256(data):
    try:
        from _sha256 import sha256
    except ImportError:  # 3.12+
        try:
            from _sha2 import sha256
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()


def _isdir(mode):
    return mode & 0o170000 == 0o040000


def socket_dir(uid, environ):
    """``$XDG_RUNTIME_DIR/sshpipe-warm`` when that runtime directory is the
    user's own, else ``$TMPDIR`` (or /tmp) ``/sshpipe-warm-UID`` (bytes)."""
    runtime = environ.get(b"XDG_RUNTIME_DIR", b"")
    if runtime.startswith(b"/"):
        try:
            st = posix.lstat(runtime)
            if _isdir(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077:
                return runtime.rstrip(b"/") + b"/sshpipe-warm"
        except OSError:
            pass
    tmp = environ.get(b"TMPDIR", b"")
    if not tmp.startswith(b"/"):
        tmp = b"/tmp"
    return tmp.rstrip(b"/") + b"/sshpipe-warm-" + str(uid).encode()


def safe_dir(path, uid):
    """True if ``path`` is a directory of the user's with mode 0700 (no symlink),
    and every parent is a directory of root or the user that nobody else can
    write, but for a root-owned sticky one (/tmp). As OpenSSH's StrictModes: a
    socket in a directory someone else controls would receive the session."""
    try:
        st = posix.lstat(path)
        if not _isdir(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
            return False
        while True:
            path = path.rsplit(b"/", 1)[0] or b"/"
            st = posix.lstat(path)
            if (not _isdir(st.st_mode) or st.st_uid not in (0, uid)
                    or st.st_mode & 0o022 and not (st.st_uid == 0 and st.st_mode & 0o1000)):
                return False
            if path == b"/":
                return True
    except OSError:
        return False


def material(uid, executable, cwd, umask, environ):
    """What a zygote must share with a session to serve it: user, interpreter,
    working directory, umask and environment (less SESSION_VARS), as bytes."""
    keyed = sorted(k + b"=" + v for k, v in environ.items() if k not in SESSION_VARS)
    return b"\0".join([MAGIC, str(uid).encode(), executable, cwd,
                       ("%o" % umask).encode()] + keyed)


def request_hash(line):
    """The bundle hash in the loader's request line (``{"hash": "HEX", ...}``)."""
    start = line.find(b'"hash": "')
    if start < 0:
        return None
    start += 9
    end = line.find(b'"', start)
    digest = line[start:end]
    if end < 0 or not digest or not all(c in b"0123456789abcdef" for c in digest):
        return None
    return digest


def names(key_material, digest):
    """(prefix, socket file name): one zygote per material and bundle; the prefix
    is shared by the zygotes of other bundles, which a new one stops."""
    prefix = _sha256(key_material)[:20].encode()
    return prefix, prefix + b"-" + digest[:20] + b".sock"


def _read_line(fd):
    data = b""
    while not data.endswith(b"\n"):
        if len(data) >= LINE_MAX:
            raise ValueError("request line too long")
        chunk = posix.read(fd, 1)
        if not chunk:
            posix._exit(1)  # the caller went away before asking for anything
        data += chunk
    return data


def _recv_line(sock):
    data = b""
    while not data.endswith(b"\n") and len(data) < 4096:
        chunk = sock.recv(4096 - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def _execvp(word, argv):
    """exec ``word`` looked up on PATH as the shell does (os.execvp without os)."""
    if b"/" in word:
        posix.execv(word, argv)
    error = None
    for directory in posix.environ.get(b"PATH", b"/usr/bin:/bin").split(b":"):
        try:
            posix.execv((directory or b".") + b"/" + word, argv)
        except OSError as exc:
            error = exc
    raise error or OSError(2, "not found")


def _connect(path, uid):
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(path)
        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if _struct.unpack("3i", cred)[1] != uid:
            raise OSError("the socket's owner is another user")
    except OSError:
        sock.close()
        raise
    return sock


def _message(op, fields):
    body = b"\0".join([MAGIC, op] + fields)
    return _struct.pack(">I", len(body)) + body


def warm(line):
    """Hand the session to a zygote; returns only if none took it (the reason)."""
    if sys.version_info < (3, 9) or not hasattr(_socket, "SO_PEERCRED"):
        return "not supported here"
    uid = posix.getuid()
    environ = posix.environ
    directory = socket_dir(uid, environ)
    if not safe_dir(directory, uid):
        return "no zygote (no private socket directory)"
    digest = request_hash(line)
    if digest is None:
        return "no bundle hash in the request"
    umask = posix.umask(0o077)
    posix.umask(umask)
    executable = (sys.executable or "").encode()
    cwd = posix.getcwd().encode()
    _, name = names(material(uid, executable, cwd, umask, environ), digest)
    try:
        sock = _connect(directory + b"/" + name, uid)
    except OSError:
        return "no zygote"
    here = posix.open(b".", posix.O_RDONLY)
    try:
        env = [k + b"=" + v for k, v in environ.items()]
        sock.sendmsg([_message(b"spawn", [("%o" % umask).encode(), cwd, executable,
                                          line.rstrip(b"\n")] + env)],
                     [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                       _struct.pack("4i", 0, 1, 2, here))])
        answer = _recv_line(sock)
        if not answer.startswith(b"OK "):
            sock.close()
            return "the zygote refused: " + answer.decode("utf-8", "replace").strip()
        supervisor = int(answer[3:])
        sock.sendall(b"GO\n")  # only now does the agent touch the session
    except (OSError, ValueError) as exc:
        sock.close()
        return "the zygote failed: %r" % (exc,)
    finally:
        posix.close(here)
    _relay(sock, supervisor)


def _relay(sock, supervisor):
    """Pass SIGTERM/SIGHUP on; exit with the supervisor's status (SIGKILL ourselves
    when it died without one: the session then ends by a signal, as a cold one)."""
    null = posix.open(b"/dev/null", posix.O_RDWR)
    posix.dup2(null, 0)
    posix.dup2(null, 1)
    posix.close(null)

    def pass_on(signum, frame):
        try:
            posix.kill(supervisor, signum)
        except OSError:
            pass

    _signal.signal(_signal.SIGTERM, pass_on)
    _signal.signal(_signal.SIGHUP, pass_on)
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    sock.settimeout(None)
    answer = _recv_line(sock)
    if answer.startswith(b"EXIT "):
        posix._exit(int(answer[5:]))
    posix.kill(posix.getpid(), _signal.SIGKILL)


def stop_all():
    """Ask every zygote of this user (in this environment's socket directory) to
    end; return how many did (``python -S -c SOURCE --stop`` prints it)."""
    uid = posix.getuid()
    directory = socket_dir(uid, posix.environ)
    stopped = 0
    if safe_dir(directory, uid):
        for name in posix.listdir(directory):
            if name.endswith(b".sock"):
                try:
                    sock = _connect(directory + b"/" + name, uid)
                    sock.sendall(_message(b"stop", []))
                    _recv_line(sock)  # the zygote closes once it has stopped listening
                    sock.close()
                    stopped += 1
                except OSError:
                    pass
    return stopped


def main():
    if sys.argv[1:2] == ["--stop"]:
        posix.write(1, ("sshpipe: stopped %d zygote(s)\n" % stop_all()).encode())
        return
    python, loader = sys.argv[1].encode(), sys.argv[2]
    line = _read_line(0)
    reason = warm(line)
    _execvp(python, [python, b"-c", loader.encode(), line.rstrip(b"\n"), reason.encode()])


if __name__ == "__main__":
    main()
