"""Agent for the reliability cases: echoes, and does on command what a real
handler might (sleep, reply a lot, reply what the caller cannot load).

RELIABILITY_TERMS (comma-separated) sets the handler's own term messages.
"""
import os
import sys
import time

from sshpipe import SSHPipeHandler


class ReliabilityAgent(SSHPipeHandler):
    def handle(self, received):
        if isinstance(received, tuple) and received and received[0] == "cmd":
            return getattr(self, "cmd_" + received[1])(*received[2:])
        self.reply(received)

    def cmd_sleep(self, seconds):
        time.sleep(seconds)

    def cmd_pid(self):
        self.reply(os.getpid())

    def cmd_replies(self, count, size):
        for number in range(count):
            self.reply((number, b"x" * size))
        self.reply("all sent")

    def cmd_only_here(self):
        from remote_only import OnlyHere  # next to this script; the caller lacks it
        self.reply(OnlyHere())

    def cmd_bytes(self, size):
        self.reply(b"r" * size)

    def cmd_print(self, size):
        sys.stdout.write("p" * size)
        sys.stdout.flush()
        self.reply("printed")


if __name__ == "__main__":
    terms = os.environ.get("RELIABILITY_TERMS")
    ReliabilityAgent(term_messages=terms.split(",") if terms else None,
                     tolerance=-1).service_loop()
