"""sshpipe core behaviours the workers layer relies on, found while building it.

Both were reported from here as strict xfail tests and fixed in the core
(1bfa616); they stay as regression tests.
"""
from __future__ import annotations

import statistics
import threading
import time

from sshpipe import SSHPipe, SSHPipeHandler
from sshpipe.bootstrap import build_bundle


def test_namespace_package_can_be_shipped(tmp_path, monkeypatch):
    """modules=[...] ships a namespace package (a directory without __init__.py)."""
    package = tmp_path / "nspkg_for_bundle"
    package.mkdir()
    (package / "tool.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    bundle = build_bundle(("nspkg_for_bundle",))
    assert bundle.files > 0


def test_reply_from_a_thread_is_not_delayed_by_the_ticker(sshd):
    """A reply sent from a handler's own thread reaches the caller without a 20 ms wait."""
    class _ThreadReplier(SSHPipeHandler):  # local: sent by value to the remote
        """Replies from a background thread, as a handler with its own workers does."""

        def handle(self, received):
            threading.Thread(target=self._later, args=(received,)).start()

        def _later(self, received):
            time.sleep(0.005)  # the result comes after the main thread went back to wait
            self.reply(received)

    pipe = SSHPipe(sshd.alias, handler=_ThreadReplier, config=sshd.config_path,
                   python=sshd.python, ready_timeout=60)
    pipe.start()
    try:
        samples = []
        for index in range(15):
            started = time.perf_counter()
            pipe.send(index)
            assert pipe.recv(timeout=10) == index
            samples.append(time.perf_counter() - started)
    finally:
        pipe.close(timeout=10)
    assert statistics.median(samples) < 0.015, samples
