"""Test agent for ``sshpipe run``: each line is a command or text to echo."""
import logging
import os
import signal
import sys

from sshpipe import SSHPipeHandler

log = logging.getLogger("cli_agent")


class CliAgent(SSHPipeHandler):
    """``raise TEXT``, ``exit N``, ``kill``, ``print TEXT``, ``log TEXT``, ``pid``,
    ``argv``; anything else is replied in upper case."""

    def handle(self, received):
        command, _, rest = received.partition(" ")
        if command == "raise":
            raise ValueError(rest)
        if command == "exit":
            sys.exit(int(rest))
        if command == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if command == "print":
            print(rest)
        elif command == "log":
            log.warning("%s", rest)
        elif command == "pid":
            self.reply(os.getpid())
        elif command == "argv":
            self.reply(sys.argv[1:])
        else:
            self.reply(received.upper())


if __name__ == "__main__":
    CliAgent().service_loop()
