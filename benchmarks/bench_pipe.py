"""sshpipe next to execnet, raw SSH channels and multiprocessing.Pipe (issue 4).

One run starts its own :class:`~sshpipe.testing.LocalSSHServer` (a real sshd on
127.0.0.1) and measures, one column after the other:

==============  ==============================================================
column          what it is
==============  ==============================================================
sshpipe         ``SSHPipe`` to ``handlers/echo_handler.py`` / ``sink_handler.py``
execnet_C       ``execnet.makegateway("ssh=<alias>//ssh_config=..//python=..")``;
                execnet always runs ``ssh -C`` (compression on)
execnet_noC     the same with ``-C`` taken out of execnet's ssh command line
                (ssh keeps the *first* value of an option, so ``-o
                Compression=no`` after ``-C`` does not work; the benchmark wraps
                ``execnet.gateway_io.ssh_args`` instead)
paramiko_cat    a paramiko exec channel on a TCP_NODELAY/QUICKACK socket with
                aes128-gcm preferred and 16 MiB windows, as sshpipe connects;
                writes go through ``sendall(memoryview(...))`` (paramiko's
                ``sendall`` re-slices its argument per 32 KiB packet, which
                copies a ``bytes`` quadratically and costs about a third of the
                sender's CPU on 1 MiB writes; a memoryview slices for free)
ssh_cat         an ``ssh <alias> <command>`` subprocess (OpenSSH defaults)
mp_pipe         ``multiprocessing.Pipe`` to a local child process
==============  ==============================================================

Every column runs once per *round* (3 in a full run, 1 with ``--quick``), the
columns interleaved, so that load from other processes on the machine spreads
over all of them; the samples of all rounds are pooled.

Metrics:

rtt_100B_median_us, rtt_100B_p90_us
    Round trip of a 100-byte ``bytes`` object: send it, the far end sends it back
    (sshpipe: Echo handler ``reply``; execnet: channel echo loop; raw channels:
    ``cat``, reading back the same 100 bytes; mp_pipe: an echo child). After a
    warm-up, one sample per round trip.
throughput_1MiB_MBps
    One-way: N messages of 1 MiB of random bytes (incompressible, so ``-C`` gets
    no free ride), then wait until the far end confirmed it has all of them.
    sshpipe: ``send`` N times, then ``flush()`` (every message acknowledged as
    handled by the Sink handler). execnet: the remote loop counts items until a
    ``None`` and sends the count back. Raw channels: the remote runs ``echo ready;
    head -c <N bytes> >/dev/null; echo done``; the clock starts after "ready" and
    stops at "done", one write per message. mp_pipe: the child counts messages and
    sends the count. MB/s = 10**6 bytes of payload per second; the best trial
    (the one least disturbed by other load) is reported.
rate_1KiB_msgs_per_s
    Same method with M messages of 1 KiB (random bytes), one send/write each;
    best trial.
cpu_ms_per_MiB_<role>
    CPU time (user + system, from ``/proc/<pid>/stat`` before and after) per MiB
    of payload over one more 1 MiB x N one-way run, by process role: ``caller``
    (this process, all its threads), ``child`` (the SSHPipe child; the mp
    child), ``ssh`` (the ssh client: OpenSSH transport's master, ``ssh cat``'s
    and execnet's ssh), ``sshd`` (the server's processes for the session) and
    ``agent`` (what runs remotely: agent and its supervisor, ``head``, execnet's
    interpreter); ``total`` is their sum. The counters tick at 100 Hz: N is
    chosen so each trial is a few seconds of CPU in all.
start_to_hello_ms
    sshpipe: ``SSHPipe(...)`` plus ``start()`` (returns after the agent's hello).
    execnet: ``makegateway()`` (returns after the remote interpreter has
    bootstrapped and answered). paramiko_cat: TCP connect, SSH handshake, auth,
    exec ``echo hello; exec cat`` until "hello" is read. ssh_cat: the same with an
    ``ssh`` subprocess. mp_pipe: ``Process.start()`` until the child's "hello".
    Median of the trials. Every SSH column includes the remote login shell's
    start-up (``$SHELL -c``; bash reads ``~/.bashrc`` under sshd), the same for
    all of them: this machine's root ``~/.bashrc`` runs ``pyenv init``, a
    *heavy* login shell.
start_to_hello_plain_ms, first_start_plain_ms
    The same against a second sshd whose sessions get ``SHLVL=1`` (sshd's
    ``SetEnv``): bash then takes itself for a nested shell and does not read
    ``~/.bashrc``, a *plain* remote shell (what a host without rc-file work
    costs). paramiko is imported in this process before anything is
    measured, so every SSHPipe child (forked) starts with it loaded; a caller
    that has not imported paramiko pays its import (hundreds of ms) in each
    child, which this number leaves out.

Targets for sshpipe (issue 4), each against the *better* of the two execnet
columns (the stricter reading):

- rtt_100B median at or below execnet's;
- throughput_1MiB at least 0.8 x paramiko_cat's, and above execnet's;
- rate_1KiB at least execnet's;
- start_to_hello at most half of execnet's.

Usage::

    .venv/bin/python benchmarks/bench_pipe.py            # full run, 1-3 minutes
    .venv/bin/python benchmarks/bench_pipe.py --quick    # < 30 s (smoke test)
    .venv/bin/python benchmarks/bench_pipe.py --json     # JSON on stdout
    .venv/bin/python benchmarks/bench_pipe.py --columns sshpipe,paramiko_cat

The machine's core count matters: sshpipe's path has four processes per message
(caller, SSHPipe child, sshd, agent), execnet's three, the raw channels two.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

from _common import log, percentile, recv_exact, recv_until, sink_command

HERE = os.path.dirname(os.path.abspath(__file__))
HANDLERS = os.path.join(HERE, "handlers")

COLUMNS = ["sshpipe", "sshpipe_openssh", "execnet_C", "execnet_noC", "paramiko_cat", "ssh_cat",
           "mp_pipe"]
COLUMN_TITLES = {
    "sshpipe": "sshpipe paramiko",
    "sshpipe_openssh": "sshpipe openssh",
    "execnet_C": "execnet -C",
    "execnet_noC": "execnet no -C",
    "paramiko_cat": "paramiko cat",
    "ssh_cat": "ssh cat",
    "mp_pipe": "mp.Pipe",
}
CPU_ROLES = ["caller", "child", "ssh", "sshd", "agent", "total"]
METRICS = ["rtt_100B_median_us", "rtt_100B_p90_us", "throughput_1MiB_MBps",
           "rate_1KiB_msgs_per_s", "start_to_hello_ms", "first_start_ms",
           "start_to_hello_plain_ms", "first_start_plain_ms"] + [
               f"cpu_ms_per_MiB_{role}" for role in CPU_ROLES]
METRIC_TITLES = {
    "rtt_100B_median_us": "rtt 100 B median (us)",
    "rtt_100B_p90_us": "rtt 100 B p90 (us)",
    "throughput_1MiB_MBps": "1 MiB one-way (MB/s)",
    "rate_1KiB_msgs_per_s": "1 KiB one-way (msg/s)",
    "start_to_hello_ms": "start to hello (ms)",
    "first_start_ms": "first pipe to a host (ms)",
    "start_to_hello_plain_ms": "start, plain shell (ms)",
    "first_start_plain_ms": "first pipe, plain shell (ms)",
    **{f"cpu_ms_per_MiB_{role}": f"cpu ms/MiB {role}" for role in CPU_ROLES},
}

TIMEOUT = 60.0            # seconds any single wait may take before the run fails
WINDOW = 16 * 1024 * 1024  # paramiko channel window, as sshpipe.transport uses
RTT_SIZE = 100
BIG_SIZE = 1 << 20
SMALL_SIZE = 1 << 10

ECHO_SOURCE = """
while True:
    item = channel.receive()
    if item is None:
        break
    channel.send(item)
"""

SINK_SOURCE = """
count = 0
while True:
    item = channel.receive()
    if item is None:
        break
    count += 1
channel.send(count)
"""


@dataclass(frozen=True)
class Params:
    rounds: int          # every column runs once per round, columns interleaved
    rtt_warmup: int
    rtt_count: int       # per round
    big_messages: int
    big_trials: int      # per round
    small_messages: int
    small_trials: int    # per round
    start_trials: int    # per round
    start_warmup: bool = True  # one unmeasured start first (page cache, sshd)
    cpu_messages: int = 64     # 1 MiB messages of the CPU trial (per round)


FULL = Params(rounds=3, rtt_warmup=100, rtt_count=800, big_messages=32, big_trials=2,
              small_messages=8000, small_trials=2, start_trials=2)
QUICK = Params(rounds=1, rtt_warmup=20, rtt_count=200, big_messages=8, big_trials=2,
               small_messages=1500, small_trials=2, start_trials=1, start_warmup=False,
               cpu_messages=16)


class Payloads:
    """The objects sent, made once: random bytes so compression cannot cheat."""

    def __init__(self) -> None:
        self.rtt = os.urandom(RTT_SIZE)
        self.big = os.urandom(BIG_SIZE)
        self.small = os.urandom(SMALL_SIZE)


# -- measuring helpers, shared by every column ---------------------------------

def _rtt(roundtrip: Callable[[], None], params: Params) -> Dict[str, List[float]]:
    for _ in range(params.rtt_warmup):
        roundtrip()
    samples = []
    clock = time.perf_counter
    for _ in range(params.rtt_count):
        start = clock()
        roundtrip()
        samples.append(clock() - start)
    return {"rtt": samples}


def _cpu_seconds(pid: int) -> Optional[float]:
    """utime + stime of a process (all its threads, the ended ones included)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU of every process on a column's path, by role, between start() and stop().

    Roles: this process is the caller; its other descendants are ``ssh`` (named
    ssh) or ``child``; the sshd's descendants are ``sshd`` (named sshd) or
    ``agent``; ``extra`` adds processes that are neither (the OpenSSH transport's
    master, a daemon of its own). A process seen only at stop() counts whole;
    one that ended before stop() is not seen (every column keeps its processes
    for the whole trial).
    """

    def __init__(self, server: Any, extra: Optional[Dict[int, str]] = None):
        self.server = server
        self.extra = dict(extra or {})
        self.before: Dict[int, Tuple[str, float]] = {}
        self.spent: Dict[str, float] = {}

    def _roles(self) -> Dict[int, str]:
        from sshpipe.testing import descendants, process_name

        roles: Dict[int, str] = {os.getpid(): "caller"}
        server = self.server
        remote = [] if server is None else descendants(server.pid)
        others = set() if server is None else {p.pid for p in remote} | {server.pid}
        if server is not None and server.watchdog is not None:
            others.add(server.watchdog.pid)
        for process in descendants(os.getpid()):
            if process.pid not in others:
                roles[process.pid] = "ssh" if process_name(process) == "ssh" else "child"
        for process in remote:
            roles[process.pid] = "sshd" if process_name(process).startswith("sshd") \
                else "agent"
        roles.update(self.extra)
        return roles

    def _sample(self) -> Dict[int, Tuple[str, float]]:
        out = {}
        for pid, role in self._roles().items():
            seconds = _cpu_seconds(pid)
            if seconds is not None:
                out[pid] = (role, seconds)
        return out

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> None:
        spent = {role: 0.0 for role in CPU_ROLES}
        for pid, (role, seconds) in self._sample().items():
            spent[role] += seconds - self.before.get(pid, (role, 0.0))[1]
        spent["total"] = sum(spent[role] for role in CPU_ROLES if role != "total")
        self.spent = spent


Transfer = Callable[..., float]


def _one_way(transfer: Transfer, payloads: Payloads, params: Params,
             meter: Optional[CpuMeter] = None) -> Dict[str, List[float]]:
    """``transfer(payload, count, meter=None)`` returns the seconds to deliver
    ``count`` copies, and runs ``meter.start()``/``stop()`` with its clock."""
    transfer(payloads.big, 2)  # warm-up: windows, caches
    results = {
        "big": [transfer(payloads.big, params.big_messages) for _ in range(params.big_trials)],
        "small": [transfer(payloads.small, params.small_messages)
                  for _ in range(params.small_trials)],
    }
    if meter is not None and sys.platform.startswith("linux"):
        transfer(payloads.big, params.cpu_messages, meter=meter)
        mib = params.cpu_messages * BIG_SIZE / (1 << 20)
        for role, seconds in meter.spent.items():
            results[f"cpu_{role}"] = [seconds * 1e3 / mib]
    return results


def _starts(start_once: Callable[[Any], float], servers: "Servers",
            params: Params) -> Dict[str, List[float]]:
    """Starts against the heavy-shell server ("start"), then the plain one."""
    results = {}
    for server, key in ((servers.heavy, "start"), (servers.plain, "start_plain")):
        if key == "start_plain" and server is None:
            continue  # no shell on the way (mp_pipe)
        if params.start_warmup:
            start_once(server)
        results[key] = [start_once(server) for _ in range(params.start_trials)]
    return results


def summarize(samples: Dict[str, List[float]], params: Params) -> Dict[str, float]:
    """Pooled samples of every round -> the reported numbers. Throughput and rate
    take the best trial (the least disturbed by other load on the machine); the
    round trip and start take medians."""
    rtt = samples["rtt"]
    out = {
        "rtt_100B_median_us": statistics.median(rtt) * 1e6,
        "rtt_100B_p90_us": percentile(rtt, 0.9) * 1e6,
        "throughput_1MiB_MBps": params.big_messages * BIG_SIZE / min(samples["big"]) / 1e6,
        "rate_1KiB_msgs_per_s": params.small_messages / min(samples["small"]),
    }
    for key, metric in (("start", "start_to_hello_ms"), ("first", "first_start_ms"),
                        ("start_plain", "start_to_hello_plain_ms"),
                        ("first_plain", "first_start_plain_ms")):
        if samples.get(key):
            out[metric] = statistics.median(samples[key]) * 1e3
    for role in CPU_ROLES:
        if samples.get(f"cpu_{role}"):
            # Medians of the rounds: each is one run's CPU per MiB.
            out[f"cpu_ms_per_MiB_{role}"] = statistics.median(samples[f"cpu_{role}"])
    return out


# -- sshpipe -----------------------------------------------------------------

def bench_sshpipe(servers: "Servers", payloads: Payloads, params: Params,
                  transport: str = "paramiko") -> Dict[str, List[float]]:
    """SSHPipe over one transport. With OpenSSH, ``start`` is a later pipe (the
    master is live) and ``first`` a pipe that starts the master (none running)."""
    from sshpipe import SSHPipe

    server = servers.heavy

    def make(handler: str, to: Any = server) -> Any:
        return SSHPipe(to.alias, os.path.join(HANDLERS, handler), config=to.config_path,
                       python=sys.executable, transport=transport)

    results: Dict[str, List[float]] = {}
    if transport == "openssh":
        from sshpipe._openssh import stop_masters

        for to, key in ((servers.heavy, "first"), (servers.plain, "first_plain")):
            stop_masters(owner=os.getpid())
            start = time.perf_counter()
            pipe = make("echo_handler.py", to)
            pipe.start()
            results[key] = [time.perf_counter() - start]
            pipe.close(timeout=TIMEOUT)

    def start_once(to: Any) -> float:
        start = time.perf_counter()
        pipe = make("echo_handler.py", to)
        pipe.start()
        elapsed = time.perf_counter() - start
        pipe.close(timeout=TIMEOUT)
        return elapsed

    results.update(_starts(start_once, servers, params))

    pipe = make("echo_handler.py")
    pipe.start()
    try:
        obj = payloads.rtt

        def roundtrip() -> None:
            pipe.send(obj)
            pipe.recv(timeout=TIMEOUT)

        results.update(_rtt(roundtrip, params))
    finally:
        pipe.close(timeout=TIMEOUT)

    pipe = make("sink_handler.py")
    pipe.start()
    try:
        def transfer(payload: bytes, count: int, meter: Optional[CpuMeter] = None) -> float:
            if meter:
                meter.start()
            start = time.perf_counter()
            for _ in range(count):
                pipe.send(payload)
            pipe.flush(timeout=TIMEOUT)
            elapsed = time.perf_counter() - start
            if meter:
                meter.stop()
            return elapsed

        master = pipe.remote_info.get("master_pid")
        meter = CpuMeter(server, {master: "ssh"} if master else None)
        results.update(_one_way(transfer, payloads, params, meter))
    finally:
        pipe.close(timeout=TIMEOUT)
    return results


# -- execnet -----------------------------------------------------------------

@contextlib.contextmanager
def _execnet_compression(enabled: bool) -> Iterator[None]:
    """execnet hard-codes ``ssh -C``; without compression, take the flag out."""
    from execnet import gateway_io

    if enabled:
        yield
        return
    original = gateway_io.ssh_args

    def ssh_args_without_c(spec: Any) -> List[str]:
        args = original(spec)
        return [args[0]] + [arg for arg in args[1:-1] if arg != "-C"] + [args[-1]]

    gateway_io.ssh_args = ssh_args_without_c
    try:
        yield
    finally:
        gateway_io.ssh_args = original


def bench_execnet(servers: "Servers", payloads: Payloads, params: Params,
                  compression: bool) -> Dict[str, List[float]]:
    import execnet

    server = servers.heavy

    def gateway(to: Any = server) -> Any:
        spec = f"ssh={to.alias}//ssh_config={to.config_path}//python={sys.executable}"
        with _execnet_compression(compression):
            return execnet.makegateway(spec)

    def start_once(to: Any) -> float:
        start = time.perf_counter()
        gw = gateway(to)
        elapsed = time.perf_counter() - start
        gw.exit()
        return elapsed

    results = _starts(start_once, servers, params)

    gw = gateway()
    try:
        channel = gw.remote_exec(ECHO_SOURCE)
        obj = payloads.rtt

        def roundtrip() -> None:
            channel.send(obj)
            channel.receive(TIMEOUT)

        results.update(_rtt(roundtrip, params))
        channel.send(None)
        channel.waitclose(TIMEOUT)

        def transfer(payload: bytes, count: int, meter: Optional[CpuMeter] = None) -> float:
            sink = gw.remote_exec(SINK_SOURCE)
            if meter:
                meter.start()
            start = time.perf_counter()
            for _ in range(count):
                sink.send(payload)
            sink.send(None)
            got = sink.receive(TIMEOUT)
            elapsed = time.perf_counter() - start
            if meter:
                meter.stop()
            if got != count:
                raise RuntimeError(f"execnet sink counted {got} of {count}")
            sink.waitclose(TIMEOUT)
            return elapsed

        results.update(_one_way(transfer, payloads, params, CpuMeter(server)))
    finally:
        gw.exit()
    return results


# -- raw channels: paramiko and the ssh command --------------------------------

def _paramiko_transport(server: Any) -> Any:
    """Connected and authenticated the way sshpipe connects (fair baseline)."""
    import paramiko

    sock = socket.create_connection((server.address, server.port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if hasattr(socket, "TCP_QUICKACK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    transport = paramiko.Transport(sock, default_window_size=WINDOW)
    options = transport.get_security_options()
    fast = "aes128-gcm@openssh.com"
    if fast in options.ciphers:
        options.ciphers = [fast] + [c for c in options.ciphers if c != fast]
    transport.start_client(timeout=TIMEOUT)
    key = transport.get_remote_server_key()
    known = paramiko.HostKeys(server.known_hosts_path)
    entries = known.lookup(f"[{server.address}]:{server.port}") or {}
    if entries.get(key.get_name()) != key:
        transport.close()
        raise RuntimeError("paramiko baseline: the server's host key is not the known one")
    transport.auth_publickey(server.user, paramiko.PKey.from_path(server.key_path))
    return transport


def _paramiko_exec(transport: Any, command: str) -> Any:
    channel = transport.open_session(timeout=TIMEOUT)
    channel.settimeout(TIMEOUT)
    channel.exec_command(command)
    return channel


def _bench_stream(connect: Callable[[Any, str], Tuple[Any, Callable[[], None]]],
                  open_stream: Callable[[str], Any], servers: "Servers", payloads: Payloads,
                  params: Params) -> Dict[str, List[float]]:
    """Start, round-trip and one-way numbers of a raw byte stream (an object with
    ``sendall``, ``recv`` and ``close``): ``connect(server, command)`` makes a new
    connection running ``command`` and gives (stream, close it all);
    ``open_stream(command)`` runs ``command`` on the connection the rest share
    (to the heavy-shell server)."""
    def start_once(to: Any) -> float:
        start = time.perf_counter()
        stream, close = connect(to, "echo hello; exec cat")
        recv_until(stream.recv, b"hello\n")
        elapsed = time.perf_counter() - start
        close()
        return elapsed

    results = _starts(start_once, servers, params)
    stream = open_stream("cat")
    try:
        obj = payloads.rtt

        def roundtrip() -> None:
            stream.sendall(memoryview(obj))
            recv_exact(stream.recv, RTT_SIZE)

        results.update(_rtt(roundtrip, params))
    finally:
        stream.close()

    def transfer(payload: bytes, count: int, meter: Optional[CpuMeter] = None) -> float:
        # After "done" the sink waits for the end of its input, so that the session
        # (ssh, sshd) is still there when the CPU meter reads it.
        sink = open_stream(sink_command(len(payload) * count) + "; exec cat >/dev/null")
        try:
            recv_until(sink.recv, b"ready\n")
            if meter:
                meter.start()
            start = time.perf_counter()
            for _ in range(count):
                sink.sendall(memoryview(payload))
            recv_until(sink.recv, b"done\n")
            elapsed = time.perf_counter() - start
            if meter:
                meter.stop()
            return elapsed
        finally:
            sink.close()

    results.update(_one_way(transfer, payloads, params, CpuMeter(servers.heavy)))
    return results


def bench_paramiko(servers: "Servers", payloads: Payloads,
                   params: Params) -> Dict[str, List[float]]:
    def connect(to: Any, command: str) -> Tuple[Any, Callable[[], None]]:
        transport = _paramiko_transport(to)
        return _paramiko_exec(transport, command), transport.close

    transport = _paramiko_transport(servers.heavy)
    try:
        return _bench_stream(connect, lambda command: _paramiko_exec(transport, command),
                             servers, payloads, params)
    finally:
        transport.close()


class _SSHProcess:
    """``ssh <alias> <command>`` with unbuffered pipes and bounded reads."""

    def __init__(self, server: Any, command: str):
        self.process = subprocess.Popen(
            ["ssh", "-F", server.config_path, server.alias, command],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.out = self.process.stdout.fileno()
        self.inp = self.process.stdin.fileno()

    def recv(self, size: int) -> bytes:
        ready, _, _ = select.select([self.out], [], [], TIMEOUT)
        if not ready:
            raise TimeoutError("ssh subprocess: no output")
        return os.read(self.out, size)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.inp, view):]

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


def bench_ssh(servers: "Servers", payloads: Payloads, params: Params) -> Dict[str, List[float]]:
    def connect(to: Any, command: str) -> Tuple[Any, Callable[[], None]]:
        proc = _SSHProcess(to, command)
        return proc, proc.close

    return _bench_stream(connect, lambda command: _SSHProcess(servers.heavy, command), servers,
                         payloads, params)


# -- multiprocessing.Pipe ------------------------------------------------------

def _mp_child(connection: Any) -> None:
    """Echo objects; after "sink", count objects until None and send the count."""
    connection.send("hello")
    while True:
        item = connection.recv()
        if item is None:
            return
        if item == "sink":
            count = 0
            while connection.recv() is not None:
                count += 1
            connection.send(count)
            continue
        connection.send(item)


def bench_mp(servers: "Servers", payloads: Payloads, params: Params) -> Dict[str, List[float]]:
    def spawn() -> "tuple[Any, Any, float]":
        start = time.perf_counter()
        here, there = multiprocessing.Pipe()
        process = multiprocessing.Process(target=_mp_child, args=(there,), daemon=True)
        process.start()
        if not here.poll(TIMEOUT) or here.recv() != "hello":
            raise RuntimeError("mp child: no hello")
        elapsed = time.perf_counter() - start
        there.close()
        return here, process, elapsed

    def stop(here: Any, process: Any) -> None:
        here.send(None)
        process.join(TIMEOUT)
        here.close()

    def start_once(to: Any) -> float:
        here, process, elapsed = spawn()
        stop(here, process)
        return elapsed

    results = _starts(start_once, Servers(None, None), params)
    here, process, _ = spawn()
    try:
        obj = payloads.rtt

        def roundtrip() -> None:
            here.send(obj)
            here.recv()

        results.update(_rtt(roundtrip, params))

        def transfer(payload: bytes, count: int, meter: Optional[CpuMeter] = None) -> float:
            here.send("sink")
            if meter:
                meter.start()
            start = time.perf_counter()
            for _ in range(count):
                here.send(payload)
            here.send(None)
            if not here.poll(TIMEOUT):
                raise TimeoutError("mp child: no count")
            got = here.recv()
            elapsed = time.perf_counter() - start
            if meter:
                meter.stop()
            if got != count:
                raise RuntimeError(f"mp child counted {got} of {count}")
            return elapsed

        results.update(_one_way(transfer, payloads, params, CpuMeter(None)))
    finally:
        stop(here, process)
    return results


class Servers(NamedTuple):
    """The two sshd every SSH column runs against (see the module docstring)."""

    heavy: Any   # sessions run the login shell's rc files (here: pyenv init)
    plain: Any   # SHLVL=1: bash reads no rc file


def _plain_shell_server() -> Any:
    """A LocalSSHServer whose sessions get SHLVL=1 (on the one SetEnv line sshd
    reads: it takes only the first SetEnv directive)."""
    from sshpipe.testing import LocalSSHServer

    class PlainShellServer(LocalSSHServer):
        @staticmethod
        def _remote_environment() -> str:
            line = LocalSSHServer._remote_environment().rstrip("\n")
            return f"{line} SHLVL=1\n" if line else "SetEnv SHLVL=1\n"

    return PlainShellServer(alias="bench-pipe-plain")


BENCHES: Dict[str, Callable[[Any, Payloads, Params], Dict[str, List[float]]]] = {
    "sshpipe": bench_sshpipe,
    "sshpipe_openssh": lambda s, p, q: bench_sshpipe(s, p, q, transport="openssh"),
    "execnet_C": lambda s, p, q: bench_execnet(s, p, q, compression=True),
    "execnet_noC": lambda s, p, q: bench_execnet(s, p, q, compression=False),
    "paramiko_cat": bench_paramiko,
    "ssh_cat": bench_ssh,
    "mp_pipe": bench_mp,
}


# -- targets and output --------------------------------------------------------

def targets(results: Dict[str, Dict[str, float]]) -> List[Dict[str, Any]]:
    """Issue 4's targets for sshpipe, each met/missed/unknown, against the better
    execnet column."""
    ours = results.get("sshpipe", {})

    def value(column: str, metric: str) -> Optional[float]:
        return results.get(column, {}).get(metric)

    def best(metric: str, pick: Callable[..., float]) -> Optional[float]:
        values = [v for v in (value("execnet_C", metric), value("execnet_noC", metric))
                  if v is not None]
        return pick(values) if values else None

    rows = []

    def add(name: str, metric: str, reference: Optional[float], ok: Callable[[float, float], bool],
            describe: str) -> None:
        mine = ours.get(metric)
        if mine is None or reference is None:
            status = "unknown"
        else:
            status = "met" if ok(mine, reference) else "missed"
        rows.append({"target": name, "metric": metric, "sshpipe": mine,
                     "reference": reference, "reference_is": describe, "status": status,
                     "ratio": (mine / reference) if mine is not None and reference else None})

    add("rtt_100B median <= execnet", "rtt_100B_median_us",
        best("rtt_100B_median_us", min), lambda m, r: m <= r, "best execnet median")
    paramiko_tput = value("paramiko_cat", "throughput_1MiB_MBps")
    add("throughput_1MiB >= 0.8 x paramiko cat", "throughput_1MiB_MBps",
        paramiko_tput * 0.8 if paramiko_tput is not None else None, lambda m, r: m >= r,
        "0.8 x paramiko_cat")
    add("throughput_1MiB > execnet", "throughput_1MiB_MBps",
        best("throughput_1MiB_MBps", max), lambda m, r: m > r, "best execnet")
    add("rate_1KiB >= execnet", "rate_1KiB_msgs_per_s",
        best("rate_1KiB_msgs_per_s", max), lambda m, r: m >= r, "best execnet")
    execnet_start = best("start_to_hello_ms", min)
    add("start_to_hello <= 0.5 x execnet", "start_to_hello_ms",
        execnet_start * 0.5 if execnet_start is not None else None, lambda m, r: m <= r,
        "0.5 x best execnet")

    # Issue 13's targets for the OpenSSH transport.
    ours = results.get("sshpipe_openssh", {})
    column = "sshpipe_openssh"

    def scaled(reference: Optional[float], factor: float) -> Optional[float]:
        return None if reference is None else reference * factor

    def add13(name: str, metric: str, reference: Optional[float], ok: Callable[..., bool],
              describe: str) -> None:
        add(f"[openssh] {name}", metric, reference, ok, describe)
        rows[-1]["column"] = column

    add13("rtt_100B median <= 0.8 x execnet", "rtt_100B_median_us",
          scaled(best("rtt_100B_median_us", min), 0.8), lambda m, r: m <= r,
          "0.8 x best execnet")
    add13("rtt_100B median <= 1.3 x ssh cat", "rtt_100B_median_us",
          scaled(value("ssh_cat", "rtt_100B_median_us"), 1.3), lambda m, r: m <= r,
          "1.3 x ssh cat")
    add13("rate_1KiB >= 3 x execnet", "rate_1KiB_msgs_per_s",
          scaled(best("rate_1KiB_msgs_per_s", max), 3), lambda m, r: m >= r,
          "3 x best execnet")
    add13("throughput_1MiB >= 0.9 x ssh cat", "throughput_1MiB_MBps",
          scaled(value("ssh_cat", "throughput_1MiB_MBps"), 0.9), lambda m, r: m >= r,
          "0.9 x ssh cat")
    add13("later start_to_hello <= 60 ms", "start_to_hello_ms", 60.0, lambda m, r: m <= r,
          "60 ms")
    add13("later start_to_hello <= 0.2 x execnet", "start_to_hello_ms",
          scaled(execnet_start, 0.2), lambda m, r: m <= r, "0.2 x best execnet")
    add13("first pipe no slower than paramiko's", "first_start_ms",
          value("sshpipe", "start_to_hello_ms"), lambda m, r: m <= r * 1.1,
          "sshpipe paramiko start (+10%)")
    return rows


def _fmt(number: Optional[float]) -> str:
    if number is None:
        return "-"
    if number >= 100:
        return f"{number:,.0f}"
    if number >= 10:
        return f"{number:.1f}"
    return f"{number:.2f}"


def render(report: Dict[str, Any]) -> str:
    columns = report["columns"]
    results = report["results"]
    width = max(len(title) for title in METRIC_TITLES.values())
    cells = [max(len(COLUMN_TITLES[c]), 9) for c in columns]
    lines = ["  ".join([" " * width] + [COLUMN_TITLES[c].rjust(w)
                                         for c, w in zip(columns, cells)])]
    for metric in METRICS:
        lines.append("  ".join([METRIC_TITLES[metric].ljust(width)] + [
            _fmt(results.get(c, {}).get(metric)).rjust(w) for c, w in zip(columns, cells)]))
    lines.append("")
    lines.append("sshpipe targets (issue 4: paramiko column; issue 13: [openssh]):")
    for row in report["targets"]:
        ratio = f" (x{row['ratio']:.2f})" if row["ratio"] is not None else ""
        lines.append(f"  {row['status'].upper():7} {row['target']:40} sshpipe "
                     f"{_fmt(row['sshpipe'])} vs {row['reference_is']} "
                     f"{_fmt(row['reference'])}{ratio}")
    for column, error in report["errors"].items():
        lines.append(f"  ERROR in {column}: {error}")
    lines.append("")
    lines.append(f"{report['mode']} run, {report['elapsed_s']:.1f} s, {report['cpus']} cpus, "
                 f"load average {report['loadavg_before']:.1f} before, "
                 f"{report['loadavg_after']:.1f} after, python {sys.version.split()[0]}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, < 30 s")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--columns", default=",".join(COLUMNS),
                        help="comma-separated subset of: " + ", ".join(COLUMNS))
    args = parser.parse_args(argv)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    unknown = [c for c in columns if c not in BENCHES]
    if unknown:
        parser.error(f"unknown columns {unknown}; choose from {COLUMNS}")
    params = QUICK if args.quick else FULL

    import paramiko  # noqa: F401  (loaded once for all columns; see the docstring)

    from sshpipe.testing import LocalSSHServer

    began = time.perf_counter()
    payloads = Payloads()
    samples: Dict[str, Dict[str, List[float]]] = {c: {} for c in columns}
    errors: Dict[str, str] = {}
    load_before = os.getloadavg()
    with LocalSSHServer(alias="bench-pipe") as server, _plain_shell_server() as plain:
        servers = Servers(server, plain)
        for round_number in range(1, params.rounds + 1):
            for column in columns:
                if column in errors:
                    continue
                log(f"bench_pipe: round {round_number}/{params.rounds}: {column} ...")
                t0 = time.perf_counter()
                try:
                    got = BENCHES[column](servers, payloads, params)
                except Exception as exc:  # one failing column must not hide the others
                    errors[column] = f"{type(exc).__name__}: {exc}"
                    log(f"bench_pipe: {column} failed: {errors[column]}")
                    continue
                for key, values in got.items():
                    samples[column].setdefault(key, []).extend(values)
                log(f"bench_pipe: {column} took {time.perf_counter() - t0:.1f} s")
    results = {c: summarize(samples[c], params) for c in columns if c not in errors}
    report = {
        "mode": "quick" if args.quick else "full",
        "columns": columns,
        "metrics": METRICS,
        "results": results,
        "targets": targets(results),
        "errors": errors,
        "params": asdict(params),
        "cpus": os.cpu_count(),
        "loadavg_before": load_before[0],
        "loadavg_after": os.getloadavg()[0],
        "elapsed_s": time.perf_counter() - began,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
