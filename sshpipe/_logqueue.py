"""The queue side of :class:`sshpipe.mplog.MpLogger`: the handlers that put records
on its queue, attached where records pass exactly once.

A process logs through a :class:`QueueHandler` that puts each record on the
MpLogger's queue in the wire form of :mod:`sshpipe._logwire`; the listener
rebuilds it with :func:`sshpipe._logwire.from_wire`. Each handler carries the
MpLogger's token, so :func:`attach` can add it where records pass exactly once,
and :func:`detach_all` can find it again.
"""
from __future__ import annotations

import logging
import logging.handlers
from typing import Any, Iterable, List, Optional

from sshpipe._logwire import to_wire

__all__ = ["QueueHandler", "attach", "detach_all"]


class QueueHandler(logging.handlers.QueueHandler):
    """Puts records on an MpLogger's queue; ``token`` says which MpLogger."""

    def __init__(self, queue: Any, token: str, level: int):
        super().__init__(queue)
        self.token = token
        self.setLevel(level)

    def prepare(self, record: logging.LogRecord) -> Any:
        """The wire form of ``record``: its message merged with its arguments, any
        traceback (formatted by this handler's formatter, if it has one), then
        the attributes; the record itself is left as it was."""
        return to_wire(record, self.format(record) if self.formatter else None)


def _has_token(logger: logging.Logger, token: str) -> bool:
    return any(getattr(h, "token", None) == token for h in logger.handlers)


def _is_covered(logger: logging.Logger, token: str) -> bool:
    """True if a record logged on ``logger`` already reaches a handler with ``token``."""
    current: Optional[logging.Logger] = logger
    while current is not None:
        if _has_token(current, token):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def _propagates_to(logger: logging.Logger, ancestor: logging.Logger) -> bool:
    """True if records of ``logger`` reach ``ancestor``'s handlers."""
    current: Optional[logging.Logger] = logger
    while current is not None and current is not ancestor:
        if not current.propagate:
            return False
        current = current.parent
    return current is ancestor


def attach(handler: QueueHandler, names: Iterable[str]) -> List[logging.Logger]:
    """Attach ``handler`` so that records of every logger in ``names`` reach it once.

    Returns:
        The loggers the handler was added to.
    """
    attached = []
    # Shallowest first, so a logger under one already covered is skipped.
    for name in sorted(set(names), key=lambda n: (n.count("."), n)):
        logger = logging.getLogger(name)
        if _is_covered(logger, handler.token):
            continue
        # A descendant attached earlier (e.g. get_logger("a.b") then get_logger("a"))
        # would now get each record twice: detach it there.
        prefix = f"{logger.name}." if name else ""
        for other_name, other in list(logging.Logger.manager.loggerDict.items()):
            if (isinstance(other, logging.Logger) and other_name.startswith(prefix)
                    and other is not logger and _propagates_to(other, logger)):
                for other_handler in list(other.handlers):
                    if getattr(other_handler, "token", None) == handler.token:
                        other.removeHandler(other_handler)
        logger.addHandler(handler)
        attached.append(logger)
    return attached


def detach_all(token: str) -> None:
    """Remove every handler carrying ``token`` from every logger of this process."""
    loggers = [logging.getLogger()] + [
        lg for lg in list(logging.Logger.manager.loggerDict.values())
        if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in list(logger.handlers):
            if getattr(handler, "token", None) == token:
                logger.removeHandler(handler)
