"""The owner's side of the watchdog: start it, give it work, stop it.

See ``_watchdog_process`` for why the watchdog exists and what it does. A
:class:`Watchdog` belongs to the process that created it (the owner); a forked
copy of the object in another process does nothing, so a child made by ``fork``
cannot stop its parent's server.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from sshpipe.testing._errors import SSHServerError
from sshpipe.testing._proc import ProcessId, process_id

__all__ = ["Watchdog"]

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_watchdog_process.py")

# Bound on a request the watchdog answers at once (mkdtemp, undo, run).
REQUEST_TIMEOUT = 20.0
# Bound on stop() and end() beyond the grace they give the processes: the
# SIGKILL rounds (5 s at most) and the undo commands (10 s each at most).
FINISH_TIMEOUT = 30.0


class Watchdog:
    """A watchdog process that ends what it runs, and undoes what it was told,
    when :meth:`stop` is called or when this process ends in any way."""

    def __init__(self) -> None:
        self._owner = os.getpid()
        self._lock = threading.Lock()
        self._buffer = b""
        self._stderr = tempfile.TemporaryFile()
        # A session of its own: a Ctrl-C meant for the owner's terminal group does
        # not reach it; the owner ends it (or its own end does).
        self._process: Optional[subprocess.Popen[bytes]] = subprocess.Popen(
            [sys.executable, "-I", SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, bufsize=0, start_new_session=True)
        self.process = process_id(self._process.pid, gone_ok=True)

    # -- requests -----------------------------------------------------------
    def _owned(self) -> bool:
        return os.getpid() == self._owner and self._process is not None

    def _request(self, op: str, timeout: float, **fields: object) -> Dict[str, Any]:
        if not self._owned():
            raise SSHServerError("the watchdog belongs to another process or was stopped")
        assert self._process is not None and self._process.stdin and self._process.stdout
        data = (json.dumps(dict(fields, op=op)) + "\n").encode()
        with self._lock:
            try:
                while data:
                    data = data[self._process.stdin.write(data):]
            except OSError as exc:
                raise SSHServerError(
                    f"the watchdog is gone ({exc}){self._stderr_tail()}") from exc
            deadline = time.monotonic() + timeout
            reader = self._process.stdout.fileno()
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SSHServerError(f"the watchdog did not answer {op!r} within "
                                         f"{timeout:g} s")
                if select.select([reader], [], [], remaining)[0]:
                    chunk = os.read(reader, 65536)
                    if not chunk:
                        raise SSHServerError(f"the watchdog ended while asked {op!r}"
                                             + self._stderr_tail())
                    self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\n", 1)
        reply: Dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise SSHServerError(f"watchdog: {reply['error']}")
        return reply

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        return f"; its stderr:\n{text}" if text else ""

    def mkdtemp(self, prefix: str) -> str:
        """A new private directory, removed when the watchdog stops."""
        return str(self._request("mkdtemp", REQUEST_TIMEOUT, prefix=prefix)["path"])

    def remove_at_stop(self, path: str) -> None:
        """Remove ``path`` (a directory tree) when the watchdog stops."""
        self._request("remove", REQUEST_TIMEOUT, path=path)

    def undo_at_stop(self, argv: Sequence[str]) -> None:
        """Run ``argv`` when the watchdog stops, after its processes ended; the
        last command given runs first."""
        self._request("undo", REQUEST_TIMEOUT, argv=list(argv))

    def run(self, argv: Sequence[str], log_path: str) -> ProcessId:
        """Start ``argv`` under the watchdog, its output appended to ``log_path``."""
        reply = self._request("run", REQUEST_TIMEOUT, argv=list(argv), log=log_path)
        return ProcessId(int(reply["pid"]), int(reply["start"]))

    def end_processes(self, grace: float) -> List[ProcessId]:
        """End every process under the watchdog (SIGTERM, ``grace`` seconds, SIGKILL);
        return those still running (none, unless the kernel would not let go)."""
        reply = self._request("end", grace + FINISH_TIMEOUT, grace=grace)
        return [ProcessId(*pair) for pair in reply["left"]]

    # -- the end ------------------------------------------------------------
    def stop(self, grace: float = 5.0) -> None:
        """End the processes, run the undo commands, remove the directories, and
        wait for the watchdog to exit. Raises SSHServerError naming whatever could
        not be ended or undone. Does nothing in a process other than the owner."""
        if not self._owned():
            return
        assert self._process is not None
        try:
            reply = self._request("stop", grace + FINISH_TIMEOUT, grace=grace)
        except SSHServerError:
            # Unresponsive or dead: SIGKILL takes its children along (their
            # parent-death signal); what it was to undo is reported as left.
            self._process.kill()
            raise
        finally:
            self._close()
        problems = [f"process {pid} (start {start}) still running"
                    for pid, start in reply["left"]] + reply["errors"]
        if problems:
            raise SSHServerError("the watchdog could not clean up: " + "; ".join(problems))

    def _close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin and process.stdout
        process.stdin.close()
        try:
            process.wait(timeout=FINISH_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=FINISH_TIMEOUT)
        process.stdout.close()
        self._stderr.close()

    def __repr__(self) -> str:
        state = "running" if self._process is not None else "stopped"
        return f"<Watchdog pid {self.process.pid} {state}>"
