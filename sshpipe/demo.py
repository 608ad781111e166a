"""The demo behind ``sshpipe demo``: an agent over SSH against a throw-away sshd.

This module is also shipped to the remote (``modules=["sshpipe.demo"]``), so at
import time it needs nothing beyond the agent runtime: the caller-side imports
live inside :func:`run_demo`.
"""
from __future__ import annotations

import os
import platform
import socket
from typing import Any, Iterator

from sshpipe.handler import SSHPipeHandler

__all__ = ["DemoHandler", "run_demo"]


class DemoHandler(SSHPipeHandler):
    """Does a small computation per job and says where it ran."""

    def handle(self, received: Any) -> None:
        number = int(received)
        total = sum(i * i for i in range(number * 1000))
        self.reply(f"reply from {socket.gethostname()} pid {os.getpid()} (Python "
                   f"{platform.python_version()}): job {number} -> {total}")


def run_demo(messages: int = 3) -> Iterator[str]:
    """Start a local sshd and an agent on it, send jobs, yield lines to show."""
    from sshpipe.pipe import SSHPipe
    from sshpipe.testing import LocalSSHServer

    with LocalSSHServer(alias="sshpipe-demo") as server:
        yield f"started a throw-away sshd: {server!r}"
        pipe = SSHPipe(server.alias, handler=DemoHandler, modules=["sshpipe.demo"],
                       config=server.config_path)
        pipe.start()
        info = pipe.remote_info
        yield (f"agent started over SSH: pid {info['pid']} on {info['host']}, Python "
               f"{info['python']}, runtime {'sent' if info.get('bundle_sent') else 'cached'}")
        for number in range(1, messages + 1):
            pipe.send(number)
            yield f"sent job {number}"
        for _ in range(messages):
            yield pipe.recv(timeout=30)
        response = pipe.close(timeout=30)
        unhandled = list(response.unhandled) or "none"
        yield f"agent exited with status {response.exitcode}; unhandled messages: {unhandled}"
    yield "stopped the throw-away sshd"
