"""How records travel to :class:`sshpipe.logging.MpLogger`: wire form and queue handlers.

A process logs through a :class:`QueueHandler` that puts each record on the
MpLogger's queue in a compact form (:func:`to_wire`); the listener rebuilds a
:class:`logging.LogRecord` from it (:func:`from_wire`). Each handler carries the
MpLogger's token, so :func:`attach` can add it where records pass exactly once,
and :func:`detach_all` can find it again.
"""
from __future__ import annotations

import logging
import logging.handlers
import operator
import sys
from typing import Any, Iterable, List, Optional, Tuple

__all__ = ["QueueHandler", "attach", "detach_all", "from_wire", "to_wire"]


# LogRecord attributes sent as a bare tuple, in this order; msg travels beside them
# and args, exc_info, exc_text, stack_info arrive as None (merged into msg, as
# QueueHandler.prepare does). A tuple pickles and unpickles several times faster
# than a LogRecord, which names every attribute in every record. Attributes not
# listed here (``host``, ``pipe``, ``extra=``) travel in a dict beside the tuple.
_WIRE_FIELDS = ("name", "levelname", "levelno", "pathname", "filename", "module", "lineno",
                "funcName", "created", "msecs", "relativeCreated", "thread", "threadName",
                "processName", "process") + (("taskName",) if sys.version_info >= (3, 12) else ())
_WIRE_GET = operator.itemgetter(*_WIRE_FIELDS)
_NOT_EXTRA = frozenset(_WIRE_FIELDS) | {"msg", "args", "exc_info", "exc_text", "stack_info",
                                        "message", "asctime"}
_CLEARED = {"args": None, "exc_info": None, "exc_text": None, "stack_info": None}


def to_wire(record: logging.LogRecord, msg: str) -> Tuple[str, tuple, Optional[dict]]:
    """``(msg, attribute values, extra attributes or None)`` for ``record``."""
    attrs = record.__dict__
    try:
        values = _WIRE_GET(attrs)
    except KeyError:                        # a record built by hand, missing some
        values = tuple(attrs.get(field) for field in _WIRE_FIELDS)
    extra_names = attrs.keys() - _NOT_EXTRA
    extras = {name: attrs[name] for name in extra_names} if extra_names else None
    return msg, values, extras


def from_wire(item: Any) -> logging.LogRecord:
    """The record :func:`to_wire` described (a LogRecord passes through as it is)."""
    if isinstance(item, logging.LogRecord):  # from a plain QueueHandler on our queue
        return item
    msg, values, extras = item
    record = logging.LogRecord.__new__(logging.LogRecord)
    attrs = record.__dict__
    attrs.update(zip(_WIRE_FIELDS, values))
    attrs.update(_CLEARED)
    attrs["msg"] = msg
    if extras:
        attrs.update(extras)
    return record


class QueueHandler(logging.handlers.QueueHandler):
    """Puts records on an MpLogger's queue; ``token`` says which MpLogger."""

    def __init__(self, queue: Any, token: str, level: int):
        super().__init__(queue)
        self.token = token
        self.setLevel(level)

    def prepare(self, record: logging.LogRecord) -> Any:
        """The wire form of ``record``: message merged with its arguments and any
        traceback, then the attributes; the record itself is left as it was."""
        if record.exc_info or record.exc_text or record.stack_info or self.formatter:
            msg = self.format(record)
        else:
            msg = record.getMessage()
        return to_wire(record, msg)


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
