"""What the benchmarks share: progress lines, percentiles, best-of timing, exact
reads from a stream, the remote sink command, the closing report lines, and the
hosts to run on (network-namespace hosts when this machine can make them, else
one local sshd standing in for all).

Each benchmark runs as a script (``python benchmarks/bench_x.py``), so this
module is imported as ``_common`` from the benchmarks directory.
"""
from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional

__all__ = ["Peers", "best_time", "fd_recv", "load_average", "log", "peers", "percentile",
           "print_targets", "recv_exact", "recv_until", "sink_command"]


def log(message: str) -> None:
    """A progress line on stderr (stdout is kept for the report)."""
    print(message, file=sys.stderr, flush=True)


def percentile(samples: List[float], fraction: float) -> float:
    """The sample at ``fraction`` (0.9: p90) of the sorted samples, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def best_time(fn: Callable[[], object], repeat: int,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """The shortest of ``repeat`` timed calls of ``fn``, in seconds: the run least
    disturbed by other load."""
    best = float("inf")
    for _ in range(repeat):
        started = clock()
        fn()
        best = min(best, clock() - started)
    return best


def recv_exact(recv: Callable[[int], bytes], size: int) -> bytes:
    """Exactly ``size`` bytes from ``recv`` (a socket's, a channel's, or a
    function reading a fd with a timeout); EOFError if the stream ends first."""
    chunks, got = [], 0
    while got < size:
        data = recv(size - got)
        if not data:
            raise EOFError(f"stream ended after {got} of {size} bytes")
        chunks.append(data)
        got += len(data)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def fd_recv(fd: int, timeout: float) -> Callable[[int], bytes]:
    """A ``recv`` for :func:`recv_exact` reading the file descriptor ``fd``, each
    read waiting at most ``timeout`` seconds (TimeoutError)."""
    def recv(size: int) -> bytes:
        if not select.select([fd], [], [], timeout)[0]:
            raise TimeoutError(f"no data from fd {fd} in {timeout} s")
        return os.read(fd, size)
    return recv


def recv_until(recv: Callable[[int], bytes], marker: bytes) -> bytes:
    """Everything from ``recv`` up to and including ``marker`` at the end."""
    data = b""
    while not data.endswith(marker):
        chunk = recv(4096)
        if not chunk:
            raise EOFError(f"stream ended before {marker!r}; got {data[-200:]!r}")
        data += chunk
    return data


def sink_command(total: int) -> str:
    """A remote shell command that says ready, swallows ``total`` bytes, says done."""
    return f"echo ready; head -c {total} >/dev/null; echo done"


def load_average() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


def print_targets(report: Dict[str, Any]) -> None:
    """The report's closing lines: each target's status, then the load average."""
    for target in report["targets"]:
        print(f"target: {target['target']}: {target['status']}")
    print(f"load average after: {report['loadavg']}")


@dataclass
class Peers:
    """The hosts a benchmark runs on: ``aliases`` in the ssh config at
    ``config_path``; ``netns`` (the NamespaceHosts) or ``server`` (the one
    LocalSSHServer every alias names) for what else a benchmark needs of them."""

    aliases: List[str]
    config_path: str
    note: str
    netns: Optional[Any] = None
    server: Optional[Any] = None


@contextlib.contextmanager
def peers(count: int, prefix: str, alias: str) -> Iterator[Peers]:
    """``count`` network-namespace hosts (named ``prefix``...) when this machine
    can make them (root, ``ip netns``), else ``count`` entries of one local sshd
    (``alias``), with the reason in the note."""
    from sshpipe.testing import LocalSSHServer, NamespaceHosts, netns_unavailable_reason

    reason = netns_unavailable_reason()
    if reason is None:
        with NamespaceHosts(count, prefix=prefix) as hosts:
            yield Peers([host.alias for host in hosts], hosts.config_path,
                        f"{count} namespace hosts", netns=hosts)
        return
    with LocalSSHServer(alias) as server:
        yield Peers([server.alias] * count, server.config_path,
                    f"{count} entries of one local sshd ({reason})", server=server)
