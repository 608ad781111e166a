"""``SSHCluster``: a Dask cluster whose scheduler and workers run in sshpipe agents.

::

     caller                                             scheduler host
    +-----------------------------------------+  SSH   +---------------------------+
    | SSHCluster (a distributed.SpecCluster)  | =====> | agent: DaskAgent           |
    |   Scheduler (ProcessInterface): SSHPipe |  pipe  |   Scheduler (tcp://h0:p)   |
    |     ("start") -> ("started", address)   | <===== |                            |
    |   Worker per worker host: SSHPipe       |        +---------------------------+
    |   [PortForwarder: 127.0.0.1:L -> h0:p]  |         worker hosts
    | distributed.Client(cluster)             |  SSH   +---------------------------+
    |   -> scheduler (direct, or through L)   | =====> | agent: DaskAgent           |
    +-----------------------------------------+        |   Nanny -> worker process  |
                                                       +---------------------------+

Actors:

- :class:`SSHCluster` is a ``distributed.SpecCluster``: the first host runs the
  scheduler, every other one ``n_workers`` workers (``worker_options``), as
  ``distributed.SSHCluster`` lays them out. Dask's own machinery adds, retires
  and closes them.
- :class:`Scheduler` and :class:`Worker` are its ``ProcessInterface`` objects.
  Each owns one :class:`~sshpipe.SSHPipe` to its host, whose agent
  (:class:`sshpipe._dask_agent.DaskAgent`) runs the dask servers as objects in
  its own process and sends their addresses back through the pipe. Blocking
  pipe calls run in the event loop's default executor.
- Closing a ``ProcessInterface`` asks the agent to close its servers, then
  closes the pipe; the agent's loader supervisor then ends the agent's whole
  process group. If the caller dies instead, each pipe's SSH session ends, and
  with it the agent and everything it started: nothing is left on the hosts.
- With ``forward_ports=True`` the scheduler's port (and its dashboard's) is
  relayed from 127.0.0.1 over a separate SSH connection to the scheduler host
  (:class:`sshpipe._portforward.PortForwarder`), and the cluster's own comm and
  ``Client(cluster)`` go through it; workers still reach the scheduler directly.

SSH itself is sshpipe's: the ssh config as ``ssh -G`` resolves it (``config=``),
host keys checked strictly (unknown or changed keys refused), keys from the
config and ssh-agent. Dask's compiled dependencies cannot travel, so each host
runs an existing environment's Python (``remote_python=``, default this
interpreter's path, as in ``distributed.SSHCluster``).
"""
from __future__ import annotations

import asyncio
import copy
import logging
import sys
import threading
from typing import Any, Dict, List, Optional, Sequence, Union

try:
    import dask
    import dask.config
    from distributed.deploy.spec import ProcessInterface, SpecCluster
    from distributed.utils import format_dashboard_link
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("sshpipe.dask needs dask and distributed: "
                      "pip install 'sshpipe[dask]'") from exc

from sshpipe import _dask_agent
from sshpipe.errors import SSHPipeError
from sshpipe.pipe import SSHPipe

__all__ = ["SSHCluster", "Scheduler", "Worker"]

logger = logging.getLogger(__name__)

# Seconds a host gets to start its dask servers once its agent is up (importing
# distributed and starting a Nanny's worker process take a few seconds).
START_TIMEOUT = 120.0
# Seconds closing gives the dask servers, then the agent, to end.
CLOSE_TIMEOUT = 20.0
_AGENT_MODULE = _dask_agent.__name__


def _open_pipe(host: str, role: str, options: Dict[str, Any], worker_class: str,
               pipe_options: Dict[str, Any]) -> SSHPipe:
    """Blocking: an SSHPipe to a started DaskAgent on ``host``."""
    pipe = SSHPipe(host, handler=_dask_agent.DaskAgent, handler_kwargs={
        "role": role, "options": options, "worker_class": worker_class,
        "dask_config": dask.config.global_config},
        modules=[_AGENT_MODULE], name=f"dask-{role}-{host}", **pipe_options)
    pipe.start()
    return pipe


class _WarmPipe:
    """A host's agent, started ahead of dask's own start sequence.

    SpecCluster starts the scheduler, then the workers. Instead, every host
    connects at once; the scheduler's agent fixes its address first ("reserve")
    and the worker agents start their workers for it right away, while the
    scheduler is still importing distributed. The ProcessInterface then takes
    the pipe over (:meth:`take`) and only waits for what was already started.

    Its thread owns the pipe until :meth:`take` hands it over (once); a pipe
    never taken is closed by :meth:`discard`.
    """

    def __init__(self, host: str, role: str, options: Dict[str, Any], worker_class: str,
                 pipe_options: Dict[str, Any], *, name: Any = None,
                 scheduler: Optional["_WarmPipe"] = None, timeout: float = START_TIMEOUT):
        self.host = host
        self.role = role
        self.name = name
        self.timeout = timeout
        self.early_address: Optional[str] = None  # scheduler: its address, fixed ahead
        self.started_for: Optional[str] = None    # worker: the scheduler it was started for
        self.addressed = threading.Event()        # scheduler: early_address is settled
        self._scheduler = scheduler
        self._pipe: Optional[SSHPipe] = None
        self._error: Optional[BaseException] = None
        self._taken = False      # take() was called: the pipe is the caller's
        self._discarded = False  # discard() was called: close the pipe once up
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._open, name=f"dask-warm-{role}-{host}",
                                        daemon=True, args=(options, worker_class, pipe_options))
        self._thread.start()

    def _open(self, options: Dict[str, Any], worker_class: str,
              pipe_options: Dict[str, Any]) -> None:
        pipe = None
        try:
            pipe = _open_pipe(self.host, self.role, options, worker_class, pipe_options)
            if self.role == "scheduler":
                pipe.send(("reserve",))
                kind, self.early_address = pipe.recv(timeout=self.timeout)
                self.addressed.set()
                pipe.send(("prepare",))
            else:
                pipe.send(("prepare",))
                scheduler = self._scheduler
                if scheduler is not None and scheduler.addressed.wait(self.timeout) \
                        and scheduler.early_address:
                    pipe.send(("start", {"scheduler": scheduler.early_address,
                                         "name": self.name}))
                    self.started_for = scheduler.early_address
        except BaseException as exc:  # handed to take(), which raises it
            self._error = exc
        finally:
            self.addressed.set()
        if self._error is not None and pipe is not None:
            _close_quietly(pipe, 5.0)
            pipe = None
        with self._lock:
            self._pipe = pipe
            discarded = self._discarded
        if discarded and pipe is not None:
            self.discard()

    def take(self, timeout: float) -> Optional[SSHPipe]:
        """The started pipe, the first time (None afterwards, or once
        discarded: start a new one).

        Raises:
            SSHPipeError: (or another error) why the agent did not start.
        """
        with self._lock:
            if self._taken or self._discarded:
                return None
            self._taken = True
        self._thread.join(timeout)
        with self._lock:
            if self._thread.is_alive():  # too slow: closed once it is up
                self._discarded = True
            pipe, self._pipe = self._pipe, None
        if pipe is None and self._error is not None:
            raise self._error
        if pipe is None:
            raise SSHPipeError(f"{self.host}: the {self.role} agent did not start within "
                               f"{timeout:g} s")
        return pipe

    def discard(self) -> None:
        """Close the pipe unless it was taken (or close it once it is up)."""
        with self._lock:
            self._discarded = True
            pipe, self._pipe = self._pipe, None
        if pipe is not None:
            _close_quietly(pipe, 5.0)


def _close_quietly(pipe: SSHPipe, timeout: float) -> None:
    try:
        pipe.close(timeout=timeout)
    except SSHPipeError as exc:  # broken: the host or its link is gone already
        logger.debug("%s: closing: %s", pipe.host, exc)


class _Remote(ProcessInterface):
    """A dask server run by an sshpipe agent on ``host``: one SSHPipe, owned here.

    The pipe is made and started in :meth:`start` (or taken from a
    :class:`_WarmPipe`) and closed in :meth:`close`; both run its blocking
    calls in the loop's default executor.
    """

    role = ""

    def __init__(self, host: str, *, options: Optional[Dict[str, Any]] = None,
                 pipe_options: Optional[Dict[str, Any]] = None,
                 worker_class: str = "distributed.Nanny",
                 start_timeout: float = START_TIMEOUT, name: Any = None,
                 warm: Optional[_WarmPipe] = None):
        super().__init__()
        self.host = host
        self.name = name
        self.options = dict(options or {})
        self.pipe_options = dict(pipe_options or {})
        self.worker_class = worker_class
        self.start_timeout = start_timeout
        self.warm = warm
        self.pipe: Optional[SSHPipe] = None
        self.info: Dict[str, Any] = {}

    def _request(self) -> Dict[str, Any]:
        return {}

    def _open(self) -> Dict[str, Any]:
        """Blocking: start the agent (or take the warm one), then the dask
        servers; return their report."""
        pipe = None
        started = False
        if self.warm is not None:
            pipe = self.warm.take(self.start_timeout + 60.0)
            sent_for = self.warm.started_for
            if pipe is not None and sent_for is not None:
                started = self._request().get("scheduler") == sent_for
                if not started:
                    # Started for an address the scheduler did not keep: start anew.
                    _close_quietly(pipe, 5.0)
                    pipe = None
        if pipe is None:
            pipe = _open_pipe(self.host, self.role, self.options, self.worker_class,
                              self.pipe_options)
        self.pipe = pipe
        if not started:
            pipe.send(("start", self._request()))
        try:
            kind, info = pipe.recv(timeout=self.start_timeout)
        except TimeoutError as exc:
            raise SSHPipeError(f"{self.host}: the dask {self.role} did not start within "
                               f"{self.start_timeout:g} s") from exc
        if kind != "started":
            raise SSHPipeError(f"{self.host}: the dask {self.role} failed to start:\n"
                               f"{info.get('error', info)}")
        report: Dict[str, Any] = info
        return report

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.info = await loop.run_in_executor(None, self._open)
        except BaseException:
            await loop.run_in_executor(None, self._shut, 1.0)
            raise
        await super().start()

    def _shut(self, timeout: float) -> None:
        """Blocking: stop the servers, then end the agent (bounded)."""
        pipe, self.pipe = self.pipe, None
        if pipe is None:
            return
        try:
            pipe.send(("stop", timeout), timeout=timeout)
            pipe.recv(timeout=timeout + 5.0)
        except (SSHPipeError, TimeoutError, EOFError) as exc:  # broken or gone: close anyway
            logger.debug("%s: stopping the dask %s: %s", self.host, self.role, exc)
        _close_quietly(pipe, timeout)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._shut, CLOSE_TIMEOUT)
        await super().close()

    def __repr__(self) -> str:
        return f"<sshpipe.dask.{type(self).__name__} {self.host}: status={self.status.name}>"


class Scheduler(_Remote):
    """The dask scheduler on ``host``; ``address`` is what it reported.

    With ``forward`` the scheduler's port (and dashboard's, if it has one) is
    relayed from 127.0.0.1 over SSH; ``external_address`` is then the local end,
    which the cluster and ``Client(cluster)`` use.
    """

    role = "scheduler"

    def __init__(self, host: str, *, forward: bool = False, **kwargs: Any):
        super().__init__(host, **kwargs)
        self.forward = forward
        self.forwarder: Any = None
        self.dashboard_port: Optional[int] = None

    def _open(self) -> Dict[str, Any]:
        info = super()._open()
        self.address = info["address"]
        if self.forward:
            self._open_forwards(info)
        return info

    def _open_forwards(self, info: Dict[str, Any]) -> None:
        from sshpipe._portforward import PortForwarder

        connect = {key: self.pipe_options.get(key) for key in
                   ("config", "user", "port", "identity_file", "connect_timeout")}
        self.forwarder = PortForwarder(self.host, **connect)
        remote_host, remote_port = _split_address(self.address)
        local = self.forwarder.forward(remote_host, remote_port)
        self.external_address = f"{self.address.split('://')[0]}://127.0.0.1:{local}"
        dashboard = info.get("dashboard")
        if dashboard:
            self.dashboard_port = self.forwarder.forward(remote_host, int(dashboard))

    def _shut(self, timeout: float) -> None:
        super()._shut(timeout)
        forwarder, self.forwarder = self.forwarder, None
        if forwarder is not None:
            forwarder.close()


class Worker(_Remote):
    """``n_workers`` dask workers (``worker_class``, default Nanny) on ``host``,
    connected to the scheduler at ``scheduler``."""

    role = "worker"

    def __init__(self, scheduler: str, host: str, **kwargs: Any):
        super().__init__(host, **kwargs)
        self.scheduler = scheduler

    def _request(self) -> Dict[str, Any]:
        return {"scheduler": self.scheduler, "name": self.name}

    def _open(self) -> Dict[str, Any]:
        info = super()._open()
        addresses = info.get("addresses") or []
        self.address = addresses[0] if len(addresses) == 1 else self.host
        return info


def _split_address(address: str) -> "tuple[str, int]":
    """("host", port) of "tcp://host:port" (or "tcp://[v6]:port")."""
    location = address.split("://", 1)[-1]
    host, _, port = location.rpartition(":")
    return host.strip("[]"), int(port)


def _per_host(value: Union[Any, Sequence[Any]], count: int, what: str) -> List[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"{what}: {len(value)} values for {count} hosts")
        return list(value)
    return [value] * count


class SSHCluster(SpecCluster):
    """A Dask cluster over SSH: the scheduler on ``hosts[0]``, workers on the rest.

    The signature follows ``distributed.SSHCluster``; ``connect_options``
    (asyncssh's) is replaced by sshpipe's own connection arguments.

    Args:
        hosts: ssh config aliases or addresses; the first runs the scheduler,
            each of the others ``worker_options["n_workers"]`` workers (repeat
            the first to put workers next to the scheduler).
        config: the OpenSSH client config (default ``~/.ssh/config``), resolved
            as ``ssh -G`` does; host keys are checked strictly.
        user, port, identity_file, connect_timeout: override the config.
        worker_options: keyword arguments of the worker class (``nthreads``,
            ``memory_limit`` ...), plus ``n_workers`` (default 1).
        scheduler_options: keyword arguments of ``distributed.Scheduler``
            (``port``, ``dashboard_address`` ...); without ``host`` or
            ``interface`` the scheduler listens on the address SSH reached it at.
        worker_class: dotted name of the worker class (``distributed.Nanny``).
        remote_python: the Python on the hosts, an environment with dask and
            distributed: one path for all, or a list with one per host
            (default: this interpreter's path). ``python`` is an alias.
        forward_ports: relay the scheduler's (and dashboard's) port from
            127.0.0.1 over SSH, for a caller that cannot reach the hosts' ports.
        env: extra environment of the remote agents.
        start_timeout: seconds each host gets to start its dask servers.
        pipe_options: any other :class:`~sshpipe.SSHPipe` argument
            (``heartbeat``, ``ready_timeout``, ``cwd`` ...).
        **kwargs: ``distributed.SpecCluster`` arguments (``asynchronous``,
            ``silence_logs``, ``name``, ``shutdown_on_close`` ...).
    """

    def __init__(self, hosts: Sequence[str], *, config: Optional[str] = None,
                 user: Optional[str] = None, port: Optional[int] = None,
                 identity_file: Optional[str] = None, connect_timeout: Optional[float] = None,
                 worker_options: Optional[Dict[str, Any]] = None,
                 scheduler_options: Optional[Dict[str, Any]] = None,
                 worker_class: str = "distributed.Nanny",
                 remote_python: Union[str, Sequence[str], None] = None,
                 python: Union[str, Sequence[str], None] = None,
                 forward_ports: bool = False, env: Optional[Dict[str, str]] = None,
                 start_timeout: float = START_TIMEOUT,
                 pipe_options: Optional[Dict[str, Any]] = None, **kwargs: Any):
        hosts = list(hosts)
        if len(hosts) < 2:
            raise ValueError("SSHCluster needs at least two hosts: the scheduler's, then "
                             f"one per worker (repeat a host to share it), not {hosts!r}")
        if remote_python is not None and python is not None:
            raise ValueError("give remote_python or python, not both")
        pythons = _per_host(remote_python if remote_python is not None else python
                            if python is not None else sys.executable, len(hosts),
                            "remote_python")
        common = dict(pipe_options or {})
        common.update({key: value for key, value in (
            ("config", config), ("user", user), ("port", port), ("identity_file", identity_file),
            ("connect_timeout", connect_timeout), ("env", env)) if value is not None})
        self.forward_ports = forward_ports

        def pipe_options_for(index: int) -> Dict[str, Any]:
            return dict(common, python=pythons[index])

        # Every host connects at once; the workers start for the scheduler's
        # address as soon as it is fixed (see _WarmPipe).
        warm_scheduler = _WarmPipe(hosts[0], "scheduler", dict(scheduler_options or {}),
                                   worker_class, pipe_options_for(0), timeout=start_timeout)
        self._warm = [warm_scheduler] + [
            _WarmPipe(host, "worker", copy.copy(worker_options or {}), worker_class,
                      pipe_options_for(index + 1), name=index, scheduler=warm_scheduler,
                      timeout=start_timeout)
            for index, host in enumerate(hosts[1:])]
        scheduler = {"cls": Scheduler, "options": {
            "host": hosts[0], "options": dict(scheduler_options or {}),
            "pipe_options": pipe_options_for(0), "start_timeout": start_timeout,
            "forward": forward_ports, "warm": warm_scheduler}}
        workers = {index: {"cls": Worker, "options": {
            "host": host, "options": copy.copy(worker_options or {}),
            "pipe_options": pipe_options_for(index + 1), "worker_class": worker_class,
            "start_timeout": start_timeout, "warm": self._warm[index + 1]}}
            for index, host in enumerate(hosts[1:])}
        kwargs.setdefault("name", "SSHCluster")
        try:
            super().__init__(workers, scheduler, **kwargs)
        except BaseException:
            self._discard_warm()
            raise

    def _discard_warm(self) -> None:
        for warm in self._warm:
            warm.discard()

    async def _close(self) -> None:
        try:
            await super()._close()
        finally:
            await asyncio.get_running_loop().run_in_executor(None, self._discard_warm)

    @property
    def dashboard_link(self) -> str:
        """The dashboard's address; with ``forward_ports``, its local end."""
        scheduler = self.scheduler
        port = getattr(scheduler, "dashboard_port", None)
        link: str = (format_dashboard_link("127.0.0.1", port) if port
                     else super().dashboard_link)
        return link

    def __repr__(self) -> str:
        workers = len(self.workers)
        return (f"<sshpipe.dask.SSHCluster {self.name}: scheduler "
                f"{getattr(self.scheduler, 'address', None)}, {workers} worker hosts, "
                f"status={self.status.name}>")

