"""open_session: the one call the core makes (find or start, open, retry once)."""
from __future__ import annotations

import os
import signal

import pytest

from sshpipe._openssh import (MasterNotRunning, MuxSession, SessionRefused, Target, list_masters,
                              open_session, openssh_version, stop_masters)
from sshpipe._openssh import _procs, session as session_module
from sshpipe._openssh.master import MIN_OPENSSH, ensure_master
from sshpipe.testing import LocalSSHServer

from openssh_kit import SessionPipes


def test_master_that_dies_before_the_session_opens_is_replaced_once(target, control_dir,
                                                                     monkeypatch):
    """A master found alive but gone by the time the session is requested (idle
    timeout, a kill) is replaced by a new one, and the session opens there."""
    found = []

    def ensure_then_kill(*args, **kwargs):
        master = ensure_master(*args, **kwargs)
        found.append(master)
        if len(found) == 1:
            os.kill(master.pid, signal.SIGKILL)
            assert _procs.wait_exit(master.process, 5)
        return master

    monkeypatch.setattr(session_module, "ensure_master", ensure_then_kill)
    with SessionPipes() as pipes:
        session = open_session(target, "echo hi", control_dir=control_dir, **pipes.remote_fds)
        pipes.handed_over()
        assert isinstance(session, MuxSession)
        assert session.wait(10) == 0
        assert pipes.read_to_eof(pipes.stdout) == b"hi\n"
    assert len(found) == 2 and found[1].pid != found[0].pid and found[1].started


def test_a_second_loss_is_raised(target, control_dir, monkeypatch):
    """If the replacement is lost too, MasterNotRunning reaches the caller."""
    def ensure_then_kill(*args, **kwargs):
        master = ensure_master(*args, **kwargs)
        os.kill(master.pid, signal.SIGKILL)
        assert _procs.wait_exit(master.process, 5)
        return master

    monkeypatch.setattr(session_module, "ensure_master", ensure_then_kill)
    with SessionPipes() as pipes:
        with pytest.raises(MasterNotRunning, match=target.host):
            open_session(target, "true", control_dir=control_dir, **pipes.remote_fds)


def test_sessions_on_a_live_master_open_without_a_new_login(target, control_dir, sshd):
    """Later sessions reuse the master: sshd sees one login for many sessions."""
    before = sshd.read_log().count("Accepted publickey")
    for _ in range(5):
        with SessionPipes() as pipes:
            session = open_session(target, "true", control_dir=control_dir, **pipes.remote_fds)
            pipes.handed_over()
            assert session.wait(10) == 0
    assert sshd.read_log().count("Accepted publickey") == before + 1


def test_max_sessions_full_opens_another_master(control_dir):
    """sshd with MaxSessions 2: five live sessions spread over three masters, and
    each still echoes (SessionRefused moves on to the next slot)."""
    options = "Match Address 127.0.0.1\n    MaxSessions 2\n"
    with LocalSSHServer(alias="maxsessions-test", extra_server_options=options) as server:
        target = Target(server.alias, config=server.config_path)
        pipes_list, sessions = [], []
        try:
            for index in range(5):
                pipes = SessionPipes()
                pipes_list.append(pipes)
                sessions.append(open_session(target, "cat", control_dir=control_dir,
                                             **pipes.remote_fds))
                pipes.handed_over()
                pipes.write(b"%d" % index)
                assert pipes.read_exactly(1) == b"%d" % index
            masters = [session.master_pid for session in sessions]
            assert masters[0] == masters[1] != masters[2] == masters[3] != masters[4]
            assert len(list_masters(control_dir)) == 3
            for pipes, session in zip(pipes_list, sessions):
                pipes.close_stdin()
                assert session.wait(10) == 0
        finally:
            for pipes in pipes_list:
                pipes.close()
            stop_masters(control_dir)


def test_max_sessions_refusal_is_session_refused(control_dir):
    """On one master, the session past MaxSessions is refused with SessionRefused."""
    options = "Match Address 127.0.0.1\n    MaxSessions 1\n"
    with LocalSSHServer(alias="maxsessions-one", extra_server_options=options) as server:
        master = ensure_master(Target(server.alias, config=server.config_path),
                               control_dir=control_dir)
        with SessionPipes() as first, SessionPipes() as second:
            session = master.open_session("cat", **first.remote_fds)
            with pytest.raises(SessionRefused, match="MaxSessions"):
                master.open_session("cat", **second.remote_fds)
            session.close()
        master.stop()


def test_environment_reaches_the_remote_where_sendenv_allows(sshd, control_dir, tmp_path):
    """env entries go to the remote when the config's SendEnv and sshd's AcceptEnv
    (LANG LC_* here) allow them; others are dropped."""
    config = tmp_path / "ssh_config"
    config.write_text(sshd.client_config() + "    SendEnv LC_* SSHPIPE_*\n")
    target = Target(sshd.alias, config=str(config))
    with SessionPipes() as pipes:
        session = open_session(target, 'echo "$LC_SSHPIPE_TEST/$SSHPIPE_OTHER"',
                               control_dir=control_dir,
                               env=["LC_SSHPIPE_TEST=42 x", "SSHPIPE_OTHER=no"],
                               **pipes.remote_fds)
        pipes.handed_over()
        assert session.wait(10) == 0
        assert pipes.read_to_eof(pipes.stdout) == b"42 x/\n"


def test_bad_fd_is_refused_before_anything_is_sent(target, control_dir):
    """A closed fd is a ValueError up front (a request without its fds would
    freeze the master); the master keeps serving."""
    master = ensure_master(target, control_dir=control_dir)
    read_end, write_end = os.pipe()
    os.close(write_end)
    try:
        with pytest.raises(ValueError, match="stdout"):
            master.open_session("true", stdin=read_end, stdout=write_end, stderr=2)
    finally:
        os.close(read_end)
    with SessionPipes() as pipes:
        assert master.open_session("true", **pipes.remote_fds).wait(10) == 0


def test_openssh_version_is_probed():
    """The ssh on PATH is OpenSSH new enough; a missing binary is None."""
    assert openssh_version() >= MIN_OPENSSH
    assert openssh_version("/nonexistent/ssh") is None
