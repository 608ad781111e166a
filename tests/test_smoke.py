"""tests/smoke.py: the smoke list cannot rot, and the fork check sees sshpipe's threads."""
from __future__ import annotations

import threading

import pytest

import smoke


def test_listed_tests_are_marked(request):
    """This file is listed whole: its tests carry the marker."""
    assert smoke.SMOKE["test_smoke.py"] == ()
    assert request.node.get_closest_marker("smoke") is not None


def test_a_listed_name_that_is_gone_fails_the_collection(monkeypatch, request):
    monkeypatch.setitem(smoke.SMOKE, "test_smoke.py", ("test_that_was_renamed",))
    with pytest.raises(pytest.UsageError, match="test_smoke.py::test_that_was_renamed"):
        smoke.mark([request.node], str(request.path.parent))


def test_fork_check_names_our_threads_and_tolerates_only_the_listed():
    """A fork while an sshpipe thread runs is a failure unless that thread is in
    FORK_TOLERATED; other threads do not count."""
    check = smoke._ForkCheck()
    stop = threading.Event()
    foreign = threading.Thread(target=stop.wait, name="someone-else", daemon=True)
    foreign.start()
    check.before_fork()
    assert check.forks == []
    for name in ("sshpipe-mplogger", "sshpipe-events-p1"):
        threading.Thread(target=stop.wait, name=name, daemon=True).start()
    try:
        check.before_fork()
    finally:
        stop.set()
    (test, forker, threads), = check.forks
    assert "test_fork_check_names_our_threads" in test and forker == "MainThread"
    assert threads == ["sshpipe-events-p1", "sshpipe-mplogger"]
    assert check.failures() == check.forks
