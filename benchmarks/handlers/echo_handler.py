"""Benchmark agent: replies with every object it receives (round-trip tests)."""
from sshpipe import SSHPipeHandler


class Echo(SSHPipeHandler):
    def handle(self, received):
        self.reply(received)


if __name__ == "__main__":
    Echo().service_loop()
