"""One executor host: its state, pipe, threads and outbox; host lists parsed.

Owned by :mod:`workers.executor`, which reads and writes ``_Host.state`` under
its own lock; the outbox has a lock of its own (``out_cond``).
"""
from __future__ import annotations

import enum
import threading
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from sshpipe.pipe import SSHPipe

__all__ = ["Host", "HostSpec", "HostState", "parse_hosts"]

HostSpec = Union[str, Tuple[str, Mapping[str, Any]], Mapping[str, Any]]


class HostState(enum.Enum):
    """Life cycle of one host in an executor."""

    STARTING = "starting"  # SSH session and agent being started
    READY = "ready"        # the agent's worker pool is up; takes tasks
    LOST = "lost"          # failed to start, or its agent/link failed; never used again
    CLOSED = "closed"      # shut down by the executor


class Host:
    """One host: its pipe, reader thread and state (state under the executor lock)."""

    def __init__(self, name: str, address: str, slots: Optional[int], pipe_options: Dict[str, Any]):
        self.name = name
        self.address = address
        self.slots = slots
        self.pipe_options = pipe_options
        self.state = HostState.STARTING
        self.pipe: Optional[SSHPipe] = None
        self.reader: Optional[threading.Thread] = None
        self.ready = threading.Event()
        self.info: Dict[str, Any] = {}
        self.error: Optional[BaseException] = None
        # Messages for the host, in order: ("run", item) and ("cancel", tid). Filled
        # by any thread; drained by the host's sender thread, which sends each
        # run of "run" entries as one message (a burst of submits costs one frame).
        self.outbox: List[Tuple[str, Any]] = []
        self.out_cond = threading.Condition()
        self.out_closed = False
        self.sending = False  # a thread is sending for this host: keeps messages in order
        self.sender: Optional[threading.Thread] = None
        self.run_time: Optional[float] = None  # moving average of its tasks' run time

    def post(self, kind: str, payload: Any) -> None:
        with self.out_cond:
            self.outbox.append((kind, payload))
            if len(self.outbox) == 1:
                self.out_cond.notify()

    def end_sending(self) -> None:
        with self.out_cond:
            self.sending = False
            self.out_cond.notify_all()

    def close_outbox(self) -> None:
        with self.out_cond:
            self.out_closed = True
            self.out_cond.notify()

    def __repr__(self) -> str:
        return f"<host {self.name} {self.state.value}>"


def parse_hosts(hosts: Iterable[HostSpec]) -> List[Tuple[str, str, Dict[str, Any]]]:
    """(name, address, options) per host; names made unique."""
    parsed = []
    seen: Dict[str, int] = {}
    for spec in hosts:
        if isinstance(spec, str):
            address, options = spec, {}
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
            address, options = spec[0], dict(spec[1])
        elif isinstance(spec, Mapping):
            options = dict(spec)
            try:
                address = options.pop("host")
            except KeyError:
                raise ValueError(f"a host given as a dict needs a 'host' key: {spec!r}") from None
        else:
            raise TypeError(f"a host is an ssh alias, (alias, options) or a dict, not {spec!r}")
        name = options.pop("name", None) or address
        count = seen.get(name, 0) + 1
        seen[name] = count
        if count > 1:
            name = f"{name}#{count}"
        parsed.append((name, address, options))
    if not parsed:
        raise ValueError("an SSHExecutor needs at least one host")
    return parsed
