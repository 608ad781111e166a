"""SSHMultiPipe: several remote agents started, fed and closed from one point.

    python examples/multipipe.py [COUNT]

Starts a throw-away sshd on 127.0.0.1 (:class:`~sshpipe.testing.LocalSSHServer`),
then COUNT (default 3) agents on it, each running the ``Squarer`` handler below,
sent by value (nothing installed remotely), plus one pipe whose command does
not exist. It shows that the bad pipe is reported while the others run, sends
work to all of them, collects replies as ``(name, reply)``, and prints each
pipe's close response. Output lines start with ``start:``, ``reply:``,
``close:``, so a test can check them.
"""
import os
import sys

from sshpipe import SSHMultiPipe, SSHPipeHandler
from sshpipe.testing import LocalSSHServer


class Squarer(SSHPipeHandler):
    """Replies to a number n with (agent pid, n, n * n)."""

    def handle(self, received):
        self.reply((os.getpid(), received, received * received))


def main(count: int) -> int:
    with LocalSSHServer() as sshd:
        # Defaults shared by every pipe; each add() names a pipe and its host.
        multi = SSHMultiPipe(config=sshd.config_path, python=sshd.python,
                             handler=Squarer, ready_timeout=30)
        for index in range(count):
            multi.add(f"squarer{index}", sshd.alias)
        multi.add("broken", sshd.alias, command="no-such-agent-command")

        failures = multi.start(timeout=60)
        for name, error in failures.items():
            print(f"start: {name} failed: {str(error).splitlines()[0]}")
        print(f"start: {multi!r}")

        multi.broadcast(7)                      # serialized once, sent to every running pipe
        for index, name in enumerate(multi.running):
            multi.send(name, 10 + index)        # one number for each pipe
        for _ in range(2 * len(multi.running)):
            name, (pid, number, square) = multi.recv(timeout=30)
            print(f"reply: {name} (pid {pid}): {number}^2 = {square}")

        for name, result in multi.close(timeout=30).items():
            if isinstance(result, BaseException):
                print(f"close: {name}: {type(result).__name__}")
            else:
                print(f"close: {name}: exit status {result.exitcode}")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
