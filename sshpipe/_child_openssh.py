"""The OpenSSH transport's child: opens a session on this host's ssh master with
the caller's own pipe ends, then supervises it. No byte of the agent's stream
passes through here.

::

    caller ── request pipe ──────────────────────> ssh master (C) ══ SSH ══> agent
    caller <── event pipe ─────────────────────── ssh master <══════════════
    caller <── control pipe ── this child ── mux control connection ── master
                CONNECTED, STDERR, DONE/BROKEN        (session open, exit status)

The child reads the SPEC frame off the request pipe (exactly its bytes; see
:func:`sshpipe._child.read_spec`), then passes the pipe's read end and the
event pipe's write end to the master (SCM_RIGHTS, :mod:`sshpipe._openssh.mux`)
and closes its own copies: from then on the master reads the caller's frames
and writes the agent's output straight into the caller's pipes. The caller
(:mod:`sshpipe._stream`) does what the paramiko child does in the byte stream.

What the child reports on the control pipe:

- CONNECTED ``{"transport": "openssh", "master_pid": N}`` once the session runs;
- STDERR: the remote's stderr as it arrives (the master writes it to a pipe
  the child reads);
- DONE ``{"status": S}``: the session ended with exit status S (``null`` when
  it ended without one: the remote command was killed by a signal), after the
  master delivered all output; or BROKEN with the typed error: no session could
  be had (ConnectError and subclasses, from ssh's own words), or the master was
  lost under the session (MasterLost).

Its end ends the session: its mux control connection closes with it (however
it dies, the kernel closes the socket), and the master then closes the
session's channel (the agent reads end of input, ``mux.c``'s control cleanup).
It also ends the session itself when the caller is gone (the control pipe's
read end closed).
"""
from __future__ import annotations

import os
import select
import threading
from typing import Any, Optional

from sshpipe import protocol
from sshpipe._child import ChildSpec, report_broken
from sshpipe.errors import ConnectError, PipeBroken, SSHPipeError
from sshpipe.protocol import FrameKind

__all__ = ["OpenSSHChild"]

# How long the stderr reader may take to drain after the session ended.
_STDERR_DRAIN = 2.0


class OpenSSHChild:
    """Open, supervise and report one session on the target's master."""

    def __init__(self, spec: ChildSpec, requests: Any, events: Any, control: Any):
        self.spec = spec
        self.requests = requests
        self.events = events
        self.control = control
        self.lock = threading.Lock()

    def emit(self, data: bytes) -> None:
        with self.lock:
            protocol.write_all(self.control.fileno(), data)

    def broken(self, error: BaseException) -> int:
        return report_broken(self.emit, error)

    def run(self) -> int:
        from sshpipe._openssh import open_session

        spec = self.spec
        err_read, err_write = os.pipe()
        try:
            try:
                session = open_session(
                    spec.target, spec.remote_line, stdin=self.requests.fileno(),
                    stdout=self.events.fileno(), stderr=err_write, owner=spec.owner,
                    persist=spec.persist, timeout=spec.connect_timeout)
            finally:
                # The master holds its own copies now; ours would hide its end.
                self.requests.close()
                self.events.close()
                os.close(err_write)
        except SSHPipeError as exc:
            os.close(err_read)
            return self._end(self.broken(exc))
        except (OSError, ValueError) as exc:
            os.close(err_read)
            return self._end(self.broken(ConnectError(
                f"{spec.host}: could not open an OpenSSH session: {exc!r}", spec.host)))
        try:
            self.emit(protocol.encode_json(FrameKind.CONNECTED, {
                "transport": "openssh", "master_pid": session.master_pid}))
        except OSError:
            session.close()
            os.close(err_read)
            return self._end(255)  # the caller is gone
        stderr = threading.Thread(target=self._stderr_loop, args=(err_read,), daemon=True)
        stderr.start()
        try:
            code = self._supervise(session, stderr)
        except Exception as exc:  # a bug here must still say what happened
            session.close()
            error = PipeBroken(f"{spec.host}: the pipe's child failed: {exc!r}")
            error.__cause__ = exc
            code = self.broken(error)
        return self._end(code)

    def _supervise(self, session: Any, stderr: threading.Thread) -> int:
        """Wait for the session's end (or the caller's); report it."""
        spec = self.spec
        poller = select.poll()
        poller.register(session.fileno(), select.POLLIN)
        # A pipe's write end polls POLLERR once its read end is closed: the caller
        # is gone, so is the reason to keep the session.
        poller.register(self.control.fileno(), 0)
        while True:
            try:
                status = session.poll()
            except PipeBroken as exc:  # MasterLost, NoExitStatus
                stderr.join(_STDERR_DRAIN)
                if type(exc).__name__ == "NoExitStatus":
                    return self._done(None, spec)
                return self.broken(exc)
            if status is not None:
                stderr.join(_STDERR_DRAIN)
                return self._done(status, spec)
            for fd, event in poller.poll(None):
                if fd == self.control.fileno() and event & (select.POLLERR | select.POLLHUP):
                    session.close()
                    return 255

    def _done(self, status: Optional[int], spec: ChildSpec) -> int:
        try:
            self.emit(protocol.encode_json(FrameKind.DONE, {"status": status}))
        except OSError:
            pass
        return child_exit_code(status, spec.launch is not None)

    def _stderr_loop(self, fd: int) -> None:
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    return
                self.emit(protocol.encode(FrameKind.STDERR, data))
        except OSError:
            return
        finally:
            os.close(fd)

    def _end(self, code: int) -> int:
        try:
            self.control.close()
        except OSError:
            pass
        return code


def child_exit_code(status: Optional[int], supervised: bool) -> int:
    """The child's own exit status for a session's: the loader's supervisor reports
    an agent killed by signal N as 128+N, which the child mirrors as -N (so that
    ``SSHPipe.exitcode`` reads as a Process's)."""
    if status is None:
        return 255
    if supervised and status > 128:
        return 128 - status
    return status if 0 <= status < 256 else 255
