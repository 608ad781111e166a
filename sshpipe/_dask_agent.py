"""The remote half of :mod:`sshpipe.dask`: a dask scheduler or workers inside an agent.

Stdlib only at import: shipped to the remote with the agent runtime. It needs
dask and distributed on the remote *when it runs*, so the pipe's ``python`` is
an environment that has them (dask's compiled dependencies cannot travel
zero-install).

::

    caller (sshpipe.dask)          agent process on the host
    ("reserve",)      ---------->  scheduler only: picks its address now
                      <----------  ("address", "tcp://host:port" or None)
    ("prepare",)      ---------->  main thread: imports distributed ahead
    ("start", {...})  ---------->  main thread: handle() starts the server thread,
                                   waits for it to be up
                      <----------  ("started", {"address": ..., "dashboard": port})
                                   server thread: an asyncio loop running the
                                   dask Scheduler, or the Nanny/Worker objects
    ("stop", timeout) ---------->  closes them (gracefully, bounded), replies
                      <----------  ("stopped", {})
    end of input / TERM            atexit: closes whatever still runs

The dask servers are objects in this process, not a ``dask spec`` command, so
their addresses come back through the pipe as data (nothing is read from their
logs). The agent's loader supervisor ends the agent's whole process group when
the agent ends, however it ends: what a Nanny spawned goes with it.

When the caller gives no ``host`` for a scheduler, it listens on the address the
caller reached this host at (``SSH_CONNECTION``): the workers and the client
can reach it there, whatever routes the host has (dask would otherwise guess
from a route to a public address).

"reserve" lets the workers start while the scheduler is still importing: the
scheduler's address is fixed first (a free port is found by binding port 0 and
is then given to the Scheduler), and the workers connect to it, retrying until
it listens. Should the port be taken in between, the scheduler starts on a new
one and reports that; the caller then restarts the workers for it.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
import threading
import traceback
from typing import Any, Dict, List, Optional, Tuple

from sshpipe.handler import SSHPipeHandler

__all__ = ["DaskAgent"]

logger = logging.getLogger(__name__)

# How long "start" waits for the servers to come up before it reports failure.
START_TIMEOUT = 120.0


class DaskAgent(SSHPipeHandler):
    """Runs a dask scheduler (``role="scheduler"``) or ``n_workers`` workers
    (``role="worker"``) until told to stop.

    Args:
        role: "scheduler" or "worker".
        options: keyword arguments of the dask server class (``Scheduler``, or
            the worker class), plus for workers ``n_workers``.
        worker_class: dotted name of the worker class (default
            ``distributed.Nanny``).
        dask_config: the caller's dask configuration, applied here first (as
            dask's own SSHCluster passes it in an environment variable).
    """

    def __init__(self, role: str, options: Optional[Dict[str, Any]] = None,
                 worker_class: str = "distributed.Nanny",
                 dask_config: Optional[Dict[str, Any]] = None, **kwargs: Any):
        super().__init__(**kwargs)
        if role not in ("scheduler", "worker"):
            raise ValueError(f"role must be 'scheduler' or 'worker', not {role!r}")
        self.role = role
        self.options = dict(options or {})
        self.worker_class = worker_class
        self.dask_config = dask_config or {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._servers: List[Any] = []
        self._stopped: Optional[asyncio.Event] = None
        self._prepare_error = ""
        self._reserved_port = False  # the port was picked by _reserve (may be taken since)

    # -- hooks --------------------------------------------------------------
    def handle(self, received: Any) -> None:
        kind = received[0] if isinstance(received, tuple) and received else received
        if kind == "reserve":
            self.reply(("address", self._reserve()))
        elif kind == "prepare":
            self._prepare()
        elif kind == "start":
            self.reply(self._start(received[1]))
        elif kind == "stop":
            self._stop(float(received[1]))
            self.reply(("stopped", {}))
        else:
            raise ValueError(f"unknown message {received!r}")

    def atexit(self, received: Any) -> None:
        self._stop(10.0)

    # -- servers ------------------------------------------------------------
    def _reserve(self) -> Optional[str]:
        """The scheduler's address, fixed now (None when it depends on what
        only dask can work out: an interface, another protocol, TLS)."""
        options = self.options
        if self.role != "scheduler" or any(options.get(key) for key in (
                "interface", "protocol", "security")):
            return None
        host = options.get("host") or _ssh_server_address()
        if not host:
            return None
        port = options.get("port") or 0
        if not port:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.bind((host, 0))
                    port = probe.getsockname()[1]
            except OSError:
                return None
            self._reserved_port = True
        options["host"], options["port"] = host, port
        return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"

    def _prepare(self) -> None:
        """Import what starting will need, so that "start" takes only the start.
        A failure is kept for "start" to report (a failing message would end
        the agent before the caller hears why)."""
        try:
            import distributed  # noqa: F401

            if self.role == "worker":
                importlib.import_module(self.worker_class.rpartition(".")[0])
        except Exception:
            self._prepare_error = traceback.format_exc()

    def _start(self, request: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        if self._thread is not None:
            return ("failed", {"error": "already started"})
        if self._prepare_error:
            return ("failed", {"error": self._prepare_error})
        ready = threading.Event()
        outcome: Dict[str, Any] = {}
        self._thread = threading.Thread(target=self._serve, args=(request, ready, outcome),
                                        name=f"dask-{self.role}", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT):
            return ("failed", {"error": f"the dask {self.role} did not start within "
                                        f"{START_TIMEOUT:g} s"})
        if "error" in outcome:
            return ("failed", outcome)
        return ("started", outcome)

    def _serve(self, request: Dict[str, Any], ready: threading.Event,
               outcome: Dict[str, Any]) -> None:
        """Server thread: an event loop of its own, running the servers until stopped."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._run(request, ready, outcome))
        except BaseException:  # reported to the caller; the agent keeps serving
            outcome.setdefault("error", traceback.format_exc())
            ready.set()
        finally:
            loop.close()

    async def _run(self, request: Dict[str, Any], ready: threading.Event,
                   outcome: Dict[str, Any]) -> None:
        import dask.config

        if self.dask_config:
            dask.config.update(dask.config.config, self.dask_config, priority="new")
        self._stopped = asyncio.Event()
        try:
            if self.role == "scheduler":
                info = await self._start_scheduler()
            else:
                info = await self._start_workers(request["scheduler"], request.get("name"))
        except BaseException:
            outcome["error"] = traceback.format_exc()
            ready.set()
            await self._close_servers(10.0)
            return
        outcome.update(info)
        ready.set()
        await self._stopped.wait()

    async def _start_scheduler(self) -> Dict[str, Any]:
        from distributed import Scheduler

        options = dict(self.options)
        if not any(options.get(key) for key in ("host", "interface")):
            options["host"] = _ssh_server_address() or None
        try:
            scheduler = Scheduler(**options)
            self._servers.append(scheduler)
            await scheduler
        except OSError:
            if not self._reserved_port:
                raise
            # The reserved port was taken in between: any free one (the caller
            # sees the new address and restarts the workers it started early).
            logger.warning("the reserved port %s was taken; the scheduler takes another",
                           options.get("port"))
            await self._close_servers(5.0)
            options["port"] = 0
            scheduler = Scheduler(**options)
            self._servers.append(scheduler)
            await scheduler
        http = getattr(scheduler, "http_server", None)
        dashboard = scheduler.services.get("dashboard") if scheduler.services else None
        return {"address": scheduler.address, "pid": os.getpid(),
                "dashboard": getattr(dashboard, "port", None) if dashboard is not None
                else None, "http_port": getattr(http, "port", None)}

    async def _start_workers(self, scheduler: str, name: Any) -> Dict[str, Any]:
        from distributed import Nanny

        module, _, attribute = self.worker_class.rpartition(".")
        cls = getattr(importlib.import_module(module), attribute)
        if isinstance(cls, type) and issubclass(cls, Nanny):
            _start_resource_tracker_quietly()
        options = dict(self.options)
        count = int(options.pop("n_workers", 1))
        workers = []
        for index in range(count):
            own = dict(options)
            if name is not None:
                own["name"] = name if count == 1 else f"{name}-{index}"
            workers.append(cls(scheduler, **own))
        self._servers.extend(workers)
        await asyncio.gather(*workers)
        return {"addresses": [worker.address for worker in workers], "pid": os.getpid(),
                "names": [getattr(worker, "name", None) for worker in workers]}

    async def _close_servers(self, timeout: float) -> None:
        servers, self._servers = self._servers, []
        if not servers:
            return
        closing = [asyncio.ensure_future(server.close()) for server in servers]
        done, pending = await asyncio.wait(closing, timeout=timeout)
        for task in pending:
            task.cancel()

    def _stop(self, timeout: float) -> None:
        """Close the servers (at most ``timeout`` seconds), then end the loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return

        async def stop() -> None:
            try:
                await self._close_servers(timeout)
            finally:
                if self._stopped is not None:
                    self._stopped.set()

        try:
            future = asyncio.run_coroutine_threadsafe(stop(), loop)
        except RuntimeError:  # the loop already ended
            return
        try:
            future.result(timeout + 5.0)
        except Exception as exc:  # reported in the agent's log; the agent ends anyway
            logger.warning("closing the dask %s: %r", self.role, exc)
        thread.join(5.0)


def _start_resource_tracker_quietly() -> None:
    """Start multiprocessing's resource tracker with fd 1 on /dev/null.

    A Nanny spawns its worker with multiprocessing, which starts the tracker on
    first use; the tracker ignores SIGTERM and keeps the fds 0-2 it inherits, so
    it would hold the agent's stdout capture open after the agent ends (costing
    every close the capture thread's whole wait). Started here first, it has
    nothing of ours on fd 1.
    """
    from multiprocessing import resource_tracker

    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        resource_tracker.ensure_running()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _ssh_server_address() -> str:
    """This host's address as the SSH client reached it (``SSH_CONNECTION`` is
    "client_ip client_port server_ip server_port")."""
    fields = os.environ.get("SSH_CONNECTION", "").split()
    return fields[2] if len(fields) == 4 else ""
