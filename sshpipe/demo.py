"""The demo behind ``sshpipe demo``: everything against a throw-away local sshd."""
from __future__ import annotations

from typing import Iterator

import paramiko

from sshpipe.testing import LocalSSHServer

__all__ = ["run_demo"]


def run_demo(messages: int = 3) -> Iterator[str]:
    """Start a local sshd, run a remote command over SSH, yield lines to show."""
    with LocalSSHServer(alias="sshpipe-demo") as server:
        yield f"started {server!r}"
        client = paramiko.SSHClient()
        client.load_host_keys(server.known_hosts_path)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(server.address, port=server.port, username=server.user,
                       key_filename=server.key_path, look_for_keys=False, allow_agent=False)
        try:
            for number in range(1, messages + 1):
                _, stdout, _ = client.exec_command(f"echo remote reply {number} from $(hostname)")
                yield stdout.read().decode().strip()
        finally:
            client.close()
        yield "stopped the local sshd"
