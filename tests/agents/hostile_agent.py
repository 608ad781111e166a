"""Test agent playing a compromised host: each message it receives is a pickle,
crafted by the test, that it sends back as a reply byte for byte (through the
agent's own writer, as any code running on a compromised host could)."""
from sshpipe import SSHPipeHandler, protocol
from sshpipe.protocol import FrameKind


class HostileAgent(SSHPipeHandler):
    def handle(self, received):
        raw = bytes(received)
        agent = self._agent
        agent.window.reserve(len(raw), agent.writer.flush)
        agent.writer.put(protocol.encode(FrameKind.REPLY, raw), flush=True)


if __name__ == "__main__":
    HostileAgent().service_loop()
