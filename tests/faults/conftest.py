"""The fault matrix: every test here is marked ``faults`` (run alone with
``pytest -m faults``), runs under the spawn, fork and forkserver start methods where the
start method matters, under both transports (paramiko, openssh), and records its
detection time for the closing report.

To keep the wall time within budget, the openssh run of a test parametrized by
start method keeps only the fork case: what the start method changes (how the
child gets its pipes and spec) is the same code for both transports, and the
paramiko run covers all three."""
from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # faultkit

import faultkit  # noqa: E402
from pipe_transports import transport  # noqa: E402,F401 (autouse: each test per transport)

HERE = Path(__file__).parent.resolve()


def pytest_collection_modifyitems(config, items):
    """Mark every test under tests/faults with ``faults`` (and nothing else); drop
    the openssh run of the spawn and forkserver cases (see the module docstring)."""
    kept, dropped = [], []
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.faults)
            params = getattr(getattr(item, "callspec", None), "params", {})
            if params.get("transport") == "openssh" and \
                    params.get("method") in ("spawn", "forkserver"):
                dropped.append(item)
                continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(params=["spawn", "fork", "forkserver"])
def method(request):
    """Run the test under one start method; restore the previous one afterwards."""
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(request.param, force=True)
    yield request.param
    multiprocessing.set_start_method(previous, force=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The fault matrix: each case's detection time (faultkit.write_matrix)."""
    faultkit.write_matrix(terminalreporter.write_line, faultkit.MATRIX)
