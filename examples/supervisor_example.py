"""What the agent starts ends with it: even a process that ignores SIGTERM and a
daemon that double-forked out of the agent's process group.

The "remote host" is a throw-away local sshd, so this script can look the remote
processes up in /proc itself, by pid and start time (pids are reused).
"""
import subprocess
import sys
import time

from sshpipe import SSHPipe, SSHPipeHandler
from sshpipe.testing import LocalSSHServer

# Ignores SIGTERM; with "daemon" it first double-forks and calls setsid(). Prints
# its pid and start time (field 22 of /proc/PID/stat), then sleeps.
STUBBORN = r'''
import os, signal, sys, time
if sys.argv[1] == "daemon":
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open("/proc/self/stat") as f:
    start = f.read().rsplit(")", 1)[1].split()[19]
print(os.getpid(), start, flush=True)
time.sleep(300)
'''


class Starter(SSHPipeHandler):
    """Starts one stubborn process per message and replies with (pid, start time)."""

    def handle(self, kind):
        process = subprocess.Popen([sys.executable, "-c", STUBBORN, kind],
                                   stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        pid, start = process.stdout.readline().split()
        self.reply((kind, int(pid), start))


def running(pid, start):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and fields[19] == start


def main() -> None:
    with LocalSSHServer() as server:
        pipe = SSHPipe(server.alias, handler=Starter, config=server.config_path)
        pipe.start()
        pipe.send("in the group")
        pipe.send("daemon")
        started = [pipe.recv(timeout=30), pipe.recv(timeout=30)]
        for kind, pid, start in started:
            print(f"{kind}: pid {pid}, running: {running(pid, start)}")
        began = time.monotonic()
        response = pipe.close(timeout=30)
        print(f"close() returned after {time.monotonic() - began:.1f} s, "
              f"exit status {response.exitcode}")
        for kind, pid, start in started:
            print(f"{kind}: running after close(): {running(pid, start)}")
        print("stderr:", response.stderr.strip())


if __name__ == "__main__":
    main()
