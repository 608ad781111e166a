"""joblib backend ``"sshpipe"``: ``joblib.Parallel`` on remote hosts over SSH.

Importing this module registers the backend::

    import sshpipe.joblib
    from joblib import Parallel, delayed, parallel_config

    with parallel_config(backend="sshpipe", hosts=["web1", "web2"], slots=4):
        results = Parallel(n_jobs=-1)(delayed(f)(x) for x in xs)

::

     caller                                                       each host
    +-------------------------------------------------------+
    | Parallel: batches calls (auto batch size), calls      |
    |   submit(BatchedCalls, callback) -------------------+ |
    | SSHPipeBackend                                      | |
    |   batch -> Task(run_same, func, [(args, kwargs)..]) | |
    |   gate: at most n_jobs batches out (if fewer than   | |
    |         the remote slots)                           | |
    |   _Fleet: one SSHExecutor, started on first use,    | |  SSH  +--------------+
    |     kept warm between Parallel calls  ==============|=|=====> | WorkerAgent  |
    |   executor reader threads: future done -> callback  | |       |  slots procs |
    |     -> Parallel dispatches the next batch  <--------+ | <==== | run_same()   |
    +-------------------------------------------------------+       +--------------+

Actors:

- **Parallel** (joblib) calls :meth:`SSHPipeBackend.configure` once per call,
  then :meth:`~SSHPipeBackend.submit` for each batch, from the caller's thread
  and, once results come in, from the executor's reader threads (joblib
  dispatches the next batch from the completion callback).
- The **backend** turns each batch into one :class:`workers.Task`. When every
  call of a batch uses the same function, that function is serialized once per
  ``Parallel`` call and shared by all its batches (the worker unpickles it once);
  the arguments of each batch travel as one payload. The remote side is
  :mod:`sshpipe._joblib_batch`, shipped with the worker agent, so the hosts need
  neither joblib nor sshpipe.
- The **fleet** owns the :class:`workers.SSHExecutor`. It is started by the
  first call that needs it and stays up between ``Parallel`` calls made with
  the same backend (one ``parallel_config`` block), so later calls start warm.
  It is shut down by :meth:`SSHPipeBackend.close`, when the backend object is
  garbage collected, at interpreter exit, or after ``idle_timeout`` seconds
  without a ``Parallel`` call (like loky's reusable executor).
- **Abort** (a task raised, a timeout, the generator was dropped): every batch
  of the call is cancelled, running ones included: the executor ends the worker
  process running each one on its host and starts a fresh one.

State: the backend holds the futures of the batches that are out and, when
``n_jobs`` is below the remote slots, the batches waiting for a free place in
the gate, under ``_lock``; futures are submitted and cancelled outside it, since
both run joblib's callbacks.
"""
from __future__ import annotations

import collections
import functools
import logging
import threading
import weakref
from concurrent.futures import Future
from typing import Any, Callable, Deque, Dict, Iterable, Optional, Sequence, Set, Tuple

try:
    from joblib.parallel import (AutoBatchingMixin, FallbackToBackend, ParallelBackendBase,
                                 SequentialBackend, ThreadingBackend, register_parallel_backend)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("sshpipe.joblib needs joblib: pip install 'sshpipe[joblib]'") from exc

from sshpipe import _joblib_batch, serial

__all__ = ["SSHPipeBackend", "register"]

logger = logging.getLogger(__name__)

# Seconds the hosts stay up after the last Parallel call when nothing closes the
# backend: loky keeps its reusable workers for the same 300 s. Longer saves a
# restart after a pause; shorter frees the remote slots (and SSH sessions) sooner.
IDLE_TIMEOUT = 300.0
# While batches run shorter than joblib's ideal, the batch size grows by up to this
# factor per step (joblib's local backends double it). Each step costs a round
# trip to the hosts, so doubling from 1 wastes several at the start of every
# call; a larger step still never passes joblib's own estimate of the ideal size,
# but a task that turns out much slower than the first ones may find more work
# queued behind it.
RAMP_GROWTH = 8
# Shipped with the worker agent: the remote half of a batch.
_REMOTE_MODULE = _joblib_batch.__name__


class _Fleet:
    """Owns one SSHExecutor: started lazily, kept warm, closed once idle.

    Holds no reference to the backend, so that the backend can be garbage
    collected (its finalizer closes the fleet).
    """

    def __init__(self, hosts: Sequence[Any], options: Dict[str, Any],
                 idle_timeout: Optional[float]):
        self.hosts = list(hosts)
        self.options = options
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._executor: Any = None
        self._timer: Optional[threading.Timer] = None
        self._closed = False

    def executor(self) -> Any:
        """The running executor; starts it (blocking until the hosts are up)
        when there is none. Cancels a pending idle close."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this sshpipe joblib backend was closed")
            self._cancel_timer()
            if self._executor is None or self._executor.broken:
                from workers import SSHExecutor

                old, self._executor = self._executor, None
                if old is not None:
                    old.shutdown(wait=False, cancel_futures=True)
                self._executor = SSHExecutor(self.hosts, **self.options)
            return self._executor

    def current(self) -> Any:
        """The executor if the hosts are up, else None (starts nothing)."""
        with self._lock:
            return self._executor

    def slots(self) -> int:
        """Worker slots of the hosts that are up (starts the hosts if needed)."""
        executor = self.executor()
        from workers import HostState

        return sum(int(executor.remote_info(name).get("slots") or 0)
                   for name, state in executor.hosts.items() if state is HostState.READY)

    def idle(self) -> None:
        """The last Parallel call ended: close after ``idle_timeout`` seconds."""
        with self._lock:
            if self._executor is None or self.idle_timeout is None or self._closed:
                return
            self._cancel_timer()
            self._timer = threading.Timer(self.idle_timeout, self._close_if_idle)
            self._timer.daemon = True
            self._timer.name = "sshpipe-joblib-idle"
            self._timer.start()

    def _close_if_idle(self) -> None:
        with self._lock:
            if self._timer is None or threading.current_thread() is not self._timer:
                return  # cancelled, or replaced by a newer timer
            self._timer = None
            executor, self._executor = self._executor, None
        if executor is not None:
            logger.debug("closing the idle hosts %s", self.hosts)
            executor.shutdown(wait=True, cancel_futures=True)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close_unreferenced(self) -> None:
        """The backend was garbage collected (or the interpreter exits). In the
        main thread close here; elsewhere (a collection can run in any thread,
        the executor's own included) close from a thread of its own."""
        if threading.current_thread() is threading.main_thread():
            self.close()
        else:
            threading.Thread(target=self.close, name="sshpipe-joblib-close",
                             daemon=True).start()

    def close(self, final: bool = True) -> None:
        """Shut the executor down (waiting for its hosts to end); ``final``: for good."""
        with self._lock:
            self._closed = self._closed or final
            self._cancel_timer()
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


class SSHPipeBackend(AutoBatchingMixin, ParallelBackendBase):
    """A joblib backend that runs batches on remote hosts through
    :class:`workers.SSHExecutor`.

    Built by joblib from ``parallel_config(backend="sshpipe", **arguments)``, or
    directly, to pass as ``backend=`` and close explicitly (``with
    SSHPipeBackend(hosts) as backend: ...``).

    Args:
        hosts: ssh config aliases (or addresses), as for ``SSHExecutor``: an
            entry may be ``(alias, options)`` or a dict with a ``"host"`` key.
        slots: worker processes per host (default: the host's CPU count).
        modules: local modules the tasks need that the hosts lack; their source
            travels with the agent.
        idle_timeout: seconds the hosts stay up after a ``Parallel`` call when
            the backend is not closed or collected (None: until then).
        **executor_options: any other :class:`workers.SSHExecutor` argument
            (``config``, ``python``, ``retries``, ``task_timeout``, ``env``,
            ``heartbeat``, ``ready_timeout`` ...).

    ``n_jobs``: -1 means every remote slot, -2 all but one and so on; a
    positive value is capped at the remote slots, and fewer than them means at
    most that many batches run at once. ``n_jobs=1`` runs in the caller, without
    any worker, as joblib does for every backend; with a single remote slot the
    work still goes to the host.
    """

    supports_retrieve_callback = True
    supports_timeout = True
    supports_return_generator = True
    supports_sharedmem = False
    uses_threads = False
    default_n_jobs = -1
    MIN_IDEAL_BATCH_DURATION = 0.2
    MAX_IDEAL_BATCH_DURATION = 2.0
    # AutoBatchingMixin's state, which compute_batch_size() reads and sets
    _effective_batch_size: int
    _smoothed_batch_duration: float
    _DEFAULT_SMOOTHED_BATCH_DURATION: float

    def __init__(self, hosts: Optional[Iterable[Any]] = None, *, slots: Optional[int] = None,
                 modules: Sequence[str] = (), idle_timeout: Optional[float] = IDLE_TIMEOUT,
                 nesting_level: Optional[int] = None, **executor_options: Any):
        super().__init__(nesting_level=nesting_level)
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive or None, not {idle_timeout!r}")
        self.hosts = list(hosts) if hosts is not None else []
        self.slots_per_host = slots
        options = dict(executor_options, slots=slots,
                       modules=[_REMOTE_MODULE] + [m for m in modules if m != _REMOTE_MODULE])
        self._fleet = _Fleet(self.hosts, options, idle_timeout)
        weakref.finalize(self, self._fleet.close_unreferenced)
        self._lock = threading.Lock()
        self._out: Set[_BatchFuture] = set()    # futures of this call's batches
        # (task, future, done callback) of batches waiting for room under n_jobs
        self._gate: Deque[Tuple[Any, _BatchFuture, _Done]] = collections.deque()
        self._limit: Optional[int] = None       # batches out at once, when below the slots
        self._aborting = False
        self._payloads: Dict[int, Tuple[Any, bytes]] = {}  # id(func) -> (func, payload)
        self.parallel = None

    # -- sizing ----------------------------------------------------------------
    def effective_n_jobs(self, n_jobs: Optional[int]) -> int:
        """How many batches can run at once for this ``n_jobs`` (see the class);
        starts the hosts when their slots are not known yet."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            n_jobs = self.default_n_jobs
        if n_jobs == 1:
            return 1
        # joblib runs n_jobs == 1 in the caller: a single slot counts as two, so
        # the work still goes to the host (which runs one batch at a time).
        return max(2, self._slots_for(n_jobs, self._total_slots()))

    @staticmethod
    def _slots_for(n_jobs: int, total: int) -> int:
        wanted = total + 1 + n_jobs if n_jobs < 0 else n_jobs
        return max(1, min(total, wanted))

    def _total_slots(self) -> int:
        if not self.hosts:
            raise ValueError("the sshpipe joblib backend needs hosts: parallel_config("
                             "backend='sshpipe', hosts=['host1', ...])")
        return self._fleet.slots()

    def configure(self, n_jobs: Optional[int] = 1, parallel: Any = None, prefer: Any = None,
                  require: Any = None, **backend_kwargs: Any) -> int:
        """Start the hosts (or reuse the warm ones) for one Parallel call."""
        n_jobs = self.default_n_jobs if n_jobs is None else n_jobs
        reported = self.effective_n_jobs(n_jobs)
        if reported == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        total = self._total_slots()
        used = self._slots_for(n_jobs, total)
        with self._lock:
            self._limit = used if used < total else None
            self._aborting = False
            self._payloads = {}
        self.parallel = parallel
        return reported

    def compute_batch_size(self) -> int:
        """joblib's automatic batch size, reached in fewer steps (RAMP_GROWTH)."""
        old = self._effective_batch_size
        duration = self._smoothed_batch_duration
        if 0 < duration < self.MIN_IDEAL_BATCH_DURATION:
            ideal = int(old * self.MIN_IDEAL_BATCH_DURATION / duration) * 2
            size = max(1, min(RAMP_GROWTH * old, ideal))
            if size != old:
                self._effective_batch_size = size
                self._smoothed_batch_duration = self._DEFAULT_SMOOTHED_BATCH_DURATION
            return size
        joblib_size: int = super().compute_batch_size()
        return joblib_size

    # -- batches ---------------------------------------------------------------
    def submit(self, func: Any,
               callback: Optional[Callable[[Any], None]] = None) -> Future[Any]:
        """Send one joblib batch (a BatchedCalls) to the hosts."""
        task = self._task_for(func)
        outer = _BatchFuture()
        done = functools.partial(self._batch_done, outer, callback)
        with self._lock:
            if self._aborting:
                outer.cancel()
                return outer
            if self._limit is not None and len(self._out) >= self._limit:
                self._gate.append((task, outer, done))
                return outer
            self._out.add(outer)
        self._start(task, outer, done)
        return outer

    def apply_async(self, func: Any,
                    callback: Optional[Callable[[Any], None]] = None) -> Future[Any]:
        """joblib before 1.5 calls this name for :meth:`submit`."""
        return self.submit(func, callback)

    def _start(self, task: Any, outer: _BatchFuture, done: _Done) -> None:
        try:
            inner = self._fleet.executor().submit(task)
        except BaseException as exc:
            with self._lock:
                self._out.discard(outer)
            outer.set_exception(exc)
            done(outer)
            return
        outer.inner = inner
        inner.add_done_callback(_Link(outer, done))

    def _batch_done(self, outer: _BatchFuture, callback: Optional[Callable[[Any], None]],
                    _: Future[Any]) -> None:
        """A batch ended: let a waiting one through the gate, then tell joblib."""
        nxt = None
        with self._lock:
            self._out.discard(outer)
            if self._gate and not self._aborting:
                nxt = self._gate.popleft()
                self._out.add(nxt[1])
        if nxt is not None:
            self._start(*nxt)
        if callback is not None:
            callback(outer)

    def _task_for(self, batch: Any) -> Any:
        from workers import Task

        calls = list(batch.items)
        nested = self._nested_spec()
        funcs = {id(func) for func, _, _ in calls}
        name = getattr(calls[0][0], "__qualname__", "joblib") if calls else "joblib"
        if len(funcs) == 1:
            func = calls[0][0]
            with self._lock:
                cached = self._payloads.get(id(func))
            if cached is None or cached[0] is not func:
                cached = (func, serial.dumps(functools.partial(_joblib_batch.run_same, func,
                                                               nested)))
                with self._lock:
                    self._payloads[id(func)] = cached
            arguments = serial.dumps((([(args, kwargs) for _, args, kwargs in calls],), {}))
            return Task.from_payloads(cached[1], arguments, f"joblib-batch-{name}")
        return Task(_joblib_batch.run_calls, nested, calls).options(name=f"joblib-batch-{name}")

    def _nested_spec(self) -> _joblib_batch.NestedSpec:
        backend, n_jobs = self.get_nested_backend()
        return (backend.nesting_level, n_jobs)

    def retrieve_result_callback(self, out: Future[Any]) -> Any:
        """The batch's results, or its exception (with the remote traceback as
        ``__cause__``)."""
        return out.result()

    def get_nested_backend(self) -> Tuple[Any, Optional[int]]:
        """A Parallel inside a remote task gets joblib's threading backend (its
        sequential one deeper down), as in joblib's own worker processes; it
        runs on that host, in the task's worker process."""
        level = (self.nesting_level or 0) + 1
        if level > 1:
            return SequentialBackend(nesting_level=level), None
        return ThreadingBackend(nesting_level=level), None

    # -- call life cycle -------------------------------------------------------
    def start_call(self) -> None:
        with self._lock:
            self._aborting = False

    def stop_call(self) -> None:
        with self._lock:
            self._payloads = {}

    def terminate(self) -> None:
        """End of a Parallel call: the hosts stay up (see ``idle_timeout``)."""
        self.reset_batch_stats()
        with self._lock:
            self._payloads = {}
        self.parallel = None
        self._fleet.idle()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Cancel every batch of the call, running ones included: each host
        ends the worker process running one (and starts a fresh one)."""
        with self._lock:
            self._aborting = True
            waiting = [entry[1] for entry in self._gate]
            self._gate.clear()
            out = list(self._out)
            self._out.clear()
        for outer in waiting:
            outer.cancel()
        for outer in out:
            inner = outer.inner
            if inner is not None:
                inner.cancel()
        logger.debug("aborted: %d batches cancelled, %d never sent", len(out), len(waiting))

    # -- ownership ---------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True while the hosts are up."""
        return self._fleet.current() is not None

    @property
    def executor(self) -> Any:
        """The :class:`workers.SSHExecutor` behind the backend while the hosts
        are up, else None; looking does not start them or delay an idle close."""
        return self._fleet.current()

    def close(self) -> None:
        """Shut the hosts down for good; later Parallel calls with this backend fail."""
        self._fleet.close()

    def __enter__(self) -> "SSHPipeBackend":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "idle"
        return f"<SSHPipeBackend hosts={self.hosts} {state}>"


class _BatchFuture(Future[Any]):
    """The future joblib holds for one batch; ``inner`` is the executor's future
    running it, once sent (what abort_everything cancels)."""

    inner: Optional[Future[Any]] = None


#: A batch's done callback, given the future joblib holds.
_Done = Callable[[Future[Any]], None]


class _Link:
    """The executor's future's done callback: settles the future joblib holds,
    then calls back. It lets go of both once it ran: the executor may keep its
    futures (and their callbacks) a while, and they must not keep joblib's
    Parallel, and with it the backend and its hosts, alive."""

    __slots__ = ("outer", "done")

    def __init__(self, outer: Future[Any], done: _Done):
        self.outer: Optional[Future[Any]] = outer
        self.done: Optional[_Done] = done

    def __call__(self, inner: Future[Any]) -> None:
        outer, done = self.outer, self.done
        self.outer = self.done = None
        if outer is None or done is None:
            return
        if inner.cancelled():
            if not outer.cancel():  # already running from joblib's view: fail it
                outer.set_exception(_cancelled())
        else:
            error = inner.exception()
            if error is not None:
                outer.set_exception(error)
            else:
                outer.set_result(inner.result())
        done(outer)


def _cancelled() -> BaseException:
    from concurrent.futures import CancelledError

    return CancelledError("the batch was cancelled")


def register() -> None:
    """Register the backend with joblib under the name ``"sshpipe"`` (done on import)."""
    register_parallel_backend("sshpipe", SSHPipeBackend)


register()
