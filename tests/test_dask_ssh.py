"""sshpipe.dask.SSHCluster's SSH side and arguments, against the test sshd:
host keys are checked strictly, and bad arguments fail before anything starts."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from sshpipe.dask import SSHCluster  # noqa: E402
from sshpipe.errors import HostKeyError  # noqa: E402
from sshpipe.testing import descendants, wait_gone  # noqa: E402


def _causes(error: BaseException):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def test_an_unknown_host_key_is_refused_and_nothing_starts(sshd, tmp_path):
    """With a known_hosts that lacks the server's key (and the config's
    StrictHostKeyChecking yes), the cluster fails with HostKeyError before any
    agent runs, and leaves nothing on the host. Processes sshd already had (the
    connections of earlier tests' shared masters, kept for reuse) are not its."""
    before = set(descendants(sshd.process))
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text(Path(sshd.config_path).read_text().replace(sshd.known_hosts_path,
                                                                 str(empty)))
    with pytest.raises(Exception) as caught:
        SSHCluster([sshd.alias, sshd.alias], config=str(config), remote_python=sys.executable,
                   silence_logs=50)
    assert any(isinstance(error, HostKeyError) for error in _causes(caught.value)), \
        repr(caught.value)
    new = [p for p in descendants(sshd.process) if p not in before]
    assert wait_gone(new, 10) == []  # sshd's session ends too


@pytest.mark.parametrize("arguments, message", [
    ({"hosts": ["only-one"]}, "at least two hosts"),
    ({"hosts": ["a", "b"], "remote_python": ["/py"]}, "1 values for 2 hosts"),
    ({"hosts": ["a", "b"], "remote_python": "/py", "python": "/py"}, "not both"),
])
def test_bad_arguments_fail_before_connecting(arguments, message):
    """Too few hosts, a per-host list of the wrong length, or both spellings of
    the remote Python: ValueError, no SSH connection tried."""
    with pytest.raises(ValueError, match=message):
        SSHCluster(**arguments)
