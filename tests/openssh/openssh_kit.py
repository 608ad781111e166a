"""Helpers for the OpenSSH transport tests: pipes handed to sessions, process scans."""
from __future__ import annotations

import os
import select
import time
from typing import List, Optional


def processes_mentioning(text: str) -> List[int]:
    """Pids of live processes whose command line contains ``text`` (masters name
    their socket, watchdogs and passengers their directory or socket)."""
    found = []
    needle = text.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                words = cmdline.read()
            with open(f"/proc/{entry}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in words and state != b"Z":
            found.append(int(entry))
    return found


class SessionPipes:
    """Three pipes for a session: the session gets ``remote_fds`` (stdin read end,
    stdout and stderr write ends); the test keeps the other ends.

    Ownership: this object creates all six fds; :meth:`handed_over` closes the
    three given to the session (the master holds its own copies), :meth:`close`
    closes whatever is left.
    """

    def __init__(self) -> None:
        self._stdin_r, self.stdin = os.pipe()
        self.stdout, self._stdout_w = os.pipe()
        self.stderr, self._stderr_w = os.pipe()
        self._given = False

    @property
    def remote_fds(self) -> dict:
        return {"stdin": self._stdin_r, "stdout": self._stdout_w, "stderr": self._stderr_w}

    def handed_over(self) -> None:
        if not self._given:
            for fd in (self._stdin_r, self._stdout_w, self._stderr_w):
                os.close(fd)
            self._given = True

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.stdin, view):]

    def close_stdin(self) -> None:
        if self.stdin != -1:
            os.close(self.stdin)
            self.stdin = -1

    def read_exactly(self, n: int, timeout: float = 10.0, fd: Optional[int] = None) -> bytes:
        fd = self.stdout if fd is None else fd
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"read {len(data)} of {n} bytes in {timeout} s")
            chunk = os.read(fd, n - len(data))
            if not chunk:
                raise EOFError(f"EOF after {len(data)} of {n} bytes")
            data += chunk
        return data

    def read_to_eof(self, fd: int, timeout: float = 10.0) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no EOF within {timeout} s (read {data[-200:]!r})")
            chunk = os.read(fd, 65536)
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        self.handed_over()
        for name in ("stdin", "stdout", "stderr"):
            fd = getattr(self, name)
            if fd != -1:
                os.close(fd)
                setattr(self, name, -1)

    def __enter__(self) -> "SessionPipes":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    step = 0.005
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(step)
        step = min(step * 2, 0.1)
