"""What a remote may send back: plain data always, code never (unless you say so).

The handler below plays a host that answers with data, with an object of a class
the caller has not allowed, and with what a compromised host would send: a reply
whose pickle calls ``os.system``. By default the caller loads the first, and
refuses the other two with ``UntrustedPayload`` (nothing of them runs); allowing
the one class with ``trust_remote=[...]`` lets it through and still refuses the
command. The "remote host" is a throw-away local sshd.
"""
import argparse
import datetime
import os

from sshpipe import SSHPipe, SSHPipeHandler, UntrustedPayload
from sshpipe.testing import LocalSSHServer


class RunsCommand:
    """A reply whose pickle is ``os.system("...")``: loading it would run that."""

    def __reduce__(self):
        return (os.system, ("echo this must never run on the caller",))


class Answers(SSHPipeHandler):
    def handle(self, received):
        if received == "data":
            self.reply({"when": datetime.datetime.now(datetime.timezone.utc),
                        "pid": os.getpid(), "path": __import__("pathlib").Path("/tmp")})
        elif received == "namespace":
            self.reply(argparse.Namespace(cpus=os.cpu_count()))
        elif received == "command":
            self.reply(RunsCommand())


def ask(pipe: SSHPipe, what: str) -> None:
    pipe.send(what)
    try:
        print(f"{what}: loaded {type(pipe.recv(timeout=30)).__name__}")
    except UntrustedPayload as refused:
        print(f"{what}: refused {refused.refused} (reply {refused.seq}), nothing ran")


def main() -> None:
    with LocalSSHServer() as server:
        print("default policy:")
        with SSHPipe(server.alias, handler=Answers, config=server.config_path) as pipe:
            for what in ("data", "namespace", "command"):
                ask(pipe, what)
        print("trust_remote=[argparse.Namespace]:")
        with SSHPipe(server.alias, handler=Answers, config=server.config_path,
                     trust_remote=[argparse.Namespace]) as pipe:
            for what in ("namespace", "command"):
                ask(pipe, what)


if __name__ == "__main__":
    main()
