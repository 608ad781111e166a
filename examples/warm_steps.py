"""Short steps on one host, each a fresh agent: the first starts cold and leaves a
zygote behind, the next ones are forked from it (``SSHPipe(..., warm=True)``).

Every step is its own agent (its own pid, nothing shared with the others), as a
workflow engine's steps would be. The "remote host" is a throw-away local sshd,
so the script runs anywhere ``sshd`` is installed.
"""
import os
import sys
import time

from sshpipe import SSHPipe, SSHPipeHandler, stop_zygotes
from sshpipe.testing import LocalSSHServer


class Step(SSHPipeHandler):
    def handle(self, received):
        self.reply((received * 2, os.getpid()))


def main() -> None:
    with LocalSSHServer() as server:
        options = dict(config=server.config_path, python=sys.executable, transport="openssh")
        pids = set()
        for number in range(5):
            pipe = SSHPipe(server.alias, handler=Step, warm=True, **options)
            began = time.perf_counter()
            pipe.start()
            took = time.perf_counter() - began
            pipe.send(number)
            doubled, pid = pipe.recv(timeout=30)
            pipe.close()
            pids.add(pid)
            start = pipe.remote_info["start"]
            if number == 0 or start == "warm":  # (a second cold one: the zygote was not ready)
                print(f"step {number}: {start} start, {doubled}, exit {pipe.exitcode}")
            print(f"  took {took * 1000:.0f} ms", file=sys.stderr)
        print(f"agents: {len(pids)} different processes")
        print(f"zygotes stopped: {stop_zygotes(server.alias, **options)}")


if __name__ == "__main__":
    main()
