"""What a caller sees when the remote agent dies mid-stream: nothing is lost silently.

The "remote host" is a throw-away local sshd, so this script can kill the agent
itself (by the pid its hello reported) to show the accounting a real failure gets.
"""
import os
import signal
import time

from sshpipe import SSHPipe, SSHPipeHandler
from sshpipe.testing import LocalSSHServer


class Slow(SSHPipeHandler):
    """Takes a while per message, so some are still queued when it dies."""

    def handle(self, received):
        time.sleep(0.2)
        self.reply(received)


def main() -> None:
    with LocalSSHServer() as server:
        pipe = SSHPipe(server.alias, handler=Slow, config=server.config_path, heartbeat=1)
        pipe.start()
        sent = [pipe.send(n) for n in range(10)]
        print("sent", sent)
        print("first reply:", pipe.recv(timeout=10))
        os.kill(pipe.remote_info["pid"], signal.SIGKILL)  # the agent dies mid-stream
        response = pipe.response(timeout=30)
        replies = []
        while True:
            try:
                replies.append(pipe.recv(timeout=0))
            except (EOFError, TimeoutError):
                break
        handled = [seq for seq in sent if seq not in response.unhandled]
        print("agent exit status:", response.exitcode, "-", response.reason)
        print("handled:", handled)
        print("never handled:", list(response.unhandled))
        print("every message accounted for:", sorted(handled + list(response.unhandled)) == sent)


if __name__ == "__main__":
    main()
