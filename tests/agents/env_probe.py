"""Handler shipped with ``modules=["env_probe"]``: reports the environment it runs
in, as README.rst's "The handler's environment" describes it."""
import logging
import os
import signal
import subprocess
import sys
import threading

from sshpipe import SSHPipeHandler


def _fd_target(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError as exc:
        return f"unknown: {exc}"


class EnvProbe(SSHPipeHandler):
    def handle(self, received):
        if received == "exit":
            sys.exit(9)
        if received == "print":
            print("printed by the handler")
            os.write(2, b"written to fd 2\n")
            return
        umask = os.umask(0)
        os.umask(umask)
        child = subprocess.Popen(["sleep", "300"])
        import sshpipe

        self.reply({
            "umask": umask, "cwd": os.getcwd(), "environ": dict(os.environ),
            "executable": sys.executable, "path": sys.path[:2], "argv": sys.argv,
            "sshpipe_file": sshpipe.__file__,
            "fds": {fd: _fd_target(fd) for fd in (0, 1, 2)},
            "ttys": [os.isatty(fd) for fd in (0, 1, 2)], "stdin": sys.stdin.read(),
            "sigint": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
            "sigterm": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
            "sigpipe": signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN,
            "main_thread": threading.current_thread() is threading.main_thread(),
            "root_level": logging.getLogger().level, "child": child.pid,
        })
