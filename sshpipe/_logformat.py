"""Record formatting for :mod:`sshpipe.mplog`: one format per level, microsecond dates.

:class:`LevelBasedFormatter` keeps one :class:`logging.Formatter` per level and a
``'default'`` one for the others. ``%f`` in ``datefmt`` prints microseconds
(``'%Y-%m-%d,%H:%M:%S.%f'`` gives ``2026-11-27,22:41:07.123456``), which
:func:`time.strftime` alone cannot do. Records from remote agents carry ``host``
and ``pipe`` attributes; a format may name them, and local records then show the
local host name and an empty pipe instead of failing.
"""
from __future__ import annotations

import logging
import socket
import time
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple, Union

__all__ = ["LevelBasedFormatter", "DEFAULT_LEVEL_FORMATS"]

# The seed README's formats: DEBUG lines also say where they were logged.
DEFAULT_LEVEL_FORMATS: Dict[Union[int, str], str] = {
    logging.DEBUG: "[ %(asctime)s ][ %(levelname)s ][ %(message)s ]"
                   "[ %(module)s.%(funcName)s(%(lineno)d) ]",
    "default": "[ %(asctime)s ][ %(levelname)s ][ %(message)s ]",
}

LevelKey = Union[int, str]
#: logging.Formatter's format styles.
Style = Literal["%", "{", "$"]


def _split_micro(datefmt: str) -> List[str]:
    """Split ``datefmt`` at each ``%f`` (not at ``%%f``): the parts strftime can do."""
    parts: List[str] = []
    current: List[str] = []
    i = 0
    while i < len(datefmt):
        if datefmt[i] == "%" and i + 1 < len(datefmt):
            token = datefmt[i:i + 2]
            i += 2
            if token == "%f":
                parts.append("".join(current))
                current = []
            else:
                current.append(token)
        else:
            current.append(datefmt[i])
            i += 1
    parts.append("".join(current))
    return parts


class _LevelFormat(logging.Formatter):
    """One level's format: ``%f`` dates, per-second strftime cache, attribute defaults."""

    def __init__(self, fmt: str, datefmt: Optional[str], style: Style,
                 defaults: Mapping[str, Any]):
        super().__init__(fmt, datefmt, style)
        self._date_parts = _split_micro(datefmt) if datefmt else None
        # (second, formatted parts), replaced as one object so threads never
        # see one second's parts with another's key.
        self._date_cache: Tuple[Optional[int], List[str]] = (None, [])
        # Only attributes this format names need defaults.
        self._defaults = {k: v for k, v in defaults.items() if k in fmt}

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        if datefmt is None or self._date_parts is None or datefmt != self.datefmt:
            return super().formatTime(record, datefmt)
        # Rounded to the microsecond as datetime.fromtimestamp does (created * 1e6
        # stays below 2**53, so the product is exact enough).
        second, micro = divmod(round(record.created * 1_000_000), 1_000_000)
        cached_second, parts = self._date_cache
        if cached_second != second:
            stamp = self.converter(second)
            parts = [time.strftime(part, stamp) for part in self._date_parts]
            self._date_cache = (second, parts)
        if len(parts) == 1:
            return parts[0]
        return ("%06d" % micro).join(parts)

    def formatMessage(self, record: logging.LogRecord) -> str:
        if self._defaults:
            missing = self._defaults.keys() - record.__dict__.keys()
            if missing:
                # A stand-in record with the defaults filled: the caller's record
                # is shared with other handlers and stays as it is.
                proxy = logging.LogRecord.__new__(logging.LogRecord)
                proxy.__dict__.update(self._defaults)
                proxy.__dict__.update(record.__dict__)
                return self._style.format(proxy)
        return self._style.format(record)


class LevelBasedFormatter(logging.Formatter):
    """A formatter that picks the format by the record's level.

    Args:
        level_formats: level (``logging.DEBUG`` or ``'DEBUG'``) to format, plus a
            ``'default'`` format for every other level. None uses
            :data:`DEFAULT_LEVEL_FORMATS`; a mapping without ``'default'`` gets
            that one's ``'default'``.
        datefmt: strftime format for ``%(asctime)s``; ``%f`` is microseconds.
            None gives logging's usual ``2026-11-27 22:41:07,123``.
        style: ``'%'``, ``'{'`` or ``'$'``, for every format.
        defaults: values for record attributes a format names but a record lacks.
            By default ``host`` is this machine's name and ``pipe`` is empty, so
            one format serves local records and remote agents' records alike.
    """

    def __init__(self, level_formats: Optional[Mapping[LevelKey, str]] = None,
                 datefmt: Optional[str] = None, style: Style = "%",
                 defaults: Optional[Mapping[str, Any]] = None):
        formats: Dict[LevelKey, str] = dict(DEFAULT_LEVEL_FORMATS if level_formats is None
                                            else level_formats)
        formats.setdefault("default", DEFAULT_LEVEL_FORMATS["default"])
        if defaults is None:
            defaults = {"host": socket.gethostname(), "pipe": ""}
        super().__init__(formats["default"], datefmt, style)
        self.level_formats = formats
        self._by_level: Dict[int, _LevelFormat] = {}
        for level, fmt in formats.items():
            if level == "default":
                continue
            self._by_level[self._level_number(level)] = _LevelFormat(fmt, datefmt, style, defaults)
        self._default = _LevelFormat(formats["default"], datefmt, style, defaults)

    @staticmethod
    def _level_number(level: LevelKey) -> int:
        if isinstance(level, int):
            return level
        number = logging.getLevelName(str(level).upper())
        if not isinstance(number, int):
            raise ValueError(f"unknown logging level {level!r} in level_formats")
        return number

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` with the format for its level, or the default one."""
        return self._by_level.get(record.levelno, self._default).format(record)
