"""SSHPipeHandler: the remote side of a pipe, subclassed by users.

Stdlib only: this module is shipped to remote hosts as source.

A handler reacts to the objects the caller sends. The agent (:mod:`sshpipe.agent`)
owns the protocol and calls the hooks in this order::

    atstart(first)          once, with the first message, before it is handled
    handle(message)         for every message that is not a term message
    atexit(last)            once, with the term message (None if the caller
                            just closed the pipe or vanished)

``reply(obj)`` sends an object back; the caller gets it from ``SSHPipe.recv()``.

Exit statuses of the agent process (``SSHPipe.exitcode`` on the caller side):

== =====================================================================
0  ended by a term message or by the caller closing the pipe
1  protocol failure: the caller's stream was not valid sshpipe frames
2  ``atstart`` raised
3  ``handle`` (or reading a message) raised more often than ``tolerance``
4  ``atexit`` raised
5  the caller vanished: no heartbeat within the agreed bound
== =====================================================================
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Iterable, Optional

__all__ = ["EXIT_ATEXIT", "EXIT_ATSTART", "EXIT_CALLER_LOST", "EXIT_HANDLE", "EXIT_OK",
           "EXIT_PROTOCOL", "SSHPipeClient", "SSHPipeHandler"]

EXIT_OK = 0
EXIT_PROTOCOL = 1
EXIT_ATSTART = 2
EXIT_HANDLE = 3
EXIT_ATEXIT = 4
EXIT_CALLER_LOST = 5


class SSHPipeHandler:
    """Base class of remote agents: override ``atstart``, ``handle``, ``atexit``.

    Args:
        handler_id: a name for this handler in logs; defaults to
            ``<class name>-<pid>``.
        term_messages: strings that end the loop when received; the caller's own
            ``term_message`` is always added. Default TERM, STOP, FINISH, EXIT, QUIT.
        tolerance: how many failing messages to survive: -1 every one, 0 none
            (stop at the first), n the first n.
    """

    TERM_MESSAGES = ("TERM", "STOP", "FINISH", "EXIT", "QUIT")

    def __init__(self, handler_id: Optional[str] = None,
                 term_messages: Optional[Iterable[str]] = None, tolerance: int = 0):
        if not isinstance(tolerance, int) or tolerance < -1:
            raise ValueError(f"tolerance must be -1, 0 or a positive int, not {tolerance!r}")
        self.handler_id = handler_id or f"{type(self).__name__}-{os.getpid()}"
        self.term_messages = frozenset(term_messages if term_messages is not None
                                       else self.TERM_MESSAGES)
        self.tolerance = tolerance
        self.module_logger = logging.getLogger(type(self).__module__)
        self._agent: Any = None  # set by the agent while it serves this handler

    # -- hooks ------------------------------------------------------------
    def atstart(self, received: Any) -> None:
        """Called once, with the first message, before that message is handled."""

    def handle(self, received: Any) -> None:
        """Called for each message that is not a term message."""

    def atexit(self, received: Any) -> None:
        """Called once at the end, with the term message (None if there was none)."""

    # -- services ---------------------------------------------------------
    def reply(self, obj: Any) -> None:
        """Send ``obj`` back to the caller, where ``SSHPipe.recv()`` returns it.

        Raises:
            RuntimeError: called outside :meth:`service_loop`.
            Exception: whatever serializing ``obj`` raises (reported to the caller
                as an error of the message being handled).
        """
        if self._agent is None:
            raise RuntimeError("reply() works only while service_loop() runs")
        self._agent.reply(obj)

    def is_term_message(self, received: Any) -> bool:
        """True if ``received`` ends the loop; only strings can be term messages."""
        return isinstance(received, str) and received in self.term_messages

    def service_loop(self) -> None:
        """Serve the caller over stdin/stdout until the pipe ends, then exit the
        process with one of the exit statuses listed in this module's docstring."""
        from sshpipe.agent import serve

        sys.exit(serve(self))


# The seed's README calls the agent base class SSHPipeClient ("an object of
# SSHPipeClient or of a class inheriting from it"): the same class, by that name.
SSHPipeClient = SSHPipeHandler


# The message SSHPipe(target=...) sends once the agent said hello: run now.
RUN_TARGET = "sshpipe:run-target"


class TargetHandler(SSHPipeHandler):
    """Runs ``target(*args, **kwargs)`` once, as ``multiprocessing.Process`` runs
    its target, then ends the agent with the status a Process would have: 0,
    the ``sys.exit`` code, or 1 with the traceback on stderr for an exception.

    Used by ``SSHPipe(host, target=...)``; the caller sends :data:`RUN_TARGET`
    right after the hello.
    """

    def __init__(self, target: Any, args: Any = (), kwargs: Any = None,
                 process_name: Optional[str] = None, daemon: bool = False):
        super().__init__(term_messages=())
        self._call = (target, tuple(args), dict(kwargs or {}))
        self._process = (process_name, daemon)

    def handle(self, received: Any) -> None:
        if received != RUN_TARGET:
            self.reply(received)  # anything else sent to a target pipe comes back
            return
        target, args, kwargs = self._call
        self._call = (None, (), {})  # the target's objects live no longer than it
        name, daemon = self._process
        if name is not None:
            import multiprocessing

            current = multiprocessing.current_process()
            current.name = name
            current.daemon = daemon  # what Process sets in its child (this one never started)
        try:
            target(*args, **kwargs)
            code: Any = 0
        except SystemExit as exc:
            code = exc.code
        except BaseException:  # as Process._bootstrap: traceback to stderr, status 1
            import traceback

            sys.stderr.write(f"Process {self.handler_id}:\n")
            traceback.print_exc()
            code = 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (AttributeError, ValueError, OSError):
                    pass
        raise SystemExit(code)
