"""Test agent that counts what it receives and replies with the total on request."""
from sshpipe import SSHPipeHandler


class Sink(SSHPipeHandler):
    def __init__(self):
        super().__init__()
        self.total = 0
        self.count = 0

    def handle(self, received):
        if received == "total?":
            self.reply((self.count, self.total))
            return
        self.count += 1
        self.total += len(received)


if __name__ == "__main__":
    Sink().service_loop()
