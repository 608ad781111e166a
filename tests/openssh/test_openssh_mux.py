"""The mux client against a real ssh master, and its protocol checks against a
scripted socket (framing and refusals only; every session test uses real SSH)."""
from __future__ import annotations

import array
import os
import signal
import socket
import struct
import threading
import time

import pytest

from sshpipe._openssh import (MasterLost, MasterNotRunning, MuxClient, MuxError, MuxUnavailable,
                              NoExitStatus, SessionState, ensure_master)
from sshpipe._openssh import _procs
from sshpipe._openssh.mux import MAX_PACKET
from sshpipe.errors import ConnectError, ConnectTimeout, PipeBroken, PipeClosed

from openssh_kit import SessionPipes, wait_for

U32 = struct.Struct(">I")


@pytest.fixture
def master(target, control_dir):
    """A master for the test sshd, owned by this process, in a fresh directory."""
    found = ensure_master(target, control_dir=control_dir, persist=30, timeout=30)
    found.close()
    return found


def open_on(master, command, pipes, timeout=10):
    client = MuxClient.connect(master.paths.socket, host=master.host, timeout=5,
                               log_path=master.paths.log)
    session = client.open_session(command, timeout=timeout, **{
        key: fd for key, fd in pipes.remote_fds.items()})
    pipes.handed_over()
    return session


# -- against the real master --------------------------------------------------

def test_cat_round_trip_through_our_own_pipes(master):
    """Bytes written to our pipe come back from remote cat on our other pipe."""
    with SessionPipes() as pipes:
        session = open_on(master, "cat", pipes)
        assert session.state is SessionState.RUNNING
        assert session.master_pid == master.pid
        for size in (1, 100, 65536, 1 << 20):
            payload = os.urandom(size)
            writer = threading.Thread(target=pipes.write, args=(payload,))
            writer.start()
            assert pipes.read_exactly(size) == payload
            writer.join(10)
        pipes.close_stdin()
        assert session.wait(10) == 0
        assert session.state is SessionState.ENDED
        assert pipes.read_to_eof(pipes.stdout) == b""


@pytest.mark.parametrize("status", [0, 1, 7, 255])
def test_exit_status_is_propagated(master, status):
    """The remote exit status arrives as is; 255 from the command is not a failure."""
    with SessionPipes() as pipes:
        session = open_on(master, f"echo out; echo err >&2; exit {status}", pipes)
        assert session.wait(10) == status
        assert pipes.read_to_eof(pipes.stdout) == b"out\n"
        assert pipes.read_to_eof(pipes.stderr) == b"err\n"


def test_wait_returns_none_until_the_end_and_honours_its_timeout(master):
    """wait(timeout) returns None after about timeout while the command runs."""
    with SessionPipes() as pipes:
        session = open_on(master, "cat", pipes)
        started = time.monotonic()
        assert session.wait(0.3) is None
        assert 0.3 <= time.monotonic() - started < 2
        assert session.poll() is None
        pipes.close_stdin()
        assert session.wait(10) == 0


def test_all_output_is_delivered_before_wait_returns(master):
    """wait() returns only after the master wrote every byte of output to our fd,
    even when our reader is slow (the exit message arrives before the data)."""
    size = 4 << 20
    with SessionPipes() as pipes:
        session = open_on(master, f"head -c {size} /dev/zero", pipes)
        assert session.wait(1) is None  # the pipe is full: the master cannot finish
        data = pipes.read_to_eof(pipes.stdout, timeout=30)
        assert len(data) == size
        assert session.wait(10) == 0


def test_close_gives_the_remote_eof(master, tmp_path):
    """close() ends the session: the remote command reading stdin sees EOF."""
    marker = tmp_path / "eof-seen"
    with SessionPipes() as pipes:
        session = open_on(master, f"cat >/dev/null; echo yes > {marker}", pipes)
        pipes.write(b"some input\n")
        session.close()
        assert session.state is SessionState.CLOSED
        wait_for(marker.exists, 10, "the remote command saw EOF")
        with pytest.raises(PipeClosed):
            session.wait(0)


def test_close_leaves_a_command_that_ignores_eof_running(master, tmp_path):
    """The mux protocol cannot signal: after close() a remote command that never
    reads stdin runs on (sshd only closes its pipes). This is why ending an agent
    must happen in-band or through its EOF handling."""
    pidfile = tmp_path / "pid"
    with SessionPipes() as pipes:
        session = open_on(master, f"echo $$ > {pidfile}; exec sleep 60", pipes)
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "pid written")
        pid = int(pidfile.read_text())
        session.close()
        time.sleep(0.5)  # give sshd time to do whatever it does on channel close
        try:
            assert _procs.identify(pid) is not None, "sshd killed the command"
        finally:
            os.kill(pid, signal.SIGKILL)


def test_remote_killed_by_signal_ends_without_status(master):
    """exit-signal is not forwarded by the mux protocol: NoExitStatus, master alive."""
    with SessionPipes() as pipes:
        session = open_on(master, "kill -9 $$", pipes)
        with pytest.raises(NoExitStatus, match="without an exit status") as caught:
            session.wait(10)
        assert isinstance(caught.value, PipeBroken) and caught.value.host == master.host
        assert session.state is SessionState.LOST
        with pytest.raises(NoExitStatus):
            session.wait(0)
        assert _procs.is_running(master.process)


def test_master_killed_under_a_live_session_is_master_lost(master):
    """SIGKILL to the master: wait() raises MasterLost naming host and pid, quickly."""
    with SessionPipes() as pipes:
        session = open_on(master, "cat", pipes)
        os.kill(master.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(MasterLost) as caught:
            session.wait(10)
        assert time.monotonic() - started < 2
        assert caught.value.master_pid == master.pid and caught.value.host == master.host
        assert f"pid {master.pid}" in str(caught.value)


def test_alive_check_and_terminate(master):
    """ALIVE_CHECK names the master's pid; TERMINATE ends the master."""
    client = MuxClient.connect(master.paths.socket, host=master.host, timeout=5)
    assert client.alive_check(5) == master.pid == client.master.pid
    client.terminate(5)
    assert _procs.wait_exit(master.process, 10)
    with pytest.raises(PipeClosed):
        client.alive_check(1)


def test_a_client_is_spent_once_its_session_opened(master):
    """The control connection belongs to the session: the client cannot reuse it."""
    with SessionPipes() as pipes:
        client = MuxClient.connect(master.paths.socket, host=master.host, timeout=5)
        session = client.open_session("cat", timeout=10, **pipes.remote_fds)
        pipes.handed_over()
        with pytest.raises(PipeClosed):
            client.alive_check(1)
        session.close()


# -- protocol checks against a scripted socket --------------------------------

def packet(*fields: bytes) -> bytes:
    body = b"".join(fields)
    return U32.pack(len(body)) + body


def u32(value: int) -> bytes:
    return U32.pack(value)


def string(data: bytes) -> bytes:
    return U32.pack(len(data)) + data


class ScriptedMaster:
    """A Unix socket that answers one connection with a script: ``hello`` at once,
    ``replies`` once the client's first bytes (HELLO, ALIVE_CHECK) arrived; with
    ``session`` it then reads a session request and its three fds (kept in
    ``fds``) and sends ``session``."""

    def __init__(self, path: str, replies: bytes = b"", *, session: bytes = b"",
                 hello: bytes = packet(u32(1), u32(4)), hang_up: bool = False):
        self.path = path
        self.fds = []
        self.received = b""
        self._conn = None
        self._hang_up = hang_up
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        self._thread = threading.Thread(target=self._serve, args=(hello, replies, session),
                                        daemon=True)
        self._thread.start()

    def _serve(self, hello: bytes, replies: bytes, session: bytes) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        self._conn = conn
        if self._hang_up:
            conn.close()
            return
        with conn:
            conn.sendall(hello)
            conn.settimeout(5)
            try:
                self.received = conn.recv(65536)
                conn.sendall(replies)
                if session:
                    self.received += self._read_session(conn)
                    for _ in range(3):
                        _, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(4))
                        fds = array.array("i")
                        fds.frombytes(ancillary[0][2])
                        self.fds.extend(fds)
                    conn.sendall(session)
                conn.recv(1)  # hold the connection until the client closes it
            except OSError:
                pass

    @staticmethod
    def _read_session(conn: socket.socket) -> bytes:
        header = conn.recv(4, socket.MSG_WAITALL)
        return header + conn.recv(U32.unpack(header)[0], socket.MSG_WAITALL)

    def close(self) -> None:
        """Hang up (the client sees EOF) and stop."""
        if self._conn is not None:
            try:
                self._conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._listener.close()
        self._thread.join(5)
        for fd in self.fds:
            os.close(fd)


@pytest.fixture
def sock_path(tmp_path):
    return str(tmp_path / "m.sock")


ALIVE_0 = packet(u32(0x80000005), u32(0), u32(os.getpid()))


def test_other_protocol_version_is_mux_unavailable(sock_path):
    """A master announcing mux version 5 is MuxUnavailable (so passengers are used)."""
    fake = ScriptedMaster(sock_path, hello=packet(u32(1), u32(5)))
    with pytest.raises(MuxUnavailable, match="version 5"):
        MuxClient.connect(sock_path, host="db1", timeout=5)
    fake.close()


def test_hello_and_alive_check_go_out_together(sock_path):
    """connect() sends HELLO(4) and ALIVE_CHECK(0) in one write and reads the pid."""
    fake = ScriptedMaster(sock_path, ALIVE_0)
    client = MuxClient.connect(sock_path, host="db1", timeout=5)
    assert client.master.pid == os.getpid()
    assert fake.received == packet(u32(1), u32(4)) + packet(u32(0x10000004), u32(0))
    client.close()
    fake.close()


def test_oversized_message_is_refused_with_its_number(sock_path):
    """A length past MAX_PACKET is a MuxError naming the message number."""
    fake = ScriptedMaster(sock_path, hello=U32.pack(MAX_PACKET + 1))
    with pytest.raises(MuxError, match=r"mux message 1 .*claims"):
        MuxClient.connect(sock_path, host="db1", timeout=5)
    fake.close()


def test_silent_master_times_out(sock_path):
    """A master that never says HELLO: ConnectTimeout after the timeout, no hang."""
    fake = ScriptedMaster(sock_path, hello=b"")
    started = time.monotonic()
    with pytest.raises(ConnectTimeout, match="db1"):
        MuxClient.connect(sock_path, host="db1", timeout=0.3)
    assert time.monotonic() - started < 2
    fake.close()


def test_wrong_request_id_is_refused(sock_path):
    """An ALIVE reply for another request id is a MuxError."""
    fake = ScriptedMaster(sock_path, packet(u32(0x80000005), u32(9), u32(1)))
    with pytest.raises(MuxError, match="reply to request 9, expected 0"):
        MuxClient.connect(sock_path, host="db1", timeout=5)
    fake.close()


def test_session_refusal_carries_the_masters_reason(sock_path):
    """MUX_S_FAILURE to a session request is a MuxError with the reason and a hint."""
    refusal = packet(u32(0x80000003), u32(1), string(b"Session open refused by peer"))
    fake = ScriptedMaster(sock_path, ALIVE_0, session=refusal)
    with SessionPipes() as pipes:
        client = MuxClient.connect(sock_path, host="db1", timeout=5)
        with pytest.raises(MuxError, match="refused by peer.*MaxSessions"):
            client.open_session("true", timeout=5, **pipes.remote_fds)
    fake.close()


def test_session_request_and_fds_reach_the_master(sock_path):
    """NEW_SESSION carries the command; the three fds arrive and are our pipes."""
    opened = packet(u32(0x80000006), u32(1), u32(42))
    exit_message = packet(u32(0x80000004), u32(42), u32(3))
    fake = ScriptedMaster(sock_path, ALIVE_0, session=opened + exit_message)
    with SessionPipes() as pipes:
        client = MuxClient.connect(sock_path, host="db1", timeout=5)
        session = client.open_session("echo hi", timeout=5, **pipes.remote_fds)
        pipes.handed_over()
        assert session.session_id == 42
        assert b"echo hi" in fake.received
        wait_for(lambda: len(fake.fds) == 3, 5, "three fds received")
        os.write(fake.fds[1], b"via stdout fd")
        assert pipes.read_exactly(13) == b"via stdout fd"
        os.write(fake.fds[2], b"err")
        assert pipes.read_exactly(3, fd=pipes.stderr) == b"err"
        pipes.write(b"in")
        assert os.read(fake.fds[0], 2) == b"in"
        assert session.wait(0.2) is None  # exit status seen, but not the end yet
        assert session.state is SessionState.EXITED and session.exit_status == 3
        fake.close()  # the master closes the connection: the session has ended
        assert session.wait(5) == 3


def test_eof_during_hello_is_master_not_running(sock_path):
    """A master that hangs up before HELLO (it was exiting): MasterNotRunning."""
    fake = ScriptedMaster(sock_path, hang_up=True)
    with pytest.raises(MasterNotRunning, match="closed the control connection during"):
        MuxClient.connect(sock_path, host="db1", timeout=5)
    fake.close()


def test_missing_and_stale_sockets(sock_path):
    """No socket: MasterNotRunning; a socket file nobody listens on: stale=True."""
    with pytest.raises(MasterNotRunning) as missing:
        MuxClient.connect(sock_path, host="db1", timeout=1)
    assert not missing.value.stale and isinstance(missing.value, ConnectError)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)
    dead.close()
    with pytest.raises(MasterNotRunning, match="crashed") as stale:
        MuxClient.connect(sock_path, host="db1", timeout=1)
    assert stale.value.stale
