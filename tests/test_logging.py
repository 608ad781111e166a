"""MpLogger: records from every process, and from remote agents, in the right files once."""
from __future__ import annotations

import logging
import multiprocessing
import os
import re
import socket
import stat
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from sshpipe.mplog import (DEFAULT_NAME, LevelBasedFormatter, LoggerInfo, MpLogger,
                             MpLoggerState)

JOIN_TIMEOUT = 60.0     # seconds for a child process to finish
STOP_TIMEOUT = 60.0     # seconds for stop() to write everything queued
SEED_FORMATS = {
    logging.DEBUG: "[ %(asctime)s ][ %(levelname)s ][ %(message)s ]"
                   "[ %(module)s.%(funcName)s(%(lineno)d) ]",
    "default": "[ %(asctime)s ][ %(levelname)s ][ %(message)s ]",
}
SEED_DATEFMT = "%Y-%m-%d,%H:%M:%S.%f"
SEED_LINE = re.compile(r"^\[ \d{4}-\d{2}-\d{2},\d{2}:\d{2}:\d{2}\.\d{6} \]\[ (?P<level>[A-Z]+) \]"
                       r"\[ (?P<message>.*?) \](?:\[ [\w<>]+\.[\w<>]+\(\d+\) \])?$")


# -- child process targets (module level: spawn imports them by name) ------------------

def _log_many(info: LoggerInfo, name: str, tag: str, count: int) -> None:
    logger = MpLogger.get_logger(info, name=name)
    for i in range(count):
        logger.info("rec %s %d", tag, i)
    # The last record goes out as the process ends: it must not be lost.
    logger.warning("last %s", tag)


def _log_exception(info: LoggerInfo, name: str) -> None:
    logger = MpLogger.get_logger(info, name=name)
    try:
        raise ValueError("boom in child")
    except ValueError:
        logger.exception("child failed")


def _log_then_exit(info: LoggerInfo, name: str, count: int) -> None:
    logger = MpLogger.get_logger(info, name=name)
    for i in range(count):
        logger.info("before exit %d", i)
    sys.exit(3)


def _handle_remote_record(info: LoggerInfo, host: str) -> None:
    # This child is the caller of an SSHPipe: remote records are re-emitted here.
    MpLogger.get_logger(info, name="child-main")
    record = _remote_record(host, "p7", logging.WARNING, "from %s via a child", (host,))
    _emit_remote(record)


def _run_children(ctx, target: Callable, args_list: List[tuple], exitcode: int = 0) -> None:
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(JOIN_TIMEOUT)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(JOIN_TIMEOUT)
        assert proc.exitcode == exitcode, f"{proc.name} exit code {proc.exitcode}"


# -- fixtures -----------------------------------------------------------------------

@pytest.fixture
def make_mplogger() -> Iterator[Callable[..., MpLogger]]:
    """Build MpLoggers that are stopped at teardown, failed tests included."""
    made: List[MpLogger] = []

    def make(**kwargs) -> MpLogger:
        mplogger = MpLogger(**kwargs)
        made.append(mplogger)
        return mplogger

    yield make
    for mplogger in made:
        mplogger.stop(timeout=STOP_TIMEOUT)


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _lines(path: Path) -> List[str]:
    return path.read_text(encoding="utf-8").splitlines()


# -- many processes -------------------------------------------------------------------

def test_eight_spawn_children_every_record_once_no_interleaving(make_mplogger, tmp_path):
    """8 spawn children x 10,000 records: each record exactly once, every line whole."""
    children, count = 8, 10_000
    name = _unique("worker")
    mplogger = make_mplogger(name=_unique("all"), logdir=tmp_path, consolidate=True,
                             level_formats=SEED_FORMATS, datefmt=SEED_DATEFMT)
    mplogger.start()
    ctx = multiprocessing.get_context("spawn")
    started = time.monotonic()
    _run_children(ctx, _log_many, [(mplogger.logger_info(), name, f"c{k}", count)
                                   for k in range(children)])
    mplogger.stop(timeout=STOP_TIMEOUT)
    elapsed = time.monotonic() - started
    for path in (Path(mplogger.file_path(name)), Path(mplogger.file_path(mplogger.name))):
        seen: Counter = Counter()
        for line in _lines(path):
            match = SEED_LINE.match(line)
            assert match, f"malformed or interleaved line in {path.name}: {line!r}"
            seen[match.group("message")] += 1
        expected = {f"rec c{k} {i}" for k in range(children) for i in range(count)}
        expected |= {f"last c{k}" for k in range(children)}
        assert set(seen) == expected
        assert max(seen.values()) == 1
    assert mplogger.failures == 0
    assert elapsed < 50, f"took {elapsed:.1f}s"


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_children_of_every_start_method_reach_the_files(make_mplogger, tmp_path, method):
    """Children started by fork, forkserver or spawn log into their own files."""
    name = _unique("child")
    mplogger = make_mplogger(logdir=tmp_path, process_key="processName")
    mplogger.start(_unique("main"))
    ctx = multiprocessing.get_context(method)
    _run_children(ctx, _log_many, [(mplogger.logger_info(), name, f"c{k}", 50) for k in range(2)])
    mplogger.stop(timeout=STOP_TIMEOUT)
    files = sorted(p.name for p in tmp_path.glob(f"{name}.*.log"))
    assert len(files) == 2, files
    for file_name in files:
        messages = [line.split("][ ")[2].rstrip(" ]") for line in _lines(tmp_path / file_name)]
        tags = {message.split()[1] for message in messages}
        assert len(tags) == 1 and len(messages) == 51


def test_fork_child_with_inherited_handler_logs_each_record_once(make_mplogger, tmp_path):
    """A fork child calling get_logger on the inherited main logger adds no second handler."""
    main_name = _unique("main")
    mplogger = make_mplogger(logdir=tmp_path)
    mplogger.start(main_name)
    ctx = multiprocessing.get_context("fork")
    _run_children(ctx, _log_many, [(mplogger.logger_info(), main_name, "f", 20),
                                   (mplogger.logger_info(), f"{main_name}.sub", "g", 20)])
    mplogger.stop(timeout=STOP_TIMEOUT)
    main_lines = _lines(tmp_path / f"{main_name}.log")
    sub_lines = _lines(tmp_path / f"{main_name}.sub.log")
    assert len(main_lines) == 21 and len(set(main_lines)) == 21
    assert len(sub_lines) == 21 and len(set(sub_lines)) == 21


def test_child_exception_traceback_reaches_the_file(make_mplogger, tmp_path):
    """logger.exception() in a child writes the traceback text under the message."""
    name = _unique("failing")
    mplogger = make_mplogger(logdir=tmp_path)
    mplogger.start()
    _run_children(multiprocessing.get_context("spawn"), _log_exception,
                  [(mplogger.logger_info(), name)])
    mplogger.stop(timeout=STOP_TIMEOUT)
    text = (tmp_path / f"{name}.log").read_text(encoding="utf-8")
    assert "child failed" in text and "ValueError: boom in child" in text
    assert "Traceback (most recent call last)" in text


def test_child_ending_with_sys_exit_delivers_every_record(make_mplogger, tmp_path):
    """A child that logs 2,000 records and calls sys.exit(3) at once loses none of them."""
    name = _unique("exiting")
    mplogger = make_mplogger(logdir=tmp_path)
    mplogger.start()
    _run_children(multiprocessing.get_context("spawn"), _log_then_exit,
                  [(mplogger.logger_info(), name, 2_000)], exitcode=3)
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert len(_lines(tmp_path / f"{name}.log")) == 2_000


# -- files: keys, consolidation, names, modes -------------------------------------------

def test_process_key_names_files_and_consolidate_gathers_all(make_mplogger, tmp_path):
    """process_key adds record fields to the logger name; consolidate also writes <name>.log."""
    base = _unique("app")
    mplogger = make_mplogger(name=base, logdir=tmp_path, consolidate=True,
                             process_key=["processName", "levelname"],
                             file_prefix="run1-", file_suffix="-x")
    logger = mplogger.start(f"{base}.main")
    logger.info("one")
    logger.warning("two")
    mplogger.stop(timeout=STOP_TIMEOUT)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([f"run1-{base}-x.log",
                            f"run1-{base}.main.MainProcess.INFO-x.log",
                            f"run1-{base}.main.MainProcess.WARNING-x.log"])
    assert len(_lines(tmp_path / f"run1-{base}-x.log")) == 2


def test_consolidate_into_main_process_file_writes_each_record_once(make_mplogger, tmp_path):
    """start() without a name logs into <name>.log, which is also the consolidated file."""
    base = _unique("solo")
    mplogger = make_mplogger(name=base, logdir=tmp_path, consolidate=True)
    logger = mplogger.start()
    assert logger.name == base
    logger.info("only once")
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert [p.name for p in tmp_path.iterdir()] == [f"{base}.log"]
    assert len(_lines(tmp_path / f"{base}.log")) == 1


def test_default_name_when_none_given(make_mplogger, tmp_path):
    """With no name anywhere the main logger and consolidated file are 'mplogger'."""
    mplogger = make_mplogger(logdir=tmp_path, consolidate=True)
    logger = mplogger.start()
    assert logger.name == DEFAULT_NAME
    assert mplogger.file_path(DEFAULT_NAME) == str(tmp_path / f"{DEFAULT_NAME}.log")


def test_record_fields_cannot_escape_logdir(make_mplogger, tmp_path):
    """A logger name with path parts gives a file inside logdir, not a path outside it."""
    logdir = tmp_path / "logs"
    mplogger = make_mplogger(logdir=logdir)
    mplogger.start(_unique("main"))
    info = mplogger.logger_info()
    MpLogger.get_logger(info, name="../../evil/x").info("sneaky")
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]
    assert any("evil" in p.name for p in logdir.iterdir())


def test_files_0600_and_created_logdir_0700_whatever_the_umask(make_mplogger, tmp_path):
    """Files are created 0600 and a missing logdir 0700, even under umask 000."""
    logdir = tmp_path / "new" / "logs"
    old_umask = os.umask(0)
    try:
        mplogger = make_mplogger(logdir=logdir, consolidate=True, name=_unique("all"))
        mplogger.start(_unique("main")).info("private")
        mplogger.stop(timeout=STOP_TIMEOUT)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(logdir.stat().st_mode) == 0o700
    files = list(logdir.iterdir())
    assert len(files) == 2
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


def test_file_mode_w_truncates_and_a_appends(make_mplogger, tmp_path):
    """file_mode='a' keeps earlier runs' lines; 'w' starts the file over."""
    name = _unique("run")
    for mode, message in (("a", "first"), ("a", "second"), ("w", "third")):
        mplogger = make_mplogger(logdir=tmp_path, file_mode=mode)
        mplogger.start(name).info(message)
        mplogger.stop(timeout=STOP_TIMEOUT)
        if message == "second":
            assert len(_lines(tmp_path / f"{name}.log")) == 2
    assert [line.split("][ ")[2] for line in _lines(tmp_path / f"{name}.log")] == ["third ]"]


def test_handler_kwargs_reach_the_rotating_files(make_mplogger, tmp_path):
    """maxBytes and backupCount given to MpLogger rotate each process-key file."""
    name = _unique("big")
    mplogger = make_mplogger(logdir=tmp_path, maxBytes=2_000, backupCount=3)
    logger = mplogger.start(name)
    for i in range(200):
        logger.info("line %04d %s", i, "x" * 40)
    mplogger.stop(timeout=STOP_TIMEOUT)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 4          # the current file and 3 backups
    assert all(p.stat().st_size <= 2_000 for p in files)
    assert _lines(tmp_path / f"{name}.log")[-1].split("][ ")[2].startswith("line 0199")


def test_no_logdir_writes_no_files_and_logs_to_stderr(make_mplogger, tmp_path, capfd,
                                                      monkeypatch):
    """Without logdir nothing is written to disk and records go to the console."""
    monkeypatch.chdir(tmp_path)
    mplogger = make_mplogger(level_formats=SEED_FORMATS, datefmt=SEED_DATEFMT)
    mplogger.start(_unique("console")).info("to the console")
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert list(tmp_path.iterdir()) == []
    err = capfd.readouterr().err.splitlines()
    assert any(SEED_LINE.match(line) and "to the console" in line for line in err)
    with pytest.raises(RuntimeError):
        mplogger.file_path("x")


def test_console_and_files_together(make_mplogger, tmp_path, capfd):
    """console=True with a logdir writes each record to both."""
    name = _unique("both")
    mplogger = make_mplogger(logdir=tmp_path, console=True)
    mplogger.start(name).warning("twice")
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert "twice" in capfd.readouterr().err
    assert "twice" in (tmp_path / f"{name}.log").read_text(encoding="utf-8")


def test_logging_level_filters_records(make_mplogger, tmp_path):
    """Records below logging_level are dropped; DEBUG uses its own seed format."""
    name = _unique("levels")
    mplogger = make_mplogger(logdir=tmp_path, logging_level=logging.DEBUG,
                             level_formats=SEED_FORMATS, datefmt=SEED_DATEFMT)
    logger = mplogger.start(name)
    logger.debug("dbg")
    logger.info("inf")
    mplogger.stop(timeout=STOP_TIMEOUT)
    debug_line, info_line = _lines(tmp_path / f"{name}.log")
    assert re.search(r"\]\[ test_logging\.test_logging_level_filters_records\(\d+\) \]$",
                     debug_line)
    assert info_line.endswith("][ inf ]")

    name = _unique("levels")
    mplogger = make_mplogger(logdir=tmp_path, logging_level=logging.WARNING)
    logger = mplogger.start(name)
    logger.info("dropped")
    logger.error("kept")
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert [line.split("][ ")[2] for line in _lines(tmp_path / f"{name}.log")] == ["kept ]"]


def test_extra_attributes_travel_with_the_record(make_mplogger, tmp_path):
    """Attributes given with extra= reach the listener and can be formatted."""
    name = _unique("extra")
    mplogger = make_mplogger(logdir=tmp_path,
                             level_formats={"default": "%(message)s job=%(job)s"})
    mplogger.start(name).info("with extra", extra={"job": "J-17"})
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert _lines(tmp_path / f"{name}.log") == ["with extra job=J-17"]


# -- remote agents' records (contract with SSHPipe) --------------------------------------

def _emit_remote(record: logging.LogRecord) -> None:
    """Re-emit as SSHPipe does: only if the host's logger is enabled for the level."""
    logger = logging.getLogger(f"sshpipe.remote.{record.host}")
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


def _remote_record(host: str, pipe: str, level: int, msg: str, args=()) -> logging.LogRecord:
    """A record as SSHPipe rebuilds it from a remote agent's log frame."""
    record = logging.makeLogRecord({
        "name": f"sshpipe.remote.{host}", "msg": msg, "args": args, "levelno": level,
        "levelname": logging.getLevelName(level), "pathname": "/srv/agent/handler.py",
        "filename": "handler.py", "module": "handler", "lineno": 42, "funcName": "handle",
        "process": 4242, "processName": "agent", "host": host, "pipe": pipe,
    })
    return record


def test_remote_records_land_in_the_files_with_their_host(make_mplogger, tmp_path):
    """Records re-emitted into sshpipe.remote.<host> reach the host's file and the
    consolidated one."""
    base = _unique("all")
    mplogger = make_mplogger(name=base, logdir=tmp_path, consolidate=True,
                             level_formats={"default": "%(host)s %(pipe)s %(name)s: %(message)s"})
    logger = mplogger.start(f"{base}.main")
    logger.info("local line")
    for host in ("db1", "web2"):
        record = _remote_record(host, "p1", logging.INFO, "remote %s says %d", (host, 7))
        _emit_remote(record)
    below = _remote_record("db1", "p1", logging.DEBUG, "too detailed")
    logging.getLogger("sshpipe.remote.db1").handle(below)
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert _lines(tmp_path / "sshpipe.remote.db1.log") == [
        "db1 p1 sshpipe.remote.db1: remote db1 says 7"]
    assert _lines(tmp_path / "sshpipe.remote.web2.log") == [
        "web2 p1 sshpipe.remote.web2: remote web2 says 7"]
    consolidated = _lines(tmp_path / f"{base}.log")
    assert consolidated[0] == f"{socket.gethostname()}  {base}.main: local line"
    assert consolidated[1:] == ["db1 p1 sshpipe.remote.db1: remote db1 says 7",
                                "web2 p1 sshpipe.remote.web2: remote web2 says 7"]


def test_remote_records_handled_in_a_child_reach_the_files(make_mplogger, tmp_path):
    """A child that called get_logger() also forwards remote records re-emitted in it."""
    mplogger = make_mplogger(logdir=tmp_path,
                             level_formats={"default": "%(host)s %(pipe)s %(message)s"})
    mplogger.start(_unique("main"))
    _run_children(multiprocessing.get_context("spawn"), _handle_remote_record,
                  [(mplogger.logger_info(), "db3")])
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert _lines(tmp_path / "sshpipe.remote.db3.log") == ["db3 p7 from db3 via a child"]


def test_remote_records_by_host_key(make_mplogger, tmp_path):
    """process_key='host' files remote records by host, local ones by logger name alone."""
    name = _unique("main")
    mplogger = make_mplogger(logdir=tmp_path, process_key="host")
    mplogger.start(name).info("local")
    _emit_remote(_remote_record("db1", "p9", logging.ERROR, "remote error"))
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{name}.log", "sshpipe.remote.db1.db1.log"])


def test_remote_info_records_pass_sshpipes_level_check(make_mplogger, tmp_path):
    """With the root logger at WARNING, a started MpLogger still lets remote INFO through,
    and stop() gives the sshpipe.remote level back; a level the user set is kept."""
    remote = logging.getLogger("sshpipe.remote")
    assert remote.level == logging.NOTSET
    mplogger = make_mplogger(logdir=tmp_path, logging_level=logging.INFO)
    mplogger.start(_unique("main"))
    assert logging.getLogger("sshpipe.remote.db9").isEnabledFor(logging.INFO)
    assert not logging.getLogger("sshpipe.remote.db9").isEnabledFor(logging.DEBUG)
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert remote.level == logging.NOTSET
    remote.setLevel(logging.ERROR)
    try:
        mplogger = make_mplogger(logdir=tmp_path)
        mplogger.start(_unique("main"))
        assert remote.level == logging.ERROR
        mplogger.stop(timeout=STOP_TIMEOUT)
        assert remote.level == logging.ERROR
    finally:
        remote.setLevel(logging.NOTSET)


def test_remote_records_after_stop_go_nowhere(make_mplogger, tmp_path):
    """After stop() the sshpipe logger has no MpLogger handler left; handling does not fail."""
    mplogger = make_mplogger(logdir=tmp_path)
    mplogger.start(_unique("main"))
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert not any(hasattr(h, "token") for h in logging.getLogger("sshpipe").handlers)
    logging.getLogger("sshpipe.remote.db1").handle(
        _remote_record("db1", "p1", logging.ERROR, "late"))


def test_stop_detaches_get_logger_handlers_of_its_own_process(make_mplogger, tmp_path):
    """get_logger() in the starting process is written, then detached by stop()."""
    name = _unique("thread")
    mplogger = make_mplogger(logdir=tmp_path)
    mplogger.start(_unique("main"))
    logger = MpLogger.get_logger(mplogger.logger_info(), name=name)
    logger.info("from the main process")
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert not any(hasattr(h, "token") for h in logger.handlers)
    assert len(_lines(tmp_path / f"{name}.log")) == 1


def test_get_logger_parent_after_child_logs_once(make_mplogger, tmp_path):
    """get_logger('a.b') then get_logger('a') leaves one handler: 'a.b' records once."""
    base = _unique("nest")
    mplogger = make_mplogger(logdir=tmp_path)
    mplogger.start(_unique("main"))
    info = mplogger.logger_info()
    child = MpLogger.get_logger(info, name=f"{base}.b")
    MpLogger.get_logger(info, name=base)
    child.info("once")
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert len(_lines(tmp_path / f"{base}.b.log")) == 1


def test_lines_reach_the_disk_while_running(make_mplogger, tmp_path):
    """Without stop(), a record is on disk within the flush interval (waited for up to 10 s)."""
    name = _unique("live")
    mplogger = make_mplogger(logdir=tmp_path)
    mplogger.start(name).info("soon on disk")
    path = tmp_path / f"{name}.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and "soon on disk" in path.read_text(encoding="utf-8"):
            break
        time.sleep(0.02)
    else:
        pytest.fail("record not flushed while running")


def test_wire_form_round_trip_keeps_attributes():
    """A record rebuilt from its wire form has the same attributes; args merged, extras kept."""
    from sshpipe._logwire import from_wire, to_wire
    record = logging.LogRecord("n.x", logging.ERROR, "/p/f.py", 7, "a %s b", ("X",), None, "fn")
    record.host = "db1"
    rebuilt = from_wire(to_wire(record, record.getMessage()))
    assert rebuilt.getMessage() == "a X b" and rebuilt.args is None
    for attr in ("name", "levelno", "levelname", "pathname", "lineno", "funcName", "created",
                 "process", "processName", "thread", "host"):
        assert getattr(rebuilt, attr) == getattr(record, attr), attr
    partial = logging.LogRecord.__new__(logging.LogRecord)
    partial.__dict__.update({"name": "bare", "levelno": 20, "msg": "m"})
    assert from_wire(to_wire(partial, "m")).name == "bare"


# -- lifecycle and arguments ------------------------------------------------------------

def test_lifecycle_states_and_misuse(make_mplogger, tmp_path):
    """start once, logger_info only while running, stop idempotent; misuse raises."""
    mplogger = make_mplogger(logdir=tmp_path)
    assert mplogger.state is MpLoggerState.NEW
    with pytest.raises(RuntimeError):
        mplogger.logger_info()
    mplogger.start(_unique("main"))
    assert mplogger.state is MpLoggerState.RUNNING
    assert "running" in repr(mplogger)
    with pytest.raises(RuntimeError):
        mplogger.start()
    mplogger.stop(timeout=STOP_TIMEOUT)
    mplogger.stop(timeout=STOP_TIMEOUT)
    assert mplogger.state is MpLoggerState.STOPPED
    with pytest.raises(RuntimeError):
        mplogger.start()
    with pytest.raises(TypeError):
        MpLogger.get_logger({"loggerq": None}, name="x")


def test_context_manager_starts_and_stops(tmp_path):
    """`with MpLogger(...)` starts on entry and writes everything on exit."""
    name = _unique("ctx")
    with MpLogger(name=name, logdir=tmp_path) as mplogger:
        logging.getLogger(name).info("inside")
        assert mplogger.state is MpLoggerState.RUNNING
    assert mplogger.state is MpLoggerState.STOPPED
    assert len(_lines(tmp_path / f"{name}.log")) == 1


@pytest.mark.parametrize("kwargs, error", [
    ({"maxbytes": 10}, TypeError),
    ({"file_mode": "r"}, ValueError),
    ({"file_prefix": "a/b"}, ValueError),
    ({"file_suffix": "/x"}, ValueError),
])
def test_bad_arguments_are_refused(kwargs, error):
    """Unknown handler keywords, bad modes and path separators in names raise at once."""
    with pytest.raises(error):
        MpLogger(**kwargs)


def test_logdir_that_is_a_file_is_refused(tmp_path):
    """A logdir path that names a file raises NotADirectoryError at start()."""
    path = tmp_path / "file"
    path.write_text("")
    mplogger = MpLogger(logdir=path)
    with pytest.raises(NotADirectoryError):
        mplogger.start()
    assert mplogger.state is MpLoggerState.NEW


# -- LevelBasedFormatter ------------------------------------------------------------------

def _record(level: int = logging.INFO, msg: str = "m", created: float = 1_700_000_000.123456,
            **attrs) -> logging.LogRecord:
    record = logging.makeLogRecord({"levelno": level, "levelname": logging.getLevelName(level),
                                    "msg": msg, "name": "t", **attrs})
    record.created = created
    record.msecs = int((created - int(created)) * 1000)
    return record


def test_formatter_picks_format_by_level_with_default():
    """Each level uses its own format; other levels use 'default'; names work as keys."""
    formatter = LevelBasedFormatter({"DEBUG": "D:%(message)s", logging.ERROR: "E:%(message)s",
                                     "default": "X:%(message)s"})
    assert formatter.format(_record(logging.DEBUG)) == "D:m"
    assert formatter.format(_record(logging.ERROR)) == "E:m"
    assert formatter.format(_record(logging.WARNING)) == "X:m"


def test_formatter_without_default_gets_the_seed_default():
    """level_formats lacking 'default' falls back to the seed's default format."""
    formatter = LevelBasedFormatter({logging.DEBUG: "D:%(message)s"})
    assert formatter.format(_record(logging.INFO, msg="hi")).endswith("][ INFO ][ hi ]")


def test_formatter_prints_microseconds_with_percent_f():
    """%f in datefmt prints the record's microseconds; %%f stays a literal."""
    created = time.mktime((2016, 12, 19, 11, 39, 44, 0, 0, -1)) + 0.953189
    formatter = LevelBasedFormatter({"default": "%(asctime)s"}, datefmt=SEED_DATEFMT)
    assert formatter.format(_record(created=created)) == "2016-12-19,11:39:44.953189"
    # The per-second cache must not reuse one second's text for the next.
    assert formatter.format(_record(created=created + 1.5)) == "2016-12-19,11:39:46.453189"
    literal = LevelBasedFormatter({"default": "%(asctime)s"}, datefmt="%S.%%f.%f")
    assert literal.format(_record(created=created)) == "44.%f.953189"


def test_formatter_default_datefmt_is_loggings():
    """Without datefmt asctime looks like logging's own: '... HH:MM:SS,mmm'."""
    formatter = LevelBasedFormatter({"default": "%(asctime)s"})
    assert re.match(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}$", formatter.format(_record()))


def test_formatter_host_and_pipe_default_for_local_records():
    """%(host)s and %(pipe)s format local records too; remote values win when present."""
    formatter = LevelBasedFormatter({"default": "%(host)s|%(pipe)s|%(message)s"})
    assert formatter.format(_record()) == f"{socket.gethostname()}||m"
    assert formatter.format(_record(host="db1", pipe="p2")) == "db1|p2|m"
    plain = LevelBasedFormatter({"default": "%(message)s"})
    assert plain.format(_record()) == "m"
    record = _record()
    formatter.format(record)
    assert not hasattr(record, "host")


def test_formatter_rejects_unknown_level_name():
    """A level name logging does not know is a ValueError, not a silent default."""
    with pytest.raises(ValueError):
        LevelBasedFormatter({"LOUD": "%(message)s"})


def test_formatter_brace_style():
    """style='{' works for every level, with the host default too."""
    formatter = LevelBasedFormatter({"default": "{levelname}:{host}:{message}"}, style="{")
    assert formatter.format(_record()) == f"INFO:{socket.gethostname()}:m"


def test_module_is_importable_from_package():
    """The package re-exports the three public names from sshpipe.mplog."""
    import sshpipe
    import sshpipe.mplog as module
    for name in ("MpLogger", "LevelBasedFormatter", "TimedSizedRotatingHandler"):
        assert getattr(sshpipe, name) is getattr(module, name)
    assert sys.modules["sshpipe.mplog"] is module
