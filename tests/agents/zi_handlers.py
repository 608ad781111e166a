"""Handlers imported by name in zero-install tests (shipped with modules=[...])."""
import sys

from sshpipe import SSHPipeHandler


class Counter(SSHPipeHandler):
    """Replies with a running count and the interpreter it runs on."""

    def __init__(self, start=0, **kwargs):
        super().__init__(**kwargs)
        self.count = start

    def handle(self, received):
        self.count += 1
        if callable(received):
            received = received()
        self.reply((self.count, received, "%d.%d" % sys.version_info[:2],
                    "dill" in sys.modules))
