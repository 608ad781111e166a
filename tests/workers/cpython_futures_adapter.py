"""ProcessPoolExecutor's constructor, mapped onto an SSHExecutor with one host.

The host is the test sshd. Its alias, ssh config and remote Python come from
:data:`SERVER` (set by the test module's fixture) or, in a Python that CPython's
tests start as a subprocess, from ``SSHPIPE_FUTURES_*`` environment variables.
The remote gets ``PYTHONPATH`` = the overlay, so that it imports the same
``test.test_concurrent_futures`` the tests' functions come from.

Results are loaded under the default trust policy (:mod:`sshpipe.trust`), with
the one class of the suite's own that its tasks return (``MyObject``) allowed,
as a user allows theirs: so the suite's crafted results (``ExitAtUnpickle``
...) meet the policy a real caller has.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Tuple

from workers import SSHExecutor

__all__ = ["SERVER", "SSHProcessPool", "environment"]

# {"alias", "config", "python", "overlay"}: set by the test module.
SERVER: Dict[str, str] = {}


def environment() -> Dict[str, str]:
    """What a subprocess needs to build the same adapter."""
    return {f"SSHPIPE_FUTURES_{key.upper()}": value for key, value in SERVER.items()}


def _server() -> Dict[str, str]:
    if SERVER:
        return SERVER
    return {key: os.environ[f"SSHPIPE_FUTURES_{key.upper()}"]
            for key in ("alias", "config", "python", "overlay")}


class SSHProcessPool(SSHExecutor):
    """``ProcessPoolExecutor(max_workers, mp_context, initializer, initargs, *,
    max_tasks_per_child)`` as one host with ``max_workers`` slots."""

    def __init__(self, max_workers: Optional[int] = None, mp_context: Any = None,
                 initializer: Optional[Callable[..., Any]] = None,
                 initargs: Tuple[Any, ...] = (), *,
                 max_tasks_per_child: Optional[int] = None):
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        server = _server()
        super().__init__([server["alias"]], slots=max_workers or os.cpu_count() or 1,
                         config=server["config"], python=server["python"],
                         env={"PYTHONPATH": server["overlay"]}, mp_context=mp_context,
                         initializer=initializer, initargs=initargs,
                         max_tasks_per_child=max_tasks_per_child, ready_timeout=60,
                         trust_remote=["test.test_concurrent_futures:MyObject"])
        self._max_workers = max_workers or os.cpu_count() or 1
