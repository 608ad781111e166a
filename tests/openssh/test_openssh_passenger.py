"""Passenger sessions (``ssh -S``): the fallback behaves like a mux session, and a
passenger never makes an SSH connection of its own."""
from __future__ import annotations

import os
import select
import signal
import time

import pytest

from sshpipe._openssh import MasterLost, PassengerSession, ensure_master, open_session
from sshpipe._openssh import _procs
from sshpipe.errors import PipeClosed

from openssh_kit import SessionPipes, wait_for


@pytest.fixture
def master(target, control_dir):
    found = ensure_master(target, control_dir=control_dir, persist=30)
    found.close()
    return found


def start_passenger(master, command, pipes):
    session = master.open_session(command, mode="passenger", **pipes.remote_fds)
    pipes.handed_over()
    assert isinstance(session, PassengerSession)
    return session


def accepted_logins(sshd) -> int:
    return sshd.read_log().count("Accepted publickey")


def test_round_trip_exit_status_and_stderr(master, sshd):
    """cat through a passenger echoes our bytes; status and stderr arrive; no new
    SSH login happens (the master carries the session)."""
    logins = accepted_logins(sshd)
    with SessionPipes() as pipes:
        session = start_passenger(master, "cat; echo bye >&2; exit 4", pipes)
        assert session.master_pid == master.pid
        payload = os.urandom(100_000)
        pipes.write(payload[:1000])
        assert pipes.read_exactly(1000) == payload[:1000]
        pipes.close_stdin()
        assert session.wait(10) == 4
        assert pipes.read_to_eof(pipes.stderr) == b"bye\n"
    assert accepted_logins(sshd) == logins


def test_fileno_is_readable_when_the_passenger_exits(master):
    """fileno() is a pidfd: poll it, then wait(0) gives the status."""
    with SessionPipes() as pipes:
        session = start_passenger(master, "exit 3", pipes)
        ready, _, _ = select.select([session.fileno()], [], [], 10)
        assert ready
        assert session.wait(0) == 3


def test_close_gives_the_remote_eof(master, tmp_path):
    """close() (SIGTERM to the passenger) ends the session: the remote sees EOF."""
    marker = tmp_path / "eof"
    with SessionPipes() as pipes:
        session = start_passenger(master, f"echo open; cat >/dev/null; echo yes > {marker}",
                                  pipes)
        assert pipes.read_exactly(5) == b"open\n"
        session.close()
        wait_for(marker.exists, 10, "the remote command saw EOF")
        with pytest.raises(PipeClosed):
            session.wait(0)


def test_master_killed_is_master_lost(master):
    """The master killed under a passenger session: MasterLost, as with mux."""
    with SessionPipes() as pipes:
        session = start_passenger(master, "cat", pipes)
        pipes.write(b"x")
        assert pipes.read_exactly(1) == b"x"
        os.kill(master.pid, signal.SIGKILL)
        with pytest.raises(MasterLost) as caught:
            session.wait(10)
        assert caught.value.master_pid == master.pid


def test_passenger_without_master_never_connects_by_itself(master, sshd):
    """With the master gone, a passenger fails (255) at once instead of opening an
    SSH connection of its own (ProxyCommand=false)."""
    master.stop()
    logins = accepted_logins(sshd)
    with SessionPipes() as pipes:
        session = PassengerSession.start(master.target, master.paths.socket, "echo hi",
                                         **pipes.remote_fds)
        pipes.handed_over()
        started = time.monotonic()
        assert session.wait(10) == 255
        assert time.monotonic() - started < 5
        assert pipes.read_to_eof(pipes.stdout) == b""
    assert accepted_logins(sshd) == logins


def test_auto_mode_uses_a_passenger_when_mux_is_unavailable(master):
    """A master that does not speak our mux version gets passenger sessions."""
    master.mux_available = False
    with SessionPipes() as pipes:
        session = master.open_session("echo via passenger", **pipes.remote_fds)
        pipes.handed_over()
        assert isinstance(session, PassengerSession)
        assert session.wait(10) == 0
        assert pipes.read_to_eof(pipes.stdout) == b"via passenger\n"


def test_open_session_in_passenger_mode(target, control_dir):
    """The top-level open_session takes mode='passenger' too."""
    with SessionPipes() as pipes:
        session = open_session(target, "echo $((6*7))", control_dir=control_dir,
                               mode="passenger", **pipes.remote_fds)
        pipes.handed_over()
        assert session.wait(10) == 0
        assert pipes.read_to_eof(pipes.stdout) == b"42\n"
        assert _procs.identify(session.master_pid) is not None
