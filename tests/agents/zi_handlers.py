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


class NoStdout(SSHPipeHandler):
    """Replies after losing sys.stdout (None, or a closed file), as a daemon or a
    careless library leaves it."""

    def handle(self, received):
        if received == "none":
            sys.stdout = None
        elif received == "closed":
            sys.stdout.close()
        print("lost")  # to None: nothing; to a closed file: ValueError
        self.reply(received)


class LeavesAThread(SSHPipeHandler):
    """Starts a non-daemon thread that outlives the agent's end by far (as a
    library's busy pool worker or a forgotten thread does), then replies."""

    def handle(self, received):
        import threading
        import time

        threading.Thread(target=time.sleep, args=(600,), name="forgotten-sleeper").start()
        self.reply(received)
