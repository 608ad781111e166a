"""An agent script for ``sshpipe run``: replies with each message in upper case.

``sshpipe run HOST /path/to/upper_agent.py`` starts it on HOST (zero-install: the
host needs only Python 3.9+ and this file) and sends it each line of stdin.
"""
from sshpipe import SSHPipeHandler


class Upper(SSHPipeHandler):
    """Replies with each message in upper case."""

    def handle(self, received):
        self.reply(received.upper())


if __name__ == "__main__":
    Upper().service_loop()
