"""The one wire form of log records (sshpipe._logwire): every hop, every Python."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sshpipe._logwire import WIRE_FIELDS, from_wire, from_wire_all, reemit, to_wire

ROOT = Path(__file__).resolve().parent.parent


def _record(msg="a %s b", args=("X",), level=logging.ERROR, **attrs):
    record = logging.LogRecord("n.x", level, "/p/f.py", 7, msg, args, None, "fn")
    record.__dict__.update(attrs)
    return record


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def kept():
    """A fresh logger (no propagation) whose records are kept."""
    logger = logging.getLogger(f"test_logwire.{os.urandom(4).hex()}")
    logger.propagate = False
    handler = _Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, handler.records
    logger.removeHandler(handler)


def test_json_round_trip_keeps_attributes_and_plain_extras():
    """plain=True makes a record JSON can carry: attributes kept, extras that are
    not scalars sent as their repr(), cut at a bound."""
    record = _record(host="db1", count=3, obj=object(), big="x" * 10, huge=["y"] * 5000)
    item = json.loads(json.dumps(to_wire(record, plain=True)))
    rebuilt = from_wire(item)
    assert rebuilt.getMessage() == "a X b" and rebuilt.args is None
    for attr in ("name", "levelno", "levelname", "pathname", "lineno", "funcName", "created",
                 "msecs", "process", "processName", "thread", "threadName", "host", "count",
                 "big"):
        assert getattr(rebuilt, attr) == getattr(record, attr), attr
    assert rebuilt.obj.startswith("<object object at")
    assert rebuilt.huge.endswith("...") and len(rebuilt.huge) < 5000


def test_layout_is_the_same_on_every_python():
    """taskName (3.12+) always has its place, so the value count never varies."""
    values = to_wire(_record())[1]
    assert len(values) == len(WIRE_FIELDS) and WIRE_FIELDS[-1] == "taskName"
    assert values[-1] == getattr(_record(), "taskName", None)


def test_traceback_and_stack_are_merged_into_the_message():
    """The traceback travels as text inside msg; exc_info cannot cross hosts."""
    try:
        raise KeyError("boom")
    except KeyError:
        record = _record("failed", None, exc_info=sys.exc_info())
    record.exc_info = record.__dict__.pop("exc_info")
    rebuilt = from_wire(json.loads(json.dumps(to_wire(record, plain=True))))
    assert rebuilt.exc_info is None and rebuilt.exc_text is None
    text = rebuilt.getMessage()
    assert text.startswith("failed\nTraceback") and "KeyError: 'boom'" in text
    assert logging.Formatter("%(message)s").format(rebuilt) == text


def test_extra_argument_wins_and_cannot_replace_fields():
    """to_wire(extra=) adds attributes; a sender's extras never replace the
    record's own fields when read."""
    item = to_wire(_record(task=1), extra={"task": 9})
    assert from_wire(item).task == 9
    msg, values, _ = item
    forged = from_wire((msg, values, {"levelno": 50, "msg": "forged", "host": "h"}))
    assert forged.levelno == logging.ERROR and forged.getMessage() == "a X b"
    assert forged.host == "h"


@pytest.mark.parametrize("item", [
    None, 5, "text", ("only", "two"), ("m", [1, 2, 3], None),
    ("m", ["x"] * len(WIRE_FIELDS), "not a dict"),
    ("m", ["n", "INFO", "not a level"] + [None] * (len(WIRE_FIELDS) - 3), None),
])
def test_what_is_not_a_record_is_refused_with_a_reason(item, kept):
    """from_wire and reemit raise ValueError for anything else; from_wire_all
    turns it into a WARNING record naming the source."""
    logger, records = kept
    with pytest.raises(ValueError, match="record"):
        from_wire(item)
    with pytest.raises(ValueError, match="record"):
        reemit(item, logger)
    assert records == []
    good = to_wire(_record())
    out = from_wire_all([good, item], "db1")
    assert out[0].getMessage() == "a X b"
    assert out[1].levelno == logging.WARNING and out[1].getMessage().startswith(
        "db1: a log record that could not be read")


def test_reemit_filters_by_level_and_names_the_source(kept):
    """Below the logger's level nothing is built; given a logger, the record takes
    its name and keeps its own as remote_name; attrs are set."""
    logger, records = kept
    assert reemit(to_wire(_record(level=logging.DEBUG)), logger) is None
    assert records == []
    record = reemit(json.loads(json.dumps(to_wire(_record(), plain=True))), logger,
                    host="db1", pipe="p1")
    assert records == [record]
    assert (record.name, record.remote_name, record.host, record.pipe) == (
        logger.name, "n.x", "db1", "p1")


def test_reemit_without_a_logger_uses_the_records_own(kept):
    """As the worker pool re-emits: into the logger the record was logged on."""
    logger, records = kept
    source = _record()
    source.name = logger.name
    reemit(to_wire(source))
    assert [r.name for r in records] == [logger.name]
    assert not hasattr(records[0], "remote_name")


def _pyenv_python(minor):
    found = sorted(Path.home().glob(f".pyenv/versions/{minor}.*/bin/python{minor}"))
    return str(found[-1]) if found else None


@pytest.mark.parametrize("minor", ["3.9", "3.13"])
def test_records_cross_python_versions(minor, kept):
    """A record made by another Python (the remote's) reads here, and ours there."""
    python = _pyenv_python(minor)
    if python is None:
        pytest.skip(f"no CPython {minor} under ~/.pyenv")
    logger, records = kept
    ours = json.dumps(to_wire(_record(host="here"), plain=True))
    script = (
        "import json, logging, sys\n"
        "from sshpipe._logwire import from_wire, to_wire\n"
        "ours = from_wire(json.loads(sys.stdin.read()))\n"
        "assert ours.getMessage() == 'a X b' and ours.host == 'here', vars(ours)\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    record = logging.LogRecord('far', 30, '/r.py', 3, 'n=%d', (4,), sys.exc_info())\n"
        "print(json.dumps(to_wire(record, plain=True, extra={'task': 2})))\n")
    done = subprocess.run([python, "-c", script], input=ours, capture_output=True, text=True,
                          timeout=60, cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    record = reemit(json.loads(done.stdout), logger, host="far")
    assert records == [record]
    assert record.remote_name == "far" and record.levelno == logging.WARNING
    assert record.getMessage().startswith("n=4\nTraceback") and record.task == 2
