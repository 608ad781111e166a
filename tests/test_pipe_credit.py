"""Reply credit on request: the caller does not send a CREDIT frame after every
reply (one more frame across the whole path per round trip); the agent asks
with a PING when its reply window is full, and is answered."""
from __future__ import annotations

from pathlib import Path

from sshpipe import SSHPipe

from pipe_transports import transport  # noqa: F401 (autouse: each test per transport)

ECHO = str(Path(__file__).parent / "agents" / "echo_agent.py")


def make_pipe(sshd, **kwargs) -> SSHPipe:
    return SSHPipe(sshd.alias, ECHO, config=sshd.config_path, python=sshd.python, **kwargs)


def test_round_trips_send_no_credit_until_a_quarter_window(sshd):
    """100 round trips with a 1024-reply window: no CREDIT was due (the agent never
    waited), where every reply used to be followed by one."""
    with make_pipe(sshd) as pipe:
        for number in range(100):
            pipe.send(number)
            assert pipe.recv(timeout=10) == number
        assert pipe.remote_info.get("credit_on_request") is True
        assert pipe._ledger.replies_taken == 100
        assert pipe._ledger.replies_credited == 0


def test_a_full_byte_window_is_answered_when_the_agent_asks(sshd):
    """A small reply left uncredited plus a reply that fills the byte window: the
    agent waits for credit, asks with a PING, and the caller answers at once, so
    each round trip takes well under its timeout (without the answer the second
    recv() could never return)."""
    window = 1 << 20
    small, big = b"s" * 100, b"b" * (window - 50)
    with make_pipe(sshd, reply_window_bytes=window) as pipe:
        for _ in range(5):
            pipe.send(small)
            assert pipe.recv(timeout=10) == small
            pipe.send(big)
            assert pipe.recv(timeout=10) == big
        assert pipe._ledger.replies_credited > 0
