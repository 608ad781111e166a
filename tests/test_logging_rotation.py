"""TimedSizedRotatingHandler: rollover by size or time, whichever first, with a controlled clock."""
from __future__ import annotations

import calendar
import logging
import os
import stat
import time
from pathlib import Path
from typing import List

import pytest

from sshpipe.mplog import TimedSizedRotatingHandler

START = float(calendar.timegm((2026, 11, 27, 22, 0, 0, 0, 0, 0)))   # a UTC midnight-free hour


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _handler(path: Path, clock: Clock, **kwargs) -> TimedSizedRotatingHandler:
    kwargs.setdefault("utc", True)
    handler = TimedSizedRotatingHandler(str(path), clock=clock, **kwargs)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def _emit(handler: logging.Handler, message: str) -> None:
    handler.handle(logging.makeLogRecord({"msg": message, "levelno": logging.INFO,
                                          "levelname": "INFO"}))


def _all_lines(handler: TimedSizedRotatingHandler) -> List[str]:
    """Every line, oldest backup first, then the current file."""
    lines: List[str] = []
    for path in handler.backups() + [handler.baseFilename]:
        if os.path.exists(path):
            lines += Path(path).read_text(encoding="utf-8").splitlines()
    return lines


def test_size_rollover_keeps_every_file_under_max_bytes(tmp_path):
    """With maxBytes each file stays within the limit and no line is lost or split."""
    clock = Clock()
    handler = _handler(tmp_path / "app.log", clock, maxBytes=100)
    messages = [f"message {i:03d} " + "x" * 12 for i in range(40)]     # 25 bytes a line
    for message in messages:
        _emit(handler, message)
    handler.close()
    files = handler.backups() + [handler.baseFilename]
    assert len(files) == 10
    assert all(os.path.getsize(path) == 100 for path in files)
    assert _all_lines(handler) == messages


def test_size_rollover_backups_in_one_second_get_numbered(tmp_path):
    """Several size rollovers in the same second give name, name.1, name.2 ... in order."""
    handler = _handler(tmp_path / "app.log", Clock(), maxBytes=10)
    for i in range(4):
        _emit(handler, f"line{i}")                                      # 6 bytes each
    handler.close()
    names = [os.path.basename(p) for p in handler.backups()]
    assert names == ["app.log.2026-11-27_22-00-00", "app.log.2026-11-27_22-00-00.1",
                     "app.log.2026-11-27_22-00-00.2"]
    assert _all_lines(handler) == ["line0", "line1", "line2", "line3"]


def test_record_bigger_than_max_bytes_gets_a_file_of_its_own(tmp_path):
    """A record over maxBytes is written whole, never split, and never into an empty-file loop."""
    handler = _handler(tmp_path / "app.log", Clock(), maxBytes=10)
    _emit(handler, "y" * 50)
    _emit(handler, "z" * 50)
    handler.close()
    assert _all_lines(handler) == ["y" * 50, "z" * 50]
    assert len(handler.backups()) == 1


def test_size_counts_bytes_not_characters(tmp_path):
    """maxBytes counts encoded bytes: multi-byte characters roll over sooner."""
    handler = _handler(tmp_path / "app.log", Clock(), maxBytes=12, encoding="utf-8")
    _emit(handler, "ééééé")            # 10 bytes + newline
    _emit(handler, "é")                # would make 14
    handler.close()
    assert len(handler.backups()) == 1
    assert os.path.getsize(handler.baseFilename) == 3


def test_backup_count_keeps_newest(tmp_path):
    """backupCount=2 deletes the oldest backups and keeps the two newest."""
    clock = Clock()
    handler = _handler(tmp_path / "app.log", clock, maxBytes=6, backupCount=2)
    for i in range(6):
        _emit(handler, f"rec{i}")      # 5 bytes: one record per file
        clock.now += 1
    handler.close()
    assert len(handler.backups()) == 2
    assert _all_lines(handler) == ["rec3", "rec4", "rec5"]


def test_time_rollover_with_controlled_clock(tmp_path):
    """when='S', interval=10: records in the interval share a file; the next one starts
    a new file."""
    clock = Clock()
    handler = _handler(tmp_path / "app.log", clock, when="S", interval=10)
    _emit(handler, "t0")
    clock.now = START + 9.999
    _emit(handler, "t9")
    assert handler.backups() == []
    clock.now = START + 10
    _emit(handler, "t10")
    clock.now = START + 35
    _emit(handler, "t35")
    handler.close()
    backups = [os.path.basename(p) for p in handler.backups()]
    assert backups == ["app.log.2026-11-27_22-00-00", "app.log.2026-11-27_22-00-10"]
    assert Path(handler.backups()[0]).read_text() == "t0\nt9\n"
    assert Path(handler.baseFilename).read_text() == "t35\n"
    assert handler.rolloverAt == START + 45


def test_time_or_size_whichever_first(tmp_path):
    """A size rollover inside an interval does not move the next time rollover later."""
    clock = Clock()
    handler = _handler(tmp_path / "app.log", clock, when="M", interval=1, maxBytes=8)
    _emit(handler, "aaaa")             # 5 bytes
    clock.now += 20
    _emit(handler, "bbbb")             # size rollover at +20s
    assert len(handler.backups()) == 1
    at = handler.rolloverAt
    assert START + 20 < at <= START + 80
    clock.now = at
    _emit(handler, "cc")               # time rollover although the file is small
    handler.close()
    assert len(handler.backups()) == 2
    assert _all_lines(handler) == ["aaaa", "bbbb", "cc"]


def test_midnight_rollover_utc(tmp_path):
    """when='midnight' with utc rolls over at the next UTC midnight, not 24h after start."""
    clock = Clock(START)               # 22:00 UTC
    handler = _handler(tmp_path / "app.log", clock, when="midnight")
    assert handler.rolloverAt == START + 2 * 3600
    _emit(handler, "before")
    clock.now = START + 2 * 3600 + 1
    _emit(handler, "after")
    handler.close()
    assert [os.path.basename(p) for p in handler.backups()] == ["app.log.2026-11-27_22-00-00"]


def test_existing_file_older_than_interval_rolls_over_at_first_record(tmp_path):
    """Appending to a file last written long ago rolls it over before the first new record."""
    path = tmp_path / "app.log"
    path.write_text("old\n")
    old = START - 7200
    os.utime(path, (old, old))
    handler = _handler(path, Clock(), when="H", interval=1, delay=True)
    _emit(handler, "new")
    handler.close()
    assert [os.path.basename(p) for p in handler.backups()] == ["app.log.2026-11-27_20-00-00"]
    assert path.read_text() == "new\n"


def test_should_rollover_agrees_with_emit(tmp_path):
    """shouldRollover() answers for time and for size like emit() decides."""
    clock = Clock()
    handler = _handler(tmp_path / "app.log", clock, maxBytes=10, when="S", interval=5)
    record = logging.makeLogRecord({"msg": "abcd"})
    assert not handler.shouldRollover(record)
    _emit(handler, "abcd")
    assert handler.shouldRollover(logging.makeLogRecord({"msg": "abcdefgh"}))
    assert not handler.shouldRollover(record)
    clock.now += 5
    assert handler.shouldRollover(record)
    handler.close()


def test_files_and_backups_are_0600(tmp_path):
    """The file and its backups are created 0600 even under umask 000."""
    old_umask = os.umask(0)
    try:
        handler = _handler(tmp_path / "app.log", Clock(), maxBytes=5)
        _emit(handler, "aaaa")
        _emit(handler, "bbbb")
        handler.close()
    finally:
        os.umask(old_umask)
    paths = handler.backups() + [handler.baseFilename]
    assert len(paths) == 2
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in paths)


def test_mode_w_truncates_once_then_appends_after_reopen(tmp_path):
    """mode='w' truncates the old file at first open only; close() then emit() appends."""
    path = tmp_path / "app.log"
    path.write_text("previous run\n")
    handler = _handler(path, Clock(), mode="w")
    _emit(handler, "one")
    handler.close()
    _emit(handler, "two")              # logging reopens a closed file handler's stream
    handler.close()
    assert path.read_text() == "one\ntwo\n"


def test_flush_every_record_off_leaves_flushing_to_caller(tmp_path):
    """With flush_every_record False lines reach the file on flush()."""
    handler = _handler(tmp_path / "app.log", Clock())
    handler.flush_every_record = False
    _emit(handler, "buffered")
    assert (tmp_path / "app.log").read_text() == ""
    handler.flush()
    assert (tmp_path / "app.log").read_text() == "buffered\n"
    handler.close()


@pytest.mark.parametrize("kwargs", [{"mode": "r"}, {"maxBytes": -1}, {"backupCount": -2}])
def test_bad_arguments(tmp_path, kwargs):
    """Read mode and negative limits are refused."""
    with pytest.raises(ValueError):
        TimedSizedRotatingHandler(str(tmp_path / "x.log"), **kwargs)


def test_real_clock_default(tmp_path):
    """Without a clock the handler uses time.time for its first rollover time."""
    before = time.time()
    handler = TimedSizedRotatingHandler(str(tmp_path / "x.log"), when="S", interval=30, delay=True)
    assert before + 29 <= handler.rolloverAt <= time.time() + 31
    handler.close()
