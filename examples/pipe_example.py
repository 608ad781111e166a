"""Start an agent on a remote host over SSH, send it work, get replies back.

The remote needs only sshd and Python 3.9+: the handler below is sent by value.
Here the "remote host" is a throw-away local sshd; with a real host, pass its ssh
config alias instead (and drop ``config=`` to use ~/.ssh/config).
"""
from sshpipe import SSHPipe, SSHPipeHandler
from sshpipe.testing import LocalSSHServer


class Upper(SSHPipeHandler):
    """Replies with each message in upper case."""

    def handle(self, received):
        self.reply(received.upper())


def main() -> None:
    with LocalSSHServer() as server:
        with SSHPipe(server.alias, handler=Upper, config=server.config_path) as pipe:
            info = pipe.remote_info
            print("remote python", info["python"], "pid", info["pid"])
            for word in ("hello", "world"):
                pipe.send(word)
            for _ in range(2):
                print("reply:", repr(pipe.recv(timeout=10)))
        response = pipe.response()  # the with block closed the pipe
        lost = "nothing lost" if not response.unhandled else f"unhandled {response.unhandled}"
        print(f"exit status {response.exitcode}, {lost}")


if __name__ == "__main__":
    main()
