"""ssh's own failure messages map to sshpipe's typed errors through one table, and
the transport's error classes survive pickling (they cross process boundaries)."""
from __future__ import annotations

import pickle
import socket

import pytest

from sshpipe._openssh import (MasterLost, MasterNotRunning, MuxError, MuxUnavailable,
                              NoExitStatus, UnsafeControlDir)
from sshpipe._openssh.failures import SSH_FAILURES, error_from_ssh, read_log_tail
from sshpipe.transport import ConnectSettings, transport_error
from sshpipe.errors import (AuthenticationError, ConnectError, ConnectTimeout, HostKeyError,
                            PipeBroken)

# Messages as OpenSSH 8-9 prints them (sshconnect.c, sshconnect2.c, ssh.c, packet.c),
# the class each becomes and words of its message.
SAMPLES = [
    ("Host key verification failed.", HostKeyError, "host key for db1 is not known"),
    ("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
     "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
     "The fingerprint for the ED25519 key sent by the remote host is\n"
     "SHA256:AyXoTUYp5B6vOl/JuLeiRDh1Ndy3YP/8dBBPZbhng5A.\n"
     "Offending ED25519 key in /tmp/kh:1\n"
     "Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.\n"
     "Host key verification failed.", HostKeyError,
     "the host key of [127.0.0.1]:2222 has CHANGED (ED25519 SHA256:AyXoTUYp5B6vOl/JuLeiRDh1"
     "Ndy3YP/8dBBPZbhng5A, known_hosts has another at /tmp/kh:1)"),
    ("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict "
     "checking.\nHost key verification failed.", HostKeyError,
     "host key for [127.0.0.1]:2222 is not known (ED25519 "),
    ("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
     "@       WARNING: REVOKED HOST KEY DETECTED!               @\n"
     "Host key verification failed.", HostKeyError, "REVOKED HOST KEY"),
    ("root@127.0.0.1: Permission denied (publickey).", AuthenticationError,
     "root@127.0.0.1 refused authentication"),
    ("Received disconnect from 127.0.0.1 port 22:2: Too many authentication failures\n"
     "Disconnected from 127.0.0.1 port 22", AuthenticationError, "Too many authentication"),
    ("ssh: connect to host 10.0.0.1 port 22: Connection timed out", ConnectTimeout,
     "connection to 10.0.0.1 port 22 timed out"),
    ("Connection timed out during banner exchange\n"
     "Connection to UNKNOWN port 65535 timed out", ConnectTimeout, "timed out"),
    ("Timeout, server 127.0.0.1 not responding.", ConnectTimeout, "not responding"),
    ("ssh: Could not resolve hostname nosuch: Name or service not known", ConnectError,
     "unknown host name 'nosuch' (Name or service not known)"),
    ("ssh: connect to host 127.0.0.1 port 1: Connection refused", ConnectError,
     "connection to 127.0.0.1 port 1 refused"),
    ("Unable to negotiate with 127.0.0.1 port 2222: no matching cipher found. Their offer: "
     "aes256-ctr", ConnectError, "no algorithms in common"),
    ("kex_exchange_identification: Connection closed by remote host\n"
     "Connection closed by 127.0.0.1 port 2222", ConnectError, "closed the connection"),
    ("/tmp/cfg line 3: Bad configuration option: nosuchoption\n"
     "/tmp/cfg: terminating, 1 bad configuration options", ConnectError,
     "starting the ssh master failed: /tmp/cfg line 3: Bad configuration option"),
]


@pytest.mark.parametrize("text, expected, words", SAMPLES)
def test_each_ssh_message_maps_to_its_class(text, expected, words):
    """Each sample of ssh's words becomes exactly the expected class, its message
    naming the host and saying what happened."""
    error = error_from_ssh("db1", "starting the ssh master", text, 255)
    assert type(error) is expected
    assert error.host == "db1"
    assert str(error).startswith("db1: ") and words in str(error), str(error)


def test_every_row_of_the_table_is_exercised():
    """No row of SSH_FAILURES is dead: some sample matches each one first."""
    used = set()
    for text, _, _ in SAMPLES:
        for index, (pattern, _failure) in enumerate(SSH_FAILURES):
            if pattern.search(text):
                used.add(index)
                break
    assert used == set(range(len(SSH_FAILURES)))


@pytest.mark.parametrize("exc, log", [
    (ConnectionRefusedError(111, "Connection refused"),
     "ssh: connect to host 10.0.0.1 port 22: Connection refused"),
    (socket.gaierror(-2, "Name or service not known"),
     "ssh: Could not resolve hostname 10.0.0.1: Name or service not known"),
], ids=["refused", "unknown name"])
def test_both_transports_say_the_same_issue_13(exc, log):
    """One table: the same failure met by paramiko (an exception) and by ssh (its
    log) gives the same class and the same message."""
    settings = ConnectSettings(alias="db1", hostname="10.0.0.1", port=22, user="deploy")
    by_paramiko = transport_error(exc, settings, 5.0, "connection to 10.0.0.1 port 22")
    by_openssh = error_from_ssh("db1", "starting the ssh master", log, 255)
    assert type(by_paramiko) is type(by_openssh)
    assert str(by_paramiko) == str(by_openssh)


def test_message_quotes_ssh_without_debug_lines_or_banners():
    """The quoted reason keeps ssh's messages and drops debug chatter and @@@ rules."""
    text = ("debug1: Reading configuration data\n@@@@@@@@\n"
            "ssh: connect to host h port 22: No route to host\n")
    error = error_from_ssh("h", "connecting", text)
    assert str(error) == "h: connecting failed: ssh: connect to host h port 22: No route to host"
    assert "ssh gave no reason" in str(error_from_ssh("h", "connecting", "debug1: x\n"))


def test_log_tail_is_bounded(tmp_path):
    """Only the end of a long log is read, starting at a whole line."""
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    tail = read_log_tail(str(log), limit=100)
    assert len(tail) <= 100 and tail.endswith("line 99999\n") and tail.startswith("line ")
    assert read_log_tail(str(tmp_path / "missing")) == ""


@pytest.mark.parametrize("error", [
    UnsafeControlDir("db1: refusing x", "db1", "/x"),
    MuxError("db1: bad", "db1"),
    MuxUnavailable("db1: v5", "db1"),
    MasterNotRunning("db1: gone", "db1", stale=True),
    MasterLost("db1: master ended", "db1", 123),
    NoExitStatus("db1: no status", "db1"),
])
def test_errors_pickle_with_their_attributes(error):
    """Errors keep class, message and attributes through pickle."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_classes_sit_under_the_public_tree():
    """Callers catching the public classes catch the transport's too."""
    assert issubclass(UnsafeControlDir, ConnectError)
    assert issubclass(MuxUnavailable, MuxError) and issubclass(MuxError, ConnectError)
    assert issubclass(MasterNotRunning, MuxError)
    assert issubclass(MasterLost, PipeBroken) and issubclass(NoExitStatus, PipeBroken)
