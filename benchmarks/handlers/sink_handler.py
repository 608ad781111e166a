"""Benchmark agent: takes every object and does nothing with it (one-way tests;
the caller learns of receipt from the agent's acknowledgements, ``SSHPipe.flush``)."""
from sshpipe import SSHPipeHandler


class Sink(SSHPipeHandler):
    def handle(self, received):
        pass


if __name__ == "__main__":
    Sink().service_loop()
