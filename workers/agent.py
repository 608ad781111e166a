"""WorkerAgent: the remote side of an executor host, a pool of worker processes.

Stdlib only (plus sshpipe's shipped modules): this module travels to the remote
with ``modules=["workers"]``, so the remote needs nothing but Python.

::

    caller (SSHExecutor)           agent process (this handler)               worker processes
                             +------------------------------------+
    ("hello", {})      ----> | main thread: handle()              |
    ("run", [tasks])   ----> |   appends to the inbox, wakes ---> |
    ("cancel", tid)    ----> |                                    |
                             | pool thread:                       |  ("run", [..]) +------------+
                             |   inbox -> queue -> workers        | =============> | control    |
                             |   (short tasks in batches)         |  ("cancel", t) |  thread    |
                             |   results, logs <- workers         | <============= | main:      |
    <-- replies (lists) ---- |   reap, requeue, replace; kill     |  done, log,    |  fn(*args) |
        ready, started,      |   only if a worker cannot end      |  dropped,      +------------+
        done, cancelled,     |   a task itself                    |  ending
        timeout, died        +------------------------------------+

Actors:

- The agent's **main thread** (sshpipe's service loop) calls :meth:`handle` for
  every message. It never blocks there: it appends the message to the inbox and
  wakes the pool thread through a pipe.
- The **pool thread** owns every worker, the local task queue and the inbox's
  consumer side. It starts the workers and hands queued tasks over: up to
  :data:`BATCH_DEPTH` at a time while tasks are short (then one hand-over, one
  wake-up and one report serve many tasks), two while they take less than
  :data:`MEDIUM_TASK` (the next one waits in the worker, no round trip between
  them), else one at a time. An idle worker takes back tasks that wait in
  another behind a long one. It reads results and
  log records, coalesces its replies for up to :data:`COALESCE` while other
  tasks are out, and when a worker ends it reports the task it ran, puts back
  in the queue the tasks that waited in it (they never started) and starts a
  replacement, so no task's end costs the host a slot. It kills a worker only
  when the worker did not end a cancelled or timed-out task itself within
  :data:`KILL_GRACE`.
- Each **worker process** (a fresh ``python -c`` interpreter that inherits
  only its end of a socket pair and fds 0-2, so it cannot hold the protocol
  channel open; not ``multiprocessing``, whose resource tracker would keep the
  agent's stdout capture open after the agent ends) runs its tasks in order in
  its main thread and sends each result (or exception with the traceback as
  text) as soon as it has it, and every log record as it is emitted. Its
  *control thread* alone reads the connection: it queues batches, drops a
  cancelled task that waits, and ends the process (``os._exit``) when the task
  it runs is cancelled or out of time; see :mod:`workers._worker`. It dies with
  the agent (``PR_SET_PDEATHSIG`` on Linux, and a watchdog thread elsewhere).

Replies to the caller, each a list of events::

    ("ready", info)                          the pool is up: slots, pid, cpus
    ("started", [tid, ...])                  handed to a worker (sent *before*)
    ("done", tid, ok, payload, tb, records, seconds)
                                             payload: serialized result or exception;
                                             seconds: how long the call ran
    ("cancelled", tid)                       stopped: its worker ended, or it never ran
    ("timeout", tid, seconds, records)       its worker ended at the deadline
    ("died", tid, exitcode, records)         its worker died under it (a crash, os._exit)

"started" is flushed to the caller before the task reaches a worker, so a caller
that received the agent's whole output (the agent died, the channel closed
cleanly) knows for sure which tasks never started.
"""
from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Set, Tuple

from sshpipe.handler import SSHPipeHandler
from workers._worker import Link

__all__ = ["WorkerAgent"]

logger = logging.getLogger(__name__)

# Records a task may log before the rest are dropped (counted): a task that logs
# in a tight loop must not flood the channel.
MAX_RECORDS_PER_TASK = 1000
# Workers in a row that die before booting (a broken remote Python, say) before
# the agent gives up instead of restarting them forever.
MAX_BOOT_FAILURES = 3
# How long stop() waits for workers to exit before killing them.
STOP_GRACE = 2.0
# A worker ends a cancelled or timed-out task itself; if it has not within this
# (a task holding the GIL in C code starves its control thread) the agent kills it.
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
# Longest a result waits in the agent for others to share its frame, while more
# tasks are out (a lone result is sent at once).
COALESCE = 0.001
# ... and while the results waiting are smaller than this: big ones go at once.
COALESCE_BYTES = 1 << 20


class WorkerAgent(SSHPipeHandler):
    """Runs tasks in ``slots`` worker processes on the remote host.

    Args:
        slots: worker processes; default the remote's CPU count.
        log_level: level from which task records are sent back.
    """

    def __init__(self, slots: Optional[int] = None, log_level: int = logging.INFO,
                 **kwargs: Any):
        kwargs.setdefault("tolerance", -1)
        super().__init__(**kwargs)
        if slots is not None and slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        self.slots = slots
        self.log_level = log_level
        self._inbox: Deque[tuple] = deque()
        self._wake_r, self._wake_w = -1, -1
        self._thread: Optional[threading.Thread] = None
        self._stopping = False

    # -- main thread ------------------------------------------------------
    def atstart(self, received: Any) -> None:
        self.slots = self.slots or os.cpu_count() or 1
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._pool_loop, name="workers-pool", daemon=True)
        self._thread.start()

    def handle(self, received: Any) -> None:
        self._inbox.append(received)
        self._wake()

    def atexit(self, received: Any) -> None:
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(STOP_GRACE * 2 + 5)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the pool thread has wake-ups pending anyway

    # -- pool thread ------------------------------------------------------
    def _pool_loop(self) -> None:
        pool = _Pool(self, self.slots, self.log_level)
        try:
            pool.run()
        except BaseException:  # the pool thread's outermost loop: report, end the agent
            logger.exception("the worker pool failed")
            self._flush_replies(pool.take_events())
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            pool.stop()

    def _flush_replies(self, events: List[tuple]) -> None:
        if not events:
            return
        # From this (non-main) thread, reply() writes at once: "started" reaches
        # the channel before the tasks reach a worker.
        self.reply(events)


# What a worker interpreter runs: argv is fd, log level, index, the agent's sys.path.
_WORKER_BOOT = (
    "import json, sys\n"
    "sys.path[:] = json.loads(sys.argv[4])\n"
    "import socket\n"
    "from workers._worker import Link, worker_main\n"
    "worker_main(Link(socket.socket(fileno=int(sys.argv[1]))), int(sys.argv[2]),"
    " int(sys.argv[3]))\n"
)



class _Worker:
    """One worker process and the tasks handed to it, in order (pool thread only)."""

    __slots__ = ("index", "process", "conn", "assigned", "pending", "last_heard", "ending",
                 "kill_at", "kill_tid", "records", "dropped", "ready", "stealing")

    def __init__(self, index: int, process: Any, conn: Any):
        self.index = index
        self.process = process
        self.conn: Link = conn     # the agent's end of a socket pair
        # Task ids handed over and not yet reported, in the order the worker runs
        # them: the first is running (or about to), the others wait in the worker.
        self.assigned: Deque[int] = deque()
        # The same tasks by id, as queued: (tid, fn_payload, args_payload, timeout).
        self.pending: Dict[int, tuple] = {}
        self.last_heard = time.monotonic()   # its last result: when the next task began
        self.ending: Optional[Tuple[int, str]] = None  # (tid, "cancelled"/"timeout")
        # A cancelled task it runs: killed at kill_at if the worker has not ended it.
        self.kill_at: Optional[float] = None
        self.kill_tid: Optional[int] = None
        self.records: Dict[int, List[dict]] = {}
        self.dropped: Dict[int, int] = {}
        self.ready = False          # it said it booted: tasks go to it without delay
        self.stealing = False       # asked to give back tasks that wait in it


def _backlog_bytes(worker: _Worker) -> int:
    """Bytes of the tasks handed to a worker that it has not started (about)."""
    return sum(len(task[1]) + len(task[2]) for tid, task in worker.pending.items()
               if not worker.assigned or tid != worker.assigned[0])


class _Pool:
    """The pool thread's state: workers, queue, inbox consumer."""

    def __init__(self, agent: WorkerAgent, slots: int, log_level: int):
        self.agent = agent
        self.slots = slots
        self.log_level = log_level
        self.workers: List[Optional[_Worker]] = [None] * slots
        self.queue: Deque[Tuple[int, bytes, bytes, Optional[float]]] = deque()
        self.queued: Set[int] = set()
        # Cancels that arrived before their task: the task is dropped on arrival.
        self.cancelled_early: Set[int] = set()
        self.events: List[tuple] = []
        self.events_since = 0.0   # when the oldest unsent event was made
        self.events_bytes = 0     # size of the results among them
        self.boot_failures = 0
        # Moving average of task run times: short tasks are handed over in batches.
        self.run_time = 1.0
        # Readable: the wake-up pipe (data None) and each worker's connection (data:
        # the worker); kept across turns, since building one per turn costs more
        # than a no-op task.
        self.selector = selectors.DefaultSelector()

    def take_events(self) -> List[tuple]:
        events, self.events = self.events, []
        return events

    def add_event(self, event: tuple) -> None:
        if not self.events:
            self.events_since = time.monotonic()
            self.events_bytes = 0
        if event[0] == "done":
            self.events_bytes += len(event[3])
        self.events.append(event)

    # -- workers ----------------------------------------------------------
    def _start_worker(self, index: int) -> None:
        """A fresh interpreter that inherits only its end of a socket pair (and
        fds 0-2: /dev/null, the agent's stdout capture, the channel's stderr)."""
        mine, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_BOOT, str(theirs.fileno()), str(self.log_level),
                 str(index), json.dumps(sys.path)],
                stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), close_fds=True)
        worker = _Worker(index, process, Link(mine))
        self.workers[index] = worker
        self.selector.register(worker.conn.fileno(), selectors.EVENT_READ, worker)

    def _live(self) -> List[_Worker]:
        return [w for w in self.workers if w is not None]

    def _by_tid(self, tid: int) -> Optional[_Worker]:
        for worker in self._live():
            if tid in worker.pending:
                return worker
        return None

    def _send(self, worker: _Worker, message: tuple) -> None:
        try:
            worker.conn.send(message)
        except OSError:
            pass  # it died: the end of its connection reports its tasks

    # -- loop -------------------------------------------------------------
    def run(self) -> None:
        for index in range(self.slots):
            self._start_worker(index)
        announced = False
        wake_r = self.agent._wake_r
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        while not self.agent._stopping:
            if not announced and all(w is not None and w.ready for w in self.workers):
                # The caller hears "ready" once every worker booted: its first tasks
                # do not wait for interpreters to start.
                announced = True
                self.add_event(("ready", {"slots": self.slots, "pid": os.getpid(),
                                          "cpus": os.cpu_count(),
                                          "python": sys.version.split()[0]}))
            timeout = self._next_timeout()
            if self.events:
                # Results of short tasks are coalesced for up to COALESCE while other
                # tasks are still out: one frame carries many. A lone result (or a
                # "ready") goes at once.
                wait = self.events_since + COALESCE - time.monotonic()
                if (wait <= 0 or self.events_bytes >= COALESCE_BYTES
                        or not (self.queue or any(w.assigned for w in self._live()))):
                    self.agent._flush_replies(self.take_events())
                else:
                    timeout = wait if timeout is None else min(timeout, wait)
            ready = self.selector.select(timeout)
            for key, _ in ready:
                worker = key.data
                if worker is None:
                    try:
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
                elif self.workers[worker.index] is worker and not self._read_worker(worker):
                    self._reap(worker)  # EOF on its connection: the worker died
            self._take_inbox()
            self._check_deadlines()
            self._dispatch()

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
        """When the agent must kill the worker itself: the worker enforces cancels
        and timeouts, but cannot while a task holds the GIL in C code."""
        if worker.ending is not None:
            return None  # it is ending (or was killed): its connection's end follows
        if worker.kill_at is not None:
            return worker.kill_at
        if worker.assigned:
            timeout = worker.pending[worker.assigned[0]][3]
            if timeout:
                return worker.last_heard + timeout + KILL_GRACE
        return None

    def _take_inbox(self) -> None:
        inbox = self.agent._inbox
        while inbox:
            message = inbox.popleft()
            if not isinstance(message, tuple) or not message:
                logger.warning("worker agent: ignoring message %r", message)
                continue
            kind = message[0]
            if kind == "run":
                for tid, fn_payload, args_payload, timeout in message[1]:
                    if tid in self.cancelled_early:
                        self.cancelled_early.discard(tid)
                        self.add_event(("cancelled", tid))
                        continue
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
            # Not arrived yet (or already finished: then the caller ignores this).
            self.cancelled_early.add(tid)
            return
        # The worker drops it if it waits there, or ends itself if it runs it.
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
                   and len(w.assigned) < depth]
        if not workers:
            return
        workers.sort(key=lambda w: len(w.assigned))
        handed: Dict[int, List[tuple]] = {}
        backlog = {w.index: _backlog_bytes(w) for w in workers}
        # Fill the emptiest first, round-robin, so a short queue still spreads.
        while self.queue and workers:
            for worker in list(workers):
                if not self.queue:
                    break
                batch = handed.get(worker.index, ())
                # A worker busy in C code with the GIL held reads nothing: what
                # waits for it must fit its socket, or sending would stall the pool.
                if len(worker.assigned) + len(batch) >= depth or (
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
        self.agent._flush_replies(self.take_events())
        now = time.monotonic()
        for index, batch in handed.items():
            worker = self.workers[index]
            if not worker.assigned:
                worker.last_heard = now
            for task in batch:
                worker.assigned.append(task[0])
                worker.pending[task[0]] = task
            self._send(worker, ("run", batch))

    def _steal(self) -> None:
        """A worker is idle while tasks wait in another behind a long one: ask
        that worker for half of them back (the batches of short tasks are handed
        over ahead of time, and one may turn out long)."""
        idle = [w for w in self._live() if w.ready and not w.assigned and w.ending is None
                and w.kill_at is None]
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
            self.queue.appendleft(entry)
            self.queued.add(tid)

    def _read_worker(self, worker: _Worker) -> bool:
        """Take what the worker sent; False once its connection ended (it died)."""
        try:
            messages = worker.conn.receive()
        except OSError:
            messages = None
        if messages is None:
            return False
        for message in messages:
            kind = message[0]
            if kind == "log":
                self._on_record(worker, message[1], message[2])
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
        return True

    def _forget(self, worker: _Worker, tid: int) -> bool:
        if tid not in worker.pending:
            return False
        del worker.pending[tid]
        try:
            worker.assigned.remove(tid)
        except ValueError:
            pass
        worker.last_heard = time.monotonic()
        if worker.kill_tid == tid:  # it finished before the cancel reached it
            worker.kill_at = worker.kill_tid = None
        return True

    def _on_record(self, worker: _Worker, tid: int, fields: dict) -> None:
        records = worker.records.setdefault(tid, [])
        if len(records) >= MAX_RECORDS_PER_TASK:
            worker.dropped[tid] = worker.dropped.get(tid, 0) + 1
            return
        fields["task"] = tid
        records.append(fields)
        # Re-emitted here, so sshpipe forwards it live to the caller's
        # "sshpipe.remote.<host>" logger as well.
        target = logging.getLogger(fields.get("name") or "root")
        if target.isEnabledFor(fields.get("levelno", logging.INFO)):
            target.handle(logging.makeLogRecord(fields))

    def _records(self, worker: _Worker, tid: int) -> List[dict]:
        records = worker.records.pop(tid, [])
        dropped = worker.dropped.pop(tid, 0)
        if dropped:
            records.append({"name": "workers.agent", "levelno": logging.WARNING,
                            "levelname": "WARNING", "created": time.time(),
                            "msg": f"{dropped} more records of this task were dropped",
                            "args": None, "task": tid})
        return records

    def _reap(self, worker: _Worker) -> None:
        """A worker ended: report the task it ran, requeue those that waited in
        it (they never started), start a replacement."""
        self.selector.unregister(worker.conn.fileno())
        worker.conn.close()
        try:
            worker.process.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:  # its socket closed, yet it lives: end it
            worker.process.kill()
            worker.process.wait(KILL_GRACE)
        if worker.assigned:
            tid = worker.assigned.popleft()
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
                self.queue.appendleft(self._requeue_entry(worker, waiting))
        self.workers[worker.index] = None
        if not worker.ready:
            self.boot_failures += 1
            if self.boot_failures >= MAX_BOOT_FAILURES:
                raise RuntimeError(f"worker processes die before they boot (exit code "
                                   f"{worker.process.returncode}); see the remote stderr")
        else:
            self.boot_failures = 0
        if not self.agent._stopping:
            self._start_worker(worker.index)

    def _requeue_entry(self, worker: _Worker, tid: int) -> tuple:
        entry = worker.pending.pop(tid)
        self.queued.add(tid)
        return entry

    def stop(self) -> None:
        """End every worker: EOF first, then a kill for any still running."""
        live = self._live()
        for worker in live:
            if worker.assigned:
                worker.process.kill()
            worker.conn.close()
        deadline = time.monotonic() + STOP_GRACE
        for worker in live:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(STOP_GRACE)
        self.workers = [None] * self.slots
        self.selector.close()


