"""Test agent whose hooks fail on demand (argv[1]: atstart, atexit or none)."""
import sys

from sshpipe import SSHPipeHandler


class HooksAgent(SSHPipeHandler):
    def atstart(self, received):
        if sys.argv[1] == "atstart":
            raise RuntimeError("atstart failed on purpose")

    def handle(self, received):
        self.reply(("handled", received))

    def atexit(self, received):
        if sys.argv[1] == "atexit":
            raise RuntimeError("atexit failed on purpose")
        self.reply(("atexit", received))


if __name__ == "__main__":
    HooksAgent().service_loop()
