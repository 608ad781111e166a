"""sshpipe.dask.SSHCluster on real namespace hosts: a distributed.Client computes
a real graph, closing leaves nothing, a killed worker host is recovered, and the
caller's death takes everything with it (root only: netns_hosts)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("distributed")

import dask.bag as db  # noqa: E402
from distributed import Client  # noqa: E402

from sshpipe.dask import SSHCluster  # noqa: E402
from sshpipe.testing import command_line, descendants, process_name, send_signal, wait_gone  # noqa: E402

pytestmark = pytest.mark.netns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _left_on(hosts) -> dict:
    """Processes on each host other than sshd's own, by alias, each as
    "pid name: command line": the listener and, with the OpenSSH transport, the
    connection of the caller's shared master, which outlives the cluster until
    its ControlPersist idle time or its owner ends (tests/openssh checks that
    lifetime). A process that ends while it is being read is not counted."""
    left: dict = {}
    for host in hosts:
        for process in descendants(host.server.process):
            name = process_name(process)
            if name and not name.startswith("sshd"):
                left.setdefault(host.alias, []).append(
                    f"{process.pid} {name}: {command_line(process)[:300]}")
    return left


def _wait_clean(hosts, timeout: float) -> dict:
    """What is still left on ``hosts`` once nothing is, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    left = _left_on(hosts)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _left_on(hosts)
    return left


def test_client_computes_a_graph_through_forwarded_ports_and_close_leaves_nothing(netns_hosts):
    """Scheduler on host0, a worker on host1 and host2; the Client reaches the
    scheduler through a port forwarded over SSH; a bag graph gives the right
    sum; closing leaves no process on any host."""
    hosts = netns_hosts[:3]
    assert _wait_clean(hosts, 15) == {}
    cluster = SSHCluster([h.alias for h in hosts], config=netns_hosts.config_path,
                         remote_python=sys.executable, worker_options={"nthreads": 2},
                         forward_ports=True, silence_logs=40)
    try:
        scheduler = cluster.scheduler
        # The address came through the pipe, on the address SSH reached host0 at.
        assert scheduler.address == scheduler.info["address"]
        assert scheduler.address.startswith(f"tcp://{hosts[0].address}:")
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            workers = client.scheduler_info()["workers"]
            assert {w.split("://")[1].rsplit(":", 1)[0] for w in workers} == \
                {hosts[1].address, hosts[2].address}
            bag = db.from_sequence(range(2000), npartitions=16).map(lambda x: x * x)
            assert bag.sum().compute() == sum(x * x for x in range(2000))
            pids = client.run(os.getpid)
            on_workers = {p.pid for h in hosts[1:] for p in descendants(h.server.process)}
            assert set(pids.values()) <= on_workers
    finally:
        cluster.close()
    assert _wait_clean(hosts, 15) == {}


def test_a_worker_host_killed_mid_compute_is_recovered_by_dask(netns_hosts):
    """Every process of one worker host is killed while it computes: dask moves
    its tasks to the other worker and the answer is still right; closing then
    leaves nothing."""
    hosts = netns_hosts[:3]

    def slow_square(x):  # local: dask sends it by value (the hosts lack this module)
        time.sleep(0.1)
        return x * x

    cluster = SSHCluster([h.alias for h in hosts], config=netns_hosts.config_path,
                         remote_python=sys.executable, worker_options={"nthreads": 1},
                         silence_logs=50)
    try:
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            victim = next(w for w in client.scheduler_info()["workers"]
                          if f"//{hosts[2].address}:" in w)
            future = client.compute(db.from_sequence(range(30), npartitions=30)
                                    .map(slow_square).sum())
            deadline = time.monotonic() + 30
            while not client.processing().get(victim) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert client.processing().get(victim), "the victim never got a task"
            killed = descendants(hosts[2].server.process)
            for process in killed:
                send_signal(process, signal.SIGKILL)
            assert future.result(timeout=90) == sum(x * x for x in range(30))
            assert victim not in client.scheduler_info()["workers"]
            assert wait_gone(killed, 10) == []
    finally:
        cluster.close()
    assert _wait_clean(hosts, 15) == {}


CALLER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from sshpipe.dask import SSHCluster
    cluster = SSHCluster({aliases!r}, config={config!r}, remote_python=sys.executable,
                         worker_options={{"nthreads": 1}}, silence_logs=50)
    print("READY", flush=True)
    time.sleep(120)
""")


def test_the_callers_death_ends_everything_on_the_hosts(netns_hosts, tmp_path):
    """A caller killed with SIGKILL leaves nothing: its pipes' SSH sessions end,
    and with them every agent, scheduler and worker process on the hosts."""
    hosts = netns_hosts[:3]
    script = tmp_path / "caller.py"
    script.write_text(CALLER.format(root=ROOT, aliases=[h.alias for h in hosts],
                                    config=netns_hosts.config_path))
    caller = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        line = caller.stdout.readline()
        assert line.strip() == "READY"
        assert all(descendants(h.server.process) for h in hosts)  # running on every host
        local_children = descendants(caller.pid)
        caller.kill()
        caller.wait(10)
        assert _wait_clean(hosts, 30) == {}
        assert wait_gone(local_children, 15) == []
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait(10)
