"""SSHExecutor: a ``concurrent.futures.Executor`` whose workers are remote hosts.

::

     caller process                                                    host "a" (and b, c ...)
    +-----------------------------------------------------------+
    | SSHExecutor (the API; holds the _Core, nothing holds it)   |
    |   submit()/map(): Task (serialized once) -> _WorkItem      |
    |        |                                                   |
    |        v            _Core, under its lock                  |
    |   Scheduler: waiting queue (+ per-host pinned queues),     |
    |   in flight per host (count and bytes), free slots         |
    |        |  assign()                                         |
    |        v                                                   |
    |   HostLink (workers._hostlink), one per host:              |  SSH   +-----------------+
    |     outbox -> sender thread -> SSHPipe.send  ==============|======> | WorkerAgent     |
    |     reader thread <- SSHPipe.recv  <=======================|======= |  pool, workers  |
    |        | events: ready / started / done / out / cancelled  |        +-----------------+
    |        v         / timeout / died / broken; the pipe's end  |
    |   _Core.on_events / on_end: resolve futures, free slots,   |
    |   assign the freed slots; host lost -> requeue / fail      |
    +-----------------------------------------------------------+

Actors:

- **Callers** of :meth:`SSHExecutor.submit` and :meth:`SSHExecutor.map` build a
  :class:`~workers.Task` (serialized here, once), queue a work item in the
  :class:`~workers._scheduler.Scheduler`, assign what fits to hosts and post it
  to each host's link. A host that held nothing gets a lone task straight from
  the submitting thread (no hop through its sender thread).
- Each host's **link** (:mod:`workers._hostlink`) sends its outbox in batches and
  reads its replies in its reader thread, which calls the core's
  :meth:`_Core.on_events` and, when the pipe ends, :meth:`_Core.on_end`. Those
  resolve futures, free slots, tune how many tasks the host may hold
  (``prefetch``: enough to cover a round trip for tasks of its observed length)
  and post waiting work to the freed slots; they never send themselves, so a
  reader never waits on its host's send direction. When a host is lost each
  task it held is requeued for another host (if it provably never started, or
  has retries left) or fails with :class:`~workers.HostLostError`. When no host
  is left the executor is broken: every unresolved future fails with one
  :class:`~workers.BrokenHostPool`.
- :meth:`TaskFuture.cancel` calls the core: a task still waiting here is
  dropped; one on a host gets a cancel posted after its own "run", and the
  host's agent drops it, or ends the worker process running it.

State: a host is STARTING, READY, LOST or CLOSED (:class:`HostState`); the
executor is open, shut down, or broken. Everything shared (scheduler, work
items, host records, the broken error) is read and written under the core's
lock; futures are resolved and messages sent outside it, since both can run
user code (callbacks) or block (a full send window).

The SSHExecutor object holds the core, and nothing holds the SSHExecutor: the
threads and futures refer to the core only. So an executor the program drops is
collected, and its finalizer shuts it down (without waiting), as
``concurrent.futures`` does. Pending work is never lost at exit: a hook run
before the interpreter joins its threads (the one ``concurrent.futures`` uses)
waits for every open executor's futures, then closes its hosts.

A task started on a host that is lost may have had side effects, so it is run
again only while it has retries; a task that was queued on the host but never
handed to a worker is requeued for free. "Never started" is known for sure only
when the agent's whole output arrived (it ended and the channel closed cleanly),
because the agent reports each start *before* the task reaches a worker; when
the link itself fails, every task the host held counts as started.
"""
from __future__ import annotations

import functools
import inspect
import itertools
import logging
import math
import multiprocessing.context
import os
import sys
import threading
import time
import weakref
from concurrent.futures import Executor, Future
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Set, Tuple, Union)

from sshpipe import serial, trust
from sshpipe._logwire import from_wire_all
from sshpipe._startmany import START_PER_HOST, start_pipes
from sshpipe.errors import RemoteTraceback, VersionSkewError
from sshpipe.pipe import SSHPipe
from workers._future import TaskFuture
from workers._hostlink import Entry, HostLink, HostState
from workers._hosts import HostSpec, parse_hosts
from workers._progress import ProgressBar
from workers._scheduler import Scheduler
from workers.errors import (BrokenHostPool, HostLostError, ResultLoadError, TaskLoadError,
                            TaskTimeoutError, WorkerDiedError)
from workers.task import Task, apply_chunk
from workers.worker_agent import WorkerAgent

__all__ = ["HostState", "SSHExecutor", "TaskFuture"]

logger = logging.getLogger(__name__)
# concurrent.futures reports an initializer that raised on its own logger, at
# CRITICAL: so do we, for the logging setups written for ProcessPoolExecutor.
_FUTURES_LOGGER = logging.getLogger("concurrent.futures")

# How long shutdown() gives each agent to stop its workers and exit.
CLOSE_TIMEOUT = 15.0
# Adaptive prefetch (when the caller gives none): a host holds, per slot, enough
# tasks to run for PIPELINE_SECONDS (about a loaded round trip), at least one and
# at most MAX_PREFETCH_PER_SLOT. More hides latency for tiny tasks; but every task
# a host holds is at stake when its link fails (it counts as started then) and
# cannot be balanced to another host.
PIPELINE_SECONDS = 0.01
MAX_PREFETCH_PER_SLOT = 128
# Weight of the newest task in the moving average of a host's task run time.
RUN_TIME_WEIGHT = 0.1
# Bytes of task payloads a host holds at most (beyond its first task), queued in
# its agent and workers: a burst of large tasks waits here, not in remote memory.
HOST_BYTES = 64 << 20

_PIPE_OPTIONS = frozenset(inspect.signature(SSHPipe.__init__).parameters) - {"self", "host"}


class _ExitGuard:
    """Holds the interpreter's exit until every open executor's futures are done.

    Its hook runs when the main thread ends, before the interpreter joins its
    non-daemon threads and before ``atexit`` (which is where multiprocessing
    kills daemon children, our pipes among them).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cores: "weakref.WeakSet[_Core]" = weakref.WeakSet()
        self._hooked = False
        self._pid = os.getpid()
        self.exiting = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget_after_fork)

    def _forget_after_fork(self) -> None:
        """A forked child (an SSHPipe's, say) owns none of the parent's executors:
        its exit must not wait for them."""
        self._lock = threading.Lock()
        self._cores = weakref.WeakSet()
        self._pid = os.getpid()

    def add(self, core: "_Core") -> None:
        with self._lock:
            self._cores.add(core)
            if not self._hooked:
                self._hooked = True
                register = getattr(threading, "_register_atexit", None)
                if register is not None:  # CPython 3.9+: what concurrent.futures uses
                    register(self._at_exit)
                else:  # pragma: no cover - other interpreters
                    import atexit

                    atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        if os.getpid() != self._pid:
            return  # inherited through fork: the hook is the parent's
        self.exiting = True
        with self._lock:
            cores = list(self._cores)
        for core in cores:
            core.close(wait_timeout=None)


_EXIT = _ExitGuard()


class _WorkItem:
    """One task on its way: the future, the payloads, where it is."""

    __slots__ = ("tid", "task", "future", "retries_left", "host", "started")

    def __init__(self, tid: int, task: Task, future: TaskFuture, retries: int):
        self.tid = tid
        self.task = task
        self.future = future
        self.retries_left = retries
        self.host: Optional[str] = None   # the host holding it now
        self.started = False              # its host reported it handed to a worker

    @property
    def size(self) -> int:
        return len(self.task.fn_payload) + len(self.task.args_payload)


class _Core:
    """The executor's state and policy, shared with its threads (see the module
    docstring); the public :class:`SSHExecutor` is a thin owner of it."""

    def __init__(self, *, retries: int, prefetch: Optional[int],
                 task_timeout: Optional[float], echo_output: bool):
        self.retries = retries
        self.prefetch = prefetch
        self.task_timeout = task_timeout
        self.echo_output = echo_output
        self.lock = threading.Lock()
        self.scheduler: Scheduler[_WorkItem] = Scheduler()
        self.items: Dict[int, _WorkItem] = {}     # every unresolved item, by task id
        self.ids = itertools.count(1)
        self.shutdown = False
        self.broken: Optional[BrokenHostPool] = None
        self.idle = threading.Condition(self.lock)  # notified when items empties
        self.links: Dict[str, HostLink] = {}
        self.trust: Dict[str, trust.TrustPolicy] = {}  # per host: what its results may be
        self._closing = False
        self._closed = threading.Event()

    # -- submitting -----------------------------------------------------------
    def submit_tasks(self, tasks: Sequence[Task]) -> List[TaskFuture]:
        failed: List[Tuple[_WorkItem, BaseException]] = []
        futures = []
        with self.lock:
            if _EXIT.exiting:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            if self.broken is not None:
                raise self.broken
            if self.shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            for task in tasks:
                if task.host is not None and task.host not in self.links:
                    raise ValueError(f"task pinned to host {task.host!r}, which is not one of "
                                     f"{sorted(self.links)}")
            for task in tasks:
                tid = next(self.ids)
                future = TaskFuture(tid, on_cancel=self.cancelled)
                item = _WorkItem(tid, task, future,
                                 self.retries if task.retries is None else task.retries)
                self.items[tid] = item
                futures.append(future)
                if task.host is not None and task.host not in self.scheduler.hosts:
                    link = self.links[task.host]
                    failed.append((item, _lost_error(link, item, link.error)))
                    continue
                self.scheduler.push(tid, item, host=task.host, size=item.size)
            batches, idle, refused = self._assign_locked()
        for item, error in failed + refused:
            self._finish(item, error=error)
        self._post(batches, idle)
        return futures

    def cancelled(self, future: TaskFuture) -> None:
        """A future was cancelled (by its owner): stop its task wherever it is."""
        with self.lock:
            item = self.items.get(future.task_id)
            link: Optional[HostLink] = None
            if item is not None:
                if item.host is None:  # still waiting here
                    self.scheduler.discard(item.tid)
                    self._forget_locked(item)
                else:
                    link = self.links[item.host]
        if link is not None and item is not None:
            # The host confirms ("cancelled", or the result that won the race);
            # the item holds its slot until then.
            link.post_cancel(item.tid)
        future.notify_cancelled()

    # -- dispatch -----------------------------------------------------------
    def _assign_locked(self) -> Tuple[Dict[str, List[_WorkItem]], Set[str],
                                      List[Tuple[_WorkItem, BaseException]]]:
        """Assign what fits; return the items by host, the hosts that held
        nothing before, and the items refused (code for another Python)."""
        batches: Dict[str, List[_WorkItem]] = {}
        refused: List[Tuple[_WorkItem, BaseException]] = []
        idle = {name for name, slots in self.scheduler.hosts.items() if not slots.inflight}
        for host_name, tid, item in self.scheduler.assign():
            if item.future.done():  # cancelled while it waited
                self.scheduler.release(host_name, tid)
                self._forget_locked(item)
                continue
            link = self.links[host_name]
            skew = _version_skew(link, item)
            if skew is not None:
                self.scheduler.release(host_name, tid)
                refused.append((item, skew))
                continue
            item.host = host_name
            item.started = False
            item.future.assign(host_name)
            batches.setdefault(host_name, []).append(item)
        return batches, idle, refused

    def _post(self, batches: Dict[str, List[_WorkItem]], idle: Set[str],
              direct: bool = True) -> None:
        for host_name, items in batches.items():
            self.links[host_name].post_runs(
                [self._entry(item) for item in items], direct=direct and host_name in idle)

    def _entry(self, item: _WorkItem) -> Entry:
        return (item.tid, item.task.fn_payload, item.task.args_payload,
                item.task.timeout or self.task_timeout)

    def _pump(self) -> None:
        """Hand waiting items to hosts with room (from a reader: never sends)."""
        with self.lock:
            batches, idle, refused = self._assign_locked()
        for item, error in refused:
            self._finish(item, error=error)
        self._post(batches, idle, direct=False)

    # -- replies (reader threads) ---------------------------------------------
    def on_events(self, link: HostLink, events: List[Tuple[Any, ...]]) -> None:
        resolved: List[Tuple[_WorkItem, str, Tuple[Any, ...]]] = []
        output: List[Tuple[str, str]] = []
        run_times: List[float] = []
        init_failure: Optional[Tuple[Any, ...]] = None
        with self.lock:
            for event in events:
                kind = event[0]
                if kind == "ready":
                    self._ready_locked(link, event[1])
                elif kind == "started":
                    slots = self.scheduler.hosts.get(link.name)
                    for tid in event[1]:
                        item = slots.inflight.get(tid) if slots is not None else None
                        if item is not None:
                            item.started = True
                            item.future.mark_started(link.name)
                elif kind == "out":
                    output.append((event[2], event[3]))
                elif kind == "broken":
                    init_failure = event
                    slots = self.scheduler.hosts.get(link.name)
                    for tid in event[3]:
                        item = slots.inflight.get(tid) if slots is not None else None
                        if item is not None:
                            item.started = False  # it never ran: free to go elsewhere
                else:
                    if kind == "done":
                        run_times.append(event[6])
                    item = self.scheduler.release(link.name, event[1])
                    if item is not None:
                        item.host = None
                        resolved.append((item, kind, event))
            if run_times and self.prefetch is None:
                self._tune_prefetch(link, sum(run_times) / len(run_times))
        if init_failure is not None:
            self._initializer_failed(link, init_failure)
        for stream, text in output:
            _echo(stream, text)
        for item, kind, event in resolved:
            self._settle(link, item, kind, event)
        with self.lock:
            for item, _, _ in resolved:
                self._forget_locked(item)
        self._pump()

    def _ready_locked(self, link: HostLink, info: Dict[str, Any]) -> None:
        link.info = info
        if link.state is HostState.STARTING:
            link.state = HostState.READY
            slots = int(info["slots"])
            prefetch = slots if self.prefetch is None else self.prefetch  # tuned later
            self.scheduler.add_host(link.name, slots, prefetch, HOST_BYTES)
        link.ready.set()

    def _initializer_failed(self, link: HostLink, event: Tuple[Any, ...]) -> None:
        _, payload, tb, _ = event
        try:
            error = _load(payload, self.trust[link.name], link.name,
                          "the initializer's exception")
        except BaseException as exc:  # its exception cannot be loaded here: its text will do
            error = RuntimeError(f"the initializer raised (its exception could not be "
                                 f"loaded here: {exc!r})")
        if isinstance(error, BaseException):
            error.__cause__ = RemoteTraceback(f'\n"""\n[on {link.name}] {tb}"""')
        lost = BrokenHostPool(f"{link.name}: the initializer raised {error!r}; the host "
                              f"takes no tasks", link.name)
        lost.__cause__ = error if isinstance(error, BaseException) else None
        with self.lock:
            link.error = lost
            link.init_failed = True
        _FUTURES_LOGGER.critical("Exception in initializer on %s:\n%s", link.name, tb)

    def _tune_prefetch(self, link: HostLink, seconds: float) -> None:
        """Keep enough tasks on the host to cover a round trip: many for tasks of
        microseconds, one extra per slot for tasks of 10 ms and more."""
        link.run_time = seconds if link.run_time is None else (
            link.run_time * (1 - RUN_TIME_WEIGHT) + seconds * RUN_TIME_WEIGHT)
        per_slot = min(MAX_PREFETCH_PER_SLOT,
                       max(1, math.ceil(PIPELINE_SECONDS / max(link.run_time, 1e-6))))
        slots = self.scheduler.hosts.get(link.name)
        if slots is not None:
            slots.capacity = slots.slots * (1 + per_slot)

    def _settle(self, link: HostLink, item: _WorkItem, kind: str, event: Tuple[Any, ...]) -> None:
        """Resolve a future from its host's event (outside the lock)."""
        name = item.task.name
        if kind == "done":
            _, tid, ok, payload, tb, records, _seconds = event
            item.future.logs = from_wire_all(records, link.name)
            try:
                value = _load(payload, self.trust[link.name], link.name,
                              f"the {'result' if ok is True else 'exception'} of task {tid} "
                              f"({name})", tid)
            except BaseException as exc:  # SystemExit too: it must not end this thread
                what = "result" if ok is True else "exception"
                error = ResultLoadError(f"{link.name}: the {what} of task {tid} ({name}) "
                                        f"could not be loaded here: {exc!r}", link.name)
                error.__cause__ = exc
                self._resolve(item, error=error)
                return
            if ok is True:
                self._resolve(item, result=value)
                return
            if isinstance(value, BaseException) and tb:
                value.__cause__ = RemoteTraceback(f'\n"""\n[on {link.name}] {tb}"""')
            if ok == "load":
                load_error = TaskLoadError(f"{link.name}: task {tid} ({name}) could not be "
                                           f"loaded in the worker: {value!r}", link.name)
                load_error.__cause__ = value if isinstance(value, BaseException) else None
                self._resolve(item, error=load_error)
            else:
                self._resolve(item, error=value if isinstance(value, BaseException) else
                              RuntimeError(f"task {tid} raised a non-exception: {value!r}"))
        elif kind == "cancelled":
            # Cancelled by us (the future is already done) or dropped on arrival.
            item.future.cancel()
        elif kind == "timeout":
            seconds, records = event[2], event[3]
            item.future.logs = from_wire_all(records, link.name)
            self._resolve(item, error=TaskTimeoutError(
                f"{link.name}: task {item.tid} ({name}) ran past its timeout of "
                f"{seconds:g} s; its worker process was ended", link.name, seconds))
        elif kind == "died":
            exitcode, records = event[2], event[3]
            item.future.logs = from_wire_all(records, link.name)
            self._resolve(item, error=WorkerDiedError(
                f"{link.name}: the worker process running task {item.tid} ({name}) "
                f"died (exit code {exitcode})", link.name, exitcode))

    @staticmethod
    def _resolve(item: _WorkItem, result: Any = None,
                 error: Optional[BaseException] = None) -> None:
        """Resolve the item's future (outside the lock: callbacks run here). The
        caller forgets the item."""
        try:
            if error is not None:
                item.future.settle_exception(error)
            else:
                item.future.settle_result(result)
        except BaseException:  # a done callback's SystemExit: this thread goes on
            logger.exception("task %d: a done callback raised", item.tid)

    def _finish(self, item: _WorkItem, result: Any = None,
                error: Optional[BaseException] = None) -> None:
        """Resolve and forget one item."""
        self._resolve(item, result, error)
        with self.lock:
            self._forget_locked(item)

    def _forget_locked(self, item: _WorkItem) -> None:
        if self.items.pop(item.tid, None) is not None and not self.items:
            self.idle.notify_all()

    def on_unsendable(self, link: HostLink, tids: Sequence[int], error: BaseException) -> None:
        """Tasks the host's pipe refused (too large for it, say): they fail."""
        items = []
        with self.lock:
            for tid in tids:
                item = self.scheduler.release(link.name, tid)
                if item is not None:
                    item.host = None
                    items.append(item)
        for item in items:
            self._resolve(item, error=error)
        with self.lock:
            for item in items:
                self._forget_locked(item)
        self._pump()

    # -- hosts ending -----------------------------------------------------------
    def on_end(self, link: HostLink, cause: Optional[BaseException], clean: bool) -> None:
        """The host's pipe ended: requeue or fail what it held."""
        failed: List[Tuple[_WorkItem, BaseException]] = []
        with self.lock:
            if link.state is HostState.CLOSED:
                self.scheduler.remove_host(link.name)
                return
            was_starting = link.state is HostState.STARTING
            link.state = HostState.LOST
            if link.error is None:  # an initializer failure says more than the end
                link.error = cause
            cause = link.error
            inflight, pinned = self.scheduler.remove_host(link.name)
            requeued = 0
            for _tid, item in sorted(inflight.items(), reverse=True):
                item.host = None
                if item.future.done():  # cancelled while it ran there
                    self._forget_locked(item)
                    continue
                if clean and not item.started:
                    self._requeue(item)
                    requeued += 1
                elif item.retries_left > 0 and item.task.host is None:
                    item.retries_left -= 1
                    item.future.retries_used += 1
                    self._requeue(item)
                    requeued += 1
                else:
                    failed.append((item, _lost_error(link, item, cause)))
            for _tid, item in pinned:
                failed.append((item, _lost_error(link, item, cause)))
            if not was_starting and not self.shutdown:
                logger.warning("%s: host lost (%s); %d tasks requeued, %d failed", link.name,
                               cause, requeued, len(failed))
            if not any(h.state in (HostState.READY, HostState.STARTING)
                       for h in self.links.values()):
                failed.extend(self._break_locked(cause))
        for item, error in failed:
            self._resolve(item, error=error)
        with self.lock:
            for item, _ in failed:
                self._forget_locked(item)
        self._pump()

    def _requeue(self, item: _WorkItem) -> None:
        item.started = False
        try:
            self.scheduler.push(item.tid, item, host=item.task.host, front=True, size=item.size)
        except KeyError:
            pass  # its pinned host is gone: the caller fails it

    def _break_locked(self, cause: Optional[BaseException]
                      ) -> List[Tuple[_WorkItem, BaseException]]:
        """No host left: the executor is broken; every unresolved item fails."""
        if self.broken is None:
            self.broken = BrokenHostPool("every host of the executor is lost: " + "; ".join(
                f"{h.name}: {h.error}" for h in self.links.values()))
            self.broken.__cause__ = cause
            if not self.shutdown:
                logger.error("%s", self.broken)
        self.scheduler.take_waiting()
        return [(item, self.broken) for item in self.items.values() if not item.future.done()]

    # -- shutting down ----------------------------------------------------------
    def begin_shutdown(self, cancel_futures: bool) -> None:
        with self.lock:
            self.shutdown = True
            waiting = self.scheduler.take_waiting() if cancel_futures else []
        for _, item in waiting:
            item.future.cancel()  # its hook finds it no longer queued
            with self.lock:
                self._forget_locked(item)

    def close(self, wait_timeout: Optional[float]) -> bool:
        """Once every future is resolved (within ``wait_timeout``), close the hosts.
        Returns False if the futures were not done in time (nothing closed)."""
        deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
        with self.lock:
            self.shutdown = True
            while self.items:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.idle.wait(remaining)
            first = not self._closing
            self._closing = True
            links = list(self.links.values())
            if first:
                for link in links:
                    if link.state in (HostState.READY, HostState.STARTING):
                        link.state = HostState.CLOSED
        if not first:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            return self._closed.wait(remaining)
        closers = [threading.Thread(target=link.close, args=(CLOSE_TIMEOUT,),
                                    name=f"workers-close-{link.name}", daemon=True)
                   for link in links]
        for thread in closers:
            thread.start()
        for thread in closers:
            thread.join(CLOSE_TIMEOUT * 2 + 10)
        self._closed.set()
        return True

    def close_later(self) -> None:
        """Close once idle, from a thread of its own (shutdown(wait=False), or the
        executor was garbage-collected)."""
        self.begin_shutdown(cancel_futures=False)
        threading.Thread(target=self.close, args=(None,), name="workers-shutdown",
                         daemon=True).start()


class SSHExecutor(Executor):
    """Run callables on remote hosts over SSH, as a ``concurrent.futures.Executor``.

    Each host runs a :class:`~workers.WorkerAgent` (started zero-install: the
    remote needs only Python 3.9+) with ``slots`` worker processes. The
    constructor returns once every host has either started its pool or failed.

    Args:
        hosts: ssh config aliases (or addresses); an entry may also be
            ``(alias, options)`` or a dict with a ``"host"`` key, where options
            override the executor's per-host arguments below (``slots``,
            ``python``, ``env``, ``cwd``, ``heartbeat``, ``config`` ...) and
            ``name`` labels the host (default: the alias).
        slots: worker processes per host (default: the host's CPU count).
        config: the OpenSSH client config file.
        retries: how many times a task is resubmitted when the host running it
            is lost (per task with :meth:`Task.options`).
        prefetch: tasks queued on a host beyond its slots, so a worker finds
            its next task there (default: tuned to the tasks' run time).
        task_timeout: default per-task timeout in seconds (None: no limit).
        python: the remote interpreter (default ``python3``).
        modules: local modules the tasks need that the remotes lack; their
            source travels with the agent.
        heartbeat: seconds between SSH heartbeats; a host is lost after
            ServerAliveCountMax silent ones (default: the config's
            ServerAliveInterval, else 10).
        log_level: the level from which tasks' log records are sent back.
        ready_timeout: seconds the hosts get to start, all together.
        initializer, initargs: every remote worker process calls
            ``initializer(*initargs)`` once, before its first task (to open a
            database connection, say). If it raises, its host takes no tasks:
            the tasks it held go to other hosts, and with no host left every
            future fails with :class:`~workers.BrokenHostPool`, the
            initializer's exception (and remote traceback) chained.
        max_tasks_per_child: tasks a remote worker process runs before a fresh
            one replaces it (None: no limit).
        mp_context: the ``multiprocessing`` context whose start method starts
            the local SSHPipe processes (default: the global one).
        echo_output: what tasks print (``sys.stdout``, ``sys.stderr``) is
            printed here, as a ProcessPoolExecutor's workers would on a shared
            terminal; False leaves it in each host's agent output.
        trust_remote: what the hosts' results, exceptions and log records may
            make this process build (see :mod:`sshpipe.trust`; per host too):
            False (default) plain data, stdlib values, exceptions and enums; a
            list adds classes, functions and modules; True trusts the hosts to
            run code here.
        **pipe_options: other :class:`~sshpipe.SSHPipe` arguments (``env``,
            ``cwd``, ``connect_timeout``, ``identity_file`` ...), for every host.

    Raises:
        TypeError: an argument neither the executor nor SSHPipe takes.
        ValueError: an argument out of range, or one SSHPipe refuses (an
            invalid ``env`` name ...); the host is named, the cause chained.
        BrokenHostPool: no host could be started; the first failure is chained.
    """

    def __init__(self, hosts: Iterable[HostSpec], *, slots: Optional[int] = None,
                 config: Optional[str] = None, retries: int = 0,
                 prefetch: Optional[int] = None, task_timeout: Optional[float] = None,
                 python: str = "python3", modules: Sequence[str] = (),
                 heartbeat: Optional[float] = None, log_level: int = logging.INFO,
                 ready_timeout: float = 60.0,
                 initializer: Optional[Callable[..., Any]] = None, initargs: Tuple[Any, ...] = (),
                 max_tasks_per_child: Optional[int] = None,
                 mp_context: Optional[multiprocessing.context.BaseContext] = None,
                 echo_output: bool = True, trust_remote: trust.TrustRemote = False,
                 **pipe_options: Any):
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, not {retries}")
        if slots is not None and slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        if task_timeout is not None and task_timeout <= 0:
            raise ValueError(f"task_timeout must be positive, not {task_timeout}")
        if max_tasks_per_child is not None and (
                not isinstance(max_tasks_per_child, int) or max_tasks_per_child < 1):
            raise ValueError(f"max_tasks_per_child must be an int of at least 1, not "
                             f"{max_tasks_per_child!r}")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        _check_pipe_options(pipe_options)
        if isinstance(hosts, str):
            raise TypeError(f"hosts is a list of hosts, not the string {hosts!r}")
        self.retries = retries
        self.prefetch = prefetch
        self.task_timeout = task_timeout
        self.ready_timeout = ready_timeout
        handler_kwargs: Dict[str, Any] = {"log_level": log_level, "echo": echo_output,
                                          "max_tasks_per_child": max_tasks_per_child}
        if initializer is not None:
            handler_kwargs["initializer"] = serial.dumps((initializer, tuple(initargs)))
        core = _Core(retries=retries, prefetch=prefetch, task_timeout=task_timeout,
                     echo_output=echo_output)
        defaults = {"config": config, "python": python, "heartbeat": heartbeat,
                    "ready_timeout": ready_timeout, "trust_remote": trust_remote, **pipe_options}
        if mp_context is not None:
            defaults["mp_context"] = mp_context
        all_modules = ["workers"] + [m for m in modules if m != "workers"]
        pipes: Dict[str, SSHPipe] = {}
        for name, address, options in parse_hosts(hosts):
            host_slots = options.pop("slots", slots)
            _check_pipe_options(options, name)
            merged = {**defaults, **options}
            merged["modules"] = all_modules + list(merged.pop("modules", ()) or ())
            try:
                pipes[name] = SSHPipe(address, handler=WorkerAgent,
                                      handler_kwargs={"slots": host_slots, **handler_kwargs},
                                      name=f"workers-{name}", **merged)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"host {name!r}: {exc}") from exc
            core.links[name] = HostLink(name, pipes[name], core)
            core.trust[name] = trust.policy_for(merged["trust_remote"])
        self._core = core
        _EXIT.add(core)
        # Dropped without shutdown(): close once idle. Not at exit, where the
        # exit guard has closed everything already.
        # (typeshed gives finalize both `__slots__ = ()` and `atexit: bool`; at
        # run time atexit is a settable property)
        weakref.finalize(self, core.close_later).atexit = False  # type: ignore[misc]
        self._start(pipes)

    def _start(self, pipes: Mapping[str, SSHPipe]) -> None:
        core = self._core

        def then(name: str, pipe: SSHPipe, deadline: Optional[float]) -> None:
            core.links[name].start(deadline)

        # At most START_PER_HOST connect to one address at once (sshd's MaxStartups).
        errors = start_pipes(pipes, self.ready_timeout, per_host=START_PER_HOST, then=then,
                             thread_prefix="workers-start")
        with core.lock:
            for name, error in errors.items():
                link = core.links[name]
                if link.state is HostState.STARTING:
                    link.state = HostState.LOST
                    link.error = link.error or error
            # A host whose initializer raised did start: its futures and the
            # executor's state tell that error, not the constructor.
            ready = [link for link in core.links.values()
                     if link.state is HostState.READY or link.init_failed]
            failures = [link for link in core.links.values()
                        if link.state is HostState.LOST and not link.init_failed]
        for link in failures:
            logger.warning("not started: %s", _naming_host(link.name, link.error))
            link.kill()
        if not ready:
            core.close_later()
            error = BrokenHostPool("no host could be started: " + "; ".join(
                _naming_host(link.name, link.error) for link in failures))
            raise error from (failures[0].error if failures else None)

    # -- Executor API ---------------------------------------------------------
    def submit(self, fn: Union[Callable[..., Any], Task], /, *args: Any,
               **kwargs: Any) -> TaskFuture:
        """Schedule ``fn(*args, **kwargs)`` (or a :class:`~workers.Task`) on some host.

        A call that cannot be serialized gives a future that fails with what
        serializing raised (``PicklingError`` ...), as ``ProcessPoolExecutor``
        does; a :class:`~workers.Task` is serialized when it is built.

        Returns:
            A :class:`TaskFuture`.

        Raises:
            BrokenHostPool: every host is lost.
            RuntimeError: after :meth:`shutdown`, or once the interpreter exits.
            ValueError: the task is pinned to a host the executor does not have.
        """
        if isinstance(fn, Task):
            if args or kwargs:
                raise TypeError("submit(task) takes no further arguments; put them in the Task")
            task = fn
        else:
            try:
                task = Task(fn, *args, **kwargs)
            except TypeError as exc:
                if not callable(fn):
                    raise
                return self._failed(exc)
            except Exception as exc:  # serializing the call failed: the future says so
                return self._failed(exc)
        return self._core.submit_tasks([task])[0]

    def _failed(self, error: BaseException) -> TaskFuture:
        with self._core.lock:
            if self._core.shutdown or _EXIT.exiting:
                raise RuntimeError("cannot schedule new futures after shutdown")
        future = TaskFuture()
        future.settle_exception(error)
        return future

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: Optional[float] = None, chunksize: int = 1,
            progress: bool = False) -> Iterator[Any]:
        """Like ``concurrent.futures.Executor.map``: ``fn`` over the iterables'
        items, results in order, all tasks submitted at once.

        Args:
            timeout: seconds from this call after which the iterator raises
                ``TimeoutError`` (the remaining tasks are then cancelled).
            chunksize: items per task; large chunks cut per-task overhead.
            progress: draw a progress bar on stderr, if it is a terminal.

        Raises:
            Exception: the first failing item's exception, from the iterator.
        """
        if chunksize < 1:
            raise ValueError(f"chunksize must be at least 1, not {chunksize}")
        end = None if timeout is None else time.monotonic() + timeout
        name = getattr(fn, "__qualname__", None) or "map"
        argument_tuples = list(zip(*iterables))
        count = len(argument_tuples)
        calls = (argument_tuples if chunksize == 1 else
                 [argument_tuples[i:i + chunksize] for i in range(0, count, chunksize)])
        del argument_tuples
        # As ProcessPoolExecutor does, what cannot be serialized fails its
        # future(s); the iterator raises it in turn.
        made: List[Union[Task, BaseException]] = []
        try:
            fn_payload = serial.dumps(fn if chunksize == 1 else functools.partial(apply_chunk, fn))
        except Exception as exc:
            made = [exc] * len(calls)
        else:
            for call in calls:
                try:
                    arguments: Tuple[Any, Dict[str, Any]] = (
                        (call, {}) if chunksize == 1 else ((call,), {}))
                    made.append(Task.from_payloads(fn_payload, serial.dumps(arguments), name))
                except Exception as exc:
                    made.append(exc)
        del calls
        submitted = iter(self._core.submit_tasks([t for t in made if isinstance(t, Task)]))
        futures = [next(submitted) if isinstance(t, Task) else self._failed(t) for t in made]
        del made
        bar = None
        if progress:
            bar = ProgressBar(count, enabled=True, label=name)
            for index, future in enumerate(futures):
                weight = min(chunksize, count - index * chunksize)
                future.add_done_callback(functools.partial(_advance, bar, weight))
        return _results(futures, end, chunksize > 1, bar)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False,
                 timeout: Optional[float] = None) -> None:
        """Stop taking tasks, and end the hosts' agents once every future is
        resolved (``wait``: before returning).

        Args:
            wait: block until every future is resolved and every host closed.
            cancel_futures: cancel the futures whose task has not been handed to
                a host yet.
            timeout: with ``wait``, the most seconds to wait (an extension of
                ``concurrent.futures``). Past it TimeoutError is raised and the
                hosts close in the background once the futures are done.

        Raises:
            TimeoutError: not done within ``timeout``.
        """
        core = self._core
        core.begin_shutdown(cancel_futures)
        if not wait:
            core.close_later()
            return
        if not core.close(wait_timeout=timeout):
            core.close_later()
            with core.lock:
                left = len(core.items)
            raise TimeoutError(f"{left} futures still unresolved after {timeout:g} s; "
                               "the hosts close once they are")

    # -- introspection --------------------------------------------------------
    @property
    def hosts(self) -> Dict[str, HostState]:
        """Each host's state, by name."""
        with self._core.lock:
            return {name: link.state for name, link in self._core.links.items()}

    def remote_info(self, host: str) -> Dict[str, Any]:
        """The host's agent: pid, host, python ... (the pipe's hello) plus its pool's
        slots and cpus, and ``error`` once the host is lost."""
        link = self._core.links[host]
        info = dict(link.pipe.remote_info)
        with self._core.lock:
            info.update(link.info)
            info["state"] = link.state
            info["error"] = link.error
        return info

    @property
    def broken(self) -> bool:
        return self._core.broken is not None

    @property
    def _broken(self) -> Optional[BrokenHostPool]:
        """ProcessPoolExecutor's attribute of the same name (code written for it,
        CPython's tests among it, polls it): the error once broken, else None."""
        return self._core.broken

    def __repr__(self) -> str:
        states = ", ".join(f"{name}={state.value}" for name, state in self.hosts.items())
        status = ("broken" if self._core.broken else "shut down" if self._core.shutdown
                  else "open")
        return f"<SSHExecutor {status} {states}>"


def _results(futures: List[TaskFuture], end: Optional[float], chunked: bool,
             bar: Optional[ProgressBar]) -> Iterator[Any]:
    """map()'s iterator. Holds no reference to a result it has yielded (nor to
    the executor): each future is popped before its result is taken."""
    try:
        futures.reverse()
        while futures:
            remaining = None if end is None else end - time.monotonic()
            if chunked:
                chunk = _result_or_cancel(futures.pop(), remaining)
                chunk.reverse()
                while chunk:
                    yield chunk.pop()
            else:
                yield _result_or_cancel(futures.pop(), remaining)
    finally:
        for future in futures:
            future.cancel()
        if bar is not None:
            bar.close()


def _result_or_cancel(future: Future[Any], timeout: Optional[float]) -> Any:
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        del future  # no reference to it (nor its result) from this frame


def _advance(bar: ProgressBar, weight: int, future: Future[Any]) -> None:
    bar.advance(weight)


def _echo(stream: str, text: str) -> None:
    """Print a task's output here, where ProcessPoolExecutor users look for it."""
    target = sys.stderr if stream == "stderr" else sys.stdout
    try:
        target.write(text)
        target.flush()
    except (OSError, ValueError, AttributeError):
        pass  # no usable stream here: the output is dropped, as a print would fail


def _load(payload: bytes, policy: trust.TrustPolicy, host: str, what: str,
          seq: Optional[int] = None) -> Any:
    """A result or exception from a remote, under its host's trust policy.

    Raises:
        PayloadError: (UntrustedPayload: refused) naming the host and the task.
    """
    return serial.loads(payload, policy, host=host, what=what, seq=seq)


def _lost_error(link: HostLink, item: _WorkItem, cause: Optional[BaseException]) -> HostLostError:
    what = "while running" if item.started else "while holding"
    error = HostLostError(f"{link.name}: host lost {what} task {item.tid} ({item.task.name}): "
                          f"{cause}", link.name)
    error.__cause__ = cause
    return error


def _version_skew(link: HostLink, item: _WorkItem) -> Optional[VersionSkewError]:
    """The task carries code the host's Python cannot load (a function sent by
    value, made by another minor version): the error, else None."""
    return serial.code_skew((item.task.fn_payload, item.task.args_payload),
                            str(link.info.get("python", "")), link.name,
                            f"task {item.tid} ({item.task.name})")


def _check_pipe_options(options: Mapping[str, Any], host: Optional[str] = None) -> None:
    unknown = sorted(set(options) - _PIPE_OPTIONS - {"slots", "name", "mp_context"})
    if unknown:
        where = f" (host {host!r})" if host else ""
        raise TypeError(f"SSHExecutor() got unexpected keyword arguments{where}: "
                        + ", ".join(unknown))


def _naming_host(name: str, error: Any) -> str:
    """``name: error``, naming the host once (most errors already begin with it)."""
    text = str(error)
    return text if text.startswith(f"{name}:") else f"{name}: {text}"
