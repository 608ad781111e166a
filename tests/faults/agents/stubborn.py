"""An agent whose handler starts processes that try to outlive it.

Usable three ways: as a handler class (``Stubborn``, shipped with
``modules=["stubborn"]``), as a ``.py`` script, and as a raw command
(``[python, stubborn.py]``). ``("spawn", kind, ...)`` starts one process per kind
and replies with ``[(pid, start time), ...]``, start time being field 22 of
/proc/PID/stat, so that a test can tell the process from a later one with the
same pid. ``("umask",)`` replies with the agent's umask.

Kinds:
- ``ignore_term``: ignores SIGTERM, stays in the agent's process group;
- ``setsid``: leaves the process group (and session) with ``setsid()``;
- ``daemon``: double-forks and calls ``setsid()``, so its parent is gone;
- ``daemon_ignore_term``: a daemon that also ignores SIGTERM.
"""
import os
import subprocess
import sys

from sshpipe import SSHPipeHandler

# Runs as `python -c CHILD kind`: becomes what `kind` says, then prints its pid and
# start time on stdout (the handler's pipe) and sleeps.
CHILD = r'''
import os, signal, sys, time
kind = sys.argv[1]
if kind.startswith("daemon"):
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
if kind == "setsid":
    os.setsid()
if kind.endswith("ignore_term"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open("/proc/self/stat", "rb") as f:
    start = f.read().rsplit(b")", 1)[1].split()[19].decode()
os.write(1, ("%d %s\n" % (os.getpid(), start)).encode())
os.close(1)
time.sleep(300)
'''


def spawn(kind):
    """Start one process of ``kind``; return its (pid, start time)."""
    process = subprocess.Popen([sys.executable, "-c", CHILD, kind], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE)
    words = process.stdout.readline().split()
    process.stdout.close()
    if kind.startswith("daemon"):
        process.wait(10)  # the first of the two forks exits at once
    pid, start = words
    return int(pid), start.decode()


class Stubborn(SSHPipeHandler):
    def handle(self, received):
        if received[0] == "spawn":
            self.reply([spawn(kind) for kind in received[1:]])
        elif received[0] == "umask":
            mask = os.umask(0)
            os.umask(mask)
            self.reply(mask)
        elif received[0] == "pid":
            self.reply(os.getpid())


if __name__ == "__main__":
    Stubborn().service_loop()
