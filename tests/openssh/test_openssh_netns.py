"""Masters to real (namespace) hosts: a ProxyJump chain, and a link cut under a
live session (root only: the hosts are network namespaces)."""
from __future__ import annotations

import time

import pytest

from sshpipe._openssh import MasterLost, Target, ensure_master

from openssh_kit import SessionPipes

pytestmark = pytest.mark.netns


def test_proxyjump_chain_goes_through_the_jump_host(netns_hosts, control_dir):
    """Target(host1, jump=host0): the master reaches host1 through host0, whose
    address is where host1's sshd sees the login come from."""
    jump, far = netns_hosts[0], netns_hosts[1]
    target = Target(far.alias, jump=jump.alias, config=netns_hosts.config_path)
    master = ensure_master(target, control_dir=control_dir, timeout=60)
    with SessionPipes() as pipes:
        session = master.open_session("hostname -I; cat", **pipes.remote_fds)
        pipes.handed_over()
        pipes.write(b"through the jump\n")
        pipes.close_stdin()
        assert session.wait(30) == 0
        output = pipes.read_to_eof(pipes.stdout)
    assert far.address.encode() in output and output.endswith(b"through the jump\n")
    assert f"from {jump.address}" in far.server.read_log()
    master.close()


def test_link_cut_under_a_live_session_is_master_lost(netns_hosts, control_dir):
    """A host cut off mid-session: the master's keepalives (1 s x 2 here) give up and
    the session ends with MasterLost quoting ssh's reason, within the bound."""
    index = 2
    host = netns_hosts[index]
    target = Target(host.alias, config=netns_hosts.config_path)
    master = ensure_master(target, control_dir=control_dir, alive_interval=1,
                           alive_count_max=2, timeout=60)
    with SessionPipes() as pipes:
        session = master.open_session("cat", **pipes.remote_fds)
        pipes.handed_over()
        pipes.write(b"ping")
        assert pipes.read_exactly(4) == b"ping"
        netns_hosts.link_down(index)
        try:
            started = time.monotonic()
            with pytest.raises(MasterLost, match="not responding") as caught:
                session.wait(30)
            assert time.monotonic() - started < 10
            assert caught.value.master_pid == master.pid
        finally:
            netns_hosts.link_up(index)
    master.close()
