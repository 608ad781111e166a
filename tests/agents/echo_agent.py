"""Test agent: replies with what it receives, and reacts to a few commands."""
import logging
import os
import subprocess
import sys
import time

from sshpipe import SSHPipeHandler

log = logging.getLogger("echo_agent")


class EchoAgent(SSHPipeHandler):
    def handle(self, received):
        if isinstance(received, tuple) and received and received[0] == "cmd":
            return self.command(*received[1:])
        if callable(received):
            self.reply(received(21))
            return
        self.reply(received)

    def command(self, name, *args):
        if name == "print":
            print(*args)
            sys.stdout.write("via sys.stdout\n")
            os.write(1, b"straight to fd 1\n")
        elif name == "stderr":
            sys.stderr.write(args[0])
            sys.stderr.flush()
        elif name == "log":
            log.warning("remote warning %s", args[0])
        elif name == "raise":
            raise ValueError(args[0])
        elif name == "sleep":
            time.sleep(args[0])
        elif name == "spawn":
            child = subprocess.Popen(["sleep", "300"])
            self.reply(child.pid)
        elif name == "pid":
            self.reply(os.getpid())
        elif name == "unpicklable_reply":
            self.reply((x for x in range(3)))
        elif name == "exit":
            os._exit(args[0])


if __name__ == "__main__":
    tolerance = int(os.environ.get("ECHO_TOLERANCE", "0"))
    EchoAgent(tolerance=tolerance).service_loop()
