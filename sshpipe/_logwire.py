"""How a log record travels between processes and hosts: one wire form, one re-emit.

Stdlib only (just :mod:`logging`) and Python 3.9 compatible: shipped to remote
hosts with the agent. Every hop a record makes uses the same form::

    a process's QueueHandler --pickle--> MpLogger's queue --from_wire--> its files
    remote agent's handler --JSON LOG frame--> SSHPipe --reemit--> sshpipe.remote.<host>
    worker process --pickle--> its pool (agent) --reemit--> the agent's logging,
                                                   and kept --from_wire_all--> future.logs

The form is ``(msg, values, extras)``: ``msg`` the message merged with its
arguments, traceback and stack (so ``args``, ``exc_info``, ``exc_text`` and
``stack_info`` arrive as None, as ``QueueHandler.prepare`` does); ``values`` the
attributes of :data:`WIRE_FIELDS`, in that order, as a bare tuple (it pickles and
unpickles several times faster than a LogRecord, which names every attribute in
every record); ``extras`` a dict of any other attributes (``extra=``, ``host``,
``task``), or None. The field list does not depend on the Python version, so a
3.9 remote and a 3.13 caller read each other's records. JSON turns the tuples
into lists; :func:`from_wire` takes either.

Records that leave the host are made with ``plain=True``: extra attributes that
are not str, int, float, bool or None travel as their ``repr()``, so a record
always fits in JSON and loads under the caller's trust policy.
"""
from __future__ import annotations

import logging
import operator
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = ["MAX_FIELD_TEXT", "WIRE_FIELDS", "from_wire", "from_wire_all", "reemit", "to_wire"]

# LogRecord attributes sent as a bare tuple, in this order. taskName (3.12+) is
# always there, None where the sender's Python has none.
WIRE_FIELDS = ("name", "levelname", "levelno", "pathname", "filename", "module", "lineno",
               "funcName", "created", "msecs", "relativeCreated", "thread", "threadName",
               "processName", "process", "taskName")
_NAME = WIRE_FIELDS.index("name")
_LEVELNO = WIRE_FIELDS.index("levelno")
if sys.version_info >= (3, 12):
    _get_values = operator.itemgetter(*WIRE_FIELDS)
else:  # records have no taskName yet (one re-emitted from a newer Python may)
    _get_but_task = operator.itemgetter(*WIRE_FIELDS[:-1])

    def _get_values(attrs: Dict[str, Any]) -> Tuple[Any, ...]:
        values: Tuple[Any, ...] = _get_but_task(attrs)
        return values + (attrs.get("taskName"),)
_NOT_EXTRA = frozenset(WIRE_FIELDS) | {"msg", "args", "exc_info", "exc_text", "stack_info",
                                       "message", "asctime"}
_CLEARED = {"args": None, "exc_info": None, "exc_text": None, "stack_info": None}
_PLAIN_TYPES = (str, int, float, bool, type(None))
# An extra attribute's repr() is cut to this many characters when it leaves the host.
MAX_FIELD_TEXT = 4096
# Merges message, traceback and stack the way the default format shows them.
_MERGER = logging.Formatter()

WireRecord = Tuple[str, Sequence[Any], Optional[Dict[str, Any]]]


def to_wire(record: logging.LogRecord, msg: Optional[str] = None, *, plain: bool = False,
            extra: Optional[Mapping[str, Any]] = None) -> WireRecord:
    """The wire form of ``record`` (the record itself is left as it was, but for
    the ``message``/``exc_text`` caches logging's own formatters fill too).

    ``msg``: the message as already formatted (a QueueHandler with a formatter);
    by default the record's message with its traceback and stack appended.
    ``plain``: for a record leaving this host (see the module docstring).
    ``extra``: attributes to add (they win over the record's own).
    """
    if msg is None:
        if record.exc_info or record.exc_text or record.stack_info:
            msg = _MERGER.format(record)
        else:
            msg = record.getMessage()
    attrs = record.__dict__
    try:
        values = _get_values(attrs)
    except KeyError:                        # a record built by hand, missing some
        values = tuple(attrs.get(field) for field in WIRE_FIELDS)
    names = attrs.keys() - _NOT_EXTRA
    extras: Optional[Dict[str, Any]] = {name: attrs[name] for name in names} if names else None
    if extra:
        extras = dict(extras or (), **extra)
    if plain:
        values = tuple(value if isinstance(value, _PLAIN_TYPES) else _text(value)
                       for value in values)
        if extras:
            extras = {str(name): value if isinstance(value, _PLAIN_TYPES) else _text(value)
                      for name, value in extras.items()}
    return msg, values, extras


def _text(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not lose the record
        text = f"<unrepresentable {type(value).__name__}: {exc!r}>"
    return text if len(text) <= MAX_FIELD_TEXT else text[:MAX_FIELD_TEXT] + "..."


def from_wire(item: Any) -> logging.LogRecord:
    """The record :func:`to_wire` described (a LogRecord passes through as it is).

    Raises:
        ValueError: ``item`` is not a wire record (what a broken or hostile
            sender could put there), saying what is wrong with it.
    """
    if isinstance(item, logging.LogRecord):  # from a plain QueueHandler on our queue
        return item
    try:
        msg, values, extras = item
    except (TypeError, ValueError):
        raise ValueError(f"not a log record: {_short(item)}") from None
    if not isinstance(values, (tuple, list)) or len(values) != len(WIRE_FIELDS):
        raise ValueError(f"log record: {len(WIRE_FIELDS)} attribute values expected, "
                         f"got {_short(values)}")
    if extras is not None and not isinstance(extras, dict):
        raise ValueError(f"log record: extra attributes must be a dict, got {_short(extras)}")
    record = logging.LogRecord.__new__(logging.LogRecord)
    attrs = record.__dict__
    attrs.update(zip(WIRE_FIELDS, values))
    attrs.update(_CLEARED)
    attrs["msg"] = msg if isinstance(msg, str) else str(msg)
    if extras:
        for name, value in extras.items():
            if name not in _NOT_EXTRA:  # an extra cannot replace the record's own fields
                attrs[name] = value
    if not isinstance(record.levelno, int):
        raise ValueError(f"log record: level {_short(record.levelno)} is not a number")
    return record


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def from_wire_all(items: Iterable[Any], source: str) -> List[logging.LogRecord]:
    """:func:`from_wire` of each item; one that is not a record becomes a WARNING
    record saying so (naming ``source``, e.g. the host), so none is lost silently
    and a broken one cannot stop the caller."""
    records = []
    for item in items:
        try:
            records.append(from_wire(item))
        except ValueError as exc:
            records.append(logging.makeLogRecord({
                "name": "sshpipe", "levelno": logging.WARNING, "levelname": "WARNING",
                "msg": f"{source}: a log record that could not be read: {exc}"}))
    return records


def reemit(item: Any, logger: Optional[logging.Logger] = None,
           **attrs: Any) -> Optional[logging.LogRecord]:
    """Log again, in this process, the record ``item`` stands for; the record, or
    None when the logger is not enabled for its level (nothing is built then).

    ``logger``: where it goes; by default the logger of the record's own name.
    When given, the record takes that logger's name and keeps its own as
    ``remote_name``. ``attrs`` are set on the record (``host``, ``pipe``).

    Raises:
        ValueError: ``item`` is not a wire record (see :func:`from_wire`).
    """
    try:
        values = item[1]
        if len(values) != len(WIRE_FIELDS):
            raise TypeError
        levelno = values[_LEVELNO]
        name = values[_NAME]
    except (TypeError, IndexError, KeyError):
        raise ValueError(f"not a log record: {_short(item)}") from None
    if not isinstance(levelno, int):
        raise ValueError(f"log record: level {_short(levelno)} is not a number")
    target = logger if logger is not None else logging.getLogger(
        name if isinstance(name, str) and name != "root" else None)
    if not target.isEnabledFor(levelno):
        return None
    record = from_wire(item)
    if logger is not None:
        record.remote_name = record.name
        record.name = logger.name
    record.__dict__.update(attrs)
    target.handle(record)
    return record
