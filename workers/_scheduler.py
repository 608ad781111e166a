"""Which task goes to which host: slots, balancing, and requeue on host loss.

Pure logic, no I/O and no locks: the executor calls it under its own lock. A
:class:`Scheduler` holds the tasks waiting for a host (one shared queue plus a
queue per host for tasks pinned to it) and, per host, the tasks handed to it.

Balancing: :meth:`Scheduler.assign` gives each task to the host with the most
free slots (``slots - in flight``); ties go round-robin. A host takes up to
``slots + prefetch`` tasks, so that its workers find the next task already there
when one ends, instead of waiting a round trip for it, and at most
``max_bytes`` of task payloads beyond the first: what a host holds waits in its
agent's memory, so a burst of large tasks is held here instead.
"""
from __future__ import annotations

import itertools
from collections import deque
from typing import Deque, Dict, Generic, List, Optional, Tuple, TypeVar

__all__ = ["HostSlots", "Scheduler"]

Item = TypeVar("Item")


class HostSlots(Generic[Item]):
    """One host's capacity and the items it holds, by task id."""

    def __init__(self, name: str, slots: int, prefetch: int, max_bytes: Optional[int] = None):
        if slots < 1:
            raise ValueError(f"{name}: slots must be at least 1, not {slots}")
        self.name = name
        self.slots = slots
        self.capacity = slots + max(0, prefetch)
        self.max_bytes = max_bytes
        self.inflight: Dict[int, Item] = {}
        self.sizes: Dict[int, int] = {}
        self.bytes = 0
        self.pinned: Deque[Tuple[int, Item, int]] = deque()

    @property
    def free(self) -> int:
        """Free slots; negative when tasks wait on the host for a worker."""
        return self.slots - len(self.inflight)

    def takes(self, size: int) -> bool:
        """Room for one more item of ``size`` bytes (an empty host takes any)."""
        if len(self.inflight) >= self.capacity:
            return False
        return (self.max_bytes is None or not self.inflight
                or self.bytes + size <= self.max_bytes)

    def hold(self, tid: int, item: Item, size: int) -> None:
        self.inflight[tid] = item
        self.sizes[tid] = size
        self.bytes += size

    def drop(self, tid: int) -> Optional[Item]:
        item = self.inflight.pop(tid, None)
        self.bytes -= self.sizes.pop(tid, 0)
        return item


class Scheduler(Generic[Item]):
    """Queues of waiting items and the hosts that take them.

    Items are opaque; each is known by an int id given with it. An item given a
    ``host`` waits for that host only.
    """

    def __init__(self) -> None:
        self.hosts: Dict[str, HostSlots[Item]] = {}
        self._queue: Deque[Tuple[int, Item, int]] = deque()
        self._turn = itertools.count()

    # -- hosts ------------------------------------------------------------
    def add_host(self, name: str, slots: int, prefetch: int = 0,
                 max_bytes: Optional[int] = None) -> None:
        if name in self.hosts:
            raise ValueError(f"host {name!r} is already scheduled")
        self.hosts[name] = HostSlots(name, slots, prefetch, max_bytes)

    def remove_host(self, name: str) -> Tuple[Dict[int, Item], List[Tuple[int, Item]]]:
        """Take a host out; return (its items in flight, items pinned to it still
        waiting). Unknown hosts return nothing."""
        host = self.hosts.pop(name, None)
        if host is None:
            return {}, []
        return host.inflight, [(tid, item) for tid, item, _ in host.pinned]

    # -- items ------------------------------------------------------------
    def push(self, tid: int, item: Item, host: Optional[str] = None, front: bool = False,
             size: int = 0) -> None:
        """Queue an item of ``size`` bytes (``front`` for a retry, which keeps its
        place in line).

        Raises:
            KeyError: ``host`` is not scheduled (never was, or was removed).
        """
        if host is not None:
            queue = self.hosts[host].pinned
        else:
            queue = self._queue
        if front:
            queue.appendleft((tid, item, size))
        else:
            queue.append((tid, item, size))

    def discard(self, tid: int) -> Optional[Item]:
        """Remove a waiting item (cancelled); None when it is not waiting."""
        for queue in itertools.chain([self._queue], (h.pinned for h in self.hosts.values())):
            for index, (queued, item, _) in enumerate(queue):
                if queued == tid:
                    del queue[index]
                    return item
        return None

    def assign(self) -> List[Tuple[str, int, Item]]:
        """Hand waiting items to hosts with room; return (host, tid, item) for
        each, already counted in flight on its host."""
        handed: List[Tuple[str, int, Item]] = []
        hosts = list(self.hosts.values())
        if not hosts or not (self._queue or any(h.pinned for h in hosts)):
            return handed
        start = next(self._turn) % len(hosts)
        hosts = hosts[start:] + hosts[:start]  # ties go round-robin
        while True:
            host = self._pick(hosts)
            if host is None:
                return handed
            queue = host.pinned if host.pinned else self._queue
            tid, item, size = queue.popleft()
            host.hold(tid, item, size)
            handed.append((host.name, tid, item))

    def _pick(self, hosts: List[HostSlots[Item]]) -> Optional[HostSlots[Item]]:
        shared = bool(self._queue)
        best: Optional[HostSlots[Item]] = None
        for host in hosts:
            if host.pinned:
                size = host.pinned[0][2]
            elif shared:
                size = self._queue[0][2]
            else:
                continue
            if not host.takes(size):
                continue
            if best is None or host.free > best.free:
                best = host
        return best

    def release(self, host: str, tid: int) -> Optional[Item]:
        """The host is done with an item; return it (None if it was not there)."""
        slots = self.hosts.get(host)
        if slots is None:
            return None
        return slots.drop(tid)

    def waiting(self) -> List[Tuple[int, Item]]:
        """Every waiting item, shared and pinned."""
        items = [(tid, item) for tid, item, _ in self._queue]
        for host in self.hosts.values():
            items.extend((tid, item) for tid, item, _ in host.pinned)
        return items

    def take_waiting(self) -> List[Tuple[int, Item]]:
        """Remove and return every waiting item."""
        items = self.waiting()
        self._queue.clear()
        for host in self.hosts.values():
            host.pinned.clear()
        return items

    @property
    def waiting_count(self) -> int:
        return len(self._queue) + sum(len(h.pinned) for h in self.hosts.values())
