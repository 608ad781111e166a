"""The worker pool of a host: worker processes, the agent's task queue, and their links.

Stdlib only (plus sshpipe's shipped modules): runs remotely, in the pool thread
of a :class:`~workers.worker_agent.WorkerAgent`, which owns one :class:`Pool`.

The pool thread starts the workers and hands queued tasks over: up to
:data:`BATCH_DEPTH` at a time while tasks are short (then one hand-over, one
wake-up and one report serve many tasks), two while they take less than
:data:`MEDIUM_TASK` (the next one waits in the worker, no round trip between
them), else one at a time. An idle worker takes back tasks that wait in another
behind a long one. It reads results, log records and printed output, coalesces
its replies for up to :data:`COALESCE` while other tasks are out, and when a
worker ends it reports the task it ran, puts back in the queue the tasks that
waited in it (they never started) and starts a replacement, so no task's end
costs the host a slot. It kills a worker only when the worker did not end a
cancelled or timed-out task itself within :data:`KILL_GRACE`.

Each worker process is a fresh ``python -c`` interpreter that inherits only its
end of a socket pair and fds 0-2, so it cannot hold the protocol channel open
(not ``multiprocessing``, whose resource tracker would keep the agent's stdout
capture open after the agent ends); see :mod:`workers._worker`. The pool never
waits on a worker's socket: it queues what it sends on the worker's
:class:`~workers._link.Link` and writes as the socket takes it, from the same
``select`` that reads, so large tasks and large results cross at once.

Replies to the caller, each a list of events::

    ("ready", info)                          the pool is up: slots, pid, cpus
    ("started", [tid, ...])                  handed to a worker (sent *before*)
    ("done", tid, ok, payload, tb, records, seconds)
                                             ok: True, False (raised) or "load" (the
                                             call could not be unpickled there)
    ("out", tid, stream, text)               the task printed (when echoed)
    ("cancelled", tid)                       stopped: its worker ended, or it never ran
    ("timeout", tid, seconds, records)       its worker ended at the deadline
    ("died", tid, exitcode, records)         its worker died under it (a crash, os._exit)
    ("broken", payload, tb, unstarted)       the initializer raised: the host is done;
                                             unstarted lists tasks that never ran

"started" is flushed to the caller before the task reaches a worker, so a caller
that received the agent's whole output (the agent died, the channel closed
cleanly) knows for sure which tasks never started.
"""
from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import subprocess
import sys
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from sshpipe._logwire import reemit, to_wire
from workers._link import Link
from workers._worker import EXIT_INIT_FAILED

__all__ = ["Pool", "PoolBroken"]

logger = logging.getLogger(__name__)

# Records a task may log before the rest are dropped (counted): a task that logs
# in a tight loop must not flood the channel.
MAX_RECORDS_PER_TASK = 1000
# Workers in a row that die before booting (a broken remote Python, say) before
# the pool gives up instead of restarting them forever.
MAX_BOOT_FAILURES = 3
# How long stop() waits for workers to exit before killing them.
STOP_GRACE = 2.0
# A worker ends a cancelled or timed-out task itself; if it has not within this
# (a task holding the GIL in C code starves its control thread) the pool kills it.
KILL_GRACE = 2.0
# Tasks shorter than SHORT_TASK (moving average) are handed to a worker up to
# BATCH_DEPTH at a time; longer ones one at a time, so none waits behind another.
SHORT_TASK = 0.002
BATCH_DEPTH = 64
# Tasks shorter than MEDIUM_TASK get their successor queued in the worker, so
# that no hand-over round trip separates them.
MEDIUM_TASK = 0.1
# Bytes of tasks waiting in one worker, at most (a batch may pass it by one task).
MAX_BACKLOG_BYTES = 128 * 1024
# An idle worker takes back half the tasks waiting in another whose current task
# has run this long (far past SHORT_TASK: it is not one of the short ones).
STEAL_AFTER = 0.05
# Longest a result waits in the pool for others to share its frame, while more
# tasks are out (a lone result is sent at once).
COALESCE = 0.001
# ... and while the results waiting are smaller than this: big ones go at once.
COALESCE_BYTES = 1 << 20

Entry = Tuple[int, bytes, bytes, Optional[float]]  # tid, fn, args, timeout

# What a worker interpreter runs: argv is fd, log level, index, the agent's
# sys.path, the worker's options (JSON).
_WORKER_BOOT = (
    "import json, sys\n"
    "sys.path[:] = json.loads(sys.argv[4])\n"
    "from workers._worker import worker_main\n"
    "worker_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),"
    " json.loads(sys.argv[5]))\n"
)


class PoolBroken(Exception):
    """The pool cannot go on (its workers cannot boot, or the initializer
    raised); the agent ends."""


class _Worker:
    """One worker process and the tasks handed to it, in order (pool thread only)."""

    __slots__ = ("index", "process", "link", "assigned", "pending", "last_heard", "ending",
                 "kill_at", "kill_tid", "records", "dropped", "ready", "initialized",
                 "stealing", "handed", "writing")

    def __init__(self, index: int, process: Any, link: Link):
        self.index = index
        self.process = process
        self.link = link            # the pool's end of a socket pair
        # Task ids handed over and not yet reported, in the order the worker runs
        # them: the first is running (or about to), the others wait in the worker.
        self.assigned: Deque[int] = deque()
        # The same tasks by id, as queued.
        self.pending: Dict[int, Entry] = {}
        self.last_heard = time.monotonic()   # its last result: when the next task began
        self.ending: Optional[Tuple[int, str]] = None  # (tid, "cancelled"/"timeout")
        # A cancelled task it runs: killed at kill_at if the worker has not ended it.
        self.kill_at: Optional[float] = None
        self.kill_tid: Optional[int] = None
        self.records: Dict[int, List[Any]] = {}  # wire records (sshpipe._logwire)
        self.dropped: Dict[int, int] = {}
        self.ready = False          # it said it booted: tasks go to it without delay
        self.initialized = False    # its initializer (if any) returned
        self.stealing = False       # asked to give back tasks that wait in it
        self.handed = 0             # tasks handed to it in all (max_tasks_per_child)
        self.writing = False        # registered for EVENT_WRITE


def _backlog_bytes(worker: _Worker) -> int:
    """Bytes of the tasks handed to a worker that it has not started (about)."""
    return sum(len(task[1]) + len(task[2]) for tid, task in worker.pending.items()
               if not worker.assigned or tid != worker.assigned[0])


class Pool:
    """The pool thread's state: workers, queue, and the events for the caller.

    Args:
        slots: worker processes.
        log_level: level from which task records are sent back.
        flush: sends a list of events to the caller (may block: the caller's
            window is full).
        initializer: the pickled ``(fn, args)`` each worker runs first, or None.
        max_tasks: tasks a worker runs before it is replaced (None: no limit).
        echo: workers send what tasks print, for the caller to print.
    """

    def __init__(self, slots: int, log_level: int,
                 flush: Callable[[List[Tuple[Any, ...]]], None], *,
                 initializer: Optional[bytes] = None, max_tasks: Optional[int] = None,
                 echo: bool = False):
        self.slots = slots
        self.log_level = log_level
        self._flush = flush
        self.initializer = initializer
        self.max_tasks = max_tasks
        self.echo = echo
        self.workers: List[Optional[_Worker]] = [None] * slots
        self.queue: Deque[Entry] = deque()
        self.queued: Set[int] = set()
        # Tasks cancelled while handed to a worker, until that worker reports them
        # (done, dropped) or ends: if it ends without running them (it ended for
        # another task), they are reported cancelled, never run elsewhere.
        self.cancelling: Set[int] = set()
        self.events: List[Tuple[Any, ...]] = []
        self.events_since = 0.0   # when the oldest unsent event was made
        self.events_bytes = 0     # size of the results among them
        self.boot_failures = 0
        self.announced = False
        # Moving average of task run times: short tasks are handed over in batches.
        self.run_time = 1.0
        # Readable: the wake-up fd (data None) and each worker's link (data: the
        # worker); kept across turns, since building one per turn costs more than
        # a no-op task.
        self.selector = selectors.DefaultSelector()

    # -- events for the caller ----------------------------------------------
    def take_events(self) -> List[Tuple[Any, ...]]:
        events, self.events = self.events, []
        return events

    def add_event(self, event: Tuple[Any, ...]) -> None:
        if not self.events:
            self.events_since = time.monotonic()
            self.events_bytes = 0
        if event[0] == "done":
            self.events_bytes += len(event[3])
        elif event[0] == "out":
            self.events_bytes += len(event[3])
        self.events.append(event)

    def flush_events(self) -> None:
        events = self.take_events()
        if events:
            self._flush(events)

    # -- workers ----------------------------------------------------------
    def _start_worker(self, index: int) -> None:
        """A fresh interpreter that inherits only its end of a socket pair (and
        fds 0-2: /dev/null, the agent's stdout capture, the channel's stderr)."""
        mine, theirs = socket.socketpair()
        options = {"initializer": self.initializer is not None, "max_tasks": self.max_tasks,
                   "echo": self.echo}
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_BOOT, str(theirs.fileno()), str(self.log_level),
                 str(index), json.dumps(sys.path), json.dumps(options)],
                stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), close_fds=True)
        worker = _Worker(index, process, Link(mine))
        self.workers[index] = worker
        self.selector.register(worker.link.fileno(), selectors.EVENT_READ, worker)
        if self.initializer is not None:
            self._send(worker, ("init", self.initializer))
        else:
            worker.initialized = True

    def _live(self) -> List[_Worker]:
        return [w for w in self.workers if w is not None]

    def _by_tid(self, tid: int) -> Optional[_Worker]:
        for worker in self._live():
            if tid in worker.pending:
                return worker
        return None

    def _send(self, worker: _Worker, message: Tuple[Any, ...]) -> None:
        """Queue a message for a worker; it is written as its socket takes it."""
        worker.link.put(message)

    def _write(self, worker: _Worker) -> None:
        try:
            worker.link.write()
        except OSError:
            pass  # it died: the end of its connection reports its tasks
        wants = worker.link.wants_write
        if wants != worker.writing:
            worker.writing = wants
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wants else 0)
            self.selector.modify(worker.link.fileno(), events, worker)

    # -- loop -------------------------------------------------------------
    def run(self, wake_fd: int, stopping: Callable[[], bool],
            take_inbox: Callable[[], List[Any]]) -> None:
        """The pool thread's loop, until ``stopping()``.

        Args:
            wake_fd: readable when the agent's main thread queued messages.
            take_inbox: the messages queued since the last call.
        """
        for index in range(self.slots):
            self._start_worker(index)
        self.selector.register(wake_fd, selectors.EVENT_READ, None)
        while not stopping():
            if not self.announced and all(w is not None and w.ready for w in self.workers):
                # The caller hears "ready" once every worker booted: its first tasks
                # do not wait for interpreters to start.
                self._announce()
            timeout = self._next_timeout()
            if self.events:
                # Results of short tasks are coalesced for up to COALESCE while other
                # tasks are still out: one frame carries many. A lone result (or a
                # "ready") goes at once.
                wait = self.events_since + COALESCE - time.monotonic()
                if (wait <= 0 or self.events_bytes >= COALESCE_BYTES
                        or not (self.queue or any(w.assigned for w in self._live()))):
                    self.flush_events()
                else:
                    timeout = wait if timeout is None else min(timeout, wait)
            for key, mask in self.selector.select(timeout):
                worker = key.data
                if worker is None:
                    try:
                        os.read(wake_fd, 4096)
                    except BlockingIOError:
                        pass
                    continue
                if self.workers[worker.index] is not worker:
                    continue
                if mask & selectors.EVENT_WRITE:
                    self._write(worker)
                if mask & selectors.EVENT_READ and not self._read_worker(worker):
                    self._reap(worker)  # EOF on its connection: the worker ended
            for message in take_inbox():
                self._take_message(message)
            self._check_deadlines()
            self._dispatch()
            for worker in self._live():
                if worker.link.wants_write and not worker.writing:
                    self._write(worker)

    def _announce(self) -> None:
        self.announced = True
        self.add_event(("ready", {"slots": self.slots, "pid": os.getpid(),
                                  "cpus": os.cpu_count(), "python": sys.version.split()[0]}))

    def _next_timeout(self) -> Optional[float]:
        now = time.monotonic()
        live = self._live()
        deadlines = [at for at in (self._kill_deadline(w, now) for w in live) if at is not None]
        if not self.queue and any(w.ready and not w.assigned for w in live):
            # An idle worker: wake up when another's tasks may be worth taking back.
            deadlines += [w.last_heard + STEAL_AFTER for w in live
                          if len(w.assigned) > 1 and not w.stealing and w.ending is None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _kill_deadline(self, worker: _Worker, now: float) -> Optional[float]:
        """When the pool must kill the worker itself: the worker enforces cancels
        and timeouts, but cannot while a task holds the GIL in C code."""
        if worker.ending is not None:
            return None  # it is ending (or was killed): its connection's end follows
        if worker.kill_at is not None:
            return worker.kill_at
        if worker.assigned and worker.initialized:
            timeout = worker.pending[worker.assigned[0]][3]
            if timeout:
                return worker.last_heard + timeout + KILL_GRACE
        return None

    def _take_message(self, message: Any) -> None:
        if not isinstance(message, tuple) or not message:
            logger.warning("worker agent: ignoring message %r", message)
            return
        kind = message[0]
        if kind == "run":
            for tid, fn_payload, args_payload, timeout in message[1]:
                self.queue.append((tid, fn_payload, args_payload, timeout))
                self.queued.add(tid)
        elif kind == "cancel":
            self._cancel(message[1])
        elif kind == "hello":
            pass  # its only job was to start the pool (atstart)
        else:
            logger.warning("worker agent: unknown message kind %r", kind)

    def _cancel(self, tid: int) -> None:
        if tid in self.queued:
            self.queued.discard(tid)
            self.queue = deque(item for item in self.queue if item[0] != tid)
            self.add_event(("cancelled", tid))
            return
        worker = self._by_tid(tid)
        if worker is None:
            # Already finished: its result is on the way, and the caller, which
            # sends a cancel only after the task's own "run", ignores it.
            return
        # The worker drops it if it waits there, or ends itself if it runs it.
        self.cancelling.add(tid)
        self._send(worker, ("cancel", tid))
        if worker.assigned and worker.assigned[0] == tid and worker.kill_at is None:
            worker.kill_at = time.monotonic() + KILL_GRACE
            worker.kill_tid = tid

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for worker in self._live():
            at = self._kill_deadline(worker, now)
            if at is None or now < at or worker.ending is not None:
                continue
            if not worker.assigned:
                continue
            tid = worker.assigned[0]
            reason = "cancelled" if worker.kill_tid == tid else "timeout"
            worker.ending = (tid, reason)
            logger.warning("worker %d did not end task %d itself; killing it", worker.index, tid)
            worker.process.kill()

    def _room(self, worker: _Worker, depth: int) -> int:
        """How many more tasks the worker may be handed now."""
        room = depth - len(worker.assigned)
        if self.max_tasks is not None:
            room = min(room, self.max_tasks - worker.handed)
        return room

    def _dispatch(self) -> None:
        if not self.queue:
            self._steal()
            return
        # Short tasks go over in batches: one hand-over, one wake-up of the worker
        # and one "started" report for many tasks. Long ones one at a time, so
        # that none waits in one worker while another is idle.
        depth = (BATCH_DEPTH if self.run_time < SHORT_TASK
                 else 2 if self.run_time < MEDIUM_TASK else 1)
        workers = [w for w in self._live()
                   if w.ready and w.ending is None and w.kill_at is None
                   and self._room(w, depth) > 0]
        if not workers:
            return
        workers.sort(key=lambda w: len(w.assigned))
        handed: Dict[int, List[Entry]] = {}
        backlog = {w.index: _backlog_bytes(w) for w in workers}
        # Fill the emptiest first, round-robin, so a short queue still spreads.
        while self.queue and workers:
            for worker in list(workers):
                if not self.queue:
                    break
                batch = handed.get(worker.index, ())
                # What waits in a worker is not cancellable from here and not
                # balanced to another: keep it small.
                if self._room(worker, depth) <= len(batch) or (
                        batch and backlog[worker.index] >= MAX_BACKLOG_BYTES):
                    workers.remove(worker)
                    continue
                task = self.queue.popleft()
                self.queued.discard(task[0])
                backlog[worker.index] += len(task[1]) + len(task[2])
                handed.setdefault(worker.index, []).append(task)
        if not handed:
            return
        # The caller must know a task started before it can start: see the
        # module docstring.
        self.add_event(("started", [task[0] for batch in handed.values() for task in batch]))
        self.flush_events()
        now = time.monotonic()
        for index, batch in handed.items():
            handed_to = self.workers[index]
            assert handed_to is not None
            if not handed_to.assigned:
                handed_to.last_heard = now
            for task in batch:
                handed_to.assigned.append(task[0])
                handed_to.pending[task[0]] = task
            handed_to.handed += len(batch)
            self._send(handed_to, ("run", batch))

    def _steal(self) -> None:
        """A worker is idle while tasks wait in another behind a long one: ask
        that worker for half of them back (the batches of short tasks are handed
        over ahead of time, and one may turn out long)."""
        idle = [w for w in self._live() if w.ready and not w.assigned and w.ending is None
                and w.kill_at is None and self._room(w, 1) > 0]
        if not idle:
            return
        now = time.monotonic()
        for worker in self._live():
            if (len(worker.assigned) > 1 and not worker.stealing and worker.ending is None
                    and now - worker.last_heard > STEAL_AFTER):
                worker.stealing = True
                self._send(worker, ("return", len(worker.assigned) // 2))

    def _take_back(self, worker: _Worker, tids: List[int]) -> None:
        """Tasks a worker gave back, never started: first in line again."""
        worker.stealing = False
        for tid in reversed(tids):
            entry = worker.pending.pop(tid, None)
            if entry is None:
                continue
            worker.assigned.remove(tid)
            worker.handed -= 1
            self._requeue(entry)

    def _requeue(self, entry: Entry) -> None:
        """A task back from a worker that never started it: first in line again,
        unless it was cancelled meanwhile."""
        if entry[0] in self.cancelling:
            self.cancelling.discard(entry[0])
            self.add_event(("cancelled", entry[0]))
            return
        self.queue.appendleft(entry)
        self.queued.add(entry[0])

    def _read_worker(self, worker: _Worker) -> bool:
        """Take what the worker sent; False once its connection ended."""
        try:
            messages = worker.link.receive()
        except Exception as exc:  # a corrupt stream (FrameError) or a failed socket
            logger.warning("worker %d: its link failed: %s", worker.index, exc)
            messages = None
        if messages is None:
            return False
        for message in messages:
            kind = message[0]
            if kind == "log":
                self._on_record(worker, message[1], message[2])
            elif kind == "out":
                self.add_event(message)
            elif kind == "done":
                _, tid, ok, payload, tb, seconds = message
                if self._forget(worker, tid):
                    self.run_time = self.run_time * 0.9 + seconds * 0.1
                    self.add_event(("done", tid, ok, payload, tb,
                                    self._records(worker, tid), seconds))
            elif kind == "dropped":  # cancelled while it waited in the worker
                if self._forget(worker, message[1]):
                    self.add_event(("cancelled", message[1]))
            elif kind == "ending":   # it ends itself: that task was cancelled or timed out
                worker.ending = (message[1], message[2])
            elif kind == "returned":
                self._take_back(worker, message[1])
            elif kind == "ready":
                worker.ready = True
            elif kind == "initialized":
                worker.initialized = True
            elif kind == "init-failed":
                self._initializer_failed(worker, message[1], message[2])
        return True

    def _initializer_failed(self, worker: _Worker, payload: bytes, tb: str) -> None:
        """The initializer raised: this host cannot run tasks as asked. Tell the
        caller which tasks never ran, then end the pool (and the agent)."""
        unstarted = [entry[0] for entry in self.queue]
        for other in self._live():
            if not other.initialized:
                unstarted.extend(other.assigned)
        self.queue.clear()
        self.queued.clear()
        if not self.announced:  # the pool did start: the initializer is what failed
            self._announce()
        self.add_event(("broken", payload, tb, unstarted))
        raise PoolBroken(f"worker {worker.index}: the initializer raised")

    def _forget(self, worker: _Worker, tid: int) -> bool:
        if tid not in worker.pending:
            return False
        del worker.pending[tid]
        self.cancelling.discard(tid)
        try:
            worker.assigned.remove(tid)
        except ValueError:
            pass
        worker.last_heard = time.monotonic()
        if worker.kill_tid == tid:  # it finished before the cancel reached it
            worker.kill_at = worker.kill_tid = None
        return True

    def _on_record(self, worker: _Worker, tid: int, item: Any) -> None:
        records = worker.records.setdefault(tid, [])
        if len(records) >= MAX_RECORDS_PER_TASK:
            worker.dropped[tid] = worker.dropped.get(tid, 0) + 1
            return
        records.append(item)
        # Re-emitted here, so sshpipe forwards it live to the caller's
        # "sshpipe.remote.<host>" logger as well.
        try:
            reemit(item)
        except ValueError as exc:  # not a record: our own worker is broken
            logger.warning("worker %d: %s", worker.index, exc)

    def _records(self, worker: _Worker, tid: int) -> List[Any]:
        """The task's records, in wire form (what future.logs is made of)."""
        records = worker.records.pop(tid, [])
        dropped = worker.dropped.pop(tid, 0)
        if dropped:
            note = logging.LogRecord("workers.agent", logging.WARNING, __file__, 0,
                                     f"{dropped} more records of this task were dropped",
                                     None, None)
            records.append(to_wire(note, plain=True, extra={"task": tid}))
        return records

    def _reap(self, worker: _Worker) -> None:
        """A worker ended: report the task it ran, requeue those that waited in
        it (they never started), start a replacement."""
        self.selector.unregister(worker.link.fileno())
        worker.link.close()
        try:
            worker.process.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:  # its socket closed, yet it lives: end it
            worker.process.kill()
            worker.process.wait(KILL_GRACE)
        if worker.assigned:
            tid = worker.assigned.popleft()
            self.cancelling.discard(tid)
            ending_tid, reason = worker.ending or (None, None)
            if ending_tid == tid and reason == "cancelled":
                self.add_event(("cancelled", tid))
            elif ending_tid == tid and reason == "timeout":
                self.add_event(("timeout", tid, worker.pending[tid][3],
                                self._records(worker, tid)))
            else:
                self.add_event(("died", tid, worker.process.returncode,
                                self._records(worker, tid)))
            for waiting in reversed(worker.assigned):
                self._requeue(worker.pending.pop(waiting))
        self.workers[worker.index] = None
        if worker.process.returncode == EXIT_INIT_FAILED:
            return  # its report ends the pool
        if not worker.ready:
            self.boot_failures += 1
            if self.boot_failures >= MAX_BOOT_FAILURES:
                raise PoolBroken(f"worker processes die before they boot (exit code "
                                 f"{worker.process.returncode}); see the remote stderr")
        else:
            self.boot_failures = 0
        self._start_worker(worker.index)

    def stop(self) -> None:
        """End every worker: EOF first, then a kill for any still running."""
        live = self._live()
        for worker in live:
            if worker.assigned:
                worker.process.kill()
            worker.link.close()
        deadline = time.monotonic() + STOP_GRACE
        for worker in live:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(STOP_GRACE)
        self.workers = [None] * self.slots
        self.selector.close()
