"""SSHExecutor: a ``concurrent.futures.Executor`` whose workers are remote hosts.

::

     caller process                                                    host "a" (and b, c ...)
    +-----------------------------------------------------------+
    | submit()/map(): Task (serialized once) -> _WorkItem       |
    |        |                                                   |
    |        v            under the executor lock                |
    |   Scheduler: waiting queue (+ per-host pinned queues),     |
    |   in flight per host, free slots  --assign()-->            |
    |        |                                                   |
    |        v  host.outbox (its own lock): ("run", item),       |
    |           ("cancel", tid), in order                        |
    |   sender thread (one per host): drains the outbox,         |  SSH   +-----------------+
    |     SSHPipe.send(("run", [every queued task]))  ===========|======> | WorkerAgent     |
    |     SSHPipe.send(("cancel", tid))                          |        |  pool thread    |
    |                                                            |        |  N worker procs |
    |   reader thread (one per host): SSHPipe.recv()  <==========|======= |                 |
    |     ready / started / done / cancelled / timeout / died    |        +-----------------+
    |     -> Scheduler.release(), future.set_result()/...        |
    |     -> assign() the freed slots                            |
    |     on EOFError / PipeBroken: host lost -> requeue/fail    |
    +-----------------------------------------------------------+

Actors:

- **Callers** of :meth:`SSHExecutor.submit` and :meth:`SSHExecutor.map` build a
  :class:`~workers.Task` (serialized here, once), queue a work item in the
  :class:`~workers._scheduler.Scheduler`, assign what fits to hosts and put it
  in each host's outbox.
- One **sender thread per host** sends its outbox: all the tasks queued since
  its last send go as one message, so a burst of ``submit()`` calls costs a few
  frames, not one each; a cancel follows the task's own "run", never precedes it.
- One **reader thread per host** reads that host's replies. It resolves futures,
  frees slots, tunes how many tasks the host may hold (``prefetch``: enough to
  cover a round trip for tasks of its observed length) and hands waiting work to
  the freed slots. When the pipe ends it declares the host lost: each task the
  host held is requeued for another host (if it provably never started, or has
  retries left) or fails with :class:`~workers.HostLostError`. When no host is
  left the executor is broken: every unresolved future fails with one
  :class:`~workers.BrokenHostPool`.
- :meth:`TaskFuture.cancel` on a running task posts a cancel to its host, whose
  agent has the worker process running it end (and replaces it).

State: a host is STARTING, READY, LOST or CLOSED (:class:`HostState`); the
executor is open, shut down, or broken. Everything shared (scheduler, work
items, host states, the broken error) is read and written under ``_lock``;
futures are resolved and messages sent outside it, since both can run user code
(callbacks) or block (a full send window).

A task started on a host that is lost may have had side effects, so it is run
again only while it has retries; a task that was queued on the host but never
handed to a worker is requeued for free. "Never started" is known for sure only
when the agent's whole output arrived (it ended and the channel closed cleanly),
because the agent reports each start *before* the task reaches a worker; when
the link itself fails, every task the host held counts as started.
"""
from __future__ import annotations

import functools
import itertools
import logging
import math
import platform
import threading
import time
from concurrent.futures import Executor, Future, InvalidStateError
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set,
                    Tuple, Union)

from sshpipe import serial
from sshpipe.errors import (PipeBroken, PipeClosed, RemoteTraceback, SSHPipeError,
                            VersionSkewError)
from sshpipe.pipe import SSHPipe
from workers._future import TaskFuture
from workers._hosts import Host, HostSpec, HostState, parse_hosts
from workers._progress import ProgressBar
from workers._scheduler import Scheduler
from workers.agent import WorkerAgent
from workers.errors import BrokenHostPool, HostLostError, TaskTimeoutError, WorkerDiedError
from workers.task import Task, apply_chunk

__all__ = ["HostState", "SSHExecutor", "TaskFuture"]

logger = logging.getLogger(__name__)

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

# The largest "run" message the sender makes of several tasks.
MESSAGE_BYTES = 4 << 20

_LOCAL_PYTHON = platform.python_version()

class _WorkItem:
    """One task on its way: the future, the payloads, where it is."""

    __slots__ = ("tid", "task", "future", "retries_left", "host", "started", "running")

    def __init__(self, tid: int, task: Task, future: TaskFuture, retries: int):
        self.tid = tid
        self.task = task
        self.future = future
        self.retries_left = retries
        self.host: Optional[str] = None   # the host holding it now
        self.started = False              # its host reported it handed to a worker
        self.running = False              # the future has been set running



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
            its next task there (default: as many as the host's slots).
        task_timeout: default per-task timeout in seconds (None: no limit).
        python: the remote interpreter (default ``python3``).
        modules: local modules the tasks need that the remotes lack; their
            source travels with the agent.
        heartbeat: seconds between SSH heartbeats; a host is lost after
            ServerAliveCountMax silent ones (default: the config's
            ServerAliveInterval, else 10).
        log_level: the level from which tasks' log records are sent back.
        ready_timeout: seconds each host gets to start.
        **pipe_options: other :class:`~sshpipe.SSHPipe` arguments (``env``,
            ``cwd``, ``connect_timeout``, ``identity_file`` ...), for every host.

    Raises:
        BrokenHostPool: no host could be started; the first failure is chained.
    """

    def __init__(self, hosts: Iterable[HostSpec], *, slots: Optional[int] = None,
                 config: Optional[str] = None, retries: int = 0,
                 prefetch: Optional[int] = None, task_timeout: Optional[float] = None,
                 python: str = "python3", modules: Sequence[str] = (),
                 heartbeat: Optional[float] = None, log_level: int = logging.INFO,
                 ready_timeout: float = 60.0, **pipe_options: Any):
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, not {retries}")
        if slots is not None and slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        if task_timeout is not None and task_timeout <= 0:
            raise ValueError(f"task_timeout must be positive, not {task_timeout}")
        self.retries = retries
        self.prefetch = prefetch
        self.task_timeout = task_timeout
        self.ready_timeout = ready_timeout
        self._log_level = log_level
        self._lock = threading.Lock()
        self._scheduler: Scheduler[_WorkItem] = Scheduler()
        self._items: Dict[int, _WorkItem] = {}     # every unresolved item, by task id
        self._ids = itertools.count(1)
        self._shutdown = False
        self._broken: Optional[BrokenHostPool] = None
        self._idle = threading.Condition(self._lock)  # notified when _items empties
        self._hosts: Dict[str, Host] = {}
        defaults = {"config": config, "python": python, "heartbeat": heartbeat,
                    "ready_timeout": ready_timeout, **pipe_options}
        all_modules = ["workers"] + [m for m in modules if m != "workers"]
        for name, address, options in parse_hosts(hosts):
            host_slots = options.pop("slots", slots)
            merged = {**defaults, **options}
            merged["modules"] = all_modules + list(merged.pop("modules", ()) or ())
            self._hosts[name] = Host(name, address, host_slots, merged)
        self._start_hosts()

    # -- hosts ------------------------------------------------------------
    def _start_hosts(self) -> None:
        starters = [threading.Thread(target=self._start_host, args=(host,),
                                     name=f"workers-start-{host.name}", daemon=True)
                    for host in self._hosts.values()]
        for thread in starters:
            thread.start()
        deadline = time.monotonic() + self.ready_timeout + 30.0
        for host in self._hosts.values():
            host.ready.wait(max(0.0, deadline - time.monotonic()))
        for thread in starters:
            thread.join(max(0.0, deadline - time.monotonic()))
        failures = []
        with self._lock:
            for host in self._hosts.values():
                if host.state is HostState.STARTING:
                    host.state = HostState.LOST
                    host.error = TimeoutError(f"{host.name}: the worker agent was not ready "
                                              f"within {self.ready_timeout:g} s")
                if host.state is HostState.LOST:
                    failures.append(host)
            ready = [h for h in self._hosts.values() if h.state is HostState.READY]
        for host in failures:
            logger.warning("%s: not started: %s", host.name, host.error)
            if host.pipe is not None:
                host.pipe.kill()
        if not ready:
            self.shutdown(wait=False)
            error = BrokenHostPool("no host could be started: " + "; ".join(
                f"{h.name}: {h.error}" for h in failures))
            raise error from failures[0].error

    def _start_host(self, host: Host) -> None:
        """Starter thread: open the pipe, start the reader, say hello."""
        options = dict(host.pipe_options)
        pipe = SSHPipe(host.address, handler=WorkerAgent,
                       handler_kwargs={"slots": host.slots, "log_level": self._log_level},
                       name=f"workers-{host.name}", **options)
        host.pipe = pipe
        try:
            pipe.start()
            pipe.send(("hello", {}))
        except (SSHPipeError, OSError, ValueError) as exc:
            with self._lock:
                host.state = HostState.LOST
                host.error = exc
            host.ready.set()
            return
        host.reader = threading.Thread(target=self._read_host, args=(host,),
                                       name=f"workers-reader-{host.name}", daemon=True)
        host.reader.start()
        host.sender = threading.Thread(target=self._send_loop, args=(host,),
                                       name=f"workers-sender-{host.name}", daemon=True)
        host.sender.start()

    def _read_host(self, host: Host) -> None:
        """Reader thread: the host's replies, until its pipe ends."""
        pipe = host.pipe
        assert pipe is not None
        clean = False
        cause: Optional[BaseException] = None
        while True:
            try:
                events = pipe.recv()
            except EOFError:
                clean = True
                break
            except (PipeBroken, PipeClosed) as exc:
                # recv() raises "the pipe is broken" from what broke it: keep the latter.
                cause = exc.__cause__ if isinstance(exc.__cause__, SSHPipeError) else exc
                break
            self._on_events(host, events)
        if clean:
            try:
                response = pipe.response(timeout=5.0)
                cause = PipeBroken(f"{host.name}: the worker agent ended ({response.reason or 'no reason given'}"
                                   f", exit status {response.exitcode})"
                                   + (f"; remote stderr: {response.stderr.strip()[-500:]}"
                                      if response.stderr.strip() else ""))
            except (SSHPipeError, TimeoutError) as exc:
                cause = exc
        self._host_ended(host, cause, clean)

    def _host_ended(self, host: Host, cause: Optional[BaseException], clean: bool) -> None:
        """The host's pipe ended: requeue or fail what it held."""
        failed: List[Tuple[_WorkItem, BaseException]] = []
        with self._lock:
            if host.state is HostState.CLOSED:
                self._scheduler.remove_host(host.name)
                host.ready.set()
                return
            was_starting = host.state is HostState.STARTING
            host.state = HostState.LOST
            host.error = cause
            host.ready.set()
            inflight, pinned = self._scheduler.remove_host(host.name)
            requeued = 0
            for tid, item in sorted(inflight.items(), reverse=True):
                item.host = None
                if item.future.done():  # cancelled while it ran there
                    self._items.pop(tid, None)
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
                    failed.append((item, self._lost_error(host, item, cause)))
            for tid, item in pinned:
                failed.append((item, self._lost_error(host, item, cause)))
            if not was_starting:
                logger.warning("%s: host lost (%s); %d tasks requeued, %d failed", host.name,
                               cause, requeued, len(failed))
            if not self._shutdown and not any(
                    h.state in (HostState.READY, HostState.STARTING) for h in self._hosts.values()):
                failed.extend(self._break_locked(cause))
        for item, error in failed:
            self._resolve(item, error=error)
        self._pump()

    def _requeue(self, item: _WorkItem) -> None:
        item.started = False
        try:
            self._scheduler.push(item.tid, item, host=item.task.host, front=True)
        except KeyError:
            pass  # its pinned host is gone: the caller fails it

    @staticmethod
    def _lost_error(host: Host, item: _WorkItem, cause: Optional[BaseException]) -> HostLostError:
        what = "while running" if item.started else "while holding"
        error = HostLostError(f"{host.name}: host lost {what} task {item.tid} ({item.task.name}): "
                              f"{cause}", host.name)
        error.__cause__ = cause
        return error

    def _break_locked(self, cause: Optional[BaseException]) -> List[Tuple[_WorkItem, BaseException]]:
        """No host left: the executor is broken; every unresolved item fails."""
        if self._broken is None:
            self._broken = BrokenHostPool("every host of the executor is lost: " + "; ".join(
                f"{h.name}: {h.error}" for h in self._hosts.values()))
            self._broken.__cause__ = cause
            logger.error("%s", self._broken)
        self._scheduler.take_waiting()
        return [(item, self._broken) for item in self._items.values() if not item.future.done()]

    # -- replies ------------------------------------------------------------
    def _on_events(self, host: Host, events: List[tuple]) -> None:
        resolved: List[Tuple[_WorkItem, str, tuple]] = []
        run_times: List[float] = []
        with self._lock:
            for event in events:
                kind = event[0]
                if kind == "ready":
                    info = event[1]
                    host.info = info
                    if host.state is HostState.STARTING:
                        host.state = HostState.READY
                        slots = int(info["slots"])
                        prefetch = slots if self.prefetch is None else self.prefetch  # tuned
                        self._scheduler.add_host(host.name, slots, prefetch)
                    host.ready.set()
                elif kind == "started":
                    slots = self._scheduler.hosts.get(host.name)
                    for tid in event[1]:
                        item = slots.inflight.get(tid) if slots is not None else None
                        if item is not None:
                            item.started = True
                else:
                    if kind == "done":
                        run_times.append(event[6])
                    item = self._scheduler.release(host.name, event[1])
                    if item is not None:
                        item.host = None
                        resolved.append((item, kind, event))
            if run_times and self.prefetch is None:
                self._tune_prefetch(host, sum(run_times) / len(run_times))
        for item, kind, event in resolved:
            self._settle(host, item, kind, event, forget=False)
        with self._lock:
            for item, _, _ in resolved:
                self._items.pop(item.tid, None)
            if not self._items:
                self._idle.notify_all()
        self._pump()

    def _tune_prefetch(self, host: Host, seconds: float) -> None:
        """Keep enough tasks on the host to cover a round trip: many for tasks of
        microseconds, one extra per slot for tasks of 10 ms and more."""
        host.run_time = seconds if host.run_time is None else (
            host.run_time * (1 - RUN_TIME_WEIGHT) + seconds * RUN_TIME_WEIGHT)
        per_slot = min(MAX_PREFETCH_PER_SLOT,
                       max(1, math.ceil(PIPELINE_SECONDS / max(host.run_time, 1e-6))))
        slots = self._scheduler.hosts.get(host.name)
        if slots is not None:
            slots.capacity = slots.slots * (1 + per_slot)

    def _settle(self, host: Host, item: _WorkItem, kind: str, event: tuple,
                forget: bool = True) -> None:
        """Resolve a future from its host's event (outside the lock); ``forget``:
        drop the item from the unresolved ones too (else the caller does)."""
        future = item.future
        if kind == "done":
            _, tid, ok, payload, tb, records, _seconds = event
            future.logs = [logging.makeLogRecord(r) for r in records]
            try:
                value = serial.loads(payload)
            except Exception as exc:  # e.g. the result's class is not importable here
                error = SSHPipeError(f"{host.name}: the {'result' if ok else 'exception'} of task "
                                     f"{tid} ({item.task.name}) could not be loaded: {exc!r}")
                error.__cause__ = exc
                self._resolve(item, error=error, forget=forget)
                return
            if ok:
                self._resolve(item, result=value, forget=forget)
            else:
                if tb:
                    value.__cause__ = RemoteTraceback(f'\n"""\n[on {host.name}] {tb}"""')
                self._resolve(item, error=value, forget=forget)
        elif kind == "cancelled":
            # Cancelled by us (the future is already done) or dropped on arrival.
            if not future.done():
                future.cancel()
            if forget:
                self._forget(item)
        elif kind == "timeout":
            seconds, records = event[2], event[3]
            future.logs = [logging.makeLogRecord(r) for r in records]
            self._resolve(item, error=TaskTimeoutError(
                f"{host.name}: task {item.tid} ({item.task.name}) ran past its timeout of "
                f"{seconds:g} s; its worker process was ended", host.name, seconds), forget=forget)
        elif kind == "died":
            exitcode, records = event[2], event[3]
            future.logs = [logging.makeLogRecord(r) for r in records]
            self._resolve(item, error=WorkerDiedError(
                f"{host.name}: the worker process running task {item.tid} ({item.task.name}) "
                f"died (exit code {exitcode})", host.name, exitcode), forget=forget)

    def _resolve(self, item: _WorkItem, result: Any = None,
                 error: Optional[BaseException] = None, forget: bool = True) -> None:
        future = item.future
        try:
            if item.running or future.set_running_or_notify_cancel():
                item.running = True
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)
        except InvalidStateError:
            pass  # cancelled while its result was on the way
        if forget:
            self._forget(item)

    def _forget(self, item: _WorkItem) -> None:
        with self._lock:
            if self._items.pop(item.tid, None) is not None and not self._items:
                self._idle.notify_all()

    # -- dispatch -----------------------------------------------------------
    def _pump(self) -> None:
        """Hand waiting items to hosts with room; send them, one message per host."""
        with self._lock:
            batches, idle = self._assign_locked()
        self._post(batches, idle)

    def _assign_locked(self) -> Tuple[Dict[str, List[_WorkItem]], Set[str]]:
        """Assign what fits; return the items by host, and the hosts that held
        nothing before (see :meth:`_post`)."""
        batches: Dict[str, List[_WorkItem]] = {}
        idle = {name for name, slots in self._scheduler.hosts.items() if not slots.inflight}
        for host_name, tid, item in self._scheduler.assign():
            if not item.running:
                if not item.future.set_running_or_notify_cancel():
                    self._scheduler.release(host_name, tid)
                    self._items.pop(tid, None)
                    if not self._items:
                        self._idle.notify_all()
                    continue
                item.running = True
                item.future._stop_remote = self._stop_remote
            item.host = host_name
            item.future.host = host_name
            item.future.hosts.append(host_name)
            batches.setdefault(host_name, []).append(item)
        return batches, idle

    def _post(self, batches: Dict[str, List[_WorkItem]], idle: Set[str]) -> None:
        """Put assigned items in their hosts' outboxes. For a host that was idle,
        with nothing queued and no send under way, send them from this thread:
        a lone task (the latency case) skips the hop to the sender thread, while
        a burst still goes through it in batches."""
        for host_name, items in batches.items():
            host = self._hosts[host_name]
            with host.out_cond:
                direct = host_name in idle and not host.outbox and not host.sending
                if direct:
                    host.sending = True
                else:
                    notify = not host.outbox
                    host.outbox.extend(("run", item) for item in items)
                    if notify:
                        host.out_cond.notify()
            if direct:
                try:
                    self._send_runs(host, items)
                finally:
                    host.end_sending()

    def _send_loop(self, host: Host) -> None:
        """Sender thread: the host's outbox to its pipe, runs of tasks batched."""
        while True:
            with host.out_cond:
                while host.sending or (not host.outbox and not host.out_closed):
                    host.out_cond.wait()
                if not host.outbox:
                    return
                batch, host.outbox = host.outbox, []
                host.sending = True
            try:
                runs: List[_WorkItem] = []
                for kind, payload in batch:
                    if kind == "run":
                        runs.append(payload)
                        continue
                    if runs:
                        self._send_runs(host, runs)
                        runs = []
                    self._send_message(host, (kind, payload))
                if runs:
                    self._send_runs(host, runs)
            finally:
                host.end_sending()

    def _send_message(self, host: Host, message: tuple) -> bool:
        try:
            host.pipe.send(message)
            return True
        except (PipeBroken, PipeClosed):
            return False  # the host's reader thread sees the end and settles its tasks

    def _send_runs(self, host: Host, items: List[_WorkItem]) -> None:
        remote = host.info.get("python", "")
        if remote.split(".")[:2] != _LOCAL_PYTHON.split(".")[:2]:
            # The tasks travel as bytes inside the message, so the pipe cannot see
            # the code they carry: check each one here.
            skewed = [item for item in items if item.task.carries_code]
            if skewed:
                items = [item for item in items if not item.task.carries_code]
                for item in skewed:
                    with self._lock:
                        self._scheduler.release(host.name, item.tid)
                        item.host = None
                    self._resolve(item, error=VersionSkewError(
                        f"{host.name}: task {item.tid} ({item.task.name}) carries Python code "
                        f"(a function or class sent by value) made by Python {_LOCAL_PYTHON}, "
                        f"which Python {remote} there cannot load; define it in a module "
                        f"shipped with modules=[...] or use the same Python minor version",
                        host.name, local=_LOCAL_PYTHON, remote=remote))
                self._pump()
                if not items:
                    return
        # Messages of about MESSAGE_BYTES at most: a burst of tasks with large
        # arguments must not become one huge frame.
        if len(items) > 1:
            size = 0
            for index, item in enumerate(items):
                size += len(item.task.fn_payload) + len(item.task.args_payload)
                if size > MESSAGE_BYTES and index:
                    self._send_runs(host, items[:index])
                    self._send_runs(host, items[index:])
                    return
        message = ("run", [(item.tid, item.task.fn_payload, item.task.args_payload,
                            item.task.timeout or self.task_timeout) for item in items])
        try:
            self._send_message(host, message)
        except Exception as exc:  # cannot be sent to this host (e.g. VersionSkewError)
            for item in items:
                with self._lock:
                    self._scheduler.release(host.name, item.tid)
                    item.host = None
                self._resolve(item, error=exc)
            self._pump()

    def _stop_remote(self, future: TaskFuture) -> None:
        """A running future was cancelled: stop its task wherever it is."""
        with self._lock:
            item = self._items.get(future.task_id)
            if item is None:
                return
            host_name = item.host
            if host_name is None:  # waiting for a host again (a retry)
                self._scheduler.discard(item.tid)
                self._items.pop(item.tid, None)
                if not self._items:
                    self._idle.notify_all()
                return
            host = self._hosts[host_name]
        host.post("cancel", item.tid)  # after the task's own "run", never before

    # -- Executor API ---------------------------------------------------------
    def submit(self, fn: Union[Callable[..., Any], Task], /, *args: Any,
               **kwargs: Any) -> TaskFuture:
        """Schedule ``fn(*args, **kwargs)`` (or a :class:`~workers.Task`) on some host.

        Returns:
            A :class:`TaskFuture`.

        Raises:
            BrokenHostPool: every host is lost.
            RuntimeError: after :meth:`shutdown`.
            ValueError: the task is pinned to a host the executor does not have.
            Exception: whatever serializing the call raises.
        """
        if isinstance(fn, Task):
            if args or kwargs:
                raise TypeError("submit(task) takes no further arguments; put them in the Task")
            task = fn
        else:
            task = Task(fn, *args, **kwargs)
        return self._submit_tasks([task])[0]

    def _submit_tasks(self, tasks: Sequence[Task]) -> List[TaskFuture]:
        failed: List[Tuple[_WorkItem, BaseException]] = []
        futures = []
        with self._lock:
            if self._broken is not None:
                raise self._broken
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            for task in tasks:
                if task.host is not None and task.host not in self._hosts:
                    raise ValueError(f"task pinned to host {task.host!r}, which is not one of "
                                     f"{sorted(self._hosts)}")
            for task in tasks:
                tid = next(self._ids)
                future = TaskFuture(tid)
                item = _WorkItem(tid, task, future,
                                 self.retries if task.retries is None else task.retries)
                self._items[tid] = item
                futures.append(future)
                if task.host is not None and task.host not in self._scheduler.hosts:
                    host = self._hosts[task.host]
                    failed.append((item, self._lost_error(host, item, host.error)))
                    continue
                self._scheduler.push(tid, item, host=task.host)
            batches, idle = self._assign_locked()
        for item, error in failed:
            self._resolve(item, error=error)
        self._post(batches, idle)
        return futures

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
        if chunksize == 1:
            fn_payload = serial.dumps(fn)
            tasks = [Task.from_payloads(fn_payload, serial.dumps((args, {})), name)
                     for args in argument_tuples]
        else:
            fn_payload = serial.dumps(functools.partial(apply_chunk, fn))
            tasks = [Task.from_payloads(fn_payload, serial.dumps(((chunk,), {})), name)
                     for chunk in (argument_tuples[i:i + chunksize]
                                   for i in range(0, len(argument_tuples), chunksize))]
        futures = self._submit_tasks(tasks)
        bar = ProgressBar(len(argument_tuples), enabled=progress, label=name)
        for index, future in enumerate(futures):
            weight = min(chunksize, len(argument_tuples) - index * chunksize)
            future.add_done_callback(functools.partial(_advance, bar, weight))

        def results() -> Iterator[Any]:
            try:
                futures.reverse()
                while futures:
                    future = futures[-1]
                    remaining = None if end is None else end - time.monotonic()
                    value = future.result(remaining)
                    futures.pop()
                    if chunksize == 1:
                        yield value
                    else:
                        yield from value
            finally:
                for future in futures:
                    future.cancel()
                bar.close()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking tasks, and end the hosts' agents once every future is
        resolved (``wait``: before returning).

        Args:
            wait: block until every future is resolved and every host closed.
            cancel_futures: cancel the futures whose task has not been handed to
                a host yet.
        """
        with self._lock:
            self._shutdown = True
            waiting = self._scheduler.take_waiting() if cancel_futures else []
        for tid, item in waiting:
            item.future.cancel()
            self._forget(item)
        if wait:
            self._close_when_idle()
        else:
            threading.Thread(target=self._close_when_idle, name="workers-shutdown",
                             daemon=True).start()

    def _close_when_idle(self) -> None:
        with self._lock:
            while self._items:
                self._idle.wait()
            hosts = list(self._hosts.values())
            for host in hosts:
                if host.state in (HostState.READY, HostState.STARTING):
                    host.state = HostState.CLOSED
        closers = [threading.Thread(target=_close_pipe, args=(host,), daemon=True)
                   for host in hosts if host.pipe is not None]
        for thread in closers:
            thread.start()
        for thread in closers:
            thread.join(CLOSE_TIMEOUT + 15)

    # -- introspection --------------------------------------------------------
    @property
    def hosts(self) -> Dict[str, HostState]:
        """Each host's state, by name."""
        with self._lock:
            return {name: host.state for name, host in self._hosts.items()}

    def remote_info(self, host: str) -> Dict[str, Any]:
        """The host's agent: pid, host, python ... (the pipe's hello) plus its pool's
        slots and cpus, and ``error`` once the host is lost."""
        record = self._hosts[host]
        info = dict(record.pipe.remote_info) if record.pipe is not None else {}
        info.update(record.info)
        info["state"] = record.state
        info["error"] = record.error
        return info

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def __repr__(self) -> str:
        states = ", ".join(f"{name}={state.value}" for name, state in self.hosts.items())
        status = "broken" if self._broken else "shut down" if self._shutdown else "open"
        return f"<SSHExecutor {status} {states}>"


def _advance(bar: ProgressBar, weight: int, future: Future) -> None:
    bar.advance(weight)


def _close_pipe(host: Host) -> None:
    host.close_outbox()
    if host.sender is not None:
        host.sender.join(CLOSE_TIMEOUT)
    pipe = host.pipe
    try:
        pipe.close(timeout=CLOSE_TIMEOUT)
    except SSHPipeError as exc:
        logger.debug("%s: closing: %s", host.name, exc)
    if host.reader is not None:
        host.reader.join(5.0)
