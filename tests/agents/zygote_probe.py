"""Handler for the warm-start tests (shipped with modules=["zygote_probe"]): reports
what isolates an agent, and changes its own state on request."""
import os
import subprocess
import sys
import time

from sshpipe import SSHPipeHandler

STATE = []  # a module global: another agent must never see what this one appends
IMPORTED_BY = os.getpid()  # the process that imported this module: the agent, never the zygote


class Probe(SSHPipeHandler):
    def handle(self, received):
        op = received[0] if isinstance(received, tuple) else received
        if op == "info":
            umask = os.umask(0)
            os.umask(umask)
            self.reply({
                "pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
                "ppid": os.getppid(), "cwd": os.getcwd(), "umask": umask,
                "env": os.environ.get("ZYGOTE_PROBE"), "state": list(STATE),
                "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
                "argv": list(sys.argv), "user_module_in_sys": "zygote_probe" in sys.modules,
                "comm": open("/proc/self/comm").read().strip(),
                "ssh_connection": os.environ.get("SSH_CONNECTION"),
                "imported_by": IMPORTED_BY, "socket_dir": _socket_dir(),
            })
        elif op == "mutate":
            STATE.append(os.getpid())
            os.environ["ZYGOTE_PROBE"] = "changed"
            os.chdir("/")
            self.opened = open(os.devnull)
            self.reply("mutated")
        elif op == "exit":
            sys.exit(received[1])
        elif op == "child":
            # a child that would outlive the agent if nobody ended it
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
            self.reply(child.pid)
        elif op == "sleep":
            time.sleep(received[1])
            self.reply("slept")


def _socket_dir():
    from sshpipe import _zygote_client

    return _zygote_client.socket_dir(os.getuid(), os.environb).decode()
