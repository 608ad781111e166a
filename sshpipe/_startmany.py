"""Start many SSHPipes at once under one deadline, and kill the ones still starting.

Used by :class:`~sshpipe.SSHMultiPipe` and :class:`workers.SSHExecutor`: both
start one pipe per thread, so that the SSH handshakes and agent start-ups
overlap, and both must come back by their deadline whatever a host does.

A starter thread is started per pipe. It waits for its host's start slot (at
most ``per_host`` pipes connect to one host at a time, because OpenSSH's
default ``MaxStartups 10:30:100`` makes sshd drop new connections at random
once 10 are unauthenticated), calls ``SSHPipe.start()``, then the caller's
``then(name, pipe, deadline)`` (an executor waits there for its agent's pool).
A failure is recorded for its pipe and never stops the others. At the deadline
every pipe still starting is killed, so that its ``start()`` gives up, and is
reported with a ``TimeoutError`` (its own error chained).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Set

from sshpipe.pipe import SSHPipe

__all__ = ["ABANDON_GRACE", "START_PER_HOST", "start_pipes"]

logger = logging.getLogger(__name__)

# Pipes that connect to the same host at once. OpenSSH's default MaxStartups
# (10:30:100) starts refusing connections at random beyond 10 unauthenticated
# ones; 8 keeps clear of it and leaves room for other sessions. Higher starts
# faster against servers that allow it; None means no limit.
START_PER_HOST = 8
# How long, past the deadline, a killed start gets to give up before it is
# reported as abandoned (its thread is a daemon and ends on its own later).
ABANDON_GRACE = 20.0

Then = Callable[[str, SSHPipe, Optional[float]], None]


def start_pipes(pipes: Mapping[str, SSHPipe], timeout: Optional[float], *,
                per_host: Optional[int] = START_PER_HOST, then: Optional[Then] = None,
                thread_prefix: str = "sshpipe-start") -> Dict[str, BaseException]:
    """Start every pipe concurrently; return ``{name: exception}`` for those that
    did not start (or whose ``then`` raised), in the order given.

    Args:
        pipes: the pipes by name, not started.
        timeout: seconds for all of them together; None: each pipe's own
            ``ready_timeout`` (and ``then``) bound it.
        per_host: pipes starting at once per ``pipe.host``; None for no limit.
        then: called in the pipe's starter thread once it started, with the
            deadline (``time.monotonic()`` based, or None); what it raises is
            the pipe's failure.

    Returns within ``timeout`` + :data:`ABANDON_GRACE` at most.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    slots: Dict[str, threading.BoundedSemaphore] = {}
    if per_host is not None:
        for pipe in pipes.values():
            slots.setdefault(pipe.host, threading.BoundedSemaphore(per_host))
    errors: Dict[str, BaseException] = {}
    threads: Dict[str, threading.Thread] = {}
    for name, pipe in pipes.items():
        threads[name] = threading.Thread(
            target=_start_one, args=(name, pipe, slots.get(pipe.host), per_host, deadline,
                                     then, errors),
            name=f"{thread_prefix}-{name}", daemon=True)
        threads[name].start()
    for thread in threads.values():
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    late = [name for name, thread in threads.items() if thread.is_alive()]
    if late:
        for name in _abandon(late, pipes, threads):
            pipe = pipes[name]
            error = TimeoutError(
                f"pipe {name!r} ({pipe.host}): not running within {timeout:g} s; killed"
                if timeout is not None else f"pipe {name!r} ({pipe.host}): its start "
                                            "did not end; killed")
            error.__cause__ = errors.get(name)
            errors[name] = error
    return {name: errors[name] for name in pipes if name in errors}


def _start_one(name: str, pipe: SSHPipe, slot: Optional[threading.BoundedSemaphore],
               per_host: Optional[int], deadline: Optional[float], then: Optional[Then],
               errors: Dict[str, BaseException]) -> None:
    """Starter thread: start one pipe within its host's slots; record failure."""
    if slot is not None:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not slot.acquire(timeout=wait):
            errors[name] = TimeoutError(
                f"pipe {name!r} ({pipe.host}): no start slot free within the timeout "
                f"({per_host} starts at once per host)")
            return
    try:
        try:
            pipe.start()
        finally:
            if slot is not None:
                slot.release()
        if then is not None:
            then(name, pipe, deadline)
    except Exception as exc:  # recorded per pipe; the caller reports it
        errors[name] = exc


def _abandon(late: List[str], pipes: Mapping[str, SSHPipe],
             threads: Mapping[str, threading.Thread]) -> Set[str]:
    """Kill the child of every start still running past the deadline, so that its
    ``start()`` gives up, and wait (a bounded time) for the starter threads."""
    killed: Set[str] = set()
    give_up = time.monotonic() + ABANDON_GRACE
    pending = list(late)
    while pending and time.monotonic() < give_up:
        for name in pending:
            pipe = pipes[name]
            # pid is None for the instant before the child exists; retry then.
            if name not in killed and pipe.pid is not None and not pipe.released:
                pipe.kill()
                killed.add(name)
        threads[pending[0]].join(0.05)
        pending = [name for name in pending if threads[name].is_alive()]
    for name in pending:
        logger.warning("the start of pipe %r (%s) did not end after its kill", name,
                       pipes[name].host)
    return set(late)
