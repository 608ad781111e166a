"""The OpenSSH transport's building blocks next to ``ssh host cat`` and paramiko (issue 13).

One run starts its own :class:`~sshpipe.testing.LocalSSHServer` (a real sshd on
127.0.0.1) and measures, the columns interleaved per round so that load from other
processes spreads over all of them, samples of all rounds pooled:

=============  ===============================================================
column         what it is
=============  ===============================================================
mux            a session opened on a live master through sshpipe._openssh.mux,
               remote ``cat``; our own OS pipes passed to the master (SCM_RIGHTS):
               this process writes one pipe and reads the other, no relay
passenger      the same through an ``ssh -S`` passenger process (the fallback);
               the bytes take the same path as with mux
ssh_cat        ``ssh <alias> cat`` as a subprocess, its own connection
               (``ControlMaster=no``, ``ControlPath=none``), pipes to its stdio
paramiko_cat   a paramiko exec channel ``cat`` opened as sshpipe.transport
               connects (TCP_NODELAY, aes128-gcm preferred, 16 MiB windows)
=============  ===============================================================

Metrics:

rtt_100B_median_us, rtt_100B_p90_us
    Write 100 random bytes, read the same 100 back from ``cat``, after a warm-up.
    One session of every column is open at once and the samples interleave (one
    round trip per column in turn), so that other load hits all columns alike.
open_ms (median)
    mux: control connection, HELLO + ALIVE, NEW_SESSION + fds, until
    SESSION_OPENED, on a live master (sshd has confirmed the channel; the remote
    command is starting). passenger: start the ``ssh -S`` process until the
    first byte echoed by ``cat`` (it gives no earlier sign).
first_byte_ms (median)
    From the start of the open until one byte written has come back from the
    remote ``cat``: includes the remote login shell (``$SHELL -c cat``; root's
    ``.bashrc`` here runs ``pyenv init``, which dominates). ssh_cat and
    paramiko_cat pay a full SSH handshake in it; mux and passenger do not.
throughput_1MiB_MBps (best trial)
    One way: ``big_messages`` x 1 MiB of random bytes written to a remote
    ``head -c <total> >/dev/null; echo done``, clock from the first write to
    "done" (one session per trial, its start not counted; the remote command is
    started and has printed "ready" before the clock starts).
master_start_ms (median)
    ensure_master() on a cold key: the foreground ``ssh -N -M`` until it has
    daemonized, the probe, the watchdog's "ready" and the record.

Usage::

    .venv/bin/python benchmarks/bench_openssh.py           # about a minute
    .venv/bin/python benchmarks/bench_openssh.py --quick   # smoke test
    .venv/bin/python benchmarks/bench_openssh.py --json    # JSON on stdout
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List

from _common import fd_recv, log, percentile, recv_exact, sink_command

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from sshpipe._openssh import Target, ensure_master, stop_masters  # noqa: E402
from sshpipe._openssh.mux import MuxClient  # noqa: E402
from sshpipe.testing import LocalSSHServer  # noqa: E402

COLUMNS = ["mux", "passenger", "ssh_cat", "paramiko_cat"]
TIMEOUT = 60.0
RTT_SIZE = 100


@dataclass(frozen=True)
class Params:
    rounds: int
    rtt_warmup: int
    rtt_count: int       # per round and column
    opens: int           # session opens per round and column
    master_starts: int   # per round
    big_messages: int    # 1 MiB each, per throughput trial
    big_trials: int      # per round and column


FULL = Params(rounds=3, rtt_warmup=100, rtt_count=1000, opens=5, master_starts=2,
              big_messages=32, big_trials=2)
QUICK = Params(rounds=1, rtt_warmup=20, rtt_count=200, opens=2, master_starts=1,
               big_messages=4, big_trials=1)
BIG = os.urandom(1 << 20)


def _throughput_fds(write_fd: int, read_fd: int, params: Params) -> float:
    """Seconds to deliver ``big_messages`` MiB to the remote sink (after "ready")."""
    assert recv_exact(fd_recv(read_fd, TIMEOUT), 6) == b"ready\n"
    start = time.perf_counter()
    for _ in range(params.big_messages):
        view = memoryview(BIG)
        while view:
            view = view[os.write(write_fd, view):]
    assert recv_exact(fd_recv(read_fd, TIMEOUT), 5) == b"done\n"
    return time.perf_counter() - start


class Pipes:
    """stdin/stdout/stderr pipes for a session; ``give()`` closes the ends the
    master (or a child process) now holds."""

    def __init__(self) -> None:
        self.stdin_r, self.stdin_w = os.pipe()
        self.stdout_r, self.stdout_w = os.pipe()
        self.stderr_r, self.stderr_w = os.pipe()

    def remote(self) -> Dict[str, int]:
        return {"stdin": self.stdin_r, "stdout": self.stdout_w, "stderr": self.stderr_w}

    def give(self) -> None:
        for fd in (self.stdin_r, self.stdout_w, self.stderr_w):
            os.close(fd)

    def close(self) -> None:
        for fd in (self.stdin_w, self.stdout_r, self.stderr_r):
            os.close(fd)


class Bench:
    def __init__(self, server: LocalSSHServer, control_dir: str, params: Params):
        self.server = server
        self.params = params
        self.control_dir = control_dir
        self.target = Target(server.alias, config=server.config_path)
        self.master = ensure_master(self.target, control_dir=control_dir, persist=600)
        self.master.close()
        self.samples: Dict[str, Dict[str, List[float]]] = {c: {} for c in COLUMNS}

    def add(self, column: str, metric: str, values: List[float]) -> None:
        self.samples[column].setdefault(metric, []).extend(values)

    # -- columns ---------------------------------------------------------------
    def _open(self, mode: str, command: str, pipes: "Pipes"):
        if mode == "mux":
            client = MuxClient.connect(self.master.paths.socket, host=self.target.host,
                                       timeout=TIMEOUT)
            return client.open_session(command, timeout=TIMEOUT, **pipes.remote())
        return self.master.open_session(command, mode="passenger", timeout=TIMEOUT,
                                        **pipes.remote())

    def _session(self, mode: str):
        pipes = Pipes()
        start = time.perf_counter()
        session = self._open(mode, "cat", pipes)
        opened = time.perf_counter()
        pipes.give()
        os.write(pipes.stdin_w, b"!")
        recv_exact(fd_recv(pipes.stdout_r, TIMEOUT), 1)
        first = time.perf_counter()
        return pipes, session, opened - start, first - start

    def run_mux_like(self, mode: str) -> None:
        for _ in range(self.params.opens):
            pipes, session, open_s, first_s = self._session(mode)
            self.add(mode, "open", [open_s if mode == "mux" else first_s])
            self.add(mode, "first_byte", [first_s])
            pipes.close()
            session.wait(TIMEOUT)
        if mode != "mux":
            return  # same byte path as mux: the master reads our pipe
        for _ in range(self.params.big_trials):
            pipes = Pipes()
            session = self._open(mode, sink_command(self.params.big_messages << 20), pipes)
            pipes.give()
            self.add(mode, "big", [_throughput_fds(pipes.stdin_w, pipes.stdout_r, self.params)])
            session.wait(TIMEOUT)
            pipes.close()

    def run_ssh_cat(self) -> None:
        argv = ["ssh", "-F", self.server.config_path, "-o", "ControlMaster=no",
                "-o", "ControlPath=none", "-T", self.server.alias, "cat"]
        for _ in range(self.params.opens):
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    bufsize=0)
            os.write(proc.stdin.fileno(), b"!")
            recv_exact(fd_recv(proc.stdout.fileno(), TIMEOUT), 1)
            self.add("ssh_cat", "first_byte", [time.perf_counter() - start])
            proc.stdin.close()
            proc.wait(TIMEOUT)
            proc.stdout.close()
        for _ in range(self.params.big_trials):
            proc = subprocess.Popen(argv[:-1] + [sink_command(self.params.big_messages << 20)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
            self.add("ssh_cat", "big", [_throughput_fds(proc.stdin.fileno(),
                                                        proc.stdout.fileno(), self.params)])
            proc.stdin.close()
            proc.wait(TIMEOUT)
            proc.stdout.close()

    def run_paramiko_cat(self) -> None:
        from sshpipe.transport import connect, settings_for
        settings = settings_for(self.server.alias, self.server.config_path)
        for _ in range(self.params.opens):
            start = time.perf_counter()
            transport = connect(settings)
            channel = transport.open_session()
            channel.exec_command("cat")
            channel.sendall(b"!")
            assert channel.recv(1) == b"!"
            self.add("paramiko_cat", "first_byte", [time.perf_counter() - start])
            channel.close()
            transport.close()
        for _ in range(self.params.big_trials):
            transport = connect(settings)
            channel = transport.open_session()
            channel.exec_command(sink_command(self.params.big_messages << 20))
            got = b""
            while len(got) < 6:
                got += channel.recv(6 - len(got))
            start = time.perf_counter()
            for _ in range(self.params.big_messages):
                channel.sendall(memoryview(BIG))
            got = b""
            while len(got) < 5:
                got += channel.recv(5 - len(got))
            self.add("paramiko_cat", "big", [time.perf_counter() - start])
            channel.close()
            transport.close()

    # -- round trips, all columns interleaved sample by sample -------------------
    def _fd_echo(self, write_fd: int, read_fd: int) -> Callable[[], None]:
        payload = os.urandom(RTT_SIZE)

        def roundtrip() -> None:
            os.write(write_fd, payload)
            recv_exact(fd_recv(read_fd, TIMEOUT), RTT_SIZE)
        return roundtrip

    def run_rtt(self) -> None:
        """One echo session per column open at once; each sample round does one
        round trip per column, so load from elsewhere hits every column alike."""
        from sshpipe.transport import connect, settings_for
        closers: List[Callable[[], None]] = []
        echoes: Dict[str, Callable[[], None]] = {}
        try:
            for mode in ("mux", "passenger"):
                pipes, session, _, _ = self._session(mode)
                echoes[mode] = self._fd_echo(pipes.stdin_w, pipes.stdout_r)
                closers.append(lambda p=pipes, s=session: (p.close(), s.wait(TIMEOUT)))
            proc = subprocess.Popen(["ssh", "-F", self.server.config_path, "-o",
                                     "ControlMaster=no", "-o", "ControlPath=none", "-T",
                                     self.server.alias, "cat"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, bufsize=0)
            echoes["ssh_cat"] = self._fd_echo(proc.stdin.fileno(), proc.stdout.fileno())
            closers.append(lambda: (proc.stdin.close(), proc.wait(TIMEOUT), proc.stdout.close()))
            transport = connect(settings_for(self.server.alias, self.server.config_path))
            channel = transport.open_session()
            channel.exec_command("cat")
            payload = os.urandom(RTT_SIZE)

            def paramiko_roundtrip() -> None:
                channel.sendall(payload)
                need = RTT_SIZE
                while need:
                    need -= len(channel.recv(need))
            echoes["paramiko_cat"] = paramiko_roundtrip
            closers.append(transport.close)
            for echo in echoes.values():
                for _ in range(self.params.rtt_warmup):
                    echo()
            clock = time.perf_counter
            samples: Dict[str, List[float]] = {column: [] for column in echoes}
            order = list(echoes.items())
            for index in range(self.params.rtt_count):
                # rotate who goes first: the column after paramiko's would otherwise
                # pay for the work paramiko's transport thread still does
                turn = index % len(order)
                for column, echo in order[turn:] + order[:turn]:
                    start = clock()
                    echo()
                    samples[column].append(clock() - start)
            for column, values in samples.items():
                self.add(column, "rtt", values)
        finally:
            for close in closers:
                close()

    def run_master_starts(self) -> None:
        for _ in range(self.params.master_starts):
            directory = tempfile.mkdtemp(prefix="spb-")
            try:
                start = time.perf_counter()
                master = ensure_master(self.target, control_dir=directory, persist=60)
                self.add("mux", "master_start", [time.perf_counter() - start])
                master.stop()
            finally:
                stop_masters(directory)
                shutil.rmtree(directory, ignore_errors=True)

    def run(self) -> None:
        steps: Dict[str, Callable[[], None]] = {
            "mux": lambda: self.run_mux_like("mux"),
            "passenger": lambda: self.run_mux_like("passenger"),
            "ssh_cat": self.run_ssh_cat,
            "paramiko_cat": self.run_paramiko_cat,
        }
        for round_no in range(1, self.params.rounds + 1):
            for column in COLUMNS:
                log(f"round {round_no}: {column}")
                steps[column]()
            log(f"round {round_no}: round trips, interleaved")
            self.run_rtt()
            log(f"round {round_no}: master starts")
            self.run_master_starts()

    def results(self) -> Dict[str, Dict[str, float]]:
        table: Dict[str, Dict[str, float]] = {}
        for column, metrics in self.samples.items():
            row: Dict[str, float] = {}
            if "rtt" in metrics:
                row["rtt_100B_median_us"] = statistics.median(metrics["rtt"]) * 1e6
                row["rtt_100B_p90_us"] = percentile(metrics["rtt"], 0.9) * 1e6
                row["rtt_samples"] = len(metrics["rtt"])
            if "big" in metrics:
                row["throughput_1MiB_MBps"] = (self.params.big_messages * (1 << 20)
                                               / min(metrics["big"]) / 1e6)
            for name in ("open", "first_byte", "master_start"):
                if name in metrics:
                    row[f"{name}_ms"] = statistics.median(metrics[name]) * 1e3
            table[column] = row
        return table


def _table(results: Dict[str, Dict[str, float]]) -> str:
    metrics = ["rtt_100B_median_us", "rtt_100B_p90_us", "throughput_1MiB_MBps", "open_ms",
               "first_byte_ms", "master_start_ms"]
    lines = ["column        " + "".join(f"{m:>22}" for m in metrics)]
    for column, row in results.items():
        cells = "".join(f"{row[m]:>22.1f}" if m in row else f"{'-':>22}" for m in metrics)
        lines.append(f"{column:<14}{cells}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    args = parser.parse_args(argv)
    params = QUICK if args.quick else FULL
    control_dir = tempfile.mkdtemp(prefix="spb-")
    try:
        with LocalSSHServer(alias="bench-openssh") as server:
            bench = Bench(server, control_dir, params)
            try:
                bench.run()
            finally:
                stop_masters(control_dir)
            results = bench.results()
    finally:
        shutil.rmtree(control_dir, ignore_errors=True)
    load = os.getloadavg()
    report = {"results": results, "params": params.__dict__, "cpus": os.cpu_count(),
              "loadavg": [round(x, 2) for x in load], "ssh": _ssh_version()}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_table(results))
        print(f"(cpus {report['cpus']}, load average {report['loadavg']}, {report['ssh']})")
    return 0


def _ssh_version() -> str:
    result = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    return (result.stderr or result.stdout).strip()


if __name__ == "__main__":
    sys.exit(main())
